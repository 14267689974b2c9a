"""The Parquet market-data store: layout, schemas, atomic merge-writes, scans, gaps, verify.

Layout (hive style, one file per partition)::

    {root}/{dataset}/exchange={ex}/symbol={SYM}/timeframe={tf}/year={YYYY}/month={MM}/part.parquet
    {root}/leverage_tiers/exchange={ex}/tiers.json        (ccxt fetchLeverageTiers format)

``SYM`` is the path-safe form of the ccxt symbol (``BTC/USDT:USDT`` -> ``BTC_USDT_USDT``); the
ccxt symbol itself is kept in the ``symbol`` column. Datasets without a bar period (funding,
liquidations, order-book depth snapshots) use ``timeframe=event``.

Every dataset has one explicit schema (:data:`SCHEMAS`); ``ts`` is ``Datetime("ms", "UTC")``, the
bar's open time or the event's time, and ``fetched_at`` records when a row arrived. Schemas are
enforced on every write and checked on read. Writes merge with what is stored (last write wins on
the dataset's key, normally ``ts``), sort, and replace the file atomically: a temporary file is
written beside it and renamed over it, so a killed process never leaves a half-written or lost
partition. Gaps are never filled; :meth:`Store.gaps` reports them.

The root is a local folder (default ``data/`` of the project, or ``$BACKTEST_STORE``) or an
``s3://bucket/prefix`` URL; S3 credentials and endpoint come from the usual ``AWS_*`` variables
(``AWS_ENDPOINT_URL`` for an S3-compatible server).
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl

from backtest.errors import StoreError, TimeframeError, UserError
from backtest.path_parts import check_part
from backtest.timeframes import timeframe_ms  # noqa: F401  (re-exported: the one table)

TS = pl.Datetime("ms", "UTC")

_BASE = {"ts": TS, "symbol": pl.String}
_OHLC = {"open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64}

#: dataset -> ordered schema. Every file of the dataset has exactly these columns and dtypes.
SCHEMAS: dict[str, dict[str, Any]] = {
    # last-traded-price bars; volume in base units (contracts), quote_volume in quote ccy (nullable)
    "ohlcv": {**_BASE, **_OHLC, "volume": pl.Float64, "quote_volume": pl.Float64, "fetched_at": TS},
    "mark": {**_BASE, **_OHLC, "fetched_at": TS},
    "index": {**_BASE, **_OHLC, "fetched_at": TS},
    # one row per settlement; funding_rate per period (0.0001 = 0.01 %), longs pay when > 0
    "funding": {**_BASE, "funding_rate": pl.Float64, "interval_hours": pl.Float64, "fetched_at": TS},
    # open interest at ts, in base units and in USD (either may be null where not given)
    "open_interest": {**_BASE, "open_interest": pl.Float64, "open_interest_usd": pl.Float64, "fetched_at": TS},
    # long/short account ratio at ts; long_account/short_account are shares in [0, 1]
    "long_short_ratio": {
        **_BASE,
        "long_short_ratio": pl.Float64,
        "long_account": pl.Float64,
        "short_account": pl.Float64,
        "fetched_at": TS,
    },
    # order-book depth snapshots (Binance public-archive ``bookDepth`` layout, about every 30 s):
    # depth (base units) and notional_usd resting between mid and ``percentage`` % from mid,
    # cumulative (-1..-5 bids, +1..+5 asks); ``stale`` marks buckets that cannot be a live book
    # (a bid's average price at or above the asks': backtest.sources.book_depth.flag_stale)
    "depth": {
        **_BASE,
        "percentage": pl.Int8,
        "depth": pl.Float64,
        "notional_usd": pl.Float64,
        "stale": pl.Boolean,
        "fetched_at": TS,
    },
    # forced orders as published by the exchange; side is the liquidated position (+1 long, -1 short)
    "liquidations": {
        **_BASE,
        "side": pl.Int8,
        "price": pl.Float64,
        "qty": pl.Float64,
        "notional_usd": pl.Float64,
        "fetched_at": TS,
    },
}

#: columns that identify a row (merge key: last write wins)
KEYS: dict[str, list[str]] = {name: ["ts"] for name in SCHEMAS}
KEYS["liquidations"] = ["ts", "side", "price", "qty"]
KEYS["depth"] = ["ts", "percentage"]

#: columns that must not be null
REQUIRED: dict[str, list[str]] = {
    "ohlcv": ["ts", "symbol", "open", "high", "low", "close", "volume"],
    "mark": ["ts", "symbol", "open", "high", "low", "close"],
    "index": ["ts", "symbol", "open", "high", "low", "close"],
    "funding": ["ts", "symbol", "funding_rate"],
    "open_interest": ["ts", "symbol"],
    "long_short_ratio": ["ts", "symbol", "long_short_ratio"],
    "liquidations": ["ts", "symbol", "side", "price", "qty"],
    "depth": ["ts", "symbol", "percentage", "depth", "notional_usd", "stale"],
}

EVENT_TIMEFRAME = "event"
#: datasets without a bar period: stored under ``timeframe=event`` only
EVENT_DATASETS = ("funding", "liquidations", "depth")
BAR_DATASETS = ("ohlcv", "mark", "index")
PART_FILE = "part.parquet"





# --------------------------------------------------------------------------------------------
# names and times
# --------------------------------------------------------------------------------------------
def safe_symbol(symbol: str) -> str:
    """Path-safe form of a ccxt symbol: ``BTC/USDT:USDT`` -> ``BTC_USDT_USDT``."""
    return re.sub(r"[^A-Za-z0-9.\-]", "_", symbol)


def to_ms(value: Any) -> int:
    """UTC milliseconds from an int (ms), a datetime, or an ISO-8601 string with a zone (or Z).

    A string without a zone is rejected: times are UTC and must say so.
    """
    if value is None:
        raise StoreError("missing time")
    if isinstance(value, bool):
        raise StoreError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise StoreError(f"time {value.isoformat()} has no zone; give it in UTC, e.g. {value.isoformat()}Z")
        return int(value.timestamp() * 1000)
    text = str(value).strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        text += "T00:00:00Z"
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise StoreError(f"cannot read time {value!r}; use ISO-8601 in UTC, e.g. 2025-10-10T21:00:00Z") from None
    if dt.tzinfo is None:
        raise StoreError(f"time {value!r} has no zone; add Z for UTC, e.g. {text}Z")
    return int(dt.timestamp() * 1000)


def ms_to_iso(ms: int | None) -> str | None:
    """ISO-8601 UTC string (``2025-10-10T21:15:00Z``) of UTC milliseconds."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Partition:
    """One stored partition file and the keys its path names."""

    dataset: str
    exchange: str
    symbol_path: str
    timeframe: str
    year: int
    month: int
    path: str


@dataclass(frozen=True)
class WriteResult:
    rows_in: int  # rows offered
    rows_added: int  # rows whose key was not stored before
    partitions: int  # partition files replaced


def default_root() -> str:
    """``$BACKTEST_STORE``, else the project's committed ``data/`` folder, else ``./data``."""
    env = os.environ.get("BACKTEST_STORE")
    if env:
        return env
    repo_data = Path(__file__).resolve().parent.parent / "data"
    if (repo_data / "events.toml").exists():
        return str(repo_data)
    return "data"


_PART_RE = re.compile(
    r"(?P<dataset>[a-z_]+)/exchange=(?P<exchange>[^/]+)/symbol=(?P<symbol>[^/]+)/timeframe=(?P<tf>[^/]+)/"
    r"year=(?P<year>\d{4})/month=(?P<month>\d{2})/" + re.escape(PART_FILE) + "$"
)


class Store:
    """A market-data store rooted at a local folder or an ``s3://`` URL."""

    def __init__(self, root: str | os.PathLike | None = None, *, must_exist: bool = False):
        """``must_exist``: refuse a local folder that does not exist (for commands that only
        read, where a mistyped ``--store`` would otherwise look like an empty store)."""
        root = str(root) if root is not None else default_root()
        if not root.strip():
            raise StoreError("the store path is empty; give --store a folder or s3://bucket/prefix (or omit it for the default store)")
        if must_exist and not root.startswith("s3://") and not Path(root).expanduser().exists():
            raise StoreError(f"store folder {root} does not exist; pass --store with an existing store (or omit it for the committed data/)")
        from backtest.store_fs import LocalFS, S3FS

        self.fs = S3FS(root) if root.startswith("s3://") else LocalFS(root)
        self.root = self.fs.root
        #: files opened by the most recent :meth:`scan` (lets tests check partition pruning)
        self.last_scan_files: list[str] = []

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    # ---- paths -------------------------------------------------------------------------
    def partition_path(self, dataset: str, exchange: str, symbol: str, timeframe: str, year: int, month: int) -> str:
        _check_series(dataset, exchange, symbol, timeframe)
        return self.fs.join(
            dataset,
            f"exchange={exchange}",
            f"symbol={safe_symbol(symbol)}",
            f"timeframe={timeframe}",
            f"year={year:04d}",
            f"month={month:02d}",
            PART_FILE,
        )

    def partitions(
        self,
        dataset: str | None = None,
        exchange: str | None = None,
        symbol: str | None = None,
        timeframe: str | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> list[Partition]:
        """Stored partitions matching the filters; ``start``/``end`` (UTC ms) prune by month."""
        if dataset is not None:
            _check_dataset(dataset)
        _check_series(None, exchange, symbol, None)
        parts = [
            dataset or "*",
            f"exchange={exchange}" if exchange else "exchange=*",
            f"symbol={safe_symbol(symbol)}" if symbol else "symbol=*",
            f"timeframe={timeframe}" if timeframe else "timeframe=*",
        ]
        out = []
        root = self.root.rstrip("/") + "/"
        for path in self.fs.list(parts, PART_FILE):
            rel = path[len(root):] if path.startswith(root) else path
            m = _PART_RE.search(rel.replace(os.sep, "/"))
            if not m or m.group("dataset") not in SCHEMAS:
                continue
            y, mo = int(m.group("year")), int(m.group("month"))
            if start is not None and _month_end_ms(y, mo) <= start:
                continue
            if end is not None and _month_start_ms(y, mo) >= end:
                continue
            out.append(Partition(m.group("dataset"), m.group("exchange"), m.group("symbol"), m.group("tf"), y, mo, path))
        return out

    # ---- reads -------------------------------------------------------------------------
    def read_partition(self, path: str, dataset: str) -> pl.DataFrame:
        """Read one partition file and check its schema (StoreError naming the file if bad)."""
        try:
            df = pl.read_parquet(io.BytesIO(self.fs.read_bytes(path)))
        except Exception as e:  # corrupt, truncated, not parquet
            raise StoreError(f"partition {path} is unreadable ({_short(e)}); run 'backtest data verify' and move the file aside") from None
        from backtest.store_checks import schema_problem

        problem = schema_problem(df, dataset)
        if problem:
            raise StoreError(f"partition {path} has a bad schema: {problem}")
        return df

    def scan(
        self,
        dataset: str,
        *,
        exchange: str | None = None,
        symbol: str | None = None,
        timeframe: str | None = None,
        start: Any = None,
        end: Any = None,
    ) -> pl.LazyFrame:
        """Lazy scan of one dataset, opening only the partitions that match the filters.

        ``start`` (inclusive) and ``end`` (exclusive) are UTC ms, datetimes or ISO strings.
        Columns are the dataset's schema plus ``exchange`` and ``timeframe``.
        """
        _check_dataset(dataset)
        s = to_ms(start) if start is not None else None
        e = to_ms(end) if end is not None else None
        parts = self.partitions(dataset, exchange, symbol, timeframe, s, e)
        self.last_scan_files = [p.path for p in parts]
        schema = SCHEMAS[dataset]
        if not parts:
            empty = pl.DataFrame(schema=schema).with_columns(
                pl.lit(None, pl.String).alias("exchange"), pl.lit(None, pl.String).alias("timeframe")
            )
            return empty.lazy()
        frames = [
            pl.scan_parquet(self.fs.scan_target(p.path), storage_options=self.fs.storage_options, schema=schema, glob=False).with_columns(
                pl.lit(p.exchange).alias("exchange"), pl.lit(p.timeframe).alias("timeframe")
            )
            for p in parts
        ]
        lf = pl.concat(frames, how="vertical")
        if s is not None:
            lf = lf.filter(pl.col("ts") >= pl.lit(s).cast(pl.Int64).cast(TS))
        if e is not None:
            lf = lf.filter(pl.col("ts") < pl.lit(e).cast(pl.Int64).cast(TS))
        if symbol is not None:
            lf = lf.filter(pl.col("symbol") == symbol)
        return lf

    def read(self, dataset: str, **filters: Any) -> pl.DataFrame:
        """Eager form of :meth:`scan`, sorted by symbol and time."""
        return self._collect(self.scan(dataset, **filters).sort("symbol", "ts"), dataset)

    # ---- writes ------------------------------------------------------------------------
    def write(self, dataset: str, df: pl.DataFrame, *, exchange: str, timeframe: str) -> WriteResult:
        """Merge ``df`` into the store, one atomic file replacement per touched partition.

        ``df`` must carry ``ts`` (``Datetime("ms","UTC")``, or Int64 UTC ms) and ``symbol`` (the
        ccxt symbol) and the dataset's value columns; missing nullable columns are added as
        null, ``fetched_at`` defaults to now. Rows whose key is already stored replace the
        stored ones (last write wins). Nothing is written if any check fails.
        """
        _check_dataset(dataset)
        if timeframe != EVENT_TIMEFRAME:
            timeframe_ms(timeframe)
        frame = conform(df, dataset)
        if frame.height == 0:
            return WriteResult(0, 0, 0)
        frame = frame.with_columns(
            pl.col("ts").dt.year().alias("_y"), pl.col("ts").dt.month().alias("_m")
        )
        with self.fs.lock():  # one writer at a time across the read-merge-replace (store_lock)
            return self._merge_write(dataset, df.height, frame, exchange, timeframe)

    def _merge_write(self, dataset: str, rows_in: int, frame: pl.DataFrame, exchange: str, timeframe: str) -> WriteResult:
        # phase 1: read every touched partition and build its new content; a partition that
        # cannot be read stops the write here, before any file is replaced
        added = 0
        staged: dict[str, pl.DataFrame] = {}  # partition path -> its new content
        key = KEYS[dataset]
        for (sym, y, mo), chunk in frame.group_by(["symbol", "_y", "_m"], maintain_order=True):
            chunk = chunk.drop("_y", "_m")
            path = self.partition_path(dataset, exchange, sym, timeframe, int(y), int(mo))
            if path in staged:
                raise StoreError(f"symbols {staged[path]['symbol'][0]!r} and {sym!r} would share the store path symbol={safe_symbol(sym)}; "
                                 "write them to separate stores or rename one")
            if self.fs.exists(path):
                old = self.read_partition(path, dataset)
                other = set(old["symbol"].unique().to_list()) - {sym}
                if other:
                    raise StoreError(f"partition {path} holds {sorted(other)[0]!r}, not {sym!r} (same path name); "
                                     "write them to separate stores or rename one")
            else:
                old = chunk.clear()
            merged = pl.concat([old, chunk], how="vertical").unique(subset=key, keep="last", maintain_order=True)
            added += merged.height - old.height
            staged[path] = merged
        # phase 2: replace the files, each atomically
        for path, merged in staged.items():
            buf = io.BytesIO()
            merged.sort(key).write_parquet(buf, compression="zstd", statistics=True)
            self.fs.write_atomic(path, buf.getvalue())
        return WriteResult(rows_in, added, len(staged))

    def _collect(self, lf: pl.LazyFrame, what: str) -> pl.DataFrame:
        """``lf.collect()``, with an unreadable or corrupt file reported as one StoreError line."""
        try:
            return lf.collect()
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"cannot read {what} from {self.root}: {_short(e)}; run 'backtest data verify' and move bad files aside") from None

    # ---- coverage and gaps ------------------------------------------------------------
    def coverage(self, dataset: str, exchange: str, symbol: str | None, timeframe: str) -> tuple[int | None, int | None, int]:
        """(first ts, last ts, rows) stored for one series (``symbol`` None: over every symbol of the
        exchange and timeframe), times in UTC ms; (None, None, 0) if none."""
        df = self._collect(self.scan(dataset, exchange=exchange, symbol=symbol, timeframe=timeframe).select(
            pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"), pl.len().alias("n")
        ), f"{dataset} {symbol or 'every symbol'} {timeframe}")
        if df["n"][0] == 0:
            return None, None, 0
        return _dt_ms(df["lo"][0]), _dt_ms(df["hi"][0]), int(df["n"][0])

    def stored_ts(self, dataset: str, exchange: str, symbol: str, timeframe: str, start: Any = None, end: Any = None) -> list[int]:
        """Sorted UTC-ms timestamps stored for one series within [start, end)."""
        df = self._collect(self.scan(dataset, exchange=exchange, symbol=symbol, timeframe=timeframe, start=start, end=end).select(
            pl.col("ts").cast(pl.Int64)
        ), f"{dataset} {symbol} {timeframe}")
        return sorted(df["ts"].to_list())

    def gaps(
        self,
        dataset: str | None = None,
        exchange: str | None = None,
        symbol: str | None = None,
        timeframe: str | None = None,
        start: Any = None,
        end: Any = None,
    ) -> pl.DataFrame:
        """Missing bars inside each stored bar series (or inside [start, end) when given).

        One row per gap: dataset, exchange, symbol, timeframe, gap_start, gap_end (first and
        last missing bar open time), missing (bar count). Event datasets (funding) are checked
        against their own median spacing; a gap is a spacing over 1.5 times it.
        """
        s = to_ms(start) if start is not None else None
        e = to_ms(end) if end is not None else None
        if s is not None and e is not None and s >= e:
            raise StoreError(f"the range to check is empty: {ms_to_iso(s)} is not before {ms_to_iso(e)}; swap --since and --until")
        found = self.partitions(dataset, exchange, symbol, timeframe)
        if not found and (symbol or timeframe or exchange):
            what = ", ".join(f"{k} {v}" for k, v in (("dataset", dataset), ("exchange", exchange), ("symbol", symbol), ("timeframe", timeframe)) if v)
            raise StoreError(f"the store holds no series with {what}; see 'backtest data ls --store {self.root}'")
        series: dict[tuple[str, str, str], dict[str, Partition]] = {}
        for p in found:
            series.setdefault((p.dataset, p.exchange, p.timeframe), {}).setdefault(p.symbol_path, p)
        rows: list[dict[str, Any]] = []

        def gap(ds, ex, sym, tf, a, b, missing):
            rows.append({"dataset": ds, "exchange": ex, "symbol": sym, "timeframe": tf, "gap_start": a, "gap_end": b, "missing": int(missing)})

        for (ds, ex, tf), by_path in sorted(series.items()):
            df = self._collect(self.scan(ds, exchange=ex, symbol=symbol, timeframe=tf, start=s, end=e).select(
                "symbol", pl.col("ts").cast(pl.Int64)
            ), f"{ds} {tf}")
            seen = set()
            for (sym,), g in df.group_by(["symbol"], maintain_order=True):
                seen.add(safe_symbol(sym))
                ts = g["ts"].unique().sort()  # several rows may share a time (depth: one per bucket)
                if tf == EVENT_TIMEFRAME:
                    if ts.len() < 3:
                        continue
                    step = int(ts.diff().drop_nulls().median())
                    limit = 1.5 * step
                else:
                    step = _stored_step(tf, self.root)
                    limit = step
                points = ts.to_list()
                if s is not None and tf != EVENT_TIMEFRAME:
                    points = [-(-s // step) * step - step] + points  # the first bar open at or after s
                if e is not None and tf != EVENT_TIMEFRAME:
                    points = points + [e]
                for a, b in zip(points, points[1:]):
                    if b - a > limit:
                        missing = (b - a) // step - 1 if tf != EVENT_TIMEFRAME else max(1, round((b - a) / step) - 1)
                        gap(ds, ex, sym, tf, a + step, b - step, missing)
            # a stored bar series with no row at all inside a given range: the whole range is a gap
            if s is not None and e is not None and tf != EVENT_TIMEFRAME:
                step = _stored_step(tf, self.root)
                first = -(-s // step) * step  # first bar open time at or after s
                for sym_path, part in sorted(by_path.items()):
                    if sym_path in seen or first >= e:
                        continue
                    name = symbol or self._collect(pl.scan_parquet(self.fs.scan_target(part.path), storage_options=self.fs.storage_options, glob=False)
                                                   .select("symbol").head(1), part.path)["symbol"][0]
                    last = first + ((e - 1 - first) // step) * step
                    gap(ds, ex, name, tf, first, last, (last - first) // step + 1)
        out = pl.DataFrame(
            rows,
            schema={
                "dataset": pl.String,
                "exchange": pl.String,
                "symbol": pl.String,
                "timeframe": pl.String,
                "gap_start": pl.Int64,
                "gap_end": pl.Int64,
                "missing": pl.Int64,
            },
        )
        return out.with_columns(pl.col("gap_start").cast(TS), pl.col("gap_end").cast(TS))

    # ---- listing and verification ----------------------------------------------------
    def summary(self, dataset: str | None = None) -> pl.DataFrame:
        """One row per stored series: dataset, exchange, symbol, timeframe, first, last, rows, files."""
        rows = []
        groups: dict[tuple, list[Partition]] = {}
        for p in self.partitions(dataset):
            groups.setdefault((p.dataset, p.exchange, p.symbol_path, p.timeframe), []).append(p)
        for (ds, ex, sym, tf), parts in sorted(groups.items()):
            lf = pl.concat(
                [pl.scan_parquet(self.fs.scan_target(p.path), storage_options=self.fs.storage_options, glob=False) for p in parts]
            )
            agg = self._collect(lf.select(
                pl.col("symbol").first(), pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last"), pl.len().alias("rows")
            ), f"{ds} {sym} {tf}")
            rows.append(
                {
                    "dataset": ds,
                    "exchange": ex,
                    "symbol": agg["symbol"][0],
                    "timeframe": tf,
                    "first": agg["first"][0],
                    "last": agg["last"][0],
                    "rows": int(agg["rows"][0]),
                    "files": len(parts),
                }
            )
        return pl.DataFrame(
            rows,
            schema={
                "dataset": pl.String,
                "exchange": pl.String,
                "symbol": pl.String,
                "timeframe": pl.String,
                "first": TS,
                "last": TS,
                "rows": pl.Int64,
                "files": pl.Int64,
            },
        )

    def verify(self) -> list[tuple[str, str]]:
        """Check every partition file; return ``(path, problem)`` for each bad one (empty = clean).

        Checks: readable Parquet, exact schema, no nulls in required columns, sorted unique
        keys, rows inside the month and symbol the path names; tier files parse as JSON.
        """
        from backtest.store_checks import TMP_PROBLEM, content_problem, timeframe_problem

        problems: list[tuple[str, str]] = [(path, TMP_PROBLEM) for path in self.leftover_tmp()]
        for p in self.partitions():
            tf_problem = timeframe_problem(p)
            if tf_problem:
                problems.append((p.path, tf_problem))
                continue
            try:
                df = self.read_partition(p.path, p.dataset)
            except StoreError as e:
                problems.append((p.path, str(e).split(": ", 1)[-1] if "bad schema" in str(e) else "unreadable Parquet"))
                continue
            problem = content_problem(df, p)
            if problem:
                problems.append((p.path, problem))
        for path in self.fs.list(["leverage_tiers"], "tiers.json"):
            try:
                data = json.loads(self.fs.read_bytes(path))
                if not isinstance(data, dict):
                    raise ValueError("not a mapping")
            except Exception as e:
                problems.append((path, f"tier file does not parse: {_short(e)}"))
        return problems

    def leftover_tmp(self) -> list[str]:
        """Temporary files (``.NAME.PID.tmp``) left by a writer that was killed or failed before
        its rename; files of a writer still running on this machine are not listed."""
        from backtest.store_checks import writer_alive

        return [p for p in self.fs.leftover_tmp() if not writer_alive(p)]

    def remove_leftover_tmp(self) -> list[str]:
        """Delete :meth:`leftover_tmp` files (under the writer lock, so no running write loses
        its temporary file); return their paths."""
        with self.fs.lock():
            gone = self.leftover_tmp()
            for path in gone:
                self.fs.remove(path)
        return gone

    # ---- leverage tiers ----------------------------------------------------------------
    def tiers_path(self, exchange: str) -> str:
        check_part("exchange", exchange)
        return self.fs.join("leverage_tiers", f"exchange={exchange}", "tiers.json")

    def write_tiers(self, exchange: str, tiers: dict[str, list[dict]]) -> int:
        """Merge ccxt-format leverage tiers (symbol -> tier list) into the exchange's tier file."""
        if not isinstance(tiers, dict) or not all(isinstance(v, list) for v in tiers.values()):
            raise StoreError("leverage tiers must map each ccxt symbol to a list of tiers (ccxt fetchLeverageTiers format)")
        with self.fs.lock():
            current = self.read_tiers(exchange)
            current.update(tiers)
            data = json.dumps(dict(sorted(current.items())), indent=1, sort_keys=True).encode()
            self.fs.write_atomic(self.tiers_path(exchange), data)
        return len(tiers)

    def read_tiers(self, exchange: str, symbol: str | None = None) -> Any:
        """All tiers of an exchange (symbol -> list), or one symbol's list (None if unknown)."""
        path = self.tiers_path(exchange)
        if not self.fs.exists(path):
            return {} if symbol is None else None
        try:
            data = json.loads(self.fs.read_bytes(path))
        except Exception as e:
            raise StoreError(f"tier file {path} does not parse ({_short(e)}); re-download the tiers") from None
        return data if symbol is None else data.get(symbol)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _check_dataset(dataset: str) -> None:
    if dataset not in SCHEMAS:
        raise StoreError(f"unknown dataset {dataset!r}; choose from {', '.join(SCHEMAS)}")


def _check_series(dataset: str | None, exchange: str | None, symbol: str | None, timeframe: str | None) -> None:
    """Every identifier that becomes a path part, checked before a path is built (path_parts);
    None means "not given" (a filter that matches all)."""
    if dataset is not None:
        _check_dataset(dataset)
    if exchange is not None:
        check_part("exchange", exchange)
    if symbol is not None:
        check_part("symbol", safe_symbol(symbol), given=symbol)
    if timeframe is not None and timeframe != EVENT_TIMEFRAME:
        timeframe_ms(timeframe)


def _stored_step(tf: str, root: str) -> int:
    """Bar length (ms) of a stored partition folder's ``timeframe=``; a bad one names the fix."""
    try:
        return timeframe_ms(tf)
    except TimeframeError:
        raise StoreError(f"store {root} holds partitions under timeframe={tf}, which is not a valid timeframe; "
                         f"run 'backtest data verify --store {root}' and move them aside") from None


def _short(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__


def _month_start_ms(y: int, m: int) -> int:
    return int(datetime(y, m, 1, tzinfo=timezone.utc).timestamp() * 1000)


def _month_end_ms(y: int, m: int) -> int:
    return _month_start_ms(y + (m == 12), 1 if m == 12 else m + 1)


def _dt_ms(v: Any) -> int:
    return int(v.timestamp() * 1000) if isinstance(v, datetime) else int(v)


def conform(df: pl.DataFrame, dataset: str) -> pl.DataFrame:
    """Cast ``df`` to the dataset's schema, or raise StoreError naming what is wrong.

    ``ts`` may be ``Datetime`` with a UTC zone or Int64 UTC milliseconds; a zone-less datetime
    is rejected, and so are integer times that look like seconds (before 1973 in ms).
    """
    schema = SCHEMAS[dataset]
    if "ts" not in df.columns or "symbol" not in df.columns:
        raise StoreError(f"{dataset} rows need 'ts' and 'symbol' columns; got {df.columns}")
    cols = []
    for name, dt in schema.items():
        if name == "ts":
            cols.append(_conform_ts(df["ts"], "ts"))
        elif name == "fetched_at":
            if "fetched_at" in df.columns and df["fetched_at"].null_count() < df.height:
                cols.append(_conform_ts(df["fetched_at"], "fetched_at").fill_null(pl.lit(now_ms()).cast(TS)))
            else:
                cols.append(pl.Series("fetched_at", [now_ms()] * df.height, dtype=pl.Int64).cast(TS))
        elif name in df.columns:
            try:
                cols.append(df[name].cast(dt, strict=True).alias(name))
            except Exception:
                raise StoreError(f"column {name!r} of {dataset} cannot be read as {dt}") from None
        else:
            if name in REQUIRED[dataset]:
                raise StoreError(f"{dataset} rows need a {name!r} column; got {df.columns}")
            cols.append(pl.Series(name, [None] * df.height, dtype=dt))
    out = pl.DataFrame(cols)
    for col in REQUIRED[dataset]:
        n = out[col].null_count()
        if n:
            raise StoreError(f"{n} {dataset} rows have no {col!r}; drop or fix them before writing")
    return out


#: 2100-01-01T00:00:00Z in UTC ms: a later time means the source was in µs or ns
MAX_TS_MS = 4_102_444_800_000


def _conform_ts(s: pl.Series, name: str) -> pl.Series:
    dt = s.dtype
    if isinstance(dt, pl.Datetime):
        if dt.time_zone is None:
            raise StoreError(f"column {name!r} holds zone-less datetimes; times must be UTC (use .dt.replace_time_zone('UTC'))")
        out = s.dt.convert_time_zone("UTC").dt.cast_time_unit("ms").alias(name)
        vals = out.drop_nulls()
        if vals.len() and int(vals.cast(pl.Int64).max()) >= MAX_TS_MS:
            raise StoreError(f"column {name!r} holds times after 2100 (max {vals.max()}); check the time unit of the source")
        return out
    if dt.is_integer():
        vals = s.drop_nulls()
        if vals.len() and int(vals.max()) < 100_000_000_000:
            raise StoreError(f"column {name!r} looks like seconds, not milliseconds (max {s.max()}); multiply by 1000")
        if vals.len() and int(vals.max()) >= MAX_TS_MS:
            raise StoreError(f"column {name!r} looks like microseconds or nanoseconds, not milliseconds (max {vals.max()} is after 2100); divide by 1000")
        return s.cast(pl.Int64).cast(TS).alias(name)
    raise StoreError(f"column {name!r} must be a UTC datetime or UTC milliseconds, not {dt}")
