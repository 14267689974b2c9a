"""Order-book depth profiles: how much notional rests within 1 … 5 % of mid, per side, over time.

A :class:`BookProfile` is what a forced order walks (issue 11: impact from the order book). It
comes from the store's ``depth`` dataset (Binance public-archive ``bookDepth`` snapshots, about
every 30 s: :mod:`backtest.sources.book_depth`) where the store has it, else from a documented
estimate scaled to the symbol's traded volume (:func:`estimated_profile`). Units: ``levels`` are
fractions of mid (0.01 = 1 %); ``bid_usd`` / ``ask_usd`` are cumulative notional in USD between
mid and each level (bids below mid: what forced *sells* walk; asks above: forced *buys*); times are
UTC ms.

**Stale bids.** Binance's own BTCUSDT file of 2025-10-10 carries a stale resting bid from the
afternoon on (flagged ``stale`` on import; see ``data/PROVENANCE.md``); after the first flagged
bucket of a day even unflagged bid buckets are implausible (the -3 % bid shrinks to $9M while the
+3 % ask holds $290M). So from the first stale snapshot of a day on, the whole bid side is taken as
the ask side of the same snapshot times each level's median bid/ask ratio over that day's snapshots
before the anomaly (:data:`PROFILE_NOTES` says so in outputs). That is an estimate, and labelled so.

**Beyond the last level** (the rule the kernel's book bound uses,
:func:`backtest.kernels.cascade._book_reach`): the stored levels end at 5 % of mid; further out
the book is taken to continue at the mean density of the stored range (the last level's notional
divided by its distance, USD per unit fraction of mid), so a flow ``Q`` above the 5 % notional
``D5`` reaches ``0.05 + (Q - D5) * 0.05 / D5``; whatever that gives, no flow moves the price by
more than :data:`backtest.records.MAX_BOOK_MOVE` (half of it). :func:`book_reach` is the Python
statement of the same rule.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import polars as pl

#: depth levels of the archive's files, as fractions of mid
LEVELS = np.array([0.01, 0.02, 0.03, 0.04, 0.05])

#: Share of a day's traded notional resting within 1 % of mid on each side, for symbols without a
#: stored depth series. Source: Binance BTCUSDT perpetual, 2025-10-10 00:00-15:00 UTC (before the
#: stale-bid anomaly): mean notional within 1 % of mid $289M (bids) and $245M (asks), against
#: $19.87B traded on 2025-10-09 (1h bars in data/): 1.34 % (bids 1.46 %, asks 1.23 %).
#: One symbol, one quiet day: an order of magnitude for other symbols, and a parameter to calibrate.
DEPTH_1PCT_PER_DAILY_VOLUME = 0.0134

#: Cumulative notional within 1..5 % of mid relative to the 1 % level, same source and hours:
#: bids 289, 653, 959, 1074, 1157 ($M); asks 245, 401, 491, 619, 732 ($M).
SHAPE_BID = np.array([1.0, 2.257, 3.313, 3.712, 3.998])
SHAPE_ASK = np.array([1.0, 1.639, 2.005, 2.527, 2.988])


class BookProfile(NamedTuple):
    """Depth per snapshot (numba-friendly: arrays only). ``bid_usd[k, l]`` = notional resting
    between mid and ``LEVELS[l]`` below it at snapshot ``ts[k]``; ``ask_usd`` above."""

    ts: np.ndarray  # int64 UTC ms, increasing
    levels: np.ndarray  # float64 fractions of mid, increasing
    bid_usd: np.ndarray  # float64 (n_snapshots, n_levels), cumulative, USD
    ask_usd: np.ndarray  # float64 (n_snapshots, n_levels), cumulative, USD


def load_profile(store: Any, exchange: str, symbol: str, start: Any = None, end: Any = None) -> tuple[BookProfile, str] | None:
    """The stored depth of ``symbol`` over ``[start, end)`` as a profile and a one-line note on
    how it was derived; None when the store has no depth snapshot in the range."""
    from backtest.store import StoreError

    try:
        d = store.read("depth", exchange=exchange, symbol=symbol, timeframe="event", start=start, end=end)
    except StoreError:
        if not store.partitions("depth", exchange, symbol, "event"):
            return None
        raise
    if d.height == 0:
        return None
    w = (
        d.with_columns(pl.col("ts").cast(pl.Int64).alias("t"), pl.col("ts").dt.truncate("1d").alias("day"))
        .pivot(on="percentage", index=["t", "day"], values=["notional_usd", "stale"])
        .sort("t")
    )
    bid_cols = [f"notional_usd_-{i}" for i in range(1, 6)]
    ask_cols = [f"notional_usd_{i}" for i in range(1, 6)]
    stale_cols = [f"stale_-{i}" for i in range(1, 6)]
    missing = [c for c in bid_cols + ask_cols if c not in w.columns]
    if missing:
        raise ValueError(f"depth snapshots of {symbol} lack the {missing[0]} bucket")
    ts = w["t"].to_numpy().astype(np.int64)
    bid = w.select(bid_cols).to_numpy().astype(np.float64)
    ask = w.select(ask_cols).to_numpy().astype(np.float64)
    stale = w.select([pl.col(c).fill_null(False) for c in stale_cols]).to_numpy().any(axis=1)
    day = w["day"].to_numpy()
    mirrored = 0
    for dval in np.unique(day):
        rows = np.flatnonzero(day == dval)
        bad = rows[stale[rows]]
        if bad.size == 0:
            continue
        first = bad[0]
        good = rows[rows < first]
        ratio = np.nanmedian(bid[good] / ask[good], axis=0) if good.size else SHAPE_BID / SHAPE_ASK
        after = rows[rows >= first]
        bid[after] = ask[after] * ratio
        mirrored += after.size
    bid = np.maximum.accumulate(np.nan_to_num(bid, nan=0.0), axis=1)  # cumulative: never falls with distance
    ask = np.maximum.accumulate(np.nan_to_num(ask, nan=0.0), axis=1)
    note = f"order-book depth: {ts.size} stored snapshots ({exchange} bookDepth)"
    if mirrored:
        note += f"; bids of {mirrored} snapshots from the first stale bid on estimated from the asks x the day's earlier bid/ask ratio"
    return BookProfile(ts, LEVELS.copy(), bid, ask), note


def book_reach(profile: BookProfile, t_ms: int, side: int, flow_usd: float) -> float:
    """Distance from mid (fraction) at which the side walked by a forced flow of ``flow_usd`` (USD;
    ``side`` +1 buys walk the asks, -1 sells the bids) holds that flow, in the last snapshot at or
    before ``t_ms``: linear between the stored levels, beyond the last one by the rule of the
    module docstring, capped at :data:`backtest.records.MAX_BOOK_MOVE`."""
    from backtest.kernels.cascade import book_reach_nb

    k = max(int(np.searchsorted(profile.ts, t_ms, side="right")) - 1, 0)
    return float(book_reach_nb(profile, k, int(side), float(flow_usd)))


def estimated_profile(volume_daily_usd: float, t_ms: int = 0) -> tuple[BookProfile, str]:
    """A one-snapshot profile for a symbol without stored depth: the 1 % level is
    :data:`DEPTH_1PCT_PER_DAILY_VOLUME` x its daily traded notional (USD), the other levels follow
    BTCUSDT's measured shape (:data:`SHAPE_BID`, :data:`SHAPE_ASK`)."""
    if not np.isfinite(volume_daily_usd) or volume_daily_usd <= 0:
        raise ValueError(f"daily volume must be a positive number of USD, got {volume_daily_usd!r}")
    one = DEPTH_1PCT_PER_DAILY_VOLUME * volume_daily_usd
    prof = BookProfile(np.array([t_ms], np.int64), LEVELS.copy(), (one * SHAPE_BID)[None, :], (one * SHAPE_ASK)[None, :])
    note = (f"order-book depth estimated: {DEPTH_1PCT_PER_DAILY_VOLUME:.2%} of daily volume within 1 % of mid "
            "(BTCUSDT 2025-10-10 before the crash), BTCUSDT's shape to 5 %")
    return prof, note


def depth_at(profile: BookProfile, t_ms: int, side: int, level: float) -> float:
    """Notional (USD) resting between mid and ``level`` (fraction) on the side a forced order of
    sign ``side`` walks (+1 buys walk the asks, -1 sells walk the bids), in the last snapshot at
    or before ``t_ms`` (the first one before the series starts), linear in ``level`` between the
    stored levels and from 0 at mid. Beyond the last level: the last level's notional (what is
    known to exist)."""
    k = max(int(np.searchsorted(profile.ts, t_ms, side="right")) - 1, 0)
    row = profile.ask_usd[k] if side > 0 else profile.bid_usd[k]
    return float(np.interp(level, np.r_[0.0, profile.levels], np.r_[0.0, row]))
