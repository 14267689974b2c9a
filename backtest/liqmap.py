"""The liquidation map at any time of a run: open notional by liquidation-price bucket.

``SimResult.liq_map`` is the map before the event. :func:`liq_map_at` gives it at any time
``ts`` of the window: positions that have not left the book by ``ts`` (liquidated, stopped or
ADL'd strictly before it), with their liquidation prices moved by the funding settled since the
window opened. Funding changes an isolated position's margin by ``-side * qty * rate * mark``
per settlement, which moves its liquidation price by ``rate * mark / (1 - side * mmr)`` (the
same shift for every position of a (side, tier) group; cross positions are treated like the
kernels treat them, as isolated with their allotted collateral).

The frames of a run are built here too: :func:`liq_map_frame` (the pre-event map),
:func:`heatmap_frame` (realised liquidations by time x price bucket) and :func:`clusters_frame`
(price ranges where open notional concentrates); their columns are declared in
:mod:`backtest.results`.

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
    Columns: symbol, side, bucket, price_lo, price_hi, open_notional_usd, positions. Only
    positions open at ``t`` count: opened by then (``open_time <= t``), not closed voluntarily
    (``close_time > t``) and with no exit record before ``t``.
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
    ok &= arrays["open_time"] <= t
    if "close_time" in arrays:
        ok &= arrays["close_time"] > t
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


def liq_map_frame(a: dict[str, np.ndarray], symbol: str, p0: float, bucket_pct: float) -> pl.DataFrame:
    """Pre-event open notional by liquidation-price bucket and side (positions that can liquidate)."""
    liq = a["liq_price"]
    ok = np.isfinite(liq) & (liq > 0)
    return bucket_frame(a, ok, liq, symbol, p0 * bucket_pct)


def heatmap_frame(liqs: pl.DataFrame, p0: float, bucket_pct: float, minutes: int) -> pl.DataFrame:
    """Realised liquidations by time bucket x fill-price bucket (long and short notional)."""
    width = p0 * bucket_pct
    d = liqs.filter(pl.col("exit") == "liquidated")
    return (
        d.with_columns(
            pl.col("ts").dt.truncate(f"{minutes}m").alias("ts"),
            (pl.col("fill") / width).floor().cast(pl.Int64).alias("bucket"),
            pl.when(pl.col("side") > 0).then(pl.col("notional_usd")).otherwise(0.0).alias("long_usd"),
            pl.when(pl.col("side") < 0).then(pl.col("notional_usd")).otherwise(0.0).alias("short_usd"),
        )
        .group_by("symbol", "ts", "bucket")
        .agg(pl.col("long_usd").sum(), pl.col("short_usd").sum())
        .with_columns((pl.col("bucket") * width).alias("price_lo"), ((pl.col("bucket") + 1) * width).alias("price_hi"))
        .select("symbol", "ts", "bucket", "price_lo", "price_hi", "long_usd", "short_usd")
        .sort("symbol", "ts", "bucket")
    )


def clusters_frame(liq_map: pl.DataFrame, liqs: pl.DataFrame, p0: float, path_lo: float, path_hi: float, sim: Any) -> pl.DataFrame:
    """Price ranges where liquidation notional concentrates, ranked by notional.

    A cluster is a maximal run of adjacent buckets (one side, within ``cluster_range_pct`` of the
    start price) each holding at least ``cluster_min_share`` of that side's open notional.
    ``reached``: the simulated path touched the range (longs: low <= range top; shorts: high >=
    range bottom). ``liquidated_usd``: realised liquidations of positions whose liquidation price
    lies in the range.
    """
    rows = []
    symbol = liq_map["symbol"][0] if liq_map.height else None
    exchange = liq_map["exchange"][0] if liq_map.height and "exchange" in liq_map.columns else ""
    for side in ("long", "short"):
        m = liq_map.filter(pl.col("side") == side).sort("bucket")
        if m.height == 0:
            continue
        tot = float(m["open_notional_usd"].sum())
        lo_p, hi_p = p0 * (1 - sim.cluster_range_pct), p0 * (1 + sim.cluster_range_pct)
        b = m["bucket"].to_numpy()
        v = m["open_notional_usd"].to_numpy()
        plo = m["price_lo"].to_numpy()
        phi = m["price_hi"].to_numpy()
        keep = (v >= sim.cluster_min_share * tot) & (phi >= lo_p) & (plo <= hi_p)
        i = 0
        while i < len(b):
            if not keep[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(b) and keep[j + 1] and b[j + 1] == b[j] + 1:
                j += 1
            rows.append((side, float(plo[i]), float(phi[j]), float(v[i : j + 1].sum()), float(v[i : j + 1].sum() / tot)))
            i = j + 1
    from backtest.results import CLUSTERS_SCHEMA as schema

    if not rows:
        return pl.DataFrame(schema=schema)
    rows.sort(key=lambda r: -r[3])
    out = []
    lq = liqs.filter(pl.col("exit") == "liquidated")
    for k, (side, lo, hi, notional, share) in enumerate(rows):
        sgn = 1 if side == "long" else -1
        reached = path_lo <= hi if side == "long" else path_hi >= lo
        mid = (lo + hi) / 2
        realised = float(lq.filter((pl.col("side") == sgn) & (pl.col("liq_price") >= lo) & (pl.col("liq_price") < hi))["notional_usd"].sum())
        out.append((symbol, exchange, side, k + 1, lo, hi, notional, share, (mid / p0 - 1) * 100.0, bool(reached), realised))
    return pl.DataFrame(out, schema=schema, orient="row")
