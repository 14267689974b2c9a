"""Accounts off (replay and cascade) give the per-symbol model's outputs bit for bit (issue 12): ``tests/golden/pre_accounts.json`` (first a copy of ``golden.json``
before accounts existed; re-written by ``tests.golden.make_pre_accounts`` with each intended
change of the per-symbol model) less the new parameters, columns and ``contagion_*`` keys; and a
replay with accounts on but every position isolated equals one with accounts off."""

from __future__ import annotations

import json

import polars as pl
import pytest

from tests.golden import make_golden as G
from tests.golden.make_pre_accounts import EXTRA, without_accounts

PRE = json.loads((G.GOLDEN / "pre_accounts.json").read_text())


@pytest.mark.parametrize("run", sorted(EXTRA))
def test_accounts_off_equal_the_per_symbol_model(run, tmp_path):
    out = tmp_path / run
    G.backtest(*G.RUNS[run], *EXTRA[run], "--out", str(out))
    assert not any(k.startswith("contagion_") for k in json.loads((out / "summary.json").read_text()))
    liq = pl.read_parquet(out / "liquidations.parquet")
    assert (liq["account"] == -1).all() and (liq["contagion"] == 0).all()
    got, want = without_accounts(run, out), PRE[run]
    assert G.dumps(got["summary"]) == G.dumps(want["summary"])
    for p in G.PARQUETS:
        assert G.dumps(got["frames"][p]) == G.dumps(want["frames"][p]), f"{run} {p}.parquet differs"


def test_every_position_isolated_equals_accounts_off(tmp_path):
    """No cross row, no shared account: accounts on changes nothing but the added keys."""
    small = ["replay", "2025-10-10", "--symbol", "BTC/USDT:USDT", "--symbol", "ETH/USDT:USDT", "--set", "n_positions=20000",
             "--set", "isolated_share=1"]
    G.backtest(*small, "--out", str(tmp_path / "on"))
    G.backtest(*small, "--set", "accounts=false", "--out", str(tmp_path / "off"))
    on, off = (without_accounts("replay", tmp_path / x) for x in ("on", "off"))
    on["summary"] = {k: v for k, v in on["summary"].items() if not k.startswith("contagion_")}
    on["summary"]["notes"] = [n for n in on["summary"].get("notes", []) if "account" not in n]
    off["summary"]["notes"] = [n for n in off["summary"].get("notes", []) if "account" not in n and "cross positions" not in n]
    assert G.dumps(on) == G.dumps(off)
