"""`backtest download` from ccxt against a local server speaking Binance/Bybit/OKX REST (no network)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from backtest.cli import app
from backtest.store import Store, to_ms
from tests.fakes.exchange_server import FakeExchangeServer, every_other
from tests.fakes.fixtures import KLINES_1M, all_data, funding, klines_1m, klines_15m

pytestmark = pytest.mark.skipif(not KLINES_1M.exists(), reason="needs /work/shared/data")

SINCE, UNTIL = "2025-10-10T19:38:00Z", "2025-10-11T00:00:00Z"
ALL_FAULTS = ["429", "418", "500", "502", "503", "504", "timeout", "cut", "truncated"]
FAST_RETRY = {"base": 0.001, "cap": 0.01, "retry_after_cap": 0.02}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def server():
    with FakeExchangeServer(all_data()) as srv:
        yield srv


def binance_config(tmp_path, srv, fmt="json", **extra) -> Path:
    api = {k: srv.url + v for k, v in {
        "fapiPublic": "/fapi/v1", "fapiPublicV2": "/fapi/v2", "fapiPublicV3": "/fapi/v3",
        "fapiPrivate": "/fapi/v1", "fapiPrivateV2": "/fapi/v2", "fapiData": "/futures/data", "sapi": "/sapi/v1",
    }.items()}
    cfg = {"urls": {"api": api}, "timeout": 250, "rateLimit": 5, "retry": dict(FAST_RETRY), **extra}
    path = tmp_path / f"ccxt.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(cfg))
    else:
        import tomli_w

        path.write_text(tomli_w.dumps(cfg))
    return path


def run(args, cfg, store):
    r = CliRunner().invoke(app, ["download", *args, "--store", str(store), "--ccxt-config", str(cfg)])
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r


def stored(store, dataset="ohlcv", tf="1m", exchange="binanceusdm", symbol="BTC/USDT:USDT") -> pl.DataFrame:
    return Store(store).scan(dataset, exchange=exchange, symbol=symbol, timeframe=tf).collect().sort("ts")


def check_real_1m(df: pl.DataFrame) -> None:
    real = klines_1m()
    assert df.height == 262 == len(real)
    assert df["ts"].is_unique().all()
    ts = df["ts"].cast(pl.Int64).to_list()
    assert ts == [r[0] for r in real]
    assert all(b - a == 60_000 for a, b in zip(ts, ts[1:]))
    assert df["open"].to_list() == [float(r[1]) for r in real]
    assert df["low"].to_list() == [float(r[3]) for r in real]
    assert df["close"].to_list() == [float(r[4]) for r in real]
    assert df["volume"].to_list() == [float(r[5]) for r in real]
    assert df["low"].min() == 101516.5  # the real 21:20 wick


OHLCV_ARGS = ["binanceusdm", "BTC/USDT:USDT", "--datasets", "ohlcv", "--timeframe", "1m", "--since", SINCE, "--until", UNTIL]


# ---- the "done when" scenario ------------------------------------------------------------
def test_binance_262_rows_with_every_second_request_failing_then_rerun_fetches_nothing(tmp_path, server):
    server.plan = every_other(ALL_FAULTS)
    cfg = binance_config(tmp_path, server, page_limits={"ohlcv": 30})  # 9 pages: every fault at least once
    r = run(OHLCV_ARGS, cfg, tmp_path / "st")
    assert r.exit_code == 0, r.output
    check_real_1m(stored(tmp_path / "st"))
    faults = [f for _, _, f in server.log if f]
    assert set(faults) == set(ALL_FAULTS)
    assert "+262 rows" in r.output and "no gaps" in r.output
    # klines requests stay within Binance's window and never overlap
    starts = [int(q["startTime"]) for p, q, f in server.log if p.endswith("/klines") and f is None]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert Store(tmp_path / "st").verify() == []

    server.log.clear()
    server.plan = lambda n, p: None
    r2 = run(OHLCV_ARGS, cfg, tmp_path / "st")
    assert r2.exit_code == 0, r2.output
    assert server.log == []  # nothing it already has: not even exchangeInfo
    assert "+0 rows" in r2.output
    check_real_1m(stored(tmp_path / "st"))


def test_default_page_size_and_toml_config(tmp_path, server):
    cfg = binance_config(tmp_path, server, fmt="toml")
    r = run(OHLCV_ARGS, cfg, tmp_path / "st")
    assert r.exit_code == 0, r.output
    check_real_1m(stored(tmp_path / "st"))
    q = [q for p, q, f in server.log if p.endswith("/klines")]
    assert len(q) == 1 and q[0]["limit"] == "1000" and q[0]["interval"] == "1m"


def test_rerun_fetches_only_the_missing_middle(tmp_path, server):
    cfg = binance_config(tmp_path, server)
    st = tmp_path / "st"
    run(OHLCV_ARGS, cfg, st)
    # drop 20:00-20:59 from the stored partition, as if never fetched
    s = Store(st)
    full = stored(st)
    keep = full.filter((pl.col("ts") < pl.datetime(2025, 10, 10, 20, time_zone="UTC")) | (pl.col("ts") >= pl.datetime(2025, 10, 10, 21, time_zone="UTC")))
    path = s.partition_path("ohlcv", "binanceusdm", "BTC/USDT:USDT", "1m", 2025, 10)
    os.remove(path)
    s.write("ohlcv", keep, exchange="binanceusdm", timeframe="1m")
    assert stored(st).height == 262 - 60
    server.log.clear()
    r = run(OHLCV_ARGS, cfg, st)
    assert r.exit_code == 0, r.output
    reqs = [q for p, q, f in server.log if p.endswith("/klines")]
    assert len(reqs) == 1
    assert int(reqs[0]["startTime"]) == to_ms("2025-10-10T20:00:00Z")
    assert int(reqs[0]["endTime"]) == to_ms("2025-10-10T21:00:00Z") - 1
    check_real_1m(stored(st))


def test_exchange_gap_is_reported_and_does_not_loop(tmp_path):
    data = all_data()
    kl = data[("binance", "klines:1m", "BTCUSDT")]
    data[("binance", "klines:1m", "BTCUSDT")] = [r for r in kl if not (to_ms("2025-10-10T21:00:00Z") <= r[0] < to_ms("2025-10-10T21:10:00Z"))]
    with FakeExchangeServer(data) as srv:
        cfg = binance_config(tmp_path, srv, page_limits={"ohlcv": 25})
        r = run(OHLCV_ARGS, cfg, tmp_path / "st")
        assert r.exit_code == 0, r.output
        assert stored(tmp_path / "st").height == 252
        assert "1 gap(s), 10 missing" in r.output
        n = len(srv.data_requests())
        assert n <= 262 // 25 + 4
        srv.log.clear()
        r = run(OHLCV_ARGS, cfg, tmp_path / "st")  # only the gap is asked for again
        assert len(srv.data_requests()) <= 3


def test_retries_spent_exit_nonzero_name_range_keep_data(tmp_path, server):
    # the first 3 pages arrive, then the server answers 503 forever
    calls = {"n": 0}

    def plan(n, path):
        if not path.endswith("/klines"):
            return None
        calls["n"] += 1
        return "503" if calls["n"] > 3 else None

    server.plan = plan
    cfg = binance_config(tmp_path, server, page_limits={"ohlcv": 50}, retry={**FAST_RETRY, "max_retries": 3})
    r = run(OHLCV_ARGS, cfg, tmp_path / "st")
    assert r.exit_code == 1
    assert "missing 2025-10-10T22:08:00Z..2025-10-11T00:00:00Z" in r.output
    df = stored(tmp_path / "st")
    assert df.height == 150 and df["ts"].is_unique().all()
    assert calls["n"] == 3 + 4  # first try + 3 retries on the failing page, then stop
    server.plan = lambda n, p: None
    r = run(OHLCV_ARGS, cfg, tmp_path / "st")
    assert r.exit_code == 0
    check_real_1m(stored(tmp_path / "st"))


def test_market_list_unreachable_exits_1_naming_the_range(tmp_path, server):
    server.plan = lambda n, p: "503"
    cfg = binance_config(tmp_path, server, retry={**FAST_RETRY, "max_retries": 2})
    r = run(OHLCV_ARGS, cfg, tmp_path / "st")
    assert r.exit_code == 1
    assert "missing 2025-10-10T19:38:00Z..2025-10-11T00:00:00Z" in r.output and "exchangeInfo" in r.output
    assert len(server.log) == 3


def test_retry_after_is_honoured_but_capped(tmp_path, server):
    from backtest.sources.retry import RetryPolicy

    p = RetryPolicy(base=0.001, cap=0.01, retry_after_cap=5)
    assert p.delay(1, 2.0) == 2.0  # server asked for 2 s
    assert p.delay(1, 500.0) == 5  # capped
    assert p.delay(1, None) <= 0.001
    server.plan = every_other(["429"])
    cfg = binance_config(tmp_path, server, retry={"base": 0.001, "cap": 0.01, "retry_after_cap": 0.3})
    t = time.monotonic()
    r = run(OHLCV_ARGS, cfg, tmp_path / "st")
    assert r.exit_code == 0
    assert time.monotonic() - t >= 0.3  # the 429 carried Retry-After: 2, capped to 0.3


@pytest.mark.parametrize("fault,needle", [("badsymbol", "Invalid symbol"), ("auth", "Invalid API-key")])
def test_permanent_errors_stop_at_once(tmp_path, server, fault, needle):
    server.plan = lambda n, p: fault if p.endswith("/klines") else None
    cfg = binance_config(tmp_path, server)
    r = run(OHLCV_ARGS, cfg, tmp_path / "st")
    assert r.exit_code == 2
    assert needle in r.output
    assert len(server.data_requests()) == 1  # no retries


def test_unknown_symbol_and_missing_dataset_messages(tmp_path, server):
    cfg = binance_config(tmp_path, server)
    r = run(["binanceusdm", "NOPE/USDT:USDT", "--since", SINCE, "--until", UNTIL], cfg, tmp_path / "st")
    assert r.exit_code == 2 and "has no market 'NOPE/USDT:USDT'" in r.output
    r = run(["binanceusdm", "BTC/USDT:USDT", "--datasets", "tiers", "--since", SINCE, "--until", UNTIL], cfg, tmp_path / "st")
    assert r.exit_code == 2 and "need API keys" in r.output
    r = run(["nosuchexchange", "BTC/USDT:USDT", "--since", SINCE], cfg, tmp_path / "st")
    assert r.exit_code == 2 and "ccxt has no exchange" in r.output


def test_lacking_dataset_is_skipped_with_a_clear_message(tmp_path, server, monkeypatch):
    import ccxt

    orig = ccxt.binanceusdm.describe

    def describe(self):
        d = orig(self)
        d["has"] = {**d["has"], "fetchLongShortRatioHistory": False}
        return d

    monkeypatch.setattr(ccxt.binanceusdm, "describe", describe)
    cfg = binance_config(tmp_path, server)
    r = run(["binanceusdm", "BTC/USDT:USDT", "--datasets", "ohlcv,long_short_ratio", "--since", SINCE, "--until", UNTIL], cfg, tmp_path / "st")
    assert r.exit_code == 1
    assert "has no long_short_ratio history" in r.output
    check_real_1m(stored(tmp_path / "st"))


def test_mark_index_funding_oi_lsr(tmp_path, server):
    server.plan = every_other(ALL_FAULTS)
    cfg = binance_config(tmp_path, server, page_limits={"mark": 200, "index": 200, "funding": 100, "open_interest": 10, "long_short_ratio": 10})
    st = tmp_path / "st"
    r = run(["binanceusdm", "BTC/USDT:USDT", "--datasets", "mark,index,funding", "--timeframe", "1h",
             "--since", "2025-10-01", "--until", "2025-10-20"], cfg, st)
    assert r.exit_code == 0, r.output
    mk = stored(st, "mark", "1h")
    assert mk.height == 19 * 24 and mk["ts"].is_unique().all()
    assert abs(mk["low"].min() - 101877.69) < 1e-3  # the real 1h mark low of the crash
    fu = stored(st, "funding", "event")
    real = [f for f in funding() if to_ms("2025-10-01") <= f["fundingTime"] < to_ms("2025-10-20")]
    assert fu.height == len(real) == 57
    assert fu["funding_rate"].to_list() == [float(f["fundingRate"]) for f in real]
    assert set(fu["interval_hours"].to_list()) == {8.0}
    r = run(["binanceusdm", "BTC/USDT:USDT", "--datasets", "open_interest,long_short_ratio", "--timeframe", "5m",
             "--since", SINCE, "--until", UNTIL], cfg, st)
    assert r.exit_code == 0, r.output
    oi = stored(st, "open_interest", "5m")
    ls = stored(st, "long_short_ratio", "5m")
    assert oi.height == ls.height == 52
    assert oi["open_interest_usd"].null_count() == 0 and ls["long_account"].null_count() == 0
    server.log.clear()
    server.plan = lambda n, p: None
    r = run(["binanceusdm", "BTC/USDT:USDT", "--datasets", "mark,index,funding", "--timeframe", "1h",
             "--since", "2025-10-01", "--until", "2025-10-20"], cfg, st)
    assert r.exit_code == 0 and server.data_requests() == []


def test_two_symbols_15m_real_bars(tmp_path, server):
    server.plan = every_other(ALL_FAULTS)
    cfg = binance_config(tmp_path, server, page_limits={"ohlcv": 200})
    st = tmp_path / "st"
    r = run(["binanceusdm", "BTC/USDT:USDT", "ETH/USDT:USDT", "--datasets", "ohlcv", "--timeframe", "15m",
             "--since", "2025-10-06", "--until", "2025-10-18"], cfg, st)
    assert r.exit_code == 0, r.output
    for sym, bsym in (("BTC/USDT:USDT", "BTCUSDT"), ("ETH/USDT:USDT", "ETHUSDT")):
        df = stored(st, tf="15m", symbol=sym)
        real = klines_15m(bsym)
        assert df.height == len(real) == 1152
        assert df["ts"].cast(pl.Int64).to_list() == [k[0] for k in real]
        assert df["high"].to_list() == [float(k[2]) for k in real]
        assert (df["symbol"] == sym).all()
    assert r.output.count("+1152 rows") == 2 and r.output.count("no gaps") == 2


def test_binance_tiers_with_keys_from_real_brackets(tmp_path, server):
    import json as _json

    from tests.fakes.fixtures import TIERS

    server.plan = every_other(["429", "500"])
    cfg = binance_config(tmp_path, server, apiKey="test-key", secret="test-secret")
    r = run(["binanceusdm", "BTC/USDT:USDT", "--datasets", "tiers", "--since", SINCE, "--until", UNTIL], cfg, tmp_path / "st")
    assert r.exit_code == 0, r.output
    got = Store(tmp_path / "st").read_tiers("binanceusdm", "BTC/USDT:USDT")
    real = _json.loads(TIERS.read_text())["BTC/USDT:USDT"]
    assert len(got) == len(real) == 12
    for g, w in zip(got, real):
        assert (g["minNotional"], g["maxNotional"], g["maintenanceMarginRate"], g["maxLeverage"]) == (
            w["minNotional"], w["maxNotional"], w["maintenanceMarginRate"], w["maxLeverage"])
        assert float(g["info"]["cum"]) == float(w["info"]["cum"])
    assert any("signature" in q for p, q, f in server.log if p.endswith("leverageBracket"))


# ---- SIGKILL mid-download ----------------------------------------------------------------
def test_sigkill_mid_download_resumes_without_loss_or_duplicates(tmp_path, server):
    server.delay = 0.15  # slow pages so the kill lands mid-run
    cfg = binance_config(tmp_path, server, page_limits={"ohlcv": 10})
    st = tmp_path / "st"
    env = {**os.environ, "PYTHONPATH": str(REPO), "BACKTEST_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "backtest.cli", "download", *OHLCV_ARGS, "--store", str(st), "--ccxt-config", str(cfg)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len([1 for p, q, f in server.log if p.endswith("/klines")]) >= 6:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = stored(st)
    assert 0 < partial.height < 262 and partial["ts"].is_unique().all()
    first = [int(q["startTime"]) for p, q, f in server.log if p.endswith("/klines")]
    server.log.clear()
    server.delay = 0
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    second = [int(q["startTime"]) for p, q, f in server.log if p.endswith("/klines")]
    # the rerun starts where the stored rows end (maybe re-asking the page in flight at the kill)
    assert second[0] == int(partial["ts"].cast(pl.Int64).max()) + 60_000
    assert len(first) + len(second) <= 27 + 2
    check_real_1m(stored(st))
    assert Store(st).verify() == []


# ---- Bybit v5 and OKX v5 end to end --------------------------------------------------------
def venue_config(tmp_path, srv, venue, **extra) -> Path:
    urls = {
        "bybit": {"api": {k: srv.url for k in ("spot", "futures", "v2", "public", "private")}},
        "okx": {"api": {"rest": srv.url}},
    }[venue]
    path = tmp_path / f"{venue}.json"
    path.write_text(json.dumps({"urls": urls, "timeout": 250, "rateLimit": 5, "retry": dict(FAST_RETRY), **extra}))
    return path


VENUE_FAULTS = ["429", "418", "500", "502", "503", "504", "timeout", "cut", "truncated"]


@pytest.mark.parametrize("venue", ["bybit", "okx"])
def test_other_venues_end_to_end_with_faults(tmp_path, server, venue):
    server.plan = every_other(VENUE_FAULTS)
    cfg = venue_config(tmp_path, server, venue, page_limits={"ohlcv": 30})
    st = tmp_path / "st"
    r = run([venue, "BTC/USDT:USDT", "--datasets", "ohlcv,open_interest,long_short_ratio,tiers", "--timeframe", "1m",
             "--since", SINCE, "--until", UNTIL], cfg, st)
    assert r.exit_code == 0, r.output
    df = stored(st, exchange=venue)
    check_real_1m(df)  # OKX sends volume in contracts of 0.01 BTC: stored in base units like the rest
    oi = stored(st, "open_interest", "5m", exchange=venue)
    ls = stored(st, "long_short_ratio", "5m", exchange=venue)
    assert oi.height == ls.height == 52 and oi["ts"].is_unique().all()
    want = [float(x["sumOpenInterest"]) for x in all_data()[("binance", "openInterestHist:5m", "BTCUSDT")]]
    assert oi["open_interest"].to_list() == pytest.approx(want)  # base units on both venues
    tiers = Store(st).read_tiers(venue, "BTC/USDT:USDT")
    assert tiers and tiers[0]["maintenanceMarginRate"] > 0
    assert {f for _, _, f in server.log if f} >= {"429", "500", "timeout", "cut", "truncated"}

    r = run([venue, "BTC/USDT:USDT", "--datasets", "mark,index,funding", "--timeframe", "1h",
             "--since", "2025-10-01", "--until", "2025-10-20"], cfg, st)
    assert r.exit_code == 0, r.output
    mk = stored(st, "mark", "1h", exchange=venue)
    assert mk.height == 456 and abs(mk["low"].min() - 101877.69) < 1e-3
    fu = stored(st, "funding", "event", exchange=venue)
    real = [f for f in funding() if to_ms("2025-10-01") <= f["fundingTime"] < to_ms("2025-10-20")]
    assert fu["funding_rate"].to_list() == [float(f["fundingRate"]) for f in real]

    server.log.clear()
    server.plan = lambda n, p: None
    r = run([venue, "BTC/USDT:USDT", "--datasets", "ohlcv,mark,index,funding", "--timeframe", "1m",
             "--since", SINCE, "--until", UNTIL], cfg, st)
    assert r.exit_code == 0
    # ohlcv is all there; 1m mark/index/funding for that window are asked for once each
    assert not [p for p, q, f in server.data_requests() if "candles" in p and "mark" not in p and "index" not in p]
    assert not [p for p, q, f in server.data_requests() if p.endswith("/kline")]


# ---- small pieces ----------------------------------------------------------------------------
def test_missing_ranges_and_retry_settings(monkeypatch):
    from backtest.sources.ccxt_source import missing_bar_ranges, missing_event_ranges
    from backtest.sources.retry import RetryPolicy, parse_retry_after

    assert missing_bar_ranges([0, 60_000, 180_000], 0, 300_000, 60_000) == [(120_000, 180_000), (240_000, 300_000)]
    assert missing_bar_ranges([], 0, 120_000, 60_000) == [(0, 120_000)]
    h = 3_600_000
    assert missing_event_ranges([], 0, 10 * h) == [(0, 10 * h)]
    assert missing_event_ranges([8 * h, 16 * h, 24 * h, 48 * h], 0, 50 * h) == [(0, 8 * h), (24 * h + 1, 48 * h)]
    assert parse_retry_after("3") == 3.0 and parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") < 1
    monkeypatch.setenv("BACKTEST_RETRY_BASE", "0.5")
    monkeypatch.setenv("BACKTEST_RETRY_MAX", "4")
    p = RetryPolicy.from_settings({"cap": 2})
    assert (p.base, p.max_retries, p.cap) == (0.5, 4, 2.0)
    assert all(p.delay(n, None) <= 2.0 for n in range(1, 10))


def test_bad_config_and_arguments(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json = [")
    r = run(OHLCV_ARGS, bad, tmp_path / "st")
    assert r.exit_code == 2 and "neither JSON nor TOML" in r.output
    good = tmp_path / "ok.json"
    good.write_text("{}")
    r = run(["binanceusdm", "BTC/USDT:USDT", "--datasets", "ohlcv,trades", "--since", SINCE], good, tmp_path / "st")
    assert r.exit_code == 2 and "unknown dataset" in r.output
    r = run(["binanceusdm", "BTC/USDT:USDT", "--since", UNTIL, "--until", SINCE], good, tmp_path / "st")
    assert r.exit_code == 2 and "must be after" in r.output
    r = run(["binanceusdm", "BTC/USDT:USDT", "--since", "2025-10-10T19:38:00"], good, tmp_path / "st")
    assert r.exit_code == 2 and "no zone" in r.output


def test_fault_classification():
    import ccxt

    from backtest.sources.ccxt_source import classify
    from backtest.sources.retry import TemporaryFault

    temporary = [ccxt.DDoSProtection("418"), ccxt.RateLimitExceeded("429"), ccxt.OperationFailed("-1001"),
                 ccxt.ExchangeNotAvailable("503"), ccxt.RequestTimeout("t"), ccxt.NetworkError("reset"),
                 ccxt.OnMaintenance("m"), TemporaryFault("cut"),
                 ccxt.ExchangeError("bybit {\"retCode\":10016,\"retMsg\":\"System error. Please try again later.\"}")]
    permanent = [ccxt.BadSymbol("x"), ccxt.NotSupported("x"), ccxt.AuthenticationError("x"), ccxt.PermissionDenied("x"),
                 ccxt.BadRequest("x"), ccxt.ArgumentsRequired("x"), ccxt.ExchangeError("unknown thing")]
    assert [classify(e) for e in temporary] == ["temporary"] * len(temporary)
    assert [classify(e) for e in permanent] == ["permanent"] * len(permanent)
    assert classify(KeyError("bug")) == "raise"


# ---- review findings: timeframes the exchange lacks, nonsense retry settings ----------------
def test_timeframe_not_offered_by_the_exchange_is_refused_before_any_request(tmp_path, server):
    cfg = binance_config(tmp_path, server)
    args = ["binanceusdm", "BTC/USDT:USDT", "--datasets", "ohlcv,mark", "--timeframe", "7m", "--since", SINCE, "--until", UNTIL]
    r = run(args, cfg, tmp_path / "st")
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in r.output
    assert "no '7m' timeframe" in err and "1m, 3m, 5m, 15m" in err and "--timeframe" in err
    assert server.log == [] and not list((tmp_path / "st").rglob("*.parquet"))
    # funding has no timeframe: any --timeframe is fine there
    r = run(["binanceusdm", "BTC/USDT:USDT", "--datasets", "funding", "--timeframe", "7m", "--since", SINCE, "--until", UNTIL], cfg, tmp_path / "st")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("retry,needle", [
    ({"max_retries": -1}, "retry.max_retries in --ccxt-config is -1"),
    ({"max_retries": 2.5}, "whole number from 0 to 1000"),
    ({"max_retries": "many"}, "retry.max_retries"),
    ({"max_retries": True}, "retry.max_retries"),
    ({"base": 0}, "retry.base"),
    ({"base": -1}, "retry.base"),
    ({"cap": 60000}, "up to 3600"),
    ({"retry_after_cap": -5}, "retry.retry_after_cap"),
    ({"max_retry": 3}, "unknown retry setting(s) max_retry"),
])
def test_nonsense_retry_settings_are_refused(tmp_path, server, retry, needle):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"retry": retry}))
    r = run(OHLCV_ARGS, cfg, tmp_path / "st")
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in r.output, err
    assert server.log == []


def test_nonsense_retry_environment_and_page_limits_are_refused(tmp_path, server, monkeypatch):
    from backtest.errors import UserError
    from backtest.sources.retry import RetryPolicy

    monkeypatch.setenv("BACKTEST_RETRY_MAX", "-3")
    with pytest.raises(UserError, match=r"\$BACKTEST_RETRY_MAX is '-3'"):
        RetryPolicy.from_settings({})
    assert RetryPolicy.from_settings({"max_retries": 0}).max_retries == 0  # the config wins; 0 = no retries
    monkeypatch.delenv("BACKTEST_RETRY_MAX")
    for limits, needle in [({"ohlcv": True}, "positive integers"), ({"ohlcv": 0}, "positive integers"), ({"klines": 10}, "unknown dataset(s) klines")]:
        cfg = binance_config(tmp_path, server, page_limits=limits)
        r = run(OHLCV_ARGS, cfg, tmp_path / "st")
        assert r.exit_code == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.output
    assert server.log == []
