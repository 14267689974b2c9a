"""`backtest scan` on SYNTHETIC bars with planted crashes, and on the committed store (2025-10-10)."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from backtest.cli import app
from backtest.events import get_event, load_events
from backtest.scan import indicators, merge_windows, scan_store, symbol_crashes
from backtest.store import Store, to_ms

H = 3_600_000
T0 = to_ms("2024-01-01T00:00:00Z")
N = 24 * 40  # 40 days of 1h bars
#: planted crashes: (symbol, hour index of the low, depth, hours the fall takes)
PLANTED = [("AAA/USDT:USDT", 24 * 20 + 13, 0.25, 3), ("BBB/USDT:USDT", 24 * 20 + 14, 0.15, 2), ("AAA/USDT:USDT", 24 * 33 + 5, 0.12, 1)]


@pytest.fixture(autouse=True)
def _clean(monkeypatch, tmp_path):
    monkeypatch.delenv("BACKTEST_EVENTS", raising=False)
    monkeypatch.chdir(tmp_path)


def synthetic_bars(symbol: str, seed: int, crashes=(), oi_drop: float | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """SYNTHETIC 1h bars: a quiet random walk (0.3 % per hour) with planted falls and their rebound;
    volume 10x and ranges 10x at the falls; open interest that falls with them when ``oi_drop``."""
    rng = np.random.default_rng(seed)
    logp = np.cumsum(rng.normal(0, 0.003, N)) + np.log(100.0)
    vol = rng.uniform(900, 1100, N)
    oi = np.full(N, 1e6)
    for at, depth, hours in crashes:
        fall = np.zeros(N)
        fall[at - hours + 1:at + 1] = np.linspace(0, 1, hours + 1)[1:]
        fall[at + 1:at + 24] = np.linspace(1, 0.5, 24)[1:]  # half the fall is regained over a day
        fall[at + 24:] = 0.5
        logp += np.log1p(-depth) * fall
        vol[at - hours + 1:at + 2] *= 10
        if oi_drop:
            oi[at - hours + 1:] *= 1 - oi_drop
    close = np.exp(logp)
    open_ = np.r_[close[0], close[:-1]]
    wig = 0.001 * close
    for at, depth, hours in crashes:
        wig[at - hours + 1:at + 1] = 0.02 * close[at - hours + 1:at + 1]
    ts = T0 + H * np.arange(N)
    bars = pl.DataFrame({"ts": ts, "symbol": symbol, "open": open_, "high": np.maximum(open_, close) + wig,
                         "low": np.minimum(open_, close) - wig, "close": close, "volume": vol})
    return bars, pl.DataFrame({"ts": ts, "symbol": symbol, "open_interest": oi})


@pytest.fixture
def synthetic_store(tmp_path):
    s = Store(tmp_path / "st")
    for i, sym in enumerate(["AAA/USDT:USDT", "BBB/USDT:USDT", "CCC/USDT:USDT"]):
        planted = [(at, d, h) for s_, at, d, h in PLANTED if s_ == sym]
        bars, oi = synthetic_bars(sym, i, planted, oi_drop=0.2 if sym == "AAA/USDT:USDT" else None)
        s.write("ohlcv", bars, exchange="binanceusdm", timeframe="1h")
        if sym == "AAA/USDT:USDT":
            s.write("open_interest", oi, exchange="binanceusdm", timeframe="1h")
    return s


def test_planted_crashes_are_found_merged_and_ranked(synthetic_store):
    ws = scan_store(synthetic_store, "binanceusdm")
    assert len(ws) == 2  # the quiet walk of CCC flags nothing; AAA and BBB on day 20 are one window
    first, second = ws
    assert first.symbols == ["AAA/USDT:USDT", "BBB/USDT:USDT"]
    assert first.worst.low_ms == T0 + H * (24 * 20 + 13)
    assert 0.24 < first.worst.drawdown < 0.30
    assert first.start_ms <= T0 + H * (24 * 20 + 10) and first.end_ms >= T0 + H * (24 * 20 + 16)
    assert first.end_ms - first.start_ms <= 12 * H
    d = first.to_dict()
    assert d["volume_x"] > 5 and d["range_x"] > 5
    assert d["oi_change"] == pytest.approx(-0.2, abs=1e-9)  # AAA's stored open interest fell 20 %
    assert second.symbols == ["AAA/USDT:USDT"] and second.worst.low_ms == T0 + H * (24 * 33 + 5)
    assert 0.10 < second.worst.drawdown < 0.16
    # thresholds: a higher bar keeps only the deep one; since/until restrict the span
    assert len(scan_store(synthetic_store, "binanceusdm", min_drawdown=0.2, min_spike=1e6, min_oi_drop=1.0)) == 1
    only = scan_store(synthetic_store, "binanceusdm", since="2024-01-30T00:00:00Z")
    assert [w.worst.low_ms for w in only] == [second.worst.low_ms]


def test_open_interest_drop_alone_flags(tmp_path):
    s = Store(tmp_path / "st")
    bars, oi = synthetic_bars("AAA/USDT:USDT", 7)
    oi = oi.with_columns(pl.when(pl.col("ts") >= T0 + H * 500).then(pl.col("open_interest") * 0.7).otherwise(pl.col("open_interest")))
    s.write("ohlcv", bars, exchange="binanceusdm", timeframe="1h")
    s.write("open_interest", oi, exchange="binanceusdm", timeframe="1h")
    ws = scan_store(s, "binanceusdm", min_spike=1e6)
    assert len(ws) == 1 and ws[0].oi_change == pytest.approx(-0.3) and ws[0].worst.drawdown < 0.08


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.5, 2.0), min_size=30, max_size=80), st.integers(1, 6))
def test_drawdown_matches_a_plain_loop(prices, hours):
    """The polars rolling drawdown against the obvious loop (rolling 24h high, gaps in time included)."""
    ts = np.cumsum([H * (1 + (i % hours == 0) * 3) for i in range(len(prices))]) + T0
    p = np.array(prices)
    bars = pl.DataFrame({"ts": ts, "open": p, "high": p * 1.01, "low": p * 0.99, "close": p, "volume": np.ones(len(p)),
                         "quote_volume": [None] * len(p)}, schema_overrides={"quote_volume": pl.Float64}).with_columns(
        pl.col("ts").cast(pl.Datetime("ms", "UTC")))
    got = indicators(bars, "1h")["drawdown"].to_numpy()
    for i in range(len(p)):
        hi = max(p[j] * 1.01 for j in range(len(p)) if ts[i] - 24 * H < ts[j] <= ts[i])
        assert got[i] == pytest.approx(1 - p[i] * 0.99 / hi, abs=1e-12)


def test_merge_keeps_one_crash_per_symbol_and_does_not_chain():
    from backtest.scan import SymbolCrash

    def c(sym, low_h, dd):
        return SymbolCrash(sym, T0 + H * (low_h - 2), T0 + H * low_h, 1.0, 1.2, dd, None, None)

    # A anchors [t-3h, t+3h); B overlaps it; C overlaps B's span but not A's: its own window
    ws = merge_windows("x", [c("A", 10, 0.3), c("B", 14, 0.2), c("C", 19, 0.1), c("A", 11, 0.05)])
    assert [w.symbols for w in ws] == [["A", "B"], ["C"]]
    assert symbol_crashes(indicators(synthetic_bars("Z/USDT:USDT", 3)[0].with_columns(pl.lit(None, pl.Float64).alias("quote_volume"),
                                                                                 pl.col("ts").cast(pl.Datetime("ms", "UTC"))), "1h"),
                          "Z/USDT:USDT", "1h") == []


def test_committed_store_finds_2025_10_10():
    ws = scan_store(None, "binanceusdm", symbols=["BTC/USDT:USDT"], events=load_events())
    ev = get_event("2025-10-10")
    hit = [w for w in ws if w.known == "2025-10-10"]
    assert hit and hit[0].worst.low_ms == to_ms("2025-10-10T21:00:00Z")
    assert hit[0].start_ms < ev.end_ms and ev.start_ms < hit[0].end_ms
    assert 0.15 < hit[0].worst.drawdown < 0.2  # 1h bars: 101,516.5 at the low against the day's high
    assert {w.known for w in ws} >= {e.id for e in load_events()}  # every catalogued crash is found on BTC


def test_scan_cli_table_json_and_add(synthetic_store, tmp_path):
    st_ = str(synthetic_store.root)
    r = CliRunner().invoke(app, ["scan", "binanceusdm", "--store", st_])
    assert r.exit_code == 0, r.output
    assert "AAA/USDT:USDT" in r.stdout and "-2" in r.stdout and "2024-01-21" in r.stdout
    r = CliRunner().invoke(app, ["scan", "binanceusdm", "--store", st_, "--json"])
    data = json.loads(r.stdout)
    assert [d["worst_symbol"] for d in data] == ["AAA/USDT:USDT", "AAA/USDT:USDT"] and data[0]["symbols"][1]["symbol"] == "BBB/USDT:USDT"
    r = CliRunner().invoke(app, ["scan", "binanceusdm", "--store", st_, "--add-top", "1", "--lookback", "10"])
    assert r.exit_code == 0, r.output
    assert f"added event {data[0]['id']} in events.toml" in r.stdout
    ev = get_event(data[0]["id"])
    assert ev.symbols == ("AAA/USDT:USDT", "BBB/USDT:USDT") and ev.start_ms == to_ms(data[0]["start"])
    assert ev.lookback_start_ms == ev.start_ms - 10 * 86_400_000 and ev.observed[0]["value"] > 0
    r = CliRunner().invoke(app, ["scan", "binanceusdm", "--store", st_, "--add"])
    assert r.exit_code == 0 and f"overlaps event {data[0]['id']}: not added" in r.stderr and f"added event {data[1]['id']}" in r.stdout
    assert len(load_events()) == 8


def test_scan_bad_options(tmp_path, synthetic_store):
    def err(*args):
        r = CliRunner().invoke(app, ["scan", *args])
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, r.output
        return r.stderr

    assert "no binanceusdm ohlcv bars at 5m" in err("binanceusdm", "--store", str(synthetic_store.root), "--timeframe", "5m")
    assert "it has 1h" in err("binanceusdm", "--store", str(synthetic_store.root), "--timeframe", "5m")
    assert "unknown timeframe" in err("binanceusdm", "--store", str(synthetic_store.root), "--timeframe", "0m")
    assert "--min-drawdown" in err("binanceusdm", "--store", str(synthetic_store.root), "--min-drawdown", "0")
    assert "does not exist" in err("binanceusdm", "--store", str(tmp_path / "nope"))
    assert "before --until" in err("binanceusdm", "--store", str(synthetic_store.root), "--since", "2024-02-01", "--until", "2024-01-01")
    assert "no binanceusdm ZZZ/USDT:USDT" in err("binanceusdm", "--store", str(synthetic_store.root), "--symbol", "ZZZ/USDT:USDT")
    # every stored symbol, none with bars in the range: one line saying so, with the stored span and the fix
    late = err("binanceusdm", "--store", str(synthetic_store.root), "--since", "2099-01-01")
    assert "no stored binanceusdm symbol has ohlcv bars at 1h in the range (the stored bars span " in late and "download the bars" in late
