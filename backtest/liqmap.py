"""The liquidation map at any time of a run: open notional by liquidation-price bucket.

``SimResult.liq_map`` is the map before the event. :func:`liq_map_at` gives it at any time
``ts`` of the window: positions that have not left the book by ``ts`` (liquidated, stopped or
ADL'd strictly before it), with their liquidation prices moved by the funding settled since the
window opened. Funding changes an isolated position's margin by ``-side * qty * rate * mark``
per settlement, which moves its liquidation price by ``rate * mark / (1 - side * mmr)`` (the
same shift for every position of a (side, tier) group; cross positions are treated like the
kernels treat them, as isolated with their allotted collateral).

Prices in quote currency, notional in USD, times UTC ms or ISO-8601 UTC strings; side +1 long,
-1 short (``"long"``/``"short"`` in the frame).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from backtest.store import to_ms


def funding_index(bars: pl.DataFrame, ts_ms: int) -> float:
    """Cumulative funding ``sum(rate * mark)`` settled in bars opening at or before ``ts_ms``.

    ``bars`` is one symbol's ``SimResult.bars`` (columns ``ts``, ``funding_rate``, ``open``);
    a settlement at a bar's open time is paid at that price.
    """
    b = bars.filter(pl.col("ts").cast(pl.Int64) <= ts_ms)
    if b.height == 0 or "funding_rate" not in b.columns:
        return 0.0
    return float((b["funding_rate"].fill_null(0.0) * b["open"]).sum())


def liq_map_at(
    arrays: dict[str, np.ndarray],
    liquidations: pl.DataFrame,
    bars: pl.DataFrame,
    ts: Any,
    *,
    symbol: str,
    bucket_usd: float,
) -> pl.DataFrame:
    """Open notional by liquidation-price bucket and side at time ``ts``.

    ``arrays`` is the population the run used (``records.POPULATION_FIELDS``),
    ``liquidations`` the run's per-position exits for this symbol (columns ``position``, ``ts``),
    ``bars`` its bars for this symbol, ``bucket_usd`` the bucket width in quote currency.
    Columns: symbol, side, bucket, price_lo, price_hi, open_notional_usd, positions.
    """
    if bucket_usd <= 0:
        raise ValueError("bucket_usd must be > 0")
    t = to_ms(ts)
    n = len(arrays["side"])
    gone = np.zeros(n, dtype=bool)
    if liquidations.height:
        ex = liquidations.filter(pl.col("ts").cast(pl.Int64) < t)["position"].to_numpy()
        gone[ex] = True
    side = arrays["side"].astype(np.float64)
    shift = funding_index(bars, t) / (1.0 - side * arrays["mmr"])
    liq = arrays["liq_price"] + shift
    ok = ~gone & np.isfinite(arrays["liq_price"]) & (arrays["liq_price"] > 0) & (liq > 0)
    return bucket_frame(arrays, ok, liq, symbol, bucket_usd)


def bucket_frame(arrays: dict[str, np.ndarray], ok: np.ndarray, liq: np.ndarray, symbol: str, bucket_usd: float) -> pl.DataFrame:
    """Open notional (entry x qty x weight, USD) and positions of the rows ``ok`` by
    liquidation-price bucket ``floor(liq / bucket_usd)`` and side.

    Columns: symbol, side, bucket, price_lo, price_hi, open_notional_usd, positions.
    """
    w = arrays["weight"][ok].astype(np.float64)
    df = pl.DataFrame(
        {
            "side": np.where(arrays["side"][ok] > 0, "long", "short"),
            "bucket": np.floor(liq[ok] / bucket_usd).astype(np.int64),
            "notional": arrays["entry"][ok] * arrays["qty"][ok] * w,
            "w": w,
        }
    )
    return (
        df.group_by("side", "bucket")
        .agg(pl.col("notional").sum().alias("open_notional_usd"), pl.col("w").sum().alias("positions"))
        .with_columns(
            pl.lit(symbol).alias("symbol"),
            (pl.col("bucket") * bucket_usd).alias("price_lo"),
            ((pl.col("bucket") + 1) * bucket_usd).alias("price_hi"),
        )
        .select("symbol", "side", "bucket", "price_lo", "price_hi", "open_notional_usd", "positions")
        .sort("side", "bucket")
    )


def event_liq_map_at(prepared: Any, result: Any, symbol: str, ts: Any) -> pl.DataFrame:
    """:func:`liq_map_at` for a result of ``simulate.simulate_prepared(prepared)`` run with the
    prepared (base) population; buckets as wide as the result's pre-event map."""
    arrays = prepared.populations[symbol].arrays
    pre = result.liq_map.filter(pl.col("symbol") == symbol)
    if pre.height == 0:
        raise ValueError(f"no pre-event map for {symbol}; is it one of the run's symbols?")
    width = float((pre["price_hi"] - pre["price_lo"])[0])
    liqs = result.liquidations.filter(pl.col("symbol") == symbol)
    bars = result.bars.filter(pl.col("symbol") == symbol)
    return liq_map_at(arrays, liqs, bars, ts, symbol=symbol, bucket_usd=width)
