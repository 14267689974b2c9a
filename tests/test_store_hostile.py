"""Hostile store paths and names (issue 15, cases 2-5): glob characters in the root, identifiers
that would leave the hive layout, bad timeframes, a silent S3 endpoint."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from typer.testing import CliRunner

from backtest.cli import app
from backtest.errors import StoreError
from backtest.store import Store, to_ms
from tests.fakes.silent_server import SilentServer
from tests.fakes.store_writer import bars_for

T0 = to_ms("2024-01-10T00:00:00Z")
runner = CliRunner()


def one_line_error(res, needle: str) -> None:
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert needle in res.stderr, res.stderr


def csv_file(tmp_path, n=3):
    p = tmp_path / "bars.csv"
    p.write_text("symbol,timestamp,datetime,open,high,low,close,volume\n"
                 + "".join(f"BTCUSDT,{T0 + k * 60_000},2024-01-10T00:0{k}:00Z,1,2,0.5,1.5,10\n" for k in range(n)))
    return p


@pytest.mark.parametrize("name", ["st[1]", "st*", "st?x", "a[!b]"])
def test_a_store_path_with_glob_characters_is_a_path(tmp_path, name):
    root = tmp_path / name
    st = Store(root)
    st.write("ohlcv", bars_for([T0 + i * 60_000 for i in range(10)]), exchange="binanceusdm", timeframe="1m")
    (tmp_path / "st1").mkdir()  # what the pattern st[1] would match instead
    assert len(Store(root).partitions()) == 1
    assert Store(root).read("ohlcv").height == 10
    assert Store(root).verify() == []
    res = runner.invoke(app, ["data", "ls", "--store", str(root)])
    assert res.exit_code == 0 and "binanceusdm" in res.stdout and "empty" not in res.stdout
    res = runner.invoke(app, ["data", "verify", "--store", str(root)])
    assert res.exit_code == 0 and "1 partitions, all clean" in res.stdout
    assert Store(root).gaps().height == 0


@pytest.mark.parametrize("exchange", ["../../../escaped", "a/b", "", " ", "..", ".hidden", "x=y", "bin*", "a\\b"])
def test_import_csv_refuses_an_exchange_that_is_not_a_plain_name(tmp_path, exchange):
    st = tmp_path / "st"
    before = set(os.listdir(tmp_path))
    res = runner.invoke(app, ["data", "import-csv", str(csv_file(tmp_path)), "--exchange", exchange, "--timeframe", "1m", "--store", str(st)])
    one_line_error(res, "exchange")
    assert "--exchange" in res.stderr
    assert set(os.listdir(tmp_path)) - before <= {"bars.csv", "st"}
    assert not any(f.endswith(".parquet") for _d, _s, fs in os.walk(tmp_path) for f in fs)


@pytest.mark.parametrize("symbol", ["", "../..", "..", ".x"])
def test_symbols_that_are_not_path_parts_are_refused(tmp_path, symbol):
    with pytest.raises(StoreError, match="symbol"):
        Store(tmp_path).write("ohlcv", bars_for([T0]).with_columns(symbol=__import__("polars").lit(symbol)), exchange="x", timeframe="1m")
    assert not any(f.endswith(".parquet") for _d, _s, fs in os.walk(tmp_path) for f in fs)


@pytest.mark.parametrize("tf", ["0m", "99999999999999999999d", "1.5h", "", "8d"])
def test_import_csv_refuses_a_bad_timeframe(tmp_path, tf):
    st = tmp_path / "st"
    res = runner.invoke(app, ["data", "import-csv", str(csv_file(tmp_path)), "--timeframe", tf, "--store", str(st)])
    one_line_error(res, "timeframe")
    assert not st.exists() or not any(f.endswith(".parquet") for _d, _s, fs in os.walk(st) for f in fs)


def test_verify_and_gaps_name_a_store_poisoned_by_a_bad_timeframe_partition(tmp_path):
    st = Store(tmp_path)
    st.write("ohlcv", bars_for([T0 + i * 60_000 for i in range(10)]), exchange="binanceusdm", timeframe="1m")
    good = st.partitions()[0].path
    bad = good.replace("timeframe=1m", "timeframe=0m")
    os.makedirs(os.path.dirname(bad))
    shutil.copy(good, bad)
    res = runner.invoke(app, ["data", "verify", "--store", str(tmp_path)])
    assert res.exit_code == 2 and "timeframe=0m is not a valid timeframe" in res.stderr and "1 of 2 partitions are bad" in res.stderr
    res = runner.invoke(app, ["data", "gaps", "--store", str(tmp_path)])
    one_line_error(res, "timeframe=0m, which is not a valid timeframe; run 'backtest data verify")
    # bars off the timeframe's grid (a 5m partition holding 1m bars) are flagged too
    off = good.replace("timeframe=1m", "timeframe=5m")
    os.makedirs(os.path.dirname(off))
    shutil.copy(good, off)
    assert any("do not open on the timeframe=5m grid" in why for _p, why in Store(tmp_path).verify())


def test_verify_reports_and_removes_leftover_temporary_files(tmp_path):
    st = Store(tmp_path)
    st.write("ohlcv", bars_for([T0]), exchange="binanceusdm", timeframe="1m")
    folder = os.path.dirname(st.partitions()[0].path)
    dead = os.path.join(folder, ".part.parquet.999999999.tmp")  # no such pid
    open(dead, "wb").write(b"half")
    res = runner.invoke(app, ["data", "verify", "--store", str(tmp_path)])
    assert res.exit_code == 2 and ".part.parquet.999999999.tmp: temporary file left by an interrupted write" in res.stderr
    assert "--remove-tmp" in res.stderr
    res = runner.invoke(app, ["data", "verify", "--remove-tmp", "--store", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert f"removed {dead}" in res.stdout and "all clean" in res.stdout
    assert not os.path.exists(dead)
    # a temporary file of a writer that is still running is neither reported nor removed
    live = os.path.join(folder, f".part.parquet.{os.getppid()}.tmp")
    open(live, "wb").write(b"busy")
    assert Store(tmp_path).verify() == [] and Store(tmp_path).remove_leftover_tmp() == []
    assert os.path.exists(live)


def test_a_silent_s3_endpoint_fails_with_one_line_in_bounded_time(tmp_path, monkeypatch):
    with SilentServer() as srv:
        for k, v in {"AWS_ENDPOINT_URL": srv.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1", "BACKTEST_S3_TIMEOUT": "0.5"}.items():
            monkeypatch.setenv(k, v)
        t = time.monotonic()
        res = runner.invoke(app, ["data", "ls", "--store", "s3://market/x"])
        one_line_error(res, "S3 store s3://market/x: cannot list objects")
        res = runner.invoke(app, ["data", "import-csv", str(csv_file(tmp_path)), "--timeframe", "1m", "--store", "s3://market/x"])
        one_line_error(res, "s3://market/x/.writer.lock")
        assert time.monotonic() - t < 20
        assert srv.accepted  # the requests did reach the server, which never answered


def test_s3_timeout_setting_is_checked(monkeypatch):
    monkeypatch.setenv("BACKTEST_S3_TIMEOUT", "-1")
    with pytest.raises(StoreError, match="BACKTEST_S3_TIMEOUT='-1'"):
        Store("s3://market/x")


def test_download_refuses_an_exchange_that_is_not_a_plain_name_before_any_request(tmp_path):
    res = runner.invoke(app, ["download", "../../x", "BTC/USDT:USDT", "--since", "2025-10-10", "--until", "2025-10-11",
                              "--store", str(tmp_path / "st")])
    one_line_error(res, "exchange '../../x' cannot be part of a store path")
    assert not (tmp_path / "st").exists()
