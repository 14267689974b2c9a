"""The CLI's error boundary: user errors are one line and exit 2; anything else is a bug that
keeps its traceback, says it is a bug, and exits with another status; store errors reach the user."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from backtest.cli import BUG_EXIT, app

ROOT = Path(__file__).resolve().parents[1]


def test_a_bug_keeps_its_traceback_and_is_not_exit_2(tmp_path, monkeypatch):
    import backtest.simulate as simulate

    def bug(*a, **k):  # a plain ValueError deep in the code is a bug, not a user mistake
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(simulate, "run_event", bug)
    r = CliRunner().invoke(app, ["replay", "2025-10-10", "--out", str(tmp_path / "o")])
    assert r.exit_code == BUG_EXIT and r.exit_code not in (0, 2)
    assert "Traceback (most recent call last)" in r.output and "ValueError: operands could not be broadcast together" in r.output
    assert r.output.strip().splitlines()[-1].startswith("error: this is a bug in backtest")


def test_a_user_error_is_one_line_and_exit_2(tmp_path):
    r = CliRunner().invoke(app, ["replay", "no-such-event", "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert r.output.startswith("error: unknown event 'no-such-event'")


def test_a_damaged_store_file_reaches_the_user_as_one_line(tmp_path):
    """The population used to swallow the store's errors (``except Exception: return None``) and
    build on last prices instead of the damaged mark series; now the user is told."""
    store = tmp_path / "store"
    shutil.copytree(ROOT / "data", store)
    bad = store / "mark/exchange=binanceusdm/symbol=BTC_USDT_USDT/timeframe=1h/year=2025/month=10/part.parquet"
    assert bad.is_file()
    bad.write_bytes(b"PAR1 this is not a parquet file")
    r = CliRunner().invoke(app, ["population", "2025-10-10", "--set", "n_positions=2000", "--store", str(store)])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output
    assert lines[0].startswith("error: cannot read") and "backtest data verify" in lines[0]


def test_boto3_is_a_runtime_dependency():
    """A plain ``pip install .`` must serve ``--store s3://...``: boto3 is in the runtime
    dependencies, not only in the [test] extra."""
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = [d.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for d in meta["project"]["dependencies"]]
    assert "boto3" in names
    extras = meta["project"]["optional-dependencies"]["test"]
    assert not any(d.lower().startswith("boto3") for d in extras)
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert any(p.lower().startswith("boto3==") for p in pins)
