"""CSV import: the layouts of ../shared/data, and bad input rejected with one line, store untouched."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from backtest.cli import app
from backtest.sources.csv_import import ImportError_, ccxt_symbol, import_csv, parse_file
from backtest.store import Store

runner = CliRunner()


def test_symbols():
    assert ccxt_symbol("BTCUSDT", "binanceusdm") == "BTC/USDT:USDT"
    assert ccxt_symbol("1000PEPEUSDT", "binanceusdm") == "1000PEPE/USDT:USDT"
    assert ccxt_symbol("BTCUSD_PERP", "binancecoinm") == "BTC/USD:BTC"
    with pytest.raises(ImportError_):
        ccxt_symbol("XYZ", "binanceusdm")


def test_binance_kline_1m_real_rows(tmp_path, shared_data):
    st = Store(tmp_path)
    lines = list(import_csv(st, shared_data / "unlicensed_raw_binance/BTCUSDT_1m_futures_20251010_1938_2359.csv"))
    assert "262 rows (262 new)" in lines[0]
    df = st.read("ohlcv", symbol="BTC/USDT:USDT", timeframe="1m")
    assert df.height == 262
    low = df.filter(pl.col("low") == pl.col("low").min())
    assert low["low"][0] == 101516.5
    assert low["ts"][0].isoformat() == "2025-10-10T21:20:00+00:00"
    assert df["quote_volume"].null_count() == 0
    # importing again adds nothing
    again = list(import_csv(st, shared_data / "unlicensed_raw_binance/BTCUSDT_1m_futures_20251010_1938_2359.csv"))
    assert "(0 new)" in again[0]


def test_multi_symbol_mark_and_funding(tmp_path, shared_data):
    st = Store(tmp_path)
    list(import_csv(st, shared_data / "binance_usdm_oct2025/usdm_1h_mark_multi_20250926_20251026.csv.gz"))
    mark = st.read("mark", symbol="BTC/USDT:USDT")
    assert mark.height == 744 and mark["timeframe"].unique().to_list() == ["1h"]
    assert round(mark["low"].min(), 2) == 101877.69
    list(import_csv(st, shared_data / "binance_usdm_oct2025/usdm_funding_multi_20250926_20251026.csv"))
    f = st.read("funding", symbol="KAS/USDT:USDT")
    # KAS settles every 4 hours; times are rounded to the second
    assert (f["ts"].cast(pl.Int64) % 1000 == 0).all()
    assert st.read("funding").height == 2976


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = "symbol,timestamp,datetime,open,high,low,close,volume\n" + "\n".join(
    f"BTCUSDT,{1760054400000 + i * 60000},{t},1,2,0.5,1.5,10" for i, t in enumerate(["2025-10-10T00:00:00Z", "2025-10-10T00:01:00Z", "2025-10-10T00:02:00Z"])
) + "\n"


@pytest.mark.parametrize(
    "name,text,match",
    [
        ("a.csv", "foo,bar\n1,2\n", "unknown CSV layout"),
        ("b.csv", GOOD.replace("1760054400000", "1760054400").replace("1760054460000", "1760054460").replace("1760054520000", "1760054520"), "seconds"),
        ("c.csv", GOOD + GOOD.splitlines()[1] + "\n", "share a timestamp"),
        ("d.csv", "\n".join([GOOD.splitlines()[0], GOOD.splitlines()[2], GOOD.splitlines()[1]]) + "\n", "not sorted"),
        ("e.csv", GOOD.replace("00:01:00Z", "00:01:00"), "zone-less"),
        ("f.csv", GOOD.replace(",10\n", ",ten\n", 1), "not numbers"),
    ],
)
def test_bad_files_exit_2_and_leave_store_untouched(tmp_path, name, text, match):
    store = tmp_path / "store"
    st = Store(store)
    ok = write(tmp_path, "ok.csv", GOOD)
    assert runner.invoke(app, ["data", "import-csv", str(ok), "--store", str(store)]).exit_code == 0
    before = st.read("ohlcv")
    bad = write(tmp_path, name, text)
    res = runner.invoke(app, ["data", "import-csv", str(bad), "--store", str(store)])
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and match in err and "Traceback" not in res.output
    assert st.read("ohlcv").equals(before)


def test_corrupt_parquet_in_store_is_not_overwritten(tmp_path):
    store = tmp_path / "store"
    ok = write(tmp_path, "ok.csv", GOOD)
    runner.invoke(app, ["data", "import-csv", str(ok), "--store", str(store)])
    part = next(store.rglob("part.parquet"))
    part.write_bytes(b"PAR1 not really parquet")
    res = runner.invoke(app, ["data", "import-csv", str(ok), "--store", str(store)])
    assert res.exit_code == 2 and "unreadable" in res.stderr
    assert part.read_bytes() == b"PAR1 not really parquet"
    res = runner.invoke(app, ["data", "verify", "--store", str(store)])
    assert res.exit_code == 2 and str(part) in res.stderr


def test_store_path_is_a_file(tmp_path):
    f = write(tmp_path, "file", "x")
    res = runner.invoke(app, ["data", "ls", "--store", str(f)])
    assert res.exit_code == 2 and "is a file" in res.stderr


def test_gzip_and_symbol_from_filename(tmp_path, shared_data):
    raw = (shared_data / "unlicensed_raw_binance/BTCUSDT_1m_futures_20251010_1938_2359.csv").read_bytes()
    p = tmp_path / "ETHUSDT-1m-2025-10.csv.gz"
    p.write_bytes(gzip.compress(raw))
    ds, frame = parse_file(p, exchange="binanceusdm")
    assert ds == "ohlcv" and frame["symbol"].unique().to_list() == ["ETH/USDT:USDT"] and frame.height == 262
