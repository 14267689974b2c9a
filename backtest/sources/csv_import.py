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
==================  ==========================================================================  =========

``timestamp``/``open_time``/``calc_time`` are UTC milliseconds (bar open time, or settlement
time). Exchange ids such as ``BTCUSDT`` become ccxt symbols (``BTC/USDT:USDT``). Files are
checked before anything is written: times in seconds, zone-less ``datetime`` strings, duplicate
or unsorted rows and unknown layouts are rejected with one line naming the file and the fix.
Funding settlement times (``calc_time``, ``timestamp``) carry a few ms of jitter; they are
rounded to the nearest second.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import polars as pl

from backtest.store import EVENT_TIMEFRAME, Store, StoreError, timeframe_ms, to_ms

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
}

_TF_NAMES = {timeframe_ms(t): t for t in ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")}


class ImportError_(StoreError):
    """A CSV file that cannot be imported (message names the file and the fix)."""


def ccxt_symbol(exchange_id: str, exchange: str) -> str:
    """ccxt symbol of an exchange market id: ``BTCUSDT`` on binanceusdm -> ``BTC/USDT:USDT``."""
    if "/" in exchange_id:
        return exchange_id
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
        elif name == "binance-metrics":
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
    try:
        return df[col].str.strip_chars().cast(pl.Float64, strict=True)
    except Exception:
        raise ImportError_(f"{path}: column {col!r} has values that are not numbers") from None


def _ms(df: pl.DataFrame, col: str, path: Path) -> pl.Series:
    try:
        s = df[col].str.strip_chars().cast(pl.Int64, strict=True)
    except Exception:
        raise ImportError_(f"{path}: column {col!r} must hold integer UTC milliseconds") from None
    if s.len() and int(s.max()) < 100_000_000_000:
        raise ImportError_(f"{path}: column {col!r} looks like seconds, not milliseconds (e.g. {s[0]}); multiply by 1000 and import again")
    return s


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


def parse_file(path: Path, *, exchange: str, dataset: str | None = None, symbol: str | None = None) -> tuple[str, pl.DataFrame]:
    """Parse one CSV into ``(dataset, frame)`` with ``ts`` in UTC ms and the dataset's columns."""
    path = Path(path)
    df = read_csv(path)
    if df.height == 0:
        raise ImportError_(f"{path}: no rows")
    layout = detect_layout(df.columns)
    df = df.rename({c: c.strip().lower() for c in df.columns})
    default_ds = LAYOUTS[layout][1]
    ds = dataset or default_ds
    if "symbol" in df.columns and symbol is None:
        syms = df["symbol"].str.strip_chars()
        mapping = {s: ccxt_symbol(s, exchange) for s in syms.unique().to_list()}
        sym_col = syms.replace_strict(mapping)
    else:
        if symbol is None:
            guess = re.match(r"([A-Z0-9]+?(USDT|USDC|USD_PERP))[-_]", path.name)
            if not guess:
                raise ImportError_(f"{path}: the file has no symbol column; pass --symbol, e.g. --symbol BTC/USDT:USDT")
            symbol = ccxt_symbol(guess.group(1), exchange)
        sym_col = pl.Series([ccxt_symbol(symbol, exchange)] * df.height)
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
    else:  # binance-metrics: create_time is "YYYY-MM-DD HH:MM:SS" in UTC
        t = df["create_time"].str.strip_chars()
        if t.str.contains(r"^\d+$").all():
            ts = _ms(df, "create_time", path)
        else:
            ts = t.str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="ms", time_zone="UTC").cast(pl.Int64)
    out = {"ts": ts, "symbol": sym_col}
    if layout in ("ohlcv", "ohlc", "binance-kline"):
        for c in ("open", "high", "low", "close"):
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
    bad_ohlc = frame.filter(pl.col("high") < pl.col("low")) if "high" in frame.columns else frame.clear()
    if bad_ohlc.height:
        raise ImportError_(f"{path}: {bad_ohlc.height} bars have high below low; the file is damaged")
    _check_order(frame, path)
    return ds, frame


def infer_timeframe(frame: pl.DataFrame, path: Path) -> str:
    """Bar timeframe from the most common spacing of consecutive bars."""
    d = frame.select(pl.col("ts").diff().over("symbol").alias("d")).drop_nulls()["d"]
    if d.len() == 0:
        raise ImportError_(f"{path}: cannot infer the timeframe from one bar; pass --timeframe")
    step = int(d.mode().sort()[0])
    if step not in _TF_NAMES:
        raise ImportError_(f"{path}: bars are {step} ms apart, not a known timeframe; pass --timeframe")
    return _TF_NAMES[step]


def import_csv(
    store: Store,
    path: Path,
    *,
    exchange: str = "binanceusdm",
    dataset: str | None = None,
    timeframe: str | None = None,
    symbol: str | None = None,
    since: str | int | None = None,
    until: str | int | None = None,
) -> Iterator[str]:
    """Import one CSV file into ``store``; yields one human line per dataset written.

    Everything is parsed and checked before the first write; a rejected file leaves the store
    untouched. ``since``/``until`` (UTC, ISO-8601 or ms) keep rows in ``[since, until)``.
    """
    path = Path(path)
    ds, frame = parse_file(path, exchange=exchange, dataset=dataset, symbol=symbol)
    if since is not None:
        frame = frame.filter(pl.col("ts") >= to_ms(since))
    if until is not None:
        frame = frame.filter(pl.col("ts") < to_ms(until))
    if ds in ("funding", "liquidations"):
        tf = EVENT_TIMEFRAME
    else:
        tf = timeframe or infer_timeframe(frame, path)
        timeframe_ms(tf)
        misaligned = frame.filter(pl.col("ts") % timeframe_ms(tf) != 0)
        if misaligned.height and tf.endswith(("m", "h")):
            raise ImportError_(f"{path}: {misaligned.height} bars do not start on a {tf} boundary; check --timeframe")
    res = store.write(ds, frame, exchange=exchange, timeframe=tf)
    if frame.height:
        lo, hi = frame["ts"].min(), frame["ts"].max()
        from backtest.store import ms_to_iso

        span = f"{ms_to_iso(lo)} → {ms_to_iso(hi)}"
    else:
        span = "no rows in range"
    yield (
        f"{path.name}: {ds} {tf}, {res.rows_in} rows ({res.rows_added} new) for "
        f"{frame['symbol'].n_unique()} symbols, {span}"
    )

    if ds == "open_interest" and "sum_toptrader_long_short_ratio" in read_csv(path).columns:
        yield from _import_metrics_ratio(store, path, exchange, frame)


def _import_metrics_ratio(store: Store, path: Path, exchange: str, frame: pl.DataFrame) -> Iterator[str]:
    """The long/short account ratio column of a Binance ``metrics`` file."""
    df = read_csv(path)
    col = "count_long_short_ratio" if "count_long_short_ratio" in df.columns else "sum_toptrader_long_short_ratio"
    ratio = _num(df, col, path)
    long_acc = ratio / (1.0 + ratio)
    lsr = pl.DataFrame({"ts": frame["ts"], "symbol": frame["symbol"], "long_short_ratio": ratio, "long_account": long_acc, "short_account": 1.0 - long_acc})
    res = store.write("long_short_ratio", lsr, exchange=exchange, timeframe="5m")
    yield f"{path.name}: long_short_ratio 5m, {res.rows_in} rows ({res.rows_added} new)"


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
