"""The declared result contracts: frames of results.FRAME_SCHEMAS, the typed summary as summary.json."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backtest.results import CONTAGION_KEYS, FRAME_SCHEMAS, SCALAR_FIELDS, Summary, SymbolSummary, metrics
from backtest.simulate import prepare, simulate_prepared


@pytest.fixture(scope="module")
def run():
    prep = prepare("2025-10-10", overrides={"n_positions": 5_000, "seed": 2}, symbols=["BTC/USDT:USDT"])
    return simulate_prepared(prep, mode="cascade")


def test_frames_have_their_declared_schemas(run):
    for name, schema in FRAME_SCHEMAS.items():
        frame = getattr(run, name)
        assert dict(frame.schema) == schema, name
    assert run.liquidations.height > 0 and run.bars.height > 0


def test_summary_is_typed_and_its_json_is_summary_json(run, tmp_path):
    s = run.summary
    assert isinstance(s, Summary) and isinstance(s.per_symbol["BTC/USDT:USDT"], SymbolSummary)
    assert s["liquidated_notional_usd"] == s.liquidated_notional_usd == s.get("liquidated_notional_usd") > 0
    # only when the store holds observed liquidations; contagion_*: only when the account engine ran (accounts on)
    optional = {"observed_liquidated_usd", "observed_liquidated_note", *CONTAGION_KEYS}
    assert set(s) == {f.name for f in dataclasses.fields(Summary)} - {"observed_liquidated_usd", "observed_liquidated_note"}
    assert "nope" not in s and s.get("nope", 1) == 1
    run.write(tmp_path / "o")
    text = (tmp_path / "o" / "summary.json").read_text()
    assert text == s.json_text()
    assert list(json.loads(text)) == [f.name for f in dataclasses.fields(Summary) if f.name not in optional or f.name in CONTAGION_KEYS]
    assert list(json.loads(text)["per_symbol"]["BTC/USDT:USDT"]) == [f.name for f in dataclasses.fields(SymbolSummary)]
    m = metrics(s)
    assert list(m) == list(SCALAR_FIELDS) and "params" not in m and m["mode"] == "cascade"


def test_one_volume_rule():
    import numpy as np
    import polars as pl

    from backtest.market import volume_usd

    df = pl.DataFrame({"high": [12.0, 12.0], "low": [9.0, 9.0], "close": [10.0, 10.0], "volume": [3.0, 3.0],
                       "quote_volume": [100.0, None]})
    # quote volume where stored, else volume x the typical price (high + low + close) / 3
    assert volume_usd(df).tolist() == pytest.approx([100.0, 31.0], rel=1e-15)
    assert volume_usd(df.with_columns(pl.lit(np.nan).alias("quote_volume"))).tolist() == pytest.approx([31.0, 31.0], rel=1e-15)


def _oi_case(data):
    import numpy as np

    from backtest import records as R

    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    n_rows = data.draw(st.integers(0, 300))
    n_bars = data.draw(st.integers(1, 30))
    step = data.draw(st.sampled_from([1_000, 60_000]))
    ts = np.arange(n_bars, dtype=np.int64) * step + 1_000_000
    if data.draw(st.booleans()) and n_bars > 2:  # a gap: not a regular grid
        ts[n_bars // 2:] += 7 * step
    lo, hi = int(ts[0]) - 2 * step, int(ts[-1]) + 3 * step
    open_time = np.where(rng.random(n_rows) < 0.4, np.iinfo(np.int64).min, rng.integers(lo, hi, n_rows)).astype(np.int64)
    close_time = np.where(rng.random(n_rows) < 0.4, R.NO_CLOSE, rng.integers(lo, hi, n_rows)).astype(np.int64)
    # bar ends exactly, too (the sides of the searches)
    on_end = rng.random(n_rows) < 0.2
    open_time[on_end] = ts[rng.integers(0, n_bars, on_end.sum())] + step
    arrays = {"qty": rng.lognormal(0, 1, n_rows), "weight": rng.uniform(0, 3, n_rows).astype(np.float32),
              "open_time": open_time, "close_time": close_time}
    m = data.draw(st.integers(0, n_rows)) if n_rows else 0
    x_pos = rng.choice(n_rows, m, replace=False).astype(np.int64) if m else np.zeros(0, np.int64)
    x_ts = rng.integers(lo, hi, m).astype(np.int64)
    x_share = None
    if m and data.draw(st.booleans()):  # partial exits: some rows leave in parts
        x_share = np.where(rng.random(m) < 0.3, rng.uniform(0.1, 0.9, m), 1.0)
        extra = x_pos[x_share < 1.0]
        x_pos = np.r_[x_pos, extra]
        x_ts = np.r_[x_ts, rng.integers(lo, hi, extra.size)].astype(np.int64)
        x_share = np.r_[x_share, np.full(extra.size, 0.5)]
    close = rng.uniform(50, 150, n_bars)
    return arrays, x_pos, x_ts, ts, step, close, x_share


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_simulated_open_interest_kernel_equals_its_numpy_reference(data):
    """The simulated open interest's kernel (kernels.cascade.simulated_oi_nb) gives its numpy
    reference's values bit for bit: regular and gapped bar grids, times on bar ends, rows open
    from the start or never closed, whole and partial exits."""
    import numpy as np

    from backtest.results import simulated_open_interest, simulated_open_interest_reference

    args = _oi_case(data)
    fast = simulated_open_interest(*args[:6], x_share=args[6])
    ref = simulated_open_interest_reference(*args[:6], x_share=args[6])
    assert fast.dtype == ref.dtype and np.array_equal(fast.view(np.int64), ref.view(np.int64))
