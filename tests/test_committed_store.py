"""The committed default store and event catalogue, through the CLI as a user runs it."""

from __future__ import annotations

import polars as pl
from typer.testing import CliRunner

from backtest.cli import app
from backtest.events import get_event, load_events
from backtest.store import Store

runner = CliRunner()


def test_committed_store_is_clean():
    res = runner.invoke(app, ["data", "verify"])
    assert res.exit_code == 0, res.output
    assert "all clean" in res.stdout


def test_committed_btc_1m_crash_bars(committed_store):
    df = Store(committed_store).read("ohlcv", exchange="binanceusdm", symbol="BTC/USDT:USDT", timeframe="1m")
    assert df.height == 262
    assert df["ts"].min().isoformat() == "2025-10-10T19:38:00+00:00"
    assert df["ts"].max().isoformat() == "2025-10-10T23:59:00+00:00"
    row = df.filter(pl.col("low") == pl.col("low").min()).row(0, named=True)
    assert row["low"] == 101516.5 and row["ts"].isoformat() == "2025-10-10T21:20:00+00:00"
    assert Store(committed_store).gaps("ohlcv", symbol="BTC/USDT:USDT", timeframe="1m").height == 0


def test_every_event_has_its_window_and_lookback_in_the_store(committed_store):
    st = Store(committed_store)
    for ev in load_events():
        for sym in ev.symbols[:2]:
            df = st.read("ohlcv", exchange=ev.exchange, symbol=sym, timeframe="1h", start=ev.lookback_start_ms, end=ev.end_ms)
            hours = (ev.end_ms - ev.lookback_start_ms) // 3_600_000
            if ev.id != "2025-10-10":  # the Oct 2025 1h multi file starts 2025-09-26 for most symbols
                assert df.height == hours, (ev.id, sym, df.height, hours)
            f = st.read("funding", exchange=ev.exchange, symbol=sym, start=ev.lookback_start_ms, end=ev.end_ms)
            assert f.height > 0, (ev.id, sym)
    assert len(st.read_tiers("binanceusdm")) == 349
    assert st.read_tiers("binanceusdm", "BTC/USDT:USDT")[0]["maintenanceMarginRate"] == 0.004


def test_2025_10_10_funding_has_every_8h_settlement_of_lookback_and_window(committed_store):
    st = Store(committed_store)
    ev = get_event("2025-10-10")
    eight = 8 * 3_600_000
    first = -(-ev.lookback_start_ms // eight) * eight  # first settlement in the lookback
    lookback = list(range(first, ev.start_ms, eight))
    assert len(lookback) == 90
    for sym in ev.symbols:
        # HYPEUSDT settles every 4 hours (data/PROVENANCE.md), the others every 8
        step = eight // 2 if sym.startswith("HYPE/") else eight
        expected = list(range(-(-ev.lookback_start_ms // step) * step, ev.end_ms, step))
        f = st.read("funding", exchange=ev.exchange, symbol=sym, start=ev.lookback_start_ms, end=ev.end_ms)
        got = f["ts"].cast(pl.Int64).to_list()
        assert got == expected, (sym, len(got), sorted(set(expected) - set(got))[:3])
        assert f["funding_rate"].null_count() == 0 and f["funding_rate"].is_finite().all()


def test_events_list_and_show():
    res = runner.invoke(app, ["events", "list"])
    assert res.exit_code == 0
    for eid in ("2025-10-10", "2025-04-07", "2024-08-05", "2022-11-08", "2021-05-19", "2020-03-12"):
        assert eid in res.stdout
    assert len(load_events()) == 6
    res = runner.invoke(app, ["events", "show", "2025-10-10"])
    assert res.exit_code == 0 and "19.10B" in res.stdout and "coinglass" in res.stdout.lower()
    assert get_event("2025-10-10-tariff-crash").id == "2025-10-10"
    res = runner.invoke(app, ["events", "show", "1999-01-01"])
    assert res.exit_code == 2 and "unknown event" in res.stderr


def test_data_ls_and_gaps():
    res = runner.invoke(app, ["data", "ls"])
    assert res.exit_code == 0 and "BTC/USDT:USDT" in res.stdout and "349 markets" in res.stdout
    res = runner.invoke(app, ["data", "gaps", "--dataset", "ohlcv", "--symbol", "BTC/USDT:USDT", "--timeframe", "1m"])
    assert res.exit_code == 0 and "no gaps" in res.stdout
    res = runner.invoke(app, ["data", "gaps", "--since", "2025-10-10T00:00:00"])
    assert res.exit_code == 2 and "no zone" in res.stderr


def test_committed_other_venues_and_oct2025_5m_bars(committed_store):
    """Bybit 5m/1h mark/funding and OKX BTC 15m for the 2025-10 crash; Binance 5m for 14 perps;
    HYPE's 5-minute open interest (data/PROVENANCE.md)."""
    st = Store(committed_store)
    t0, t1 = "2025-10-10T20:00:00Z", "2025-10-11T00:00:00Z"
    by = st.read("ohlcv", exchange="bybit", symbol="BTC/USDT:USDT", timeframe="5m", start=t0, end=t1)
    assert by.height == 48 and by["low"].min() == 101045.9  # Bybit's own low, 21:20
    assert st.read("mark", exchange="bybit", symbol="AVAX/USDT:USDT", timeframe="1h", start=t0, end=t1).height == 4
    assert st.read("funding", exchange="bybit", symbol="ETH/USDT:USDT", start="2025-10-01T00:00:00Z", end="2025-10-11T00:00:00Z").height == 30
    okx = st.read("ohlcv", exchange="okx", symbol="BTC/USDT:USDT", timeframe="15m", start=t0, end=t1)
    assert okx.height == 16 and okx["low"].min() == 101482.7
    for sym in ("ETH", "XRP", "BNB", "HYPE"):
        b = st.read("ohlcv", exchange="binanceusdm", symbol=f"{sym}/USDT:USDT", timeframe="5m", start="2025-09-08T00:00:00Z", end="2025-10-18T00:00:00Z")
        assert b.height == 11_520, sym
    bnb = st.read("ohlcv", exchange="binanceusdm", symbol="BNB/USDT:USDT", timeframe="5m", start=t0, end=t1)
    assert bnb["low"].min() == 823.6
    oi = st.read("open_interest", exchange="binanceusdm", symbol="HYPE/USDT:USDT", timeframe="5m")
    assert oi.height == 9_793
    at = lambda t: float(oi.filter(pl.col("ts") == pl.lit(t).str.to_datetime(time_zone="UTC").dt.cast_time_unit("ms"))["open_interest_usd"][0])  # noqa: E731
    assert 215e6 < at("2025-10-10T20:00:00Z") < 227e6 and 146e6 < at("2025-10-10T21:15:00Z") < 158e6  # $221M -> $152M
