"""The checks ``backtest data verify`` (and every partition read) makes: a partition's schema, its
rows (required values, keys unique and sorted, bars on their timeframe's grid, the year, month and
symbol its path names), its ``timeframe=`` folder, and temporary files left by interrupted writes
(those of a writer still running excepted). Each returns one human line, or None when all is well.
"""

from __future__ import annotations

import os
import re

import polars as pl

from backtest.errors import TimeframeError
from backtest.store import (
    BAR_DATASETS,
    EVENT_DATASETS,
    EVENT_TIMEFRAME,
    KEYS,
    REQUIRED,
    SCHEMAS,
    Partition,
    safe_symbol,
    timeframe_ms,
)


TMP_PROBLEM = "temporary file left by an interrupted write; remove it with 'backtest data verify --remove-tmp'"


def writer_alive(path: str) -> bool:
    """True if the pid in a ``.NAME.PID.tmp`` name is a running process on this machine."""
    m = re.search(r"\.(\d+)\.tmp$", path)
    if not m:
        return False
    pid = int(m.group(1))
    if pid == os.getpid():
        return False  # this process writes only under the lock, never while it verifies
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def timeframe_problem(p: Partition) -> str | None:
    """A partition folder whose ``timeframe=`` cannot be the dataset's (e.g. ``0m``, or a bar
    timeframe on funding)."""
    if p.dataset in EVENT_DATASETS:
        return None if p.timeframe == EVENT_TIMEFRAME else f"timeframe={p.timeframe}, but {p.dataset} is stored under timeframe={EVENT_TIMEFRAME}"
    try:
        timeframe_ms(p.timeframe)
    except TimeframeError:
        return f"timeframe={p.timeframe} is not a valid timeframe (a positive count and a unit up to one week, e.g. 1m, 1h)"
    return None


def schema_problem(df: pl.DataFrame, dataset: str) -> str | None:
    want = SCHEMAS[dataset]
    have = dict(df.schema)
    if list(have) != list(want):
        return f"columns {list(have)}, expected {list(want)}"
    for name, dt in want.items():
        if have[name] != dt:
            return f"column {name!r} is {have[name]}, expected {dt}"
    return None


def content_problem(df: pl.DataFrame, p: Partition) -> str | None:
    for col in REQUIRED[p.dataset]:
        if df[col].null_count():
            return f"null values in required column {col!r}"
    key = KEYS[p.dataset]
    if df.select(pl.struct(key).is_duplicated().any()).item():
        return f"duplicate rows on {key}"
    if not df.select(pl.struct(key) == pl.struct(key).sort()).to_series().all():
        return "rows are not sorted by time"
    if df.height and p.dataset in BAR_DATASETS:
        step = timeframe_ms(p.timeframe)
        off = df.filter(pl.col("ts").cast(pl.Int64) % step != 0).height
        if off:
            return f"{off} bars do not open on the timeframe={p.timeframe} grid"
    if df.height:
        years = df["ts"].dt.year().unique().to_list()
        months = df["ts"].dt.month().unique().to_list()
        if years != [p.year] or months != [p.month]:
            return f"rows outside year={p.year} month={p.month:02d}"
        syms = {safe_symbol(s) for s in df["symbol"].unique().to_list()}
        if syms != {p.symbol_path}:
            return f"symbols {sorted(syms)} do not match the path's symbol={p.symbol_path}"
    return None
