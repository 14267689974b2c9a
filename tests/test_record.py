"""`backtest record liquidations` against a local websocket server speaking Binance's forceOrder
and Bybit's allLiquidation streams (real ccxt pro classes), with disconnects, replays, restarts
and signals: the store ends with exactly the orders sent, once each."""

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
from backtest.sources.liquidations import read_feed_notes
from backtest.sources.recorder import record
from backtest.sources.retry import RetryPolicy
from backtest.store import Store
from tests.fakes.exchange_server import FakeExchangeServer
from tests.fakes.ws_server import FakeStreamServer, make_orders, wait_until

T0 = 1760126400000  # 2025-10-10T20:00:00Z
SYM = "BTC/USDT:USDT"
FAST = RetryPolicy(base=0.05, cap=0.2)
REPO = Path(__file__).resolve().parent.parent


def config(rest, ws, venue="binance") -> dict:
    if venue == "binance":
        api = {k: rest.url + v for k, v in {"fapiPublic": "/fapi/v1", "fapiPublicV2": "/fapi/v2", "fapiPublicV3": "/fapi/v3",
                                            "fapiData": "/futures/data"}.items()}
        api["ws"] = {"linear": ws.url + "/ws"}
    else:
        api = {k: rest.url for k in ("spot", "futures", "v2", "public", "private")}
        api["ws"] = {"public": {"linear": ws.url + "/v5/public/linear"}}
    return {"urls": {"api": api}, "timeout": 2000, "rateLimit": 5}


def expected(orders, venue="binance") -> pl.DataFrame:
    return pl.DataFrame({
        "ts": [o["T"] for o in orders],
        "side": [1 if o["long"] else -1 for o in orders],
        "price": [float(o["ap"]) for o in orders],
        "qty": [float(o["q"]) for o in orders],
    }, schema={"ts": pl.Int64, "side": pl.Int8, "price": pl.Float64, "qty": pl.Float64}).sort("ts")


def stored(store, exchange="binanceusdm") -> pl.DataFrame:
    df = Store(store).read("liquidations", exchange=exchange, symbol=SYM, timeframe="event")
    return df.select(pl.col("ts").cast(pl.Int64), "side", "price", "qty").sort("ts")


def settled(ws, n_connections):
    """Stop once the server has sent its whole script on the n-th connection, and a moment more."""
    state = {"t": None}

    def stop():
        if ws.done and ws.connections >= n_connections:
            state["t"] = state["t"] or time.time()
            return time.time() - state["t"] > 0.8
        return False

    return stop


@pytest.mark.parametrize("venue,exchange", [("binance", "binanceusdm"), ("bybit", "bybit")])
def test_disconnects_and_replays_store_every_order_once(tmp_path, venue, exchange):
    orders = make_orders(60, T0, venue=venue)
    lines: list[str] = []
    with FakeExchangeServer({}) as rest, FakeStreamServer(venue, orders, drop_after=(15, 30, 45), replay=4) as ws:
        res = record(exchange, [SYM], Store(tmp_path / "st"), config(rest, ws, venue), policy=FAST, batch_seconds=0.2,
                     log=lines.append, should_stop=settled(ws, 4))
        assert len(ws.sent) == 60 and ws.connections == 4
        topic = ws.subscriptions[0].get("params") or ws.subscriptions[0].get("args")
        assert topic == (["btcusdt@forceOrder"] if venue == "binance" else ["allLiquidation.BTCUSDT"])
    got = stored(tmp_path / "st", exchange)
    assert got.equals(expected(orders))  # exactly the orders sent, once each, sides as the venue means them
    assert res.received[SYM] == 60 and res.added[SYM] == 60 and res.reconnects == 3
    assert len(lines) == 3 and all(line.startswith("reconnect ") for line in lines)
    notes = read_feed_notes(Store(tmp_path / "st"), exchange)[SYM]
    assert notes["throttled"] is (venue == "binance")
    assert notes["sessions"][0]["orders"] == 60 and notes["sessions"][0]["reconnects"] == 3
    assert Store(tmp_path / "st").verify() == []


def test_restart_appends_and_overlap_is_not_doubled(tmp_path):
    orders = make_orders(30, T0)
    st = Store(tmp_path / "st")
    with FakeExchangeServer({}) as rest:
        with FakeStreamServer("binance", orders[:20]) as ws:
            record("binanceusdm", [SYM], st, config(rest, ws), policy=FAST, batch_seconds=0.2, should_stop=settled(ws, 1))
        assert stored(st.root).height == 20
        with FakeStreamServer("binance", orders[12:]) as ws:  # the new session sees 8 orders the store has
            res = record("binanceusdm", [SYM], st, config(rest, ws), policy=FAST, batch_seconds=0.2, should_stop=settled(ws, 1))
    assert res.received[SYM] == 18 and res.added[SYM] == 10
    assert stored(st.root).equals(expected(orders))
    assert len(read_feed_notes(st, "binanceusdm")[SYM]["sessions"]) == 2


def test_unknown_symbol_is_one_line_exit_2(tmp_path):
    with FakeExchangeServer({}) as rest, FakeStreamServer("binance", []) as ws:
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps(config(rest, ws)))
        r = CliRunner().invoke(app, ["record", "liquidations", "binanceusdm", "DOGE/USDT:USDT", "--duration", "5",
                                     "--store", str(tmp_path / "st"), "--ccxt-config", str(cfg)])
    assert r.exit_code == 2
    assert "has no market 'DOGE/USDT:USDT'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["record", "liquidations", "gate", SYM, "--duration", "1", "--store", str(tmp_path / "st")])
    assert r.exit_code == 2 and "no liquidation stream" in r.output and "binanceusdm" in r.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_the_pending_batch_and_notes_throttling(tmp_path, sig):
    orders = make_orders(25, T0)
    with FakeExchangeServer({}) as rest, FakeStreamServer("binance", orders, drop_after=(10,)) as ws:
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps({**config(rest, ws), "retry": {"base": 0.05, "cap": 0.2}}))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        p = subprocess.Popen([sys.executable, "-m", "backtest.cli", "record", "liquidations", "binanceusdm", SYM,
                              "--batch-seconds", "600", "--store", str(tmp_path / "st"), "--ccxt-config", str(cfg)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        assert wait_until(lambda: ws.done and ws.connections == 2, 60)
        time.sleep(1.0)
        assert not (tmp_path / "st" / "liquidations").exists() or stored(tmp_path / "st").height < 25  # batch still pending
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert stored(tmp_path / "st").equals(expected(orders))
    assert "THROTTLED FEED" in out and "lower bounds" in out and f"stopped by {sig.name}" in out
    assert err.count("reconnect ") == 1
