"""The Parquet store: schemas, merge-writes, atomic replacement, pruned scans, gaps, verify."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone

import polars as pl
import pytest

from backtest.store import SCHEMAS, Store, StoreError, safe_symbol, timeframe_ms, to_ms

T0 = to_ms("2025-10-10T00:00:00Z")
SYM = "BTC/USDT:USDT"


def bars(n: int, start: int = T0, step: int = 60_000, close: float = 100.0, symbol: str = SYM) -> pl.DataFrame:
    """Synthetic 1m bars (test data, not market data)."""
    return pl.DataFrame(
        {
            "ts": [start + i * step for i in range(n)],
            "symbol": [symbol] * n,
            "open": [close] * n,
            "high": [close + 1] * n,
            "low": [close - 1] * n,
            "close": [close] * n,
            "volume": [1.0] * n,
        }
    )


def test_layout_and_schema(tmp_path):
    st = Store(tmp_path)
    res = st.write("ohlcv", bars(3), exchange="binanceusdm", timeframe="1m")
    assert res.rows_added == 3 and res.partitions == 1
    path = tmp_path / "ohlcv/exchange=binanceusdm/symbol=BTC_USDT_USDT/timeframe=1m/year=2025/month=10/part.parquet"
    assert path.exists()
    df = pl.read_parquet(path)
    assert dict(df.schema) == SCHEMAS["ohlcv"]
    assert df["symbol"].to_list() == [SYM] * 3
    assert safe_symbol("1000PEPE/USDT:USDT") == "1000PEPE_USDT_USDT"


def test_merge_last_write_wins_sorted_and_deduped(tmp_path):
    st = Store(tmp_path)
    st.write("ohlcv", bars(5, close=100.0), exchange="x", timeframe="1m")
    newer = bars(3, start=T0 + 3 * 60_000, close=200.0)  # overlaps rows 3,4; adds 5
    res = st.write("ohlcv", newer.reverse(), exchange="x", timeframe="1m")
    assert res.rows_added == 1
    df = st.read("ohlcv", exchange="x", symbol=SYM, timeframe="1m")
    assert df.height == 6
    assert df["ts"].is_sorted()
    assert df["close"].to_list() == [100.0, 100.0, 100.0, 200.0, 200.0, 200.0]


def test_write_spanning_months_splits_partitions(tmp_path):
    st = Store(tmp_path)
    start = to_ms("2025-09-30T23:58:00Z")
    res = st.write("ohlcv", bars(4, start=start), exchange="x", timeframe="1m")
    assert res.partitions == 2
    assert {(p.year, p.month) for p in st.partitions("ohlcv")} == {(2025, 9), (2025, 10)}


def test_filtered_scan_opens_only_matching_partitions(tmp_path):
    st = Store(tmp_path)
    for month in (8, 9, 10):
        start = int(datetime(2025, month, 2, tzinfo=timezone.utc).timestamp() * 1000)
        st.write("ohlcv", bars(10, start=start), exchange="binanceusdm", timeframe="1m")
        st.write("ohlcv", bars(10, start=start, symbol="ETH/USDT:USDT"), exchange="binanceusdm", timeframe="1m")
        st.write("mark", bars(10, start=start).drop("volume"), exchange="binanceusdm", timeframe="1m")
    df = st.scan("ohlcv", symbol=SYM, timeframe="1m", start="2025-09-01T00:00:00Z", end="2025-10-01T00:00:00Z").collect()
    assert df.height == 10
    assert len(st.last_scan_files) == 1
    only = st.last_scan_files[0]
    assert "symbol=BTC_USDT_USDT" in only and "month=09" in only and only.startswith(str(tmp_path / "ohlcv"))
    # the unfiltered scan opens all six ohlcv partitions
    st.scan("ohlcv").collect()
    assert len(st.last_scan_files) == 6


def test_gaps_reported_not_filled(tmp_path):
    st = Store(tmp_path)
    df = bars(10)
    df = df.filter(~pl.col("ts").is_in([T0 + 3 * 60_000, T0 + 4 * 60_000, T0 + 8 * 60_000]))
    st.write("ohlcv", df, exchange="x", timeframe="1m")
    gaps = st.gaps("ohlcv")
    assert gaps["missing"].to_list() == [2, 1]
    assert gaps["gap_start"].cast(pl.Int64).to_list() == [T0 + 3 * 60_000, T0 + 8 * 60_000]
    assert st.read("ohlcv").height == 7  # nothing was filled


def test_bad_input_is_rejected_and_store_unchanged(tmp_path):
    st = Store(tmp_path)
    st.write("ohlcv", bars(3), exchange="x", timeframe="1m")
    before = st.read("ohlcv")
    naive = bars(2).with_columns(pl.col("ts").cast(pl.Datetime("ms")))
    with pytest.raises(StoreError, match="zone-less"):
        st.write("ohlcv", naive, exchange="x", timeframe="1m")
    secs = bars(2).with_columns(pl.col("ts") // 1000)
    with pytest.raises(StoreError, match="seconds"):
        st.write("ohlcv", secs, exchange="x", timeframe="1m")
    with pytest.raises(StoreError, match="close"):
        st.write("ohlcv", bars(2).drop("close"), exchange="x", timeframe="1m")
    with pytest.raises(StoreError, match="unknown dataset"):
        st.write("trades", bars(2), exchange="x", timeframe="1m")
    with pytest.raises(StoreError, match="timeframe"):
        st.write("ohlcv", bars(2), exchange="x", timeframe="1 minute")
    assert st.read("ohlcv").equals(before)


def test_store_path_that_is_a_file(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        Store(f)


def test_verify_names_corrupt_and_truncated_files(tmp_path):
    st = Store(tmp_path)
    st.write("ohlcv", bars(3), exchange="x", timeframe="1m")
    st.write("ohlcv", bars(3, symbol="ETH/USDT:USDT"), exchange="x", timeframe="1m")
    assert st.verify() == []
    p_btc, p_eth = [p.path for p in st.partitions("ohlcv")]
    raw = open(p_btc, "rb").read()
    open(p_btc, "wb").write(raw[: len(raw) // 2])  # truncated
    problems = dict(st.verify())
    assert list(problems) == [p_btc]
    # a merge-write onto a corrupt partition refuses instead of overwriting it
    with pytest.raises(StoreError, match="unreadable"):
        st.write("ohlcv", bars(1), exchange="x", timeframe="1m")
    assert open(p_btc, "rb").read() == raw[: len(raw) // 2]
    # a file with the wrong schema is named too
    pl.DataFrame({"ts": [1], "x": [2]}).write_parquet(p_eth)
    assert set(dict(st.verify())) == {p_btc, p_eth}


def test_timeframes():
    assert timeframe_ms("1m") == 60_000 and timeframe_ms("4h") == 14_400_000 and timeframe_ms("1d") == 86_400_000
    with pytest.raises(StoreError):
        timeframe_ms("fortnight")


WRITER = textwrap.dedent(
    """
    import sys, polars as pl
    from backtest.store import Store
    st = Store(sys.argv[1])
    n = 400_000
    base = pl.DataFrame({"ts": [1760054400000 + i * 1000 for i in range(n)], "symbol": ["BTC/USDT:USDT"] * n,
                         "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0})
    v = 2
    while True:
        df = base.with_columns(pl.lit(float(v)).alias("close"))
        print("begin", v, flush=True)
        st.write("ohlcv", df, exchange="x", timeframe="1s")
        print("end", v, flush=True)
        v += 1
    """
)


def test_sigkill_during_merge_write_keeps_old_content(tmp_path):
    """Kill a writer with SIGKILL mid merge-write: the partition still reads, whole."""
    st = Store(tmp_path)
    n = 400_000
    first = pl.DataFrame(
        {"ts": [1760054400000 + i * 1000 for i in range(n)], "symbol": [SYM] * n, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}
    )
    st.write("ohlcv", first, exchange="x", timeframe="1s")
    killed_mid_write = 0
    for delay in (0.9, 1.3, 1.7, 2.1):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0].split()
        proc.wait()
        lines = list(zip(out[::2], out[1::2]))
        if lines and lines[-1][0] == "begin":
            killed_mid_write += 1
        df = st.read("ohlcv", exchange="x", timeframe="1s")
        assert df.height == n
        closes = df["close"].unique().to_list()
        assert len(closes) == 1  # one whole version, never a mix
        done = [int(v) for k, v in lines if k == "end"]
        assert closes[0] in ([1.0] + [float(v) for v in done] + [float(v) + 1 for v in done[-1:]] + [2.0])
    assert killed_mid_write >= 1, "no kill landed inside a write; the test did not exercise the case"
