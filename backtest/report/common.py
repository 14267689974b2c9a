"""Shared helpers of the report code: style, number formats, tables, reproducible dates.

Only the report modules import matplotlib, and always through :func:`mpl`, which selects the
non-interactive "Agg" backend first. Figures are built with ``matplotlib.figure.Figure``
directly (no pyplot, no global figure registry), so reports can be drawn from worker threads,
notebooks and tests without side effects.
"""

from __future__ import annotations

import os
import sys
import textwrap
from datetime import datetime, timezone
from typing import Any

#: page size (A4 landscape, inches)
PAGE = (11.69, 8.27)

#: colours: longs red, shorts green (the convention of liquidation dashboards)
LONG_C = "#c0392b"
SHORT_C = "#1e8449"
PRICE_C = "#1f3b73"
GREY = "#7f8c8d"

#: fixed style: bundled DejaVu fonts only (reproducible on every machine), no hash salt
RC = {
    "font.family": "DejaVu Sans",
    "font.size": 9.0,
    "axes.titlesize": 11.0,
    "axes.titleweight": "bold",
    "axes.labelsize": 9.0,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8.0,
    "legend.framealpha": 0.85,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "pdf.compression": 6,
    "svg.hashsalt": "backtest",
    "path.simplify": True,
    "timezone": "UTC",
    "text.parse_math": False,  # "$1.2B / $3.4B" is money, not mathtext
}


def mpl():
    """Import matplotlib with the Agg backend and return the module."""
    import matplotlib

    if matplotlib.get_backend().lower() != "agg" and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    return matplotlib


def new_figure(size=PAGE):
    """A detached figure (no pyplot) with constrained layout, drawn with the Agg canvas."""
    mpl()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def usd(x: Any, digits: int = 2) -> str:
    """``$1.23B``, ``$456.0M``, ``$12.3k``; '—' for None/NaN."""
    if x is None:
        return "—"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if v != v:
        return "—"
    a = abs(v)
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{'-' if v < 0 else ''}${a / div:,.{digits}f}{suf}"
    return f"{'-' if v < 0 else ''}${a:,.0f}"


def usd_axis(ax, axis: str = "y") -> None:
    """Format an axis in $k/$M/$B."""
    from matplotlib.ticker import FuncFormatter

    f = FuncFormatter(lambda v, _pos: usd(v, 1) if v else "0")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(f)


def usd_colorbar(cb) -> None:
    """Format a colorbar's ticks in $k/$M/$B."""
    from matplotlib.ticker import FuncFormatter

    cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: usd(v, 1) if v else "0"))
    cb.ax.yaxis.get_offset_text().set_visible(False)


def time_axis(ax, label: str = "time (UTC)") -> None:
    """HH:MM ticks in UTC and a labelled axis."""
    import matplotlib.dates as mdates

    loc = mdates.AutoDateLocator(tz=timezone.utc, minticks=5, maxticks=10)
    ax.xaxis.set_major_locator(loc)
    lo, hi = ax.get_xlim()
    if hi - lo > 1.0:  # more than a day: show the day too
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b\n%H:%M", tz=timezone.utc))
        ax.set_xlabel(label)
        return
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=timezone.utc))
    try:
        d0 = mdates.num2date(lo, tz=timezone.utc).strftime("%Y-%m-%d")
        d1 = mdates.num2date(hi, tz=timezone.utc).strftime("%Y-%m-%d")
        label = f"{label}, {d0}" + (f" → {d1}" if d1 != d0 else "")
    except (ValueError, OverflowError):
        pass
    ax.set_xlabel(label)


def fmt_value(v: Any) -> str:
    """A parameter value for tables: short floats, dicts inline, None as 'auto' (derived from the data)."""
    if v is None:
        return "auto"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    if isinstance(v, float):
        return f"{v:,.6g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {fmt_value(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_value(x) for x in v)
    return str(v)


def wrap(text: str, width: int) -> str:
    """Wrap to ``width`` characters, breaking long URLs too."""
    out = []
    for para in str(text).split("\n"):
        out.extend(textwrap.wrap(para, width=width, break_long_words=True, break_on_hyphens=False) or [""])
    return "\n".join(out)


def report_date(default_ms: int | None = None) -> datetime:
    """The report's date: ``$SOURCE_DATE_EPOCH`` when set (reproducible builds), else
    ``default_ms`` (a time taken from the data, never the clock), else the epoch."""
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde:
        try:
            return datetime.fromtimestamp(int(sde), tz=timezone.utc)
        except ValueError:
            from backtest.errors import UserError

            raise UserError(f"SOURCE_DATE_EPOCH={sde!r} is not an integer number of seconds") from None
    if default_ms is not None:
        return datetime.fromtimestamp(default_ms / 1000, tz=timezone.utc)
    return datetime.fromtimestamp(0, tz=timezone.utc)


def iso(ms: int | None) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def draw_table(fig, rect, columns, rows, widths, *, fontsize=8.0, header_color="#e8ecf3", zebra="#f7f7f7", wrap_widths=None):
    """Draw a table with wrapped cells into the figure area ``rect`` = (left, bottom, width, height)
    in figure fractions, filled from the top. ``widths`` are column widths in characters; cells wrap
    at ``wrap_widths`` characters where given (narrower than ``widths`` for text of wide glyphs,
    which would otherwise run into the next column), else at ``widths``. Returns
    ``(rows that did not fit (to continue on another page), figure fraction of the table's
    bottom edge)``."""
    left, bottom, width, height = rect
    fig_h_in = fig.get_figheight()
    line_h = fontsize * 1.32 / 72.0 / fig_h_in
    pad = 0.35 * line_h
    total_chars = float(sum(widths))
    xs = [left]
    for w in widths[:-1]:
        xs.append(xs[-1] + width * w / total_chars)

    def cells(row):
        return [wrap(str(v), max(4, int(w))) for v, w in zip(row, wrap_widths or widths)]

    y = bottom + height
    head = cells(columns)
    nlines = max(c.count("\n") + 1 for c in head)
    h = nlines * line_h + 2 * pad
    fig.patches.append(_rect(fig, left, y - h, width, h, header_color))
    for x, c in zip(xs, head):
        fig.text(x + 0.004, y - pad, c, va="top", ha="left", fontsize=fontsize, fontweight="bold")
    y -= h
    left_over = []
    for i, row in enumerate(rows):
        cs = cells(row)
        nlines = max(c.count("\n") + 1 for c in cs)
        h = nlines * line_h + 2 * pad
        if y - h < bottom:
            left_over = list(rows[i:])
            break
        if i % 2 == 1:
            fig.patches.append(_rect(fig, left, y - h, width, h, zebra))
        for x, c in zip(xs, cs):
            fig.text(x + 0.004, y - pad, c, va="top", ha="left", fontsize=fontsize)
        y -= h
    fig.lines.append(_hline(fig, left, left + width, y))
    return left_over, y


def _rect(fig, x, y, w, h, color):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, transform=fig.transFigure, facecolor=color, edgecolor="none", zorder=-1)


def _hline(fig, x0, x1, y):
    from matplotlib.lines import Line2D

    return Line2D([x0, x1], [y, y], transform=fig.transFigure, color=GREY, linewidth=0.6)
