"""Reports: everything drawn. The PDF report of an event (``backtest report``: ``build``,
``figures``, ``common``) and the sweep's heatmap PDF (``sweep_pages``; :mod:`backtest.sweep`
computes the table it draws). This package imports the computing layers (the simulation API, the
sweep engine for the sensitivity page), never the other way round for drawing.

matplotlib is imported only inside this package (Agg backend), never by the rest of the tool.
"""

from __future__ import annotations

__all__ = ["build_report", "ReportResult"]


def __getattr__(name):
    if name in ("build_report", "ReportResult"):
        from backtest.report import build

        return getattr(build, name)
    raise AttributeError(name)
