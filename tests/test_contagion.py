"""Accounts in replay (issue 12) on the committed data: contagion split in the summary, the
liquidations' account column, a collateral shock (a SCENARIO, not market data)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from backtest import records as R
from backtest.results import CONTAGION_KEYS, LIQUIDATIONS_SCHEMA
from backtest.simulate import prepare, simulate_prepared

SETS = {"n_positions": 4000, "seed": 3}


@pytest.fixture(scope="module")
def prep():
    return prepare("2025-10-10", dict(SETS))


@pytest.fixture(scope="module")
def on(prep):
    return simulate_prepared(prep, mode="replay")


def test_replay_splits_contagion_from_own_market(on):
    s = on.summary
    for k in CONTAGION_KEYS:
        assert k in s.keys(), k
    assert s.contagion_liquidated_usd > 0
    # accounts live on the primary venue: the split covers its liquidations
    primary = next(iter(s.venues.values())) if s.venues else None  # the primary venue comes first
    liq_total = primary.liquidated_notional_usd if primary is not None else s.liquidated_notional_usd
    assert s.contagion_liquidated_usd + s.contagion_own_market_usd == pytest.approx(liq_total, rel=1e-9)
    classes = s.contagion_by_class
    assert set(classes) == set(R.ACCOUNT_CLASS_NAMES.values())
    assert classes["isolated"]["contagion_usd"] == 0 and classes["single_symbol_cross"]["contagion_usd"] == 0
    assert classes["multi_symbol_cross"]["contagion_usd"] == pytest.approx(s.contagion_liquidated_usd)
    assert sum(sum(v.values()) for v in s.contagion_matrix_usd.values()) == pytest.approx(s.contagion_liquidated_usd)
    assert sum(v["liquidated_usd"] for v in classes.values()) == pytest.approx(liq_total, rel=1e-9)


def test_liquidations_carry_accounts(on):
    liq = on.liquidations
    assert list(liq.schema) == list(LIQUIDATIONS_SCHEMA)
    # isolated rows never share an account; cross rows of other venues, or opening or closing
    # during the window, stay positions of their own (account -1)
    assert (liq["account"].filter(liq["margin_mode"] == R.ISOLATED) == -1).all()
    assert (liq["margin_mode"].filter(liq["account"] >= 0) == R.CROSS).all()
    assert (liq["exchange"].filter(liq["account"] >= 0) == "binanceusdm").all()
    cont = liq.filter(liq["contagion"] == 1)
    assert cont.height > 0 and cont["source"].null_count() == 0
    # an account's rows go at one time
    per = liq.filter(pl.col("account") >= 0).group_by("account").agg(pl.col("ts").n_unique().alias("n"))
    assert (per["n"] == 1).all()
    bars = on.bars
    assert float(bars["contagion_usd"].sum()) == pytest.approx(on.summary.contagion_liquidated_usd, rel=1e-6)
    assert float((bars["long_liq_usd"] + bars["short_liq_usd"]).sum()) == pytest.approx(on.summary.liquidated_notional_usd, rel=1e-6)


def test_collateral_shock_adds_collateral_contagion(prep, on):
    shocked = simulate_prepared(prep, {"collateral_share": 0.5, "collateral_shock": "-0.35@2025-10-10T20:30Z"}, mode="replay")
    m = shocked.summary.contagion_matrix_usd
    assert m.get("collateral", {}) and sum(m["collateral"].values()) > 0
    src = shocked.liquidations.filter(shocked.liquidations["source"] == "collateral")
    assert src.height > 0 and (src["ts"].dt.epoch("ms").to_numpy() >= np.int64(1760128200000)).all()
    assert shocked.summary.liquidated_notional_usd > on.summary.liquidated_notional_usd


def test_accounts_off_gives_no_contagion_keys(prep):
    off = simulate_prepared(prep, {"accounts": False}, mode="replay")
    assert not any(k in off.summary.keys() for k in CONTAGION_KEYS)
    assert (off.liquidations["account"] == -1).all()
