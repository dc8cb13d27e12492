"""The error-vs-step figure of a study: |E|, |T|, |S|, |R| on log-log axes, model curves, h* marked."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["study_figure", "study_axes"]

_COLORS = {"error": "black", "truncation": "tab:blue", "step": "tab:green", "roundoff": "tab:red"}
_LABELS = {"error": "|E| total", "truncation": "|T| truncation", "step": "|S| step (nodes)",
           "roundoff": "|R| round-off"}


def study_axes(ax, st, *, legend: bool = True) -> None:
    """Draw one study on a matplotlib Axes."""
    rows = [r for r in st.rows if r.finite]
    h = np.array([r.h for r in rows])
    floor = 1e-300
    for key in ("error", "truncation", "step", "roundoff"):
        v = np.abs(np.array([getattr(r, key) for r in rows]))
        mask = v > floor
        if key == "step" and not mask.any():
            continue
        ax.loglog(h[mask], v[mask], "o-" if key == "error" else ".-", color=_COLORS[key], ms=3.5 if key == "error" else 3,
                  lw=1.6 if key == "error" else 1.0, label=_LABELS[key], alpha=1 if key == "error" else 0.8)
    if len(h):
        hh = np.logspace(math.log10(h.min()), math.log10(h.max()), 200)
        pred = st.model.predict(hh)
        if not st.model.truncation_vanishes:
            ax.loglog(hh, pred["truncation"], "--", color=_COLORS["truncation"], lw=0.8, label="model T")
        ax.loglog(hh, pred["roundoff"], "--", color=_COLORS["roundoff"], lw=0.8, label="model R")
        if math.isfinite(st.model.optimal_step):
            ax.axvline(st.model.optimal_step, color="gray", ls=":", lw=1)
            ax.annotate(f"h* = {st.model.optimal_step:.1e}", (st.model.optimal_step, ax.get_ylim()[0]),
                        xytext=(3, 6), textcoords="offset points", fontsize=7, color="gray", rotation=90)
    ax.set_xlabel("step h (as used, h_p)")
    ax.set_ylabel("absolute error in df/de")
    ax.set_title(f"{st.scheme.name} · {st.dtype.value}", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    if legend:
        ax.legend(fontsize=6.5, loc="best", framealpha=0.8)


def study_figure(studies, path: str) -> None:
    """Write a grid: one row per scheme, float32 and float64 side by side."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    schemes = list(dict.fromkeys(s.scheme.name for s in studies))
    dtypes = list(dict.fromkeys(s.dtype.value for s in studies))
    fig = Figure(figsize=(4.2 * len(dtypes), 3.2 * len(schemes)), constrained_layout=True)
    axes = fig.subplots(len(schemes), len(dtypes), squeeze=False)
    for st in studies:
        i, j = schemes.index(st.scheme.name), dtypes.index(st.dtype.value)
        study_axes(axes[i][j], st, legend=(i == 0 and j == 0) or len(studies) == 1)
    first = studies[0]
    fig.suptitle(f"{first.case}: finite-difference error along {first.direction.label}", fontsize=11)
    fig.savefig(path, dpi=130)
