"""The ``depth`` dataset: Binance ``bookDepth`` files by CSV import and from the archive, stale bids."""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from backtest.cli import app
from backtest.sources import book_depth
from backtest.store import Store, to_ms
from tests.conftest import SHARED

DEPTH_CSV = SHARED / "unlicensed_binance_bookdepth" / "BTCUSDT-bookDepth-2025-10-10.csv.gz"
needs_shared = pytest.mark.skipif(not DEPTH_CSV.exists(), reason="needs ../shared/data")
BTC = "BTC/USDT:USDT"


def read_depth(root) -> pl.DataFrame:
    return Store(root).read("depth", exchange="binanceusdm", symbol=BTC, timeframe="event").sort("ts", "percentage")


@needs_shared
def test_import_csv_book_depth_flags_the_stale_bid(tmp_path):
    r = CliRunner().invoke(app, ["data", "import-csv", str(DEPTH_CSV), "--exchange", "binanceusdm", "--store", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "depth event, 28790 rows" in r.output and "flagged stale" in r.output
    df = read_depth(tmp_path)
    assert df.height == 28790 and df["ts"].n_unique() == 2879
    assert set(df["percentage"].unique().to_list()) == set(book_depth.PERCENTAGES)
    stale = df.filter(pl.col("stale"))
    assert stale.height > 0 and (stale["percentage"] < 0).all()  # only bids can be stale
    first = int(stale["ts"].cast(pl.Int64).min())
    assert to_ms("2025-10-10T15:00:00Z") <= first <= to_ms("2025-10-10T16:41:00Z")  # PROVENANCE: stale from ~16:41
    # the provenance's 17.654 BTC at 121,363 sits in the stale -1 % bucket at 21:30
    at = df.filter((pl.col("percentage") == -1) & (pl.col("ts") >= pl.lit(to_ms("2025-10-10T21:30:00Z")).cast(pl.Datetime("ms", "UTC")))).head(1)
    assert at["stale"][0] and abs(at["notional_usd"][0] / at["depth"][0] - 121_363.27) < 1.0
    # before the anomaly no bucket is flagged, and the +1 % ask thinned ~70 % into the crash
    assert not df.filter(pl.col("ts") < pl.lit(to_ms("2025-10-10T15:00:00Z")).cast(pl.Datetime("ms", "UTC")))["stale"].any()
    def ask1(t0, t1):
        w = df.filter((pl.col("percentage") == 1) & pl.col("ts").is_between(pl.lit(to_ms(t0)).cast(pl.Datetime("ms", "UTC")), pl.lit(to_ms(t1)).cast(pl.Datetime("ms", "UTC"))))
        return float(w["notional_usd"].mean())
    assert ask1("2025-10-10T21:20:00Z", "2025-10-10T21:30:00Z") < 0.4 * ask1("2025-10-10T20:00:00Z", "2025-10-10T20:10:00Z")
    ls = CliRunner().invoke(app, ["data", "ls", "--store", str(tmp_path)])
    assert ls.exit_code == 0 and "depth" in ls.output


def test_import_csv_book_depth_bad_rows_are_one_line(tmp_path):
    f = tmp_path / "BTCUSDT-bookDepth-2025-10-10.csv"
    f.write_text("timestamp,percentage,depth,notional\n2025-10-10 00:00:07,-1,10,1000\n2025-10-10 00:00:07,7,10,1000\n")
    r = CliRunner().invoke(app, ["data", "import-csv", str(f), "--exchange", "binanceusdm", "--store", str(tmp_path / "st")])
    assert r.exit_code == 2 and "percentage 7" in r.output and "Traceback" not in r.output
    f.write_text("timestamp,percentage,depth,notional\n2025-10-10 00:00:07,-1,-10,1000\n")
    r = CliRunner().invoke(app, ["data", "import-csv", str(f), "--exchange", "binanceusdm", "--store", str(tmp_path / "st")])
    assert r.exit_code == 2 and "depth -10" in r.output
    assert not (tmp_path / "st" / "depth").exists()  # nothing written


@settings(max_examples=60, deadline=None)
@given(
    mid=st.floats(100, 200_000),
    spread=st.lists(st.floats(0.0001, 0.05), min_size=10, max_size=10),
    stale_at=st.one_of(st.none(), st.integers(0, 4)),
)
def test_flag_stale_marks_exactly_bids_above_the_asks(mid, spread, stale_at):
    """A consistent book (bids below mid, asks above) has no stale bucket; a bid bucket whose
    average price is moved above the +1 % ask's is flagged, and only that one."""
    pcts = list(book_depth.PERCENTAGES)
    avg = [mid * (1 - s) if p < 0 else mid * (1 + s) for p, s in zip(pcts, spread)]
    if stale_at is not None:
        avg[stale_at] = avg[pcts.index(1)] * 1.001
    depth = [1.0 + abs(p) for p in pcts]
    f = book_depth.frame_from_columns([1_760_000_000_000] * 10, pcts, depth, [a * d for a, d in zip(avg, depth)], BTC)
    flagged = [p for p, s in zip(f["percentage"].to_list(), f["stale"].to_list()) if s]
    assert flagged == ([] if stale_at is None else [pcts[stale_at]])


@needs_shared
def test_archive_download_of_depth_and_rerun(tmp_path):
    from tests.fakes.archive_server import ArchiveServer, build_archive

    with ArchiveServer(build_archive()) as srv:
        cfg = tmp_path / "cfg.json"
        cfg.write_text(json.dumps({"archive_base_url": srv.url, "retry": {"base": 0.001, "cap": 0.01, "retry_after_cap": 0.01}}))
        args = ["download", "binanceusdm", BTC, "--source", "binance-archive", "--datasets", "depth", "--since", "2025-10-10T00:00:00Z",
                "--until", "2025-10-11T00:00:00Z", "--store", str(tmp_path / "st"), "--ccxt-config", str(cfg)]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        assert "depth BTC/USDT:USDT event: +28790 rows" in r.output and "flagged stale" in r.output
        assert read_depth(tmp_path / "st").height == 28790
        r2 = CliRunner().invoke(app, args)
        assert r2.exit_code == 0 and "+0 rows (0 requests)" in r2.output


def test_ccxt_source_says_depth_needs_the_archive():
    import ccxt

    from backtest.sources.ccxt_source import lacks

    assert "binance-archive" in lacks(ccxt.binanceusdm(), "depth")
