"""Market data from the store, as the simulation and the population read it.

* :func:`load_market` - one symbol's path over an event window (:class:`Market`): the finest
  last-price bars that cover it, anchored to the hourly mark price by default, with funding and
  the liquidity estimates (daily volatility, daily traded notional) of the lookback.
* :func:`market_bars`, :func:`mark_bars` - the lookback bars a population is built from
  (a composite of the stored timeframes) and the mark-price series its survival is checked on.
* :func:`volume_usd` - the one rule for a bar's traded notional (USD): the stored quote volume,
  else base volume x a price (see its docstring for which price, and why there are two).

Market path per symbol (``price_source`` in the summary; parameter ``price_path``): by default
the finest last-price series that covers the event window, anchored to the hourly mark price
(scaled to the mark at each hour's open and clipped to the mark's hourly range:
``"last-anchored-to-mark"``). On 2025-10-10 only last-price bars resolve the minutes of the
cascade, while Binance liquidates on the mark price, and the last price overshoots it (BTC 1m low
101,516.5 against the 1h mark low 101,877.69). ``price_path="last"`` takes the last-price bars as
they are (``"last"``), ``"mark"`` the 1h mark (``"mark"``); without mark data, last price
(``"last"``, flagged). Missing bars inside the
window are bridged (the path goes from the last close straight to the next open) and counted in
``gaps``.

Prices in quote currency, notional in USD, times UTC ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from backtest import records as R
from backtest.errors import SimError
from backtest.timeframes import FINE_TIMEFRAMES, timeframe_ms

def volume_usd(df: pl.DataFrame) -> np.ndarray:
    """The one traded-notional rule (USD per bar, float64): ``quote_volume`` where it is stored
    (not null, not NaN), else ``volume`` (base units) x the bar's typical price
    (high + low + close) / 3 - the committed store lacks quote volume on most bars, and the
    typical price is closer to a bar's average traded price than its close is."""
    p = ((df["high"] + df["low"] + df["close"]) / 3.0).to_numpy()
    qv = df["quote_volume"].cast(pl.Float64).to_numpy()
    return np.where(np.isfinite(qv), qv, df["volume"].to_numpy() * p).astype(np.float64)


@dataclass
class Market:
    """One symbol's path over the window, as contiguous arrays (records.BAR_FIELDS)."""

    symbol: str
    timeframe: str
    price_source: str  # "mark" or "last"
    bars: dict[str, np.ndarray]
    sigma_daily: float
    volume_daily_usd: float
    gaps: int

    @property
    def bar_ms(self) -> int:
        return timeframe_ms(self.timeframe)


def _covers(df: pl.DataFrame, start: int, end: int, tf_ms: int) -> bool:
    if df.height == 0:
        return False
    t = df["ts"].dt.epoch("ms")
    return int(t[0]) <= start + tf_ms and int(t[-1]) >= end - 2 * tf_ms and df.height >= 0.8 * (end - start) / tf_ms


def load_market(store: Any, exchange: str, symbol: str, start: int, end: int, lookback_start: int, price_path: str = "anchored",
                funding_exchange: str | None = None, funding_symbol: str | None = None) -> Market:
    """Read one symbol's path, funding and liquidity estimates for ``[start, end)``.

    ``exchange``: whose bars make the path; ``funding_exchange`` (default ``exchange``): whose
    stored funding is charged on it (a venue whose path is another exchange's bars, a proxy,
    still pays its own funding, on its own schedule: each stored payment at its own time);
    ``funding_symbol`` (default ``symbol``): the venue's own symbol for it."""
    chosen = None
    mk = store.read("mark", exchange=exchange, symbol=symbol, timeframe="1h", start=start, end=end)
    has_mark = _covers(mk, start, end, timeframe_ms("1h"))
    if price_path != "mark" or not has_mark:
        for tf in FINE_TIMEFRAMES:
            df = store.read("ohlcv", exchange=exchange, symbol=symbol, timeframe=tf, start=start, end=end)
            if _covers(df, start, end, timeframe_ms(tf)):
                chosen = (tf, "last", df)
                break
    if chosen is not None and price_path == "anchored" and has_mark:
        chosen = (chosen[0], "last-anchored-to-mark", _anchor(chosen[2], mk))
    if chosen is None:
        if has_mark:
            chosen = ("1h", "mark", mk)
        else:
            df = store.read("ohlcv", exchange=exchange, symbol=symbol, timeframe="1h", start=start, end=end)
            if _covers(df, start, end, timeframe_ms("1h")):
                chosen = ("1h", "last", df)
    if chosen is None:
        raise SimError(
            f"no price data for {symbol} on {exchange} covering {_iso(start)} → {_iso(end)}; "
            f"download it (backtest download {exchange} {symbol} --datasets ohlcv,mark ...) or pick another symbol"
        )
    tf, source, df = chosen
    tf_ms = timeframe_ms(tf)
    ts = df["ts"].dt.epoch("ms").to_numpy().astype(np.int64)
    gaps = int(np.sum(np.maximum(np.diff(ts) // tf_ms - 1, 0))) if ts.size > 1 else 0
    n = ts.size
    vol_usd = volume_usd(df) if source == "last" else np.zeros(n)
    fr = np.zeros(n)
    fund = store.read("funding", exchange=funding_exchange or exchange, symbol=funding_symbol or symbol, timeframe="event", start=start, end=end)
    if fund.height:
        fts = fund["ts"].dt.epoch("ms").to_numpy()
        idx = np.searchsorted(ts, fts, side="left")
        ok = idx < n
        np.add.at(fr, idx[ok], fund["funding_rate"].to_numpy()[ok])
    bars = {
        "ts": ts,
        "open": df["open"].to_numpy().astype(np.float64),
        "high": df["high"].to_numpy().astype(np.float64),
        "low": df["low"].to_numpy().astype(np.float64),
        "close": df["close"].to_numpy().astype(np.float64),
        "volume_usd": vol_usd,
        "funding_rate": fr,
    }
    bars = {k: np.ascontiguousarray(v, dtype=R.BAR_FIELDS[k]) for k, v in bars.items()}
    sigma, vday = _liquidity(store, exchange, symbol, lookback_start, start, bars, tf_ms)
    return Market(symbol, tf, source, bars, sigma, vday, gaps)


def _anchor(fine: pl.DataFrame, mark: pl.DataFrame) -> pl.DataFrame:
    """Scale fine last-price bars to the hourly mark (ratio at each hour's first bar) and clip
    them to that hour's mark range: the minutes of the last price, the levels of the mark."""
    t = fine["ts"].dt.epoch("ms").to_numpy()
    mt = mark["ts"].dt.epoch("ms").to_numpy()
    h = np.searchsorted(mt, t, side="right") - 1
    ok = h >= 0
    h = np.clip(h, 0, len(mt) - 1)
    o = fine["open"].to_numpy()
    first = np.r_[True, h[1:] != h[:-1]]
    idx = np.maximum.accumulate(np.where(first, np.arange(len(t)), 0))
    ratio = np.where(ok, mark["open"].to_numpy()[h] / o[idx], 1.0)
    lo = np.where(ok, mark["low"].to_numpy()[h], -np.inf)
    hi = np.where(ok, mark["high"].to_numpy()[h], np.inf)
    cols = {c: np.clip(fine[c].to_numpy() * ratio, lo, hi) for c in ("open", "high", "low", "close")}
    return fine.with_columns(*[pl.Series(c, v) for c, v in cols.items()])


def _liquidity(store, exchange, symbol, lb_start, start, bars, tf_ms) -> tuple[float, float]:
    """Daily volatility of log returns and daily traded notional (USD) over the lookback."""
    hist = store.read("ohlcv", exchange=exchange, symbol=symbol, timeframe="1h", start=lb_start, end=start)
    fine = _fine_lookback(store, exchange, symbol, lb_start, start) if hist.height < 48 else None
    if hist.height >= 48:
        c = hist["close"].to_numpy()
        r = np.diff(np.log(c))
        sigma = float(np.std(r) * math.sqrt(24))
        vday = float(np.sum(volume_usd(hist)) / (hist.height / 24.0))
    elif fine is not None:
        # no hourly bars stored over the lookback (e.g. Bybit's 5m only): the finest stored
        # timeframe that covers two days of it, the same estimates at its bar length
        df, per_day = fine
        r = np.diff(np.log(df["close"].to_numpy()))
        sigma = float(np.std(r) * math.sqrt(per_day))
        vday = float(np.sum(volume_usd(df)) / (df.height / per_day))
    else:
        c = bars["close"]
        vol = bars["volume_usd"]
        step = tf_ms
        if not np.any(vol > 0):
            # the path carries no volume (mark bars) and no hourly bars are stored: the finest
            # stored last-price bars of the lookback (e.g. 5m) give both figures
            try:
                lb = market_bars(store, exchange, symbol, lb_start, start)
            except SimError:
                lb = None
            if lb is not None and lb["ts"].size > 1:
                c, vol = lb["close"], lb["volume_usd"]
                step = int(np.median(lb["dur"]))
        r = np.diff(np.log(c)) if c.size > 1 else np.zeros(1)
        per_day = 86_400_000 / step
        sigma = float(np.std(r) * math.sqrt(per_day)) if r.size else 0.03
        vday = float(np.sum(vol) / max(1e-9, c.size / per_day))
    if not np.isfinite(sigma) or sigma <= 0:
        sigma = 0.03  # assumption: typical BTC daily volatility when no history is stored
    if not np.isfinite(vday) or vday <= 0:
        raise SimError(f"no traded volume for {symbol} before {_iso(start)}; set depth_usd_1pct and impact_model=linear")
    return sigma, vday


def _fine_lookback(store: Any, exchange: str, symbol: str, lb_start: int, start: int) -> tuple[pl.DataFrame, float] | None:
    """The finest stored last-price bars over the lookback that span at least two days, with
    their bars per day; None when no timeframe does."""
    for tf in FINE_TIMEFRAMES:
        df = store.read("ohlcv", exchange=exchange, symbol=symbol, timeframe=tf, start=lb_start, end=start)
        per_day = 86_400_000 / timeframe_ms(tf)
        if df.height >= 2 * per_day:
            return df, per_day
    return None


def market_bars(store: Any, exchange: str, symbol: str, start_ms: int, end_ms: int) -> dict[str, np.ndarray]:
    """Composite last-price bars over [start, end): the finest stored timeframe wherever it
    exists, coarser bars only where no finer bar overlaps. Returns ts, dur, open, high, low,
    close, volume_usd (quote volume, else base volume x (high+low+close)/3) and ``timeframes``."""
    df = store.read("ohlcv", exchange=exchange, symbol=symbol, start=start_ms, end=end_ms)
    if df.height == 0:
        raise SimError(
            f"the store has no {exchange} {symbol} price bars between the lookback start and the event start; "
            "download or import them first (backtest download / backtest data import-csv)"
        )
    tfs = sorted(df["timeframe"].unique().to_list(), key=timeframe_ms)
    starts = np.empty(0, np.int64)
    ends = np.empty(0, np.int64)
    parts = []
    used = []
    for tf in tfs:
        d = df.filter(pl.col("timeframe") == tf).sort("ts")
        t = d["ts"].dt.epoch("ms").to_numpy().astype(np.int64)
        e = t + timeframe_ms(tf)
        keep = e <= end_ms
        if starts.size:
            idx = np.searchsorted(starts, e, side="left") - 1
            overlap = (idx >= 0) & (ends[np.maximum(idx, 0)] > t)
            keep &= ~overlap
        if not keep.any():
            continue
        used.append(tf)
        d = d.filter(pl.Series(keep))
        parts.append(d.with_columns(pl.lit(timeframe_ms(tf)).cast(pl.Int64).alias("dur")))
        starts = np.concatenate([starts, t[keep]])
        ends = np.concatenate([ends, e[keep]])
        o = np.argsort(starts, kind="stable")
        starts, ends = starts[o], ends[o]
    bars = pl.concat(parts, how="vertical").sort("ts")
    vol_usd = volume_usd(bars)
    return {
        "ts": bars["ts"].dt.epoch("ms").to_numpy().astype(np.int64),
        "dur": bars["dur"].to_numpy().astype(np.int64),
        "open": bars["open"].to_numpy(),
        "high": bars["high"].to_numpy(),
        "low": bars["low"].to_numpy(),
        "close": bars["close"].to_numpy(),
        "volume_usd": vol_usd,
        "timeframes": used,
    }


def mark_bars(store: Any, exchange: str, symbol: str, start_ms: int, end_ms: int) -> dict[str, np.ndarray] | None:
    """The finest stored mark-price series that runs without gaps up to ``end`` (it may start
    after ``start``), or None."""
    df = store.read("mark", exchange=exchange, symbol=symbol, start=start_ms, end=end_ms)
    if df.height == 0:
        return None
    for tf in sorted(df["timeframe"].unique().to_list(), key=timeframe_ms):
        d = df.filter(pl.col("timeframe") == tf).sort("ts")
        t = d["ts"].dt.epoch("ms").to_numpy().astype(np.int64)
        step = timeframe_ms(tf)
        if t[-1] + step >= end_ms and (len(t) < 2 or np.all(np.diff(t) == step)):
            return {"ts": t, "low": d["low"].to_numpy(), "high": d["high"].to_numpy(), "timeframe": tf}
    return None


def _iso(ms: int) -> str:
    from backtest.store import ms_to_iso

    return ms_to_iso(int(ms))
