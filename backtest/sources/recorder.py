"""Record the public forced-order streams (ccxt pro ``watchLiquidations``) into the store.

Orders are appended to the ``liquidations`` dataset (``timeframe=event``) in batches: every
``batch_seconds`` what arrived is written as one merge-write, so an order seen twice (a replay
after a reconnect, a second recorder, a restart) is stored once (the dataset's key is
``ts, side, price, qty``). A dropped connection is reopened with bounded exponential backoff
(the ``retry`` settings of --ccxt-config: ``base``, ``cap``), one line per reconnect on stderr;
a permanent fault (unknown symbol, unsupported venue) stops the recorder at once. SIGINT and
SIGTERM stop it cleanly: the pending batch is written, the sidecar
``liquidations/exchange=<id>/feeds.json`` gains this session (start, end, orders, reconnects)
and the feed's throttling note (:data:`backtest.sources.liquidations.FEEDS`).

Orders are read from ccxt's liquidation cache (``exchange.liquidations``), not only from what a
``watch`` call returns: several orders arriving between two calls all land in the cache, while a
call returns only the first.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import polars as pl

from backtest.errors import UserError
from backtest.sources.liquidations import feed_note, to_frame, write_feed_notes
from backtest.sources.retry import PermanentFault, RetryPolicy

#: seconds between two batch writes (the CLI's default)
BATCH_SECONDS = 2.0
#: orders ccxt may hold between two batches (its default cache keeps 1000)
CACHE_ORDERS = 1_000_000


@dataclass
class RecordResult:
    """What one recording session did (times UTC ms, notional USD)."""

    exchange: str
    symbols: list[str]
    started: int
    ended: int = 0
    received: dict[str, int] = field(default_factory=dict)  # distinct orders received per symbol
    added: dict[str, int] = field(default_factory=dict)  # rows new to the store per symbol
    notional_usd: dict[str, float] = field(default_factory=dict)  # of the distinct orders received, per symbol
    batches: int = 0
    reconnects: int = 0
    stopped_by: str = ""
    note: dict[str, Any] = field(default_factory=dict)  # the feed's stream and throttling note


def make_pro_exchange(exchange_id: str, config: dict[str, Any]):
    """A ccxt pro exchange with ``config`` merged into its constructor arguments; UserError
    naming the venues that stream liquidations when ``exchange_id`` does not."""
    import ccxt.pro as pro

    if exchange_id not in pro.exchanges:
        raise UserError(f"ccxt pro has no exchange {exchange_id!r}; liquidation streams: {', '.join(streaming_venues())}")
    args: dict[str, Any] = {"enableRateLimit": True, **config}
    try:
        ex = getattr(pro, exchange_id)(args)
    except Exception as e:  # noqa: BLE001 - bad constructor arguments from the user's config
        raise UserError(f"cannot create ccxt exchange {exchange_id} from --ccxt-config: {e}") from None
    if not ex.has.get("watchLiquidations"):
        raise UserError(f"{exchange_id} publishes no liquidation stream in ccxt; use one of {', '.join(streaming_venues())}")
    ex.options["liquidationsLimit"] = CACHE_ORDERS
    return ex


def streaming_venues() -> list[str]:
    """ccxt pro exchanges whose ``has['watchLiquidations']`` is set (binance*, bybit*, okx*, lighter in 4.5.90)."""
    import ccxt.pro as pro

    return [e for e in pro.exchanges if getattr(pro, e)().has.get("watchLiquidations")]


class Recorder:
    """One exchange, several symbols; :meth:`run` until ``stop`` is set or ``deadline_ms`` passes."""

    def __init__(self, exchange_id: str, symbols: list[str], store, config: dict[str, Any], *, policy: RetryPolicy | None = None,
                 batch_seconds: float = BATCH_SECONDS, log: Callable[[str], None] | None = None):
        if not symbols:
            raise UserError("no symbols given; e.g. BTC/USDT:USDT")
        if not batch_seconds > 0:
            raise UserError(f"--batch-seconds must be above 0, not {batch_seconds}")
        self.exchange_id = exchange_id
        self.symbols = list(dict.fromkeys(symbols))
        self.store = store
        self.config = config
        self.policy = policy or RetryPolicy(base=0.5, cap=30.0)
        self.batch_seconds = batch_seconds
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.result = RecordResult(exchange_id, self.symbols, started=_now_ms(), note=feed_note(exchange_id))
        self.stop = asyncio.Event()
        self._fatal: BaseException | None = None
        self._seen: set[tuple] = set()  # keys of the orders received in this session

    # ---- connection ------------------------------------------------------------------------
    async def _with_backoff(self, what: str, fn):
        """Await ``fn()`` until it succeeds: temporary faults wait (bounded backoff) and log one
        line; permanent ones raise PermanentFault; anything else is a bug and is raised as is."""
        from backtest.sources.ccxt_source import classify

        attempt = 0
        while not self.stop.is_set():
            try:
                return await fn()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - classified below
                kind = classify(e)
                if kind == "permanent":
                    raise PermanentFault(f"{what} failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}") from e
                if kind != "temporary":
                    raise
                attempt += 1
                wait = self.policy.delay(attempt, None)
                self.result.reconnects += 1
                self.log(f"reconnect {self.result.reconnects} ({what}) in {wait:.1f}s: {type(e).__name__}: {str(e).strip()[:120]}")
                try:
                    await asyncio.wait_for(self.stop.wait(), wait)
                except asyncio.TimeoutError:
                    pass
        return None

    async def _watch(self, ex, symbols: list[str]) -> None:
        """Keep one subscription open; orders land in ccxt's cache, drained by :meth:`_flush`."""
        many = len(symbols) > 1 or ex.has.get("watchLiquidationsForSymbols") is True
        call = (lambda: ex.watch_liquidations_for_symbols(symbols)) if many else (lambda: ex.watch_liquidations(symbols[0]))
        while not self.stop.is_set():
            await self._with_backoff(f"{self.exchange_id} liquidations {','.join(symbols)}", call)

    # ---- batches ------------------------------------------------------------------------------
    def _drain(self, ex) -> list[dict]:
        cache = ex.liquidations
        if not cache:
            return []
        got = list(cache)
        ex.liquidations = None  # ccxt starts a new cache with the next order
        return got

    async def _write(self, ex, items: list[dict]) -> None:
        if not items:
            return
        from backtest.store import EVENT_TIMEFRAME

        df = to_frame(self.exchange_id, items, ex.markets or {}).filter(pl.col("symbol").is_in(self.symbols))
        if df.height == 0:
            return
        for row in df.iter_rows(named=True):
            k = (row["symbol"], row["ts"], row["side"], row["price"], row["qty"])  # the store's key, per symbol
            if k not in self._seen:
                self._seen.add(k)
                sym = row["symbol"]
                self.result.received[sym] = self.result.received.get(sym, 0) + 1
                self.result.notional_usd[sym] = self.result.notional_usd.get(sym, 0.0) + row["notional_usd"]
        for (sym,), g in df.group_by(["symbol"], maintain_order=True):
            wr = await asyncio.to_thread(self.store.write, "liquidations", g, exchange=self.exchange_id, timeframe=EVENT_TIMEFRAME)
            self.result.added[sym] = self.result.added.get(sym, 0) + wr.rows_added
        self.result.batches += 1

    async def _flush_loop(self, ex) -> None:
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), self.batch_seconds)
            except asyncio.TimeoutError:
                pass
            await self._write(ex, self._drain(ex))

    # ---- the session ------------------------------------------------------------------------
    async def run(self, deadline_ms: int | None = None, should_stop: Callable[[], bool] | None = None) -> RecordResult:
        ex = make_pro_exchange(self.exchange_id, self.config)
        tasks: list[asyncio.Task] = []
        flusher: asyncio.Task | None = None
        try:
            await self._with_backoff(f"{self.exchange_id} load_markets", ex.load_markets)
            if self.stop.is_set() and not ex.markets:  # stopped before the markets came: nothing to record
                return self.result
            for s in self.symbols:
                if s not in (ex.markets or {}):
                    near = [m for m in (ex.symbols or []) if m.split("/")[0] == s.split("/")[0]][:6]
                    raise PermanentFault(f"{self.exchange_id} has no market {s!r}" + (f"; it has e.g. {', '.join(near)}" if near else ""))
            groups = [self.symbols] if ex.has.get("watchLiquidationsForSymbols") is True else [[s] for s in self.symbols]
            tasks = [asyncio.create_task(self._watch(ex, g)) for g in groups]
            flusher = asyncio.create_task(self._flush_loop(ex))
            tasks.append(flusher)
            while not self.stop.is_set():
                done = [t for t in tasks if t.done()]
                for t in done:
                    if t.exception() is not None:
                        self._fatal = t.exception()
                        self.stop.set()
                if deadline_ms is not None and _now_ms() >= deadline_ms:
                    self.result.stopped_by = self.result.stopped_by or "time"
                    self.stop.set()
                if should_stop is not None and should_stop():
                    self.result.stopped_by = self.result.stopped_by or "caller"
                    self.stop.set()
                try:
                    await asyncio.wait_for(self.stop.wait(), 0.05)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.stop.set()
            watchers = [t for t in tasks if t is not flusher] if flusher else tasks
            for t in watchers:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            try:
                if flusher is not None:
                    await asyncio.gather(flusher, return_exceptions=True)  # ends after its current write, never mid-write
                await self._write(ex, self._drain(ex))  # the pending batch
            finally:
                await ex.close()
                self.result.ended = _now_ms()
                self._note_session()
        if self._fatal is not None:
            raise self._fatal
        return self.result

    def _note_session(self) -> None:
        from backtest.store import ms_to_iso

        r = self.result
        notes = {}
        for s in self.symbols:
            session = {"start": ms_to_iso(r.started), "end": ms_to_iso(r.ended), "orders": r.received.get(s, 0),
                       "new_rows": r.added.get(s, 0), "reconnects": r.reconnects}
            notes[s] = {**r.note, "source": "watchLiquidations", "sessions": [session]}
        write_feed_notes(self.store, self.exchange_id, notes)


def _now_ms() -> int:
    return int(time.time() * 1000)


def record(exchange_id: str, symbols: list[str], store, config: dict[str, Any], *, deadline_ms: int | None = None,
           policy: RetryPolicy | None = None, batch_seconds: float = BATCH_SECONDS, log=None,
           should_stop: Callable[[], bool] | None = None) -> RecordResult:
    """Record until ``deadline_ms`` (UTC ms; None: until SIGINT/SIGTERM), ``should_stop()``, or a
    permanent fault; SIGINT and SIGTERM stop it cleanly with the pending batch written."""

    async def main() -> RecordResult:
        rec = Recorder(exchange_id, symbols, store, config, policy=policy, batch_seconds=batch_seconds, log=log)
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, lambda s=sig: (setattr(rec.result, "stopped_by", signal.Signals(s).name), rec.stop.set()))
                installed.append(sig)
            except (ValueError, NotImplementedError, RuntimeError):  # not the main thread, or no signals here
                pass
        try:
            return await rec.run(deadline_ms, should_stop)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    return asyncio.run(main())
