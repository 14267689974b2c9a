"""The fast population rebuild of calibrations and sweeps (store-derived inputs read once per
event, only the draw per sample) equals the full build, bit for bit, for the same parameters and seed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest.population import PopulationParams, build_from_inputs, build_population, population_inputs

EVENT = "2025-10-10"
SYMBOL = "ETH/USDT:USDT"


@pytest.fixture(scope="module")
def inputs():
    return population_inputs(EVENT, SYMBOL, PopulationParams(n_positions=5_000))


def _same(a, b) -> None:
    assert a.arrays.keys() == b.arrays.keys()
    for k in a.arrays:
        x, y = a.arrays[k], b.arrays[k]
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), k
    assert a.open_notional_usd == b.open_notional_usd and a.target_source == b.target_source
    assert a.stats == b.stats and a.params == b.params and a.hedged_notional_usd == b.hedged_notional_usd


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31), lev=st.floats(0.5, 2.0), extra=st.floats(0.0, 3.0), oi=st.floats(0.5, 1.5),
       iso=st.floats(0.1, 0.7), stop=st.floats(0.0, 0.5))
def test_rebuild_from_cached_inputs_equals_the_full_build(inputs, seed, lev, extra, oi, iso, stop):
    p = PopulationParams(n_positions=5_000, seed=seed, leverage_scale=lev, cross_extra_collateral=extra, oi_scale=oi,
                         isolated_share=iso, stop_share=stop)
    _same(build_from_inputs(inputs, p), build_population(EVENT, SYMBOL, p))


def test_inputs_of_other_input_parameters_are_refused(inputs):
    with pytest.raises(ValueError, match="inputs were read for"):
        build_from_inputs(inputs, PopulationParams(n_positions=5_000, long_share=0.7))


def test_simulate_prepared_rebuild_equals_a_fresh_prepare():
    """A prepared event rebuilding its populations for new parameters (cached inputs) gives the
    summary a fresh prepare with those parameters gives (timings aside)."""
    from backtest.simulate import prepare, simulate_prepared

    base = {"n_positions": 5_000}
    prep = prepare(EVENT, base, symbols=["BTC/USDT:USDT", SYMBOL])
    for over in ({"leverage_scale": 1.4, "cross_extra_collateral": 0.3}, {"oi_scale": 0.7, "seed": 9}, {"long_share": 0.55}):
        fast = simulate_prepared(prep, over, mode="cascade", summary_only=True).summary.to_dict()
        fresh = simulate_prepared(prepare(EVENT, {**base, **over}, symbols=["BTC/USDT:USDT", SYMBOL]), None, mode="cascade",
                                  summary_only=True).summary.to_dict()
        for d in (fast, fresh):
            d.pop("timings_s", None)
        assert fast == fresh, over
    assert len(prep._inputs_cache) == 4  # two symbols x (the base inputs, long_share=0.55's)


def test_excess_collateral_nodes_are_computed_once():
    from backtest.population import _extra_z, excess_collateral_table

    assert _extra_z() is _extra_z()
    assert excess_collateral_table(1.0, 0.0).tolist() == [1.0] * len(_extra_z())
    assert np.isclose(np.median(excess_collateral_table(2.0, 1.0)), 2.0)
    assert not dataclasses.is_dataclass(_extra_z())


def test_rebuilds_into_evicted_buffers_give_the_same_summaries():
    """With ``reuse_buffers`` (calibrations) a rebuild writes into the arrays of the population set
    it evicts; every sample's summary is the one a fresh prepare gives. The reuse needs
    populations of ``n_positions`` rows: with the in-window flow on (the default) the rows that
    open during the window are appended, the arrays are new, and only the equality holds."""
    from backtest.simulate import prepare, simulate_prepared

    base = {"n_positions": 5_000, "flow_turnover": 0.0, "close_rate": 0.0}
    syms = ["BTC/USDT:USDT", SYMBOL]
    samples = [{"leverage_scale": 1.4}, {"leverage_scale": 0.7, "seed": 2}, {"cross_extra_collateral": 2.5}, {"leverage_scale": 1.4},
               {"n_positions": 3_000}, {}]
    prep = prepare(EVENT, base, symbols=syms)
    prep.reuse_buffers = True
    before = {s: {k: v.copy() for k, v in prep.populations[s].arrays.items()} for s in syms}
    seen_buffers = set()
    for over in samples:
        fast = simulate_prepared(prep, over, mode="replay", summary_only=True).summary.to_dict()
        fresh = simulate_prepared(prepare(EVENT, {**base, **over}, symbols=syms), None, mode="replay", summary_only=True).summary.to_dict()
        for d in (fast, fresh):
            d.pop("timings_s", None)
        assert fast == fresh, over
        for v in prep._pop_cache.values():
            seen_buffers.add(id(v[SYMBOL].arrays["entry"]))
    # the prepared population itself is never written into
    for s in syms:
        for k, v in before[s].items():
            assert v.tobytes() == prep.populations[s].arrays[k].tobytes()
    assert len(seen_buffers) <= 4  # the prepared set, and few others reused (not one per sample)
