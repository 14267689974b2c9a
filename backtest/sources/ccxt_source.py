"""Download from any exchange ccxt supports, paging by time in our own loop.

Datasets and the ccxt methods behind them (checked against ``exchange.has``):

===================  ===================================  ==========================
dataset              ccxt method                          stored timeframe
===================  ===================================  ==========================
ohlcv / mark / index fetchOHLCV (price=mark / index)      the bar timeframe
funding              fetchFundingRateHistory              ``event``
open_interest        fetchOpenInterestHistory             the period (at least 5m)
long_short_ratio     fetchLongShortRatioHistory           the period (at least 5m)
tiers                fetchLeverageTiers / fetchMarket...  JSON beside the store
===================  ===================================  ==========================

Every request asks for one window ``[cursor, cursor + limit * period)`` with ccxt's unified
``until`` parameter, so exchanges that page forwards (Binance), backwards (OKX) or newest-first
(Bybit) all return the bars of that window. Each page is written to the store as it arrives;
what is missing is computed from the stored timestamps, so a re-run or a run after a crash asks
only for the bars not stored yet. A window the exchange has nothing for is skipped (and shows up
as a gap), so the loop always ends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import polars as pl

from backtest.errors import UserError
from backtest.sources.retry import (
    PermanentFault,
    RetriesExhausted,
    RetryPolicy,
    TemporaryFault,
    call_with_retry,
    parse_retry_after,
)
from backtest.store import EVENT_TIMEFRAME, Store, ms_to_iso, now_ms, timeframe_ms

#: the datasets this source can download, in download order
DATASETS = ("ohlcv", "mark", "index", "funding", "open_interest", "long_short_ratio", "tiers")

_HAS = {
    "ohlcv": ["fetchOHLCV"],
    "mark": ["fetchMarkOHLCV"],
    "index": ["fetchIndexOHLCV"],
    "funding": ["fetchFundingRateHistory"],
    "open_interest": ["fetchOpenInterestHistory"],
    "long_short_ratio": ["fetchLongShortRatioHistory"],
    "tiers": ["fetchLeverageTiers|fetchMarketLeverageTiers"],
}

#: page sizes where ccxt's ``features`` table does not say (or says less than ccxt really sends)
_LIMITS: dict[str, dict[str, int]] = {
    "binance": {"ohlcv": 1000, "mark": 1000, "index": 1000, "funding": 1000, "open_interest": 500, "long_short_ratio": 500},
    "bybit": {"ohlcv": 1000, "mark": 1000, "index": 1000, "funding": 200, "open_interest": 200, "long_short_ratio": 500},
    "okx": {"ohlcv": 100, "mark": 100, "index": 100, "funding": 100, "open_interest": 100, "long_short_ratio": 100},
}
_DEFAULT_LIMIT = 100

#: funding windows are sized as if settlements came every hour (the densest schedule in use)
_EVENT_STEP_MS = 3_600_000
#: open interest and long/short ratio periods exchanges publish (Binance, Bybit, OKX all have 5m+)
_STAT_MIN_MS = 300_000


@dataclass
class SeriesResult:
    """What one (dataset, symbol) download did; printed as the summary line."""

    dataset: str
    symbol: str
    timeframe: str
    rows_added: int = 0
    requests: int = 0
    failed: list[tuple[int, int]] = field(default_factory=list)  # ranges not fetched (retries spent)
    error: str | None = None  # why ``failed`` is not empty
    note: str | None = None  # e.g. unsupported dataset
    skipped: bool = False


# --------------------------------------------------------------------------------------------
# exchange construction and error classification
# --------------------------------------------------------------------------------------------
def make_exchange(exchange_id: str, config: dict[str, Any]):
    """A ccxt exchange instance with ``config`` deep-merged into its constructor arguments."""
    import ccxt  # lazy: only the download command pays for it

    if exchange_id not in ccxt.exchanges:
        close = [e for e in ccxt.exchanges if exchange_id.lower().replace("-", "") in e][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"ccxt has no exchange {exchange_id!r}{hint}; see ccxt.exchanges for the list")
    args: dict[str, Any] = {"enableRateLimit": True}
    args.update(config)
    try:
        ex = getattr(ccxt, exchange_id)(args)
    except Exception as e:  # noqa: BLE001 - bad constructor arguments from the user's config
        raise UserError(f"cannot create ccxt exchange {exchange_id} from --ccxt-config: {e}") from None
    ex.enableLastResponseHeaders = True
    ex.enableLastHttpResponse = True
    ex.enableLastJsonResponse = True
    return ex


def classify(exc: BaseException) -> str:
    """``temporary`` (retry), ``permanent`` (stop now) or ``raise`` (a bug: re-raise)."""
    import ccxt

    if isinstance(exc, TemporaryFault):
        return "temporary"
    permanent = (
        ccxt.AuthenticationError,
        ccxt.PermissionDenied,
        ccxt.AccountNotEnabled,
        ccxt.AccountSuspended,
        ccxt.BadSymbol,
        ccxt.NotSupported,
        ccxt.ArgumentsRequired,
        ccxt.BadRequest,
        ccxt.InsufficientFunds,
        ccxt.InvalidOrder,
        ccxt.MarketClosed,
    )
    if isinstance(exc, permanent):
        return "permanent"
    # 429/418 (DDoSProtection, RateLimitExceeded), 5xx (ExchangeNotAvailable, OnMaintenance),
    # timeouts, resets and cut connections are NetworkErrors; OperationFailed covers 5xx with JSON
    if isinstance(exc, (ccxt.NetworkError, ccxt.OperationFailed)):
        return "temporary"
    if isinstance(exc, ccxt.ExchangeError):
        text = str(exc).lower()
        temporary_words = (
            "json", "decode", "incomplete", "truncat", "unexpected end", "connection",  # cut-off bodies (async client)
            "too many", "too frequent", "rate limit", "try again", "busy", "timeout", "timed out", "overload", "maintenance",
        )
        if any(w in text for w in temporary_words):
            return "temporary"  # unmapped exchange codes that say "later"
        return "permanent"
    if isinstance(exc, ccxt.BaseError):
        return "permanent"
    return "raise"


def _retry_after_of(ex) -> Callable[[BaseException], float | None]:
    def get(exc: BaseException) -> float | None:
        if getattr(exc, "retry_after", None) is not None:
            return exc.retry_after  # type: ignore[attr-defined]
        headers = ex.last_response_headers or {}
        for k, v in dict(headers).items():
            if str(k).lower() == "retry-after":
                return parse_retry_after(v)
        return None

    return get


def install_transport_retry(ex, policy: RetryPolicy, on_retry=None) -> None:
    """Retry every HTTP request ccxt makes (the ``fetch`` transport hook), one request at a time.

    Retrying at this level keeps multi-request calls such as ``load_markets`` from starting over,
    and lets a body cut off midway (ccxt hands back the unparsed text) count as temporary.
    """
    inner = ex.fetch

    def fetch(url, method="GET", headers=None, body=None):
        def attempt():
            ex.last_response_headers = None
            result = inner(url, method, headers, body)
            if isinstance(result, str) and result.lstrip()[:1] in ("[", "{"):
                try:
                    json.loads(result)
                except ValueError:
                    raise TemporaryFault(f"response body cut off midway ({len(result)} bytes): {method} {url}") from None
            return result

        path = url.split("?", 1)[0]
        return call_with_retry(attempt, policy=policy, classify=classify, retry_after=_retry_after_of(ex),
                               what=f"{ex.id} {method} {path}", on_retry=on_retry)

    ex.fetch = fetch


def guarded_call(ex, fn: Callable[[], Any], *, policy: RetryPolicy, what: str, on_retry=None) -> Any:
    """Call a ccxt method: permanent faults become :class:`PermanentFault`; requests are retried
    by the transport hook, and a temporary fault raised outside it (e.g. parsing a garbled but
    complete body) gets one more whole-call attempt."""

    def attempt():
        ex.last_json_response = None
        ex.last_http_response = None
        try:
            return fn()
        except (RetriesExhausted, PermanentFault):
            raise
        except Exception as e:
            if _body_unparsed(ex) and classify(e) == "raise":
                raise TemporaryFault(f"response body not understood ({type(e).__name__}: {e})") from e
            raise

    once = RetryPolicy(max_retries=1, base=policy.base, cap=policy.cap, retry_after_cap=policy.retry_after_cap, sleep=policy.sleep)
    try:
        return call_with_retry(attempt, policy=once, classify=classify, retry_after=_retry_after_of(ex), what=what, on_retry=on_retry)
    except RetriesExhausted as e:
        raise RetriesExhausted(f"{what}: {e}", e.attempts, e.last) from e


def _body_unparsed(ex) -> bool:
    body = ex.last_http_response
    if not body or ex.last_json_response is not None:
        return False
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    text = text.strip()
    if not text:
        return False
    try:
        json.loads(text)
        return False
    except ValueError:
        return True


def restrict_market_types(ex, symbols: list[str], config: dict[str, Any]) -> None:
    """Load only the market types the symbols need (fewer requests), unless the config says otherwise."""
    if "fetchMarkets" in (config.get("options") or {}):
        return
    fm = ex.options.get("fetchMarkets")
    types = fm.get("types") if isinstance(fm, dict) else fm if isinstance(fm, list) else None
    if not types or not all(isinstance(t, str) for t in types):
        return
    want: set[str] = set()
    for sym in symbols:
        if ":" not in sym:
            want |= {"spot", "margin"}
            continue
        base_quote, settle_part = sym.split(":", 1)
        quote = base_quote.split("/")[-1]
        settle = settle_part.split("-")[0]
        dated = "-" in settle_part
        kind = "linear" if settle == quote else "inverse"
        want |= {kind, "future" if dated else "swap", "delivery" if dated else "perpetual"}
        if dated:
            want |= {"future", "futures"}
    keep = [t for t in types if t in want]
    if keep and keep != types:
        if isinstance(fm, dict):
            ex.options["fetchMarkets"] = {**fm, "types": keep}
        else:
            ex.options["fetchMarkets"] = keep


# --------------------------------------------------------------------------------------------
# capabilities
# --------------------------------------------------------------------------------------------
def lacks(ex, dataset: str) -> str | None:
    """A one-line reason when the exchange (per ccxt's ``has``) cannot give ``dataset``."""
    if dataset == "depth":
        return "ccxt serves only the live order book, not its history; download depth with --source binance-archive; skipped"
    names = _HAS[dataset][0].split("|")
    if any(ex.has.get(n) for n in names):
        return None
    names = " or ".join(names)
    return f"{ex.id} has no {dataset} history in ccxt (has['{names}'] is not true); skipped"


#: datasets whose requests carry the bar timeframe (open interest / ratio: at least 5m, see stat_timeframe)
_TIMEFRAME_DATASETS = ("ohlcv", "mark", "index", "open_interest", "long_short_ratio")


def check_timeframe(ex, timeframe: str, datasets: list[str]) -> None:
    """Refuse (UserError, before any request) a timeframe the exchange does not list in
    ``exchange.timeframes`` when a dataset needs one; exchanges that list none are not checked."""
    if not any(d in _TIMEFRAME_DATASETS for d in datasets):
        return
    valid = list(getattr(ex, "timeframes", None) or {})
    if valid and timeframe not in valid:
        raise UserError(f"{ex.id} has no {timeframe!r} timeframe; use --timeframe with one of {', '.join(valid)}")


def page_limit(ex, dataset: str, market: dict | None) -> int:
    for prefix, table in _LIMITS.items():
        if ex.id.startswith(prefix) and dataset in table:
            return table[dataset]
    try:
        mtype = (market or {}).get("type") or "swap"
        sub = "linear" if (market or {}).get("linear", True) else "inverse"
        feats = ex.features.get(mtype, {})
        feats = feats.get(sub, feats) or {}
        key = {"ohlcv": "fetchOHLCV", "mark": "fetchOHLCV", "index": "fetchOHLCV", "funding": "fetchFundingRateHistory"}.get(dataset)
        f = feats.get(key) if key else None
        if isinstance(f, dict):
            if dataset in ("mark", "index") and isinstance(f.get(dataset), int):
                return int(f[dataset])
            if isinstance(f.get("limit"), int):
                return int(f["limit"])
    except Exception:  # noqa: BLE001 - features tables vary between exchanges
        pass
    return _DEFAULT_LIMIT


def stat_timeframe(ex, timeframe: str) -> str:
    """The period used for open interest / long-short ratio: the bar timeframe, at least 5m."""
    if timeframe_ms(timeframe) >= _STAT_MIN_MS:
        return timeframe
    return "5m"


# --------------------------------------------------------------------------------------------
# what is missing
# --------------------------------------------------------------------------------------------
def missing_bar_ranges(stored, start: int, end: int, step: int) -> list[tuple[int, int]]:
    """Maximal runs ``[a, b)`` of grid points ``start + k*step`` in [start, end) not in ``stored``.

    Vectorised: years of 1m bars (millions of grid points) cost milliseconds.
    """
    import numpy as np

    if end <= start:
        return []
    grid = np.arange(start, end, step, dtype=np.int64)
    have = np.asarray(stored, dtype=np.int64)
    missing = ~np.isin(grid, have, assume_unique=False)
    if not missing.any():
        return []
    idx = np.flatnonzero(missing)
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    stops = np.concatenate((idx[breaks], [idx[-1]]))
    return [(int(grid[a]), int(grid[b]) + step if b + 1 < len(grid) else end) for a, b in zip(starts, stops)]


def missing_event_ranges(stored: list[int], start: int, end: int) -> list[tuple[int, int]]:
    """Ranges of an event series (funding) not covered by stored events.

    Head and tail are missing when they are longer than the series' usual spacing; inside, a
    spacing over 1.5 times the usual one is missing.
    """
    if not stored:
        return [(start, end)]
    if len(stored) >= 2:
        diffs = sorted(b - a for a, b in zip(stored, stored[1:]))
        spacing = diffs[len(diffs) // 2]
    else:
        spacing = 8 * 3_600_000
    out = []
    if stored[0] - start >= spacing:
        out.append((start, stored[0]))
    for a, b in zip(stored, stored[1:]):
        if b - a > 1.5 * spacing:
            out.append((a + 1, b))
    if end - stored[-1] > spacing:
        out.append((stored[-1] + 1, end))
    return out


# --------------------------------------------------------------------------------------------
# fetchers: (exchange, symbol, period, since, until, limit) -> polars frame in the store schema
# --------------------------------------------------------------------------------------------
def _bars(price: str | None):
    def fetch(ex, symbol, tf, since, until, limit) -> pl.DataFrame:
        params: dict[str, Any] = {"until": until - 1}
        if price:
            params["price"] = price
        rows = ex.fetch_ohlcv(symbol, tf, since, limit, params)
        if not isinstance(rows, list):
            raise TemporaryFault("OHLCV response is not a list")
        data = {"ts": [], "open": [], "high": [], "low": [], "close": [], "volume": []}
        for r in rows:
            if r is None or r[0] is None or any(v is None for v in r[1:5]):
                continue
            data["ts"].append(int(r[0]))
            for i, k in enumerate(("open", "high", "low", "close"), start=1):
                data[k].append(float(r[i]))
            data["volume"].append(float(r[5]) if len(r) > 5 and r[5] is not None else (0.0 if price else None))
        df = pl.DataFrame(data, schema={"ts": pl.Int64, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64, "volume": pl.Float64})
        if price:
            df = df.drop("volume")
        return df

    return fetch


def _funding(ex, symbol, tf, since, until, limit) -> pl.DataFrame:
    rows = ex.fetch_funding_rate_history(symbol, since, limit, {"until": until - 1})
    ts, rate, hours = [], [], []
    for r in rows or []:
        if r.get("timestamp") is None or r.get("fundingRate") is None:
            continue
        ts.append(int(r["timestamp"]))
        rate.append(float(r["fundingRate"]))
        info = r.get("info") or {}
        ih = info.get("fundingIntervalHours") or info.get("funding_interval_hours") if isinstance(info, dict) else None
        hours.append(float(ih) if ih not in (None, "") else None)
    return pl.DataFrame({"ts": ts, "funding_rate": rate, "interval_hours": hours}, schema={"ts": pl.Int64, "funding_rate": pl.Float64, "interval_hours": pl.Float64})


def fill_interval_hours(df: pl.DataFrame, prev_ts: int | None) -> pl.DataFrame:
    """Settlement spacing in hours where the exchange does not say it (from the previous event)."""
    if df.height == 0 or df["interval_hours"].null_count() == 0:
        return df
    ts = df["ts"].cast(pl.Int64).to_list()
    hours = []
    for i, t in enumerate(ts):
        p = ts[i - 1] if i else prev_ts
        hours.append(float(round((t - p) / 3_600_000)) if p is not None and t > p else None)
    guess = pl.Series("g", hours, dtype=pl.Float64).fill_null(strategy="backward")
    return df.with_columns(pl.col("interval_hours").fill_null(guess))


def _open_interest(ex, symbol, tf, since, until, limit) -> pl.DataFrame:
    rows = ex.fetch_open_interest_history(symbol, tf, since, limit, {"until": until - 1})
    market = ex.markets.get(symbol) or {}
    # ccxt's openInterestAmount is in contracts (OKX: 0.01 BTC); the store keeps base units.
    # (OHLCV volume needs no such step: ccxt already returns it in base units, e.g. OKX volCcy)
    size = float(market.get("contractSize") or 1.0) if market.get("linear", True) else 1.0
    ts, amount, value = [], [], []
    for r in rows or []:
        if r.get("timestamp") is None:
            continue
        ts.append(int(r["timestamp"]))
        a, v = r.get("openInterestAmount"), r.get("openInterestValue")
        amount.append(float(a) * size if a is not None else None)
        value.append(float(v) if v is not None else None)
    return pl.DataFrame(
        {"ts": ts, "open_interest": amount, "open_interest_usd": value},
        schema={"ts": pl.Int64, "open_interest": pl.Float64, "open_interest_usd": pl.Float64},
    )


def _long_short(ex, symbol, tf, since, until, limit) -> pl.DataFrame:
    params: dict[str, Any] = {"until": until - 1}
    if ex.id.startswith("bybit"):
        # ccxt 4.5 passes bybit's period through unmapped and drops since/until: speak v5 directly
        tf = {"5m": "5min", "15m": "15min", "30m": "30min"}.get(tf, tf)
        params = {"startTime": since, "endTime": until - 1}
    rows = ex.fetch_long_short_ratio_history(symbol, tf, since, limit, params)
    ts, ratio, longs, shorts = [], [], [], []
    for r in rows or []:
        if r.get("timestamp") is None or r.get("longShortRatio") is None:
            continue
        info = r.get("info") or {}
        la = _num(info, "longAccount", "buyRatio", "longRatio")
        sa = _num(info, "shortAccount", "sellRatio", "shortRatio")
        ts.append(int(r["timestamp"]))
        ratio.append(float(r["longShortRatio"]))
        longs.append(la)
        shorts.append(sa)
    return pl.DataFrame(
        {"ts": ts, "long_short_ratio": ratio, "long_account": longs, "short_account": shorts},
        schema={"ts": pl.Int64, "long_short_ratio": pl.Float64, "long_account": pl.Float64, "short_account": pl.Float64},
    )


def _num(d: Any, *keys: str) -> float | None:
    if not isinstance(d, dict):
        return None
    for k in keys:
        v = d.get(k)
        if v not in (None, ""):
            try:
                return float(v)
            except (TypeError, ValueError):
                return None
    return None


FETCHERS = {
    "ohlcv": _bars(None),
    "mark": _bars("mark"),
    "index": _bars("index"),
    "funding": _funding,
    "open_interest": _open_interest,
    "long_short_ratio": _long_short,
}


# --------------------------------------------------------------------------------------------
# the download loop
# --------------------------------------------------------------------------------------------
class CcxtDownloader:
    def __init__(self, exchange_id: str, config: dict[str, Any], store: Store, policy: RetryPolicy, progress=None, log=None,
                 page_limits: dict[str, int] | None = None):
        #: per-dataset page sizes from the ``page_limits`` table of --ccxt-config (smaller than the
        #: exchange's limit is always safe)
        self.page_limits = {k: int(v) for k, v in (page_limits or {}).items()}
        self.ex = make_exchange(exchange_id, config)
        self.config = config
        install_transport_retry(self.ex, policy, on_retry=self._on_transport_retry)
        self.exchange_id = exchange_id
        self.store = store
        self.policy = policy
        self.progress = progress
        self.log = log or (lambda msg: None)
        self._markets_loaded = False
        self._markets_error: RetriesExhausted | None = None

    def _on_transport_retry(self, n, exc, wait):
        self.log(f"retry {n}/{self.policy.max_retries} in {wait:.1f}s: {type(exc).__name__}: {str(exc)[:120]}")

    def prepare(self, symbols: list[str], timeframe: str | None = None, datasets: list[str] | None = None) -> None:
        """Checks and set-up that need no request: the timeframe, the market types to load."""
        if timeframe is not None:
            check_timeframe(self.ex, timeframe, datasets or [])
        restrict_market_types(self.ex, symbols, self.config)

    def call(self, fn, what: str):
        def on_retry(n, exc, wait):
            self.log(f"retry {n}/{self.policy.max_retries} in {wait:.1f}s: {what}: {type(exc).__name__}")

        return guarded_call(self.ex, fn, policy=self.policy, what=what, on_retry=on_retry)

    def load_markets(self) -> None:
        """Load the market list once per run; a failure is remembered, so a dead exchange
        costs one round of retries, not one per (symbol, dataset)."""
        if self._markets_error is not None:
            raise self._markets_error
        if not self._markets_loaded:
            try:
                self.call(lambda: self.ex.load_markets(), f"{self.exchange_id} load_markets")
            except RetriesExhausted as e:
                self._markets_error = e
                raise
            self._markets_loaded = True

    def market(self, symbol: str) -> dict:
        self.load_markets()
        if symbol not in self.ex.markets:
            near = [s for s in self.ex.symbols if s.split("/")[0] == symbol.split("/")[0]][:6]
            hint = f"; {self.exchange_id} has e.g. {', '.join(near)}" if near else ""
            raise PermanentFault(f"{self.exchange_id} has no market {symbol!r}{hint}")
        return self.ex.markets[symbol]

    # ---- one series ------------------------------------------------------------------
    def download_series(self, dataset: str, symbol: str, timeframe: str, since: int, until: int) -> SeriesResult:
        reason = lacks(self.ex, dataset)
        if dataset in ("open_interest", "long_short_ratio"):
            timeframe = stat_timeframe(self.ex, timeframe)
        stored_tf = EVENT_TIMEFRAME if dataset == "funding" else timeframe
        res = SeriesResult(dataset, symbol, stored_tf)
        if reason:
            res.note, res.skipped = reason, True
            return res
        fetch = FETCHERS[dataset]
        if dataset == "funding":
            step = _EVENT_STEP_MS
            stored = self.store.stored_ts(dataset, self.exchange_id, symbol, stored_tf, since, until)
            ranges = missing_event_ranges(stored, since, until)
        else:
            step = timeframe_ms(timeframe)
            start = -(-since // step) * step  # first bar open at or after since
            end = min(until, (now_ms() // step) * step)  # never the bar still open
            stored = self.store.stored_ts(dataset, self.exchange_id, symbol, stored_tf, start, end)
            ranges = missing_bar_ranges(stored, start, end, step)
        if not ranges:
            return res  # everything is stored: not even the market list is asked for
        try:
            market = self.market(symbol)
        except RetriesExhausted as e:
            res.failed, res.error = list(ranges), str(e)
            return res
        limit = self.page_limits.get(dataset) or page_limit(self.ex, dataset, market)
        total = sum(b - a for a, b in ranges)
        task = self.progress.add(f"{symbol} {dataset}", total) if self.progress and total else None
        window = step * limit
        prev_event: int | None = None
        for a, b in ranges:
            cursor = a
            while cursor < b:
                w_end = min(b, cursor + window)
                what = f"{self.exchange_id} {dataset} {symbol} {ms_to_iso(cursor)}..{ms_to_iso(w_end)}"
                try:
                    df = self.call(lambda c=cursor, w=w_end: fetch(self.ex, symbol, timeframe, c, w, limit), what)
                except PermanentFault as e:
                    if dataset in ("open_interest", "long_short_ratio") and self.exchange_id.startswith("binance"):
                        raise PermanentFault(
                            f"{e}; Binance's REST API keeps only about 30 days of {dataset} history: "
                            "use --source binance-archive for older data"
                        ) from None
                    raise
                except RetriesExhausted as e:
                    res.failed.append((cursor, b))
                    res.error = str(e)
                    break
                res.requests += 1
                df = df.filter((pl.col("ts") >= cursor) & (pl.col("ts") < b))
                if dataset != "funding":
                    df = df.filter((pl.col("ts") - a) % step == 0)
                if df.height:
                    df = df.unique("ts", keep="last").sort("ts").with_columns(pl.lit(symbol).alias("symbol"))
                    if dataset == "funding":
                        before = [t for t in stored if t < int(df["ts"].min())]
                        df = fill_interval_hours(df, prev_event if prev_event is not None else (before[-1] if before else None))
                        prev_event = int(df["ts"].max())
                    wr = self.store.write(dataset, df, exchange=self.exchange_id, timeframe=stored_tf)
                    res.rows_added += wr.rows_added
                    last = int(df["ts"].max())
                    nxt = last + (step if dataset != "funding" else 1)
                else:
                    nxt = w_end  # nothing in this window: the exchange has a gap here
                if task is not None:
                    self.progress.advance(task, min(nxt, b) - cursor)
                cursor = max(nxt, cursor + 1)
            if res.failed:
                # later ranges would fail the same way; name them all as missing
                idx = ranges.index((a, b))
                res.failed.extend(ranges[idx + 1:])
                break
        if task is not None:
            self.progress.done(task)
        return res

    # ---- leverage tiers -----------------------------------------------------------------
    def download_tiers(self, symbols: list[str]) -> SeriesResult:
        res = SeriesResult("tiers", ",".join(symbols), "-")
        reason = lacks(self.ex, "tiers")
        if reason:
            res.note, res.skipped = reason, True
            return res
        tiers: dict[str, list] = {}
        try:
            for s in symbols:
                self.market(s)
            if self.ex.has.get("fetchLeverageTiers"):
                got = self.call(lambda: self.ex.fetch_leverage_tiers(symbols), f"{self.exchange_id} leverage tiers")
                res.requests += 1
                tiers = {s: got[s] for s in symbols if s in (got or {})}
            else:
                for s in symbols:
                    tiers[s] = self.call(lambda s=s: self.ex.fetch_market_leverage_tiers(s), f"{self.exchange_id} leverage tiers {s}")
                    res.requests += 1
        except PermanentFault as e:
            if "Authentication" in str(e) or "apiKey" in str(e) or "PermissionDenied" in str(e):
                raise PermanentFault(
                    f"{self.exchange_id} leverage tiers need API keys: put apiKey and secret in --ccxt-config ({e})"
                ) from None
            raise
        except RetriesExhausted as e:
            res.failed.append((0, 0))
            res.error = str(e)
            return res
        clean = json.loads(json.dumps(tiers, default=str))
        if clean:
            self.store.write_tiers(self.exchange_id, clean)
        res.rows_added = sum(len(v) for v in clean.values())
        missing = [s for s in symbols if s not in clean]
        if missing:
            res.note = f"no tiers returned for {', '.join(missing)}"
        return res

