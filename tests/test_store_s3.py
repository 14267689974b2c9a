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
