"""Events over several venues (issue 14 points 4-5): loading and validating ``venues``, per-venue
populations and results, proxy paths labelled as proxies, calibration targets by venue scope,
and Hyperliquid's download through a local fake server (faults included)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from backtest.cli import app
from backtest.errors import EventError
from backtest.event_file import read_event_file
from backtest.events import get_event, leg_key, proxy_symbol
from backtest.results import FRAME_SCHEMAS

BASE = """
[[events]]
id = "mv"
exchange = "binanceusdm"
symbols = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
window = ["2025-10-10T20:00:00Z", "2025-10-11T00:00:00Z"]
"""
SMALL = {"n_positions": 3000, "seed": 2}


@pytest.fixture(autouse=True)
def _clean(monkeypatch, tmp_path):
    monkeypatch.delenv("BACKTEST_EVENTS", raising=False)
    monkeypatch.chdir(tmp_path)


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "ev.toml"
    p.write_text(text)
    return p


def run(*args):
    r = CliRunner().invoke(app, list(args))
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r


# ---- loading and validation -----------------------------------------------------------------
def test_venues_load_into_legs_and_venue_views(tmp_path):
    p = write(tmp_path, BASE + 'venues = [{ exchange = "bybit", symbols = ["BTC/USDT:USDT"] }, '
                               '{ exchange = "okx" }, { exchange = "hyperliquid", symbols = ["BTC/USDC:USDC"], path_proxy = "binanceusdm" }]\n')
    (ev,) = read_event_file(p)
    assert ev.exchanges == ("binanceusdm", "bybit", "okx", "hyperliquid")
    assert ev.venues[1].symbols == ev.symbols  # symbols default to the event's
    legs = ev.legs()
    assert [x.key for x in legs] == ["BTC/USDT:USDT", "ETH/USDT:USDT", "BTC/USDT:USDT@bybit", "BTC/USDT:USDT@okx",
                                     "ETH/USDT:USDT@okx", "BTC/USDC:USDC@hyperliquid"]
    hl = legs[-1]
    assert hl.proxy and (hl.path_exchange, hl.path_symbol) == ("binanceusdm", "BTC/USDT:USDT")
    assert [x.key for x in ev.legs(["ETH/USDT:USDT@okx", "ETH/USDT:USDT"])] == ["ETH/USDT:USDT", "ETH/USDT:USDT@okx"]
    by = ev.venue_event("bybit")
    assert (by.exchange, by.symbols, by.venues, by.primary_exchange, by.path_exchange) == ("bybit", ("BTC/USDT:USDT",), (), "binanceusdm", "")
    hv = ev.venue_event("hyperliquid")
    assert hv.path_exchange == "binanceusdm" and hv.path_symbol("BTC/USDC:USDC") == "BTC/USDT:USDT"
    with pytest.raises(EventError, match="not a venue of event mv"):
        ev.venue_event("gate")
    assert "venue:     hyperliquid: BTC/USDC:USDC (bars: binanceusdm's, a proxy)" in ev.describe()
    assert leg_key("bybit", "BTC/USDT:USDT", "binanceusdm") == "BTC/USDT:USDT@bybit"
    assert proxy_symbol("SOL/USDC:USDC", ("BTC/USDT:USDT",)) == "SOL/USDC:USDC"  # no coin to stand in: itself


@pytest.mark.parametrize("venues, needles", [
    ("5", ["venues must be a list of tables"]),
    ("[5]", ["venues entry 1 must be a table"]),
    ('[{ symbols = ["BTC/USDT:USDT"] }]', ["venues entry 1 has no exchange"]),
    ('[{ exchange = "bybit", leverage = 5 }]', ["venues entry 1: unknown key 'leverage'"]),
    ('[{ exchange = "bybitt" }]', ["venues entry 1: exchange 'bybitt' is not a ccxt exchange id"]),
    ('[{ exchange = "binanceusdm" }]', ["exchange binanceusdm is already a venue"]),
    ('[{ exchange = "bybit" }, { exchange = "bybit" }]', ["venues entry 2", "already a venue"]),
    ('[{ exchange = "bybit", symbols = ["BTCUSDT"] }]', ["venues entry 1: symbol 'BTCUSDT' is not a ccxt symbol"]),
    ('[{ exchange = "bybit", symbols = [] }]', ["venues entry 1: symbols must be a non-empty list"]),
    ('[{ exchange = "hyperliquid", path_proxy = "hyperliquid" }]', ["path_proxy must be another exchange"]),
])
def test_bad_venues_are_one_line_errors(tmp_path, venues, needles):
    p = write(tmp_path, BASE + f"venues = {venues}\n")
    with pytest.raises(EventError) as e:
        read_event_file(p)
    msg = str(e.value)
    assert "\n" not in msg and "event mv: venues:" in msg
    for n in needles:
        assert n in msg, (n, msg)


def test_events_add_takes_repeated_exchanges(tmp_path):
    f = tmp_path / "mine.toml"
    r = run("events", "add", "x", "--events", str(f), "--exchange", "binanceusdm", "--exchange", "bybit=BTC/USDT:USDT",
            "--exchange", "hyperliquid=BTC/USDC:USDC", "--path-proxy", "hyperliquid=binanceusdm",
            "--symbols", "BTC/USDT:USDT,ETH/USDT:USDT", "--window", "2025-10-10T20:00Z/2025-10-11T00:00Z")
    assert r.exit_code == 0, r.output
    (ev,) = read_event_file(f)
    assert ev.exchanges == ("binanceusdm", "bybit", "hyperliquid")
    assert ev.venues[0].symbols == ("BTC/USDT:USDT",) and ev.venues[1].path_proxy == "binanceusdm"
    r = run("events", "add", "y", "--events", str(f), "--exchange", "bybit", "--path-proxy", "bybit=okx",
            "--symbols", "BTC/USDT:USDT", "--window", "2025-10-10T20:00Z/2025-10-11T00:00Z")
    assert r.exit_code == 2 and "not a further --exchange" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_the_catalogue_event_spans_binance_bybit_and_okx():
    ev = get_event("2025-10-10")
    assert ev.exchanges == ("binanceusdm", "bybit", "okx")
    assert ev.venues[0].symbols[:3] == ("BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT") and len(ev.venues[0].symbols) == 8
    assert ev.venue_event("bybit").open_interest_input("BTC/USDT:USDT", "bybit")["value_usd"] == 10.13e9
    # a Binance input does not leak into another venue's view
    assert ev.venue_event("okx").open_interest_input("BTC/USDT:USDT", "okx") is None
    assert {f["scope"] for f in ev.figures if f.get("metric") == "liquidated_notional_usd"} >= {"binanceusdm", "bybit", "okx"}


# ---- per-venue simulation and results ---------------------------------------------------------
@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    from backtest.simulate import run_event

    d = tmp_path_factory.mktemp("mv")
    p = d / "ev.toml"
    p.write_text(BASE + 'venues = [{ exchange = "bybit" }, { exchange = "okx", symbols = ["BTC/USDT:USDT"] }, '
                        '{ exchange = "hyperliquid", symbols = ["BTC/USDC:USDC"], path_proxy = "binanceusdm" }]\n'
                        + '[[events.pre_event_inputs]]\nwhat = "Binance BTC OI"\nvalue_usd = 16.44e9\nsource = "test"\n'
                          'symbol = "BTC/USDT:USDT"\nexchange = "binanceusdm"\n')
    (ev,) = read_event_file(p)
    return ev, run_event(ev, mode="cascade", overrides=SMALL)


def test_per_venue_results_add_up_to_the_totals(multi):
    ev, res = multi
    s = res.summary
    assert list(s.venues) == ["binanceusdm", "bybit", "okx", "hyperliquid"]
    for k in ("liquidated_notional_usd", "long_liquidated_usd", "short_liquidated_usd", "adl_notional_usd", "open_notional_usd",
              "stopped_notional_usd", "insurance_fund_min_usd"):
        assert sum(v[k] for v in s.venues.values()) == pytest.approx(s[k], rel=1e-12), k
    assert s.positions == sum(v.positions for v in s.venues.values())
    assert max(v.peak_minute_notional_usd for v in s.venues.values()) <= s.peak_minute_notional_usd + 1e-6
    assert [v.margin_rule for v in s.venues.values()] == ["binance", "bybit", "okx", "hyperliquid"]
    assert s.symbols == ["BTC/USDT:USDT", "ETH/USDT:USDT", "BTC/USDT:USDT@bybit", "ETH/USDT:USDT@bybit", "BTC/USDT:USDT@okx",
                         "BTC/USDC:USDC@hyperliquid"]
    assert s.per_symbol["BTC/USDT:USDT@bybit"].exchange == "bybit"
    # each venue's own bars: Bybit's BTC path is not Binance's
    b = res.bars
    btc = {ex: b.filter((pl.col("symbol") == "BTC/USDT:USDT") & (pl.col("exchange") == ex))["low"].min() for ex in ("binanceusdm", "bybit")}
    assert btc["binanceusdm"] != btc["bybit"]
    # the venue's own funding (Bybit's stored 8-hourly rates), its own fund (scaled by open notional)
    assert s.venues["bybit"].insurance_fund_start_usd == pytest.approx(
        s.params["insurance_fund_usd"] * s.venues["bybit"].open_notional_usd / s.venues["binanceusdm"].open_notional_usd)
    assert any("insurance fund of each venue other than binanceusdm" in n for n in s.notes)
    # a published figure scoped to one exchange sits beside that venue's result
    d = json.loads(s.json_text())
    assert d["venues"]["okx"]["symbols"] == ["BTC/USDT:USDT"]


def test_frames_carry_the_exchange(multi):
    _, res = multi
    for name, schema in FRAME_SCHEMAS.items():
        df = getattr(res, name)
        assert "exchange" in schema and df.schema["exchange"] == pl.String, name
        assert list(df.columns) == list(schema), name
    assert set(res.liquidations["exchange"].unique()) <= {"binanceusdm", "bybit", "okx", "hyperliquid"}
    assert set(res.bars["exchange"].unique()) == {"binanceusdm", "bybit", "okx", "hyperliquid"}


def test_proxy_paths_are_labelled_everywhere(multi, tmp_path):
    _, res = multi
    s = res.summary
    assert s.venues["hyperliquid"].path_proxy == "binanceusdm"
    assert all(v.path_proxy is None for ex, v in s.venues.items() if ex != "hyperliquid")
    hl = res.bars.filter(pl.col("exchange") == "hyperliquid")
    assert hl.height and set(hl["path_exchange"]) == {"binanceusdm"} and set(hl["symbol"]) == {"BTC/USDC:USDC"}
    assert set(res.bars.filter(pl.col("exchange") != "hyperliquid").select(pl.col("path_exchange") == pl.col("exchange"))
               .to_series()) == {True}
    assert s.per_symbol["BTC/USDC:USDC@hyperliquid"].path_exchange == "binanceusdm"
    assert any("PROXY" in n and "hyperliquid" in n for n in s.notes)
    src = s.per_symbol["BTC/USDC:USDC@hyperliquid"].open_interest_source
    assert src.startswith("estimate: binanceusdm BTC/USDT:USDT level") and "assumption: no published hyperliquid open interest" in src
    from backtest.report.figures import venue_rows

    ev, _ = multi
    rows = {r[0]: r for r in venue_rows(ev, s, s)}
    assert rows["hyperliquid"][3] == "PROXY: binanceusdm's bars" and rows["bybit"][3] == "own bars"
    res.write(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["venues"]["hyperliquid"]["path_proxy"] == "binanceusdm"


def test_a_single_venue_run_has_one_venue_equal_to_its_total():
    from backtest.simulate import run_event

    res = run_event("2025-10-10", mode="replay", overrides=SMALL, symbols=["BTC/USDT:USDT", "BTC/USDT:USDT@okx"], store=None)
    s = res.summary
    # a bare symbol is the primary venue's, SYMBOL@EXCHANGE a further venue's
    assert list(s.venues) == ["binanceusdm", "okx"] and s.symbols == ["BTC/USDT:USDT", "BTC/USDT:USDT@okx"]
    from backtest.errors import SimError

    with pytest.raises(SimError, match="SYMBOL@EXCHANGE"):
        run_event("2025-10-10", mode="replay", overrides=SMALL, symbols=["BTC/USDT:USDT@gate"])
    from backtest.event_file import build_event, event_table

    ev = build_event(event_table("one", exchange="binanceusdm", symbols=["BTC/USDT:USDT"], window="2025-10-10T20:00Z/2025-10-11T00:00Z"))
    one_res = run_event(ev, mode="replay", overrides=SMALL)
    one = one_res.summary
    (v,) = one.venues.values()
    for k in ("liquidated_notional_usd", "long_share", "adl_notional_usd", "insurance_fund_min_usd", "peak_minute", "peak_minute_notional_usd"):
        assert v[k] == one[k], k
    assert not any(n.startswith("venues:") for n in one.notes)
    assert set(one_res.bars["exchange"]) == {"binanceusdm"} and set(one_res.bars["path_exchange"]) == {"binanceusdm"}


# ---- calibration targets by scope -------------------------------------------------------------
def test_targets_by_venue_scope(multi):
    from backtest.calibration.figures import Figure
    from backtest.calibration.targets import simulated_value, usable

    ev, res = multi
    s = res.summary
    by = Figure(id="t/bybit", event="mv", what="Bybit", kind="lower_bound", metric="liquidated_notional_usd", venues=("bybit",),
                symbols=("BTC/USDT:USDT", "ETH/USDT:USDT"), target=1e9)
    assert simulated_value(s, by) == s.venues["bybit"].liquidated_notional_usd
    one = Figure(id="t/bybit-btc", event="mv", what="Bybit BTC", kind="lower_bound", metric="liquidated_notional_usd", venues=("bybit",),
                 symbols=("BTC/USDT:USDT",), target=1e9)
    # a venue's symbol: its per-symbol entry (keyed SYMBOL@EXCHANGE) carries the liquidated notional
    assert simulated_value(s, one) == s.per_symbol["BTC/USDT:USDT@bybit"].liquidated_notional_usd
    share = Figure(id="t/bybit-btc-share", event="mv", what="Bybit BTC long share", kind="interval", metric="long_share", venues=("bybit",),
                   symbols=("BTC/USDT:USDT",), low=0.5, high=1)
    with pytest.raises(KeyError):  # per-symbol entries carry no long share: the summary cannot answer it
        simulated_value(s, share)
    okx_share = Figure(id="t/okx", event="mv", what="OKX long share", kind="interval", metric="long_share", venues=("okx",), low=0.5, high=1)
    assert simulated_value(s, okx_share) == s.venues["okx"].long_share
    binance = Figure(id="t/b", event="mv", what="Binance", kind="lower_bound", metric="liquidated_notional_usd", venues=("binanceusdm",),
                     symbols=("BTC/USDT:USDT", "ETH/USDT:USDT"), target=1e9)
    assert simulated_value(s, binance) == s.venues["binanceusdm"].liquidated_notional_usd != s.liquidated_notional_usd
    market = Figure(id="t/all", event="mv", what="all", kind="interval", metric="long_share", venues=("all",),
                    symbols=("BTC/USDT:USDT", "ETH/USDT:USDT"), low=0.8, high=0.95)
    assert simulated_value(s, market) == s.long_share
    fund = Figure(id="t/f", event="mv", what="fund", kind="lower_bound", metric="insurance_fund_used_usd", venues=("bybit",), target=1.0)
    v = s.venues["bybit"]
    assert simulated_value(s, fund) == pytest.approx(v.insurance_fund_start_usd - v.insurance_fund_min_usd)
    syms = [leg.key for leg in ev.legs()]
    assert usable(by, ev, syms) is None and usable(market, ev, syms) is None
    gate = Figure(id="t/g", event="mv", what="Gate", kind="lower_bound", metric="liquidated_notional_usd", venues=("gate",), target=1.0)
    assert "not simulated" in usable(gate, ev, syms)
    sol = Figure(id="t/s", event="mv", what="OKX ETH", kind="lower_bound", metric="liquidated_notional_usd", venues=("okx",),
                 symbols=("ETH/USDT:USDT",), target=1.0)
    assert "ETH/USDT:USDT is not simulated" in usable(sol, ev, syms)  # OKX has BTC only


# ---- Hyperliquid download through the local fake server ---------------------------------------
def test_hyperliquid_download_end_to_end_with_faults(tmp_path):
    from backtest.store import Store, to_ms
    from tests.fakes.exchange_server import FakeExchangeServer, every_other
    from tests.fakes.fixtures import all_data, hyperliquid_funding_hourly, klines_1m

    with FakeExchangeServer(all_data()) as srv:
        srv.plan = every_other(["429", "500", "502", "503", "504", "timeout", "cut", "truncated"])
        cfg = tmp_path / "hl.json"
        cfg.write_text(json.dumps({"urls": {"api": {"public": srv.url, "private": srv.url}}, "timeout": 250, "rateLimit": 5,
                                   "retry": {"base": 0.001, "cap": 0.01, "retry_after_cap": 0.02}, "page_limits": {"ohlcv": 60}}))
        st = tmp_path / "st"
        args = ["download", "hyperliquid", "BTC/USDC:USDC", "--datasets", "ohlcv,funding", "--timeframe", "1m",
                "--since", "2025-10-10T19:38:00Z", "--until", "2025-10-11T00:00:00Z", "--store", str(st), "--ccxt-config", str(cfg)]
        r = run(*args)
        assert r.exit_code == 0, r.output
        faults = {f for _, _, f in srv.log if f}
        assert faults >= {"429", "500", "timeout", "cut", "truncated"}
        kinds = [q.get("type") for p, q, f in srv.log if p == "/info"]
        assert "candleSnapshot" in kinds and "fundingHistory" in kinds
        got = Store(st).scan("ohlcv", exchange="hyperliquid", symbol="BTC/USDC:USDC", timeframe="1m").collect().sort("ts")
        real = klines_1m()
        assert got.height == len(real) == 262 and got["ts"].is_unique().all()
        assert got["low"].to_list() == [float(x[3]) for x in real]
        fu = Store(st).scan("funding", exchange="hyperliquid", symbol="BTC/USDC:USDC", timeframe="event").collect().sort("ts")
        want = [f for f in hyperliquid_funding_hourly() if to_ms("2025-10-10T19:38:00Z") <= f["time"] < to_ms("2025-10-11T00:00:00Z")]
        assert fu.height == len(want) == 4  # hourly: Hyperliquid's schedule
        assert fu["funding_rate"].to_list() == pytest.approx([float(f["fundingRate"]) for f in want])
        # a rerun asks for nothing already stored
        srv.log.clear()
        srv.plan = lambda n, p: None
        assert run(*args).exit_code == 0
        assert not [q for p, q, f in srv.log if q.get("type") in ("candleSnapshot",)]


def test_fetch_one_venue_of_a_multi_venue_event(tmp_path):
    """``backtest fetch EVENT --venue bybit`` fetches the Bybit view of the event (its symbols,
    its tiers) through the local fake Bybit; an exchange the event does not span is one line."""
    from backtest.store import Store
    from tests.fakes.exchange_server import FakeExchangeServer, every_other
    from tests.fakes.fixtures import all_data
    from tests.test_download import venue_config

    ev = write(tmp_path, BASE.replace('["BTC/USDT:USDT", "ETH/USDT:USDT"]', '["BTC/USDT:USDT"]')
               + 'lookback = ["2025-10-07T20:00:00Z", "2025-10-10T20:00:00Z"]\nvenues = [{ exchange = "bybit" }]\n')
    with FakeExchangeServer(all_data()) as srv:
        srv.plan = every_other(["429", "500", "cut"])
        cfg = venue_config(tmp_path, srv, "bybit")
        st = tmp_path / "st"
        r = run("fetch", "mv", "--venue", "bybit", "--events", str(ev), "--store", str(st), "--ccxt-config", str(cfg), "--json")
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
        assert out["exchange"] == "bybit"
        assert Store(st).read_tiers("bybit", "BTC/USDT:USDT")[0]["maintenanceMarginRate"] > 0
        assert Store(st).scan("ohlcv", exchange="bybit", symbol="BTC/USDT:USDT", timeframe="1m").collect().height == 240
    r = run("fetch", "mv", "--venue", "gate", "--events", str(ev), "--store", str(tmp_path / "st2"))
    assert r.exit_code == 2 and "not a venue of event mv" in r.stderr and len(r.stderr.strip().splitlines()) == 1
