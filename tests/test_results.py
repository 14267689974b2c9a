"""The declared result contracts: frames of results.FRAME_SCHEMAS, the typed summary as summary.json."""

from __future__ import annotations

import dataclasses
import json

import pytest

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
