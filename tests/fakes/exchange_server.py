"""A local HTTP server that speaks enough of Binance USDⓈ-M, Bybit v5, OKX v5 and Gate v4 REST for ccxt.

Responses are in each exchange's own wire format (the field names and layouts of the recorded
responses in ccxt's ``test/static/response`` files and the exchanges' API docs), filled from the
real data in ``/work/shared/data`` by :mod:`tests.fakes.fixtures`. Only 127.0.0.1 is used.

Fault injection: ``server.plan`` is a callable ``(n, path) -> fault | None`` consulted for every
request (``n`` counts from 1). Faults: ``429``, ``418`` (with ``Retry-After``), ``500`` (Binance
JSON error body), ``502``/``503`` (HTML body), ``504``, ``timeout`` (sleeps past the client's
timeout), ``cut`` (connection closed mid-body, Content-Length promising more), ``truncated``
(half a JSON body with a matching Content-Length), ``badsymbol``.

Hyperliquid speaks ``POST /info`` with a JSON body whose ``type`` names the request (as ccxt's
``hyperliquid`` class sends it): ``metaAndAssetCtxs`` / ``spotMeta`` / ``spotMetaAndAssetCtxs`` /
``perpDexs`` (markets), ``candleSnapshot`` (``req.coin``, ``req.interval``, ``req.startTime`` /
``endTime`` in ms, inclusive, oldest first, at most 5000 candles: Hyperliquid's docs) and
``fundingHistory`` (``coin``, ``startTime``, ``endTime``; oldest first, at most 500 rows). No
Hyperliquid history is in shared/data: the candles are the real Binance rows in Hyperliquid's
layout, and the hourly funding is SYNTHETIC (each Binance 8-hourly rate spread over its 8 hours),
there only to exercise the wire format and paging. Its faults: 429 (Hyperliquid's rate limit, an
HTTP 429 with a JSON ``null`` body), 500 and the generic ones.

Gate v4 serves its USDT perpetual list and the public liquidation history ``liq_orders`` (rows
under ``("gate", "liq_orders", "BTC_USDT")``, Gate's own layout, ``from``/``to`` in seconds: a
millisecond value is refused as Gate refuses it).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

TF_MS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}
BYBIT_TF = {"1": "1m", "5": "5m", "15": "15m", "60": "1h", "240": "4h", "D": "1d"}
OKX_TF = {"1m": "1m", "5m": "5m", "15m": "15m", "1H": "1h", "4H": "4h", "1D": "1d", "1Dutc": "1d"}


def every_other(faults: list[str], *, skip_paths: tuple[str, ...] = ()) -> Callable[[int, str], str | None]:
    """Fail every second request, cycling through ``faults``."""
    state = {"i": 0}
    lock = threading.Lock()

    def plan(n: int, path: str) -> str | None:
        if any(path.startswith(p) for p in skip_paths) or n % 2 == 1:
            return None
        with lock:
            f = faults[state["i"] % len(faults)]
            state["i"] += 1
        return f

    return plan


class FakeExchangeServer:
    """``data`` maps (venue, dataset, exchange symbol) -> list of rows (see fixtures)."""

    def __init__(self, data: dict[tuple[str, str, str], list], *, markets: dict[str, list[str]] | None = None):
        self.data = data
        self.markets = markets or {"binance": ["BTCUSDT", "ETHUSDT"], "bybit": ["BTCUSDT"], "okx": ["BTC-USDT-SWAP"], "gate": ["BTC_USDT"],
                                   "hyperliquid": ["BTC"]}
        self.plan: Callable[[int, str], str | None] = lambda n, path: None
        self.log: list[tuple[str, dict[str, str], str | None]] = []  # (path, query, fault)
        self.delay = 0.0  # seconds added to every data response (lets tests kill mid-run)
        self.timeout_sleep = 0.6
        self._n = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                try:
                    server._handle(self)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    self.close_connection = True

            def do_POST(self):  # noqa: N802 - Hyperliquid's /info
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    self.body_json = json.loads(self.rfile.read(n) or b"null")
                except ValueError:
                    self.body_json = None
                self.do_GET()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def data_requests(self, prefix: str = "") -> list[tuple[str, dict, str | None]]:
        return [r for r in self.log if r[0].startswith(prefix) and "exchangeInfo" not in r[0] and "instruments" not in r[0]]

    # ---- plumbing ------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        u = urlparse(h.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        with self._lock:
            self._n += 1
            n = self._n
        body_json = getattr(h, "body_json", None)
        if isinstance(body_json, dict):  # Hyperliquid: the request is the body; log it as the query
            q = {**q, **{k: json.dumps(v) if isinstance(v, (dict, list)) else str(v) for k, v in body_json.items()}}
        fault = self.plan(n, u.path)
        self.log.append((u.path, q, fault))
        if fault:
            return self._fault(h, fault, u.path)
        try:
            status, body = self._route(u.path, q, body_json)
        except KeyError as e:
            status, body = 404, {"code": -1, "msg": f"not found {e}"}
        if self.delay and status == 200:
            time.sleep(self.delay)
        self._send(h, status, json.dumps(body).encode())

    def _send(self, h, status: int, raw: bytes, *, ctype: str = "application/json", headers: dict | None = None, length: int | None = None):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(raw) if length is None else length))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(raw)
        h.wfile.flush()

    def _fault(self, h, fault: str, path: str) -> None:
        venue = ("bybit" if path.startswith("/v5/") else "okx" if path.startswith("/api/v5/") else "gate" if path.startswith("/api/v4/")
                 else "hyperliquid" if path == "/info" else "binance")
        if venue == "hyperliquid" and fault in ("429", "418"):
            return self._send(h, 429, b"null", headers={"Retry-After": "1"})
        if venue == "gate" and fault in ("429", "418", "500"):
            label, msg = ("TOO_MANY_REQUESTS", "Request Rate limit Exceeded") if fault != "500" else ("SERVER_ERROR", "Internal server error")
            body = json.dumps({"label": label, "message": msg}).encode()
            return self._send(h, 429 if fault != "500" else 500, body, headers={"Retry-After": "1"} if fault != "500" else None)
        if venue == "bybit" and fault in ("429", "418", "500"):
            # Bybit: IP limit is HTTP 403; API limit retCode 10006; 10016 "System error"
            if fault == "418":
                return self._send(h, 403, b"access too frequent", ctype="text/plain")
            code, msg = (10006, "Too many visits!") if fault == "429" else (10016, "System error. Please try again later.")
            body = json.dumps({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": int(time.time() * 1000)}).encode()
            return self._send(h, 429 if fault == "429" else 200, body, headers={"Retry-After": "2"} if fault == "429" else None)
        if venue == "okx" and fault in ("429", "418", "500"):
            code, msg = ("50011", "Too Many Requests") if fault in ("429", "418") else ("50026", "System error, please try again later.")
            body = json.dumps({"code": code, "msg": msg, "data": []}).encode()
            return self._send(h, 429 if fault != "500" else 500, body, headers={"Retry-After": "2"})
        if fault in ("429", "418"):
            msg = "Too many requests; current limit of IP is 2400 requests per minute." if fault == "429" else "Way too many requests; IP banned until 1760130000000."
            body = json.dumps({"code": -1003, "msg": msg}).encode()
            return self._send(h, int(fault), body, headers={"Retry-After": "2"})
        if fault == "500":
            body = json.dumps({"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}).encode()
            return self._send(h, 500, body)
        if fault in ("502", "503", "504"):
            body = f"<html><body><h1>{fault} Bad Gateway</h1></body></html>".encode()
            return self._send(h, int(fault), body, ctype="text/html")
        if fault == "timeout":
            time.sleep(self.timeout_sleep)
            return self._send(h, 200, b"[]")
        if fault == "badsymbol":
            return self._send(h, 400, json.dumps({"code": -1121, "msg": "Invalid symbol."}).encode())
        if fault == "auth":
            return self._send(h, 401, json.dumps({"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}).encode())
        try:
            status, body = self._route(urlparse(h.path).path, {k: v[-1] for k, v in parse_qs(urlparse(h.path).query).items()},
                                       getattr(h, "body_json", None))
        except KeyError as e:
            status, body = 404, {"code": -1, "msg": f"not found {e}"}
        raw = json.dumps(body).encode()
        if fault == "cut":  # promise the whole body, send half, hang up
            h.close_connection = True
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(raw)))
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(raw[: max(1, len(raw) // 2)])
            h.wfile.flush()
            return
        if fault == "truncated":  # a body cut off by a proxy: half the JSON, consistent length
            return self._send(h, 200, raw[: max(1, len(raw) // 2)])
        raise ValueError(f"unknown fault {fault}")

    # ---- routes ----------------------------------------------------------------------------
    def _route(self, path: str, q: dict[str, str], body: Any = None) -> tuple[int, Any]:
        if path == "/info":
            return self._hyperliquid(body if isinstance(body, dict) else {})
        if path in ("/sapi/v1/capital/config/getall", "/sapi/v1/margin/allPairs"):
            return 200, []  # what ccxt asks for when keys are set; nothing needed here
        if path == "/fapi/v1/leverageBracket":  # signed endpoint; the fake does not check signatures
            if "signature" not in q:
                return 401, {"code": -2014, "msg": "API-key format invalid."}
            return 200, [{"symbol": s, "brackets": self.data.get(("binance", "brackets", s), [])} for s in self.markets["binance"]
                         if ("binance", "brackets", s) in self.data]
        if path.startswith("/fapi/") or path.startswith("/futures/data/"):
            return self._binance(path, q)
        if path.startswith("/v5/"):
            return self._bybit(path, q)
        if path.startswith("/api/v5/"):
            return self._okx(path, q)
        if path.startswith("/api/v4/"):
            return self._gate(path, q)
        raise KeyError(path)

    # Binance USDⓈ-M -----------------------------------------------------------------------
    def _binance(self, path: str, q: dict[str, str]) -> tuple[int, Any]:
        if path == "/fapi/v1/exchangeInfo":
            return 200, binance_exchange_info(self.markets["binance"])
        kind = path.rsplit("/", 1)[-1]
        sym = q.get("symbol") or q.get("pair")
        if sym not in self.markets["binance"]:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        if kind in ("klines", "markPriceKlines", "indexPriceKlines"):
            limit = min(int(q.get("limit", 500)), 1500)
            rows = self.data.get(("binance", kind + ":" + q["interval"], sym), [])
            return 200, _window(rows, start, end, limit, key=lambda r: r[0])
        if kind == "fundingRate":
            limit = min(int(q.get("limit", 100)), 1000)
            rows = self.data.get(("binance", "funding", sym), [])
            return 200, _window(rows, start, end, limit, key=lambda r: r["fundingTime"])
        if kind in ("openInterestHist", "globalLongShortAccountRatio"):
            limit = min(int(q.get("limit", 30)), 500)
            rows = self.data.get(("binance", kind + ":" + q["period"], sym), [])
            return 200, _window(rows, start, end, limit, key=lambda r: r["timestamp"])
        raise KeyError(path)

    # Bybit v5 -------------------------------------------------------------------------------
    def _bybit(self, path: str, q: dict[str, str]) -> tuple[int, Any]:
        def ok(result):
            return 200, {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": int(time.time() * 1000)}

        if path == "/v5/market/instruments-info":
            cat = q.get("category")
            lst = [bybit_instrument(s) for s in self.markets["bybit"]] if cat == "linear" and q.get("status") != "PreLaunch" else []
            return ok({"category": cat, "list": lst, "nextPageCursor": ""})
        sym = q.get("symbol")
        if path == "/v5/market/risk-limit" and sym is None:
            lists = [self._bybit(path, {**q, "symbol": m})[1]["result"]["list"] for m in self.markets["bybit"]]
            return ok({"category": "linear", "list": [t for lst in lists for t in lst], "nextPageCursor": ""})
        if sym not in self.markets["bybit"]:
            return 200, {"retCode": 10001, "retMsg": "params error: symbol invalid", "result": {}, "retExtInfo": {}, "time": 0}
        if path in ("/v5/market/kline", "/v5/market/mark-price-kline", "/v5/market/index-price-kline"):
            kind = {"kline": "klines", "mark-price-kline": "markPriceKlines", "index-price-kline": "indexPriceKlines"}[path.rsplit("/", 1)[-1]]
            tf = BYBIT_TF[q["interval"]]
            rows = self.data.get(("binance", kind + ":" + tf, sym), [])  # same real bars, Bybit layout
            limit = min(int(q.get("limit", 200)), 1000)
            start, end = _int(q.get("start")), _int(q.get("end"))
            sel = _newest_window(rows, start, end, limit, key=lambda r: r[0])
            if kind == "klines":
                lst = [[str(r[0]), r[1], r[2], r[3], r[4], r[5], r[7]] for r in sel]
            else:
                lst = [[str(r[0]), r[1], r[2], r[3], r[4]] for r in sel]
            return ok({"symbol": sym, "category": "linear", "list": lst})
        if path == "/v5/market/funding/history":
            rows = self.data.get(("binance", "funding", sym), [])
            limit = min(int(q.get("limit", 200)), 200)
            sel = _newest_window(rows, _int(q.get("startTime")), _int(q.get("endTime")), limit, key=lambda r: r["fundingTime"])
            lst = [{"symbol": sym, "fundingRate": r["fundingRate"], "fundingRateTimestamp": str(r["fundingTime"])} for r in sel]
            return ok({"category": "linear", "list": lst})
        if path == "/v5/market/open-interest":
            tf = {"5min": "5m", "15min": "15m", "30min": "30m", "1h": "1h", "4h": "4h", "1d": "1d"}[q["intervalTime"]]
            rows = self.data.get(("binance", "openInterestHist:" + tf, sym), [])
            limit = min(int(q.get("limit", 50)), 200)
            sel = _newest_window(rows, _int(q.get("startTime")), _int(q.get("endTime")), limit, key=lambda r: r["timestamp"])
            lst = [{"openInterest": r["sumOpenInterest"], "timestamp": str(r["timestamp"])} for r in sel]
            return ok({"symbol": sym, "category": "linear", "list": lst, "nextPageCursor": ""})
        if path == "/v5/market/account-ratio":
            tf = {"5min": "5m", "15min": "15m", "30min": "30m", "1h": "1h", "4h": "4h", "1d": "1d"}[q["period"]]
            rows = self.data.get(("binance", "globalLongShortAccountRatio:" + tf, sym), [])
            limit = min(int(q.get("limit", 50)), 500)
            sel = _newest_window(rows, _int(q.get("startTime")), _int(q.get("endTime")), limit, key=lambda r: r["timestamp"])
            lst = [{"symbol": sym, "buyRatio": r["longAccount"], "sellRatio": r["shortAccount"], "timestamp": str(r["timestamp"])} for r in sel]
            return ok({"list": lst, "nextPageCursor": ""})
        if path == "/v5/market/risk-limit":
            # Bybit's documented example tiers for BTCUSDT (values as in the v5 docs' sample response)
            lst = [
                {"id": i + 1, "symbol": sym, "riskLimitValue": str(2_000_000 * (i + 1)), "maintenanceMargin": f"{0.005 + 0.005 * i:.3f}",
                 "initialMargin": f"{0.01 + 0.01 * i:.3f}", "isLowestRisk": 1 if i == 0 else 0, "maxLeverage": f"{100 / (i + 1):.2f}",
                 "mmDeduction": "" if i == 0 else str(10_000 * i)}
                for i in range(4)
            ]
            return ok({"category": "linear", "list": lst, "nextPageCursor": ""})
        raise KeyError(path)

    # OKX v5 ----------------------------------------------------------------------------------
    def _okx(self, path: str, q: dict[str, str]) -> tuple[int, Any]:
        def ok(data):
            return 200, {"code": "0", "msg": "", "data": data}

        if path == "/api/v5/public/instruments":
            return ok([okx_instrument(s) for s in self.markets["okx"]] if q.get("instType") == "SWAP" else [])
        inst = q.get("instId")
        bsym = (inst or "").replace("-SWAP", "").replace("-", "")
        if path in ("/api/v5/market/candles", "/api/v5/market/history-candles", "/api/v5/market/mark-price-candles",
                    "/api/v5/market/history-mark-price-candles", "/api/v5/market/index-candles", "/api/v5/market/history-index-candles"):
            last = path.rsplit("/", 1)[-1]
            kind = "markPriceKlines" if "mark" in last else "indexPriceKlines" if "index" in last else "klines"
            tf = OKX_TF[q.get("bar", "1m")]
            rows = self.data.get(("binance", kind + ":" + tf, bsym), [])
            limit = min(int(q.get("limit", 100)), 300 if kind == "klines" else 100)
            sel = _okx_window(rows, _int(q.get("before")), _int(q.get("after")), limit, key=lambda r: r[0])
            if kind == "klines":
                return ok([[str(r[0]), r[1], r[2], r[3], r[4], str(float(r[5]) * 100), r[5], r[7], "1"] for r in sel])
            return ok([[str(r[0]), r[1], r[2], r[3], r[4], "1"] for r in sel])
        if path == "/api/v5/public/funding-rate-history":
            rows = self.data.get(("binance", "funding", bsym), [])
            limit = min(int(q.get("limit", 100)), 400)
            sel = _okx_window(rows, _int(q.get("before")), _int(q.get("after")), limit, key=lambda r: r["fundingTime"])
            return ok([
                {"instType": "SWAP", "instId": inst, "formulaType": "noRate", "fundingRate": r["fundingRate"],
                 "realizedRate": r["fundingRate"], "fundingTime": str(r["fundingTime"]), "method": "current_period"}
                for r in sel
            ])
        if path == "/api/v5/public/position-tiers":
            fam = q.get("instFamily") or q.get("uly")
            # the shape of OKX's documented sample (sizes in contracts)
            tiers = [("1", "0", "500", "0.004", "0.01", "100"), ("2", "500", "1000", "0.005", "0.0125", "80"),
                     ("3", "1000", "2000", "0.01", "0.02", "50")]
            return ok([{"baseMaxLoan": "", "imr": imr, "instFamily": fam, "instId": "", "maxLever": lev, "maxSz": mx, "minSz": mn,
                        "mmr": mmr, "optMgnFactor": "0", "quoteMaxLoan": "", "tier": t, "uly": fam} for t, mn, mx, mmr, imr, lev in tiers])
        if path in ("/api/v5/rubik/stat/contracts/open-interest-history", "/api/v5/rubik/stat/contracts/long-short-account-ratio-contract"):
            tf = OKX_TF[q.get("period", "5m")]
            oi = "open-interest" in path
            rows = self.data.get(("binance", ("openInterestHist:" if oi else "globalLongShortAccountRatio:") + tf, bsym), [])
            limit = min(int(q.get("limit", 100)), 100)
            sel = _okx_window(rows, _int(q.get("begin")), _int(q.get("end")), limit, key=lambda r: r["timestamp"])
            if oi:  # [ts, oi in contracts (ctVal 0.01), oiCcy in base, oiUsd]
                return ok([[str(r["timestamp"]), f"{float(r['sumOpenInterest']) * 100:.2f}", r["sumOpenInterest"], r["sumOpenInterestValue"]] for r in sel])
            return ok([[str(r["timestamp"]), r["longShortRatio"]] for r in sel])
        raise KeyError(path)


    # Gate v4 -----------------------------------------------------------------------------------
    def _hyperliquid(self, body: dict) -> tuple[int, Any]:
        kind = body.get("type")
        usdc = {"name": "USDC", "szDecimals": 8, "weiDecimals": 8, "index": 0, "tokenId": "0x6d1e7cde53ba9467b783cb7c530ce054",
                "isCanonical": True, "evmContract": None, "fullName": None}
        if kind == "spotMeta":
            return 200, {"universe": [], "tokens": [usdc]}
        if kind == "spotMetaAndAssetCtxs":
            return 200, [{"universe": [], "tokens": [usdc]}, []]
        if kind == "perpDexs":
            return 200, [None]
        if kind == "metaAndAssetCtxs":
            coins = self.markets["hyperliquid"]
            universe = [{"name": c, "szDecimals": 5, "maxLeverage": 40, "marginTableId": 56} for c in coins]
            ctxs = [{"funding": "0.0000125", "openInterest": "30000.0", "prevDayPx": "121000.0", "dayNtlVlm": "3000000000.0",
                     "premium": "0.0", "oraclePx": "121000.0", "markPx": "121000.0", "midPx": "121000.5",
                     "impactPxs": ["121000.0", "121001.0"], "dayBaseVlm": "25000.0"} for _ in coins]
            return 200, [{"universe": universe, "marginTables": []}, ctxs]
        if kind == "candleSnapshot":
            req = body.get("req") or {}
            coin, tf = req.get("coin"), req.get("interval")
            if coin not in self.markets["hyperliquid"]:
                return 500, None  # Hyperliquid answers an unknown coin with a bare 500
            rows = self.data.get(("binance", f"klines:{tf}", coin + "USDT"), [])  # same real bars, Hyperliquid layout
            start, end = _int(req.get("startTime")), _int(req.get("endTime"))
            sel = [r for r in rows if (start is None or r[0] >= start) and (end is None or r[0] <= end)][:5000]
            step = TF_MS[tf]
            return 200, [{"t": r[0], "T": r[0] + step - 1, "s": coin, "i": tf, "o": r[1], "c": r[4], "h": r[2], "l": r[3], "v": r[5], "n": r[8]}
                         for r in sel]
        if kind == "fundingHistory":
            coin = body.get("coin")
            rows = self.data.get(("hyperliquid", "funding", coin), [])
            start, end = _int(body.get("startTime")), _int(body.get("endTime"))
            sel = [r for r in rows if (start is None or r["time"] >= start) and (end is None or r["time"] <= end)][:500]
            return 200, sel
        return 422, f"Failed to deserialize the JSON body into the target type: unknown variant `{kind}`"

    def _gate(self, path: str, q: dict[str, str]) -> tuple[int, Any]:
        if path in ("/api/v4/spot/currencies", "/api/v4/wallet/currency_chains"):
            return 200, []
        if path == "/api/v4/futures/usdt/contracts":
            return 200, [gate_contract(c) for c in self.markets["gate"]]
        if path.startswith("/api/v4/futures/") and path.endswith("/contracts"):
            return 200, []
        if path == "/api/v4/futures/usdt/liq_orders":
            c = q.get("contract")
            if c not in self.markets["gate"]:
                return 400, {"label": "CONTRACT_NOT_FOUND", "message": f"Contract {c} not found"}
            lo, hi = _int(q.get("from")), _int(q.get("to"))
            if any(v is not None and v > 10_000_000_000 for v in (lo, hi)):  # ms where Gate wants seconds
                return 400, {"label": "INVALID_PARAM_VALUE", "message": "invalid argument: from/to must be seconds"}
            limit = min(int(q.get("limit", 100)), 1000)
            rows = self.data.get(("gate", "liq_orders", c), [])
            sel = [r for r in rows if (lo is None or r["time"] >= lo) and (hi is None or r["time"] <= hi)]
            return 200, list(reversed(sel))[:limit]  # newest first, as Gate answers
        raise KeyError(path)


def gate_contract(name: str) -> dict:
    """One /futures/usdt/contracts entry with the fields ccxt reads (values as Gate sends them)."""
    return {
        "name": name, "type": "direct", "quanto_multiplier": "0.0001", "leverage_min": "1", "leverage_max": "125",
        "maintenance_rate": "0.004", "mark_type": "index", "mark_price": "112000", "index_price": "112000", "last_price": "112000",
        "order_price_round": "0.1", "mark_price_round": "0.1", "order_price_deviate": "0.5", "order_size_min": 1,
        "order_size_max": 1000000, "funding_interval": 28800, "funding_rate": "0.0001", "in_delisting": False,
        "enable_decimal": False, "status": "trading", "create_time": 1573084800, "risk_limit_base": "1000000",
        "risk_limit_step": "1000000", "risk_limit_max": "30000000",
    }


def gate_liq_orders(n: int, start_s: int, seconds: int, seed: int = 7) -> list[dict]:
    """``n`` public Gate liquidation orders (``size`` the position: + long, - short) spread over
    ``seconds`` from ``start_s``, oldest first; prices near 112,000 USDT, sizes in contracts."""
    import random

    rnd = random.Random(seed)
    out = []
    for i in range(n):
        t = start_s + (i * seconds) // n
        size = rnd.choice([-1, 1]) * rnd.randint(1, 5000)
        fill = round(112_000 + rnd.uniform(-3000, 3000), 1)
        out.append({"time": t, "contract": "BTC_USDT", "size": size, "order_price": f"{fill + (50 if size < 0 else -50):.1f}",
                    "fill_price": f"{fill:.1f}", "left": 0})
    return out


def _int(v):
    return int(v) if v not in (None, "") else None


def _window(rows, start, end, limit, key):
    """Binance semantics: oldest first from startTime (or the newest ``limit`` before endTime)."""
    sel = [r for r in rows if (start is None or key(r) >= start) and (end is None or key(r) <= end)]
    return sel[:limit] if start is not None else sel[-limit:]


def _newest_window(rows, start, end, limit, key):
    """Bybit semantics: newest first within [start, end]."""
    sel = [r for r in rows if (start is None or key(r) >= start) and (end is None or key(r) <= end)]
    return list(reversed(sel[-limit:]))


def _okx_window(rows, before, after, limit, key):
    """OKX semantics: newest first, ts > before and ts < after."""
    sel = [r for r in rows if (before is None or key(r) > before) and (after is None or key(r) < after)]
    if after is None and before is not None:
        sel = sel[:limit]
    return list(reversed(sel[-limit:]))


def binance_exchange_info(symbols: list[str]) -> dict:
    """A /fapi/v1/exchangeInfo payload with the fields ccxt reads, values as Binance sends them."""
    out = []
    for s in symbols:
        base = s[:-4]
        out.append({
            "symbol": s, "pair": s, "contractType": "PERPETUAL", "deliveryDate": 4133404800000, "onboardDate": 1569398400000,
            "status": "TRADING", "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000", "baseAsset": base,
            "quoteAsset": "USDT", "marginAsset": "USDT", "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
            "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": ["PoW"], "triggerProtect": "0.0500",
            "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
            "filters": [
                {"minPrice": "261.10", "maxPrice": "809484", "filterType": "PRICE_FILTER", "tickSize": "0.10"},
                {"stepSize": "0.001", "filterType": "LOT_SIZE", "maxQty": "1000", "minQty": "0.001"},
                {"stepSize": "0.001", "filterType": "MARKET_LOT_SIZE", "maxQty": "120", "minQty": "0.001"},
                {"limit": 200, "filterType": "MAX_NUM_ORDERS"}, {"limit": 10, "filterType": "MAX_NUM_ALGO_ORDERS"},
                {"notional": "100", "filterType": "MIN_NOTIONAL"},
                {"multiplierDown": "0.9500", "multiplierUp": "1.0500", "multiplierDecimal": "4", "filterType": "PERCENT_PRICE"},
            ],
            "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"], "permissionSets": ["GRID", "COPY"],
        })
    return {
        "timezone": "UTC", "serverTime": int(time.time() * 1000), "futuresType": "U_MARGINED",
        "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}],
        "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": out,
    }


def bybit_instrument(s: str) -> dict:
    return {
        "symbol": s, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": s[:-4], "quoteCoin": "USDT",
        "launchTime": "1585526400000", "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": "2",
        "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
        "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001", "qtyStep": "0.001", "postOnlyMaxOrderQty": "1190.000",
                          "maxMktOrderQty": "500.000", "minNotionalValue": "5"},
        "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": "USDT", "copyTrading": "both",
        "upperFundingRate": "0.005", "lowerFundingRate": "-0.005", "isPreListing": False, "preListingInfo": None,
    }


def okx_instrument(inst: str) -> dict:
    uly = inst.replace("-SWAP", "")
    return {
        "alias": "", "baseCcy": "", "category": "1", "ctMult": "1", "ctType": "linear", "ctVal": "0.01", "ctValCcy": uly.split("-")[0],
        "expTime": "", "instFamily": uly, "instId": inst, "instType": "SWAP", "lever": "100", "listTime": "1611916828000",
        "lotSz": "0.01", "maxIcebergSz": "100000000.0000000000000000", "maxLmtAmt": "20000000", "maxLmtSz": "100000000",
        "maxMktAmt": "", "maxMktSz": "12000", "maxStopSz": "12000", "maxTriggerSz": "100000000.0000000000000000",
        "maxTwapSz": "100000000.0000000000000000", "minSz": "0.01", "optType": "", "quoteCcy": "", "settleCcy": "USDT",
        "state": "live", "stk": "", "tickSz": "0.1", "uly": uly, "ruleType": "normal",
    }
