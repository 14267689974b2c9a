"""A full disk or a file-size limit while writing outputs (issue 15, case 6): one line naming the
path, a non-zero exit, no temporary file left, and never a results table without its manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backtest.paths import write_atomic, write_atomic_group

REPO = Path(__file__).resolve().parent.parent


def limited_cli(limit: int, *args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "BACKTEST_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-m", "tests.fakes.fsize_limited", str(limit), *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def tmp_files(root: Path) -> list[str]:
    return [os.path.join(d, f) for d, _s, fs in os.walk(root) for f in fs if f.endswith(".tmp")]


def test_replay_over_a_file_size_limit_is_one_line_naming_the_path(tmp_path):
    out = tmp_path / "run"
    r = limited_cli(4096, "replay", "2025-10-10", "--set", "n_positions=20000", "--out", str(out))
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert f"{out}/" in r.stderr and "File too large" in r.stderr and "ulimit -f" in r.stderr
    assert tmp_files(tmp_path) == []
    assert not (out / "summary.json").exists() and not list(out.glob("*.parquet"))


def test_sweep_over_a_file_size_limit_leaves_no_results_without_sweep_json(tmp_path):
    sweep = tmp_path / "s.toml"
    sweep.write_text('event = "2025-10-10"\nmode = "replay"\n[base]\nn_positions = 20000\n[grid]\nseed = [1, 2]\n')
    out = tmp_path / "o"
    r = limited_cli(20_000, "sweep", str(sweep), "--executor", "serial", "--out", str(out))
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert f"{out}/" in r.stderr and "File too large" in r.stderr
    assert tmp_files(tmp_path) == []
    assert not (out / "results.parquet").exists() and not (out / "sweep.json").exists()


def test_group_write_failure_keeps_the_earlier_whole_result(tmp_path):
    (tmp_path / "results.parquet").write_text("old")
    (tmp_path / "sweep.json").write_text("old")

    def full(t):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as e:
        write_atomic_group([(tmp_path / "results.parquet", lambda t: t.write_text("new")), (tmp_path / "heatmaps.pdf", full),
                            (tmp_path / "sweep.json", lambda t: t.write_text("new"))])
    assert e.value.filename == str(tmp_path / "heatmaps.pdf") and e.value.errno == 28
    assert (tmp_path / "results.parquet").read_text() == "old" and (tmp_path / "sweep.json").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["results.parquet", "sweep.json"]
    write_atomic_group([(tmp_path / "results.parquet", lambda t: t.write_text("new")), (tmp_path / "sweep.json", lambda t: t.write_text("new"))])
    assert (tmp_path / "results.parquet").read_text() == "new" == (tmp_path / "sweep.json").read_text()


def test_a_polars_io_error_becomes_an_os_error_naming_the_path(tmp_path):
    import polars as pl

    def polars_full(t):
        raise pl.exceptions.ComputeError("parquet: File out of specification: underlying IO error: No space left on device (os error 28)")

    with pytest.raises(OSError) as e:
        write_atomic(tmp_path / "x.parquet", polars_full)
    assert e.value.errno == 28 and e.value.filename == str(tmp_path / "x.parquet")
    from backtest.errors import os_error_message

    assert os_error_message(e.value) == f"{tmp_path / 'x.parquet'}: No space left on device; free some space or write somewhere else"

    def bug(t):
        raise pl.exceptions.ComputeError("a bug, not the disk")

    with pytest.raises(pl.exceptions.ComputeError):  # a bug keeps its own type (and traceback)
        write_atomic(tmp_path / "y.parquet", bug)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not (REPO.parent / "shared" / "data").exists(), reason="needs /work/shared/data")
def test_download_on_a_full_disk_names_the_partition_and_leaves_no_tmp(tmp_path):
    from backtest.store import Store
    from tests.fakes.exchange_server import FakeExchangeServer
    from tests.fakes.fixtures import all_data
    from tests.test_download import OHLCV_ARGS, binance_config

    with FakeExchangeServer(all_data()) as srv:
        cfg = binance_config(tmp_path, srv)
        st = tmp_path / "st"
        r = limited_cli(2000, "download", *OHLCV_ARGS, "--store", str(st), "--ccxt-config", str(cfg))
    assert r.returncode == 2, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert f"{st}/ohlcv/exchange=binanceusdm/symbol=BTC_USDT_USDT/timeframe=1m/year=2025/month=10/part.parquet: File too large" in r.stderr
    assert tmp_files(tmp_path) == []
    assert Store(st).verify() == []
