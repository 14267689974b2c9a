"""``backtest fetch``: everything an event needs, against the local fake exchange and archive (no network)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from backtest.cli import app
from backtest.store import Store, to_ms
from tests.fakes.archive_server import ArchiveServer, build_archive
from tests.fakes.exchange_server import FakeExchangeServer, every_other
from tests.fakes.fixtures import KLINES_1M, all_data
from tests.test_download import ALL_FAULTS, binance_config, venue_config

pytestmark = pytest.mark.skipif(not KLINES_1M.exists(), reason="needs /work/shared/data")

WINDOW = "2025-10-10T20:00:00Z/2025-10-11T00:00:00Z"
ADHOC = ["fetch", "oct10-btc", "--window", WINDOW, "--exchange", "binanceusdm", "--symbol", "BTC/USDT:USDT", "--lookback", "3"]


@pytest.fixture(autouse=True)
def _no_user_events(monkeypatch, tmp_path):
    monkeypatch.delenv("BACKTEST_EVENTS", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./events.toml of the developer's is read


@pytest.fixture
def servers():
    with FakeExchangeServer(all_data()) as ex, ArchiveServer(dict(build_archive())) as ar:
        yield ex, ar


def run(args):
    r = CliRunner().invoke(app, args)
    if r.exception and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r


def items(r) -> dict[tuple[str, str], dict]:
    data = json.loads(r.stdout)
    return {(i["item"], i["symbol"]): i for i in data["items"]}


def test_fetch_everything_with_faults_then_rerun_asks_nothing(tmp_path, servers):
    ex, ar = servers
    ex.plan = every_other(ALL_FAULTS)
    ar.plan = lambda n, p: ("500", "cut")[n % 2] if n % 3 == 0 else None  # an archive zip and its CHECKSUM are one attempt
    cfg = binance_config(tmp_path, ex, apiKey="k", secret="s", archive_base_url=ar.url)
    st = tmp_path / "st"
    r = run([*ADHOC, "--store", str(st), "--ccxt-config", str(cfg), "--json"])
    assert r.exit_code == 0, r.output
    got = items(r)
    assert got[("last bars, window", "BTC/USDT:USDT")]["status"] == "complete"
    assert got[("last bars, window", "BTC/USDT:USDT")]["rows"] == 240 and got[("last bars, window", "BTC/USDT:USDT")]["timeframe"] == "1m"
    assert got[("last bars, lookback", "BTC/USDT:USDT")]["rows"] == 76  # 3 days + 4 h of 1h bars
    assert got[("mark bars, lookback", "BTC/USDT:USDT")]["status"] == "complete"
    assert got[("funding", "BTC/USDT:USDT")]["rows"] == 9  # 8-hourly: 10-08 00:00 .. 10-10 16:00
    assert got[("leverage tiers", "all")]["status"] == "complete"
    # open interest: older than Binance's API keeps, so from the archive's metrics (only 10-10 is published)
    oi = got[("open interest (optional)", "BTC/USDT:USDT")]
    assert oi["source"] == "binance-archive" and oi["status"] == "partial" and oi["rows"] > 40
    assert "API keeps about" in oi["why"] and "not published" in oi["why"]
    assert got[("mark bars, window (optional)", "BTC/USDT:USDT")]["status"] == "missing"  # the fake has no 1m mark bars
    assert got[("order-book depth (optional)", "all")]["why"] == "not available: no depth dataset in the store yet"
    s = Store(st)
    assert s.read("ohlcv", exchange="binanceusdm", symbol="BTC/USDT:USDT", timeframe="1m")["low"].min() == 101516.5
    assert len(s.read_tiers("binanceusdm", "BTC/USDT:USDT")) == 12
    assert s.verify() == []
    assert {f for _, _, f in ex.log if f} >= {"429", "500", "cut"}
    # a second run has everything: no data request to the exchange, the tiers are not asked again
    ex.log.clear()
    ex.plan = lambda n, p: None
    r2 = run([*ADHOC, "--store", str(st), "--ccxt-config", str(cfg), "--json"])
    assert r2.exit_code == 0, r2.output
    asked = [(p, q.get("interval")) for p, q, f in ex.data_requests() if "lines" in p or "fundingRate" in p or "leverageBracket" in p]
    assert set(asked) == {("/fapi/v1/markPriceKlines", "1m")}  # only what the source never had is asked again
    assert items(r2)[("leverage tiers", "all")]["why"] == "already stored for every symbol"


def test_fetch_without_keys_names_the_missing_tiers_and_exits_1(tmp_path, servers):
    ex, ar = servers
    cfg = binance_config(tmp_path, ex, archive_base_url=ar.url)
    r = run([*ADHOC, "--store", str(tmp_path / "st"), "--ccxt-config", str(cfg)])
    assert r.exit_code == 1
    assert "leverage tiers" in r.stderr and "API keys" in r.stderr and "import-tiers" in r.stderr
    assert "last bars, window" in r.stdout and "complete" in r.stdout  # the table names what was stored


def test_fetch_retries_spent_on_required_bars_exits_1_and_keeps_the_rest(tmp_path, servers):
    ex, ar = servers
    ex.plan = lambda n, p: "503" if p.endswith("/klines") else None
    cfg = binance_config(tmp_path, ex, apiKey="k", secret="s", archive_base_url=ar.url, retry={"max_retries": 2, "base": 0.001, "cap": 0.01})
    r = run([*ADHOC, "--store", str(tmp_path / "st"), "--ccxt-config", str(cfg), "--json"])
    assert r.exit_code == 1
    got = items(r)
    assert got[("last bars, window", "BTC/USDT:USDT")]["status"] == "missing"
    assert "retries spent" in got[("last bars, window", "BTC/USDT:USDT")]["why"]
    assert got[("funding", "BTC/USDT:USDT")]["status"] == "complete"  # the others were still fetched
    assert "required item(s) missing" in r.stderr


def test_fetch_recent_open_interest_from_the_api(tmp_path, servers, monkeypatch):
    """Where the API still serves the span, open interest comes from it, not the archive."""
    import backtest.sources.fetch as F

    monkeypatch.setattr(F, "BINANCE_STATS_DAYS", 10**6)
    ex, ar = servers
    cfg = binance_config(tmp_path, ex, apiKey="k", secret="s", archive_base_url=ar.url)
    r = run([*ADHOC, "--store", str(tmp_path / "st"), "--ccxt-config", str(cfg), "--json"])
    oi = items(r)[("open interest (optional)", "BTC/USDT:USDT")]
    assert oi["source"] == "ccxt" and oi["rows"] == 52  # the archive, asked for the rest, had nothing more
    assert [q["period"] for p, q, f in ex.log if p.endswith("openInterestHist")] and all(
        q["period"] == "5m" for p, q, f in ex.log if p.endswith("openInterestHist"))


def test_fetch_a_user_event_then_replay_it(tmp_path, servers):
    """The done-when path: events add, fetch (fake servers), replay of an event not in the catalogue."""
    ex, ar = servers
    cfg = binance_config(tmp_path, ex, apiKey="k", secret="s", archive_base_url=ar.url)
    st = tmp_path / "st"
    r = run(["events", "add", "oct10-btc", "--symbols", "BTC/USDT:USDT", "--window", WINDOW, "--lookback", "3"])
    assert r.exit_code == 0 and (tmp_path / "events.toml").exists()
    r = run(["fetch", "oct10-btc", "--store", str(st), "--ccxt-config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "everything oct10-btc needs" in r.stdout
    # the fake archive publishes open interest for the last lookback day only (too little to weight
    # openings by its increments), so the level is given
    r = run(["replay", "oct10-btc", "--store", str(st), "--out", str(tmp_path / "out"), "--set", "n_positions=4000",
             "--set", "open_interest_usd=8e9"])
    assert r.exit_code == 0, r.output
    summ = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summ["event"] == "oct10-btc" and summ["positions"] > 0
    assert summ["liquidated_notional_usd"] > 0
    bars = pl.read_parquet(tmp_path / "out" / "bars.parquet")
    assert bars.height == 240


def test_fetch_bad_options(tmp_path):
    r = run(["fetch", "nope", "--store", str(tmp_path)])
    assert r.exit_code == 2 and "unknown event 'nope'" in r.stderr
    r = run(["fetch", "x", "--window", "2025-10-11T00:00Z/2025-10-10T00:00Z", "--symbol", "BTC/USDT:USDT"])
    assert r.exit_code == 2 and "swap them" in r.stderr
    r = run(["fetch", "x", "--window", WINDOW, "--exchange", "nosuchex", "--symbol", "BTC/USDT:USDT"])
    assert r.exit_code == 2 and "not a ccxt exchange id" in r.stderr
    assert to_ms("2025-10-10T20:00:00Z") < to_ms("2025-10-11T00:00:00Z")


def test_fetch_on_bybit_tiers_without_keys_and_no_archive(tmp_path, servers):
    """Another venue through the same plan: Bybit's public risk-limit tiers, its API's open interest
    (no archive to fall back on: what it does not serve is named)."""
    ex, _ = servers
    ex.plan = every_other(["429", "500", "cut"])
    cfg = venue_config(tmp_path, ex, "bybit")
    r = run(["fetch", "oct10-bybit", "--window", WINDOW, "--exchange", "bybit", "--symbol", "BTC/USDT:USDT", "--lookback", "3",
             "--store", str(tmp_path / "st"), "--ccxt-config", str(cfg), "--json"])
    assert r.exit_code == 0, r.output
    got = items(r)
    assert got[("last bars, window", "BTC/USDT:USDT")]["rows"] == 240
    assert got[("leverage tiers", "all")]["status"] == "complete"
    assert Store(tmp_path / "st").read_tiers("bybit", "BTC/USDT:USDT")[0]["maintenanceMarginRate"] > 0
    oi = got[("open interest (optional)", "BTC/USDT:USDT")]
    assert oi["source"] == "ccxt" and oi["status"] == "partial" and "no archive for this exchange" in oi["why"]
