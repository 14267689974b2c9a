"""Write ``pre_accounts.json``: the golden runs with every row its own account (``accounts=false``
in replay and in a cascade), less the accounts' parameters, columns and keys.

Issue 12 asks that with accounts off (or every position isolated) the results equal the previous
issue's bit for bit. The file was first written from ``golden.json`` before accounts existed;
after a later, intended change of the per-symbol model it is re-written with this script (in the
same commit as the golden re-bless), so ``tests/test_accounts_golden.py`` keeps guarding that the
account machinery leaves the per-symbol path untouched. Run: ``python -m tests.golden.make_pre_accounts``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import polars as pl

from tests.golden import make_golden as G

NEW_PARAMS = ("accounts", "positions_per_account", "collateral_share", "collateral_haircut", "collateral_shock", "account_iterations",
              "partial_liquidation", "collateral_asset")
NEW_COLUMNS = {"bars": ["contagion_usd", "own_market_usd", "account_deficit_usd"], "liquidations": ["account", "contagion", "source"]}
EXTRA = {"replay": ["--set", "accounts=false"], "cascade": ["--set", "accounts=false"]}


def without_accounts(run: str, out: Path) -> dict:
    """The summary and frame digests of one run in ``out``, less what accounts added."""
    summary = G.clean_summary(json.loads((out / "summary.json").read_text()))
    for k in NEW_PARAMS:
        summary["params"].pop(k, None)
    frames = {p: G.frame_digest(pl.read_parquet(out / f"{p}.parquet").drop(NEW_COLUMNS.get(p, []))) for p in G.PARQUETS}
    return json.loads(G.dumps({"summary": summary, "frames": frames}))


if __name__ == "__main__":
    got = {}
    with tempfile.TemporaryDirectory() as d:
        for run, extra in EXTRA.items():
            out = Path(d) / run
            G.backtest(*G.RUNS[run], *extra, "--out", str(out))
            got[run] = without_accounts(run, out)
    (G.GOLDEN / "pre_accounts.json").write_text(G.dumps(got) + "\n")
    print(f"wrote {G.GOLDEN / 'pre_accounts.json'}")
