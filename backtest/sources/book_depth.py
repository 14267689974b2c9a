"""Order-book depth snapshots in Binance's public-archive ``bookDepth`` layout.

Binance publishes, about every 30 seconds, the cumulative depth (base units) and notional (USDT)
resting between the mid price and ``percentage`` % away from it: ``-1 … -5`` on the bid side,
``1 … 5`` on the ask side (``data/futures/um/daily/bookDepth/{SYM}/{SYM}-bookDepth-{YYYY-MM-DD}.zip``,
columns ``timestamp,percentage,depth,notional``; ``timestamp`` is ``YYYY-MM-DD HH:MM:SS`` UTC).
Copies found elsewhere may add ``weighted_avg_price`` (notional / depth); it is ignored.

**Stale buckets.** Binance's own file for BTCUSDT on 2025-10-10 carries a stale bid: from the
afternoon a resting bid of 17.654 BTC at 121,363 USDT stays in the -1 % bucket (later in every bid
bucket) while the market fell below it, so those buckets report a bid *above* the asks (see
``data/PROVENANCE.md``). A live book cannot have that, so a bid bucket whose average price
(notional / depth) is at or above the average price of the +1 % ask bucket of the same snapshot
is flagged ``stale = True``. The rows are kept (the store holds what the source published), the
importer says how many were flagged, and readers of the profile use unflagged buckets only
(:func:`usable`).
"""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl

#: header of the archive's files (``weighted_avg_price`` may follow in copies)
HEADER = ["timestamp", "percentage", "depth", "notional"]
PERCENTAGES = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)


def parse_timestamp(text: str) -> int:
    """``"2025-10-10 00:00:07"`` (UTC; a leading space is tolerated), ``…T…Z`` or UTC ms -> UTC ms."""
    t = text.strip()
    if t.isdigit():
        return int(t)
    d = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return int(d.timestamp() * 1000)


def flag_stale(frame: pl.DataFrame) -> pl.DataFrame:
    """Add (or recompute) the ``stale`` column: a bid bucket whose average price is at or above
    the +1 % ask bucket's average price in the same snapshot (see the module docstring).

    ``frame`` has ``ts, symbol, percentage, depth, notional_usd``; order is kept."""
    avg = pl.col("notional_usd") / pl.col("depth")
    ask1 = (
        frame.filter(pl.col("percentage") == 1)
        .select("ts", "symbol", avg.alias("_ask1"))
        .unique(subset=["ts", "symbol"], keep="first")
    )
    out = frame.drop("stale", strict=False).join(ask1, on=["ts", "symbol"], how="left", maintain_order="left")
    stale = (pl.col("percentage") < 0) & (pl.col("depth") > 0) & pl.col("_ask1").is_not_null() & (avg >= pl.col("_ask1"))
    return out.with_columns(stale.fill_null(False).alias("stale")).drop("_ask1")


def frame_from_columns(ts: list[int], percentage: list, depth: list, notional: list, symbol: str) -> pl.DataFrame:
    """A ``depth`` frame (store schema order, without ``fetched_at``) with stale buckets flagged."""
    f = pl.DataFrame(
        {"ts": ts, "symbol": [symbol] * len(ts), "percentage": percentage, "depth": depth, "notional_usd": notional},
        schema={"ts": pl.Int64, "symbol": pl.String, "percentage": pl.Int8, "depth": pl.Float64, "notional_usd": pl.Float64},
    )
    return flag_stale(f)


def check_values(frame: pl.DataFrame) -> str | None:
    """The first problem that makes a depth frame unusable as market data, or None."""
    bad_pct = frame.filter(~pl.col("percentage").is_in(PERCENTAGES))
    if bad_pct.height:
        return f"percentage {bad_pct['percentage'][0]} is not one of {PERCENTAGES}"
    for c in ("depth", "notional_usd"):
        bad = frame.filter(pl.col(c).is_null() | pl.col(c).is_nan() | (pl.col(c) < 0) | pl.col(c).is_infinite())
        if bad.height:
            return f"{c} {bad[c][0]} at {bad['ts'][0]} is not a non-negative number"
    return None


def stale_summary(frame: pl.DataFrame) -> str | None:
    """One human line on the stale buckets of ``frame`` (None if there are none)."""
    s = frame.filter(pl.col("stale"))
    if s.height == 0:
        return None
    from backtest.store import ms_to_iso

    first = int(s["ts"].cast(pl.Int64).min())
    pcts = ", ".join(f"{p:+d} %" for p in sorted(s["percentage"].unique().to_list()))
    return (f"{s.height} of {frame.height} bid buckets flagged stale (average bid at or above the asks: a stale "
            f"resting order, not a live book) from {ms_to_iso(first)}, in {pcts}; kept with stale=true, readers skip them")


def usable(frame: pl.DataFrame) -> pl.DataFrame:
    """The buckets a depth profile may use: not stale."""
    return frame.filter(~pl.col("stale"))
