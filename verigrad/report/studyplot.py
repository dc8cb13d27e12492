"""The error-vs-step figure of :class:`~verigrad.studies.Study` records (``verigrad study --plot``).

Thin adapters over :mod:`verigrad.report.plots`: a Study becomes its JSON record
(:func:`verigrad.report.studyreport.study_record`) and is drawn by :func:`~verigrad.report.plots.draw_study`,
so that the PNG of ``--plot``, the HTML page and the notebook view share one style.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["study_figure", "study_axes", "figure_title"]


def figure_title(studies) -> str:
    first = studies[0]
    return f"{first.case}: finite-difference error along {first.direction.label}"


def study_axes(ax, st, *, legend: bool = True) -> dict:
    """Draw one study on a matplotlib Axes (legend outside, on the right); returns label -> artist."""
    from verigrad.report.plots import draw_study
    from verigrad.report.studyreport import study_record

    return draw_study(ax, study_record(st), legend=legend)


def study_figure(studies, path: str) -> None:
    """Write a grid (one row per scheme, float32 and float64 side by side) as PNG, SVG or PDF by suffix."""
    from verigrad.report.plots import FIGURE_FORMATS, study_grid_figure
    from verigrad.report.studyreport import study_record

    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"{path}: the figure format {fmt or '(none)'!r} is not supported; use "
                         + ", ".join(f".{f}" for f in FIGURE_FORMATS))
    data = study_grid_figure([study_record(s) for s in studies], title=figure_title(studies), format=fmt)
    Path(path).write_bytes(data)
