"""Reports: matplotlib figures and the PDF report of an event (``backtest report``).

matplotlib is imported only inside this package (Agg backend), never by the rest of the tool.
"""

from __future__ import annotations

__all__ = ["build_report", "ReportResult"]


def __getattr__(name):
    if name in ("build_report", "ReportResult"):
        from backtest.report import build

        return getattr(build, name)
    raise AttributeError(name)
