"""`backtest download --source binance-archive` against a local stand-in for data.binance.vision."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from backtest.cli import app
from backtest.store import Store, to_ms
from tests.fakes.archive_server import ArchiveServer, build_archive
from tests.fakes.fixtures import KLINES_1M, klines_1m, mark_1h

pytestmark = pytest.mark.skipif(not KLINES_1M.exists(), reason="needs /work/shared/data")

SINCE, UNTIL = "2025-10-10T19:38:00Z", "2025-10-11T00:00:00Z"
FAST = {"base": 0.001, "cap": 0.01, "retry_after_cap": 0.01}


@pytest.fixture(scope="module")
def files():
    return build_archive()


@pytest.fixture
def archive(files):
    with ArchiveServer(dict(files)) as srv:
        yield srv


def cfg(tmp_path, srv, **retry):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps({"archive_base_url": srv.url, "retry": {**FAST, **retry}}))
    return p


def run(args, tmp_path, config):
    r = CliRunner().invoke(app, ["download", "binanceusdm", "BTC/USDT:USDT", "--source", "binance-archive", *args,
                                 "--store", str(tmp_path / "st"), "--ccxt-config", str(config)])
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r


def stored(tmp_path, dataset, tf):
    return Store(tmp_path / "st").scan(dataset, exchange="binanceusdm", symbol="BTC/USDT:USDT", timeframe=tf).collect().sort("ts")


def test_archive_klines_checksum_and_rerun(tmp_path, archive):
    c = cfg(tmp_path, archive)
    r = run(["--datasets", "ohlcv", "--timeframe", "1m", "--since", SINCE, "--until", UNTIL], tmp_path, c)
    assert r.exit_code == 0, r.output
    df = stored(tmp_path, "ohlcv", "1m")
    real = klines_1m()
    assert df.height == 262
    assert df["ts"].cast(pl.Int64).to_list() == [k[0] for k in real]
    assert df["close"].to_list() == [float(k[4]) for k in real]
    assert df["quote_volume"].to_list() == [float(k[7]) for k in real]
    assert any(p.endswith(".CHECKSUM") for p, _ in archive.log)
    archive.log.clear()
    r = run(["--datasets", "ohlcv", "--timeframe", "1m", "--since", SINCE, "--until", UNTIL], tmp_path, c)
    assert r.exit_code == 0 and archive.log == []  # nothing fetched again


def test_archive_faults_retried_and_bad_checksum_rejected(tmp_path, archive):
    faults = iter(["429", "cut", "corrupt", "500", "503", "corrupt"])
    archive.plan = lambda n, p: next(faults, None) if p.endswith(".zip") else None
    r = run(["--datasets", "ohlcv", "--timeframe", "1m", "--since", SINCE, "--until", UNTIL], tmp_path, cfg(tmp_path, archive))
    assert r.exit_code == 0, r.output
    assert stored(tmp_path, "ohlcv", "1m").height == 262
    assert [f for _, f in archive.log if f] == ["429", "cut", "corrupt", "500", "503", "corrupt"]


def test_archive_retries_spent_names_range(tmp_path, archive):
    archive.plan = lambda n, p: "corrupt"
    r = run(["--datasets", "ohlcv", "--timeframe", "1m", "--since", SINCE, "--until", UNTIL], tmp_path, cfg(tmp_path, archive, max_retries=2))
    assert r.exit_code == 1
    assert "missing 2025-10-10T19:38:00Z..2025-10-11T00:00:00Z" in r.output and "sha256 mismatch" in r.output
    archive.plan = lambda n, p: None
    r = run(["--datasets", "ohlcv", "--timeframe", "1m", "--since", SINCE, "--until", UNTIL], tmp_path, cfg(tmp_path, archive))
    assert r.exit_code == 0 and stored(tmp_path, "ohlcv", "1m").height == 262


def test_archive_monthly_daily_mark_and_unpublished_days(tmp_path, archive):
    r = run(["--datasets", "mark", "--timeframe", "1h", "--since", "2025-09-26", "--until", "2025-11-02"], tmp_path, cfg(tmp_path, archive))
    assert r.exit_code == 0, r.output
    df = stored(tmp_path, "mark", "1h")
    real = [m for m in mark_1h() if m[0] < to_ms("2025-11-02")]
    assert df.height == len(real) == 31 * 24 and df["ts"].is_unique().all()
    assert df["low"].to_list() == [float(m[3]) for m in real]
    zips = [p.rsplit("/", 1)[-1] for p in archive.zips()]
    assert "BTCUSDT-1h-2025-10.zip" in zips  # a whole month: one monthly file
    assert "BTCUSDT-1h-2025-09-27.zip" in zips  # days of a partly-wanted month: daily files (no CHECKSUM for this one)
    assert "BTCUSDT-1h-2025-11-01.zip" in zips  # not published: a gap, reported
    assert "not published" in r.output and "1 gap(s), 144 missing" in r.output  # the real file ends 10-26 23:00


def test_archive_funding_and_metrics(tmp_path, archive):
    c = cfg(tmp_path, archive)
    r = run(["--datasets", "funding,open_interest,long_short_ratio", "--since", "2025-10-01", "--until", "2025-11-01"], tmp_path, c)
    assert r.exit_code == 0, r.output
    fu = stored(tmp_path, "funding", "event")
    assert fu.height == 93
    assert (fu["ts"].cast(pl.Int64) % 1000 == 0).all()  # calc_time jitter removed
    assert set(fu["interval_hours"].to_list()) == {8.0}
    oi = stored(tmp_path, "open_interest", "5m")
    ls = stored(tmp_path, "long_short_ratio", "5m")
    assert oi.height == ls.height == 52
    assert (abs(ls["long_account"] + ls["short_account"] - 1) < 1e-9).all()
    metrics_gets = [p for p in archive.zips() if "metrics" in p]
    assert len([p for p in metrics_gets if p.endswith("2025-10-10.zip")]) == 1  # one file feeds both datasets


def test_archive_sigkill_mid_download_resumes(tmp_path, archive):
    archive.delay = 0.3
    c = cfg(tmp_path, archive)
    st = tmp_path / "st"
    cmd = [sys.executable, "-m", "backtest.cli", "download", "binanceusdm", "BTC/USDT:USDT", "--source", "binance-archive",
           "--datasets", "mark", "--timeframe", "1h", "--since", "2025-09-26", "--until", "2025-10-01",
           "--store", str(st), "--ccxt-config", str(c)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(archive.zips()) < 3:
        time.sleep(0.02)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    part = stored(tmp_path, "mark", "1h")
    assert 0 < part.height < 120 and part["ts"].is_unique().all() and part.height % 24 == 0
    done_days = part.height // 24
    archive.log.clear()
    archive.delay = 0
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert len(archive.zips()) == 5 - done_days  # only the days not stored yet
    df = stored(tmp_path, "mark", "1h")
    real = [m for m in mark_1h() if m[0] < to_ms("2025-10-01")]
    assert df.height == 120 == len(real)
    assert df["close"].to_list() == [float(m[4]) for m in real]
    assert Store(st).verify() == []
