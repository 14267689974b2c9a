"""A local websocket server (127.0.0.1, aiohttp) speaking Binance USDⓈ-M's ``forceOrder`` and
Bybit v5's ``allLiquidation`` streams, with scripted disconnects and replays.

``orders`` is the script: each entry is one forced order, sent in order across connections
(``sent`` records what was really written to a socket). ``drop_after`` holds positions in the
script after which the connection is dropped (alternately a close frame 1011 and a cut TCP
connection, no close frame); ``replay`` orders before the drop point are sent again on the next
connection (a duplicate the store must absorb). Messages are in each venue's wire format
(Binance docs 'Liquidation Order Streams', Bybit v5 docs 'All Liquidation').
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

from aiohttp import WSMsgType, web


def binance_force_order(o: dict) -> dict:
    """``o``: {T (ms), s, S (BUY/SELL), q, p, ap}."""
    return {"e": "forceOrder", "E": o["T"] + 2, "o": {"s": o["s"], "S": o["S"], "o": "LIMIT", "f": "IOC", "q": o["q"], "p": o["p"],
                                                  "ap": o["ap"], "X": "FILLED", "l": o["q"], "z": o["q"], "T": o["T"]}}


def bybit_all_liquidation(o: dict) -> dict:
    """``o``: {T (ms), s, S (Buy = long liquidated / Sell), q, ap}."""
    return {"topic": f"allLiquidation.{o['s']}", "type": "snapshot", "ts": o["T"] + 3,
            "data": [{"T": o["T"], "s": o["s"], "S": o["S"], "v": o["q"], "p": o["ap"]}]}


class FakeStreamServer:
    def __init__(self, venue: str, orders: list[dict], *, drop_after: tuple[int, ...] = (), replay: int = 0, gap_s: float = 0.01):
        self.venue = venue
        self.orders = orders
        self.drop_after = set(drop_after)
        self.replay = replay
        self.gap_s = gap_s
        self.sent: list[dict] = []
        self.connections = 0
        self.subscriptions: list[dict] = []
        self._pos = 0
        self._dropped: set[int] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = 0

    @property
    def done(self) -> bool:
        return self._pos >= len(self.orders)

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _serve(self):
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, request):
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        first = await ws.receive()
        if first.type != WSMsgType.TEXT:
            return ws
        sub = json.loads(first.data)
        self.subscriptions.append(sub)
        if self.venue == "binance":
            await ws.send_str(json.dumps({"result": None, "id": sub.get("id")}))
        else:
            await ws.send_str(json.dumps({"success": True, "ret_msg": "", "conn_id": "fake", "req_id": sub.get("req_id", ""), "op": "subscribe"}))
        if self.replay and self.connections > 1:
            for o in self.sent[-self.replay:]:
                await self._send(ws, o, record=False)
        while self._pos < len(self.orders):
            await asyncio.sleep(self.gap_s)
            o = self.orders[self._pos]
            await self._send(ws, o)
            self._pos += 1
            if self._pos in self.drop_after and self._pos not in self._dropped:
                self._dropped.add(self._pos)
                if len(self._dropped) % 2:
                    await ws.close(code=1011, message=b"server restart")
                else:
                    request.transport.close()  # the connection is cut: no close frame
                return ws
        async for _ in ws:  # keep the connection open until the client leaves
            pass
        return ws

    async def _send(self, ws, o: dict, record: bool = True):
        msg = binance_force_order(o) if self.venue == "binance" else bybit_all_liquidation(o)
        await ws.send_str(json.dumps(msg))
        if record:
            self.sent.append(o)


def make_orders(n: int, start_ms: int, symbol: str = "BTCUSDT", venue: str = "binance", seed: int = 3) -> list[dict]:
    """``n`` distinct forced orders, one every 1.1 s of exchange time from ``start_ms``."""
    import random

    rnd = random.Random(seed)
    out = []
    for i in range(n):
        long_liq = rnd.random() < 0.6
        side = ("SELL" if long_liq else "BUY") if venue == "binance" else ("Buy" if long_liq else "Sell")
        ap = round(110_000 + rnd.uniform(-2000, 2000), 1)
        out.append({"T": start_ms + i * 1100, "s": symbol, "S": side, "q": f"{rnd.randint(1, 900) / 1000:.3f}",
                    "p": f"{ap * (0.99 if long_liq else 1.01):.1f}", "ap": f"{ap:.1f}", "long": long_liq})
    return out


def wait_until(pred, timeout: float = 20.0) -> bool:
    t = time.time() + timeout
    while time.time() < t:
        if pred():
            return True
        time.sleep(0.02)
    return False
