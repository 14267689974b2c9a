"""Synthetic populations: contract, determinism, survivors, scaling, store/catalogue path, CLI.

Market arrays named ``synthetic_*`` are made up for the test (a seeded random walk); the store
tests use the committed store built from ../shared/data (real Binance data).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest import margin
from backtest.params import ParamError, apply_overrides
from backtest.population_params import FALLBACK_LONG_SHARE
from backtest.population import (
    DEFAULT_LEVERAGE_MIX,
    PARAM_SOURCES,
    Population,
    PopulationParams,
    build_population,
    open_notional,
    population_summary,
    synthesize,
)
from backtest.records import POPULATION_FIELDS, check_population

ROOT = Path(__file__).resolve().parents[1]
TIERS_JSON = ROOT / "data" / "leverage_tiers" / "exchange=binanceusdm" / "tiers.json"
SHARED_TIERS = ROOT.parent / "shared" / "data" / "leverage_tiers" / "binance_leverage_tiers_freqtrade_2024-10.json"
HOUR = 3_600_000


def btc_tiers() -> list:
    for p in (TIERS_JSON, SHARED_TIERS):
        if p.exists():
            return json.loads(p.read_text())["BTC/USDT:USDT"]
    pytest.skip("no Binance tier table")


def synthetic_bars(n=24 * 20, seed=1, crash_at=None, crash=0.0):
    """A synthetic hourly random walk around 100,000 (optionally with one wick down)."""
    rng = np.random.default_rng(seed)
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * HOUR
    close = 100_000 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.002, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.002, n))
    if crash_at is not None:
        low[crash_at] = min(open_[crash_at], close[crash_at]) * (1 - crash)
    vol = rng.uniform(5e8, 1.5e9, n)
    return ts, open_, high, low, close, vol


def build(params=None, bars=None, target=15e9, **kw):
    ts, o, h, l, c, v = bars or synthetic_bars()
    return synthesize(ts, o, h, l, c, v, tiers=btc_tiers(), params=params or PopulationParams(n_positions=50_000),
                      target_open_notional_usd=target, **kw)


# ------------------------------------------------------------------------------------------
def test_contract_fields_dtypes_and_target():
    pop = build()
    check_population(pop.arrays)
    assert set(pop.arrays) == set(POPULATION_FIELDS)
    assert len(pop) == 50_000
    # the hedged share of the target is not in the rows (default 0.2)
    assert pop.open_notional_usd == pytest.approx(15e9 * (1 - PopulationParams().hedged_share), rel=1e-6)
    assert pop.open_notional_usd + pop.hedged_notional_usd == pytest.approx(15e9, rel=1e-6)
    assert pop.open_notional_usd == pytest.approx(open_notional(pop.arrays), rel=1e-12)
    # no stored long/short ratio: the fallback long share (fitted: population_params.FALLBACK_LONG_SHARE)
    assert open_notional(pop.arrays, 1) / pop.open_notional_usd == pytest.approx(FALLBACK_LONG_SHARE, rel=1e-6)
    a = pop.arrays
    assert np.all(a["qty"] > 0) and np.all(a["weight"] > 0)
    assert set(np.unique(a["side"])) == {-1, 1}
    assert np.all(a["venue"] == 0)
    assert np.all((a["open_time"] >= synthetic_bars()[0][0]) & (a["open_time"] < pop.as_of_ms))


def test_same_seed_same_population_bit_for_bit_and_seed_matters():
    a = build(PopulationParams(n_positions=30_000, seed=7)).arrays
    b = build(PopulationParams(n_positions=30_000, seed=7)).arrays
    c = build(PopulationParams(n_positions=30_000, seed=8)).arrays
    for k in POPULATION_FIELDS:
        assert np.array_equal(a[k], b[k], equal_nan=True), k
    assert not np.array_equal(a["entry"], c["entry"])


def test_prefix_stability_counter_based_rng():
    # The generator is counter-based: a smaller population is a prefix of a larger one
    # (before weights, which scale with the total).
    small = build(PopulationParams(n_positions=10_000, seed=3)).arrays
    large = build(PopulationParams(n_positions=20_000, seed=3)).arrays
    for k in POPULATION_FIELDS:
        if k != "weight":
            assert np.array_equal(small[k], large[k][:10_000], equal_nan=True), k


def test_liq_prices_match_margin_module_and_tiers_at_liq_notional():
    pop = build(PopulationParams(n_positions=3_000, seed=11))
    a = pop.arrays
    tiers = btc_tiers()
    lo, hi, rate, cum, lev = margin.tier_arrays(tiers)
    for i in range(0, 3_000, 7):
        mode = "isolated" if a["margin_mode"][i] == 0 else "cross"
        lp = margin.liquidation_price("binance", int(a["side"][i]), a["entry"][i], a["qty"][i], a["margin"][i],
                                      margin_mode=mode, tiers=tiers)
        assert a["liq_price"][i] == pytest.approx(lp, rel=1e-12)
        t = int(a["tier"][i])
        assert a["mmr"][i] == rate[t] and a["maint_amount"][i] == cum[t]
        if 0 < lp < math.inf:
            assert lo[t] <= a["qty"][i] * lp <= hi[t]


def test_leverage_margin_and_stop_rules():
    p = PopulationParams(n_positions=40_000, seed=5, cross_extra_sigma=0.0, cross_extra_collateral=1.0, leverage_scale=1.0)
    a = build(p).arrays
    notional = a["entry"] * a["qty"]
    lo, hi, rate, cum, lev = margin.tier_arrays(btc_tiers())
    t_entry = np.searchsorted(hi, notional, side="left")  # (floor, cap] brackets
    assert np.all(a["leverage"] <= lev[t_entry] * (1 + 1e-6))  # capped by the entry tier
    assert np.all(a["leverage"] >= 1)
    iso = a["margin_mode"] == 0
    # isolated margin = notional / leverage; cross collateral = that x (1 + extra)
    np.testing.assert_allclose(a["margin"][iso], notional[iso] / a["leverage"][iso].astype(np.float64), rtol=1e-6)
    np.testing.assert_allclose(a["margin"][~iso], 2 * notional[~iso] / a["leverage"][~iso].astype(np.float64), rtol=1e-6)
    long, short = a["side"] > 0, a["side"] < 0
    assert np.all(a["liq_price"][long] < a["entry"][long]) and np.all(a["liq_price"][short] > a["entry"][short])
    st = np.isfinite(a["stop_price"])
    assert 0.1 < st.mean() < 0.3  # stop_share 0.25 before survivorship
    assert np.all(a["stop_price"][st & long] < a["entry"][st & long])
    assert np.all(a["stop_price"][st & long] > a["liq_price"][st & long])
    assert np.all(a["stop_price"][st & short] > a["entry"][st & short])
    assert np.all(a["stop_price"][st & short] < a["liq_price"][st & short])
    assert abs(iso.mean() - p.isolated_share) < 0.05


def test_only_survivors_of_the_lookback_path_enter():
    bars = synthetic_bars(crash_at=300, crash=0.15)  # a 15 % wick down at hour 300 of 480
    ts, o, h, l, c, v = bars
    pop = build(PopulationParams(n_positions=40_000, seed=2), bars=bars)
    a = pop.arrays
    j = np.searchsorted(ts, a["open_time"], side="right") - 1
    # suffix extrema after the opening bar
    smin = np.minimum.accumulate(l[::-1])[::-1]
    smax = np.maximum.accumulate(h[::-1])[::-1]
    after_min = np.r_[smin[1:], np.inf][j]
    after_max = np.r_[smax[1:], -np.inf][j]
    long, short = a["side"] > 0, a["side"] < 0
    assert np.all(after_min[long] > a["liq_price"][long])
    assert np.all(after_max[short] < a["liq_price"][short])
    st = np.isfinite(a["stop_price"])
    assert np.all(after_min[long & st] > a["stop_price"][long & st])
    assert np.all(after_max[short & st] < a["stop_price"][short & st])
    # the wick wiped out high-leverage longs opened before it
    before = long & (j < 300) & (a["leverage"] >= 20)
    assert before.sum() == 0 or np.all(a["liq_price"][before] < l[300])
    assert pop.stats["died_liquidated"] > 0 and pop.stats["died_stopped"] > 0


def test_turnover_half_life_concentrates_openings_near_the_event():
    short_hl = build(PopulationParams(n_positions=20_000, turnover_half_life_days=0.5)).arrays["open_time"]
    long_hl = build(PopulationParams(n_positions=20_000, turnover_half_life_days=10.0)).arrays["open_time"]
    assert np.median(short_hl) > np.median(long_hl)


def test_open_interest_increments_drive_openings():
    ts, o, h, l, c, v = synthetic_bars()
    oi = np.full(ts.shape, 10e9)
    oi[100:110] += np.linspace(1e8, 1e9, 10)  # open interest rises only in bars 100-109
    oi[110:] = oi[109]
    pop = synthesize(ts, o, h, l, c, v, tiers=btc_tiers(), params=PopulationParams(n_positions=5_000),
                     target_open_notional_usd=oi[-1], open_interest_usd=oi, half_life_days=50.0)
    j = np.searchsorted(ts, pop.arrays["open_time"], side="right") - 1
    assert np.all((j >= 100) & (j < 110))


def test_leverage_scale_and_mix():
    base = build(PopulationParams(n_positions=20_000)).arrays["leverage"].mean()
    scaled = build(PopulationParams(n_positions=20_000, leverage_scale=2.0)).arrays["leverage"].mean()
    assert scaled > base
    only10 = build(PopulationParams(n_positions=5_000, leverage_mix={10: 1.0}, leverage_size_slope=0.0, leverage_scale=1.0)).arrays["leverage"]
    assert np.all(only10 == 10)


def test_out_buffers_reused():
    from backtest.records import empty_population

    buf = empty_population(10_000)
    a = build(PopulationParams(n_positions=10_000, seed=4), out=buf)
    b = build(PopulationParams(n_positions=10_000, seed=4))
    assert a.arrays["entry"] is buf["entry"]
    assert np.array_equal(a.arrays["liq_price"], b.arrays["liq_price"])


# ------------------------------------------------------------------------------------------
# parameters
# ------------------------------------------------------------------------------------------
def test_every_default_has_a_documented_source():
    import dataclasses

    for f in dataclasses.fields(PopulationParams):
        assert f.name in PARAM_SOURCES, f.name
    assert sum(DEFAULT_LEVERAGE_MIX.values()) == pytest.approx(1.0)
    PopulationParams().validate()


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"leverage_mix": '{"10": 0.5, "20": 0.4}'}, "sum to 1"),
        ({"long_share": "1.5"}, "between 0 and 1"),
        ({"isolated_share": "-0.1"}, "between 0 and 1"),
        ({"oi_scale": "-1"}, "positive"),
        ({"n_positions": "0"}, "positive integer"),
        ({"size_min_usd": "1e9"}, "must exceed"),
        ({"leverage_mix": '{"0.5": 1.0}'}, ">= 1"),
        ({"venue": "kraken"}, "venue must be"),
        ({"long_shar": "0.7"}, "did you mean 'long_share'"),
    ],
)
def test_bad_parameters_raise(overrides, match):
    with pytest.raises(ParamError, match=match):
        apply_overrides([PopulationParams()], overrides)


def test_overrides_coerce():
    (p,) = apply_overrides(
        [PopulationParams()],
        {"long_share": "0.7", "leverage_mix": '{"10": 0.5, "20": 0.5}', "open_interest_usd": "1e9", "seed": "3", "venue": "bybit"},
    )
    assert p.long_share == 0.7 and p.leverage_mix == {10: 0.5, 20: 0.5} and p.open_interest_usd == 1e9 and p.seed == 3
    assert p.venue == "bybit"


def test_other_venue_rules_build():
    for venue in ("bybit", "okx", "gate", "hyperliquid"):
        a = build(PopulationParams(n_positions=2_000), venue=venue).arrays
        i = 17
        mode = "isolated" if a["margin_mode"][i] == 0 else "cross"
        lp = margin.liquidation_price(venue, int(a["side"][i]), a["entry"][i], a["qty"][i], a["margin"][i],
                                      margin_mode=mode, tiers=btc_tiers(), fee_rate=margin.TAKER_FEE[venue])
        assert a["liq_price"][i] == pytest.approx(lp, rel=1e-12)
        assert np.all(a["venue"] == margin.VENUES[venue])


# ------------------------------------------------------------------------------------------
# store + catalogue
# ------------------------------------------------------------------------------------------
def _committed_ok():
    try:
        from backtest.events import get_event
        from backtest.store import Store

        ev = get_event("2025-10-10")
        return Store().read_tiers(ev.exchange, "BTC/USDT:USDT") is not None
    except Exception:
        return False


@pytest.mark.skipif(not _committed_ok(), reason="committed store or event catalogue not available")
def test_2025_10_10_population_from_committed_store():
    import time

    t = time.perf_counter()
    p = PopulationParams(n_positions=200_000, seed=42)
    pop = build_population("2025-10-10", "BTC/USDT:USDT", p)
    assert time.perf_counter() - t < 20
    assert pop.target_open_notional_usd == 15e9  # Binance BTC OI on 2025-10-06 (catalogue)
    assert "catalogue" in pop.target_source
    assert pop.open_notional_usd + pop.hedged_notional_usd == pytest.approx(pop.target_open_notional_usd, rel=1e-6)
    assert pop.hedged_notional_usd == pytest.approx(p.hedged_share * 15e9)
    assert pop.as_of_ms == 1760126400000  # 2025-10-10T20:00Z
    assert pop.exchange == "binanceusdm" and pop.symbol == "BTC/USDT:USDT" and pop.event_id == "2025-10-10"
    again = build_population("2025-10-10", "BTC/USDT:USDT", p)
    for k in POPULATION_FIELDS:
        assert np.array_equal(pop.arrays[k], again.arrays[k], equal_nan=True), k
    s = population_summary(pop)
    assert s["long_share"] == pytest.approx(FALLBACK_LONG_SHARE, rel=1e-6)
    assert 0 < s["mean_distance_to_liquidation"] < 1
    # an alt without a catalogue level gets a labelled estimate
    eth = build_population("2025-10-10", "ETH/USDT:USDT", PopulationParams(n_positions=20_000))
    assert eth.target_source.startswith("estimate")


def test_older_event_without_published_open_interest_uses_a_labelled_ratio_estimate():
    """2024-08-05 publishes no OI level: the OI-to-volume ratio of 2025-10-10 (the nearest event
    that publishes one) is applied to the 7 days of traded notional before 2024-08-05."""
    from backtest.market import market_bars
    from backtest.population_inputs import recent_volume as _recent_volume
    from backtest.store import Store

    for sym in ("BTC/USDT:USDT", "ETH/USDT:USDT"):
        pop = build_population("2024-08-05", sym, PopulationParams(n_positions=20_000))
        assert pop.target_source.startswith("estimate: BTC/USDT:USDT open interest / 7-day traded notional before event 2025-10-10")
        st = Store()
        ref = _recent_volume(market_bars(st, "binanceusdm", "BTC/USDT:USDT", 1757534400000, 1760126400000), 1760126400000)
        own = _recent_volume(market_bars(st, "binanceusdm", sym, pop.as_of_ms - 31 * 86_400_000, pop.as_of_ms), pop.as_of_ms)
        assert pop.target_open_notional_usd == pytest.approx(15e9 / ref * own, rel=1e-9)
    # an explicit level still wins
    pop = build_population("2024-08-05", "BTC/USDT:USDT", PopulationParams(n_positions=20_000, open_interest_usd=7e9))
    assert pop.target_open_notional_usd == 7e9 and pop.target_source == "open_interest_usd parameter"


def test_store_open_interest_path(tmp_path):
    from backtest.store import Store

    st = Store(tmp_path)
    ts, o, h, l, c, v = synthetic_bars(n=72)
    sym = "BTC/USDT:USDT"
    st.write("ohlcv", pl.DataFrame({"ts": ts, "symbol": sym, "open": o, "high": h, "low": l, "close": c,
                                    "volume": v / c, "quote_volume": v}), exchange="binanceusdm", timeframe="1h")
    st.write("open_interest", pl.DataFrame({"ts": ts, "symbol": sym, "open_interest": np.full(72, 1e5),
                                            "open_interest_usd": np.linspace(8e9, 9e9, 72)}), exchange="binanceusdm", timeframe="1h")
    st.write_tiers("binanceusdm", {sym: btc_tiers()})
    ev = SimpleNamespace(id="synthetic", exchange="binanceusdm", symbols=(sym,), start_ms=int(ts[-1] + HOUR),
                         lookback_start_ms=int(ts[0]), pre_event_inputs=())
    pop = build_population(ev, sym, PopulationParams(n_positions=5_000, oi_scale=0.5), store=st)
    assert pop.target_open_notional_usd == pytest.approx(9e9 * 0.5)
    assert pop.target_source.startswith("store open_interest")
    assert pop.open_notional_usd == pytest.approx(4.5e9 * 0.8, rel=1e-6)  # hedged_share 0.2 not in the rows
    j = np.searchsorted(ts, pop.arrays["open_time"], side="right") - 1
    assert np.all(j >= 1)  # openings follow OI increases (bar 0 has none)
    # no OI anywhere -> one clear error
    st.write("ohlcv", pl.DataFrame({"ts": ts, "symbol": "ETH/USDT:USDT", "open": o / 30, "high": h / 30, "low": l / 30,
                                    "close": c / 30, "volume": v / c * 30}), exchange="binanceusdm", timeframe="1h")
    st.write_tiers("binanceusdm", {"ETH/USDT:USDT": btc_tiers()})
    ev2 = SimpleNamespace(**{**ev.__dict__, "symbols": (sym, "ETH/USDT:USDT")})
    with pytest.raises(ValueError, match="open_interest_usd"):
        build_population(ev2, "ETH/USDT:USDT", PopulationParams(n_positions=100), store=st)


def test_parquet_roundtrip(tmp_path):
    pop = build(PopulationParams(n_positions=5_000))
    path = tmp_path / "pop.parquet"
    pop.write_parquet(path)
    back = Population.read_parquet(path)
    for k in POPULATION_FIELDS:
        assert np.array_equal(pop.arrays[k], back.arrays[k], equal_nan=True)
    assert back.target_open_notional_usd == pop.target_open_notional_usd
    df = pop.to_polars()
    assert df.height == 5_000 and df.schema["side"] == pl.Int8
    assert Population.from_polars(df).open_notional_usd == pytest.approx(pop.open_notional_usd)


@pytest.mark.skipif(not _committed_ok(), reason="committed store or event catalogue not available")
def test_cli_population(tmp_path):
    from typer.testing import CliRunner

    from backtest.cli import app

    out = tmp_path / "btc.parquet"
    r = CliRunner().invoke(app, ["population", "2025-10-10", "--set", "n_positions=20000", "--set", "seed=1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "open notional" in r.output and "leverage histogram" in r.output and "distance to liquidation" in r.output
    assert Population.read_parquet(out).symbol == "BTC/USDT:USDT"
    bad = CliRunner().invoke(app, ["population", "2025-10-10", "--set", "long_share=2"])
    assert bad.exit_code == 2


def test_survival_judged_on_mark_price_when_stored(tmp_path):
    from backtest.store import Store

    st = Store(tmp_path)
    sym = "BTC/USDT:USDT"
    ts, o, h, l, c, v = synthetic_bars(n=96, crash_at=60, crash=0.2)  # a 20 % last-price wick
    st.write("ohlcv", pl.DataFrame({"ts": ts, "symbol": sym, "open": o, "high": h, "low": l, "close": c,
                                    "volume": v / c, "quote_volume": v}), exchange="binanceusdm", timeframe="1h")
    mark_low = np.minimum(o, c) * 0.999  # the mark price did not wick
    st.write("mark", pl.DataFrame({"ts": ts, "symbol": sym, "open": o, "high": h, "low": mark_low, "close": c}),
             exchange="binanceusdm", timeframe="1h")
    st.write_tiers("binanceusdm", {sym: btc_tiers()})
    ev = SimpleNamespace(id="synthetic", exchange="binanceusdm", symbols=(sym,), start_ms=int(ts[-1] + HOUR),
                         lookback_start_ms=int(ts[0]), pre_event_inputs=())
    p = PopulationParams(n_positions=20_000, open_interest_usd=1e9, turnover_half_life_days=5.0)
    mark = build_population(ev, sym, p, store=st)
    last = build_population(ev, sym, dataclasses_replace(p, survival_price="last"), store=st)
    assert mark.stats["survival_path"].startswith("mark") and last.stats["survival_path"].startswith("last")
    assert mark.stats["died_liquidated"] < last.stats["died_liquidated"]
    a = mark.arrays
    j = np.searchsorted(ts, a["open_time"], side="right") - 1
    inside_wick = (a["side"] > 0) & (j < 60) & (a["liq_price"] > l[60])
    assert inside_wick.any()  # longs the last-price wick would have killed survive on the mark path


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def test_size_distribution_is_the_truncated_pareto():
    from backtest.kernels.population_kernels import pareto_quantile, pareto_table

    lo_, hi_, alpha = 4000.0, 5e7, 1.5
    tab = pareto_table(lo_, hi_, alpha)
    tail = 1 - (lo_ / hi_) ** alpha
    u = np.linspace(0.0, 0.999999, 20001)
    approx = np.array([pareto_quantile(x, tab, lo_, tail, -1 / alpha) for x in u])
    exact = lo_ * (1 - u * tail) ** (-1 / alpha)
    np.testing.assert_allclose(approx, exact, rtol=5e-5)
    # in a built population (before survivorship trims the leveraged tail) sizes follow it:
    # the share above 10x the minimum is close to 10**-1.5
    a = build(PopulationParams(n_positions=50_000, leverage_mix={2: 1.0}, stop_share=0.0)).arrays
    notional = a["entry"] * a["qty"]
    assert notional.min() >= lo_ * (1 - 1e-9)
    assert abs((notional > 10 * lo_).mean() - 10 ** -1.5) < 0.01


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), isolated_share=st.floats(0.0, 1.0), leverage_scale=st.floats(0.3, 3.0),
       extra=st.floats(0.0, 3.0), long_share=st.floats(0.05, 0.95), stop_share=st.floats(0.0, 1.0))
def test_property_margin_is_notional_over_leverage_and_sides_hold(seed, isolated_share, leverage_scale, extra, long_share, stop_share):
    """On populations built with random settings: isolated margin = notional / leverage, cross
    collateral = that x (1 + extra); leverage within [1, the entry tier's max]; a long's
    liquidation price below entry, a short's above, and never beyond the bankruptcy price."""
    p = PopulationParams(n_positions=3_000, seed=seed, isolated_share=isolated_share, leverage_scale=leverage_scale,
                         cross_extra_collateral=extra, cross_extra_sigma=0.0, long_share=long_share, stop_share=stop_share)
    a = build(p, target=2e9).arrays
    notional = a["entry"] * a["qty"]
    lev_f = a["leverage"].astype(np.float64)
    iso = a["margin_mode"] == 0
    np.testing.assert_allclose(a["margin"][iso], notional[iso] / lev_f[iso], rtol=1e-6)
    np.testing.assert_allclose(a["margin"][~iso], (1 + extra) * notional[~iso] / lev_f[~iso], rtol=1e-6)
    lo, hi, rate, cum, lev = margin.tier_arrays(btc_tiers())
    t_entry = np.searchsorted(hi, notional, side="left")
    assert np.all(lev_f >= 1) and np.all(lev_f <= lev[t_entry] * (1 + 1e-6))
    s = a["side"].astype(np.float64)
    bk = a["entry"] - s * a["margin"] / a["qty"]
    liq = a["liq_price"]
    assert np.all(s * (a["entry"] - liq) > 0)
    assert np.all(s * (liq - bk) >= -1e-9 * a["entry"])  # triggers before the margin is gone


def test_cli_population_bad_out_is_refused_before_building(tmp_path, monkeypatch):
    """--out FILE: its folder must exist and be a folder, the file must not be a folder, it must
    end in .parquet; checked before any population is built, one line, exit 2."""
    from typer.testing import CliRunner

    import backtest.population as population
    from backtest.cli import app

    def boom(*a, **k):
        raise AssertionError("built a population although --out was bad")

    monkeypatch.setattr(population, "build_population", boom)
    (tmp_path / "file").write_text("keep me")
    (tmp_path / "dir.parquet").mkdir()
    cases = [
        (tmp_path / "file" / "x.parquet", "is a file, not a folder"),
        (tmp_path / "missing" / "x.parquet", "does not exist; create it first"),
        (tmp_path / "dir.parquet", "is a folder; give a file path"),
        (tmp_path / "x.csv", "must end in .parquet"),
    ]
    for out, message in cases:
        r = CliRunner().invoke(app, ["population", "2025-10-10", "--out", str(out)])
        assert r.exit_code == 2, (out, r.output)
        lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: --out") and message in lines[0], (out, r.output)
    assert (tmp_path / "file").read_text() == "keep me" and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("word", ["auto", "AUTO", "null", "none", " auto "])
def test_optional_parameters_take_auto(word):
    """A parameter whose default is None is derived from the data; reports call that "auto", so
    --set accepts auto (and null/none) for it, also when a base already set a number."""
    for name in ("long_share", "open_interest_usd", "turnover_half_life_days"):
        (p,) = apply_overrides([PopulationParams()], {name: word})
        assert getattr(p, name) is None
        (base,) = apply_overrides([PopulationParams()], {name: "0.5"})
        (p,) = apply_overrides([base], {name: word})
        assert getattr(p, name) is None


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"long_share": "true"}, "cannot read 'true' as a number; give a number, or long_share=auto"),
        ({"long_share": True}, "cannot read True as a number"),
        ({"isolated_share": "yes"}, "cannot read 'yes' as a number"),
        ({"stop_share": False}, "cannot read False as a number"),
        ({"leverage_scale": True}, "cannot read True as a number"),
        ({"n_positions": True}, "cannot read True as a whole number"),
        ({"n_positions": "1.5"}, "cannot read '1.5' as a whole number"),
        ({"stop_distance": "2"}, "stop_distance .* between 0 and 1"),
        ({"stop_distance": 1}, "stop_distance .* between 0 and 1"),
        ({"stop_distance": 0}, "stop_distance must be a positive number"),
        ({"long_share": 1.5}, "long_share must be between 0 and 1 or auto"),
        ({"isolated_share": -0.1}, "isolated_share must be between 0 and 1"),
        ({"stop_share": 2}, "stop_share must be between 0 and 1"),
        ({"open_interest_usd": "lots"}, "cannot read 'lots' as a number"),
    ],
)
def test_booleans_and_out_of_range_fractions_are_refused(overrides, match):
    with pytest.raises(ParamError, match=match):
        apply_overrides([PopulationParams()], overrides)


def test_booleans_are_refused_by_validate_too():
    for kw in ({"long_share": True}, {"isolated_share": True}, {"stop_share": False}):
        with pytest.raises(ValueError, match="between 0 and 1"):
            PopulationParams(**kw).validate()


def test_whole_floats_are_taken_for_integer_parameters():
    (p,) = apply_overrides([PopulationParams()], {"n_positions": "1e4", "seed": 3.0})
    assert p.n_positions == 10_000 and isinstance(p.n_positions, int) and p.seed == 3 and isinstance(p.seed, int)


@pytest.mark.skipif(not _committed_ok(), reason="committed store or event catalogue not available")
@pytest.mark.parametrize("symbol", ["BTC/USDT:USDT", "ETH/USDT:USDT"])
def test_2025_10_10_every_survivor_clears_the_path_up_to_the_event_start(symbol):
    """Issue 11, bug 1: a position that enters the event has not been liquidated (or stopped)
    between its opening bar and the event start. The path after the opening bar: the mark bars
    that start at or after its end, and for the stretch before the next mark bar (all of it
    inside the last mark bar before the event) the finest stored last-price bars."""
    from backtest.market import mark_bars, market_bars
    from backtest.store import Store

    from backtest.events import get_event

    ev = get_event("2025-10-10")
    st = Store()
    pop = build_population(ev, symbol, PopulationParams(n_positions=40_000, seed=7, stop_share=0.5))
    bars = market_bars(st, ev.exchange, symbol, ev.lookback_start_ms, ev.start_ms)
    mk = mark_bars(st, ev.exchange, symbol, ev.lookback_start_ms, ev.start_ms)
    assert mk is not None and mk["ts"][-1] < ev.start_ms
    a = pop.arrays
    j = np.searchsorted(bars["ts"], a["open_time"], side="right") - 1
    end = bars["ts"][j] + bars["dur"][j]
    s = a["side"].astype(np.float64)
    liq = a["liq_price"]
    stop = a["stop_price"]
    ends = bars["ts"] + bars["dur"]
    # the last stretch: last-price bars that start at or after the opening bar's end and end by
    # the start of the next mark bar (the event start for positions in the last mark bar)
    k = np.searchsorted(mk["ts"], end, side="left")
    nxt = np.where(k < mk["ts"].shape[0], mk["ts"][np.minimum(k, mk["ts"].shape[0] - 1)], ev.start_ms)
    in_last = a["open_time"] >= mk["ts"][-1]
    assert in_last.sum() > 0.02 * len(pop)  # the case the bug left unchecked is there
    bad = 0
    for jj in np.unique(j):
        rows = j == jj
        fine = (bars["ts"] >= end[rows][0]) & (ends <= nxt[rows][0])
        mk_after = mk["ts"] >= end[rows][0]
        lo = min(bars["low"][fine].min(initial=np.inf), mk["low"][mk_after].min(initial=np.inf))
        hi = max(bars["high"][fine].max(initial=-np.inf), mk["high"][mk_after].max(initial=-np.inf))
        r = np.flatnonzero(rows)
        longs, shorts = r[s[r] > 0], r[s[r] < 0]
        bad += int(np.sum(liq[longs] >= lo) + np.sum(liq[shorts] <= hi))
        bad += int(np.sum(np.nan_to_num(stop[longs], nan=-np.inf) >= lo) + np.sum(np.nan_to_num(stop[shorts], nan=np.inf) <= hi))
    assert bad == 0


# ------------------------------------------------------------------------------------------
# a book shaped like real ones (issue 11 point 4)
def _deciles(x):
    order = np.argsort(x, kind="stable")
    n = len(x) // 10
    return order[:n], order[-n:]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), slope=st.floats(0.2, 0.6), leverage_scale=st.floats(0.5, 2.0),
       hedged=st.floats(0.0, 0.9), median=st.floats(0.0, 3.0), sigma=st.floats(0.0, 2.0))
def test_property_book_shape(seed, slope, leverage_scale, hedged, median, sigma):
    """On synthesised populations: the top size decile runs lower mean leverage than the bottom
    one; no row above its entry tier's max leverage (the tier table caps leverage by notional);
    the hedged share of the open notional is the one set; cross collateral over initial margin is
    1 + the excess, never below 1."""
    p = PopulationParams(n_positions=20_000, seed=seed, leverage_size_slope=slope, leverage_scale=leverage_scale,
                         hedged_share=hedged, cross_extra_collateral=median, cross_extra_sigma=sigma)
    pop = build(p, target=3e9)
    a = pop.arrays
    notional = a["entry"] * a["qty"]
    lev = a["leverage"].astype(np.float64)
    bottom, top = _deciles(notional)
    assert lev[top].mean() < lev[bottom].mean()
    lo, hi, rate, cum, tier_lev = margin.tier_arrays(btc_tiers())
    t_entry = np.searchsorted(hi, notional, side="left")
    assert np.all(lev <= tier_lev[t_entry] * (1 + 1e-6)) and np.all(lev >= 1)
    total = pop.open_notional_usd + pop.hedged_notional_usd
    assert total == pytest.approx(3e9, rel=1e-6)
    assert pop.hedged_notional_usd / total == pytest.approx(hedged, rel=1e-6, abs=1e-12)  # float32 weights
    assert pop.open_notional_usd == pytest.approx(open_notional(a), rel=1e-6)
    cross = a["margin_mode"] == 1
    mult = a["margin"][cross] * lev[cross] / notional[cross]
    assert np.all(mult >= 1 - 1e-6)
    assert np.all(mult <= (1 + median * np.exp(3.8 * sigma)) * (1 + 1e-6))  # float32 leverage


@pytest.mark.parametrize("median,sigma", [(1.0, 1.0), (0.5, 0.3), (2.0, 1.5)])
def test_excess_collateral_has_the_configured_median(median, sigma):
    """Excess collateral of cross rows (collateral / initial margin - 1) is lognormal with the
    configured median and log-sd (on a path that liquidates nobody: 2x leverage, no stops)."""
    from statistics import NormalDist

    from backtest.kernels.population_kernels import table_quantile
    from backtest.population import excess_collateral_table

    tab = excess_collateral_table(median, sigma)
    for u in (0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        exact = median * math.exp(sigma * NormalDist().inv_cdf(u))
        assert table_quantile(u, tab) == pytest.approx(exact, rel=2e-3)
    assert table_quantile(0.5, tab) == pytest.approx(median, rel=1e-12)
    p = PopulationParams(n_positions=30_000, seed=9, leverage_mix={2: 1.0}, stop_share=0.0, isolated_share=0.0,
                         cross_extra_collateral=median, cross_extra_sigma=sigma)
    pop = build(p)
    a = pop.arrays
    assert pop.stats["died_liquidated"] == 0
    excess = a["margin"] * a["leverage"].astype(np.float64) / (a["entry"] * a["qty"]) - 1
    assert np.median(excess) == pytest.approx(median, rel=0.04)
    logs = np.log(excess)
    assert np.std(logs) == pytest.approx(sigma, rel=0.05)


def test_leverage_falls_with_size_at_defaults():
    """Issue 11: every size decile had the same effective leverage (10.8-11.0x); at the defaults
    the top decile's mean leverage is well below the bottom's."""
    a = build(PopulationParams(n_positions=50_000, seed=1)).arrays
    notional = a["entry"] * a["qty"]
    bottom, top = _deciles(notional)
    lev = a["leverage"].astype(np.float64)
    assert lev[top].mean() < 0.8 * lev[bottom].mean()
    flat = build(PopulationParams(n_positions=50_000, seed=1, leverage_size_slope=0.0)).arrays
    fb, ft = _deciles(flat["entry"] * flat["qty"])
    fl = flat["leverage"].astype(np.float64)
    assert fl[ft].mean() > 0.8 * fl[fb].mean()  # without the slope only the tier caps act


# ------------------------------------------------------------------------------------------
# in-window flow (issue 11 point 5)
# ------------------------------------------------------------------------------------------
def _window(n=48, seed=4):
    rng = np.random.default_rng(seed)
    ts0 = synthetic_bars()[0][-1] + HOUR
    ts = ts0 + np.arange(n, dtype=np.int64) * 300_000
    close = 100_000 * np.exp(np.cumsum(rng.normal(-0.002, 0.004, n)))
    vol = rng.uniform(1e8, 5e8, n)
    return ts, np.full(n, 300_000, np.int64), close, vol


def _with_flow(params, **kw):
    from backtest.population import add_window_flow

    pop = build(params)
    ts, dur, close, vol = _window()
    return pop, add_window_flow(pop, ts, dur, close, vol, tiers=btc_tiers(), params=params, long_share=0.4, **kw), (ts, dur, close, vol)


def test_window_flow_opens_in_proportion_to_volume_at_the_close_and_closes_voluntarily():
    from backtest.records import NO_CLOSE

    p = PopulationParams(n_positions=20_000, flow_turnover=0.3, close_rate=0.2)
    n0 = 20_000
    _, pop, (ts, dur, close, vol) = _with_flow(p)
    a = pop.arrays
    check_population(a)
    late = np.arange(len(pop)) >= n0
    assert late.sum() == pop.stats["flow_rows"] > 0
    ends = ts + dur
    # openings: at a bar's close, at its close price, notional per bar = flow_turnover x volume x (1 - hedged)
    j = np.searchsorted(ends, a["open_time"][late])
    assert np.array_equal(ends[j], a["open_time"][late])
    assert np.array_equal(a["entry"][late], close[j])
    notional = a["weight"][late].astype(np.float64) * a["entry"][late] * a["qty"][late]
    per_bar = np.bincount(j, weights=notional, minlength=len(ts))
    np.testing.assert_allclose(per_bar, 0.3 * vol * 0.8, rtol=1e-5)
    longs = np.bincount(j[a["side"][late] > 0], weights=notional[a["side"][late] > 0], minlength=len(ts))
    np.testing.assert_allclose(longs / per_bar, 0.4, rtol=1e-5)
    # leverage falls with size for in-window positions too
    big = a["entry"][late] * a["qty"][late] > 1e6
    small = a["entry"][late] * a["qty"][late] < 2e4
    assert a["leverage"][late][big].mean() < a["leverage"][late][small].mean()
    # voluntary closes: at a bar's end, after the opening; roughly close_rate x volume in notional
    ct = a["close_time"]
    closed = ct != NO_CLOSE
    assert closed.any() and np.all(ct[closed] > a["open_time"][closed])
    assert np.all(np.isin(ct[closed], ends))
    assert pop.stats["flow_closed_usd"] == pytest.approx(0.2 * vol.sum() * 0.8, rel=1e-6)


def test_window_flow_off_leaves_the_population_as_it_was():
    from backtest.records import NO_CLOSE

    p = PopulationParams(n_positions=20_000, flow_turnover=0.0, close_rate=0.0)
    before = build(p)
    ref = {k: v.copy() for k, v in before.arrays.items()}
    _, pop, _ = _with_flow(p)
    assert len(pop) == 20_000
    for k in ref:
        assert np.array_equal(pop.arrays[k], ref[k], equal_nan=True), k
    assert np.all(pop.arrays["close_time"] == NO_CLOSE)


def test_window_flow_net_follows_the_observed_open_interest_change():
    from backtest.population import window_flows

    p = PopulationParams(flow_turnover=0.1, close_rate=0.1)
    vol = np.full(5, 1e8)
    close = np.full(5, 10.0)
    q = np.array([1e6, 1.5e6, 0.5e6, np.nan, 0.5e6])  # contracts at each bar's end
    o, c, follows = window_flows(vol, p, close, q, 1e6)
    scale = 0.8
    net = np.array([0.0, 0.5e6, -1e6, np.nan, np.nan]) * 10.0 * scale
    assert list(follows) == [True, True, True, False, False]
    np.testing.assert_allclose((o - c)[:3], net[:3])
    assert np.all(o >= 0) and np.all(c >= 0)
    # bars without an observation fall back to the volume rule
    np.testing.assert_allclose(o[3:], 0.1 * 1e8 * scale)


def test_2025_10_10_hype_population_follows_its_open_interest():
    from backtest.population import build_population

    pop = build_population("2025-10-10", "HYPE/USDT:USDT", PopulationParams(n_positions=20_000, seed=2))
    assert pop.stats["flow_follows_open_interest_bars"] == pop.stats["flow_bars"] == 48
    assert pop.stats["flow_rows"] > 0 and "SOLUSDT" in pop.stats["tiers_source"]
    assert (pop.arrays["open_time"] > pop.as_of_ms).sum() == pop.stats["flow_rows"]
