"""The liquidation map at any time of a run (backtest.liqmap) on the committed 2025-10-10 data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from backtest.liqmap import event_liq_map_at, liq_map_at
from backtest.simulate import prepare, simulate_prepared

SYM = "BTC/USDT:USDT"


@pytest.fixture(scope="module")
def run():
    prep = prepare("2025-10-10", overrides={"n_positions": 20_000, "seed": 3}, symbols=[SYM])
    res = simulate_prepared(prep, mode="replay")
    return prep, res


def test_map_at_window_open_is_the_pre_event_map(run):
    prep, res = run
    at0 = event_liq_map_at(prep, res, SYM, "2025-10-10T20:00:00Z")
    pre = res.liq_map.filter(pl.col("symbol") == SYM)
    assert at0["bucket"].to_list() == pre["bucket"].to_list()
    assert np.allclose(at0["open_notional_usd"].to_numpy(), pre["open_notional_usd"].to_numpy())


def test_map_after_the_crash_lost_exactly_what_left(run):
    prep, res = run
    a = prep.populations[SYM].arrays
    at_end = event_liq_map_at(prep, res, SYM, "2025-10-10T23:59:00Z")
    pre = res.liq_map.filter(pl.col("symbol") == SYM)
    t_end = 1760140740000  # 2025-10-10T23:59:00Z
    liqs = res.liquidations.filter((pl.col("symbol") == SYM) & (pl.col("ts") < pl.datetime(2025, 10, 10, 23, 59, time_zone="UTC")))
    pos = liqs["position"].to_numpy()
    usd = a["entry"] * a["qty"] * a["weight"].astype(np.float64)
    can = np.isfinite(a["liq_price"]) & (a["liq_price"] > 0)
    pre_rows = a["open_time"] <= int(res.bars["ts"].cast(pl.Int64).min())
    exited = np.zeros(len(usd), bool)
    exited[pos] = True
    left = float(np.sum(usd[can & pre_rows & exited]))  # pre-event rows that exited by then
    closed = float(np.sum(usd[can & pre_rows & ~exited & (a["close_time"] <= t_end)]))  # ... closed voluntarily
    opened = float(np.sum(usd[can & ~pre_rows & ~exited & (a["open_time"] <= t_end) & (a["close_time"] > t_end)]))  # in-window rows still open
    assert left > 0
    # no funding settles inside 20:00-24:00 for BTC, so the rest of the map is unchanged
    assert at_end["open_notional_usd"].sum() == pytest.approx(pre["open_notional_usd"].sum() - left - closed + opened, rel=1e-9)
    # the long clusters the path reached are gone: no pre-event long still open has its liquidation
    # price above the path's low (longs opened later, after the low, may)
    low = float(res.bars.filter(pl.col("symbol") == SYM)["sim_low"].min())
    still = can & pre_rows & ~exited & (a["close_time"] > t_end) & (a["side"] > 0)
    assert still.any() and not np.any(a["liq_price"][still] > low)


def test_funding_shifts_the_map(run):
    prep, res = run
    a = prep.populations[SYM].arrays
    bars = res.bars.filter(pl.col("symbol") == SYM).with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(0.01).otherwise(0.0).alias("funding_rate")
    )
    none = liq_map_at(a, res.liquidations.clear(), bars.with_columns(pl.lit(0.0).alias("funding_rate")), "2025-10-10T20:30:00Z", symbol=SYM, bucket_usd=100.0)
    paid = liq_map_at(a, res.liquidations.clear(), bars, "2025-10-10T20:30:00Z", symbol=SYM, bucket_usd=100.0)
    # a 1 % funding rate at ~116.6k moves every liquidation price up by ~1.17k (about 11-12 buckets)
    mean = lambda m, side: float((m.filter(pl.col("side") == side).select((pl.col("bucket") * pl.col("open_notional_usd")).sum() / pl.col("open_notional_usd").sum())).item())
    assert 11 <= mean(paid, "long") - mean(none, "long") <= 12.5
    assert 11 <= mean(paid, "short") - mean(none, "short") <= 12.5
    with pytest.raises(ValueError):
        liq_map_at(a, res.liquidations, bars, "2025-10-10T20:30:00Z", symbol=SYM, bucket_usd=0)
