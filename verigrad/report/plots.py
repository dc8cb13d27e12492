"""Figures for the reports, drawn with matplotlib's object API on the Agg backend.

Every function builds its own :class:`matplotlib.figure.Figure` and returns PNG
bytes (or writes a file); pyplot and its global state are never touched, so
reports can be drawn from worker threads and never leak figures.  The PNG
writer is told to omit its ``Software`` stamp, so the same data give the same
bytes.

Functions
---------
:func:`ulps_figure`
    Max error in ulps per candidate × dtype of one case (log scale).
:func:`wrong_entries_figure`
    Heatmap of the ulp errors of the wrong entries of one variable.
:func:`draw_study`, :func:`study_figure`, :func:`study_grid_figure`
    Error against step of a finite-difference study, split into its parts: one drawing for
    ``verigrad study --plot``, the HTML page and the notebook view.
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullLocator

__all__ = ["png_bytes", "ulps_figure", "wrong_entries_figure", "draw_study", "study_figure", "study_grid_figure",
           "to_float", "FIGURE_FORMATS"]

_DTYPE_COLOURS = {"float16": "#7570b3", "bfloat16": "#e7298a", "float32": "#d95f02", "float64": "#1b9e77"}
_VERDICT_MARKERS = {"pass": "o", "fail": "X", "nonfinite": "^", "error": "s", "not exercised": "D", "unresolved": "P",
                    "no estimate": "s"}


def to_float(value: Any) -> float:
    """A report figure as a float: numbers, decimal strings, ``"nan"``/``"inf"``; NaN for None or junk.

    Examples
    --------
    >>> to_float("1.5e-3"), to_float(None)
    (0.0015, nan)
    """
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


#: the image formats :func:`png_bytes` writes (``verigrad study --plot FILE`` picks one from the suffix)
FIGURE_FORMATS = ("png", "svg", "pdf")

_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
             "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}


def png_bytes(fig: Figure, *, dpi: int = 96, format: str = "png") -> bytes:
    """Render ``fig`` to bytes (PNG by default; ``"svg"`` and ``"pdf"`` too), without date or software stamps."""
    if format not in _METADATA:
        raise ValueError(f"format={format!r} is not supported; use one of {', '.join(_METADATA)}")
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    # a fixed salt makes the ids inside an SVG reproducible (scoped: restored on exit)
    with matplotlib.rc_context({"svg.hashsalt": "verigrad"}):
        fig.savefig(buf, format=format, dpi=dpi, metadata=_METADATA[format])
    return buf.getvalue()


def _new_figure(width: float, height: float, *, left: float = 0.7, right: float = 0.2, bottom: float = 0.55,
                top: float = 0.3) -> Figure:
    """A figure whose axes sit at fixed margins (inches).

    Fixed margins instead of a layout engine: constrained layout measures every
    text repeatedly and costs more than drawing the figure.
    """
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    return fig


def ulps_figure(rows: Sequence[tuple[str, str, str, float]], *, title: str = "") -> bytes:
    """Max error in ulps per candidate and dtype, on a log axis.

    Parameters
    ----------
    rows : sequence of (candidate, dtype, verdict, max_ulps)
        One point per grade.  Zero errors are drawn at the axis floor;
        infinite ones at the top with an upward marker; NaN ones are omitted.
    title : str

    Returns
    -------
    bytes
        A PNG image.
    """
    names = list(dict.fromkeys(r[0] for r in rows))
    height = max(1.6, 0.35 * len(names) + 1.0)
    longest = max((len(n[:28]) for n in names), default=4)
    fig = _new_figure(6.4 + 0.07 * longest, height, left=0.25 + 0.07 * longest, right=1.3)
    ax = fig.add_subplot()
    finite = [u for *_, u in rows if math.isfinite(u) and u > 0]
    lo = min(finite + [1.0]) / 3
    hi = max(finite + [1.0]) * 3
    offsets = {"float16": -0.36, "float32": -0.12, "float64": 0.12, "bfloat16": 0.36}
    for dtype, colour in _DTYPE_COLOURS.items():
        for verdict, marker in _VERDICT_MARKERS.items():
            xs, ys = [], []
            for name, dt, vd, u in rows:
                if dt != dtype or vd != verdict or math.isnan(u):
                    continue
                xs.append(min(max(u, lo), hi))
                ys.append(names.index(name) + offsets.get(dt, 0.0))
            if xs:
                ax.scatter(xs, ys, c=colour, marker=marker, s=46, label=f"{dtype} {verdict}", zorder=3)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(LogLocator(base=10.0, numticks=10))
    ax.xaxis.set_minor_locator(NullLocator())  # hundreds of minor ticks cost more than the data
    ax.set_yticks(range(len(names)), labels=[n[:28] for n in names])
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("max error (ulps of the dtype)")
    ax.grid(axis="x", which="major", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    if rows:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return png_bytes(fig)


def wrong_entries_figure(shape: Sequence[int], entries: Sequence[tuple[Sequence[int], float]], *,
                         title: str = "") -> bytes:
    """Heatmap of the wrong entries of one variable (log10 of their ulp errors).

    Parameters
    ----------
    shape : sequence of int
        The variable's shape.  0-d and 1-d variables are drawn as one row;
        more than two axes are folded into the columns (C order).
    entries : sequence of (index, ulps)
        The wrong entries; every other cell is drawn blank.
    title : str

    Returns
    -------
    bytes
        A PNG image.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        grid_shape = (1, 1)
    elif len(shape) == 1:
        grid_shape = (1, shape[0])
    else:
        grid_shape = (shape[0], int(np.prod(shape[1:])))
    grid = np.full(grid_shape, np.nan)
    for index, ulps in entries:
        flat = int(np.ravel_multi_index(tuple(int(i) for i in index), shape)) if shape else 0
        r, c = divmod(flat, grid_shape[1])
        u = ulps if math.isfinite(ulps) else 1e300
        grid[r, c] = math.log10(max(u, 1e-3))
    rows, cols = grid_shape
    width = min(6.4, max(2.6, 0.28 * cols + 1.8))
    height = min(4.8, max(1.5, 0.28 * rows + 1.0))
    fig = _new_figure(width, height, left=0.6 if rows > 1 else 0.2, right=1.05, bottom=0.5, top=0.3)
    ax = fig.add_subplot()
    masked = np.ma.masked_invalid(grid)
    # whole decades, at least one wide: entries wrong by similar amounts get similar colours
    finite = grid[np.isfinite(grid)]
    vmin = math.floor(float(finite.min())) if finite.size else 0.0
    vmax = max(math.ceil(float(finite.max())) if finite.size else 1.0, vmin + 1.0)
    image = ax.imshow(masked, cmap="magma_r", aspect="auto", interpolation="nearest", vmin=vmin, vmax=vmax)
    if rows == 1:
        ax.set_yticks([])
    ax.set_xlabel("column" if len(shape) >= 2 else "index")
    if rows > 1:
        ax.set_ylabel("row")
    pos = ax.get_position()
    cax = fig.add_axes((pos.x1 + 0.12 / width, pos.y0, 0.12 / width, pos.height))
    cbar = fig.colorbar(image, cax=cax)
    cbar.set_label("log10 ulps", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    return png_bytes(fig)


# -- studies ------------------------------------------------------------------------------

#: one style for every study figure (PNG, SVG, PDF, HTML, notebook): colour per part of the error
STUDY_COLOURS = {"error": "#1f1f1f", "truncation": "#1f77b4", "step": "#2ca02c", "roundoff": "#d62728"}
_STUDY_LABELS = {"error": "|E| total", "truncation": "|T| truncation", "step": "|S| step (nodes)",
                 "roundoff": "|R| round-off"}
_DOMINANT = {"truncation": "truncation", "step": "step error", "roundoff": "round-off"}
#: the y axis starts this many decades below the smallest measured total error
STUDY_DECADES_BELOW = 3


def _positive(values) -> np.ndarray:
    v = np.abs(np.array([to_float(x) for x in values], dtype=np.float64))
    v[~np.isfinite(v) | (v <= 0)] = np.nan
    return v


def draw_study(ax, study: dict, *, legend: bool = True, title: str = "") -> dict:
    """Draw one study (a record of the study document) on a matplotlib Axes.

    What a reader needs at a glance: where each part of the error dominates (shaded bands with
    their name), the measured |E| and its parts |T|, |S|, |R| (solid), the model's curves
    (dashed), the best measured step (open circle) and the model's optimal step h* (dotted
    line) — the latter only when the record says it is usable (``model.optimal_step_note`` is
    empty); otherwise the title says why it is not drawn.  The y axis runs from
    :data:`STUDY_DECADES_BELOW` decades below the smallest measured total error to just above
    the largest measured value: exact truncation errors of 1e-70 at tiny steps stay out of
    frame.  Nothing is computed: every figure is read from the record.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    study : dict
        One entry of the study document's ``"studies"`` (docs/report-schema.md).
    legend : bool
        Put the legend outside the axes, on their right.
    title : str
        Default ``"SCHEME · DTYPE"``.

    Returns
    -------
    dict
        Legend label -> artist, for a figure-wide legend.
    """
    import textwrap

    rows = [r for r in study.get("rows", []) if r.get("finite", True)]
    h = np.array([to_float(r.get("h")) for r in rows], dtype=np.float64)
    handles: dict = {}
    measured = {key: _positive(r.get(key) for r in rows) for key in ("error", "truncation", "step", "roundoff")}
    total = measured["error"]
    lo = np.nanmin(total) / 10 ** STUDY_DECADES_BELOW if np.isfinite(total).any() else None
    top = max((np.nanmax(v) for v in measured.values() if np.isfinite(v).any()), default=None)
    for rg in study.get("regimes") or []:
        a, b = to_float(rg.get("h_min")), to_float(rg.get("h_max"))
        part = rg.get("dominant", "")
        if not (a > 0 and b >= a) or part not in STUDY_COLOURS:
            continue
        ax.axvspan(a / 1.15, b * 1.15, color=STUDY_COLOURS[part], alpha=0.07, lw=0, zorder=0)
        ax.text(math.sqrt(a * b), 0.98, _DOMINANT[part] + "\ndominates", transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=6, color=STUDY_COLOURS[part], zorder=1, clip_on=True,
                linespacing=0.95)
    for key in ("error", "truncation", "step", "roundoff"):
        v = measured[key]
        ok = np.isfinite(v) & (h > 0)
        if not ok.any():
            continue
        main = key == "error"
        (line,) = ax.plot(h[ok], v[ok], "-", color=STUDY_COLOURS[key], lw=1.8 if main else 1.0,
                          marker="o" if main else ".", ms=3.2 if main else 2.5, alpha=1.0 if main else 0.85,
                          zorder=4 if main else 3)
        handles[_STUDY_LABELS[key]] = line
    model_rows = [r.get("model") or {} for r in rows]
    for key in ("truncation", "roundoff"):
        v = _positive(m.get(key) for m in model_rows)
        ok = np.isfinite(v) & (h > 0)
        if ok.sum() >= 2:
            (line,) = ax.plot(h[ok], v[ok], "--", color=STUDY_COLOURS[key], lw=0.8, zorder=2)
            handles[f"model {_STUDY_LABELS[key].split()[0]}"] = line
    model, observed = study.get("model") or {}, study.get("observed") or {}
    h_obs, e_obs = to_float(observed.get("optimal_step")), to_float(observed.get("min_error"))
    if h_obs > 0 and e_obs > 0:
        (mark,) = ax.plot([h_obs], [e_obs], "o", mfc="none", mec="#ff7f0e", mew=1.6, ms=10, zorder=5)
        handles["best measured step"] = mark
    h_star, e_star = to_float(model.get("optimal_step")), to_float(model.get("min_error"))
    note = model.get("optimal_step_note") or ""
    if h_star > 0 and not note:
        line = ax.axvline(h_star, color="#7f7f7f", ls=":", lw=1.2, zorder=2)
        handles["model optimum h*"] = line
        if e_star > 0:
            ax.plot([h_star], [e_star], "x", color="#7f7f7f", ms=7, mew=1.6, zorder=5)
    ax.set_xscale("log")
    if handles:
        ax.set_yscale("log")
        if lo is not None and top is not None and top > lo:
            ax.set_ylim(lo, top * 4)
    if len(h):
        ax.set_xlim(np.nanmin(np.array([to_float(r.get("h")) for r in study.get("rows", [])])) / 2,
                    np.nanmax(np.array([to_float(r.get("h")) for r in study.get("rows", [])])) * 2)
    ax.set_xlabel("step h (as used, h_p)", fontsize=8)
    ax.set_ylabel("absolute error", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(which="major", alpha=0.3)
    head = title or f"{study.get('scheme', '?')} · {study.get('dtype', '?')}"
    sub = []
    if h_obs > 0:
        sub.append(f"best measured h = {h_obs:.2g} (|E| = {e_obs:.2g})")
    if h_star > 0 and not note:
        sub.append(f"model h* = {h_star:.2g}")
    sub = textwrap.wrap(" · ".join(sub), 64)
    if note:
        sub += textwrap.wrap(f"h* not marked: {note}", 64)
    ax.set_title(head, fontsize=9, loc="left", pad=4 + 9 * len(sub))
    if sub:
        ax.text(0.0, 1.01, "\n".join(sub), transform=ax.transAxes, fontsize=6.5, va="bottom", ha="left",
                color="#444444", linespacing=1.1)
    if legend and handles:
        ax.legend(list(handles.values()), list(handles), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                  borderaxespad=0.0, frameon=False)
    return handles


def study_figure(study: dict, *, title: str = "", format: str = "png") -> bytes:
    """One study as an image: :func:`draw_study` with its legend beside the axes.

    Parameters
    ----------
    study : dict
        One entry of the study document's ``"studies"`` (docs/report-schema.md).
    title : str
    format : {"png", "svg", "pdf"}

    Returns
    -------
    bytes
    """
    if format not in _METADATA:
        raise ValueError(f"format={format!r} is not supported; use one of {', '.join(_METADATA)}")
    fig = _new_figure(7.6, 4.2, left=0.75, right=2.0, bottom=0.55, top=0.85)
    draw_study(fig.add_subplot(), study, title=title)
    return png_bytes(fig, format=format)


def study_grid_figure(studies: Sequence[dict], *, title: str = "", format: str = "png") -> bytes:
    """Several studies on one image: a row per scheme, a column per dtype, one legend below them all.

    Parameters
    ----------
    studies : sequence of dict
        Records of the study document's ``"studies"``.
    title : str
        The figure's title (e.g. the case and the direction).
    format : {"png", "svg", "pdf"}
    """
    if format not in _METADATA:
        raise ValueError(f"format={format!r} is not supported; use one of {', '.join(_METADATA)}")
    schemes = list(dict.fromkeys(s.get("scheme") for s in studies))
    dtypes = list(dict.fromkeys(s.get("dtype") for s in studies))
    width, panel_h, top = 4.4 * len(dtypes) + 0.4, 3.2, 0.6
    ncol = max(2, min(5, int(width / 1.6)))
    legend_h = 0.2 + 0.2 * math.ceil(9 / ncol)
    fig = _new_figure(width, panel_h * len(schemes) + legend_h + top, left=0.7, right=0.25,
                      bottom=legend_h + 0.5, top=top + 0.35)
    fig.subplots_adjust(hspace=0.7, wspace=0.28)
    axes = fig.subplots(len(schemes), len(dtypes), squeeze=False)
    handles: dict = {}
    for st in studies:
        ax = axes[schemes.index(st.get("scheme"))][dtypes.index(st.get("dtype"))]
        handles.update(draw_study(ax, st, legend=False))
    for row in axes:
        for ax in row:
            if not ax.has_data():
                ax.set_visible(False)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(ncol, len(handles)),
                   fontsize=7.5, frameon=False, bbox_to_anchor=(0.5, 0.0))
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.15 / fig.get_figheight(), va="top")
    return png_bytes(fig, format=format)
