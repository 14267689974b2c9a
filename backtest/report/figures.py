"""The report's figures, one function per page, each returning a ``matplotlib.figure.Figure``.

Every function takes plain inputs (an event, simulation results, polars frames) so that the
notebooks can draw single pages. Times are shown in UTC, money in USD ($k/$M/$B), prices in the
quote currency (USDT). Longs are red, shorts green.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from backtest.report.common import (
    GREY,
    LONG_C,
    PRICE_C,
    SHORT_C,
    draw_table,
    fmt_value,
    iso,
    new_figure,
    time_axis,
    usd,
    usd_axis,
    wrap,
)

DAY_MS = 86_400_000


# ---------------------------------------------------------------------------------------------
# column access on the simulation's frames
# ---------------------------------------------------------------------------------------------
#: the roles the report reads from a SimResult's ``bars`` frame, by their declared names
#: (backtest.results.BARS_SCHEMA): the simulated path (with forced-order impact in cascade mode)
#: and the observed (exogenous) one
BAR_COLS = {
    "ts": "ts", "symbol": "symbol",
    "open": "sim_open", "high": "sim_high", "low": "sim_low", "close": "sim_close",
    "obs_open": "open", "obs_high": "high", "obs_low": "low", "obs_close": "close",
    "long": "long_liq_usd", "short": "short_liq_usd", "rounds": "rounds", "endo": "endo_move_min_pct",
    "adl": "adl_usd", "fund": "insurance_fund_usd", "deficit": "deficit_usd", "ranks": "adl_ranks_hit",
}
#: ... of the ``heatmap`` frame (HEATMAP_SCHEMA; "n" is long_usd + short_usd)
HEAT_COLS = {"ts": "ts", "symbol": "symbol", "plo": "price_lo", "phi": "price_hi", "n": "_n", "side": None}
#: ... of the ``liq_map`` frame (LIQ_MAP_SCHEMA)
MAP_COLS = {"symbol": "symbol", "side": "side", "plo": "price_lo", "phi": "price_hi", "n": "open_notional_usd"}
#: ... of the ``clusters`` frame (CLUSTERS_SCHEMA)
CLUSTER_COLS = {"symbol": "symbol", "side": "side", "lo": "price_lo", "hi": "price_hi", "n": "open_notional_usd",
                "share": "share", "reached": "reached", "liq": "liquidated_usd"}


def _dt(values) -> np.ndarray:
    """polars Datetime / int ms -> numpy datetime64[ms] (UTC) for matplotlib."""
    s = values if isinstance(values, pl.Series) else pl.Series(values)
    if s.dtype == pl.Datetime or isinstance(s.dtype, pl.Datetime):
        s = s.dt.replace_time_zone(None) if getattr(s.dtype, "time_zone", None) else s
        return s.cast(pl.Datetime("ms")).to_numpy()
    return s.cast(pl.Int64).to_numpy().astype("datetime64[ms]")


def _ms(values) -> np.ndarray:
    s = values if isinstance(values, pl.Series) else pl.Series(values)
    if isinstance(s.dtype, pl.Datetime):
        return s.dt.epoch("ms").to_numpy()
    return s.cast(pl.Int64).to_numpy()


def _bar_width_days(ts_ms: np.ndarray) -> float:
    u = np.unique(ts_ms)
    step = float(np.median(np.diff(u))) if len(u) > 1 else 60_000.0
    return step / DAY_MS * 0.9


def symbol_order(bars: pl.DataFrame, event_symbols=()) -> list[str]:
    """Symbols of the result, by liquidated notional (largest first)."""
    c = BAR_COLS
    if c["symbol"] is None:
        return [""]
    syms = bars[c["symbol"]].unique(maintain_order=True).to_list()
    if event_symbols:  # the catalogue's order (BTC first): the reader's reference
        return [x for x in event_symbols if x in syms] + [x for x in syms if x not in event_symbols]
    if c["long"] and c["short"]:
        tot = bars.group_by(c["symbol"]).agg((pl.col(c["long"]).fill_null(0) + pl.col(c["short"]).fill_null(0)).sum().alias("n"))
        rank = dict(zip(tot[c["symbol"]].to_list(), tot["n"].to_list()))
        syms.sort(key=lambda s: (-(rank.get(s) or 0.0), list(event_symbols).index(s) if s in event_symbols else 99, s))
    return syms


def side_sign(df: pl.DataFrame, col: str | None) -> pl.DataFrame:
    """Add ``_side`` = +1 long / -1 short whether ``col`` holds numbers or "long"/"short"."""
    if col is None:
        return df.with_columns(pl.lit(0, pl.Int8).alias("_side"))
    if df.schema[col] == pl.String:
        e = pl.when(pl.col(col).str.to_lowercase().str.starts_with("l")).then(1).when(pl.col(col).str.to_lowercase().str.starts_with("s")).then(-1).otherwise(0)
    else:
        e = pl.col(col).sign()
    return df.with_columns(e.cast(pl.Int8).alias("_side"))


def short_sym(symbol: str) -> str:
    """``BTC/USDT:USDT`` -> ``BTCUSDT``; a further venue's key ``BTC/USDT:USDT@bybit`` -> ``BTCUSDT@bybit``."""
    if not symbol:
        return "all"
    sym, _, venue = symbol.partition("@")
    return sym.split(":")[0].replace("/", "") + (f"@{venue}" if venue else "")


def common_bucket_ms(bars: pl.DataFrame) -> int:
    """The coarsest bar length among the symbols (symbols may have 1m, 5m or 15m bars), so that
    sums over symbols compare like with like."""
    c = BAR_COLS
    step = 60_000
    groups = [bars] if c["symbol"] is None else [bars.filter(pl.col(c["symbol"]) == s) for s in bars[c["symbol"]].unique().to_list()]
    for g in groups:
        u = np.unique(_ms(g[c["ts"]]))
        if len(u) > 1:
            step = max(step, int(np.median(np.diff(u))))
    return step


def _per_symbol(bars, symbol):
    c = BAR_COLS
    if c["symbol"] is None or not symbol:
        return bars.sort(c["ts"])
    return bars.filter(pl.col(c["symbol"]) == symbol).sort(c["ts"])


# ---------------------------------------------------------------------------------------------
# page 1: title, scenario, provenance
# ---------------------------------------------------------------------------------------------
def title_page(event, summary: dict, params: dict, provenance: list[str], *, version: str, date_text: str, mode_note: str,
               contents: list[str] | None = None, liq_range: tuple[float, float] | None = None,
               seed_spread: float | None = None, n_seeds: int = 0, seed_positions: int | None = None,
               predictive: dict[str, str] | None = None, fit_note: str | None = None):
    """``liq_range``: (lowest, highest) liquidated notional in USD over a sweep, shown
    beside the headline figure so the reader sees how far the assumptions move it;
    ``predictive``: headline label -> its posterior predictive 'median [90 % band]' (a third
    column) and ``fit_note`` which parameters are fitted and which sourced (under the table);
    ``seed_spread``: half the range over ``n_seeds`` population seeds, relative (sampling noise),
    measured on ``seed_positions`` positions per symbol (an upper bound for larger populations)."""
    from backtest.results import estimated_open_interest

    fig = new_figure()
    fig.set_layout_engine("none")
    fig.text(0.05, 0.93, "Liquidation-cascade backtest", fontsize=22, fontweight="bold", va="top")
    fig.text(0.05, 0.875, wrap(event.name, 95), fontsize=13, va="top")
    sub = (
        f"Event {event.id}  ·  {event.exchange}  ·  replay window {iso(event.start_ms)} → {iso(event.end_ms)}\n"
        f"Symbols: {', '.join(event.symbols)}"
        + "".join(f"; {v.exchange}: {len(v.symbols)}" + (" (PROXY bars)" if v.path_proxy else "") for v in getattr(event, "venues", ()))
        + "\n"
        f"Population built over the lookback {iso(event.lookback_start_ms)} → {iso(event.start_ms)}"
    )
    fig.text(0.05, 0.815, sub, fontsize=9.5, va="top", color="#333333", linespacing=1.5)

    # headline results
    s = summary
    n_est, n_symbols = estimated_open_interest(s)
    lines = [
        ("positions simulated", f"{int(s.get('positions', 0)):,}"),
        ("open notional before the event", usd(s.get("open_notional_usd"))
         + (f"  ({n_est} of {n_symbols} symbols' open interest estimated)" if n_est else "")),
        ("liquidated notional", usd(s.get("liquidated_notional_usd"))
         + (f"  (sweep {usd(liq_range[0])}–{usd(liq_range[1])}" if liq_range else "")
         + (("; " if liq_range else "  (") + f"{n_seeds} seeds" + (f" at {seed_positions // 1000:,}k/symbol" if seed_positions else "")
            + f" ±{100 * seed_spread:.1f} %" if seed_spread is not None else "")
         + (")" if liq_range or seed_spread is not None else "")),
        ("  of which longs / shorts", f"{usd(s.get('long_liquidated_usd'))} / {usd(s.get('short_liquidated_usd'))}"),
        ("long share of liquidations", _pct(s.get("long_share"))),
        ("peak minute (UTC)", f"{str(s.get('peak_minute', '—')).replace('T', ' ')[:16]}  ({usd(s.get('peak_minute_notional_usd'), 1)})"),
        ("max cascade depth (rounds)", f"{s.get('max_cascade_depth', '—')}"),
        ("amplification of the drawdown", _num(s.get("amplification"))),
        ("ADL notional", usd(s.get("adl_notional_usd"))),
        ("insurance fund, minimum", usd(s.get("insurance_fund_min_usd"))),
        ("seed", f"{s.get('seed', '—')}"),
    ]
    fig.text(0.05, 0.70, "Headline results", fontsize=12, fontweight="bold", va="top")
    fig.text(0.05, 0.672, mode_note, fontsize=8, va="top", color=GREY)
    if predictive is None:
        over, _ = draw_table(fig, (0.05, 0.232, 0.42, 0.423), ["figure", "simulated"], lines, [30, 40], fontsize=8.5)
    else:
        rows3 = [(a, b, predictive.get(a, "")) for a, b in lines]
        over, y_end = draw_table(fig, (0.05, 0.232, 0.46, 0.423), ["figure", "this run (parameters shown)", "predictive median [90 %]"],
                                 rows3, [33, 36, 35], fontsize=6.8)  # a wrapped line of 36 characters of 6.8 pt fits its column
    if over:  # never drop a headline silently
        fig.text(0.05, 0.226, f"(+{len(over)} more in summary.json)", fontsize=7, color=GREY, va="top")
    if fit_note:
        top = (y_end if predictive is not None else 0.232) - 0.006
        draw_notes(fig, [fit_note], top=top, bottom=0.222, left=0.05, width=0.46)

    # scenario parameters: the main knobs here, every parameter on the appendix page
    fig.text(0.53, 0.70, "Scenario parameters", fontsize=12, fontweight="bold", va="top")
    fig.text(0.53, 0.672, f"main knobs ('auto' = derived from the data); all {len(params)} are on the last page", fontsize=8, va="top", color=GREY)
    keys = [k for k in KEY_PARAMS if k in params] or sorted(params)
    items = [(k, fmt_value(params[k])) for k in keys]
    half = math.ceil(len(items) / 2)
    left, right = items[:half], items[half:]
    rows = [(a[0], a[1], *(right[i] if i < len(right) else ("", ""))) for i, a in enumerate(left)]
    over, _ = draw_table(fig, (0.53, 0.42, 0.42, 0.235), ["parameter", "value", "parameter", "value"], rows, [20, 15, 20, 15], fontsize=7.5)
    if over:
        fig.text(0.53, 0.405, f"(+{len(over)} more rows on the last page)", fontsize=7.5, color=GREY)
    if contents:
        fig.text(0.53, 0.39, "What the next pages show", fontsize=12, fontweight="bold", va="top")
        text = "\n".join(wrap(f"• {c}", 94) for c in contents[:8])
        fig.text(0.53, 0.36, text, fontsize=7.4, va="top", linespacing=1.3)

    # provenance and version
    fig.text(0.05, 0.213, "Data provenance", fontsize=12, fontweight="bold", va="top")
    # up to 9 lines end above the footer (6.8 pt x 1.25 lines on the page's height)
    fig.text(0.05, 0.184, "\n".join(wrap(p, 150) for p in provenance[:9]), fontsize=6.8, va="top", family="DejaVu Sans Mono", linespacing=1.25)
    fig.text(
        0.05, 0.012,
        f"cascade-backtest {version}  ·  report date {date_text}  ·  all times UTC  ·  money in USD, prices in USDT",
        fontsize=8, color=GREY,
    )
    return fig


#: parameters shown on the title page (when the simulation has them)
KEY_PARAMS = (
    "seed", "n_positions", "long_share", "leverage_scale", "oi_scale", "open_interest_usd", "isolated_share", "stop_share",
    "impact_model", "impact_coef", "depth_multiplier", "liquidity_multiplier", "impact_half_life_s", "insurance_fund_usd",
)


#: the appendix's words for results.oi_source_kind
OI_KIND_TEXT = {
    "published": "published level",
    "estimate": "estimate (see notes)",
    "store": "stored history",
    "parameter": "--set parameter",
    "unknown": "unknown",
}


#: the legend of the parameters page's tags (:func:`param_basis`)
BASIS_LEGEND = (
    "fitted: a posterior median of the fit over the training events (data/calibration/defaults.toml, with its 90 % band and the "
    "command that refits it; long_share: the fallback where the store has no long/short ratio, 'auto' = the stored ratio, sourced). "
    "prior: assumed, with a prior (backtest/calibration/priors.py; the Sobol page varies it). Untagged: sourced or an assumption "
    "with its basis (population_params.PARAM_SOURCES, sim_params.py, accounts_params.PARAM_SOURCES) or a numerical setting."
)


def param_basis(name: str) -> str:
    """'fitted', 'prior' or '' for a parameter name: how the report tags its value."""
    from backtest.calibration.priors import PRIORS
    from backtest.fitted_defaults import FITTED

    return "fitted" if name in FITTED else "prior" if name in PRIORS else ""


def appendix_page(summary: dict, params: dict, title: str):
    """Every resolved parameter, tagged fitted / prior (:func:`param_basis`), on a page of its own
    (the report's last page)."""
    fig = new_figure()
    fig.set_layout_engine("none")
    fig.text(0.04, 0.95, title, fontsize=15, fontweight="bold", va="top")
    items = [(k, fmt_value(v) + (f"  · {tag}" if (tag := param_basis(k)) else "")) for k, v in sorted(params.items())]
    # three (parameter, value) column pairs, filled column by column
    per_col = math.ceil(len(items) / 3)
    cols3 = [items[c * per_col:(c + 1) * per_col] for c in range(3)]
    rows = [tuple(x for c in cols3 for x in (c[i] if i < len(c) else ("", ""))) for i in range(per_col)]
    fig.text(0.04, 0.905, "Resolved parameters", fontsize=11, fontweight="bold", va="top")
    over, y = draw_table(fig, (0.04, 0.16, 0.92, 0.72), ["parameter", "value"] * 3, rows, [24, 24] * 3, fontsize=7.0)
    if over:  # never silently: say where the rest is
        n_more = sum(1 for r in over for k in r[0::2] if k)
        fig.text(0.04, y - 0.008, f"(+{n_more} parameters more in summary.json, under params)", fontsize=7, color=GREY, va="top")
        y -= 0.02
    draw_notes(fig, [BASIS_LEGEND], top=y - 0.02, bottom=0.035)
    return fig


def inputs_page(summary: dict, title: str):
    """The per-symbol inputs (price source, bars, gaps, population, where the open interest came
    from, liquidity) and the simulation's notes."""
    fig = new_figure()
    fig.set_layout_engine("none")
    fig.text(0.04, 0.95, title, fontsize=15, fontweight="bold", va="top")
    y = 0.905
    per = summary.get("per_symbol") or {}
    if per:
        fig.text(0.04, y, "Inputs per symbol", fontsize=11, fontweight="bold", va="top")
        cols = ["symbol", "price path", "bars", "gaps", "positions", "open interest from", "open notional", "daily σ", "daily volume"]
        prow = []
        for sym, v in per.items():
            gaps = v.get("gaps")
            gtxt = str(len(gaps)) if isinstance(gaps, (list, tuple)) else ("—" if gaps is None else str(gaps))
            prow.append((
                short_sym(sym),  # a venue other than the primary one is in the key (BTCUSDT@bybit)
                f"{v.get('price_source', '—')} {v.get('timeframe', '')}".strip(), f"{v.get('bars', '—')}", gtxt,
                f"{int(v['positions']):,}" if v.get("positions") is not None else "—", OI_KIND_TEXT.get(v.get("open_interest_kind"), "—"),
                usd(v.get("open_notional_usd")), _pct(v.get("sigma_daily")), usd(v.get("volume_daily_usd")),
            ))
        top = y - 0.035
        # the notes keep the lower part of the page (a multi-venue run has more of them)
        floor = 0.38 if len(summary.get("venues") or {}) > 1 else 0.3
        over, y = draw_table(fig, (0.04, floor, 0.92, top - floor), cols, prow, [14, 25, 5, 5, 10, 20, 10, 6, 10], fontsize=6.8)
        if over:
            fig.text(0.04, y - 0.008, f"(+{len(over)} symbols more in summary.json, under per_symbol)", fontsize=7, color=GREY, va="top")
            y -= 0.02
    notes = summary.get("notes") or []
    if notes:
        draw_notes(fig, ["Notes from the simulation:"] + ["• " + n for n in notes], top=y - 0.02, bottom=0.035)
    return fig


def draw_notes(fig, lines: list[str], *, top: float, bottom: float, left: float = 0.04, width: float = 0.92) -> None:
    """Write wrapped text lines between ``top`` and ``bottom`` (figure fractions): one column at
    7.2 pt if they fit, else two columns, else a smaller font (down to 5 pt), never past ``bottom``."""
    fig_h_pt = fig.get_figheight() * 72.0
    fig_w_pt = fig.get_figwidth() * 72.0
    for fontsize in (7.2, 6.6, 6.0, 5.5, 5.0):
        line_h = fontsize * 1.25 / fig_h_pt
        for ncols in (1, 2):
            col_w = (width - 0.02 * (ncols - 1)) / ncols
            chars = max(30, int(col_w * fig_w_pt / (0.55 * fontsize)))
            wrapped = [w for ln in lines for w in wrap(ln, chars).split("\n")]
            per_col = math.ceil(len(wrapped) / ncols)
            if per_col * line_h <= top - bottom or fontsize == 5.0 and ncols == 2:
                per_col = min(per_col, max(1, int((top - bottom) / line_h)))
                for c in range(ncols):
                    chunk = wrapped[c * per_col:(c + 1) * per_col]
                    if chunk:
                        fig.text(left + c * (col_w + 0.02), top, "\n".join(chunk), fontsize=fontsize, va="top",
                                 color="#333333", linespacing=1.25)
                return


def _pct(x) -> str:
    try:
        return f"{100 * float(x):.1f} %"
    except (TypeError, ValueError):
        return "—"


def _num(x) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "—"
    return "—" if v != v else f"{v:,.3g}"


def _metric_value(metric: str | None, v) -> str:
    if v is None:
        return "—"
    if metric and ("share" in metric):
        return _pct(v)
    if metric and metric.endswith("_usd") or isinstance(v, float) and abs(v) >= 1e5:
        return usd(v)
    return f"{v:,}" if isinstance(v, (int, float)) else str(v)


# ---------------------------------------------------------------------------------------------
# page: per venue (multi-venue runs)
# ---------------------------------------------------------------------------------------------
def _venue_of(summary: Any, scope: Any) -> Any:
    """The venue's result in ``summary`` when ``scope`` names one venue of a multi-venue run, else
    the summary itself (the event total)."""
    if not summary:
        return summary
    venues = summary.get("venues") or {}
    return venues[scope] if len(venues) > 1 and scope in venues else summary


def venue_rows(event, replay: Any, cascade: Any) -> list[tuple]:
    """One row per venue of a multi-venue run: its inputs and results (replay, cascade) beside
    the venue's published liquidations (the event's figures whose ``scope`` is that exchange)."""
    rows = []
    venues = (cascade.get("venues") or {}) if cascade else {}
    rvenues = (replay.get("venues") or {}) if replay else {}
    for ex, v in venues.items():
        r = rvenues.get(ex) or {}
        fig = next((f for f in event.figures if f.get("scope") == ex and f.get("metric") == "liquidated_notional_usd"), None)
        pub = fig.get("value_usd") if fig else None
        kinds = v.get("open_interest_kinds") or {}
        n_est = sum(k == "estimate" for k in kinds.values())
        oi = f"{len(kinds) - n_est} sourced, {n_est} estimated" if kinds else "—"
        path = f"PROXY: {v['path_proxy']}'s bars" if v.get("path_proxy") else "own bars"
        ratio = "—"
        if pub and v.get("liquidated_notional_usd") is not None:
            ratio = f"{float(v['liquidated_notional_usd']) / float(pub):.2f}×"
        src = (f"{fig.get('what', '')}; {fig.get('detail', '')}. Source: {fig.get('source', '')}" if fig else
               "no published figure for this venue in the catalogue")
        rows.append((
            ex, v.get("margin_rule") or "—", f"{len(v.get('symbols') or [])}: {', '.join(short_sym(x) for x in v.get('symbols') or [])}",
            path, oi, usd(v.get("open_notional_usd")), usd(r.get("liquidated_notional_usd")), usd(v.get("liquidated_notional_usd")),
            _pct(v.get("long_share")), usd(v.get("adl_notional_usd")), usd(v.get("insurance_fund_min_usd")),
            usd(pub) if pub else "—", ratio, src,
        ))
    return rows


def venue_page(event, replay: Any, cascade: Any, title: str):
    """Per-venue results of a multi-venue run beside each venue's published liquidations."""
    fig = new_figure()
    fig.set_layout_engine("none")
    fig.text(0.04, 0.95, title, fontsize=15, fontweight="bold", va="top")
    note = (
        "Each venue is simulated with its own population (sized from its own open interest: stored, published, or an estimate "
        "named in summary.json), its own margin rule, ADL ranking and funding, on its own bars (a proxy exchange's bars where it "
        "has none, marked PROXY); each venue's insurance fund covers only its own positions. Published figures are CoinGlass "
        "24-hour totals over ALL of a venue's symbols, the simulation holds a few symbols over 4 hours: a published figure is "
        "an order of magnitude to compare with, not a target met or missed. Hyperliquid liquidated the most ($10.3B, same "
        "source) but has no stored bars and no sourced per-coin open interest: it is not simulated here."
    )
    fig.text(0.04, 0.905, wrap(note, 165), fontsize=8.5, va="top", color="#333333", linespacing=1.4)
    fig.text(0.04, 0.775, "long share, ADL and fund minimum: cascade scenario. open interest: symbols whose level is sourced "
             "(store or catalogue) or estimated (summary.json per_symbol.open_interest_source says how).", fontsize=7.5, va="top", color=GREY)
    cols = ["venue", "margin rule", "symbols", "path", "open interest", "open notional", "replay liq.", "cascade liq.",
            "long share", "ADL", "fund min", "published 24 h", "cascade ÷ pub.", "published figure and source"]
    widths = [11, 7, 19, 8, 10, 9, 9, 9, 8, 8, 9, 10, 9, 30]
    over, y = draw_table(fig, (0.04, 0.06, 0.92, 0.69), cols, venue_rows(event, replay, cascade), widths, fontsize=7.0)
    if over:
        fig.text(0.04, y - 0.008, f"(+{len(over)} venues more in summary.json, under venues)", fontsize=7, color=GREY, va="top")
    return fig


# ---------------------------------------------------------------------------------------------
# page 3: price path, liquidations per bar, cascade rounds
# ---------------------------------------------------------------------------------------------
def price_page(bars: pl.DataFrame, replay_bars: pl.DataFrame | None, symbols: list[str], title: str):
    c = BAR_COLS
    fig = new_figure()
    gs = fig.add_gridspec(4, 1, height_ratios=[3, 2, 3, 1.6])
    ax0 = fig.add_subplot(gs[0])
    ax1 = fig.add_subplot(gs[1], sharex=ax0)
    ax2 = fig.add_subplot(gs[2], sharex=ax0)
    ax3 = fig.add_subplot(gs[3], sharex=ax0)
    fig.suptitle(title, fontsize=14, fontweight="bold")

    lead = symbols[0]
    b = _per_symbol(bars, lead)
    t = _dt(b[c["ts"]])
    if c["obs_low"] and c["obs_high"]:
        ax0.fill_between(t, b[c["obs_low"]].to_numpy(), b[c["obs_high"]].to_numpy(), color=GREY, alpha=0.4, step="post", label="observed bar range (low–high)")
    ax0.plot(t, b[c["close"]].to_numpy(), color=PRICE_C, lw=1.1, drawstyle="steps-post", label="simulated close")
    if c["low"] and c["low"] != c["obs_low"]:
        ax0.plot(t, b[c["low"]].to_numpy(), color=LONG_C, lw=0.8, ls="--", drawstyle="steps-post", label="simulated low (with forced-order impact)")
    ax0.set_title(f"{short_sym(lead)} price")
    ax0.set_ylabel("price (USDT)")
    ax0.legend(loc="lower left")

    for s in symbols:
        bs = _per_symbol(bars, s)
        cl = bs[c["close"]].to_numpy()
        op_col = c["obs_open"] or c["open"]
        op = bs[op_col].to_numpy()[0] if op_col else cl[0]
        ax1.plot(_dt(bs[c["ts"]]), 100 * (cl / op - 1), lw=1.0, label=short_sym(s))
    ax1.set_title("all symbols: change since the window opened")
    ax1.set_ylabel("change (%)")
    # room below the lowest line for the legend, so it never hides a low
    y0, y1 = ax1.get_ylim()
    ax1.set_ylim(y0 - 0.45 * (y1 - y0), y1)
    ax1.legend(loc="lower left", ncol=min(5, len(symbols)))

    bucket_ms = common_bucket_ms(bars)
    label = f"{bucket_ms // 60_000}-minute" if bucket_ms < 3_600_000 else f"{bucket_ms // 3_600_000}-hour"
    tb = pl.col(c["ts"]).dt.truncate(f"{bucket_ms // 1000}s")
    if c["long"] and c["short"]:
        agg = bars.group_by(tb.alias("_t")).agg(pl.col(c["long"]).fill_null(0).sum().alias("L"), pl.col(c["short"]).fill_null(0).sum().alias("S")).sort("_t")
        tt = _dt(agg["_t"])
        w = bucket_ms / DAY_MS * 0.9
        ax2.bar(tt, agg["L"].to_numpy(), width=w, color=LONG_C, label="longs liquidated", align="edge")
        ax2.bar(tt, -agg["S"].to_numpy(), width=w, color=SHORT_C, label="shorts liquidated (drawn below zero)", align="edge")
        ax2.axhline(0, color="black", lw=0.6)
        ax2.legend(loc="upper right")
    else:
        ax2.text(0.5, 0.5, "no per-bar liquidation columns in the result", transform=ax2.transAxes, ha="center")
    ax2.set_title(f"liquidated notional per {label} bucket, all symbols")
    ax2.set_ylabel(f"notional per {label} bucket (USD)")
    from matplotlib.ticker import FuncFormatter

    ax2.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: usd(abs(v), 1) if v else "0"))

    if c["rounds"]:
        agg = bars.group_by(tb.alias("_t")).agg(pl.col(c["rounds"]).max().alias("r")).sort("_t")
        ax3.bar(_dt(agg["_t"]), agg["r"].to_numpy(), width=bucket_ms / DAY_MS * 0.9, color="#8e44ad", align="edge", label="most cascade rounds in one bar (any symbol)")
        ax3.legend(loc="upper right")
    ax3.set_title(f"cascade rounds (feedback rounds within a bar), per {label} bucket")
    ax3.set_ylabel("rounds")
    time_axis(ax3)
    for ax in (ax0, ax1, ax2):
        ax.tick_params(labelbottom=False)
    return fig


# ---------------------------------------------------------------------------------------------
# page 4: liquidation heatmap (price x time)
# ---------------------------------------------------------------------------------------------
def heatmap_page(heat: pl.DataFrame, bars: pl.DataFrame, symbol: str, title: str, bucket_ms: int | None = None):
    from matplotlib.colors import LogNorm

    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    fig.suptitle(title, fontsize=14, fontweight="bold")
    hc = HEAT_COLS
    h = heat.with_columns((pl.col("long_usd") + pl.col("short_usd")).alias("_n"))
    if hc["symbol"] and symbol:
        h = h.filter(pl.col(hc["symbol"]) == symbol)
    if h.height == 0 or not all(hc[k] for k in ("ts", "plo", "n")):
        ax.text(0.5, 0.5, f"no liquidations in the heatmap for {short_sym(symbol)}", transform=ax.transAxes, ha="center")
        ax.set_xlabel("time (UTC)")
        ax.set_ylabel("price (USDT)")
        return fig
    h = h.group_by(hc["ts"], hc["plo"], *([hc["phi"]] if hc["phi"] else [])).agg(pl.col(hc["n"]).sum().alias("n"))
    ts = np.unique(_ms(h[hc["ts"]]))
    step_t = int(bucket_ms or (np.min(np.diff(ts)) if len(ts) > 1 else 60_000))
    bt = _ms(bars[BAR_COLS["ts"]]) if bars is not None and bars.height else ts
    t0 = min(ts.min(), bt.min())
    t1 = max(ts.max() + step_t, bt.max() + 60_000)
    t_edges = np.arange(t0 - ((t0 - ts.min()) // step_t) * step_t if t0 < ts.min() else ts.min(), t1 + step_t, step_t)
    lo = np.unique(h[hc["plo"]].to_numpy())
    if hc["phi"]:
        step_p = float(np.median(h[hc["phi"]].to_numpy() - h[hc["plo"]].to_numpy()))
    else:
        step_p = float(np.median(np.diff(lo))) if len(lo) > 1 else max(abs(lo[0]) * 0.001, 1e-9)
    p_edges = np.arange(lo.min(), lo.max() + 1.5 * step_p, step_p)
    Z = np.zeros((len(p_edges) - 1, len(t_edges) - 1))
    ti = np.clip(np.searchsorted(t_edges, _ms(h[hc["ts"]]), side="right") - 1, 0, Z.shape[1] - 1)
    pi = np.clip(np.floor((h[hc["plo"]].to_numpy() - lo.min()) / step_p + 1e-6).astype(int), 0, Z.shape[0] - 1)
    np.add.at(Z, (pi, ti), h["n"].to_numpy())
    Zm = np.ma.masked_less_equal(Z, 0)
    vmax = float(Z.max()) if Z.max() > 0 else 1.0
    mesh = ax.pcolormesh(t_edges.astype("datetime64[ms]"), p_edges, Zm, cmap="inferno_r", norm=LogNorm(vmin=max(vmax * 1e-4, 1.0), vmax=vmax), shading="flat")
    cb = fig.colorbar(mesh, ax=ax, pad=0.01)
    cb.set_label("liquidated notional per cell (USD)")
    from matplotlib.ticker import FuncFormatter

    cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: usd(v, 0)))
    cb.ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _p: ""))
    if bars is not None:
        b = _per_symbol(bars, symbol)
        c = BAR_COLS
        lows = [float(b[k].min()) for k in (c["low"], c["obs_low"]) if k]
        highs = [float(b[k].max()) for k in (c["high"], c["obs_high"]) if k]
        if lows and highs:
            lo_y, hi_y = min(lows), max(highs)
            pad = 0.02 * (hi_y - lo_y) + 1e-12
            ax.set_ylim(lo_y - pad, hi_y + pad)
        ax.plot(_dt(b[c["ts"]]), b[c["close"]].to_numpy(), color=PRICE_C, lw=1.0, drawstyle="steps-post", label=f"{short_sym(symbol)} close")
        if c["low"]:
            ax.plot(_dt(b[c["ts"]]), b[c["low"]].to_numpy(), color=PRICE_C, lw=0.6, ls=":", drawstyle="steps-post", label="bar low")
        ax.legend(loc="upper right")
    ax.set_ylabel(f"{short_sym(symbol)} price (USDT); cells {step_p:,.4g} USDT high")
    time_axis(ax, f"time (UTC), {step_t // 60_000}-minute buckets")
    ax.set_title("where and when positions were liquidated (cell colour: notional, log scale)", fontsize=10, fontweight="normal")
    return fig


# ---------------------------------------------------------------------------------------------
# page 5: pre-event liquidation map with clusters
# ---------------------------------------------------------------------------------------------
def liqmap_page(liq_map: pl.DataFrame, clusters: pl.DataFrame | None, bars: pl.DataFrame, symbols: list[str], title: str, *, span: float = 0.3):
    """Open notional by liquidation price before the event (longs red, shorts green) for the top
    two symbols, within ``span`` of the opening price, with the clusters marked and listed."""
    fig = new_figure()
    fig.suptitle(title, fontsize=14, fontweight="bold")
    lc, cc = MAP_COLS, CLUSTER_COLS
    liq_map = side_sign(liq_map, lc["side"])
    if clusters is not None:
        clusters = side_sign(clusters, cc["side"])
    shown = symbols[:2]
    gs = fig.add_gridspec(len(shown), 2, width_ratios=[3.1, 1])
    bc = BAR_COLS
    for i, s in enumerate(shown):
        ax = fig.add_subplot(gs[i, 0])
        tx = fig.add_subplot(gs[i, 1])
        tx.axis("off")
        m = liq_map.filter(pl.col(lc["symbol"]) == s) if lc["symbol"] else liq_map
        b = _per_symbol(bars, s)
        p0 = None
        if b.height:
            p0 = float(b[bc["obs_open"] or bc["open"]][0])
        if p0 is not None and lc["plo"]:
            m = m.filter((pl.col(lc["plo"]) >= p0 * (1 - span)) & (pl.col(lc["plo"]) <= p0 * (1 + span)))
        if m.height == 0 or not (lc["plo"] and lc["n"]):
            ax.text(0.5, 0.5, "no open positions mapped", transform=ax.transAxes, ha="center")
        else:
            lo = m[lc["plo"]].to_numpy()
            hi = m[lc["phi"]].to_numpy() if lc["phi"] else None
            u = np.unique(lo)
            step = float(np.median(hi - lo)) if hi is not None else (float(np.median(np.diff(u))) if len(u) > 1 else 1.0)
            for side, col, lab in ((1, LONG_C, "longs: open notional liquidated at this price"), (-1, SHORT_C, "shorts: open notional liquidated at this price")):
                ms = m.filter(pl.col("_side") == side)
                if ms.height:
                    ax.bar(ms[lc["plo"]].to_numpy(), ms[lc["n"]].to_numpy(), width=step, align="edge", color=col, alpha=0.85, label=lab)
        if p0 is not None:
            lo_path = float(b[bc["low"]].min()) if bc["low"] else p0
            hi_path = float(b[bc["high"]].max()) if bc["high"] else p0
            ax.axvspan(lo_path, hi_path, color=GREY, alpha=0.18, label=f"range of the simulated path ({lo_path:,.6g}–{hi_path:,.6g})")
            ax.axvline(p0, color=PRICE_C, lw=1.3, label=f"price at window open ({p0:,.6g})")
            ax.set_xlim(p0 * (1 - span), p0 * (1 + span))
        lines = [f"{short_sym(s)}: largest clusters", "(ranges where liquidation", " prices concentrate)", ""]
        if clusters is not None and clusters.height and cc["lo"] and cc["hi"]:
            cs = clusters.filter(pl.col(cc["symbol"]) == s) if cc["symbol"] else clusters
            if cc["n"]:
                cs = cs.sort(cc["n"], descending=True)
            if p0 is not None:
                cs = cs.filter((pl.col(cc["hi"]) >= p0 * (1 - span)) & (pl.col(cc["lo"]) <= p0 * (1 + span)))
            placed: list[float] = []  # label centres already drawn, in axis fractions
            x0, x1 = ax.get_xlim()
            for j, row in enumerate(cs.head(5).iter_rows(named=True), 1):
                side = row["_side"]
                col = LONG_C if side == 1 else SHORT_C if side == -1 else GREY
                ax.axvspan(row[cc["lo"]], row[cc["hi"]], ymin=0.0, ymax=1.0, facecolor="none", hatch="///", edgecolor=col, lw=0.0, alpha=0.6)
                mid = (row[cc["lo"]] + row[cc["hi"]]) / 2
                fx = (mid - x0) / (x1 - x0) if x1 > x0 else 0.5
                # a label within 3 % of the axis width of one already drawn goes one line lower
                level = sum(1 for q in placed if abs(q - fx) < 0.03)
                placed.append(fx)
                ax.text(mid, 0.985 - 0.055 * level, f"C{j}", transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=8, fontweight="bold", color=col)
                reached = row.get(cc["reached"]) if cc["reached"] else None
                extra = []
                if cc["n"]:
                    extra.append(f"{usd(row[cc['n']], 1)} open")
                if cc["share"] and row[cc["share"]] is not None:
                    extra.append(f"{100 * row[cc['share']]:.0f}% of side")
                lines.append(f"C{j} {'long ' if side == 1 else 'short' if side == -1 else ''} {row[cc['lo']]:,.6g}–{row[cc['hi']]:,.6g}")
                lines.append("   " + ", ".join(extra))
                if reached is not None:
                    lines.append("   " + ("reached" if reached else "not reached") + (f", {usd(row[cc['liq']], 1)} liquidated" if cc["liq"] and reached else ""))
        else:
            lines.append("(no clusters in the result)")
        tx.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=7.8, family="DejaVu Sans Mono", transform=tx.transAxes)
        handles, labels = ax.get_legend_handles_labels()
        tx.legend(handles, labels, loc="lower left", fontsize=7, frameon=False, borderaxespad=0.0)
        lo_y, hi_y = ax.get_ylim()
        ax.set_ylim(0, hi_y * 1.1)
        ax.set_title(f"{short_sym(s)}: open positions by liquidation price before the event (±{span:.0%} of the opening price)", fontsize=10)
        ax.set_xlabel(f"{short_sym(s)} liquidation price (USDT)")
        ax.set_ylabel("open notional (USD)")
        usd_axis(ax)
    return fig


# ---------------------------------------------------------------------------------------------
# page 6: insurance fund and ADL
# ---------------------------------------------------------------------------------------------
def fund_page(bars: pl.DataFrame, summary: dict, title: str):
    """Insurance fund over time (stacked by the symbols' shares), ADL per bar, and the simulated
    open interest beside the observed one (each as a share of its window-start level)."""
    c = BAR_COLS
    fig = new_figure()
    fig.suptitle(title, fontsize=14, fontweight="bold")
    gs = fig.add_gridspec(3, 1, height_ratios=[3, 3, 2])
    ax0 = fig.add_subplot(gs[0])
    ax1 = fig.add_subplot(gs[1], sharex=ax0)
    ax2 = fig.add_subplot(gs[2], sharex=ax0)
    if c["fund"]:
        if c["symbol"]:
            wide = bars.pivot(on=c["symbol"], index=c["ts"], values=c["fund"], aggregate_function="first").sort(c["ts"]).fill_null(strategy="forward")
            syms = [x for x in wide.columns if x != c["ts"]]
            ax0.stackplot(_dt(wide[c["ts"]]), *[wide[x].fill_null(0).to_numpy() for x in syms], labels=[f"{short_sym(x)}'s share" for x in syms], alpha=0.8, step="post")
            ax0.legend(loc="lower left", ncol=min(5, len(syms)))
        else:
            b = bars.sort(c["ts"])
            ax0.plot(_dt(b[c["ts"]]), b[c["fund"]].to_numpy(), color=PRICE_C, lw=1.2, drawstyle="steps-post", label="insurance fund")
            ax0.legend(loc="lower left")
    else:
        ax0.text(0.5, 0.5, "the result has no insurance-fund column", transform=ax0.transAxes, ha="center")
    paid = ""
    if c["deficit"] in bars.columns:
        dper = bars.group_by(c["ts"]).agg(pl.col(c["deficit"]).fill_null(0).sum().alias("d")).sort(c["ts"])
        paid = f"; it paid {usd(float(dper['d'].sum()))} of gap deficits"
        if float(dper["d"].sum()) > 0:
            ax0d = ax0.twinx()
            ax0d.bar(_dt(dper[c["ts"]]), dper["d"].to_numpy(), width=_bar_width_days(_ms(dper[c["ts"]])), align="edge",
                     color="#c0392b", alpha=0.7, label="deficits the fund paid per bar (right axis)")
            ax0d.set_ylabel("deficits paid per bar (USD)")
            usd_axis(ax0d)
            ax0d.grid(False)
            ax0d.legend(loc="lower right")
    ax0.set_title(f"insurance fund balance, stacked by symbol (sum of the symbols' minima {usd(summary.get('insurance_fund_min_usd'))}{paid})")
    ax0.set_ylabel("fund balance (USD)")
    usd_axis(ax0)
    ax0.tick_params(labelbottom=False)
    if c["adl"] and float(bars[c["adl"]].fill_null(0).abs().sum()) == 0.0:
        ax1.text(0.5, 0.55, "no auto-deleveraging in this scenario: the insurance fund covered every deficit",
                 transform=ax1.transAxes, ha="center", va="center", fontsize=10, color=GREY)
        b = bars.sort(c["ts"])
        ax1.plot(_dt(b[c["ts"]]), np.zeros(b.height), color="#d35400", lw=0.8, label="ADL notional per bar (all symbols)")
        ax1.set_ylim(-0.05, 1)
        ax1.set_yticks([0])
        ax1.legend(loc="upper left")
    elif c["adl"]:
        per = bars.group_by(c["ts"]).agg(pl.col(c["adl"]).fill_null(0).sum().alias("a")).sort(c["ts"])
        t = _dt(per[c["ts"]])
        ax1.bar(t, per["a"].to_numpy(), width=_bar_width_days(_ms(per[c["ts"]])), align="edge", color="#d35400", label="ADL notional per bar (all symbols)")
        ax1b = ax1.twinx()
        ax1b.plot(t, np.cumsum(per["a"].to_numpy()), color="black", lw=1.0, label="cumulative ADL")
        ax1b.set_ylabel("cumulative ADL (USD)")
        usd_axis(ax1b)
        ax1b.grid(False)
        h1, l1 = ax1.get_legend_handles_labels()
        h2, l2 = ax1b.get_legend_handles_labels()
        ax1.legend(h1 + h2, l1 + l2, loc="upper left")
        if c["ranks"] in bars.columns:
            deepest = int(bars[c["ranks"]].fill_null(0).max() or 0)
            if deepest:
                ax1.text(0.99, 0.95, f"deepest ADL: the top {20 * deepest} % of the ranking ({deepest} of the 5 lights of Binance's and Bybit's ADL indicator)",
                         transform=ax1.transAxes, ha="right", va="top", fontsize=8, color=GREY)
    else:
        ax1.text(0.5, 0.5, "the result has no ADL column", transform=ax1.transAxes, ha="center")
    ax1.set_title(f"auto-deleveraging: profitable opposite positions closed when the fund cannot cover a deficit (total {usd(summary.get('adl_notional_usd'))})")
    ax1.set_ylabel("ADL notional per bar (USD)")
    usd_axis(ax1)
    ax1.tick_params(labelbottom=False)
    open_interest_axes(ax2, bars)
    time_axis(ax2)
    return fig


def open_interest_axes(ax, bars: pl.DataFrame) -> None:
    """Simulated open interest (``open_interest_usd``, solid) beside the observed series
    (``observed_open_interest_usd``, dashed) per symbol, each as % of its first bar's value:
    the symbols with an observed series, else every symbol's simulated one."""
    c = BAR_COLS
    if "open_interest_usd" not in bars.columns or not c["symbol"]:
        ax.text(0.5, 0.5, "the result has no open-interest column", transform=ax.transAxes, ha="center")
        return
    obs_col = "observed_open_interest_usd" if "observed_open_interest_usd" in bars.columns else None
    with_obs = [] if obs_col is None else bars.filter(pl.col(obs_col).is_not_null())[c["symbol"]].unique().sort().to_list()
    shown = with_obs or symbol_order(bars)
    for k, sym in enumerate(shown):
        b = bars.filter(pl.col(c["symbol"]) == sym).sort(c["ts"])
        t = _dt(b[c["ts"]])
        color = f"C{k % 10}"
        for col, ls_, lab in (("open_interest_usd", "-", "simulated"), (obs_col, "--", "observed")):
            if col is None or (col == obs_col and sym not in with_obs):
                continue
            v = b[col].cast(pl.Float64).fill_null(np.nan).to_numpy()
            fin = np.flatnonzero(np.isfinite(v) & (v > 0))
            if fin.size:
                ax.plot(t, 100.0 * v / v[fin[0]], color=color, ls=ls_, lw=1.1, label=f"{short_sym(sym)} {lab}")
    ax.axhline(100.0, color=GREY, lw=0.6)
    ax.set_ylabel("% of window start")
    ax.set_title("open interest: simulated (positions open after each bar's exits, openings and closes) "
                 + ("beside the observed series (dashed)" if with_obs else "(no observed series in the store)"), fontsize=9)
    if ax.get_legend_handles_labels()[0]:  # nothing plotted (no positive open interest): no legend
        ax.legend(loc="lower left", ncol=min(6, 2 * max(1, len(shown))), fontsize=7)


# ---------------------------------------------------------------------------------------------
# sweep heatmaps (report's sensitivity page and the sweep command's PDF)
# ---------------------------------------------------------------------------------------------
def metric_label(metric: str) -> str:
    return metric.replace("_usd", " (USD)").replace("_", " ")


def _axis_values(vals) -> list:
    return sorted(set(vals), key=lambda v: (isinstance(v, str), v))


def heatmap_axes(ax, df: pl.DataFrame, x: str, y: str, metric: str, *, agg: str = "mean", annotate: bool = True):
    """Draw ``metric`` over the grid of parameters ``x`` × ``y`` (other parameters averaged)."""
    g = df.group_by(x, y).agg(getattr(pl.col(metric), agg)().alias("v"))
    xs = _axis_values(g[x].to_list())
    ys = _axis_values(g[y].to_list())
    Z = np.full((len(ys), len(xs)), np.nan)
    for xv, yv, v in g.select(x, y, "v").iter_rows():
        Z[ys.index(yv), xs.index(xv)] = np.nan if v is None else v
    im = ax.imshow(Z, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(xs)), [fmt_value(v) for v in xs])
    ax.set_yticks(range(len(ys)), [fmt_value(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(False)
    if annotate and Z.size <= 144:
        fin = Z[np.isfinite(Z)]
        mid = (fin.min() + fin.max()) / 2 if fin.size else 0
        for (i, j), v in np.ndenumerate(Z):
            if np.isfinite(v):
                txt = usd(v, 1) if metric.endswith("_usd") else f"{v:.3g}"
                ax.text(j, i, txt, ha="center", va="center", fontsize=8.5, color="white" if v < mid else "black")
    return im


def sweep_heatmap_figure(df: pl.DataFrame, x: str, y: str, metric: str, title: str, note: str = ""):
    fig = new_figure()
    fig.suptitle(title, fontsize=14, fontweight="bold")
    ax = fig.add_subplot(1, 1, 1)
    im = heatmap_axes(ax, df, x, y, metric)
    cb = fig.colorbar(im, ax=ax)
    cb.set_label(metric_label(metric))
    if metric.endswith("_usd"):
        cb.formatter = __import__("matplotlib.ticker", fromlist=["FuncFormatter"]).FuncFormatter(lambda v, _p: usd(v, 1))
        cb.update_ticks()
    ax.set_title(note or f"{metric_label(metric)} by {x} and {y}", fontsize=10, fontweight="normal")
    return fig
