"""Accounts off (or a cascade, where every row stays its own account) give the previous issue's
outputs bit for bit (issue 12): the golden outputs written before accounts existed
(``tests/golden/pre_accounts.json``, a copy of ``golden.json`` at that commit) less the new
parameters, columns and ``contagion_*`` keys."""

from __future__ import annotations

import json

import polars as pl
import pytest

from tests.golden import make_golden as G

PRE = json.loads((G.GOLDEN / "pre_accounts.json").read_text())
NEW_PARAMS = ("accounts", "positions_per_account", "collateral_share", "collateral_haircut", "collateral_shock")
NEW_COLUMNS = {"bars": ["contagion_usd", "own_market_usd", "account_deficit_usd"], "liquidations": ["account", "contagion", "source"]}


@pytest.mark.parametrize("run,extra", [("replay", ["--set", "accounts=false"]), ("cascade", [])])
def test_accounts_off_equal_the_previous_issue(run, extra, tmp_path):
    out = tmp_path / run
    G.backtest(*G.RUNS[run], *extra, "--out", str(out))
    summary = G.clean_summary(json.loads((out / "summary.json").read_text()))
    assert not any(k.startswith("contagion_") for k in summary)
    for k in NEW_PARAMS:
        summary["params"].pop(k)
    frames = {}
    for p in G.PARQUETS:
        df = pl.read_parquet(out / f"{p}.parquet")
        if p == "liquidations":
            assert (df["account"] == -1).all() and (df["contagion"] == 0).all()
        frames[p] = G.frame_digest(df.drop(NEW_COLUMNS.get(p, [])))
    got = json.loads(G.dumps({"summary": summary, "frames": frames}))
    want = PRE[run]
    assert G.dumps(got["summary"]) == G.dumps(want["summary"])
    for p in G.PARQUETS:
        assert G.dumps(got["frames"][p]) == G.dumps(want["frames"][p]), f"{run} {p}.parquet differs"
