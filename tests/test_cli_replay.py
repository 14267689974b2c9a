"""The replay and cascade commands: outputs, summary table, bad input exits 2 with one line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from backtest.cli import app

runner = CliRunner()


def test_replay_command(committed_store, tmp_path):
    out = tmp_path / "r"
    r = runner.invoke(app, ["replay", "2025-10-10", "--symbol", "BTC/USDT:USDT", "--set", "n_positions=100000", "--out", str(out), "--store", str(committed_store)])
    assert r.exit_code == 0, r.output
    assert "peak minute" in r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["peak_minute"].startswith("2025-10-10T21:")
    assert s["params"]["n_positions"] == 100000
    assert (out / "bars.parquet").exists() and (out / "clusters.parquet").exists()


def test_cascade_command_with_shock_and_config(committed_store, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('impact_model = "linear"\nn_positions = 100000\n')
    out = tmp_path / "c"
    r = runner.invoke(app, ["cascade", "2025-10-10", "--shock", "-5%@2025-10-10T21:00Z", "--symbol", "BTC/USDT:USDT", "--config", str(cfg), "--out", str(out), "--store", str(committed_store)])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    assert s["params"]["impact_model"] == "linear"
    assert "max_cascade_depth" in s and "amplification" in s


def test_bad_input_exits_2(committed_store, tmp_path):
    cases = [
        ["replay", "no-such-event", "--out", str(tmp_path / "x")],
        ["replay", "2025-10-10", "--symbol", "FOO/USDT:USDT", "--out", str(tmp_path / "x")],
        ["replay", "2025-10-10", "--set", "depth_multiplier=-1", "--out", str(tmp_path / "x")],
        ["replay", "2025-10-10", "--set", 'leverage_mix={"10": 0.5, "20": 0.4}', "--out", str(tmp_path / "x")],
        ["cascade", "2025-10-10", "--shock", "bad", "--out", str(tmp_path / "x")],
        ["replay", "2025-10-10", "--store", str(tmp_path / "empty"), "--out", str(tmp_path / "x")],
    ]
    for args in cases:
        if "--store" not in args:
            args = args + ["--store", str(committed_store)]
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, r.output)
