"""Observed forced orders (liquidations): ccxt ``fetchLiquidations`` history, one row per order,
and the per-venue notes (source, throttling) kept beside the store's ``liquidations`` dataset.

Rows are in the store's ``liquidations`` schema (:data:`backtest.store.SCHEMAS`): ``ts`` the
order's time (UTC ms), ``side`` the *liquidated position* (+1 long, -1 short), ``price`` in quote
currency (the fill / average price where the venue gives one, else the order price), ``qty`` in
base units (contracts times contract size) and ``notional_usd`` = price * qty (USD-margined
markets: quote currency = USD). The merge key is ``ts, side, price, qty``, so fetching or
recording the same order twice stores it once.

Which venues serve what (ccxt 4.5.90, checked with ``exchange.has``):

================  =======================================  ==============================================
venue             history (REST, ``fetchLiquidations``)    live stream (ccxt pro ``watchLiquidations``)
================  =======================================  ==============================================
binanceusdm       no: ``/fapi/v1/allForceOrders`` withdrawn  ``<symbol>@forceOrder``; at most 1 order/s/symbol
bybit             no (no public history endpoint)           ``allLiquidation.<SYM>``: every order, 500 ms pushes
okx               no (``public/liquidation-orders`` is not  ``liquidation-orders``; at most 1 order/s/contract
                  mapped by ccxt)
gate              yes: ``/futures/{settle}/liq_orders``      no
htx, bitfinex,    yes (ccxt ``fetchLiquidations``)           no
deribit
================  =======================================  ==============================================

The side of the liquidated position is read from each venue's raw message (``info``), because
ccxt's unified ``side`` means the order's side on some venues (Binance) and the position's on
others (Gate): see :func:`position_side`.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from backtest.errors import UserError
from backtest.sources.ccxt_source import _num as _f  # first of several keys that is a number

#: schema of the frames built here (the store adds ``fetched_at``)
ROW_SCHEMA = {"ts": pl.Int64, "symbol": pl.String, "side": pl.Int8, "price": pl.Float64, "qty": pl.Float64, "notional_usd": pl.Float64}

#: what each venue publishes, for the summary and the sidecar. ``throttled``: the feed shows at
#: most one order per symbol per interval, so totals from it are lower bounds.
FEEDS: dict[str, dict[str, Any]] = {
    "binance": {
        "stream": "<symbol>@forceOrder", "throttled": True,
        "note": "Binance pushes at most one forced order per symbol per 1000 ms (the latest one); totals are lower bounds. "
                "Source: Binance USDS-M futures docs, 'Liquidation Order Streams'.",
    },
    "okx": {
        "stream": "liquidation-orders", "throttled": True,
        "note": "OKX pushes at most one liquidation order per contract per second; totals are lower bounds. "
                "Source: OKX API v5 docs, WebSocket 'Liquidation orders channel'.",
    },
    "bybit": {
        "stream": "allLiquidation.<SYM>", "throttled": False,
        "note": "Bybit's allLiquidation topic publishes every liquidation, pushed every 500 ms. "
                "Source: Bybit v5 docs, WebSocket 'All Liquidation'.",
    },
    "gate": {
        "stream": "REST /futures/{settle}/liq_orders", "throttled": False,
        "note": "Gate's public liquidation history (REST liq_orders). Source: Gate API v4 docs, 'Retrieve liquidation history'.",
    },
}

_NO_HISTORY = {
    "binance": "Binance withdrew its public forced-order history (REST allForceOrders); record the live stream with "
               "'backtest record liquidations binanceusdm SYMBOL...'",
    "bybit": "Bybit has no public liquidation history; record the live stream with 'backtest record liquidations bybit SYMBOL...'",
    "okx": "ccxt does not map OKX's recent-liquidations endpoint; record the live stream with 'backtest record liquidations okx SYMBOL...'",
}


def venue(exchange_id: str) -> str:
    """The venue family of a ccxt id (``binanceusdm`` -> ``binance``, ``gateio`` -> ``gate``)."""
    for v in ("binance", "bybit", "okx", "gate", "htx", "bitfinex", "deribit"):
        if exchange_id.startswith(v):
            return v
    return exchange_id


def feed_note(exchange_id: str) -> dict[str, Any]:
    """The :data:`FEEDS` entry of a venue (throttled unknown: None)."""
    return FEEDS.get(venue(exchange_id), {"stream": "?", "throttled": None, "note": f"{exchange_id}: publication rules not checked"})


def lacks_history(ex) -> str | None:
    """A one-line reason when ``ex`` cannot give liquidation history through ccxt."""
    if ex.has.get("fetchLiquidations"):
        return None
    why = _NO_HISTORY.get(venue(ex.id), f"{ex.id} has no public liquidation history in ccxt (has['fetchLiquidations'] is not true)")
    return f"{why}; skipped"


# --------------------------------------------------------------------------------------------
# one forced order -> one row
# --------------------------------------------------------------------------------------------
def position_side(exchange_id: str, liq: dict) -> int | None:
    """+1 when a long was liquidated, -1 a short, None when the message does not say.

    Per venue, from the raw message: Binance ``S`` is the forced order's side (SELL closes a long);
    Bybit ``side`` is the position's (Buy = long liquidated, Bybit v5 docs); OKX ``posSide``
    long/short, or in net mode the order ``side`` (sell closes a long); Gate ``size`` is the
    position size (positive long, Gate API v4 ``FuturesLiquidate``); elsewhere ccxt's ``side``
    is taken as the order's side (sell closes a long).
    """
    info = liq.get("info") or {}
    v = venue(exchange_id)
    text = ""
    if v == "binance":
        text = str(info.get("S", "")).lower()
        return {"sell": 1, "buy": -1}.get(text)
    if v == "bybit":
        text = str(info.get("S", info.get("side", ""))).lower()
        return {"buy": 1, "sell": -1}.get(text)
    if v == "okx":
        pos = str(info.get("posSide", "")).lower()
        if pos in ("long", "short"):
            return 1 if pos == "long" else -1
        return {"sell": 1, "buy": -1}.get(str(info.get("side", "")).lower())
    if v == "gate":
        size = _f(info, "size")
        return None if not size else (1 if size > 0 else -1)
    return {"sell": 1, "buy": -1}.get(str(liq.get("side") or "").lower())


def to_row(exchange_id: str, liq: dict, market: dict | None) -> dict[str, Any] | None:
    """One store row from a ccxt liquidation structure (None when time, side, price or size is missing)."""
    info = liq.get("info") or {}
    ts = liq.get("timestamp")
    side = position_side(exchange_id, liq)
    if venue(exchange_id) == "binance":
        # the snapshot's filled quantity and average price; order quantity and price when nothing filled yet
        price = _f(info, "ap") or _f(info, "p")
        qty = _f(info, "z") or _f(info, "l") or _f(info, "q")
    else:
        price = liq.get("price")
        qty = liq.get("baseValue")
        if qty is None and liq.get("contracts") is not None:
            size = liq.get("contractSize") or (market or {}).get("contractSize") or 1.0
            qty = float(liq["contracts"]) * float(size)
    if ts is None or side is None or not price or not qty:
        return None
    price, qty = float(price), abs(float(qty))
    return {"ts": int(ts), "symbol": liq.get("symbol") or (market or {}).get("symbol"), "side": side,
            "price": price, "qty": qty, "notional_usd": price * qty}


def to_frame(exchange_id: str, liqs: list[dict], markets: dict[str, dict]) -> pl.DataFrame:
    """Store rows (``ROW_SCHEMA``) of ccxt liquidation structures; unusable ones are dropped."""
    rows = [r for r in (to_row(exchange_id, x, markets.get(x.get("symbol") or "")) for x in liqs or []) if r and r["symbol"]]
    return pl.DataFrame(rows, schema=ROW_SCHEMA)


# --------------------------------------------------------------------------------------------
# REST history through the downloader (pagination by time window, retries)
# --------------------------------------------------------------------------------------------
#: length of one request window; Gate answers at most ``limit`` orders per window
WINDOW_MS = 3_600_000


def _request(ex, symbol: str, since: int, until: int, limit: int) -> list[dict]:
    if venue(ex.id) == "gate":
        # Gate APIv4 times are seconds (``time`` in the reply too); ccxt 4.5 would pass ms here
        return ex.fetch_liquidations(symbol, None, limit, {"from": since // 1000, "to": (until - 1) // 1000})
    return ex.fetch_liquidations(symbol, since, limit, {"until": until - 1})


def download_liquidations(dl, symbol: str, since: int, until: int):
    """Fetch the orders of ``[since, until)`` into the store, window by window; a re-run
    fetches again and stores nothing twice (the merge key). Returns a ``SeriesResult``."""
    from backtest.sources.ccxt_source import SeriesResult
    from backtest.sources.retry import RetriesExhausted
    from backtest.store import EVENT_TIMEFRAME, ms_to_iso

    res = SeriesResult("liquidations", symbol, EVENT_TIMEFRAME)
    reason = lacks_history(dl.ex)
    if reason:
        res.note, res.skipped = reason, True
        return res
    try:
        market = dl.market(symbol)
    except RetriesExhausted as e:
        res.failed, res.error = [(since, until)], str(e)
        return res
    limit = dl.page_limits.get("liquidations") or 1000
    task = dl.progress.add(f"{symbol} liquidations", until - since) if dl.progress else None
    # windows oldest first; a full page may hide more orders (venues answer newest or oldest
    # first), so its window is split in two and fetched again, down to one second
    todo = [(a, min(until, a + WINDOW_MS)) for a in range(since, until, WINDOW_MS)][::-1]
    while todo:
        a, b = todo.pop()
        what = f"{dl.exchange_id} liquidations {symbol} {ms_to_iso(a)}..{ms_to_iso(b)}"
        try:
            got = dl.call(lambda a=a, b=b: _request(dl.ex, symbol, a, b, limit), what)
        except RetriesExhausted as e:
            res.failed.append((a, until))
            res.error = str(e)
            break
        res.requests += 1
        if len(got or []) >= limit and b - a > 1000:
            mid = a + max(1000, (b - a) // 2 // 1000 * 1000)
            todo += [(mid, b), (a, mid)]
            continue
        df = to_frame(dl.exchange_id, got, {symbol: market}).filter((pl.col("ts") >= a) & (pl.col("ts") < b))
        if df.height:
            wr = dl.store.write("liquidations", df.with_columns(pl.lit(symbol).alias("symbol")), exchange=dl.exchange_id, timeframe=EVENT_TIMEFRAME)
            res.rows_added += wr.rows_added
        if len(got or []) >= limit:
            res.note = f"more than {limit} orders in the second at {ms_to_iso(a)}: only {limit} stored"
        if task is not None:
            dl.progress.advance(task, b - a)
    if task is not None:
        dl.progress.done(task)
    if res.rows_added or not res.failed:
        write_feed_notes(dl.store, dl.exchange_id, {symbol: {**feed_note(dl.exchange_id), "source": "fetchLiquidations"}})
    return res


# --------------------------------------------------------------------------------------------
# the sidecar: {root}/liquidations/exchange={ex}/feeds.json
# --------------------------------------------------------------------------------------------
def feeds_path(store, exchange: str) -> str:
    return store.fs.join("liquidations", f"exchange={exchange}", "feeds.json")


def read_feed_notes(store, exchange: str) -> dict[str, dict]:
    """Symbol -> note (stream, throttled, note, source, sessions...) of one exchange; {} if none."""
    path = feeds_path(store, exchange)
    if not store.fs.exists(path):
        return {}
    try:
        data = json.loads(store.fs.read_bytes(path))
    except ValueError as e:
        raise UserError(f"{path} does not parse ({e}); move it aside (it only holds notes)") from None
    return data if isinstance(data, dict) else {}


def write_feed_notes(store, exchange: str, notes: dict[str, dict]) -> None:
    """Merge per-symbol notes into the sidecar (atomic replace); ``sessions`` lists are appended."""
    current = read_feed_notes(store, exchange)
    for sym, note in notes.items():
        old = current.get(sym) or {}
        merged = {**old, **note}
        if "sessions" in note or "sessions" in old:
            merged["sessions"] = (old.get("sessions") or []) + (note.get("sessions") or [])
        current[sym] = merged
    store.fs.write_atomic(feeds_path(store, exchange), json.dumps(dict(sorted(current.items())), indent=1, sort_keys=True).encode())
