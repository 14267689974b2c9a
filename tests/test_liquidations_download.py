"""`backtest download gate ... --datasets liquidations` through ccxt's real gate class against the
local fake server (Gate v4 wire format, faults included); venues without history say so."""

from __future__ import annotations

import json

import polars as pl
import pytest
from backtest.sources.liquidations import position_side, read_feed_notes, to_row
from backtest.store import Store, to_ms
from tests.fakes.exchange_server import FakeExchangeServer, every_other, gate_liq_orders
from tests.test_download import run

SINCE, UNTIL = "2025-10-10T20:00:00Z", "2025-10-10T23:00:00Z"
FAST_RETRY = {"base": 0.001, "cap": 0.01, "retry_after_cap": 0.02}
T0_S = to_ms(SINCE) // 1000


def gate_config(tmp_path, srv, **extra):
    public = {k: srv.url + "/api/v4" for k in ("wallet", "futures", "margin", "delivery", "spot", "options", "sub_accounts", "earn", "unified")}
    cfg = {"urls": {"api": {"public": public}}, "timeout": 500, "rateLimit": 1, "retry": dict(FAST_RETRY), **extra}
    path = tmp_path / "gate.json"
    path.write_text(json.dumps(cfg))
    return path


ARGS = ["gate", "BTC/USDT:USDT", "--datasets", "liquidations", "--since", SINCE, "--until", UNTIL]


def expected(orders) -> pl.DataFrame:
    """What the store must hold for Gate's orders: qty = |size| * 0.0001 BTC, side from the size's sign."""
    return pl.DataFrame({
        "ts": [o["time"] * 1000 for o in orders],
        "side": [1 if o["size"] > 0 else -1 for o in orders],
        "price": [float(o["fill_price"]) for o in orders],
        "qty": [float(f"{abs(o['size'])}e-4") for o in orders],
    }, schema={"ts": pl.Int64, "side": pl.Int8, "price": pl.Float64, "qty": pl.Float64}).sort("ts", "side", "price", "qty")


def stored(store) -> pl.DataFrame:
    df = Store(store).read("liquidations", exchange="gate", symbol="BTC/USDT:USDT", timeframe="event")
    return df.select(pl.col("ts").cast(pl.Int64), "side", "price", "qty", "notional_usd").sort("ts", "side", "price", "qty")


def test_gate_history_with_faults_and_split_pages_then_rerun_doubles_nothing(tmp_path):
    orders = gate_liq_orders(2500, T0_S, 3 * 3600)
    with FakeExchangeServer({("gate", "liq_orders", "BTC_USDT"): orders}) as srv:
        srv.plan = every_other(["429", "500", "502", "timeout", "cut", "truncated"], skip_paths=("/api/v4/spot", "/api/v4/futures/btc"))
        cfg = gate_config(tmp_path, srv, page_limits={"liquidations": 300})  # full pages: windows are split
        r = run(ARGS, cfg, tmp_path / "st")
        assert r.exit_code == 0, r.output
        assert "+2500 rows" in r.output
        got = stored(tmp_path / "st")
        want = expected(orders)
        assert got.height == 2500
        assert got.select("ts", "side", "price", "qty").equals(want)
        assert (got["notional_usd"] - got["price"] * got["qty"]).abs().max() < 1e-6
        assert {f for _, _, f in srv.log if f} >= {"429", "500", "cut", "truncated"}
        liq = [q for p, q, f in srv.log if p.endswith("/liq_orders") and f is None]
        assert all(int(q["from"]) < 10_000_000_000 for q in liq)  # seconds, as Gate wants
        assert max(int(q["to"]) - int(q["from"]) for q in liq) < 3600  # windows of at most an hour
        notes = read_feed_notes(Store(tmp_path / "st"), "gate")
        assert notes["BTC/USDT:USDT"]["source"] == "fetchLiquidations" and notes["BTC/USDT:USDT"]["throttled"] is False

        srv.plan = lambda n, p: None
        r2 = run(ARGS, cfg, tmp_path / "st")
        assert r2.exit_code == 0, r2.output
        assert "+0 rows" in r2.output and "2500 stored" in r2.output
        assert stored(tmp_path / "st").height == 2500
        assert Store(tmp_path / "st").verify() == []


@pytest.mark.parametrize("exchange", ["binanceusdm", "bybit", "okx"])
def test_venues_without_history_are_skipped_with_the_reason(tmp_path, exchange):
    with FakeExchangeServer({}) as srv:
        r = run([exchange, "BTC/USDT:USDT", "--datasets", "liquidations", "--since", SINCE, "--until", UNTIL], gate_config(tmp_path, srv), tmp_path / "st")
        assert srv.log == []  # nothing asked
    assert r.exit_code == 1
    assert "skipped" in r.output and "backtest record liquidations" in r.output


def test_position_side_per_venue():
    assert position_side("binanceusdm", {"info": {"S": "SELL"}}) == 1  # a forced sell closes a long
    assert position_side("binanceusdm", {"info": {"S": "BUY"}}) == -1
    assert position_side("bybit", {"info": {"S": "Buy"}}) == 1  # Bybit names the position's side
    assert position_side("okx", {"info": {"posSide": "short", "side": "buy"}}) == -1
    assert position_side("okx", {"info": {"posSide": "net", "side": "sell"}}) == 1
    assert position_side("gate", {"info": {"size": -165}}) == -1
    assert position_side("gate", {"info": {"size": 0}}) is None
    assert to_row("gate", {"timestamp": 1, "info": {"size": 3}, "price": None, "contracts": 3}, None) is None
