"""Small hostile inputs (issue 15, case 12): empty options, a non-UTF-8 --ccxt-config, a
malformed archive_base_url, a dead exchange, an unknown import dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backtest.cli import app
from backtest.errors import StoreError
from backtest.store import Store
from tests.fakes.exchange_server import FakeExchangeServer
from tests.fakes.fixtures import KLINES_1M, all_data
from tests.test_download import FAST_RETRY, binance_config

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "BACKTEST_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-m", "backtest.cli", *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("args,needle", [
    (["replay", "2025-10-10", "--out", ""], "--out is empty"),
    (["replay", "2025-10-10", "--out="], "--out is empty"),
    (["data", "ls", "--store", ""], "--store is empty"),
    (["sweep", "examples/sweep_2025-10-10.toml", "--executor", "dask", "--scheduler", "", "--out", "x"], "--scheduler is empty"),
    (["events", "show", ""], "argument 3 of the command line is empty"),
])
def test_empty_values_are_refused_with_one_line(tmp_path, args, needle):
    out = cli(*args, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == f"error: {needle}; give it a value or leave the option out" or (
        out.returncode == 2 and needle in out.stderr and out.stderr.count("\n") == 1), out.stderr
    assert os.listdir(tmp_path) == []  # nothing written in the current folder


@pytest.mark.parametrize("args,line", [
    (["replay", "2025-10-10", "--seed", "3", "--out", "x"], "error: No such option: --seed (Possible options: --set, --store); see 'backtest replay --help'"),
    (["replay"], "error: Missing argument 'event'; see 'backtest replay --help'"),
    (["calibrate", "2025-10-10", "--samples", "abc", "--out", "x"], "error: Invalid value for '--samples': "),
    (["nosuchcommand"], "error: No such command 'nosuchcommand'; see 'backtest --help'"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, args, line):
    out = cli(*args, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith(line) and out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr and os.listdir(tmp_path) == []


def test_help_and_a_bare_group_still_show_the_help():
    assert cli("--help").returncode == 0 and "Usage: backtest" in cli("--help").stdout
    bare = cli("data")
    assert bare.returncode == 2 and bare.stdout.count("Usage: backtest data") == 1 and "Traceback" not in bare.stderr


def test_empty_store_and_scheduler_are_refused_by_the_api_too():
    with pytest.raises(StoreError, match="store path is empty"):
        Store("")
    from backtest.errors import SweepError
    from backtest.sweep import SweepSpec, run_sweep

    with pytest.raises(SweepError, match="--scheduler is empty"):
        run_sweep(SweepSpec(event="2025-10-10", grid={"seed": [1]}), executor="dask", scheduler=" ")


def test_non_utf8_ccxt_config_names_the_file(tmp_path):
    p = tmp_path / "cfg.json"
    p.write_bytes(b'{"timeout": 1000, "x": "\xff\xfe"}')
    res = runner.invoke(app, ["download", "binanceusdm", "BTC/USDT:USDT", "--since", "2025-10-10", "--until", "2025-10-11",
                              "--ccxt-config", str(p), "--store", str(tmp_path / "st")])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert f"--ccxt-config {p} is not UTF-8 text" in res.stderr


@pytest.mark.parametrize("url", ["htp:/nowhere", "not a url", "http://", "https://host:99999/x", ""])
def test_malformed_archive_base_url_is_permanent(tmp_path, url):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps({"archive_base_url": url, "retry": {**FAST_RETRY, "max_retries": 5}}))
    res = runner.invoke(app, ["download", "binanceusdm", "BTC/USDT:USDT", "--source", "binance-archive", "--since", "2025-10-10",
                              "--until", "2025-10-11", "--ccxt-config", str(p), "--store", str(tmp_path / "st")])
    if url == "":  # empty means "not given": the default base (no network in tests), so only check the others
        return
    assert res.exit_code == 2, res.output
    assert "archive_base_url" in res.stderr and "is not an http(s) URL" in res.stderr and res.stderr.count("\n") == 1
    assert "retry" not in res.stderr


@pytest.mark.skipif(not KLINES_1M.exists(), reason="needs /work/shared/data")
def test_a_dead_exchange_loads_its_markets_once_per_run(tmp_path):
    with FakeExchangeServer(all_data()) as srv:
        srv.plan = lambda n, path: "503"
        cfg = binance_config(tmp_path, srv, retry={**FAST_RETRY, "max_retries": 2})
        res = runner.invoke(app, ["download", "binanceusdm", "BTC/USDT:USDT", "ETH/USDT:USDT", "--datasets", "ohlcv,mark,funding",
                                  "--since", "2025-10-10T19:38:00Z", "--until", "2025-10-11T00:00:00Z",
                                  "--ccxt-config", str(cfg), "--store", str(tmp_path / "st")])
        assert res.exit_code == 1
        market_calls = [p for p, q, f in srv.log if "exchangeInfo" in p]
        assert len(market_calls) == 3  # one call and its 2 retries, not 3 per (symbol, dataset)
        assert len(srv.log) == 3
        assert res.stderr.count("error: ") == 6  # each of the 6 series names its missing range


def test_import_csv_unknown_dataset_lists_the_valid_ones(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("symbol,timestamp,datetime,open,high,low,close,volume\nBTCUSDT,1704844800000,2024-01-10T00:00:00Z,1,2,0.5,1.5,10\n")
    res = runner.invoke(app, ["data", "import-csv", str(p), "--dataset", "bogus", "--store", str(tmp_path / "st")])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "--dataset 'bogus' is not a dataset; choose from ohlcv, mark, index, funding" in res.stderr
