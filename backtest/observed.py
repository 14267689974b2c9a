"""Observed vs simulated liquidations, minute by minute.

Observed: the store's ``liquidations`` dataset (forced orders published by the exchange, fetched
with ``download --datasets liquidations`` or recorded with ``record liquidations``). Simulated:
the ``liquidations`` frame of a replay/cascade run (:class:`backtest.simulate.SimResult`), rows
with ``exit == "liquidated"``. Both in USD notional, per UTC minute, long (+1) and short (-1)
liquidated positions apart.

Feeds that publish at most one order per symbol per second (Binance, OKX) give lower bounds;
:func:`caveats` returns their notes (from the store's ``feeds.json`` sidecar) for captions.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from backtest.store import TS

#: the per-minute frame (:func:`per_minute`); USD notional, ``minute`` the minute's start (UTC)
PER_MINUTE_SCHEMA: dict[str, Any] = {
    "minute": TS,
    "symbol": pl.String,
    "observed_long_usd": pl.Float64,
    "observed_short_usd": pl.Float64,
    "observed_orders": pl.Int64,
    "simulated_long_usd": pl.Float64,
    "simulated_short_usd": pl.Float64,
}

_MINUTE_MS = 60_000


def observed_rows(store, exchange: str, symbols: list[str], start_ms: int, end_ms: int) -> pl.DataFrame:
    """Stored forced orders of ``symbols`` in ``[start_ms, end_ms)``: ts, symbol, side, notional_usd."""
    frames = [store.read("liquidations", exchange=exchange, symbol=s, timeframe="event", start=start_ms, end=end_ms)
              .select("ts", "symbol", "side", "notional_usd") for s in symbols]
    return pl.concat(frames) if frames else pl.DataFrame(schema={"ts": TS, "symbol": pl.String, "side": pl.Int8, "notional_usd": pl.Float64})


def _by_minute(df: pl.DataFrame, prefix: str, count: bool = False) -> pl.DataFrame:
    aggs = [
        pl.col("notional_usd").filter(pl.col("side") == 1).sum().alias(f"{prefix}_long_usd"),
        pl.col("notional_usd").filter(pl.col("side") == -1).sum().alias(f"{prefix}_short_usd"),
    ]
    if count:
        aggs.append(pl.len().cast(pl.Int64).alias(f"{prefix}_orders"))
    return df.with_columns(pl.col("ts").dt.truncate("1m").alias("minute")).group_by("minute", "symbol").agg(aggs)


def per_minute(observed: pl.DataFrame, simulated: pl.DataFrame, start_ms: int, end_ms: int) -> pl.DataFrame:
    """One row per (minute, symbol) of ``[start_ms, end_ms)`` for every symbol in either frame,
    zeros where nothing happened (:data:`PER_MINUTE_SCHEMA`).

    ``observed``: ts, symbol, side, notional_usd (store rows); ``simulated``: a run's
    liquidations frame (ts, symbol, side, exit, notional_usd), of which only ``liquidated`` exits
    count (stops and ADL are not forced orders an exchange publishes)."""
    sim = simulated.filter(pl.col("exit") == "liquidated") if "exit" in simulated.columns else simulated
    sim = sim.select(pl.col("ts").cast(TS), "symbol", pl.col("side").cast(pl.Int8), pl.col("notional_usd").cast(pl.Float64))
    obs = observed.select(pl.col("ts").cast(TS), "symbol", pl.col("side").cast(pl.Int8), pl.col("notional_usd").cast(pl.Float64))
    window = (pl.col("ts") >= pl.lit(start_ms).cast(TS)) & (pl.col("ts") < pl.lit(end_ms).cast(TS))
    obs, sim = obs.filter(window), sim.filter(window)
    symbols = sorted(set(obs["symbol"].to_list()) | set(sim["symbol"].to_list()))
    first = start_ms // _MINUTE_MS * _MINUTE_MS
    minutes = pl.Series("minute", list(range(first, end_ms, _MINUTE_MS)), dtype=pl.Int64).cast(TS)
    grid = pl.DataFrame({"minute": minutes}).join(pl.DataFrame({"symbol": symbols}, schema={"symbol": pl.String}), how="cross")
    out = (grid.join(_by_minute(obs, "observed", count=True), on=["minute", "symbol"], how="left")
           .join(_by_minute(sim, "simulated"), on=["minute", "symbol"], how="left")
           .fill_null(0))
    return out.select([pl.col(c).cast(t) for c, t in PER_MINUTE_SCHEMA.items()]).sort("symbol", "minute")


def observed_vs_simulated(store, exchange: str, symbols: list[str], start_ms: int, end_ms: int, simulated: pl.DataFrame) -> pl.DataFrame | None:
    """:func:`per_minute` of the stored observations and a run's liquidations; None when the
    store holds no observed liquidation for these symbols in the window (nothing to compare)."""
    obs = observed_rows(store, exchange, symbols, start_ms, end_ms)
    if obs.height == 0:
        return None
    return per_minute(obs, simulated.filter(pl.col("symbol").is_in(symbols)), start_ms, end_ms)


def observed_total_usd(store, exchange: str, symbols: list[str], start_ms: int, end_ms: int) -> float | None:
    """Observed liquidated notional (USD) in the window, None when nothing is stored."""
    obs = observed_rows(store, exchange, symbols, start_ms, end_ms)
    return float(obs["notional_usd"].sum()) if obs.height else None


def add_observed_total(summary: dict, store, event) -> None:
    """Put ``observed_liquidated_usd`` (and the feeds' caveats) into a run's summary when the
    store holds observations for the event's symbols and window; leave it unchanged otherwise."""
    total = observed_total_usd(store, event.exchange, list(summary.get("symbols") or event.symbols), event.start_ms, event.end_ms)
    if total is None:
        return
    notes = caveats(store, event.exchange, list(summary.get("symbols") or event.symbols))
    put = summary.__setitem__ if isinstance(summary, dict) else (lambda k, v: setattr(summary, k, v))  # results.Summary
    put("observed_liquidated_usd", total)
    if notes:
        put("observed_liquidated_note", " ".join(notes))


def caveats(store, exchange: str, symbols: list[str]) -> list[str]:
    """The distinct feed notes (e.g. throttling: totals are lower bounds) of the stored observations."""
    from backtest.sources.liquidations import read_feed_notes

    notes = read_feed_notes(store, exchange)
    out: list[str] = []
    for s in symbols:
        n = (notes.get(s) or {}).get("note")
        if n and n not in out:
            out.append(n)
    return out


def figure(frame: pl.DataFrame, *, title: str = "observed vs simulated liquidations", caveat: str | None = None):
    """A figure of :func:`per_minute` summed over symbols, two panels sharing the time axis, each on
    its own scale (published feeds are throttled, so observed totals can be far below simulated
    ones): observed forced orders (bars) and simulated liquidations (steps), longs above the axis,
    shorts below, USD millions per minute."""
    from backtest.report.common import new_figure

    agg = frame.group_by("minute").agg(pl.col("^(observed|simulated)_(long|short)_usd$").sum()).sort("minute")
    t = agg["minute"].to_list()
    fig = new_figure()
    fig.suptitle(title, fontsize=13, fontweight="bold")
    top = fig.add_subplot(2, 1, 1)
    bottom = fig.add_subplot(2, 1, 2, sharex=top)
    width = 1 / 1440 * 0.9  # a minute, in days
    top.bar(t, (agg["observed_long_usd"] / 1e6).to_list(), width=width, color="#c0392b", alpha=0.8, label="observed, longs")
    top.bar(t, (-agg["observed_short_usd"] / 1e6).to_list(), width=width, color="#2471a3", alpha=0.8, label="observed, shorts")
    bottom.step(t, (agg["simulated_long_usd"] / 1e6).to_list(), where="post", color="#641e16", lw=1.2, label="simulated, longs")
    bottom.step(t, (-agg["simulated_short_usd"] / 1e6).to_list(), where="post", color="#1b2631", lw=1.2, label="simulated, shorts")
    obs_total = float(agg["observed_long_usd"].sum() + agg["observed_short_usd"].sum())
    sim_total = float(agg["simulated_long_usd"].sum() + agg["simulated_short_usd"].sum())
    import textwrap

    note = ("\n" + textwrap.fill(caveat, 150)) if caveat else ""
    top.set_title(f"observed (published forced orders): ${obs_total / 1e6:,.1f}M in all{note}", fontsize=8.5)
    bottom.set_title(f"simulated (replay): ${sim_total / 1e6:,.1f}M in all", fontsize=9)
    for ax in (top, bottom):
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel("USD m per minute\n(shorts below 0)")
        ax.legend(loc="upper right", fontsize=8, ncol=2)
    bottom.set_xlabel("UTC")
    for label in bottom.get_xticklabels():
        label.set_rotation(20)
        label.set_ha("right")
    return fig
