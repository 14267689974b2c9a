"""``backtest fetch EVENT``: download everything an event needs, in one command.

The plan (:func:`plan_fetch`), per symbol of the event, with ``[lookback start, window end)`` as
the lookback span:

=====================  ==================  ===========  ============  ========
item                   dataset             timeframe    span          required
=====================  ==================  ===========  ============  ========
last bars, window      ohlcv               finest [1]_  window        yes
mark bars, window      mark                finest [1]_  window        no
last bars, lookback    ohlcv               1h           lookback      yes
mark bars, lookback    mark                1h           lookback      yes
funding                funding             event        lookback      yes
open interest          open_interest       5m           lookback      no
long/short ratio       long_short_ratio    5m           lookback      no
leverage tiers         tiers               -            (current)     yes
order-book depth       -                   -            window        no
=====================  ==================  ===========  ============  ========

.. [1] the first of :data:`backtest.timeframes.FINE_TIMEFRAMES` the exchange lists.

These are what the simulation and the population read (``simulate.load_market``,
``population.market_bars`` / ``mark_bars`` / ``resolve_open_interest``). Everything goes through
the existing download machinery (:mod:`backtest.sources.ccxt_source`, resumable: what is stored is
not asked for again). Open interest and long/short ratios come from the exchange's API where it
still serves the span; Binance's API keeps only about :data:`BINANCE_STATS_DAYS` days of them, so
for older spans (or when the API refuses) they come from the Binance archive's daily metrics
files (:mod:`backtest.sources.binance_archive`). Leverage tiers are ccxt's ``fetch_leverage_tiers``
or ``fetch_market_leverage_tiers`` (per venue; Binance's need API keys) and are kept in the
store's tier layout (``Store.write_tiers``); tiers already stored for every symbol are not asked
for again. No order-book depth dataset exists in the store yet: it is reported as not available.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from backtest.errors import FetchError, UserError
from backtest.timeframes import FINE_TIMEFRAMES

#: days of open-interest / long-short history Binance's REST API keeps (its docs: "only the data of
#: the latest 1 month is available"; a day less, to be safe near the edge)
BINANCE_STATS_DAYS = 29
STATS_TIMEFRAME = "5m"
LOOKBACK_TIMEFRAME = "1h"
DEPTH_NOTE = "not available: no depth dataset in the store yet"


@dataclass(frozen=True)
class FetchItem:
    """One thing an event needs. Times UTC ms; ``symbol`` is empty for all-symbol items (tiers)."""

    what: str
    dataset: str
    symbol: str
    timeframe: str
    start_ms: int
    end_ms: int
    required: bool


@dataclass
class FetchOutcome:
    """What fetching one item gave: ``status`` is ``complete``, ``partial``, ``missing`` or
    ``not available``; ``rows`` counts what the store holds for the item's span."""

    item: FetchItem
    status: str = "missing"
    rows: int = 0
    added: int = 0
    source: str = "-"
    why: str = ""
    #: retries were spent, or a permanent fault stopped it, before the span was complete
    fault: bool = False

    @property
    def failed(self) -> bool:
        """A required item the store does not hold, or holds only in part because of a fault
        (fetch exits non-zero); gaps the source itself has are not failures."""
        return self.item.required and (self.status in ("missing", "not available") or (self.fault and self.status != "complete"))


@dataclass
class FetchReport:
    event_id: str
    exchange: str
    store: str
    outcomes: list[FetchOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(o.failed for o in self.outcomes)

    def rows(self) -> list[dict[str, Any]]:
        """The closing table, one dict per item."""
        from backtest.store import ms_to_iso

        out = []
        for o in self.outcomes:
            i = o.item
            out.append({
                "item": i.what + ("" if i.required else " (optional)"), "symbol": i.symbol or "all", "dataset": i.dataset,
                "timeframe": i.timeframe, "span (UTC)": f"{ms_to_iso(i.start_ms)[:16]} → {ms_to_iso(i.end_ms)[:16]}",
                "status": o.status, "rows": o.rows, "new": o.added, "source": o.source, "why": o.why,
            })
        return out


def fine_timeframe(exchange_timeframes: Any) -> str:
    """The finest of FINE_TIMEFRAMES the exchange lists (all are tried when it lists none)."""
    listed = list(exchange_timeframes or {})
    for tf in FINE_TIMEFRAMES:
        if not listed or tf in listed:
            return tf
    raise FetchError(f"the exchange lists none of {', '.join(FINE_TIMEFRAMES)} as a timeframe; the event's minutes cannot be fetched")


def plan_fetch(event: Any, fine: str = "1m") -> list[FetchItem]:
    """Everything ``event`` needs (see the module docstring), in download order."""
    lb, s, e = event.lookback_start_ms, event.start_ms, event.end_ms
    items: list[FetchItem] = []
    for sym in event.symbols:
        items += [
            FetchItem("last bars, window", "ohlcv", sym, fine, s, e, True),
            FetchItem("mark bars, window", "mark", sym, fine, s, e, False),
            FetchItem("last bars, lookback", "ohlcv", sym, LOOKBACK_TIMEFRAME, lb, e, True),
            FetchItem("mark bars, lookback", "mark", sym, LOOKBACK_TIMEFRAME, lb, e, True),
            FetchItem("funding", "funding", sym, "event", lb, e, True),
            FetchItem("open interest", "open_interest", sym, STATS_TIMEFRAME, lb, e, False),
            FetchItem("long/short ratio", "long_short_ratio", sym, STATS_TIMEFRAME, lb, e, False),
        ]
    items.append(FetchItem("leverage tiers", "tiers", "", "-", s, e, True))
    items.append(FetchItem("order-book depth", "depth", "", "-", s, e, False))
    return items


def run_fetch(event: Any, *, store: Any = None, ccxt_config: Any = None, progress_on: bool = False,
              log: Callable[[str], None] | None = None) -> FetchReport:
    """Fetch every item of :func:`plan_fetch` into the store; never raises for a single item
    (its outcome says why); raises UserError only when nothing can start (bad config, unknown
    exchange)."""
    from backtest.sources.ccxt_source import CcxtDownloader
    from backtest.progress import Progress
    from backtest.sources.download import download_settings
    from backtest.store import Store

    config, own, policy = download_settings(ccxt_config)
    st = store if isinstance(store, Store) else Store(store)
    report = FetchReport(event.id, event.exchange, st.root)
    with Progress("fetch", bool(progress_on), percent=True) as progress:
        say = progress.log if progress_on else (log or (lambda m: None))
        dl = CcxtDownloader(event.exchange, config, st, policy, progress=progress, log=say if progress_on else None,
                            page_limits=own.get("page_limits"))
        dl.prepare(list(event.symbols))
        items = plan_fetch(event, fine_timeframe(getattr(dl.ex, "timeframes", None)))
        overall = progress.add(f"fetch {event.id}", len(items))
        archive = _Archive(event.exchange, st, policy, own, config, progress)
        for item in items:
            report.outcomes.append(_fetch_one(item, event, dl, archive, st))
            progress.advance(overall, 1)
    return report


class _Archive:
    """The Binance archive downloader, made once when first needed (binanceusdm / binancecoinm)."""

    def __init__(self, exchange: str, st, policy, own: dict, config: dict, progress):
        self.exchange, self.st, self.policy, self.own, self.config, self.progress = exchange, st, policy, own, config, progress
        self._dl = None

    @property
    def available(self) -> bool:
        return self.exchange in ("binanceusdm", "binancecoinm")

    def get(self):
        if self._dl is None:
            from backtest.sources.binance_archive import ArchiveDownloader

            base = self.own.get("archive_base_url") or os.environ.get("BACKTEST_ARCHIVE_URL")
            self._dl = ArchiveDownloader(self.exchange, self.st, self.policy, base_url=base, progress=self.progress, config=self.config)
        return self._dl


def _fetch_one(item: FetchItem, event: Any, dl, archive: _Archive, st) -> FetchOutcome:
    from backtest.sources.ccxt_source import lacks
    from backtest.sources.retry import PermanentFault
    from backtest.store import now_ms

    out = FetchOutcome(item)
    if item.dataset == "depth":
        out.status, out.why = "not available", DEPTH_NOTE
        return out
    if item.dataset == "tiers":
        return _tiers(out, event, dl, st)
    stats = item.dataset in ("open_interest", "long_short_ratio")
    api_serves = not (stats and event.exchange.startswith("binance") and item.start_ms < now_ms() - BINANCE_STATS_DAYS * 86_400_000)
    why = []
    if api_serves:
        try:
            r = dl.download_series(item.dataset, item.symbol, item.timeframe, item.start_ms, item.end_ms)
            _take(out, r, "ccxt")
            if r.skipped:
                why.append(r.note or "skipped")
        except (PermanentFault, UserError) as e:
            out.fault = True
            why.append(str(e))
    else:
        why.append(f"{event.exchange}'s API keeps about {BINANCE_STATS_DAYS + 1} days of {item.dataset}")
    _status(out, st, item, event.exchange)
    if stats and out.status != "complete" and archive.available:
        try:
            r = archive.get().download_series(item.dataset, item.symbol, item.timeframe, item.start_ms, item.end_ms)
            _take(out, r, "binance-archive")
        except (PermanentFault, UserError) as e:
            why.append(f"archive: {e}")
        _status(out, st, item, event.exchange)
    elif stats and out.status != "complete" and not lacks(dl.ex, item.dataset):
        why.append("no archive for this exchange")
    out.why = "; ".join(w for w in [*why, out.why] if w)
    return out


def _take(out: FetchOutcome, r, source: str) -> None:
    out.added += r.rows_added
    if out.source == "-":
        out.source = source
    elif r.rows_added and source not in out.source.split("+"):
        out.source = f"{out.source}+{source}"  # both gave rows (API for the recent part, archive for the rest)
    if r.failed:
        out.fault = True
        out.why = f"retries spent ({r.error})" if r.error else "retries spent"
    elif r.note and not r.skipped:
        out.why = r.note


def _status(out: FetchOutcome, st, item: FetchItem, exchange: str) -> None:
    """Set ``rows`` and ``status`` from what the store now holds for the item's span."""
    from backtest.store import now_ms
    from backtest.timeframes import timeframe_ms

    ts = st.stored_ts(item.dataset, exchange, item.symbol, item.timeframe, item.start_ms, item.end_ms)
    out.rows = len(ts)
    if not ts:
        out.status = "missing"
        return
    if item.timeframe == "event":
        out.status = "complete"
        return
    step = timeframe_ms(item.timeframe)
    first = -(-item.start_ms // step) * step
    expected = max(0, (min(item.end_ms, now_ms() // step * step) - first + step - 1) // step)
    out.status = "complete" if len(ts) >= expected else "partial"
    if out.status == "partial" and not out.why:
        out.why = f"{expected - len(ts)} of {expected} bars not served by the source (gaps)"


def _tiers(out: FetchOutcome, event: Any, dl, st) -> FetchOutcome:
    from backtest.sources.retry import PermanentFault

    have = st.read_tiers(event.exchange)
    missing = [s for s in event.symbols if not have.get(s)]
    if not missing:
        out.status, out.rows, out.source, out.why = "complete", len(event.symbols), "store", "already stored for every symbol"
        return out
    try:
        r = dl.download_tiers(missing)
        _take(out, r, "ccxt")
        if r.skipped:
            out.why = r.note or "skipped"
    except (PermanentFault, UserError) as e:
        out.fault = True
        out.why = f"{e}; or import them with 'backtest data import-tiers'"
    have = st.read_tiers(event.exchange)
    out.rows = sum(1 for s in event.symbols if have.get(s))
    out.status = "complete" if out.rows == len(event.symbols) else "partial" if out.rows else "missing"
    out.fault = out.fault or out.status != "complete"  # a symbol without tiers cannot be simulated
    if out.status != "complete" and not out.why:
        out.why = f"no tiers returned for {', '.join(s for s in event.symbols if not have.get(s))}"
    return out
