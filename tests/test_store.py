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


def test_microsecond_times_are_refused_before_anything_is_written(tmp_path):
    st = Store(tmp_path)
    with pytest.raises(StoreError, match="microseconds"):
        st.write("ohlcv", bars(3).with_columns(pl.col("ts") * 1000), exchange="x", timeframe="1m")
    assert st.partitions() == [] and not list(tmp_path.rglob("*.parquet"))


def test_a_corrupt_partition_stops_the_write_before_any_file_is_replaced(tmp_path):
    """A write touching several partitions reads all of them first: one unreadable partition
    leaves every other one byte-identical."""
    st = Store(tmp_path)
    st.write("ohlcv", bars(3, start=to_ms("2025-09-30T23:58:00Z")), exchange="x", timeframe="1m")  # Sep + Oct
    st.write("ohlcv", bars(3, symbol="ETH/USDT:USDT"), exchange="x", timeframe="1m")
    files = {p.path: open(p.path, "rb").read() for p in st.partitions()}
    assert len(files) == 3
    bad = next(p.path for p in st.partitions() if p.symbol_path == "ETH_USDT_USDT")
    open(bad, "wb").write(files[bad][:40])
    files[bad] = files[bad][:40]
    both = pl.concat([bars(5, start=to_ms("2025-09-30T23:58:00Z"), close=7.0), bars(2, symbol="ETH/USDT:USDT", close=7.0)])
    with pytest.raises(StoreError, match="unreadable"):
        st.write("ohlcv", both, exchange="x", timeframe="1m")
    assert {p: open(p, "rb").read() for p in files} == files


def test_gaps_in_a_range_with_no_stored_rows_and_bad_ranges(tmp_path):
    st = Store(tmp_path)
    st.write("ohlcv", bars(10), exchange="x", timeframe="1m")
    day = st.gaps("ohlcv", symbol=SYM, timeframe="1m", start="2025-10-11T00:00:00Z", end="2025-10-12T00:00:00Z")
    assert day.rows(named=True) == [{
        "dataset": "ohlcv", "exchange": "x", "symbol": SYM, "timeframe": "1m",
        "gap_start": datetime(2025, 10, 11, tzinfo=timezone.utc), "gap_end": datetime(2025, 10, 11, 23, 59, tzinfo=timezone.utc),
        "missing": 1440,
    }]
    # without a symbol filter the name comes from the stored rows
    assert st.gaps(start="2025-11-01T00:00:00Z", end="2025-11-01T01:00:00Z")["symbol"].to_list() == [SYM]
    # the stored rows themselves: the range's tail after them is missing
    tail = st.gaps("ohlcv", symbol=SYM, timeframe="1m", start=T0, end=T0 + 20 * 60_000)
    assert tail["missing"].to_list() == [10]
    with pytest.raises(StoreError, match="swap --since and --until"):
        st.gaps(start="2025-10-12T00:00:00Z", end="2025-10-11T00:00:00Z")
    with pytest.raises(StoreError, match="holds no series with symbol FOO/BAR"):
        st.gaps(symbol="FOO/BAR")


def test_read_commands_refuse_a_store_folder_that_does_not_exist(tmp_path):
    from typer.testing import CliRunner

    from backtest.cli import app

    runner = CliRunner()
    missing = str(tmp_path / "no-such-store")
    for args in (["data", "ls"], ["data", "verify"], ["data", "gaps"], ["events", "list"]):
        res = runner.invoke(app, [*args, "--store", missing])
        assert res.exit_code == 2, (args, res.output)
        assert "does not exist" in res.stderr and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = runner.invoke(app, ["events", "show", "2025-10-10", "--store", str(afile)])
    assert res.exit_code == 2 and "is a file" in res.stderr
    assert not (tmp_path / "no-such-store").exists()


def test_corrupt_partition_gives_one_line_in_ls_and_gaps(tmp_path):
    from typer.testing import CliRunner

    from backtest.cli import app

    st = Store(tmp_path)
    st.write("ohlcv", bars(3), exchange="x", timeframe="1m")
    p = st.partitions()[0].path
    raw = open(p, "rb").read()
    open(p, "wb").write(raw[: len(raw) // 2])
    runner = CliRunner()
    for args in (["data", "ls"], ["data", "gaps"], ["data", "verify"]):
        res = runner.invoke(app, [*args, "--store", str(tmp_path)])
        assert res.exit_code == 2, (args, res.output)
        assert "Traceback" not in res.stderr and res.stderr.strip().splitlines()[-1]


def test_two_symbols_with_one_path_name_are_refused_not_mixed(tmp_path):
    """safe_symbol('A/B:C') == safe_symbol('A_B_C'): rows are keyed on ts within a partition, so
    mixing them would silently drop one symbol's bars. The write is refused, the store unchanged."""
    st = Store(tmp_path)
    st.write("ohlcv", bars(3, symbol="A/B:C"), exchange="x", timeframe="1m")
    before = open(st.partitions()[0].path, "rb").read()
    with pytest.raises(StoreError, match="same path name"):
        st.write("ohlcv", bars(3, symbol="A_B_C"), exchange="x", timeframe="1m")
    with pytest.raises(StoreError, match="would share the store path"):
        st.write("ohlcv", pl.concat([bars(2, symbol="E/F:G"), bars(2, symbol="E_F_G")]), exchange="x", timeframe="1m")
    assert open(st.partitions()[0].path, "rb").read() == before and len(st.partitions()) == 1


def test_gaps_with_a_range_not_on_bar_boundaries():
    """--since 00:30 on hourly bars: the first bar checked is 01:00, no bogus zero-length gap."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        st = Store(d)
        h = 3_600_000
        st.write("ohlcv", bars(6, step=h).filter(pl.col("ts") != T0 + 3 * h), exchange="x", timeframe="1h")
        g = st.gaps("ohlcv", start=T0 + h // 2, end=T0 + 6 * h)
        assert g["missing"].to_list() == [1]
        assert g["gap_start"].cast(pl.Int64).to_list() == [T0 + 3 * h]
        assert st.gaps("ohlcv", start=T0 + h // 2, end=T0 + 3 * h).height == 0
