"""The Python API over the kernels: polars in, polars out.

``run_event`` replays a catalogued event (``mode="replay"``: the observed path, no feedback; the
forced orders fill at their own impact, but the path is not moved) or runs it with feedback
(``mode="cascade"``: forced orders move the price through an impact model, round after round). The
sweep-friendly split is :func:`prepare` (market arrays and populations, built once) and
:func:`simulate_prepared` (re-runs only what the overrides need).

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

Simplifications (see also :mod:`backtest.kernels.cascade`): every position of the population is
open at the start of the window; cross positions are treated like isolated ones with their
allotted collateral; linear contracts only; one insurance fund split across the symbols by open
notional; ADL runs at the end of each bar for what the fund could not cover.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from backtest import records as R
from backtest.errors import SimError, UserError
from backtest.params import apply_overrides, as_dict
from backtest.timeframes import FINE_TIMEFRAMES, timeframe_ms

TS = pl.Datetime("ms", "UTC")




# ------------------------------------------------------------------------------------------
# parameters
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimParams:
    """Simulation parameters (flat names; ``--set name=value``). Sources or "assumption"."""

    #: the path: "anchored" - the finest last-price bars scaled to the hourly mark price at each
    #: hour's open and clipped to the mark's hourly range (keeps the minutes, follows the mark,
    #: which is what Binance liquidates on); "last" - the finest last-price bars as they are;
    #: "mark" - the hourly mark price only. Where no mark is stored, last price (flagged).
    price_path: str = "anchored"
    #: "sqrt": |dlnP| = Y * sigma * sqrt(Q / V) (square-root law: Toth et al. 2011, "Anomalous
    #: price impact and the critical nature of liquidity in financial markets", PRX 1, 021006;
    #: Bouchaud et al. "Trades, Quotes and Prices", ch. 12); "linear": |dP/P| = 1 % * Q / D;
    #: "none": no impact. Replay does not move the path, but its forced orders still fill at the
    #: trigger moved by their own impact (set "none" for fills at the trigger level).
    impact_model: str = "sqrt"
    #: Y of the square-root law; of order 1 in the literature (Toth et al. 2011 report Y ~ 0.5-1).
    impact_coef: float = 1.0
    #: notional resting within 1 % of mid, USD; None = depth_volume_ratio x daily volume.
    depth_usd_1pct: float | None = None
    #: assumption: 1 %-depth as a share of daily traded notional (BTC perp: ~$150-250M depth for
    #: ~$15-25B daily volume in 2025 order-book snapshots - an order of magnitude, not a measurement).
    depth_volume_ratio: float = 0.01
    #: scale on depth and volume (sweep knob; 1 = as derived).
    depth_multiplier: float = 1.0
    #: assumption: stressed-book factor on depth/volume during forced selling (books thinned by
    #: roughly an order of magnitude on 2025-10-10 per market-maker commentary; 0.25 is a guess).
    liquidity_multiplier: float = 0.25
    #: assumption: half-life of transient impact (seconds).
    impact_half_life_s: float = 60.0
    #: assumption: insurance fund available for the event's symbols, USD, split by open notional
    #: (order of magnitude of Binance's published USDS-M insurance-fund balance, ~$1B).
    insurance_fund_usd: float = 1.0e9
    #: Binance BTCUSDT ``liquidationFee`` 1.25 % (exchangeInfo; see backtest.margin.CLEARANCE_FEE),
    #: charged only out of the remaining margin.
    clearance_fee_rate: float = 0.0125
    #: Binance USDS-M VIP0 taker fee 0.05 % (backtest.margin.TAKER_FEE), paid by stop fills.
    taker_fee_rate: float = 0.0005
    #: cascade rounds per path point, at most (a guard; real cascades here stop far earlier).
    max_rounds: int = 200
    #: width of a liquidation-map price bucket, as a fraction of the start price.
    bucket_pct: float = 0.0025
    #: time bucket of the realised heatmap, minutes.
    heatmap_minutes: int = 5
    #: a cluster is a run of adjacent buckets each holding at least this share of its side's open notional.
    cluster_min_share: float = 0.01
    #: clusters are looked for within this distance of the start price (fraction).
    cluster_range_pct: float = 0.3
    #: entries per lazily-sorted bucket of the fast kernel's trigger lists (speed only).
    sort_bucket_size: int = 1024

    def validate(self) -> None:
        if self.price_path not in ("anchored", "last", "mark"):
            raise ValueError(f"price_path must be 'anchored', 'last' or 'mark', got {self.price_path!r}")
        if self.impact_model not in R.IMPACT_MODELS:
            raise ValueError(f"impact_model must be one of {sorted(R.IMPACT_MODELS)}, got {self.impact_model!r}")
        checks = [
            ("impact_coef", self.impact_coef >= 0, ">= 0"),
            ("depth_volume_ratio", self.depth_volume_ratio > 0, "> 0"),
            ("depth_multiplier", self.depth_multiplier > 0, "> 0"),
            ("liquidity_multiplier", self.liquidity_multiplier > 0, "> 0"),
            ("impact_half_life_s", self.impact_half_life_s > 0, "> 0 (inf = permanent impact)"),
            ("insurance_fund_usd", self.insurance_fund_usd >= 0, ">= 0"),
            ("clearance_fee_rate", 0 <= self.clearance_fee_rate < 1, "in [0, 1)"),
            ("taker_fee_rate", 0 <= self.taker_fee_rate < 1, "in [0, 1)"),
            ("max_rounds", 0 <= self.max_rounds <= 10_000, "in [0, 10000]"),
            ("bucket_pct", 0 < self.bucket_pct <= 0.5, "in (0, 0.5]"),
            ("heatmap_minutes", self.heatmap_minutes >= 1, ">= 1"),
            ("cluster_min_share", 0 < self.cluster_min_share < 1, "in (0, 1)"),
            ("cluster_range_pct", 0 < self.cluster_range_pct <= 1, "in (0, 1]"),
            ("sort_bucket_size", self.sort_bucket_size >= 1, ">= 1"),
        ]
        if self.depth_usd_1pct is not None:
            checks.append(("depth_usd_1pct", self.depth_usd_1pct > 0, "> 0 (or auto to derive it from volume)"))
        for name, ok, what in checks:
            if isinstance(getattr(self, name), bool):  # True is not 1.0
                raise ValueError(f"parameter {name!r} must be a number, got {getattr(self, name)!r}")
            if not ok or (isinstance(getattr(self, name), float) and math.isnan(getattr(self, name))):
                raise ValueError(f"parameter {name!r} must be {what}, got {getattr(self, name)!r}")


def _population_module():
    try:
        from backtest import population
    except ImportError:  # pragma: no cover - only before population.py exists
        return None
    return population


def default_groups() -> list[Any]:
    """The parameter groups overrides resolve against: [PopulationParams(), SimParams()]."""
    pm = _population_module()
    groups: list[Any] = []
    if pm is not None and hasattr(pm, "PopulationParams"):
        groups.append(pm.PopulationParams())
    groups.append(SimParams())
    return groups


def resolve_params(overrides: dict | None) -> tuple[Any, SimParams]:
    """(PopulationParams or None, SimParams) with the flat ``overrides`` applied and validated."""
    groups = apply_overrides(default_groups(), dict(overrides or {}))
    sim = groups[-1]
    pop = groups[0] if len(groups) == 2 else None
    return pop, sim


# ------------------------------------------------------------------------------------------
# shocks
# ------------------------------------------------------------------------------------------
_SHOCK_RE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(%?)\s*(?:@\s*(\S+))?\s*$")


def parse_shock(text: str, default_ms: int | None = None) -> tuple[float, int]:
    """``"-5%@2025-10-10T21:00Z"`` -> (-0.05, UTC ms). Without ``@time``, ``default_ms``. A time
    without a zone is refused, with the corrected option in the message."""
    from datetime import datetime

    from backtest.store import to_ms

    m = _SHOCK_RE.match(text or "")
    if not m:
        raise SimError(f"cannot read shock {text!r}; give e.g. --shock -5%@2025-10-10T21:00Z")
    if not m.group(2):
        raise SimError(f"shock {text!r} needs a percent sign; give e.g. --shock -5%@2025-10-10T21:00Z")
    value = float(m.group(1)) / 100.0
    if not -0.95 <= value <= 5.0 or value == 0.0:
        raise SimError(f"shock {text!r} is out of range; give a move between -95% and +500%, not 0")
    when = m.group(3)
    if when is None:
        if default_ms is None:
            raise SimError(f"shock {text!r} has no time; give e.g. -5%@2025-10-10T21:00Z")
        return value, int(default_ms)
    move = f"{m.group(1)}{m.group(2)}"
    try:
        naive = datetime.fromisoformat(when).tzinfo is None and "T" in when
    except ValueError:
        naive = False
    if naive:  # times are UTC and must say so (as everywhere else); say exactly how
        raise SimError(f"time of --shock {when!r} has no zone; add Z for UTC: --shock={move}@{when}Z")
    try:
        return value, to_ms(when.replace("Z", "+00:00") if when.endswith("Z") else when)
    except Exception:
        raise SimError(f"cannot read the time of shock {text!r}; give ISO-8601 UTC, e.g. --shock={move}@2025-10-10T21:00Z") from None


# ------------------------------------------------------------------------------------------
# market data
# ------------------------------------------------------------------------------------------
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


def load_market(store: Any, exchange: str, symbol: str, start: int, end: int, lookback_start: int, price_path: str = "anchored") -> Market:
    """Read one symbol's path, funding and liquidity estimates for ``[start, end)``."""
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
    vol_usd = np.zeros(n)
    if source == "last":
        qv = df["quote_volume"].to_numpy()
        v = df["volume"].to_numpy() * df["close"].to_numpy()
        vol_usd = np.where(np.isfinite(qv), qv, v).astype(np.float64)
    fr = np.zeros(n)
    fund = store.read("funding", exchange=exchange, symbol=symbol, timeframe="event", start=start, end=end)
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
    if hist.height >= 48:
        c = hist["close"].to_numpy()
        r = np.diff(np.log(c))
        sigma = float(np.std(r) * math.sqrt(24))
        qv = hist["quote_volume"].to_numpy()
        v = np.where(np.isfinite(qv), qv, hist["volume"].to_numpy() * c)
        vday = float(np.sum(v) / (hist.height / 24.0))
    else:
        c = bars["close"]
        r = np.diff(np.log(c)) if c.size > 1 else np.zeros(1)
        per_day = 86_400_000 / tf_ms
        sigma = float(np.std(r) * math.sqrt(per_day)) if r.size else 0.03
        vday = float(np.sum(bars["volume_usd"]) / max(1e-9, c.size / per_day))
    if not np.isfinite(sigma) or sigma <= 0:
        sigma = 0.03  # assumption: typical BTC daily volatility when no history is stored
    if not np.isfinite(vday) or vday <= 0:
        raise SimError(f"no traded volume for {symbol} before {_iso(start)}; set depth_usd_1pct and impact_model=linear")
    return sigma, vday


def _iso(ms: int) -> str:
    from backtest.store import ms_to_iso

    return ms_to_iso(int(ms))


# ------------------------------------------------------------------------------------------
# populations
# ------------------------------------------------------------------------------------------
@dataclass
class PopEntry:
    arrays: dict[str, np.ndarray]
    open_notional_usd: float
    source: str
    lists: tuple | None = None  # cached trigger lists (order, okey, bstart, lists)
    #: where the open-interest target came from (population.resolve_open_interest): "store ...",
    #: "event catalogue: ...", "estimate: ..." or "open_interest_usd parameter"
    oi_source: str = "unknown"


def oi_source_kind(source: str) -> str:
    """Short label of an open-interest source: published, estimate, store, parameter or unknown."""
    for prefix, kind in (("event catalogue", "published"), ("estimate", "estimate"), ("store", "store"), ("open_interest_usd", "parameter")):
        if source.startswith(prefix):
            return kind
    return "unknown"


def estimated_open_interest(summary: dict) -> tuple[int, int]:
    """(symbols whose open interest is an estimate, symbols) of a run's ``summary``."""
    kinds = [v.get("open_interest_kind") for v in (summary.get("per_symbol") or {}).values()]
    return sum(k == "estimate" for k in kinds), len(kinds)


def _build_population(ev: Any, symbol: str, pop_params: Any, store: Any, market: Market) -> PopEntry:
    from backtest.population import build_population

    pop = build_population(ev, symbol, pop_params, store=store)
    arrays = pop.arrays if hasattr(pop, "arrays") else pop
    R.check_population(arrays)
    on = float(getattr(pop, "open_notional_usd", _open_notional(arrays)))
    return PopEntry(arrays, on, "backtest.population", oi_source=str(getattr(pop, "target_source", "unknown")))


def _open_notional(a: dict[str, np.ndarray]) -> float:
    return float(np.sum(a["entry"] * a["qty"] * a["weight"].astype(np.float64)))


# ------------------------------------------------------------------------------------------
# kernel calls
# ------------------------------------------------------------------------------------------
def build_lists(pop: dict[str, np.ndarray], bucket_size: int = 1024) -> tuple:
    """Trigger lists of a population (sorting step of the fast kernel)."""
    from backtest.kernels.sorting import SORT_BAD_CODE, SORT_MIXED_MMR, build_lists_nb

    order, okey, bstart, lists, status = build_lists_nb(
        pop["side"], pop["venue"], pop["tier"], pop["mmr"], pop["liq_price"], pop["stop_price"], int(bucket_size)
    )
    if status == SORT_MIXED_MMR:
        raise ValueError("population has different maintenance rates within one (side, venue, tier) group")
    if status == SORT_BAD_CODE:
        raise ValueError("population has a side, venue or tier code out of range")
    bsorted = np.zeros(len(bstart) - 1, np.bool_)  # buckets sorted so far (the kernel sets them)
    m = len(order)
    # per-entry payload in list order, filled with the keys when a bucket is first entered
    # (sorting.sort_bucket): qty x weight, weight, bankruptcy price before funding, stop
    payload = (np.empty(m), np.empty(m, np.float32), np.empty(m), np.empty(m))
    return order, okey, bstart, bsorted, lists, *payload


def kernel_params(sim: SimParams, market: Market, *, mode: str, fund_usd: float, dd_bar: int = 0, dd_ref: float = 0.0, dd_dir: int = -1) -> np.ndarray:
    """The kernel's parameter vector (records.KP_*)."""
    prm = np.zeros(R.KP_SIZE)
    # replay: no feedback on the path, but forced orders still pay their own impact in the fill
    model = R.IMPACT_MODELS[sim.impact_model]
    scale = sim.depth_multiplier * sim.liquidity_multiplier
    depth = sim.depth_usd_1pct if sim.depth_usd_1pct is not None else sim.depth_volume_ratio * market.volume_daily_usd
    prm[R.KP_IMPACT_MODEL] = model
    prm[R.KP_IMPACT_COEF] = sim.impact_coef
    prm[R.KP_SIGMA] = market.sigma_daily
    prm[R.KP_VOLUME] = market.volume_daily_usd * scale
    prm[R.KP_DEPTH] = depth * scale
    prm[R.KP_HALF_LIFE_S] = sim.impact_half_life_s
    prm[R.KP_FUND0] = fund_usd
    prm[R.KP_CLEARANCE] = sim.clearance_fee_rate
    prm[R.KP_TAKER] = sim.taker_fee_rate
    prm[R.KP_MAX_ROUNDS] = sim.max_rounds if (model != R.IMPACT_NONE and mode != "replay") else 0
    prm[R.KP_NO_FEEDBACK] = 1.0 if mode == "replay" else 0.0
    prm[R.KP_DD_BAR] = dd_bar
    prm[R.KP_DD_REF] = dd_ref
    prm[R.KP_DD_DIR] = dd_dir
    prm[R.KP_BAR_MS] = market.bar_ms
    return prm


def run_kernel(
    pop: dict[str, np.ndarray],
    bars: dict[str, np.ndarray],
    prm: np.ndarray,
    *,
    reference: bool = False,
    lists: tuple | None = None,
    bucket_size: int = 1024,
    per_position: bool = False,
    workspace: "Workspace | None" = None,
) -> dict[str, Any]:
    """Run the kernel on plain arrays; returns a dict of its outputs (and timings).

    Exits come as records in path-point order (``x_pos, x_ts, x_fill, x_round, x_code``);
    ``per_position=True`` adds full-length ``exit_code, exit_ts, fill, exit_round`` arrays
    (NONE / 0 / NaN / -1 for positions still open), which do not depend on the mode.

    ``workspace`` (a :class:`Workspace`, grown as needed) makes the kernel write into arrays
    reused run after run instead of fresh ones (fresh memory costs a page fault per 4 KiB on
    first touch, more than the simulation of a quiet day): the outputs are then views into it,
    valid until the workspace's next run. Results are the same either way.
    """
    from backtest.kernels.cascade import simulate_into_nb, simulate_nb

    t0 = time.perf_counter()
    if reference:
        lists = (np.empty(0, np.int32), np.empty(0), np.zeros(1, np.int64), np.zeros(0, np.bool_), np.zeros((0, 7), np.int64),
                 np.empty(0), np.empty(0, np.float32), np.empty(0), np.empty(0))
    elif lists is None:
        lists = build_lists(pop, bucket_size)
    t1 = time.perf_counter()
    args = (
        pop["side"], pop["venue"], pop["entry"], pop["qty"], pop["margin"], pop["mmr"], pop["liq_price"], pop["stop_price"], pop["weight"],
        lists[0], lists[1], lists[2], lists[3], lists[4], lists[5], lists[6], lists[7], lists[8],
        bars["ts"], bars["open"], bars["high"], bars["low"], bars["close"], bars["funding_rate"],
        prm, bool(reference),
    )
    if workspace is None:
        out = simulate_nb(*args)
    else:
        out = simulate_into_nb(*args, *workspace.arrays(len(pop["side"]), len(bars["ts"]), int(prm[R.KP_MAX_ROUNDS])))
    t2 = time.perf_counter()
    keys = ("x_pos", "x_ts", "x_fill", "x_round", "x_code", "bar_i", "bar_f", "round_units", "stats", "x_usd")
    res = dict(zip(keys, out))
    if per_position:
        res.update(per_position_arrays(res, len(pop["side"])))
    res["sort_s"] = t1 - t0
    res["sim_s"] = t2 - t1
    res["lists"] = lists
    return res


class Workspace:
    """Output and scratch arrays of the kernel, kept from run to run (see :func:`run_kernel`).

    Grows to the largest run seen (positions, bars, cascade rounds); never shrinks.
    """

    def __init__(self) -> None:
        self._ws: tuple | None = None
        self._cap = (-1, -1, -1)

    def spare(self, m: int) -> tuple:
        """Two float64 buffers of at least ``m`` elements that a run's outputs do not use (its
        scratch arrays), free once the run has returned."""
        ws = self._ws
        if ws is None or self._cap[0] < m:
            return np.empty(m), np.empty(m)
        return ws[11], ws[12]

    def arrays(self, n: int, nbars: int, max_rounds: int) -> tuple:
        if self._ws is None or n > self._cap[0] or nbars > self._cap[1] or max_rounds > self._cap[2]:
            from backtest.kernels.cascade import workspace_nb

            cap = (max(n, self._cap[0]), max(nbars, self._cap[1]), max(max_rounds, self._cap[2]))
            self._ws = None  # free the old arrays first
            self._ws = workspace_nb(*cap)
            self._cap = cap
        return self._ws


def per_position_arrays(res: dict[str, Any], n: int) -> dict[str, np.ndarray]:
    """Full-length per-position outputs from the exit records of :func:`run_kernel`."""
    code = np.zeros(n, np.int8)
    ts = np.zeros(n, np.int64)
    fill = np.full(n, np.nan)
    rnd = np.full(n, -1, np.int16)
    p = res["x_pos"]
    code[p] = res["x_code"]
    ts[p] = res["x_ts"]
    fill[p] = res["x_fill"]
    rnd[p] = res["x_round"]
    return {"exit_code": code, "exit_ts": ts, "fill": fill, "exit_round": rnd}


# ------------------------------------------------------------------------------------------
# prepare / simulate
# ------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    """Market arrays and populations of one event, built once (for sweeps)."""

    event: Any
    symbols: list[str]
    markets: dict[str, Market]
    pop_params: Any
    sim_params: SimParams
    populations: dict[str, PopEntry]
    store: Any = None
    #: the overrides given to prepare(); simulate_prepared applies its own on top of them
    overrides: dict = field(default_factory=dict)
    _pop_cache: dict = field(default_factory=dict, repr=False)


def _store(store: Any):
    from backtest.store import Store

    if store is None or isinstance(store, (str, Path)):
        return Store(store)
    return store


def prepare(event_id: Any, overrides: dict | None = None, symbols: list[str] | None = None, store: Any = None, progress: Callable | None = None) -> Prepared:
    """Load the event's market arrays and build its populations once."""
    from backtest.events import get_event

    st = _store(store)
    ev = get_event(event_id, None if not isinstance(store, (str, Path)) else str(store))
    pop_params, sim = resolve_params(overrides)
    syms = list(symbols) if symbols else list(ev.symbols)
    unknown = [s for s in syms if s not in ev.symbols]
    if unknown:
        raise SimError(f"symbol {unknown[0]!r} is not part of event {ev.id}; its symbols: {', '.join(ev.symbols)}")
    markets: dict[str, Market] = {}
    pops: dict[str, PopEntry] = {}
    for i, s in enumerate(syms):
        if progress:
            progress(f"loading {s}", i, len(syms))
        markets[s] = load_market(st, ev.exchange, s, ev.start_ms, ev.end_ms, ev.lookback_start_ms, sim.price_path)
        pops[s] = _build_population(ev, s, pop_params, st, markets[s])
    prep = Prepared(ev, syms, markets, pop_params, sim, pops, st, dict(overrides or {}))
    prep._pop_cache[_pop_key(pop_params)] = pops
    return prep


def _pop_key(pop_params: Any) -> str:
    if pop_params is None:
        return "none"
    return json.dumps(as_dict(pop_params), sort_keys=True, default=str)


def simulate_prepared(
    prepared: Prepared,
    overrides: dict | None = None,
    mode: str = "cascade",
    shock: str | None = None,
    progress: Callable | None = None,
    summary_only: bool = False,
) -> "SimResult":
    """Run a prepared event with ``overrides``; rebuilds populations only if theirs changed.

    ``summary_only=True`` (sweeps) skips building the frames: the result's frames are empty and
    its summary is the same as a full run's.
    """
    if mode not in ("replay", "cascade"):
        raise SimError(f"mode must be 'replay' or 'cascade', got {mode!r}")
    if shock is not None and mode != "cascade":
        raise SimError("a shock needs mode='cascade'")
    merged = {**prepared.overrides, **(overrides or {})}
    pop_params, sim = resolve_params(merged)
    ev = prepared.event
    if sim.price_path != prepared.sim_params.price_path:
        raise SimError("price_path changes the market data: give it to prepare(), not per scenario")
    key = _pop_key(pop_params)
    pops = prepared._pop_cache.get(key)
    if pops is None:
        pops = {s: _build_population(ev, s, pop_params, prepared.store, prepared.markets[s]) for s in prepared.symbols}
        prepared._pop_cache.clear()  # keep one extra population set in memory at most
        prepared._pop_cache[_pop_key(prepared.pop_params)] = prepared.populations
        prepared._pop_cache[key] = pops
    shock_v = shock_ms = None
    if shock is not None:
        shock_v, shock_ms = parse_shock(shock, ev.core_start_ms)
        if not ev.start_ms <= shock_ms < ev.end_ms:
            raise SimError(f"shock time {_iso(shock_ms)} is outside the event window {_iso(ev.start_ms)} → {_iso(ev.end_ms)}")
    total_on = sum(p.open_notional_usd for p in pops.values()) or 1.0
    per: dict[str, dict] = {}
    t_sort = t_sim = 0.0
    for i, s in enumerate(prepared.symbols):
        if progress:
            progress(f"simulating {s}", i, len(prepared.symbols))
        mk = prepared.markets[s]
        pe = pops[s]
        bars = mk.bars
        dd_bar, dd_ref, dd_dir = 0, 0.0, -1
        if shock_v is not None:
            bars, dd_bar, dd_ref = _shocked(bars, shock_v, shock_ms)
            dd_dir = -1 if shock_v < 0 else 1
        fund = sim.insurance_fund_usd * pe.open_notional_usd / total_on
        prm = kernel_params(sim, mk, mode=mode, fund_usd=fund, dd_bar=dd_bar, dd_ref=dd_ref, dd_dir=dd_dir)
        if pe.lists is None or pe.lists[-1] != sim.sort_bucket_size:
            pe.lists = (*build_lists(pe.arrays, sim.sort_bucket_size), sim.sort_bucket_size)
        # summary-only runs (sweeps) drop the kernel's outputs once the summary is made: they
        # reuse one workspace per symbol slot instead of faulting in fresh output memory each run
        ws = _summary_workspace(i) if summary_only else None
        out = run_kernel(pe.arrays, bars, prm, lists=pe.lists[:-1], workspace=ws)
        t_sort += out["sort_s"]
        t_sim += out["sim_s"]
        per[s] = {"out": out, "bars": bars, "market": mk, "pop": pe, "fund0": fund, "split": _exit_split(out, pe.arrays)}
    return _assemble(prepared, per, mode, shock, pop_params, sim, timings={"sort_s": t_sort, "simulate_s": t_sim}, summary_only=summary_only)


_SUMMARY_WS = threading.local()


def _summary_workspace(slot: int) -> "Workspace":
    """The kernel workspace of symbol slot ``slot`` for summary-only runs (kept by the thread:
    runs in other threads, e.g. a multi-threaded dask worker, get their own)."""
    slots = getattr(_SUMMARY_WS, "slots", None)
    if slots is None:
        slots = _SUMMARY_WS.slots = []
    while len(slots) <= slot:
        slots.append(Workspace())
    return slots[slot]


def _shocked(bars: dict[str, np.ndarray], shock: float, t_ms: int) -> tuple[dict[str, np.ndarray], int, float]:
    """Observed path until ``t_ms``; from the bar holding it, flat at ``(1 + shock)`` x its open."""
    ts = bars["ts"]
    j = int(np.searchsorted(ts, t_ms, side="right") - 1)
    j = max(j, 0)
    ref = float(bars["open"][j])
    level = ref * (1.0 + shock)
    out = {k: v.copy() for k, v in bars.items()}
    for k in ("open", "high", "low", "close"):
        out[k][j:] = level
    return out, j, ref


def run_event(
    event_id: Any,
    *,
    mode: str = "replay",
    overrides: dict | None = None,
    shock: str | None = None,
    symbols: list[str] | None = None,
    store: Any = None,
    progress: Callable | None = None,
) -> "SimResult":
    """Replay (``mode="replay"``) or cascade (``mode="cascade"``) one catalogued event."""
    if mode not in ("replay", "cascade"):
        raise SimError(f"mode must be 'replay' or 'cascade', got {mode!r}")
    if shock is not None and mode != "cascade":
        raise SimError("--shock applies to the cascade command (mode='cascade')")
    prep = prepare(event_id, overrides, symbols, store, progress)
    res = simulate_prepared(prep, overrides, mode=mode, shock=shock, progress=progress)
    if mode == "replay":  # observed forced orders in the store, when there are any
        from backtest.observed import add_observed_total

        add_observed_total(res.summary, prep.store, prep.event)
    return res


# ------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------
@dataclass
class SimResult:
    """Outputs of one run: summary dict and polars frames (``ts`` as Datetime("ms","UTC"))."""

    summary: dict
    bars: pl.DataFrame
    liquidations: pl.DataFrame
    clusters: pl.DataFrame
    liq_map: pl.DataFrame
    heatmap: pl.DataFrame

    def write(self, out_dir: str | Path) -> Path:
        """Write summary.json and the frames as Parquet into ``out_dir`` (created if missing; its
        parent folder must exist, see :func:`backtest.paths.check_out_dir`)."""
        from backtest.paths import check_out_dir, write_atomic

        out = check_out_dir(out_dir, error=SimError)
        out.mkdir(exist_ok=True)
        # an earlier run's summary.json goes first: until the new one is written, the folder
        # does not claim to hold one whole run
        (out / "summary.json").unlink(missing_ok=True)
        for name, frame in (("bars", self.bars), ("liquidations", self.liquidations), ("clusters", self.clusters),
                            ("liq_map", self.liq_map), ("heatmap", self.heatmap)):
            write_atomic(out / f"{name}.parquet", frame.write_parquet)
        # summary.json last: its presence says the folder holds one whole run
        write_atomic(out / "summary.json", lambda t: t.write_text(json.dumps(self.summary, indent=2, default=_json_default) + "\n"))
        return out


def _estimate_notes(per_symbol: dict[str, dict]) -> list[str]:
    """One note naming the symbols whose open interest is an estimate, with the first one's
    derivation (every symbol's is in ``per_symbol[...]["open_interest_source"]``)."""
    est = [(s, v["open_interest_source"]) for s, v in per_symbol.items() if v.get("open_interest_kind") == "estimate"]
    if not est:
        return []
    names = ", ".join(s for s, _ in est)
    first_sym, first = est[0]
    more = "; the others' in summary.json, per_symbol.open_interest_source" if len(est) > 1 else ""
    return [f"open interest estimated, no published level, for {names}. {first_sym}: {first.removeprefix('estimate: ')}{more}"]


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


def _f(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _exit_split(out: dict, a: dict, ws: "Workspace | None" = None) -> tuple:
    """Exit notional by kind (see kernels.cascade.exit_split_nb): taken right after the run,
    while its records and the positions they touch are still in cache; into the workspace's
    spare buffers when there is one (valid until its next run)."""
    from backtest.kernels.cascade import exit_split_nb

    m = len(out["x_pos"])
    kind_usd, liq_usd = ws.spare(m) if ws is not None else (np.empty(m), np.empty(m))
    # one pass over the exit records: x_usd is qty x weight x fill, the product the frames use
    counts = exit_split_nb(out["x_pos"], out["x_code"], out["x_usd"], out["x_ts"], a["side"], kind_usd, liq_usd)
    return kind_usd, liq_usd, *counts


def _exit_totals(per: dict) -> dict:
    """Totals and the peak minute straight from the kernels' exit records (same in both paths)."""
    tot = {"long": 0.0, "short": 0.0, "stopped": 0.0, "adl": 0.0}
    from backtest.kernels.cascade import minute_sums_nb

    splits = []
    for d in per.values():
        split = d.get("split") or _exit_split(d["out"], d["pop"].arrays)
        kind_usd, liq_usd, nl, ns, nst, na, nliq, mmin, mmax = split
        a, b, c = nl, nl + ns, nl + ns + nst
        tot["long"] += float(np.sum(kind_usd[:a]))
        tot["short"] += float(np.sum(kind_usd[a:b]))
        tot["stopped"] += float(np.sum(kind_usd[b:c]))
        tot["adl"] += float(np.sum(kind_usd[c : c + na]))
        if nliq:
            splits.append((d["out"], liq_usd, nliq, mmin, mmax))
    tot["peak_minute"], tot["peak_usd"] = None, 0.0
    if splits:
        m0 = int(min(x[3] for x in splits))
        m1 = int(max(x[4] for x in splits))
        if m1 - m0 < 50_000_000:  # minutes as bins, no sort; sums add in record order, as bincount
            u = None
            sums = np.zeros(m1 - m0 + 1)
            for out, liq_usd, _, _, _ in splits:
                minute_sums_nb(out["x_code"], out["x_ts"], liq_usd, m0, sums)
        else:
            m = np.concatenate([out["x_ts"][out["x_code"] == R.EXIT_LIQUIDATED] // 60_000 for out, *_ in splits])
            u, inv = np.unique(m, return_inverse=True)
            sums = np.bincount(inv, weights=np.concatenate([x[1][: x[2]] for x in splits]))
        k = int(np.argmax(sums))  # first (earliest) of equal maxima
        from datetime import datetime, timezone

        minute = m0 + k if u is None else int(u[k])
        tot["peak_minute"] = datetime.fromtimestamp(minute * 60, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        tot["peak_usd"] = float(sums[k])
    return tot


def _assemble(prep: Prepared, per: dict, mode: str, shock: str | None, pop_params: Any, sim: SimParams, timings: dict, summary_only: bool = False) -> SimResult:
    S = R.USD_SCALE
    bar_frames, liq_frames, map_frames, heat_frames, cluster_frames = [], [], [], [], []
    rounds_total = None
    per_symbol: dict[str, dict] = {}
    for s, d in per.items():
        out, bars, mk, pe = d["out"], d["bars"], d["market"], d["pop"]
        a = pe.arrays
        bi, bf = out["bar_i"], out["bar_f"]
        st = out["stats"]
        ru = out["round_units"]
        rounds_total = ru.copy() if rounds_total is None else _add_padded(rounds_total, ru)
        amp = (st[R.ST_DD_SIM] - st[R.ST_DD_EXO]) / st[R.ST_DD_EXO] if mode == "cascade" and st[R.ST_DD_EXO] > 0 else 0.0
        per_symbol[s] = {
            "price_source": mk.price_source,
            "timeframe": mk.timeframe,
            "bars": int(len(bars["ts"])),
            "gaps": mk.gaps,
            "positions": int(a["side"].size),
            "population_source": pe.source,
            "open_notional_usd": pe.open_notional_usd,
            "open_interest_kind": oi_source_kind(pe.oi_source),
            "open_interest_source": pe.oi_source,
            "sigma_daily": mk.sigma_daily,
            "volume_daily_usd": mk.volume_daily_usd,
            "insurance_fund_start_usd": d["fund0"],
            "insurance_fund_min_usd": float(st[R.ST_FUND_MIN]),
            "adl_shortfall_usd": float(st[R.ST_ADL_SHORTFALL]),
            "drawdown_exogenous": float(st[R.ST_DD_EXO]),
            "drawdown_simulated": float(st[R.ST_DD_SIM]),
            "amplification": float(amp),
            "max_cascade_depth": int(st[R.ST_MAX_DEPTH]),
            "bars_at_max_rounds": int(st[R.ST_BARS_AT_MAX_ROUNDS]),
            "funding_index": float(st[R.ST_FUNDING_INDEX]),
        }
        if summary_only:
            continue
        bar_frames.append(
            pl.DataFrame(
                {
                    "symbol": [s] * len(bars["ts"]),
                    "ts": bars["ts"],
                    "open": bars["open"],
                    "high": bars["high"],
                    "low": bars["low"],
                    "close": bars["close"],
                    "sim_open": bf[:, R.BF_OPEN],
                    "sim_high": bf[:, R.BF_HIGH],
                    "sim_low": bf[:, R.BF_LOW],
                    "sim_close": bf[:, R.BF_CLOSE],
                    "long_liq_usd": bi[:, R.BI_LONG_LIQ] / S,
                    "short_liq_usd": bi[:, R.BI_SHORT_LIQ] / S,
                    "long_liq_count": bi[:, R.BI_LONG_LIQ_W] / S,
                    "short_liq_count": bi[:, R.BI_SHORT_LIQ_W] / S,
                    "long_stop_usd": bi[:, R.BI_LONG_STOP] / S,
                    "short_stop_usd": bi[:, R.BI_SHORT_STOP] / S,
                    "adl_usd": bi[:, R.BI_ADL] / S,
                    "insurance_fund_usd": bi[:, R.BI_FUND] / S,
                    "deficit_usd": bi[:, R.BI_DEFICIT] / S,
                    "uncovered_usd": bi[:, R.BI_UNCOVERED] / S,
                    "clearance_fees_usd": bi[:, R.BI_FUND_IN] / S,
                    "taker_fees_usd": bi[:, R.BI_TAKER] / S,
                    "rounds": bi[:, R.BI_ROUNDS].astype(np.int32),
                    "cascades_at_max_rounds": bi[:, R.BI_AT_MAX_ROUNDS].astype(np.int32),
                    "endo_move_min_pct": np.expm1(bf[:, R.BF_ENDO_MIN]) * 100.0,
                    "endo_move_max_pct": np.expm1(bf[:, R.BF_ENDO_MAX]) * 100.0,
                    "funding_rate": bars["funding_rate"],
                    "price_source": [mk.price_source] * len(bars["ts"]),
                }
            ).with_columns(pl.col("ts").cast(pl.Int64).cast(TS))
        )
        hit = out["x_pos"].astype(np.int64)
        code = out["x_code"]
        w = a["weight"][hit].astype(np.float64)
        fill = out["x_fill"]
        liq_frames.append(
            pl.DataFrame(
                {
                    "symbol": [s] * hit.size,
                    "position": hit,
                    "side": a["side"][hit],
                    "exit": pl.Series(code).replace_strict(R.EXIT_NAMES, return_dtype=pl.String),
                    "ts": out["x_ts"],
                    "fill": fill,
                    "round": out["x_round"],
                    "qty": a["qty"][hit] * w,
                    "notional_usd": a["qty"][hit] * w * fill,
                    "weight": w,
                    "leverage": a["leverage"][hit],
                    "margin_mode": a["margin_mode"][hit],
                    "entry": a["entry"][hit],
                    "liq_price": a["liq_price"][hit],
                }
            )
            .with_columns(pl.col("ts").cast(pl.Int64).cast(TS))
            .sort("ts", "position")  # records come by path point; order them by time, then position
        )
        p0 = float(bars["open"][0])
        lm = liq_map_frame(a, s, p0, sim.bucket_pct)
        map_frames.append(lm)
        heat_frames.append(heatmap_frame(liq_frames[-1], p0, sim.bucket_pct, sim.heatmap_minutes))
        path_lo = float(np.min(out["bar_f"][:, R.BF_LOW])) if len(bars["ts"]) else p0
        path_hi = float(np.max(out["bar_f"][:, R.BF_HIGH])) if len(bars["ts"]) else p0
        cluster_frames.append(clusters_frame(lm, liq_frames[-1], p0, path_lo, path_hi, sim))
    summary = _summary(prep, per_symbol, _exit_totals(per), rounds_total, mode, shock, pop_params, sim, timings)
    if summary_only:
        empty = pl.DataFrame()
        return SimResult(summary, empty, empty, empty, empty, empty)
    return SimResult(summary, pl.concat(bar_frames), pl.concat(liq_frames), pl.concat(cluster_frames), pl.concat(map_frames), pl.concat(heat_frames))


def _add_padded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = max(a.size, b.size)
    out = np.zeros(n, np.int64)
    out[: a.size] += a
    out[: b.size] += b
    return out


def _summary(prep, per_symbol, tot, rounds_total, mode, shock, pop_params, sim, timings) -> dict:
    ev = prep.event
    long_usd, short_usd = tot["long"], tot["short"]
    total = long_usd + short_usd
    peak_minute, peak_usd = tot["peak_minute"], tot["peak_usd"]
    on = sum(v["open_notional_usd"] for v in per_symbol.values())
    amp = sum(v["amplification"] * v["open_notional_usd"] for v in per_symbol.values()) / on if on > 0 else 0.0
    ru = (rounds_total / R.USD_SCALE) if rounds_total is not None else np.zeros(1)
    last = int(np.max(np.flatnonzero(ru))) if np.any(ru > 0) else 0
    ru = ru[: last + 1]
    branching = float(ru[1:].sum() / ru[:-1].sum()) if ru.size > 1 and ru[:-1].sum() > 0 else 0.0
    params = {**(as_dict(pop_params) if pop_params is not None else {}), **as_dict(sim)}
    summary = {
        "event": ev.id,
        "mode": mode,
        "shock": shock,
        "symbols": list(prep.symbols),
        "positions": int(sum(v["positions"] for v in per_symbol.values())),
        "open_notional_usd": on,
        "liquidated_notional_usd": total,
        "long_liquidated_usd": long_usd,
        "short_liquidated_usd": short_usd,
        "long_share": long_usd / total if total > 0 else None,
        "stopped_notional_usd": tot["stopped"],
        "peak_minute": peak_minute,
        "peak_minute_notional_usd": peak_usd,
        "max_cascade_depth": int(max((v["max_cascade_depth"] for v in per_symbol.values()), default=0)),
        "bars_at_max_rounds": int(sum(v["bars_at_max_rounds"] for v in per_symbol.values())),
        "amplification": float(amp),
        "branching_ratio": branching,
        "round_notional_usd": [float(x) for x in ru],
        "adl_notional_usd": tot["adl"],
        "insurance_fund_min_usd": float(sum(v["insurance_fund_min_usd"] for v in per_symbol.values())),
        "insurance_fund_start_usd": float(sim.insurance_fund_usd),
        "seed": getattr(pop_params, "seed", None),
        "price_source": {s: v["price_source"] for s, v in per_symbol.items()},
        "per_symbol": per_symbol,
        "published": _published(ev, total, long_usd / total if total > 0 else None, peak_usd),
        "timings_s": timings,
        "params": params,
        "notes": [
            "price_source: 'last-anchored-to-mark' = finest last-price bars scaled and clipped to the hourly mark; 'last' = last price stands in for the mark (flagged); 'mark' = 1h mark",
            "insurance_fund_min_usd is the sum of the per-symbol minima (each symbol holds its share of the fund)",
            "cross positions are simulated with their allotted collateral, like isolated ones",
            "amplification is the open-notional-weighted mean of the per-symbol values",
            "cascade depth counts rounds after the first that triggered forced orders (liquidations or stops)",
            "liquidated notional is valued at fill prices; in replay the forced orders of each path point fill at their own impact but do not move the path (impact_model=none: fills at the trigger)",
        ]
        + ([f"{n_cut} bar(s) had a cascade cut by max_rounds={sim.max_rounds} while its last round still moved the price: cascade depth is truncated there (raise max_rounds)"] if (n_cut := sum(v["bars_at_max_rounds"] for v in per_symbol.values())) else [])
        + (["cascade on the observed path: the observed moves already contain the real cascade's impact, so feedback is counted on top of it (use --shock for a clean exogenous move)"] if mode == "cascade" and not shock else [])
        + _estimate_notes(per_symbol),
    }
    return summary


def _published(ev: Any, total: float, long_share: float | None, peak: float) -> list[dict]:
    sim = {"liquidated_notional_usd": total, "long_share": long_share, "peak_minute_notional_usd": peak}
    out = []
    for f in getattr(ev, "figures", ()) or ():
        m = f.get("metric")
        if m in sim:
            pub = f.get("value_usd", f.get("value"))
            out.append({"metric": m, "scope": f.get("scope"), "published": pub, "simulated": sim[m], "source": f.get("source")})
    return out


# ------------------------------------------------------------------------------------------
# liquidation map, heatmap, clusters
# ------------------------------------------------------------------------------------------
def liq_map_frame(a: dict[str, np.ndarray], symbol: str, p0: float, bucket_pct: float) -> pl.DataFrame:
    """Pre-event open notional by liquidation-price bucket and side (positions that can liquidate)."""
    from backtest.liqmap import bucket_frame

    liq = a["liq_price"]
    ok = np.isfinite(liq) & (liq > 0)
    return bucket_frame(a, ok, liq, symbol, p0 * bucket_pct)


def heatmap_frame(liqs: pl.DataFrame, p0: float, bucket_pct: float, minutes: int) -> pl.DataFrame:
    """Realised liquidations by time bucket x fill-price bucket (long and short notional)."""
    width = p0 * bucket_pct
    d = liqs.filter(pl.col("exit") == "liquidated")
    return (
        d.with_columns(
            pl.col("ts").dt.truncate(f"{minutes}m").alias("ts"),
            (pl.col("fill") / width).floor().cast(pl.Int64).alias("bucket"),
            pl.when(pl.col("side") > 0).then(pl.col("notional_usd")).otherwise(0.0).alias("long_usd"),
            pl.when(pl.col("side") < 0).then(pl.col("notional_usd")).otherwise(0.0).alias("short_usd"),
        )
        .group_by("symbol", "ts", "bucket")
        .agg(pl.col("long_usd").sum(), pl.col("short_usd").sum())
        .with_columns((pl.col("bucket") * width).alias("price_lo"), ((pl.col("bucket") + 1) * width).alias("price_hi"))
        .select("symbol", "ts", "bucket", "price_lo", "price_hi", "long_usd", "short_usd")
        .sort("symbol", "ts", "bucket")
    )


def clusters_frame(liq_map: pl.DataFrame, liqs: pl.DataFrame, p0: float, path_lo: float, path_hi: float, sim: SimParams) -> pl.DataFrame:
    """Price ranges where liquidation notional concentrates, ranked by notional.

    A cluster is a maximal run of adjacent buckets (one side, within ``cluster_range_pct`` of the
    start price) each holding at least ``cluster_min_share`` of that side's open notional.
    ``reached``: the simulated path touched the range (longs: low <= range top; shorts: high >=
    range bottom). ``liquidated_usd``: realised liquidations of positions whose liquidation price
    lies in the range.
    """
    rows = []
    symbol = liq_map["symbol"][0] if liq_map.height else None
    for side in ("long", "short"):
        m = liq_map.filter(pl.col("side") == side).sort("bucket")
        if m.height == 0:
            continue
        tot = float(m["open_notional_usd"].sum())
        lo_p, hi_p = p0 * (1 - sim.cluster_range_pct), p0 * (1 + sim.cluster_range_pct)
        b = m["bucket"].to_numpy()
        v = m["open_notional_usd"].to_numpy()
        plo = m["price_lo"].to_numpy()
        phi = m["price_hi"].to_numpy()
        keep = (v >= sim.cluster_min_share * tot) & (phi >= lo_p) & (plo <= hi_p)
        i = 0
        while i < len(b):
            if not keep[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(b) and keep[j + 1] and b[j + 1] == b[j] + 1:
                j += 1
            rows.append((side, float(plo[i]), float(phi[j]), float(v[i : j + 1].sum()), float(v[i : j + 1].sum() / tot)))
            i = j + 1
    schema = {
        "symbol": pl.String, "side": pl.String, "rank": pl.Int32, "price_lo": pl.Float64, "price_hi": pl.Float64,
        "open_notional_usd": pl.Float64, "share": pl.Float64, "distance_pct": pl.Float64, "reached": pl.Boolean, "liquidated_usd": pl.Float64,
    }
    if not rows:
        return pl.DataFrame(schema=schema)
    rows.sort(key=lambda r: -r[3])
    out = []
    lq = liqs.filter(pl.col("exit") == "liquidated")
    for k, (side, lo, hi, notional, share) in enumerate(rows):
        sgn = 1 if side == "long" else -1
        reached = path_lo <= hi if side == "long" else path_hi >= lo
        mid = (lo + hi) / 2
        realised = float(lq.filter((pl.col("side") == sgn) & (pl.col("liq_price") >= lo) & (pl.col("liq_price") < hi))["notional_usd"].sum())
        out.append((symbol, side, k + 1, lo, hi, notional, share, (mid / p0 - 1) * 100.0, bool(reached), realised))
    return pl.DataFrame(out, schema=schema, orient="row")
