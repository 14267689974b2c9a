"""``backtest scan``: find crash windows in the bars the store holds.

Per symbol, on last-price bars of one timeframe (``ohlcv``, UTC bar open times):

* **drawdown** from the rolling high: ``1 - low / max(high over the trailing HIGH_WINDOW)``;
* **range multiple**: the bar's range ``(high - low) / open`` over the median range of the
  trailing BASELINE (the bar itself left out);
* **volume multiple**: the bar's traded notional (quote volume, else base volume x close, USD)
  over the trailing BASELINE's median;
* **open-interest drop** (where an ``open_interest`` dataset is stored for the symbol): ``1 - OI /
  max(OI over the trailing HIGH_WINDOW)``, on base units (not moved by the price itself), else USD.

A bar is flagged when its drawdown reaches ``min_drawdown``, or both its range and volume
multiples reach ``min_spike``, or its open-interest drop reaches ``min_oi_drop``. Each run of
flagged bars gives one crash: its low (the bar of largest drawdown), and the leg that led there
(from the last bar still within a quarter of the drawdown of the rolling high). The window is the
leg padded by PAD_BEFORE and PAD_AFTER, on whole hours; crashes on other symbols whose windows
overlap it join it (see :func:`merge_windows`); windows are ranked by their largest drawdown.

Figures per window (the worst symbol's unless said): ``drawdown`` (fraction, 0.17 = 17 %), ``low_ms``
(time of that low, UTC ms), ``range_x`` and ``volume_x`` (largest multiples over the window's
symbols), ``oi_change`` (lowest open interest in the window over the last value before it, minus
one, over the symbols with stored open interest; None when none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from backtest.errors import ScanError
from backtest.timeframes import timeframe_ms

HOUR_MS = 3_600_000
#: the trailing span of the rolling high (drawdown) and of the open-interest high: one day
HIGH_WINDOW = "24h"
#: the trailing span of the range and volume baselines: one week, the current bar left out
BASELINE = "7d"
#: a baseline needs at least this share of its bars to give a multiple (no spikes at the data's start)
BASELINE_MIN_SHARE = 0.5
#: default thresholds (assumptions, to be tuned: a 8 % fall within a day is a crash on BTC; 5x
#: the usual range and volume together is a spike; a tenth of open interest gone within a day)
MIN_DRAWDOWN = 0.08
MIN_SPIKE = 5.0
MIN_OI_DROP = 0.10
#: padding of a window around the falling leg, on whole hours
PAD_BEFORE_MS = HOUR_MS
PAD_AFTER_MS = 3 * HOUR_MS


@dataclass(frozen=True)
class SymbolCrash:
    """One symbol's crash in a window; times UTC ms, fractions (0.1 = 10 %)."""

    symbol: str
    leg_start_ms: int
    low_ms: int
    low: float
    high: float
    drawdown: float
    range_x: float | None
    volume_x: float | None
    oi_change: float | None = None


@dataclass
class CrashWindow:
    """A crash window over one or more symbols (see the module docstring for the figures)."""

    exchange: str
    start_ms: int
    end_ms: int
    crashes: list[SymbolCrash] = field(default_factory=list)
    known: str = ""  # id of a known event (catalogue or user file) whose window overlaps this one

    @property
    def worst(self) -> SymbolCrash:
        return max(self.crashes, key=lambda c: c.drawdown)

    @property
    def symbols(self) -> list[str]:
        return [c.symbol for c in sorted(self.crashes, key=lambda c: -c.drawdown)]

    def _max(self, name: str) -> float | None:
        vals = [getattr(c, name) for c in self.crashes if getattr(c, name) is not None]
        return max(vals) if vals else None

    @property
    def oi_change(self) -> float | None:
        vals = [c.oi_change for c in self.crashes if c.oi_change is not None]
        return min(vals) if vals else None

    @property
    def core(self) -> tuple[int, int]:
        return min(c.leg_start_ms for c in self.crashes), max(c.low_ms for c in self.crashes)

    @property
    def event_id(self) -> str:
        """A path-safe id from the window start: ``YYYY-MM-DD-HHMM``."""
        from backtest.store import ms_to_iso

        iso = ms_to_iso(self.start_ms)
        return f"{iso[:10]}-{iso[11:13]}{iso[14:16]}"

    def to_dict(self) -> dict[str, Any]:
        from backtest.store import ms_to_iso

        w = self.worst
        return {
            "id": self.event_id, "exchange": self.exchange, "start": ms_to_iso(self.start_ms), "end": ms_to_iso(self.end_ms),
            "worst_symbol": w.symbol, "drawdown": w.drawdown, "low_time": ms_to_iso(w.low_ms), "range_x": self._max("range_x"),
            "volume_x": self._max("volume_x"), "oi_change": self.oi_change, "known_event": self.known or None,
            "symbols": [
                {"symbol": c.symbol, "drawdown": c.drawdown, "high": c.high, "low": c.low, "low_time": ms_to_iso(c.low_ms),
                 "leg_start": ms_to_iso(c.leg_start_ms), "range_x": c.range_x, "volume_x": c.volume_x, "oi_change": c.oi_change}
                for c in sorted(self.crashes, key=lambda c: -c.drawdown)
            ],
        }

    def event_table(self, timeframe: str, lookback_days: float | None = None) -> dict[str, Any]:
        """The user-event table for ``backtest events add`` / ``scan --add``."""
        from backtest.event_file import event_table
        from backtest.store import ms_to_iso

        w = self.worst
        a, b = self.core
        observed = [{"what": f"{c.symbol} {timeframe} low (scan: {100 * c.drawdown:.1f} % below its 24h high)", "value": c.low,
                     "time": ms_to_iso(c.low_ms)} for c in sorted(self.crashes, key=lambda c: -c.drawdown)]
        return event_table(
            self.event_id, exchange=self.exchange, symbols=self.symbols, window=[ms_to_iso(self.start_ms), ms_to_iso(self.end_ms)],
            lookback_days=lookback_days, core=[ms_to_iso(a), ms_to_iso(b + timeframe_ms(timeframe))],
            name=f"{self.exchange} crash of {ms_to_iso(w.low_ms)[:10]}: {w.symbol} -{100 * w.drawdown:.1f} % (found by backtest scan)",
            observed=observed,
        )


# --------------------------------------------------------------------------------------------
# per-symbol indicators
# --------------------------------------------------------------------------------------------
def indicators(bars: pl.DataFrame, timeframe: str, oi: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per bar: ``drawdown``, ``roll_high``, ``range_x``, ``volume_x`` and ``oi_drop`` (null where
    not defined). ``bars``: ts, open, high, low, close, volume, quote_volume, sorted by ts.
    ``oi``: ts and ``oi`` (one value per time), or None."""
    step = timeframe_ms(timeframe)
    need = max(1, int(BASELINE_MIN_SHARE * _span_ms(BASELINE) / step))
    df = bars.sort("ts").with_columns(
        ((pl.col("high") - pl.col("low")) / pl.col("open")).alias("_range"),
        pl.col("quote_volume").fill_null(pl.col("volume") * pl.col("close")).alias("_vol"),
        pl.lit(1.0).alias("_one"),
    )
    df = df.with_columns(
        pl.col("high").rolling_max_by("ts", window_size=HIGH_WINDOW).alias("roll_high"),
        pl.col("_range").rolling_median_by("ts", window_size=BASELINE, closed="left").alias("_base_range"),
        pl.col("_vol").rolling_median_by("ts", window_size=BASELINE, closed="left").alias("_base_vol"),
        pl.col("_one").rolling_sum_by("ts", window_size=BASELINE, closed="left").fill_null(0.0).alias("_base_n"),
    )
    enough = pl.col("_base_n") >= need

    def multiple(num: str, base: str) -> pl.Expr:
        return pl.when(enough & (pl.col(base) > 0)).then(pl.col(num) / pl.col(base)).otherwise(None)

    df = df.with_columns(
        (1.0 - pl.col("low") / pl.col("roll_high")).alias("drawdown"),
        multiple("_range", "_base_range").alias("range_x"),
        multiple("_vol", "_base_vol").alias("volume_x"),
    )
    if oi is not None and oi.height:
        o = oi.sort("ts").with_columns(pl.col("oi").rolling_max_by("ts", window_size=HIGH_WINDOW).alias("_oi_high"))
        o = o.with_columns((1.0 - pl.col("oi") / pl.col("_oi_high")).alias("oi_drop")).select("ts", "oi", "oi_drop")
        df = df.join_asof(o, on="ts", strategy="backward")
    else:
        df = df.with_columns(pl.lit(None, pl.Float64).alias("oi"), pl.lit(None, pl.Float64).alias("oi_drop"))
    return df.drop("_range", "_vol", "_one", "_base_range", "_base_vol", "_base_n")


def _span_ms(span: str) -> int:
    return timeframe_ms(span) if span[-1] != "d" else int(span[:-1]) * 86_400_000


def symbol_crashes(ind: pl.DataFrame, symbol: str, timeframe: str, *, min_drawdown: float = MIN_DRAWDOWN,
                   min_spike: float = MIN_SPIKE, min_oi_drop: float = MIN_OI_DROP) -> list[SymbolCrash]:
    """One :class:`SymbolCrash` per run of flagged bars (runs closer than two bars are one)."""
    step = timeframe_ms(timeframe)
    flag = (pl.col("drawdown") >= min_drawdown) | (
        (pl.col("range_x").fill_null(0.0) >= min_spike) & (pl.col("volume_x").fill_null(0.0) >= min_spike)
    ) | (pl.col("oi_drop").fill_null(0.0) >= min_oi_drop)
    d = ind.with_columns(pl.col("ts").dt.epoch("ms").alias("t"), flag.alias("flag"))
    flagged = d.filter(pl.col("flag"))
    if flagged.height == 0:
        return []
    t = flagged["t"].to_list()
    runs, begin = [], 0
    for i in range(1, len(t) + 1):
        if i == len(t) or t[i] - t[i - 1] > 2 * step:
            runs.append((t[begin], t[i - 1]))
            begin = i
    out = []
    for a, b in runs:
        run = d.filter((pl.col("t") >= a) & (pl.col("t") <= b))
        low_row = run.row(int(run["drawdown"].arg_max()), named=True)
        high = float(low_row["roll_high"])
        dd = float(low_row["drawdown"])
        t_low = int(low_row["t"])
        # the leg: from the last bar, before the low and within the high window, whose high was
        # still within a quarter of the drawdown of the rolling high
        before = d.filter((pl.col("t") <= t_low) & (pl.col("t") > t_low - _span_ms(HIGH_WINDOW))
                          & (pl.col("high") >= high * (1.0 - dd / 4.0)))
        leg = int(before["t"].max()) if before.height else a
        leg = min(leg, a)
        oi_change = None
        if run["oi"].null_count() < run.height:
            prev = d.filter((pl.col("t") < leg) & pl.col("oi").is_not_null())
            if prev.height and prev["oi"][-1]:
                oi_change = float(run["oi"].min()) / float(prev["oi"][-1]) - 1.0
        out.append(SymbolCrash(symbol, leg, t_low, float(low_row["low"]), high, dd, _max(run["range_x"]), _max(run["volume_x"]), oi_change))
    return out


def _max(s: pl.Series) -> float | None:
    v = s.drop_nulls().max()
    return None if v is None else float(v)


def merge_windows(exchange: str, crashes: list[SymbolCrash]) -> list[CrashWindow]:
    """Pad each crash's leg to whole hours and merge crashes into windows across symbols.

    The deepest crash anchors a window; every other crash whose padded span overlaps an anchor's
    joins that window (one crash per symbol: the deepest), and the window spans its members.
    Testing against the anchor, not the growing window, keeps a chain of volatile days on many
    symbols from fusing into one week-long window."""
    def span(c: SymbolCrash) -> tuple[int, int]:
        return (c.leg_start_ms - PAD_BEFORE_MS) // HOUR_MS * HOUR_MS, -(-(c.low_ms + PAD_AFTER_MS) // HOUR_MS) * HOUR_MS

    out: list[tuple[tuple[int, int], CrashWindow]] = []
    for c in sorted(crashes, key=lambda c: (-c.drawdown, c.low_ms, c.symbol)):
        a, b = span(c)
        for (aa, ab), w in out:
            if a < ab and aa < b:
                if c.symbol not in {x.symbol for x in w.crashes}:
                    w.crashes.append(c)
                    w.start_ms, w.end_ms = min(w.start_ms, a), max(w.end_ms, b)
                break
        else:
            out.append(((a, b), CrashWindow(exchange, a, b, [c])))
    return sorted((w for _, w in out), key=lambda w: (-w.worst.drawdown, w.start_ms))


# --------------------------------------------------------------------------------------------
# over the store
# --------------------------------------------------------------------------------------------
def scan_store(
    store: Any,
    exchange: str,
    *,
    symbols: list[str] | None = None,
    timeframe: str = "1h",
    since: Any = None,
    until: Any = None,
    min_drawdown: float = MIN_DRAWDOWN,
    min_spike: float = MIN_SPIKE,
    min_oi_drop: float = MIN_OI_DROP,
    events: list | None = None,
) -> list[CrashWindow]:
    """Crash windows in the store's ``ohlcv`` bars of ``exchange`` at ``timeframe``, ranked.
    ``events``: catalogue events to mark windows that overlap one (``CrashWindow.known``)."""
    from backtest.store import Store, to_ms

    st = store if isinstance(store, Store) else Store(store, must_exist=True)
    timeframe_ms(timeframe)
    for name, v, lo, hi in (("--min-drawdown", min_drawdown, 0.0, 1.0), ("--min-spike", min_spike, 1.0, 1e6), ("--min-oi-drop", min_oi_drop, 0.0, 1.0)):
        if not lo < v <= hi:
            raise ScanError(f"{name} must be above {lo:g} and at most {hi:g}, not {v:g}")
    s = to_ms(since) if since is not None else None
    e = to_ms(until) if until is not None else None
    if s is not None and e is not None and s >= e:
        raise ScanError("--since must be before --until")
    parts = st.partitions("ohlcv", exchange=exchange, timeframe=timeframe)
    if not parts:
        have = sorted({p.timeframe for p in st.partitions("ohlcv", exchange=exchange)})
        hint = f"; it has {', '.join(have)} (use --timeframe)" if have else "; download bars first (backtest download / fetch)"
        raise ScanError(f"the store {st.root} holds no {exchange} ohlcv bars at {timeframe}{hint}")
    every = not symbols
    if every:
        df = st.scan("ohlcv", exchange=exchange, timeframe=timeframe).select("symbol").unique().collect()
        symbols = sorted(df["symbol"].to_list())
    warm = _span_ms(BASELINE)
    crashes: list[SymbolCrash] = []
    scanned = 0
    for sym in symbols:
        bars = st.read("ohlcv", exchange=exchange, symbol=sym, timeframe=timeframe,
                       start=None if s is None else s - warm, end=e)
        if bars.height == 0:
            if every:  # scanning every stored symbol: one without bars in the range is skipped
                continue
            raise ScanError(f"the store holds no {exchange} {sym} ohlcv bars at {timeframe} in the range{_stored_span(st, exchange, timeframe, sym)}; "
                            "check the symbol, --since/--until or --timeframe, or download the bars (backtest download)")
        scanned += 1
        ind = indicators(bars, timeframe, _open_interest(st, exchange, sym, s, e, warm))
        if s is not None:
            ind = ind.filter(pl.col("ts").dt.epoch("ms") >= s)
        crashes += symbol_crashes(ind, sym, timeframe, min_drawdown=min_drawdown, min_spike=min_spike, min_oi_drop=min_oi_drop)
    if every and not scanned:
        raise ScanError(f"no stored {exchange} symbol has ohlcv bars at {timeframe} in the range{_stored_span(st, exchange, timeframe)}; "
                        "change --since/--until, or download the bars (backtest download)")
    windows = merge_windows(exchange, crashes)
    for w in windows:
        for ev in events or ():
            if ev.exchange == exchange and ev.start_ms < w.end_ms and w.start_ms < ev.end_ms:
                w.known = ev.id
                break
    return windows


def _stored_span(st, exchange: str, timeframe: str, symbol: str | None = None) -> str:
    """' (the stored bars span A to B)' of one symbol's (or every symbol's) bars, for a message."""
    from backtest.store import ms_to_iso

    a, b, _n = st.coverage("ohlcv", exchange, symbol, timeframe)
    return "" if a is None else f" (the stored bars span {ms_to_iso(a)} to {ms_to_iso(b)})"


def _open_interest(st, exchange: str, symbol: str, s: int | None, e: int | None, warm: int) -> pl.DataFrame | None:
    oi = st.read("open_interest", exchange=exchange, symbol=symbol, start=None if s is None else s - warm, end=e)
    if oi.height == 0:
        return None
    col = "open_interest" if oi["open_interest"].null_count() < oi.height else "open_interest_usd"
    oi = oi.filter(pl.col(col).is_not_null())
    # several stored periods (5m and 1h): one value per time
    return oi.group_by("ts").agg(pl.col(col).last().alias("oi")).sort("ts") if oi.height else None
