"""Binance's public data archive (data.binance.vision): history older than the REST APIs keep.

Files used (USDⓈ-M under ``futures/um``, COIN-M under ``futures/cm``)::

    data/futures/um/{daily|monthly}/klines/{SYM}/{tf}/{SYM}-{tf}-{YYYY-MM-DD|YYYY-MM}.zip     -> ohlcv
    data/futures/um/{daily|monthly}/markPriceKlines/{SYM}/{tf}/...                            -> mark
    data/futures/um/{daily|monthly}/indexPriceKlines/{SYM}/{tf}/...                           -> index
    data/futures/um/monthly/fundingRate/{SYM}/{SYM}-fundingRate-{YYYY-MM}.zip                  -> funding
    data/futures/um/daily/metrics/{SYM}/{SYM}-metrics-{YYYY-MM-DD}.zip   -> open_interest, long_short_ratio (5m)
    data/futures/um/daily/bookDepth/{SYM}/{SYM}-bookDepth-{YYYY-MM-DD}.zip -> depth (~30 s snapshots, ±1..5 %)

Each zip has a ``.CHECKSUM`` file beside it (``<sha256>  <name>``); it is verified whenever the
archive publishes one, and a mismatch is retried like a cut-off download. A file the archive does
not have (404) is a gap, not an error: daily files appear the day after, monthly ones after the
month ends. Only the days/months that hold bars not yet stored are fetched; each file's rows are
written to the store as soon as it is verified, so an interrupted run resumes where it stopped.

The base URL (default ``https://data.binance.vision``) is overridable with ``archive_base_url`` in
``--ccxt-config`` or ``$BACKTEST_ARCHIVE_URL``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from datetime import datetime, timedelta, timezone
from typing import Any

import polars as pl

from backtest.errors import UserError
from backtest.sources import book_depth
from backtest.sources.ccxt_source import SeriesResult, fill_interval_hours, missing_bar_ranges, missing_event_ranges
from backtest.sources.retry import RetriesExhausted, RetryPolicy, TemporaryFault, call_with_retry, parse_retry_after
from backtest.store import EVENT_TIMEFRAME, Store, now_ms, timeframe_ms

DEFAULT_BASE_URL = "https://data.binance.vision"
_KIND = {"ohlcv": "klines", "mark": "markPriceKlines", "index": "indexPriceKlines"}
#: returned by ``_fetch_for`` when a file could not be fetched after every retry
_FAILED = object()
_KLINE_TFS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
_MONTHLY_MIN_DAYS = 8  # fetch a month's file when more than this many of its days are missing
_METRICS_TF = "5m"


class NotPublished(Exception):
    """The archive has no such file (HTTP 404)."""


def archive_symbol(symbol: str, market: str) -> tuple[str, str]:
    """(archive file symbol, ccxt symbol) for ``BTC/USDT:USDT`` or ``BTCUSDT`` (``BTCUSD_PERP`` for cm)."""
    if "/" in symbol:
        base, rest = symbol.split("/", 1)
        quote, _, settle = rest.partition(":")
        if market == "cm":
            return f"{base}{quote}_PERP", symbol
        return f"{base}{quote}", symbol
    s = symbol.upper()
    if market == "cm":
        b = s.split("_")[0]
        return s, f"{b[:-3]}/{b[-3:]}:{b[:-3]}"
    for q in ("USDT", "USDC", "BUSD"):
        if s.endswith(q) and len(s) > len(q):
            return s, f"{s[:-len(q)]}/{q}:{q}"
    raise UserError(f"cannot tell the quote currency of {symbol!r}; give a ccxt symbol such as BTC/USDT:USDT")


def _day(ms: int) -> datetime:
    d = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _month_start(dt: datetime) -> datetime:
    return datetime(dt.year, dt.month, 1, tzinfo=timezone.utc)


def _next_month(dt: datetime) -> datetime:
    return datetime(dt.year + (dt.month == 12), 1 if dt.month == 12 else dt.month + 1, 1, tzinfo=timezone.utc)


def _check_base_url(url: object) -> str:
    """``archive_base_url`` must be an http(s) URL with a host: a malformed one is a permanent
    error (one line, exit 2), never retried as a network fault."""
    from urllib.parse import urlparse

    text = url.strip() if isinstance(url, str) else ""
    try:
        u = urlparse(text)
        ok = u.scheme in ("http", "https") and bool(u.hostname) and (u.port is None or u.port > 0)
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in text):
        raise UserError(f"archive_base_url {url!r} is not an http(s) URL with a host; give e.g. https://data.binance.vision "
                        "(in --ccxt-config or BACKTEST_ARCHIVE_URL)")
    return text.rstrip("/")


class ArchiveDownloader:
    def __init__(self, exchange_id: str, store: Store, policy: RetryPolicy, *, base_url: str | None = None, progress=None, config: dict | None = None):
        if exchange_id == "binanceusdm":
            self.market = "um"
        elif exchange_id == "binancecoinm":
            self.market = "cm"
        else:
            raise UserError(f"--source binance-archive serves binanceusdm (USDⓈ-M) or binancecoinm (COIN-M), not {exchange_id!r}")
        self.exchange_id = exchange_id
        self.store = store
        self.policy = policy
        self.base = _check_base_url(base_url or DEFAULT_BASE_URL)
        self.progress = progress
        config = config or {}
        self.proxies = config.get("proxies") if isinstance(config.get("proxies"), dict) else None
        self.timeout = float(config.get("timeout", 30_000)) / 1000
        self._session = None
        self._metrics_cache: dict[tuple[str, str], pl.DataFrame | None] = {}
        self.files_missing: list[str] = []

    # ---- HTTP ------------------------------------------------------------------------------
    def _get(self, url: str) -> bytes:
        import requests

        if self._session is None:
            self._session = requests.Session()
        try:
            r = self._session.get(url, timeout=self.timeout, proxies=self.proxies)
        except (requests.Timeout, requests.ConnectionError) as e:
            raise TemporaryFault(f"{type(e).__name__} on {url}") from e
        except requests.RequestException as e:  # ChunkedEncodingError and the like: body cut off
            raise TemporaryFault(f"{type(e).__name__} on {url}") from e
        if r.status_code == 404:
            raise NotPublished(url)
        if r.status_code in (418, 429) or r.status_code >= 500:
            raise TemporaryFault(f"HTTP {r.status_code} on {url}", parse_retry_after(r.headers.get("Retry-After")))
        if r.status_code != 200:
            raise _Permanent(f"HTTP {r.status_code} on {url}")
        expected = r.headers.get("Content-Length")
        if expected is not None and expected.isdigit() and int(expected) != len(r.content):
            raise TemporaryFault(f"body cut off ({len(r.content)} of {expected} bytes) on {url}")
        return r.content

    def fetch_file(self, path: str) -> bytes | None:
        """The verified zip at ``path`` (below the base URL), or None when not published."""
        url = f"{self.base}/{path}"

        def attempt() -> bytes | None:
            try:
                data = self._get(url)
            except NotPublished:
                return None
            try:
                checksum = self._get(url + ".CHECKSUM").decode("ascii", "replace").split()
            except NotPublished:
                checksum = []
            if checksum:
                got = hashlib.sha256(data).hexdigest()
                if got.lower() != checksum[0].lower():
                    raise TemporaryFault(f"sha256 mismatch for {url.rsplit('/', 1)[-1]} (got {got[:12]}..., published {checksum[0][:12]}...)")
            try:
                zipfile.ZipFile(io.BytesIO(data)).testzip()
            except zipfile.BadZipFile as e:
                raise TemporaryFault(f"{url.rsplit('/', 1)[-1]} is not a whole zip file ({e})") from e
            return data

        def classify(e: BaseException) -> str:
            if isinstance(e, TemporaryFault):
                return "temporary"
            if isinstance(e, _Permanent):
                return "permanent"
            return "raise"

        return call_with_retry(attempt, policy=self.policy, classify=classify, what=f"archive {path}")

    # ---- file lists -------------------------------------------------------------------------
    def _prefix(self) -> str:
        return f"data/futures/{self.market}"

    def kline_files(self, kind: str, sym: str, tf: str, ranges: list[tuple[int, int]]) -> list[tuple[str, int, int, list[str]]]:
        """(monthly path, start, end, fallback daily paths) or (daily path, start, end, []) covering ``ranges``."""
        days: dict[datetime, None] = {}
        for a, b in ranges:
            d = _day(a)
            while _ms(d) < b:
                days[d] = None
                d += timedelta(days=1)
        by_month: dict[datetime, list[datetime]] = {}
        for d in days:
            by_month.setdefault(_month_start(d), []).append(d)
        today = _day(now_ms())
        out = []
        for m, ds in sorted(by_month.items()):
            daily = [(f"{self._prefix()}/daily/{kind}/{sym}/{tf}/{sym}-{tf}-{d:%Y-%m-%d}.zip", _ms(d), _ms(d + timedelta(days=1))) for d in sorted(ds)]
            if len(ds) > _MONTHLY_MIN_DAYS and _next_month(m) <= today:
                out.append((f"{self._prefix()}/monthly/{kind}/{sym}/{tf}/{sym}-{tf}-{m:%Y-%m}.zip", _ms(m), _ms(_next_month(m)), daily))
            else:
                out.extend((p, a, b, []) for p, a, b in daily)
        return out

    # ---- parsing ----------------------------------------------------------------------------
    @staticmethod
    def _rows(data: bytes) -> list[list[str]]:
        zf = zipfile.ZipFile(io.BytesIO(data))
        rows: list[list[str]] = []
        for name in zf.namelist():
            if not name.lower().endswith(".csv"):
                continue
            text = zf.read(name).decode("utf-8", "replace")
            for row in csv.reader(io.StringIO(text)):
                if row:
                    rows.append(row)
        if rows and not _is_number(rows[0][0]):
            header = rows[0]
            rows = [header] + [r for r in rows[1:] if r != header]
        return rows

    @staticmethod
    def parse_klines(data: bytes, symbol: str, price: bool) -> pl.DataFrame:
        rows = ArchiveDownloader._rows(data)
        if rows and not _is_number(rows[0][0]):
            rows = rows[1:]
        ts = [int(r[0]) for r in rows]
        ts = [t // 1000 if t > 100_000_000_000_000 else t for t in ts]  # newer files may carry microseconds
        cols = {
            "ts": ts,
            "symbol": [symbol] * len(rows),
            "open": [float(r[1]) for r in rows],
            "high": [float(r[2]) for r in rows],
            "low": [float(r[3]) for r in rows],
            "close": [float(r[4]) for r in rows],
        }
        if not price:
            cols["volume"] = [float(r[5]) for r in rows]
            cols["quote_volume"] = [float(r[7]) if len(r) > 7 and r[7] != "" else None for r in rows]
        return pl.DataFrame(cols, schema_overrides={"ts": pl.Int64})

    @staticmethod
    def parse_funding(data: bytes, symbol: str) -> pl.DataFrame:
        rows = ArchiveDownloader._rows(data)
        header = rows[0] if rows and not _is_number(rows[0][0]) else ["calc_time", "funding_interval_hours", "last_funding_rate"]
        idx = {h: i for i, h in enumerate(header)}
        body = rows[1:] if rows and not _is_number(rows[0][0]) else rows
        # calc_time carries a few ms of jitter; settlements happen on the second
        ts = [int(round(int(r[idx["calc_time"]]) / 1000)) * 1000 for r in body]
        return pl.DataFrame(
            {
                "ts": ts,
                "symbol": [symbol] * len(body),
                "funding_rate": [float(r[idx["last_funding_rate"]]) for r in body],
                "interval_hours": [float(r[idx["funding_interval_hours"]]) if r[idx["funding_interval_hours"]] != "" else None for r in body],
            },
            schema_overrides={"ts": pl.Int64, "interval_hours": pl.Float64},
        )

    @staticmethod
    def parse_metrics(data: bytes, symbol: str) -> pl.DataFrame:
        rows = ArchiveDownloader._rows(data)
        header, body = rows[0], rows[1:]
        idx = {h: i for i, h in enumerate(header)}

        def num(r, k):
            i = idx.get(k)
            return float(r[i]) if i is not None and i < len(r) and r[i] != "" else None

        ts = []
        for r in body:
            t = r[idx["create_time"]]
            ts.append(int(t) if _is_number(t) else _ms(datetime.fromisoformat(t).replace(tzinfo=timezone.utc)))
        ratio = [num(r, "count_long_short_ratio") for r in body]
        return pl.DataFrame(
            {
                "ts": ts,
                "symbol": [symbol] * len(body),
                "open_interest": [num(r, "sum_open_interest") for r in body],
                "open_interest_usd": [num(r, "sum_open_interest_value") for r in body],
                "long_short_ratio": ratio,
                "long_account": [x / (1 + x) if x is not None else None for x in ratio],
                "short_account": [1 / (1 + x) if x is not None else None for x in ratio],
            },
            schema_overrides={"ts": pl.Int64},
        )

    # ---- one series ---------------------------------------------------------------------------
    def download_series(self, dataset: str, symbol: str, timeframe: str, since: int, until: int) -> SeriesResult:
        sym, ccxt_symbol = archive_symbol(symbol, self.market)
        if dataset == "tiers":
            r = SeriesResult("tiers", ccxt_symbol, "-")
            r.note, r.skipped = "the Binance archive has no leverage tiers; use --source ccxt with API keys, or backtest data import-tiers", True
            return r
        if dataset in _KIND:
            if timeframe not in _KLINE_TFS:
                raise UserError(f"the Binance archive has klines in {', '.join(_KLINE_TFS)}, not {timeframe}")
            return self._bars(dataset, sym, ccxt_symbol, timeframe, since, until)
        if dataset == "funding":
            return self._funding(sym, ccxt_symbol, since, until)
        if dataset in ("open_interest", "long_short_ratio"):
            return self._metrics(dataset, sym, ccxt_symbol, since, until)
        if dataset == "depth":
            return self._book_depth(sym, ccxt_symbol, since, until)
        raise UserError(f"the Binance archive has no {dataset} data")

    def _task(self, label: str, total: int):
        return self.progress.add(label, total) if self.progress and total else None

    def _grid_ranges(self, dataset, ccxt_symbol, tf, since, until):
        step = timeframe_ms(tf)
        start = -(-since // step) * step
        end = min(until, (now_ms() // step) * step)
        stored = self.store.stored_ts(dataset, self.exchange_id, ccxt_symbol, tf, start, end)
        return missing_bar_ranges(stored, start, end, step) if end > start else []

    def _bars(self, dataset, sym, ccxt_symbol, tf, since, until) -> SeriesResult:
        res = SeriesResult(dataset, ccxt_symbol, tf)
        ranges = self._grid_ranges(dataset, ccxt_symbol, tf, since, until)
        files = self.kline_files(_KIND[dataset], sym, tf, ranges)
        task = self._task(f"{ccxt_symbol} {dataset} (archive)", len(files))
        for path, a, b, fallback in files:
            todo = [(path, a, b)]
            while todo:
                p, fa, fb = todo.pop(0)
                lo, hi = max(fa, since), min(fb, until)
                data = self._fetch_for(res, p, lo, hi)
                if data is _FAILED:
                    continue
                if data is None:
                    if fallback and p == path:
                        todo.extend((q, qa, qb) for q, qa, qb in fallback)
                        continue
                    self.files_missing.append(p)
                    continue
                df = self.parse_klines(data, ccxt_symbol, price=dataset != "ohlcv")
                df = df.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi))
                if df.height:
                    res.rows_added += self.store.write(dataset, df, exchange=self.exchange_id, timeframe=tf).rows_added
            if self.progress and task is not None:
                self.progress.advance(task, 1)
        self._note_missing(res)
        return res

    def _fetch_for(self, res: SeriesResult, path: str, lo: int, hi: int):
        """``fetch_file(path)`` on behalf of ``res``: counts the request, or, when retries are spent,
        records ``[lo, hi)`` (UTC ms) as failed and returns ``_FAILED``. ``None`` = no such file."""
        try:
            data = self.fetch_file(path)
        except RetriesExhausted as e:
            res.failed.append((lo, hi))
            res.error = str(e)
            return _FAILED
        res.requests += 1
        return data

    def _funding(self, sym, ccxt_symbol, since, until) -> SeriesResult:
        res = SeriesResult("funding", ccxt_symbol, EVENT_TIMEFRAME)
        stored = self.store.stored_ts("funding", self.exchange_id, ccxt_symbol, EVENT_TIMEFRAME, since, until)
        ranges = missing_event_ranges(stored, since, until)
        months: dict[datetime, None] = {}
        for a, b in ranges:
            m = _month_start(_day(a))
            while _ms(m) < b:
                months[m] = None
                m = _next_month(m)
        task = self._task(f"{ccxt_symbol} funding (archive)", len(months))
        prev = None
        for m in sorted(months):
            path = f"{self._prefix()}/monthly/fundingRate/{sym}/{sym}-fundingRate-{m:%Y-%m}.zip"
            lo, hi = max(_ms(m), since), min(_ms(_next_month(m)), until)
            data = self._fetch_for(res, path, lo, hi)
            if data is _FAILED:
                continue
            if data is None:
                self.files_missing.append(path)
            else:
                df = self.parse_funding(data, ccxt_symbol).filter((pl.col("ts") >= lo) & (pl.col("ts") < hi)).sort("ts")
                df = fill_interval_hours(df, prev)
                if df.height:
                    prev = int(df["ts"].max())
                    res.rows_added += self.store.write("funding", df, exchange=self.exchange_id, timeframe=EVENT_TIMEFRAME).rows_added
            if self.progress and task is not None:
                self.progress.advance(task, 1)
        self._note_missing(res, recent_hint="monthly funding files appear after the month ends; use --source ccxt for the current month")
        return res

    def _metrics(self, dataset, sym, ccxt_symbol, since, until) -> SeriesResult:
        res = SeriesResult(dataset, ccxt_symbol, _METRICS_TF)
        ranges = self._grid_ranges(dataset, ccxt_symbol, _METRICS_TF, since, until)
        days: dict[datetime, None] = {}
        for a, b in ranges:
            d = _day(a)
            while _ms(d) < b:
                days[d] = None
                d += timedelta(days=1)
        task = self._task(f"{ccxt_symbol} {dataset} (archive)", len(days))
        cols = ["ts", "symbol", "open_interest", "open_interest_usd"] if dataset == "open_interest" else ["ts", "symbol", "long_short_ratio", "long_account", "short_account"]
        for d in sorted(days):
            path = f"{self._prefix()}/daily/metrics/{sym}/{sym}-metrics-{d:%Y-%m-%d}.zip"
            lo, hi = max(_ms(d), since), min(_ms(d + timedelta(days=1)), until)
            key = (path, "")
            if key not in self._metrics_cache:
                data = self._fetch_for(res, path, lo, hi)
                if data is _FAILED:
                    continue
                self._metrics_cache[key] = self.parse_metrics(data, ccxt_symbol) if data is not None else None
                if len(self._metrics_cache) > 64:
                    self._metrics_cache.pop(next(iter(self._metrics_cache)))
            df = self._metrics_cache[key]
            if df is None:
                self.files_missing.append(path)
                continue
            df = df.select(cols).filter((pl.col("ts") >= lo) & (pl.col("ts") < hi))
            if dataset == "long_short_ratio":
                df = df.filter(pl.col("long_short_ratio").is_not_null())
            if df.height:
                res.rows_added += self.store.write(dataset, df, exchange=self.exchange_id, timeframe=_METRICS_TF).rows_added
            if self.progress and task is not None:
                self.progress.advance(task, 1)
        if dataset == "open_interest" or dataset == "long_short_ratio":
            extra = "the archive's metrics files are 5-minute"
            res.note = extra
        self._note_missing(res)
        return res

    @staticmethod
    def parse_book_depth(data: bytes, symbol: str) -> pl.DataFrame:
        """A daily ``bookDepth`` file as a ``depth`` frame, stale bid buckets flagged."""
        rows = ArchiveDownloader._rows(data)
        body = rows[1:] if rows and not _is_number(rows[0][0].strip()[:4]) else rows
        return book_depth.frame_from_columns(
            [book_depth.parse_timestamp(r[0]) for r in body], [int(r[1]) for r in body],
            [float(r[2]) for r in body], [float(r[3]) for r in body], symbol,
        )

    def _book_depth(self, sym, ccxt_symbol, since, until) -> SeriesResult:
        """Daily bookDepth files for the days of [since, until) that hold no stored snapshot
        (each file is written whole, so a day is either stored or not)."""
        res = SeriesResult("depth", ccxt_symbol, EVENT_TIMEFRAME)
        stored = {t // 86_400_000 for t in self.store.stored_ts("depth", self.exchange_id, ccxt_symbol, EVENT_TIMEFRAME, since, until)}
        days = []
        d = _day(since)
        while _ms(d) < until:
            if _ms(d) // 86_400_000 not in stored:
                days.append(d)
            d += timedelta(days=1)
        task = self._task(f"{ccxt_symbol} depth (archive)", len(days))
        notes = []
        for d in days:
            path = f"{self._prefix()}/daily/bookDepth/{sym}/{sym}-bookDepth-{d:%Y-%m-%d}.zip"
            lo, hi = max(_ms(d), since), min(_ms(d + timedelta(days=1)), until)
            data = self._fetch_for(res, path, lo, hi)
            if data is _FAILED:
                continue
            if data is None:
                self.files_missing.append(path)
                continue
            df = self.parse_book_depth(data, ccxt_symbol).filter((pl.col("ts") >= lo) & (pl.col("ts") < hi))
            if df.height:
                res.rows_added += self.store.write("depth", df, exchange=self.exchange_id, timeframe=EVENT_TIMEFRAME).rows_added
                if (note := book_depth.stale_summary(df)):
                    notes.append(f"{d:%Y-%m-%d}: {note}")
            if self.progress and task is not None:
                self.progress.advance(task, 1)
        res.note = "; ".join(notes) if notes else None
        self._note_missing(res)
        return res

    def _note_missing(self, res: SeriesResult, recent_hint: str | None = None) -> None:
        if self.files_missing:
            n = len(self.files_missing)
            first = self.files_missing[0].rsplit("/", 1)[-1]
            msg = f"{n} archive file(s) not published, e.g. {first}"
            if recent_hint:
                msg += f"; {recent_hint}"
            res.note = f"{res.note}; {msg}" if res.note else msg
            self.files_missing = []


class _Permanent(Exception):
    pass


def _is_number(s: Any) -> bool:
    try:
        float(s)
        return True
    except (TypeError, ValueError):
        return False


__all__ = ["ArchiveDownloader", "archive_symbol", "DEFAULT_BASE_URL"]
