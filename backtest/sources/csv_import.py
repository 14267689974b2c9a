"""Import of CSV files (plain or .gz) in the layouts found in ``../shared/data`` into the store.

Known layouts, recognised by their header:

==================  ==========================================================================  =========
layout              header                                                                      dataset
==================  ==========================================================================  =========
``ohlcv``           ``symbol,timestamp,datetime,open,high,low,close,volume`` (freqtrade dumps)  ohlcv
``ohlc``            ``symbol,timestamp,datetime,open,high,low,close`` (mark-price dumps)        mark
``funding``         ``symbol,timestamp,datetime,funding_rate``                                  funding
``binance-kline``   ``open_time,open,high,low,close,volume,close_time,quote_volume,...``        ohlcv
``binance-funding`` ``[symbol,]calc_time,funding_interval_hours,last_funding_rate``             funding
``binance-metrics`` ``create_time,symbol,sum_open_interest,sum_open_interest_value,...``        open_interest
``binance-bookdepth`` ``timestamp,percentage,depth,notional[,weighted_avg_price]``              depth
==================  ==========================================================================  =========

``timestamp``/``open_time``/``calc_time`` are UTC milliseconds (bar open time, or settlement
time). Exchange ids such as ``BTCUSDT`` become ccxt symbols (``BTC/USDT:USDT``). Every frame a
file yields is built and checked before anything is written, so a rejected file leaves the store
untouched. Rejected with one line naming the file, the first bad row and the fix: times that are
not plausible UTC milliseconds (before 2009-01-01 or from 2100-01-01 on: seconds, microseconds or
nanoseconds), zone-less ``datetime`` strings, duplicate or unsorted rows, unknown layouts, and
values that cannot be market data (blank, NaN, infinite, zero or negative prices, ``high`` below
``low``/``open``/``close`` or ``low`` above them, negative volumes or open interest). Funding
settlement times (``calc_time``, ``timestamp``) carry a few ms of jitter; they are rounded to the
nearest second.

Binance ``metrics`` files: ``create_time`` is UTC; ``2025-10-10 00:05:00`` (Binance's own form),
``2025-10-10T00:05:00[Z]``, ``2025/10/10 00:05`` and UTC milliseconds are accepted. Open interest
goes to ``open_interest``, the long/short account ratio (``count_long_short_ratio``, else
``sum_toptrader_long_short_ratio``) to ``long_short_ratio``. Binance leaves cells blank where it
published nothing for those five minutes; such rows are skipped for that dataset only (and
counted in the summary line), while text, NaN or negative values reject the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import polars as pl

from backtest.store import EVENT_DATASETS, EVENT_TIMEFRAME, MAX_TS_MS, Store, StoreError, conform, to_ms
from backtest.errors import CsvImportError as ImportError_
from backtest.sources import book_depth
from backtest.timeframes import timeframe_ms, timeframe_name

LAYOUTS: dict[str, tuple[list[str], str]] = {
    "ohlcv": (["symbol", "timestamp", "datetime", "open", "high", "low", "close", "volume"], "ohlcv"),
    "ohlc": (["symbol", "timestamp", "datetime", "open", "high", "low", "close"], "mark"),
    "funding": (["symbol", "timestamp", "datetime", "funding_rate"], "funding"),
    "binance-kline": (
        ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
         "taker_buy_volume", "taker_buy_quote_volume", "ignore"],
        "ohlcv",
    ),
    "binance-funding": (["calc_time", "funding_interval_hours", "last_funding_rate"], "funding"),
    "binance-metrics": (
        ["create_time", "symbol", "sum_open_interest", "sum_open_interest_value"],
        "open_interest",
    ),
    "binance-bookdepth": (book_depth.HEADER, "depth"),
}

#: plausible UTC milliseconds: no crypto market data before 2009-01-01, none from 2100-01-01
MS_MIN = 1_230_768_000_000
MS_MAX = MAX_TS_MS




def ccxt_symbol(exchange_id: str, exchange: str) -> str:
    """ccxt symbol of an exchange market id: ``BTCUSDT`` on binanceusdm or bybit, ``BTC-USDT-SWAP``
    on okx -> ``BTC/USDT:USDT``; ``BTCUSD_PERP`` on binancecoinm -> ``BTC/USD:BTC``."""
    if "/" in exchange_id:
        return exchange_id
    m = re.fullmatch(r"([A-Z0-9]+)-(USDT|USDC|USD)-SWAP", exchange_id)
    if m:  # OKX perpetual swap ids (linear for USDT/USDC, inverse for USD)
        base, quote = m.groups()
        return f"{base}/{quote}:{base if quote == 'USD' else quote}"
    if exchange == "binancecoinm":
        m = re.fullmatch(r"([A-Z0-9]+)USD_PERP", exchange_id)
        if m:
            return f"{m.group(1)}/USD:{m.group(1)}"
    for quote in ("USDT", "USDC", "BUSD"):
        if exchange_id.endswith(quote) and len(exchange_id) > len(quote):
            return f"{exchange_id[: -len(quote)]}/{quote}:{quote}"
    raise ImportError_(f"cannot map market id {exchange_id!r} of {exchange} to a ccxt symbol; pass --symbol BASE/QUOTE:SETTLE")


def detect_layout(columns: list[str]) -> str:
    """Name of the layout whose header matches ``columns`` (ImportError_ if none)."""
    cols = [c.strip().lower() for c in columns]
    for name, (header, _) in LAYOUTS.items():
        if name == "binance-funding":
            if cols in (header, ["symbol", *header]):
                return name
        elif name in ("binance-metrics", "binance-bookdepth"):
            if cols[: len(header)] == header:
                return name
        elif cols == header:
            return name
    known = "; ".join(f"{n}: {','.join(h)}" for n, (h, _) in LAYOUTS.items())
    raise ImportError_(f"unknown CSV layout {','.join(columns)[:120]}; known layouts are {known}")


def read_csv(path: Path) -> pl.DataFrame:
    """Read a CSV (optionally gzip-compressed) with all columns as text first."""
    if not path.exists():
        raise ImportError_(f"{path}: no such file")
    if path.is_dir():
        raise ImportError_(f"{path} is a folder; give CSV files")
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            import gzip

            raw = gzip.decompress(raw)
        return pl.read_csv(raw, infer_schema=False)
    except Exception as e:
        raise ImportError_(f"{path}: cannot read as CSV ({str(e).splitlines()[0][:120]})") from None


def _num(df: pl.DataFrame, col: str, path: Path) -> pl.Series:
    """A text column as floats; blank cells become null (checked by :func:`_check_values`)."""
    text = df[col].str.strip_chars().replace("", None)
    try:
        return text.cast(pl.Float64, strict=True)
    except Exception:
        bad = text.is_not_null() & text.cast(pl.Float64, strict=False).is_null()
        i = int(bad.arg_max()) if bad.any() else 0
        raise ImportError_(f"{path}: column {col!r} has values that are not numbers (row {i + 2}: {text[i]!r})") from None


def _unit_fix(v: int) -> str:
    """What a time value outside the plausible millisecond range most likely is, and the fix."""
    for factor, unit, fix in ((1 / 1000, "seconds", "multiply by 1000"), (1000, "microseconds", "divide by 1000"),
                              (1_000_000, "nanoseconds", "divide by 1,000,000")):
        if MS_MIN <= v / factor < MS_MAX:
            return f"looks like {unit}, not milliseconds ({fix} and import again)"
    return "is not a UTC time in milliseconds between 2009-01-01 and 2100-01-01 (check the column)"


def _ms(df: pl.DataFrame, col: str, path: Path) -> pl.Series:
    """An integer column of UTC milliseconds; anything else is refused, naming the first bad row."""
    text = df[col].str.strip_chars().replace("", None)
    try:
        s = text.cast(pl.Int64, strict=True)
    except Exception:
        bad = text.is_not_null() & text.cast(pl.Int64, strict=False).is_null()
        i = int(bad.arg_max()) if bad.any() else 0
        raise ImportError_(f"{path}: column {col!r} must hold integer UTC milliseconds (row {i + 2}: {text[i]!r})") from None
    if s.null_count():
        i = int(s.is_null().arg_max())
        raise ImportError_(f"{path}: row {i + 2} has no {col}; fix or remove the row and import again")
    bad = (s < MS_MIN) | (s >= MS_MAX)
    if bad.any():
        i = int(bad.arg_max())
        v = int(s[i])
        raise ImportError_(f"{path}: column {col!r} {_unit_fix(v)}: row {i + 2} has {v}")
    return s


_CREATE_TIME_RE = (
    r"^(?<y>\d{4})[-/](?<mo>\d{1,2})[-/](?<d>\d{1,2})[ T](?<h>\d{1,2}):(?<mi>\d{2})(?::(?<s>\d{2}))?"
    r"\s*(?:Z|UTC|[+-]00:?00)?$"
)


def _create_time(df: pl.DataFrame, path: Path) -> pl.Series:
    """``create_time`` of a Binance metrics file (UTC) in ms; see the module docstring for the forms."""
    t = df["create_time"].str.strip_chars().replace("", None)
    if t.null_count():
        i = int(t.is_null().arg_max())
        raise ImportError_(f"{path}: row {i + 2} has no create_time; fix or remove the row and import again")
    if t.str.contains(r"^\d+$").all():
        return _ms(df, "create_time", path)
    g = t.str.extract_groups(_CREATE_TIME_RE).struct.unnest()
    norm = g.select(
        pl.format("{}-{}-{} {}:{}:{}", "y", pl.col("mo").str.zfill(2), pl.col("d").str.zfill(2), pl.col("h").str.zfill(2), "mi",
                  pl.when(pl.col("y").is_not_null()).then(pl.col("s").fill_null("00")))
    ).to_series()
    ts = norm.str.strptime(pl.Datetime("ms"), "%Y-%m-%d %H:%M:%S", strict=False).dt.replace_time_zone("UTC").cast(pl.Int64)
    if ts.null_count():
        i = int(ts.is_null().arg_max())
        raise ImportError_(
            f"{path}: row {i + 2}: create_time {t[i]!r} is not a UTC time such as 2025-10-10 00:05:00 "
            "(also accepted: 2025-10-10T00:05:00Z, 2025/10/10 00:05, UTC milliseconds)"
        )
    bad = (ts < MS_MIN) | (ts >= MS_MAX)
    if bad.any():
        i = int(bad.arg_max())
        raise ImportError_(f"{path}: row {i + 2}: create_time {t[i]!r} is before 2009 or after 2099")
    return ts


def _check_datetime(df: pl.DataFrame, ts: pl.Series, path: Path) -> None:
    """The ``datetime`` column must carry a zone and agree with ``timestamp``."""
    text = df["datetime"].str.strip_chars()
    zoneless = ~text.str.contains(r"(Z|[+-]\d\d:?\d\d)$")
    if zoneless.any():
        i = int(zoneless.arg_max())
        raise ImportError_(f"{path}: row {i + 2} has a zone-less datetime {text[i]!r}; times must be UTC, e.g. {text[i]}Z")
    try:
        parsed = text.str.to_datetime(time_unit="ms", time_zone="UTC").cast(pl.Int64)
    except Exception:
        raise ImportError_(f"{path}: column 'datetime' is not ISO-8601") from None
    bad = parsed != ts
    if bad.any():
        i = int(bad.arg_max())
        raise ImportError_(f"{path}: row {i + 2}: datetime {text[i]} does not match timestamp {ts[i]}")


def _check_order(frame: pl.DataFrame, path: Path) -> None:
    """Reject duplicate or unsorted (symbol, ts) rows, naming the first offending row."""
    idx = frame.with_row_index("_row")
    dup = idx.filter(pl.struct("symbol", "ts").is_duplicated())
    if dup.height:
        r = dup.row(0, named=True)
        raise ImportError_(
            f"{path}: {dup.height} rows share a timestamp (first at row {r['_row'] + 2}, {r['symbol']} {r['ts']}); remove the duplicates and import again"
        )
    back = idx.with_columns(pl.col("ts").diff().over("symbol").alias("_d")).filter(pl.col("_d") < 0)
    if back.height:
        r = back.row(0, named=True)
        raise ImportError_(f"{path}: rows are not sorted by time (row {r['_row'] + 2} goes back in time); sort the file by timestamp and import again")


_PRICES = ("open", "high", "low", "close")


def _check_values(ds: str, frame: pl.DataFrame, path: Path) -> None:
    """Refuse values that cannot be market data, naming the first bad row (file line number):
    blank, NaN/inf or non-positive prices, inconsistent bars, negative volume or open interest..."""
    cols = set(frame.columns)
    checks: list[tuple[pl.Expr, str]] = []

    def finite_nonneg(c: str) -> pl.Expr:  # blank allowed, garbage not
        return pl.col(c).is_not_null() & ~(pl.col(c).is_finite() & (pl.col(c) >= 0))

    if set(_PRICES) <= cols:
        checks += [(pl.col(c).is_null(), f"no {c}") for c in _PRICES]
        checks += [(~pl.col(c).is_finite(), f"{c} is not a finite number") for c in _PRICES]
        checks += [(pl.col(c) <= 0, f"{c} is zero or negative") for c in _PRICES]
        checks += [
            (pl.col("high") < pl.col("low"), "high is below low"),
            (pl.col("high") < pl.max_horizontal("open", "close"), "high is below open or close"),
            (pl.col("low") > pl.min_horizontal("open", "close"), "low is above open or close"),
        ]
    if "volume" in cols and ds == "ohlcv":
        checks.append((pl.col("volume").is_null(), "no volume"))
    checks += [(finite_nonneg(c), f"{c} is negative or not a finite number") for c in ("volume", "quote_volume") if c in cols]
    if "funding_rate" in cols:
        checks += [(pl.col("funding_rate").is_null(), "no funding rate"),
                   (~pl.col("funding_rate").is_finite(), "funding rate is not a finite number")]
    if "interval_hours" in cols:
        h = pl.col("interval_hours")
        checks.append((h.is_not_null() & ~(h.is_finite() & (h > 0)), "funding interval is not a positive number of hours"))
    # open interest and ratios may be blank (Binance metrics files have blanks), never garbage
    checks += [(finite_nonneg(c), f"{c} is negative or not a finite number") for c in ("open_interest", "open_interest_usd", "long_short_ratio") if c in cols]
    if not checks:
        return
    why = pl.when(checks[0][0]).then(pl.lit(checks[0][1]))
    for expr, text in checks[1:]:
        why = why.when(expr).then(pl.lit(text))
    bad = frame.with_row_index("_row").with_columns(why.otherwise(None).alias("_why")).filter(pl.col("_why").is_not_null())
    if bad.height:
        r = bad.row(0, named=True)
        shown = ", ".join(f"{k}={r[k]}" for k in frame.columns if k not in ("ts", "symbol"))
        more = f"; {bad.height - 1} more bad rows" if bad.height > 1 else ""
        raise ImportError_(f"{path}: row {r['_row'] + 2} ({r['symbol']}): {r['_why']} ({shown}){more}; fix or remove the bad rows and import again")


def parse_file(path: Path, *, exchange: str, dataset: str | None = None, symbol: str | None = None) -> tuple[str, pl.DataFrame]:
    """Parse one CSV into ``(dataset, frame)`` with ``ts`` in UTC ms and the dataset's columns.

    For a Binance metrics file this is the open-interest frame; :func:`parse_frames` gives all.
    """
    return parse_frames(path, exchange=exchange, dataset=dataset, symbol=symbol)[0]


def parse_frames(path: Path, *, exchange: str, dataset: str | None = None, symbol: str | None = None) -> list[tuple[str, pl.DataFrame]]:
    """Parse and check one CSV into every ``(dataset, frame)`` it holds; nothing is written.

    Raises :class:`ImportError_` (one line: file, first bad row, fix) on anything malformed.
    """
    return _parse(path, exchange=exchange, dataset=dataset, symbol=symbol)[0]


def _parse(path: Path, *, exchange: str, dataset: str | None, symbol: str | None) -> tuple[list[tuple[str, pl.DataFrame]], int]:
    """:func:`parse_frames` and the number of data rows in the file."""
    path = Path(path)
    df = read_csv(path)
    if df.height == 0:
        raise ImportError_(f"{path}: no rows")
    try:
        layout = detect_layout(df.columns)
    except ImportError_ as e:
        raise ImportError_(f"{path}: {e}") from None
    df = df.rename({c: c.strip().lower() for c in df.columns})
    default_ds = LAYOUTS[layout][1]
    ds = dataset or default_ds
    if "symbol" in df.columns and symbol is None:
        syms = df["symbol"].str.strip_chars()
        if syms.null_count() or (syms == "").any():
            i = int((syms.is_null() | (syms == "")).arg_max())
            raise ImportError_(f"{path}: row {i + 2} has no symbol; fix or remove the row and import again")
        mapping = {s: ccxt_symbol(s, exchange) for s in syms.unique().to_list()}
        sym_col = syms.replace_strict(mapping)
    else:
        if symbol is None:
            guess = re.match(r"([A-Z0-9]+?(USDT|USDC|USD_PERP))[-_]", path.name)
            if not guess:
                raise ImportError_(f"{path}: the file has no symbol column; pass --symbol, e.g. --symbol BTC/USDT:USDT")
            symbol = ccxt_symbol(guess.group(1), exchange)
        sym_col = pl.Series([ccxt_symbol(symbol, exchange)] * df.height)
    if layout == "binance-bookdepth":
        return [(ds, _book_depth_frame(df, sym_col, path))], df.height
    if layout in ("ohlcv", "ohlc"):
        ts = _ms(df, "timestamp", path)
        _check_datetime(df, ts, path)
    elif layout == "funding":
        ts = ((_ms(df, "timestamp", path) + 500) // 1000) * 1000  # settlement-time jitter
        _check_datetime(df, ts, path)
    elif layout == "binance-kline":
        ts = _ms(df, "open_time", path)
    elif layout == "binance-funding":
        ts = ((_ms(df, "calc_time", path) + 500) // 1000) * 1000
    else:  # binance-metrics
        ts = _create_time(df, path)
    out = {"ts": ts, "symbol": sym_col}
    if layout in ("ohlcv", "ohlc", "binance-kline"):
        for c in _PRICES:
            out[c] = _num(df, c, path)
        if "volume" in df.columns:
            out["volume"] = _num(df, "volume", path)
        if "quote_volume" in df.columns:
            out["quote_volume"] = _num(df, "quote_volume", path)
        if ds in ("mark", "index"):
            out.pop("volume", None)
            out.pop("quote_volume", None)
    elif layout == "funding":
        out["funding_rate"] = _num(df, "funding_rate", path)
    elif layout == "binance-funding":
        out["funding_rate"] = _num(df, "last_funding_rate", path)
        out["interval_hours"] = _num(df, "funding_interval_hours", path)
    else:
        out["open_interest"] = _num(df, "sum_open_interest", path)
        out["open_interest_usd"] = _num(df, "sum_open_interest_value", path)
    frame = pl.DataFrame({k: (v.alias(k) if isinstance(v, pl.Series) else v) for k, v in out.items()})
    _check_values(ds, frame, path)
    _check_order(frame, path)
    if layout != "binance-metrics":
        return [(ds, frame)], df.height
    frames = [(ds, frame.filter(pl.col("open_interest").is_not_null() | pl.col("open_interest_usd").is_not_null()))]
    col = next((c for c in ("count_long_short_ratio", "sum_toptrader_long_short_ratio") if c in df.columns), None)
    if col is not None:
        ratio = _num(df, col, path)
        lsr = frame.select("ts", "symbol").with_columns(ratio.alias("long_short_ratio"))
        _check_values("long_short_ratio", lsr, path)
        long_acc = pl.col("long_short_ratio") / (1.0 + pl.col("long_short_ratio"))
        lsr = lsr.filter(pl.col("long_short_ratio").is_not_null()).with_columns(
            long_acc.alias("long_account"), (1.0 - long_acc).alias("short_account")
        )
        frames.append(("long_short_ratio", lsr))
    return frames, df.height


def _book_depth_frame(df: pl.DataFrame, sym_col: pl.Series, path: Path) -> pl.DataFrame:
    """A ``bookDepth`` file as a ``depth`` frame, stale bid buckets flagged (:mod:`.book_depth`)."""
    ts = []
    for i, t in enumerate(df["timestamp"].to_list()):
        try:
            ts.append(book_depth.parse_timestamp(t or ""))
        except ValueError:
            raise ImportError_(f"{path}: row {i + 2}: cannot read timestamp {t!r}; expected YYYY-MM-DD HH:MM:SS (UTC)") from None
    try:
        pct = df["percentage"].str.strip_chars().cast(pl.Int8, strict=True).to_list()
    except Exception:
        raise ImportError_(f"{path}: percentage must be a whole number from -5 to 5 (not 0); fix the file") from None
    frame = book_depth.frame_from_columns(ts, pct, _num(df, "depth", path).to_list(), _num(df, "notional", path).to_list(), sym_col[0])
    problem = book_depth.check_values(frame)
    if problem:
        raise ImportError_(f"{path}: {problem}; fix or remove the bad rows and import again")
    if frame.select(pl.struct("ts", "percentage").is_duplicated().any()).item():
        raise ImportError_(f"{path}: two rows share a timestamp and percentage; remove the duplicates and import again")
    if not frame["ts"].is_sorted():
        raise ImportError_(f"{path}: rows are not sorted by time; sort the file by timestamp and import again")
    return frame


def infer_timeframe(frame: pl.DataFrame, path: Path) -> str:
    """Bar timeframe from the most common spacing of consecutive bars."""
    d = frame.select(pl.col("ts").diff().over("symbol").alias("d")).drop_nulls()["d"]
    if d.len() == 0:
        raise ImportError_(f"{path}: cannot infer the timeframe from one bar; pass --timeframe")
    step = int(d.mode().sort()[0])
    name = timeframe_name(step)
    if name is None:
        raise ImportError_(f"{path}: bars are {step} ms apart, not a known timeframe; pass --timeframe")
    return name


def prepare_import(
    path: Path,
    *,
    exchange: str = "binanceusdm",
    dataset: str | None = None,
    timeframe: str | None = None,
    symbol: str | None = None,
    since: str | int | None = None,
    until: str | int | None = None,
    symbols: list[str] | None = None,
) -> "PreparedImport":
    """Parse and check one CSV file without writing anything (see :func:`import_csv`)."""
    path = Path(path)
    _check_options(exchange, dataset, timeframe)
    frames, n_rows = _parse(path, exchange=exchange, dataset=dataset, symbol=symbol)
    n_file = {d: f.height for d, f in frames}
    lo, hi = (to_ms(since) if since is not None else None), (to_ms(until) if until is not None else None)
    for i, (d, f) in enumerate(frames):
        if lo is not None:
            f = f.filter(pl.col("ts") >= lo)
        if hi is not None:
            f = f.filter(pl.col("ts") < hi)
        if symbols is not None:
            f = f.filter(pl.col("symbol").is_in(symbols))
        frames[i] = (d, f)
    ds, frame = frames[0]
    if ds in EVENT_DATASETS:
        tf = EVENT_TIMEFRAME
    else:
        tf = timeframe if timeframe is not None else infer_timeframe(frame, path)
        timeframe_ms(tf)
        for d, f in frames:
            misaligned = f.filter(pl.col("ts") % timeframe_ms(tf) != 0)
            if misaligned.height and tf.endswith(("m", "h")):
                raise ImportError_(f"{path}: {misaligned.height} bars do not start on a {tf} boundary; check --timeframe")
    for d, f in frames:  # the store's own checks, before the first write
        conform(f, d)
    skipped = {d: n_rows - n_file[d] for d, _ in frames}
    return PreparedImport(path, exchange, tf, frames, skipped)


def _check_options(exchange: str, dataset: str | None, timeframe: str | None) -> None:
    """The options that become store path parts, before any file is read (one line each)."""
    from backtest.path_parts import check_part
    from backtest.store import SCHEMAS

    check_part("exchange", exchange)
    if dataset is not None and dataset not in SCHEMAS:
        raise ImportError_(f"--dataset {dataset!r} is not a dataset; choose from {', '.join(SCHEMAS)}")
    if timeframe is not None:
        timeframe_ms(timeframe)


@dataclass
class PreparedImport:
    """A parsed and checked CSV file, ready to write: ``frames`` = (dataset, rows) pairs,
    ``skipped`` = rows of the file without a value for that dataset."""

    path: Path
    exchange: str
    timeframe: str
    frames: list[tuple[str, pl.DataFrame]]
    skipped: dict[str, int]

    def write(self, store: Store) -> Iterator[str]:
        """Write every frame; yields one human line per dataset written."""
        from backtest.store import ms_to_iso

        tf = self.timeframe
        for d, f in self.frames:
            res = store.write(d, f, exchange=self.exchange, timeframe=tf)
            span = f"{ms_to_iso(f['ts'].min())} → {ms_to_iso(f['ts'].max())}" if f.height else "no rows in range"
            line = f"{self.path.name}: {d} {tf}, {res.rows_in} rows ({res.rows_added} new) for {f['symbol'].n_unique()} symbols, {span}"
            if self.skipped.get(d):
                line += f"; {self.skipped[d]} rows of the file have no {d} value and were skipped"
            if d == "depth" and (note := book_depth.stale_summary(f)):
                line += f"; {note}"
            yield line


def import_csv(store: Store, path: Path, **options) -> Iterator[str]:
    """Import one CSV file into ``store``; yields one human line per dataset written.

    Options as :func:`prepare_import`: ``exchange``, ``dataset``, ``timeframe``, ``symbol``,
    ``since``/``until`` (UTC, ISO-8601 or ms; keep rows in ``[since, until)``) and ``symbols``
    (ccxt symbols; keep only those markets of a multi-symbol file). Every frame of the file is
    parsed and checked before the first write; a rejected file leaves the store untouched.
    """
    yield from prepare_import(path, **options).write(store)


def import_tiers(store: Store, path: Path, *, exchange: str, symbols: list[str] | None = None) -> int:
    """Import a ccxt ``fetchLeverageTiers``-format JSON (symbol -> tier list) into the store."""
    path = Path(path)
    if not path.exists():
        raise ImportError_(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ImportError_(f"{path}: not JSON ({e.msg} at line {e.lineno}); give a ccxt fetchLeverageTiers dump") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ImportError_(f"{path}: expected an object mapping ccxt symbols to tier lists (ccxt fetchLeverageTiers format)")
    for sym, tiers in data.items():
        for t in tiers:
            if not {"minNotional", "maxNotional", "maintenanceMarginRate", "maxLeverage"} <= set(t):
                raise ImportError_(f"{path}: tier of {sym} lacks minNotional/maxNotional/maintenanceMarginRate/maxLeverage")
    if symbols:
        missing = [s for s in symbols if s not in data]
        if missing:
            raise ImportError_(f"{path}: no tiers for {', '.join(missing)}")
        data = {s: data[s] for s in symbols}
    return store.write_tiers(exchange, data)
