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


# ---- review findings: units, metrics files, create_time forms, impossible values -------------
KLINE_HEAD = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n"
KLINE_ROWS = [  # the first two real BTCUSDT 1m bars of the unlicensed_raw_binance file
    (1760125080000, "116301.90,116441.60,116301.80,116332.80,168.729", 1760125139999, "19640039.31780,6106,94.267,10972562.83100,0"),
    (1760125140000, "116332.80,116404.00,116300.00,116399.50,152.302", 1760125199999, "17722121.91030,5009,78.123,9090533.24620,0"),
]
METRICS_HEAD = (
    "create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
    "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio\n"
)


def kline_csv(scale: float = 1) -> str:
    return KLINE_HEAD + "".join(f"{int(o * scale)},{v},{int(c * scale)},{q}\n" for o, v, c, q in KLINE_ROWS)


def metrics_csv(times: list[str], ratio_cells: list[str] | None = None) -> str:
    ratio_cells = ratio_cells or ["1.5,1.6,1.7,0.9"] * len(times)
    return METRICS_HEAD + "".join(f"{t},BTCUSDT,{90000 + i}.1,1.1e10,{r}\n" for i, (t, r) in enumerate(zip(times, ratio_cells)))


@pytest.fixture
def filled_store(tmp_path):
    """A store holding ohlcv 1m (GOOD), BTC 1m klines, open interest and long/short ratio."""
    store = tmp_path / "store"
    for name, text in [("ok.csv", GOOD), ("BTCUSDT-1m-ok.csv", kline_csv()),
                       ("m.csv", metrics_csv(["2025-10-10 00:05:00", "2025-10-10 00:10:00", "2025-10-10 00:15:00"]))]:
        res = runner.invoke(app, ["data", "import-csv", str(write(tmp_path, name, text)), "--store", str(store)])
        assert res.exit_code == 0, res.output
    return store


def snapshot(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def refused(tmp_path, store: Path, name: str, text: str, *needles: str) -> str:
    """Import ``text`` as ``name``: exit 2, one line on stderr naming the file and ``needles``, store byte-identical."""
    before = snapshot(store)
    bad = write(tmp_path, name, text)
    res = runner.invoke(app, ["data", "import-csv", str(bad), "--store", str(store)])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in res.output, err
    assert name in err and all(n in err for n in needles), err
    assert snapshot(store) == before
    return err


@pytest.mark.parametrize("scale,unit,fix", [(1000, "microseconds", "divide by 1000"), (1_000_000, "nanoseconds", "divide by 1,000,000"),
                                            (0.001, "seconds", "multiply by 1000")])
def test_kline_times_not_in_milliseconds_are_refused_before_writing(tmp_path, filled_store, scale, unit, fix):
    refused(tmp_path, filled_store, "BTCUSDT-1m-us.csv", kline_csv(scale), unit, fix, "row 2")
    # a file mixing units is refused at its first bad row, too
    text = kline_csv()
    mixed = text.replace(str(KLINE_ROWS[1][0]), str(int(KLINE_ROWS[1][0] * scale)), 1)
    refused(tmp_path, filled_store, "BTCUSDT-1m-mix.csv", mixed, unit, "row 3")
    # implausible years in plain milliseconds
    refused(tmp_path, filled_store, "BTCUSDT-1m-old.csv", text.replace("1760125140000", "1000000000000", 1), "between 2009-01-01 and 2100-01-01")


def test_metrics_blank_ratio_cells_import_open_interest_and_the_ratios_that_exist(tmp_path, filled_store):
    st = Store(filled_store)
    times = ["2025-10-10 00:20:00", "2025-10-10 00:25:00", "2025-10-10 00:30:00"]
    p = write(tmp_path, "blank.csv", metrics_csv(times, [",,,", "1.5,1.6,1.7,0.9", ",,,"]))
    res = runner.invoke(app, ["data", "import-csv", str(p), "--store", str(filled_store)])
    assert res.exit_code == 0, res.output
    assert "2 rows of the file have no long_short_ratio value and were skipped" in res.stdout
    assert st.read("open_interest").height == 6
    lsr = st.read("long_short_ratio")
    assert lsr.height == 4 and lsr["long_short_ratio"].null_count() == 0
    assert lsr.filter(pl.col("ts") == pl.datetime(2025, 10, 10, 0, 25, time_zone="UTC"))["long_short_ratio"].to_list() == [1.7]


@pytest.mark.parametrize("cells,needle", [
    ("1.5,1.6,abc,0.9", "not numbers"),
    ("1.5,1.6,-1.7,0.9", "long_short_ratio is negative"),
    ("1.5,1.6,NaN,0.9", "long_short_ratio is negative or not a finite number"),
])
def test_metrics_malformed_ratio_writes_nothing_not_even_open_interest(tmp_path, filled_store, cells, needle):
    text = metrics_csv(["2025-10-10 00:20:00", "2025-10-10 00:25:00"], ["1.5,1.6,1.7,0.9", cells])
    refused(tmp_path, filled_store, "badratio.csv", text, needle, "row 3")
    text = metrics_csv(["2025-10-10 00:20:00", "2025-10-10 00:25:00"]).replace("90001.1", "-5", 1)
    refused(tmp_path, filled_store, "badoi.csv", text, "open_interest is negative", "row 3")


def test_metrics_create_time_forms(tmp_path, filled_store):
    st = Store(filled_store)
    forms = ["2025/10/10 00:20", "2025-10-10T00:25:00", "2025-10-10T00:30:00Z", "2025-10-10 00:35:00 UTC", "1760057700000"]
    for i, t in enumerate(forms):
        p = write(tmp_path, f"ct{i}.csv", metrics_csv([t]))
        res = runner.invoke(app, ["data", "import-csv", str(p), "--store", str(filled_store), "--timeframe", "5m"])
        assert res.exit_code == 0, (t, res.output)
    got = [t.isoformat() for t in st.read("open_interest")["ts"].to_list()]
    assert got[3:] == [f"2025-10-10T00:{m}:00+00:00" for m in (20, 25, 30, 35, 55)]
    for t in ("10/10/2025 00:05", "2025-10-10 00:05:00+02:00", "2025-13-10 00:05:00", "yesterday"):
        refused(tmp_path, filled_store, "ct_bad.csv", metrics_csv(["2025-10-10 00:40:00", t]), "row 3", "create_time", "2025-10-10 00:05:00")
    refused(tmp_path, filled_store, "ct_sec.csv", metrics_csv(["1760054700"]), "seconds", "multiply by 1000")


@pytest.mark.parametrize("row,needle", [
    ("NaN,NaN,NaN,NaN,10", "open is not a finite number"),
    ("-5,0,-10,-5,1", "open is zero or negative"),
    ("0,0,0,0,1", "open is zero or negative"),
    ("1,0.5,2,1.5,10", "high is below low"),
    ("1,1.2,0.5,1.5,10", "high is below open or close"),
    ("1,2,1.2,1.5,10", "low is above open or close"),
    (",,,,", "no open"),
    ("1,2,0.5,1.5,-3", "volume is negative"),
])
def test_impossible_prices_are_refused_naming_the_row(tmp_path, filled_store, row, needle):
    st = Store(filled_store)
    before = st.read("ohlcv", timeframe="1m")
    # the bad bar has a timestamp already stored: it must not replace the good one
    lines = GOOD.splitlines()
    bad = "\n".join([*lines[:3], lines[3].replace("1,2,0.5,1.5,10", row)]) + "\n"
    refused(tmp_path, filled_store, "badbar.csv", bad, needle, "row 4", "BTC/USDT:USDT")
    assert st.read("ohlcv", timeframe="1m").equals(before)
    # the same checks for the Binance kline layout
    kl = kline_csv().replace(KLINE_ROWS[1][1], row, 1)
    refused(tmp_path, filled_store, "BTCUSDT-1m-bad.csv", kl, needle, "row 3")


def test_several_files_are_all_checked_before_any_is_written(tmp_path, filled_store):
    """``import-csv good.csv bad.csv``: the bad file is refused and the good one is not written either."""
    before = snapshot(filled_store)
    good = write(tmp_path, "later.csv", GOOD.replace("BTCUSDT", "ETHUSDT"))
    bad = write(tmp_path, "bad.csv", "foo,bar\n1,2\n")
    res = runner.invoke(app, ["data", "import-csv", str(good), str(bad), "--store", str(filled_store)])
    assert res.exit_code == 2 and "bad.csv" in res.stderr and "unknown CSV layout" in res.stderr
    assert snapshot(filled_store) == before
    res = runner.invoke(app, ["data", "import-csv", str(good), "--store", str(filled_store)])
    assert res.exit_code == 0 and "later.csv: ohlcv 1m, 3 rows (3 new)" in res.output


def test_ccxt_symbol_of_okx_swap_ids():
    from backtest.sources.csv_import import ccxt_symbol

    assert ccxt_symbol("BTC-USDT-SWAP", "okx") == "BTC/USDT:USDT"
    assert ccxt_symbol("BTC-USD-SWAP", "okx") == "BTC/USD:BTC"  # inverse: settled in the base coin
    assert ccxt_symbol("ETHUSDT", "bybit") == "ETH/USDT:USDT"
