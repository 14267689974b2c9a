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


def _no_simulation(monkeypatch):
    """Make any simulation fail loudly: a bad --out must be refused before one starts."""
    import backtest.simulate as simulate

    def boom(*a, **k):
        raise AssertionError("simulated although --out was bad")

    monkeypatch.setattr(simulate, "run_event", boom)


def test_bad_out_is_refused_before_simulating(tmp_path, monkeypatch):
    _no_simulation(monkeypatch)
    (tmp_path / "file").write_text("keep me")
    cases = [
        (["replay", "2025-10-10", "--out", str(tmp_path / "file")], "exists and is not a folder"),
        (["cascade", "2025-10-10", "--out", str(tmp_path / "file" / "x")], "is a file, not a folder"),
        (["replay", "2025-10-10", "--out", str(tmp_path / "missing" / "deeper" / "r")], "does not exist; create it first"),
    ]
    for args, message in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: --out") and message in lines[0], (args, r.output)
    assert (tmp_path / "file").read_text() == "keep me"
    assert not (tmp_path / "missing").exists()


def test_out_folder_is_created_in_an_existing_folder(committed_store, tmp_path):
    """The --out folder itself is created; an existing folder is written into."""
    for out in (tmp_path / "new", tmp_path):
        r = runner.invoke(app, ["replay", "2025-10-10", "--symbol", "BTC/USDT:USDT", "--set", "n_positions=20000", "--out", str(out),
                                "--store", str(committed_store)])
        assert r.exit_code == 0, r.output
        assert (out / "summary.json").exists()


def test_operating_system_errors_are_one_line_naming_the_path(capsys):
    """Whatever OSError escapes a command (permission, existing file, full disk...) is one line,
    exit 2, naming the path and what to do."""
    import errno

    import pytest
    import typer

    from backtest.cli import user_errors

    cases = [
        (PermissionError(errno.EACCES, "Permission denied", "/data/out/summary.json"), "/data/out/summary.json: Permission denied; check its permissions"),
        (FileExistsError(errno.EEXIST, "File exists", "/etc/passwd"), "/etc/passwd: File exists; remove it or choose another path"),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/etc/passwd/x"), "/etc/passwd/x: Not a directory; a part of the path is a file"),
        (OSError(errno.ENOSPC, "No space left on device", "/full/bars.parquet"), "/full/bars.parquet: No space left on device; free some space"),
        (OSError("IOError: disk quota exceeded"), "IOError: disk quota exceeded"),
    ]
    for exc, message in cases:

        @user_errors
        def command():
            raise exc

        with pytest.raises(typer.Exit) as e:
            command()
        assert e.value.exit_code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
