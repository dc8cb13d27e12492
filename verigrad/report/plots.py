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
:func:`study_figure`
    Error against step of a finite-difference study, split into its parts.
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

__all__ = ["png_bytes", "ulps_figure", "wrong_entries_figure", "study_figure", "to_float"]

_DTYPE_COLOURS = {"float32": "#d95f02", "float64": "#1b9e77"}
_VERDICT_MARKERS = {"pass": "o", "fail": "X", "nonfinite": "^", "error": "s"}
_PART_STYLES = (("truncation", "--", "#7570b3"), ("step", ":", "#e7298a"), ("roundoff", "-.", "#66a61e"))


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
    offsets = {"float32": -0.12, "float64": 0.12}
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


def study_figure(study: dict, *, title: str = "", format: str = "png") -> bytes:
    """Error against step of one scheme in one dtype: |E| and its parts |T|, |S|, |R|.

    Parameters
    ----------
    study : dict
        One entry of the study document's ``"studies"`` (docs/report-schema.md):
        ``rows`` with ``h, error, truncation, step, roundoff``; ``model`` and
        ``observed`` with ``optimal_step`` and ``min_error``.
    title : str
    format : {"png", "svg", "pdf"}
        Image format (``verigrad study --plot FILE`` picks it from the suffix).

    Returns
    -------
    bytes
        The image.  The V of the total error is the solid line; the model's
        optimal step is a dotted vertical line and its minimum error a cross;
        the observed optimum is a circle.
    """
    rows = study.get("rows", [])
    h = np.array([to_float(r.get("h")) for r in rows])
    fig = _new_figure(6.4, 4.0, left=0.85, bottom=0.6)
    ax = fig.add_subplot()

    def draw(key: str, style: str, colour: str, label: str, width: float) -> None:
        y = np.abs(np.array([to_float(r.get(key)) for r in rows]))
        ok = np.isfinite(h) & (h > 0) & np.isfinite(y) & (y > 0)
        if ok.any():
            ax.plot(h[ok], y[ok], style, color=colour, label=label, lw=width, marker="." if key == "error" else None)

    draw("error", "-", "#1f1f1f", "|total error| E", 2.0)
    for key, style, colour in _PART_STYLES:
        draw(key, style, colour, f"|{key}|", 1.2)
    model = study.get("model") or {}
    observed = study.get("observed") or {}
    h_model, e_model = to_float(model.get("optimal_step")), to_float(model.get("min_error"))
    if math.isfinite(h_model) and h_model > 0:
        ax.axvline(h_model, color="#888888", ls=":", lw=1, label=f"model h* = {h_model:.2g}")
        if math.isfinite(e_model) and e_model > 0:
            ax.plot([h_model], [e_model], "x", color="#888888", ms=9, mew=2, label=f"model min = {e_model:.2g}")
    h_obs, e_obs = to_float(observed.get("optimal_step")), to_float(observed.get("min_error"))
    if math.isfinite(h_obs) and h_obs > 0 and math.isfinite(e_obs) and e_obs > 0:
        ax.plot([h_obs], [e_obs], "o", mfc="none", color="#d62728", ms=10, label=f"observed min = {e_obs:.2g}")
    ax.set_xscale("log")
    if ax.lines:
        ax.set_yscale("log")
        ax.legend(fontsize=7, loc="best")
    ax.set_xlabel("step h")
    ax.set_ylabel("absolute error")
    ax.grid(which="major", alpha=0.3)
    ax.set_title(title or f"{study.get('scheme', '?')} · {study.get('dtype', '?')}", fontsize=10, loc="left")
    return png_bytes(fig, format=format)
