"""``backtest calibrate EVENT --window START/END --exchange X --symbol S --targets FILE``: an ad-hoc
event (as ``replay`` takes one) is calibrated against the figures the targets file gives for it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from backtest.cli import app

runner = CliRunner()
WINDOW = "2025-10-10T20:00Z/2025-10-10T22:00Z"
TARGETS = """
[[figures]]
id = "btc-crash/total"
event = "btc-crash"
what = "BTC liquidations, a made-up lower bound for the test"
kind = "lower_bound"
metric = "liquidated_notional_usd"
venues = ["binanceusdm"]
target = 1.0e8
"""


def test_calibrate_an_adhoc_window_event(tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text(TARGETS)
    out = tmp_path / "run"
    r = runner.invoke(app, ["calibrate", "btc-crash", "--window", WINDOW, "--exchange", "binanceusdm", "--symbol", "BTC/USDT:USDT",
                            "--targets", str(targets), "--fit", "leverage_scale", "--samples", "4", "--generations", "1",
                            "--n-positions", "2000", "--executor", "serial", "--out", str(out)])
    assert r.exit_code == 0, r.output
    run = json.loads((out / "run.json").read_text())
    assert run["events"] == ["btc-crash"] and run["adhoc"]["symbols"] == ["BTC/USDT:USDT"]
    assert run["adhoc"]["window"] == ["2025-10-10T20:00:00Z", "2025-10-10T22:00:00Z"]
    diag = json.loads((out / "diagnostics.json").read_text())
    assert diag["provenance"]["targets"] == ["btc-crash/total"]
    assert "--window 2025-10-10T20:00:00Z/2025-10-10T22:00:00Z" in diag["provenance"]["refit"]
    import polars as pl

    pred = pl.read_parquet(out / "predictive.parquet")
    assert {"btc-crash/total", "btc-crash|liquidated_notional_usd"} <= set(pred.columns) and pred.height == 4


def test_calibrate_window_bad_input_is_one_line(tmp_path):
    targets = tmp_path / "t.toml"
    targets.write_text(TARGETS)
    base = ["calibrate", "btc-crash", "--fit", "leverage_scale", "--out", str(tmp_path / "o")]
    cases = [
        ([*base, "--window", WINDOW, "--targets", str(targets)], "needs its symbols"),
        ([*base, "--window", WINDOW, "--symbol", "BTC/USDT:USDT"], "give --targets FILE"),
        ([*base, "--symbol", "BTC/USDT:USDT"], "give it with --window"),
        (["calibrate", "a", "b", "--fit", "leverage_scale", "--window", WINDOW, "--symbol", "BTC/USDT:USDT", "--targets", str(targets),
          "--out", str(tmp_path / "o")], "one ad-hoc event"),
        ([*base, "--window", "2025-10-10/yesterday", "--symbol", "BTC/USDT:USDT", "--targets", str(targets)], "--window"),
    ]
    for args, expect in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert expect in r.output, (expect, r.output)
        assert "Traceback" not in r.output
    assert not (tmp_path / "o").exists()
