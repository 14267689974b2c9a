"""The store on an s3:// root, against a local S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import socket

import polars as pl
import pytest

from backtest.store import Store

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_endpoint(monkeypatch):
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for k, v in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="market")
    yield endpoint
    server.stop()


def test_s3_round_trip(s3_endpoint, committed_store):
    local = Store(committed_store)
    btc = local.read("ohlcv", exchange="binanceusdm", symbol="BTC/USDT:USDT", timeframe="1m")
    assert btc.height == 262
    st = Store("s3://market/prefix")
    res = st.write("ohlcv", btc.drop("exchange", "timeframe"), exchange="binanceusdm", timeframe="1m")
    assert res.rows_added == 262
    # merge on S3: last write wins, nothing duplicated
    st.write("ohlcv", btc.head(10).drop("exchange", "timeframe").with_columns(pl.col("close") * 0 + 1.0), exchange="binanceusdm", timeframe="1m")
    back = st.read("ohlcv", exchange="binanceusdm", symbol="BTC/USDT:USDT", timeframe="1m", start="2025-10-10T19:00:00Z")
    assert back.height == 262
    assert back["close"].head(10).to_list() == [1.0] * 10
    assert back["low"].min() == 101516.5
    assert [p.path for p in st.partitions()] == [
        "s3://market/prefix/ohlcv/exchange=binanceusdm/symbol=BTC_USDT_USDT/timeframe=1m/year=2025/month=10/part.parquet"
    ]
    assert st.verify() == []
    st.write_tiers("binanceusdm", {"BTC/USDT:USDT": [{"tier": 1}]})
    assert st.read_tiers("binanceusdm", "BTC/USDT:USDT") == [{"tier": 1}]
    summary = st.summary()
    assert summary["rows"].to_list() == [262]


def test_s3_failure_other_than_404_is_never_taken_for_a_missing_object(s3_endpoint):
    """A 403/503 on HEAD must not turn a merge-write into an overwrite of the stored rows."""
    from botocore.exceptions import ClientError

    from backtest.store import StoreError

    st = Store("s3://market/p")
    rows = pl.DataFrame({"ts": [1_760_000_000_000 + i * 60_000 for i in range(100)], "symbol": ["BTC/USDT:USDT"] * 100,
                         "open": [1.0] * 100, "high": [1.0] * 100, "low": [1.0] * 100, "close": [1.0] * 100, "volume": [1.0] * 100})
    st.write("ohlcv", rows, exchange="x", timeframe="1m")

    def refuse(**kw):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "HeadObject")

    st.fs._s3.head_object = refuse
    with pytest.raises(StoreError, match="cannot check"):
        st.write("ohlcv", rows.head(5), exchange="x", timeframe="1m")
    assert Store("s3://market/p").read("ohlcv").height == 100


def test_unreachable_s3_endpoint_is_one_clear_error(monkeypatch):
    from typer.testing import CliRunner

    from backtest.cli import app

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    res = CliRunner().invoke(app, ["data", "ls", "--store", "s3://market/x"])
    assert res.exit_code == 2 and "Traceback" not in res.stderr
    assert "S3 store s3://market/x: cannot list objects" in res.stderr and res.stderr.count("\n") == 1


def test_cli_with_an_s3_store(s3_endpoint, committed_store):
    """The command line on ``--store s3://...`` (boto3 is a runtime dependency)."""
    from typer.testing import CliRunner

    from backtest.cli import app

    btc = Store(committed_store).read("ohlcv", exchange="binanceusdm", symbol="BTC/USDT:USDT", timeframe="1m")
    Store("s3://market/cli").write("ohlcv", btc.drop("exchange", "timeframe"), exchange="binanceusdm", timeframe="1m")
    r = CliRunner().invoke(app, ["data", "ls", "--store", "s3://market/cli"])
    assert r.exit_code == 0, r.output
    assert "s3://market/cli" in r.output and "BTC/USDT:USDT" in r.output and "262" in r.output
    r = CliRunner().invoke(app, ["data", "verify", "--store", "s3://market/cli"])
    assert r.exit_code == 0, r.output
    assert "1 partitions, all clean" in r.output
    r = CliRunner().invoke(app, ["data", "ls", "--store", "s3://no-such-bucket/x"])
    assert r.exit_code == 2 and "Traceback" not in r.output
