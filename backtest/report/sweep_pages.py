"""The sweep's PDF of heatmaps (``heatmaps.pdf`` beside ``results.parquet``): :mod:`backtest.sweep`
computes the results table, this module draws it.

Pages: the chosen metric over the two chosen grid parameters (others averaged), then the other
metrics that vary, then the chosen metric over the other pairs of grid parameters; with one grid
parameter, lines instead of heatmaps. Notional in USD.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from backtest.errors import UserError


def sweep_figures(table, spec: Any, columns: list[str]) -> list:
    """Figures of the sweep PDF: the chosen metric over x × y, then the other metrics that vary,
    then the chosen metric over the other pairs of grid parameters.

    ``spec`` is the sweep (``backtest.sweep.SweepSpec``: event, mode, grid, x, y, metric,
    n_combinations), ``columns`` the results-table columns to draw, the chosen metric's first
    (``backtest.sweep.heatmap_columns``)."""
    from backtest.report.common import RC, mpl, new_figure, usd_axis
    from backtest.report.figures import metric_label, sweep_heatmap_figure

    mpl()
    import matplotlib

    names = list(spec.grid)
    others = [n for n in names if n not in (spec.x, spec.y)]
    avg = f"; mean over {', '.join(others)}" if others else ""
    title = f"Sweep of {spec.event} ({spec.mode}, {spec.n_combinations} combinations)"
    figs = []
    with matplotlib.rc_context(RC):
        if spec.y is None:  # one parameter: a line, not a heatmap
            for metric in columns:
                if metric not in table.columns:
                    continue
                fig = new_figure()
                fig.suptitle(title, fontsize=14, fontweight="bold")
                ax = fig.add_subplot(1, 1, 1)
                d = table.sort(spec.x)
                ax.plot([str(v) for v in d[spec.x].to_list()], d[metric].to_numpy(), marker="o")
                ax.set_xlabel(spec.x)
                ax.set_ylabel(metric_label(metric))
                ax.set_title(f"{metric_label(metric)} against {spec.x}", fontsize=10)
                if metric.endswith("_usd"):
                    usd_axis(ax)
                figs.append(fig)
            return figs
        for k, metric in enumerate(columns):
            if metric in table.columns and table[metric].dtype.is_numeric() and (k == 0 or table[metric].n_unique() > 1):
                figs.append(sweep_heatmap_figure(table, spec.x, spec.y, metric, title, f"{metric_label(metric)} by {spec.x} and {spec.y}{avg}"))
        for a, b in itertools.combinations(names, 2):
            if {a, b} == {spec.x, spec.y} or len(figs) >= 16:
                continue
            rest = [n for n in names if n not in (a, b)]
            note = f"{metric_label(spec.metric)} by {a} and {b}" + (f"; mean over {', '.join(rest)}" if rest else "")
            figs.append(sweep_heatmap_figure(table, a, b, columns[0], title, note))
        for k, fig in enumerate(figs, 1):
            fig.text(0.995, 0.004, f"{spec.event} sweep · page {k}/{len(figs)}", ha="right", va="bottom", fontsize=7, color="#7f8c8d")
    return figs


def write_sweep_pdf(figs, path: Path, spec: Any) -> None:
    """Write the sweep figures to the PDF ``path`` (reproducible dates, see :func:`common.report_date`)."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    import backtest
    from backtest.events import get_event
    from backtest.report.common import RC, report_date

    try:
        end_ms = get_event(spec.event).end_ms
    except UserError:
        end_ms = None
    date = report_date(end_ms)
    meta = {
        "Title": f"Parameter sweep of {spec.event} ({spec.mode}): {', '.join(spec.grid)}",
        "Author": "cascade-backtest",
        "Creator": f"cascade-backtest {backtest.__version__}",
        "CreationDate": date,
        "ModDate": date,
    }
    with matplotlib.rc_context(RC), PdfPages(path, metadata=meta) as pp:
        for fig in figs:
            pp.savefig(fig)
