"""Synthetic leveraged-position populations (struct of arrays), built over an event's lookback.

A population is one symbol's open leveraged positions at the start of an event: a dict of NumPy
arrays with exactly the fields and dtypes of :data:`backtest.records.POPULATION_FIELDS`, wrapped
in :class:`Population` with where it came from. Each row is one position of realistic size
(``qty`` base units at ``entry``, so tiers and liquidation prices are those of a real position of
that size); ``weight`` is how many such real positions the row stands for, so the open notional
is ``sum(weight * entry * qty)``.

How it is built (DESIGN §6), :func:`synthesize` on plain arrays, :func:`build_population` from the
store and the event catalogue:

1. Opening times. Without open-interest data (the committed store has none) positions open in
   proportion to traded volume, discounted by a turnover half-life: a position opened ``a`` days
   before the event is still open with probability ``2**(-a / half_life)``, so bar ``b`` gets
   weight ``volume_b * 2**(-(T - t_b)/half_life)``. With open-interest data the weights are the
   positive open-interest increments, discounted the same way. Entry prices are uniform inside the
   opening bar's [low, high].
2. Side: long with probability ``long_share`` (from the store's long/short account ratio when it
   has one, else the parameter), and the long and short notionals are scaled to exactly
   ``long_share`` / ``1 - long_share`` of the target.
3. Size: notional from a truncated Pareto with tail exponent ``size_tail_alpha``; leverage from
   ``leverage_mix`` (the mix at ``size_min_usd``) times ``leverage_scale`` times
   ``(notional / size_min_usd) ** -leverage_size_slope`` (larger positions run lower leverage),
   capped by the tier table's max leverage for the position's notional; margin mode (isolated
   share; a cross position carries excess collateral, a lognormal multiple of its initial margin
   with median ``cross_extra_collateral`` and log-sd ``cross_extra_sigma``); stop-losses (share,
   exponential distance capped inside the liquidation price).
4. Liquidation price at open with :mod:`backtest.margin` (tier at the liquidation notional for
   Binance); ``tier``/``mmr``/``maint_amount`` are those used.
5. Survivors only: a candidate whose liquidation or stop price is reached by a later bar of the
   lookback path leaves (liquidated or stopped before the event); candidates are drawn until
   ``n_positions`` survive. The path is the mark price wherever the store has it (liquidations
   trigger on the mark price), the last price before that; inside a mark bar that an opening bar
   ends in (all of the last mark bar before the event), the finest last-price bars. Closes for other
   reasons are the turnover discount of step 1. Funding during the lookback is not applied.
6. Scale: a share ``hedged_share`` of the target (open interest x ``oi_scale``) is held by hedged
   or market-making holders that a price move alone does not liquidate (counted in
   ``Population.hedged_notional_usd``, not in the rows); weights make the rows' open notional
   equal the rest.

All randomness comes from ``seed`` through a counter-based generator: the same seed and inputs
give the same population, bit for bit.

Open-interest convention: open interest counts each contract once (longs = shorts = OI). The
population's open notional (long + short) is set to OI x ``oi_scale``: each outstanding contract
is taken to have one holder on one side, the other side being held by participants not
modelled; of those holders a share ``hedged_share`` is hedged (not liquidatable by the move), the
rest leveraged. This is an assumption; ``oi_scale`` and ``hedged_share`` change it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any


import numpy as np

from backtest.errors import PopulationError
from backtest.timeframes import UNIT_MS
from backtest.market import mark_bars, market_bars
from backtest.population_inputs import long_share_from_store, recent_volume, resolve_open_interest, venue_for_exchange
from backtest.records import (
    NO_CLOSE,
    POPULATION_FIELDS,
    VENUES,
    check_population,
    empty_population,
)

DAY_MS = UNIT_MS["d"]

#: the parameters live in their own module; re-exported here, where populations are built
from backtest.population_params import (  # noqa: E402,F401
    DEFAULT_LEVERAGE_MIX,
    FALLBACK_LONG_SHARE,
    MAX_POSITIONS,
    MAX_SEED,
    PARAM_RANGES,
    PARAM_SOURCES,
    PopulationParams,
)
from backtest.fitted_defaults import FITTED  # noqa: E402

@dataclass
class Population:
    """One symbol's synthetic positions at ``as_of_ms`` (the event start) and their provenance."""

    arrays: dict[str, np.ndarray]
    symbol: str
    exchange: str
    event_id: str | None
    as_of_ms: int
    open_notional_usd: float
    target_open_notional_usd: float
    target_source: str
    ref_price: float = float("nan")  # last price before as_of (for distances to liquidation)
    #: open notional (USD) held by hedged / market-making holders: in the target (open
    #: interest), not in the rows; open_notional_usd + hedged_notional_usd = the target
    hedged_notional_usd: float = 0.0
    params: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.arrays["side"].shape[0])

    def to_polars(self):
        """The arrays as a polars frame (one row per position; dtypes preserved)."""
        import polars as pl

        return pl.DataFrame({k: self.arrays[k] for k in POPULATION_FIELDS})

    @classmethod
    def from_polars(cls, df, **meta: Any) -> "Population":
        """Rebuild from a frame with the population columns; ``meta`` sets the other attributes."""
        missing = [k for k in POPULATION_FIELDS if k not in df.columns]
        if missing:
            raise ValueError(f"frame lacks population columns {missing}")
        arrays = {k: np.ascontiguousarray(df[k].to_numpy().astype(dt, copy=False)) for k, dt in POPULATION_FIELDS.items()}
        check_population(arrays)
        on = open_notional(arrays)
        meta.setdefault("symbol", "")
        meta.setdefault("exchange", "")
        meta.setdefault("event_id", None)
        meta.setdefault("as_of_ms", 0)
        meta.setdefault("target_open_notional_usd", on)
        meta.setdefault("target_source", "read from a frame")
        return cls(arrays=arrays, open_notional_usd=on, **meta)

    # --- Parquet with provenance in the file's key-value metadata ------------------------
    def write_parquet(self, path) -> None:
        import json

        import pyarrow.parquet as pq

        table = self.to_polars().to_arrow()
        meta = {
            "symbol": self.symbol,
            "exchange": self.exchange,
            "event_id": self.event_id,
            "as_of_ms": self.as_of_ms,
            "target_open_notional_usd": self.target_open_notional_usd,
            "target_source": self.target_source,
            "ref_price": self.ref_price,
            "hedged_notional_usd": self.hedged_notional_usd,
            "params": self.params,
            "stats": self.stats,
        }
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"backtest.population": json.dumps(meta, default=str).encode()})
        from backtest.paths import write_atomic

        write_atomic(path, lambda t: pq.write_table(table, str(t)))

    @classmethod
    def read_parquet(cls, path) -> "Population":
        import json

        import polars as pl
        import pyarrow.parquet as pq

        table = pq.read_table(str(path))
        raw = (table.schema.metadata or {}).get(b"backtest.population")
        meta = json.loads(raw) if raw else {}
        return cls.from_polars(pl.from_arrow(table), **meta)


def open_notional(arrays: dict[str, np.ndarray], side: int | None = None) -> float:
    """``sum(weight * entry * qty)`` in float64 (no temporaries), optionally for one side."""
    from backtest.kernels.population_kernels import weighted_notionals

    a, b = weighted_notionals(arrays["side"], arrays["entry"], arrays["qty"], arrays["weight"])
    return float(a + b if side is None else (a if side > 0 else b))


# ------------------------------------------------------------------------------------------
# the array-level builder
# ------------------------------------------------------------------------------------------
#: Ask for transparent huge pages on the population arrays? numpy does by default for large
#: arrays; on the reference machine (a Firecracker VM, 2 cores) that made the first touch of a
#: 760 MB population 6x slower (1.97 s vs 0.32 s), so we allocate without it unless
#: ``BACKTEST_HUGEPAGES=1``.
HUGEPAGES = os.environ.get("BACKTEST_HUGEPAGES", "0") == "1"


def allocate_population(n: int) -> dict[str, np.ndarray]:
    """Uninitialised population arrays of ``n`` rows (canonical dtypes; see :data:`HUGEPAGES`)."""
    try:
        from numpy._core import multiarray as _ma

        prev = _ma._set_madvise_hugepage(HUGEPAGES)
    except (ImportError, AttributeError):  # pragma: no cover - other numpy layouts
        return empty_population(n)
    try:
        return empty_population(n)
    finally:
        _ma._set_madvise_hugepage(prev)


def _leverage_table(mix: dict) -> tuple[np.ndarray, np.ndarray]:
    items = sorted((float(k), float(w)) for k, w in mix.items() if float(w) > 0)
    lev = np.array([k for k, _ in items])
    w = np.array([v for _, v in items])
    cdf = np.cumsum(w) / w.sum()
    cdf[-1] = 1.0
    return lev, cdf


#: nodes of the tabulated excess-collateral quantile function (u = k / EXTRA_NODES)
EXTRA_NODES = 4096


def excess_collateral_table(median: float, sigma: float) -> np.ndarray:
    """Quantiles of the excess collateral of a cross position (a multiple of its initial margin):
    lognormal with ``median`` and log-standard deviation ``sigma``, at ``u = k / EXTRA_NODES``
    (the end nodes at half a step in, so draws are bounded by ``median * exp(±3.7 sigma)``);
    :func:`backtest.kernels.population_kernels.table_quantile` interpolates it. ``median = 0``
    gives no excess; ``sigma = 0`` the flat multiple ``median``."""
    return np.ascontiguousarray(float(median) * np.exp(float(sigma) * _extra_z()))


_EXTRA_Z: list[np.ndarray] = []


def _extra_z() -> np.ndarray:
    """Standard normal quantiles at the nodes of :func:`excess_collateral_table`, computed once
    per process (4,097 inverse-CDF calls cost ~8 ms: once per population build before)."""
    if not _EXTRA_Z:
        from statistics import NormalDist

        u = np.arange(EXTRA_NODES + 1, dtype=np.float64) / EXTRA_NODES
        u[0], u[-1] = 0.5 / EXTRA_NODES, 1.0 - 0.5 / EXTRA_NODES
        z = np.array([NormalDist().inv_cdf(float(x)) for x in u])
        z[EXTRA_NODES // 2] = 0.0  # the median node exactly
        z.setflags(write=False)
        _EXTRA_Z.append(z)
    return _EXTRA_Z[0]


def opening_weights(ts: np.ndarray, volume_usd: np.ndarray, as_of_ms: int, half_life_days: float, oi_usd: np.ndarray | None = None) -> np.ndarray:
    """Per-bar opening weight: volume (or positive OI increments) x ``2**(-age / half_life)``."""
    age_days = (as_of_ms - ts.astype(np.float64)) / DAY_MS
    decay = np.exp2(-np.maximum(age_days, 0.0) / half_life_days)
    if oi_usd is not None:
        inc = np.diff(oi_usd, prepend=oi_usd[0])
        base = np.where(np.isfinite(inc), np.maximum(inc, 0.0), 0.0)
    else:
        base = np.where(np.isfinite(volume_usd), np.maximum(volume_usd, 0.0), 0.0)
    return base * decay


def _lookback_bars(ts, open_, high, low, close, volume, bar_ms) -> tuple[np.ndarray, ...]:
    """Checked contiguous bar arrays ``(ts, high, low, volume, duration)`` of :func:`synthesize`
    (durations from ``bar_ms``, else the spacing of ``ts``)."""
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    hi = np.ascontiguousarray(high, dtype=np.float64)
    lo = np.ascontiguousarray(low, dtype=np.float64)
    vol = np.ascontiguousarray(volume, dtype=np.float64)
    n_bars = ts.shape[0]
    if n_bars == 0:
        raise PopulationError("no market bars in the lookback window; download or import data for it first")
    for name, a in (("open", open_), ("high", hi), ("low", lo), ("close", close), ("volume", vol)):
        if np.shape(a)[0] != n_bars:
            raise ValueError(f"{name} has {np.shape(a)[0]} rows, ts has {n_bars}")
    if n_bars > 1 and np.any(np.diff(ts) <= 0):
        raise ValueError("bar times must be strictly increasing")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo > 0) and np.all(hi >= lo)):
        raise ValueError("bars need finite prices with 0 < low <= high")
    if bar_ms is None:
        step = int(np.median(np.diff(ts))) if n_bars > 1 else 60_000
        dur = np.diff(ts, append=ts[-1] + step).astype(np.int64)
    else:
        dur = np.broadcast_to(np.asarray(bar_ms, dtype=np.int64), (n_bars,)).copy()
    return ts, hi, lo, vol, dur


def _opening_cdf(ts, vol, as_of_ms, hl, open_interest_usd) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative opening weights over the bars (see :func:`opening_weights`) and their guide table."""
    from backtest.kernels.population_kernels import guide_table

    w = opening_weights(ts, vol, as_of_ms, hl, None if open_interest_usd is None else np.asarray(open_interest_usd, np.float64))
    total = w.sum()
    if not (total > 0):
        raise PopulationError("no traded volume (or open-interest increase) in the lookback window to open positions on")
    cdf = np.cumsum(w) / total
    cdf[-1] = 1.0
    return cdf, guide_table(cdf)


def _survival_extrema(lo: np.ndarray, hi: np.ndarray, path_extrema) -> tuple[np.ndarray, np.ndarray]:
    """Per bar, the lowest and highest price of the survival path after it (the bars' own by default)."""
    from backtest.kernels.population_kernels import suffix_extrema

    if path_extrema is None:
        return suffix_extrema(lo, hi)
    smin = np.ascontiguousarray(path_extrema[0], dtype=np.float64)
    smax = np.ascontiguousarray(path_extrema[1], dtype=np.float64)
    if smin.shape != lo.shape or smax.shape != lo.shape:
        raise ValueError("path_extrema must hold one value per bar")
    return smin, smax


def synthesize(
    ts: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    *,
    tiers: Any,
    params: PopulationParams | None = None,
    target_open_notional_usd: float | None = None,
    as_of_ms: int | None = None,
    bar_ms: np.ndarray | int | None = None,
    open_interest_usd: np.ndarray | None = None,
    long_share: float | None = None,
    half_life_days: float | None = None,
    venue: str = "binance",
    symbol: str = "",
    exchange: str = "",
    event_id: str | None = None,
    target_source: str = "given",
    out: dict[str, np.ndarray] | None = None,
    path_extrema: tuple[np.ndarray, np.ndarray] | None = None,
) -> Population:
    """Build a population from plain NumPy market arrays (no store needed).

    Linear contracts (USDⓈ-M-style; ``qty`` in base units). ``ts`` bar open times (UTC ms,
    sorted), ``open/high/low/close`` prices, ``volume`` traded notional in USD per bar;
    ``target_open_notional_usd`` the open notional to scale to (default: the parameters'
    ``open_interest_usd x oi_scale``); ``bar_ms`` each bar's duration (array or scalar; default: the
    spacing of ``ts``); ``as_of_ms`` the event start (default: end of the last bar);
    ``open_interest_usd`` optional OI per bar (then openings follow its increases);
    ``tiers`` a ccxt tier list (or :func:`backtest.margin.tier_arrays` output).
    ``long_share`` / ``half_life_days`` override the parameters (used by :func:`build_population`
    after resolving them from the store; without either, population_params.FALLBACK_LONG_SHARE and 2 days). ``out`` may pass preallocated population arrays of
    ``n_positions`` rows (e.g. reused across a sweep) to skip the allocation.
    ``path_extrema = (after_min, after_max)`` gives, per bar, the lowest and highest price of
    the survival path after that bar (e.g. from mark prices, see :func:`path_extrema_from`);
    default: the bars' own lows and highs. Raises
    ``ValueError`` for inconsistent inputs.
    """
    from backtest import margin
    from backtest.kernels.population_kernels import set_weights, synthesize_nb

    p = params or PopulationParams()
    p.validate()
    ts, hi, lo, vol, dur = _lookback_bars(ts, open_, high, low, close, volume, bar_ms)
    n_bars = ts.shape[0]
    if as_of_ms is None:
        as_of_ms = int(ts[-1] + dur[-1])
    if target_open_notional_usd is None:
        if p.open_interest_usd is None:
            raise PopulationError("give target_open_notional_usd, or set open_interest_usd in the parameters")
        target_open_notional_usd = p.open_interest_usd * p.oi_scale
        target_source = "open_interest_usd x oi_scale parameters"
    if not (target_open_notional_usd > 0 and math.isfinite(target_open_notional_usd)):
        raise PopulationError(f"target open notional must be a positive number, got {target_open_notional_usd}")
    ls = p.long_share if long_share is None else long_share
    if ls is None:
        ls = FALLBACK_LONG_SHARE
    hl = half_life_days if half_life_days is not None else (p.turnover_half_life_days or 2.0)

    cdf, guide = _opening_cdf(ts, vol, as_of_ms, hl, open_interest_usd)
    smin, smax = _survival_extrema(lo, hi, path_extrema)

    t_lo, t_hi, t_mmr, t_cum, t_lev = margin.tier_arrays(tiers)
    lev_values, lev_cdf = _leverage_table(p.leverage_mix)
    size_max = min(p.size_max_usd, float(t_hi[-1]) * (1 - 1e-12))
    if size_max <= p.size_min_usd:
        raise PopulationError(f"size_min_usd {p.size_min_usd} is beyond the tier table's largest notional {t_hi[-1]}")
    if venue not in VENUES:
        raise PopulationError(f"unknown venue {venue!r}; choose from {', '.join(VENUES)}")
    vcode = VENUES[venue]
    from backtest.margin import TAKER_FEE

    n = p.n_positions
    if out is None:
        out = allocate_population(n)
    else:
        check_population(out)
        if len(out["side"]) != n:
            raise ValueError(f"out has {len(out['side'])} rows, n_positions is {n}")
    max_tries = int(min(2**62, max(1000.0, p.max_tries_factor * n)))
    written, tried, died_liq, died_stop, long_n, short_n = synthesize_nb(
        n, int(p.seed), max_tries,
        cdf, guide, ts, dur, lo, hi, smin, smax,
        float(ls), lev_values, lev_cdf, float(p.leverage_scale), float(p.leverage_size_slope),
        float(p.size_min_usd), float(size_max), float(p.size_tail_alpha),
        float(p.isolated_share), excess_collateral_table(p.cross_extra_collateral, p.cross_extra_sigma),
        float(p.stop_share), float(p.stop_distance),
        vcode, float(TAKER_FEE[venue]), t_lo, t_hi, t_mmr, t_cum, t_lev,
        out["side"], out["margin_mode"], out["venue"], out["tier"], out["entry"], out["qty"], out["margin"],
        out["mmr"], out["maint_amount"], out["open_time"], out["stop_price"], out["liq_price"], out["leverage"],
    )
    out["close_time"][:] = NO_CLOSE
    if written < n:
        raise PopulationError(
            f"only {written:,} of {n:,} positions survived the lookback path after {tried:,} candidates; "
            "lower leverage_scale or n_positions, or raise max_tries_factor"
        )
    # hedged / market-making holders count in open interest but are not in the population
    hedged = float(target_open_notional_usd) * p.hedged_share
    target = float(target_open_notional_usd) - hedged
    w_long = ls * target / long_n if long_n > 0 else 0.0
    w_short = (1.0 - ls) * target / short_n if short_n > 0 else 0.0
    if (ls > 0 and long_n == 0) or (ls < 1 and short_n == 0):
        raise PopulationError("a side that long_share asks for has no positions; raise n_positions")
    w_long32, w_short32 = np.float32(w_long), np.float32(w_short)
    set_weights(out["side"], w_long32, w_short32, out["weight"])
    check_population(out)
    # every long (short) row has the same weight, so the weighted open notional follows from
    # the kernel's unweighted sums (tests check it against a full pass)
    on = float(w_long32) * long_n + float(w_short32) * short_n
    stats = {
        "candidates": int(tried),
        "died_liquidated": int(died_liq),
        "died_stopped": int(died_stop),
        "survival_rate": written / tried if tried else float("nan"),
        "long_share": float(ls),
        "turnover_half_life_days": float(hl),
        "bars": int(n_bars),
        "first_bar_ms": int(ts[0]),
        "size_max_usd": size_max,
        "hedged_share": float(p.hedged_share),
        "hedged_notional_usd": hedged,
    }
    return Population(
        arrays=out,
        symbol=symbol,
        exchange=exchange,
        event_id=event_id,
        as_of_ms=int(as_of_ms),
        open_notional_usd=on,
        target_open_notional_usd=float(target_open_notional_usd),
        target_source=target_source,
        hedged_notional_usd=hedged,
        ref_price=float(np.asarray(close, dtype=np.float64)[-1]),
        params=dataclasses.asdict(p),
        stats=stats,
    )


# ------------------------------------------------------------------------------------------
# positions that open and close during the window (issue 11 point 5)
# ------------------------------------------------------------------------------------------
#: stream of the voluntary-close draws (row_uniforms), apart from the candidates' streams
CLOSE_STREAM = 7


def window_flows(
    volume_usd: np.ndarray, params: PopulationParams, close: np.ndarray | None = None, oi_qty_end: np.ndarray | None = None, oi_qty_start: float = float("nan")
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window bar, the notional (USD, the population's units: times ``oi_scale`` and
    ``1 - hedged_share``) of positions opened and closed voluntarily, and whether the bar's net
    flow follows an observed open-interest change.

    Openings ``flow_turnover x volume``, closes ``close_rate x volume``. Where the open interest
    at the bar's end and before it are known (``oi_qty_end``, base units, NaN where not;
    ``oi_qty_start`` the level at the window start), openings minus closes equal its change times
    the bar's close (``close``), the gross flow ``(flow_turnover + close_rate) x volume`` kept (or
    raised to the net change when that is larger).
    """
    scale = params.oi_scale * (1.0 - params.hedged_share)
    v = np.where(np.isfinite(volume_usd), np.maximum(volume_usd, 0.0), 0.0) * scale
    opens = params.flow_turnover * v
    closes = params.close_rate * v
    follows = np.zeros(v.shape[0], np.bool_)
    if params.flow_turnover == 0.0 and params.close_rate == 0.0:
        return opens, closes, follows  # the flow is switched off
    if oi_qty_end is not None and close is not None:
        q = np.asarray(oi_qty_end, np.float64)
        prev = np.r_[oi_qty_start, q[:-1]]
        net = (q - prev) * np.asarray(close, np.float64) * scale
        follows = np.isfinite(net)
        gross = opens + closes
        o = np.where(follows, np.maximum((gross + net) / 2.0, np.maximum(net, 0.0)), opens)
        c = np.where(follows, o - net, closes)
        opens, closes = o, np.maximum(c, 0.0)
    return opens, closes, follows


def add_window_flow(
    pop: Population,
    ts: np.ndarray,
    dur: np.ndarray,
    close: np.ndarray,
    volume_usd: np.ndarray,
    *,
    tiers: Any,
    params: PopulationParams,
    long_share: float,
    oi_qty_end: np.ndarray | None = None,
    oi_qty_start: float = float("nan"),
    venue: str = "binance",
    buffer: dict[str, np.ndarray] | None = None,
) -> Population:
    """``pop`` (the positions open at the window start) plus the positions that open during the
    window, and voluntary close times for all of them (:func:`window_flows` per bar).

    ``buffer``: population arrays of at least ``len(pop) + params.n_positions`` rows whose first
    ``len(pop)`` rows are ``pop``'s arrays (:func:`build_from_inputs` draws ``pop`` into it): the
    openings are drawn into the rows after them and the result is its leading rows (no copy);
    without it, the openings go to fresh arrays and the result is the concatenation (the same values).

    Window bars: ``ts`` open times and ``dur`` durations (UTC ms), ``close`` prices (quote ccy),
    ``volume_usd`` traded notional. A bar's openings happen at its close: entry = the close,
    ``open_time`` = the bar's end (they can trigger from the next path point on). Their side:
    long with probability ``long_share`` (the bars carry no taker buy/sell split), and the
    weights of each bar's longs and shorts are set to exactly ``long_share`` / ``1 - long_share``
    of its openings. Size, leverage (falling with size), margin mode, excess collateral and stops
    are drawn as for the positions open before the window (:func:`synthesize_nb`, no survival
    filter: they open at the bar's close). Voluntary closes: in bar ``j`` every open row closes
    with the same probability ``closes_j / open notional_j`` (the open notional counted at entry,
    liquidations not deducted), at the bar's end (``close_time``); rows opened in the window from
    the bar after their opening. Randomness from ``params.seed`` on streams of its own.
    """
    from backtest import margin
    from backtest.kernels.population_kernels import close_bars, guide_table, row_uniforms, synthesize_nb
    from backtest.margin import TAKER_FEE

    p = params
    ts = np.ascontiguousarray(ts, np.int64)
    ends = ts + np.ascontiguousarray(dur, np.int64)
    close = np.ascontiguousarray(close, np.float64)
    opens, closes, follows = window_flows(np.asarray(volume_usd, np.float64), p, close, oi_qty_end, oi_qty_start)
    m = ts.shape[0]
    a = pop.arrays
    n0 = len(pop)
    o_total = float(opens.sum())
    stats = {"flow_bars": int(m), "flow_follows_open_interest_bars": int(follows.sum())}
    if m == 0 or (o_total <= 0.0 and float(closes.sum()) <= 0.0):
        pop.stats.update({**stats, "flow_rows": 0, "flow_opened_usd": 0.0, "flow_closed_usd": 0.0})
        return pop
    # --- openings ----------------------------------------------------------------------------
    n_flow = 0
    if o_total > 0.0 and pop.open_notional_usd > 0.0:
        n_flow = int(min(p.n_positions, max(math.ceil(p.n_positions * o_total / pop.open_notional_usd), 50 * int((opens > 0).sum()))))
    if buffer is not None:
        if len(buffer["side"]) < n0 + n_flow or not np.shares_memory(buffer["side"][:1], a["side"][:1]):
            raise ValueError("buffer must hold pop's arrays in its first rows and room for the openings after them")
        new = {k: buffer[k][n0 : n0 + n_flow] for k in POPULATION_FIELDS}
    else:
        new = allocate_population(n_flow)
    written = 0
    if n_flow:
        cdf = np.cumsum(opens) / o_total
        cdf[-1] = 1.0
        t_lo, t_hi, t_mmr, t_cum, t_lev = margin.tier_arrays(tiers)
        lev_values, lev_cdf = _leverage_table(p.leverage_mix)
        size_max = min(p.size_max_usd, float(t_hi[-1]) * (1 - 1e-12))
        seed2 = int((p.seed * 0x9E3779B1 + 0x5F10F10) % (2**63))
        written, _, _, _, _, _ = synthesize_nb(
            n_flow, seed2, int(max(1000, 4 * n_flow)),
            cdf, guide_table(cdf), ends, np.zeros(m, np.int64), close, close, np.full(m, np.inf), np.full(m, -np.inf),
            0.5, lev_values, lev_cdf, float(p.leverage_scale), float(p.leverage_size_slope),
            float(p.size_min_usd), float(size_max), float(p.size_tail_alpha),
            float(p.isolated_share), excess_collateral_table(p.cross_extra_collateral, p.cross_extra_sigma),
            float(p.stop_share), float(p.stop_distance),
            VENUES[venue], float(TAKER_FEE[venue]), t_lo, t_hi, t_mmr, t_cum, t_lev,
            new["side"], new["margin_mode"], new["venue"], new["tier"], new["entry"], new["qty"], new["margin"],
            new["mmr"], new["maint_amount"], new["open_time"], new["stop_price"], new["liq_price"], new["leverage"],
        )
        new = {k: v[:written] for k, v in new.items()}
        # weights: each bar's longs and shorts carry exactly long_share / 1 - long_share of its openings
        jb = np.searchsorted(ends, new["open_time"])  # each row's opening bar (its open_time is the bar's end)
        notional = new["entry"] * new["qty"]
        is_long = new["side"] > 0
        sums_l = np.bincount(jb[is_long], weights=notional[is_long], minlength=m)
        sums_s = np.bincount(jb[~is_long], weights=notional[~is_long], minlength=m)
        with np.errstate(divide="ignore", invalid="ignore"):
            wl = np.where(sums_l > 0, opens * long_share / sums_l, 0.0)
            ws_ = np.where(sums_s > 0, opens * (1.0 - long_share) / sums_s, 0.0)
        new["weight"][:] = np.where(is_long, wl[jb], ws_[jb]).astype(np.float32)
    else:
        new = {k: v[:0] for k, v in new.items()}
        jb = np.zeros(0, np.int64)
    placed = np.bincount(jb, weights=new["weight"].astype(np.float64) * new["entry"] * new["qty"], minlength=m)[:m]
    # --- voluntary closes: one hazard per bar over every open row --------------------------
    haz = np.zeros(m)
    on = float(pop.open_notional_usd)
    closed = 0.0
    for j in range(m):
        h = min(closes[j] / on, 1.0 - 1e-9) if on > 0 else 0.0
        haz[j] = h
        closed += h * on
        on = on * (1.0 - h) + placed[j]
    cum = np.cumsum(-np.log1p(-haz))
    first = np.r_[np.zeros(n0, np.int64), jb + 1]
    u = row_uniforms(int(p.seed), n0 + written, CLOSE_STREAM)
    jc = close_bars(u, first, cum)
    if buffer is not None:  # the openings already follow pop's rows
        out = {k: buffer[k][: n0 + written] if written else a[k] for k in POPULATION_FIELDS}
    else:
        out = {k: np.concatenate([a[k], new[k]]) if written else a[k] for k in POPULATION_FIELDS}
    out["close_time"] = np.where(jc < m, ends[np.minimum(jc, m - 1)], NO_CLOSE).astype(np.int64)
    check_population(out)
    pop.arrays = out
    pop.stats.update(
        {
            **stats,
            "flow_rows": int(written),
            "flow_opened_usd": float(placed.sum()),
            "flow_closed_usd": float(closed),
            "flow_long_share": float(long_share),
        }
    )
    return pop


# ------------------------------------------------------------------------------------------
# from the store + event catalogue
# ------------------------------------------------------------------------------------------


def path_extrema_from(
    bar_end_ms: np.ndarray,
    path_ts: np.ndarray,
    path_low: np.ndarray,
    path_high: np.ndarray,
    fine: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    as_of_ms: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per opening bar, the lowest low and highest high of the survival path after it (inf / -inf
    when none).

    The path: the path bars (``path_ts`` open times, UTC ms; e.g. 1 h mark bars) that start at or
    after the opening bar's end (``bar_end_ms``). A path bar that straddles that end is left out;
    the stretch it leaves, from the opening bar's end to the next path bar's start (``as_of_ms``,
    the event start, when no path bar follows: the last mark bar before the event), is covered by
    the ``fine`` bars ``(ts, end, low, high)`` (the finest stored last-price bars, sorted) that
    start at or after the opening bar's end and end by then. Without ``fine`` that stretch is not
    checked (issue 11: positions opened inside the last mark bar entered the event unchecked).
    """
    from backtest.kernels.population_kernels import range_extrema, suffix_extrema

    lo = np.ascontiguousarray(path_low, dtype=np.float64)
    hi = np.ascontiguousarray(path_high, dtype=np.float64)
    pts = np.asarray(path_ts, dtype=np.int64)
    ends = np.asarray(bar_end_ms, dtype=np.int64)
    smin, smax = suffix_extrema(lo, hi)  # smin[k] = min(lo[k+1:])
    incl_min = np.r_[np.minimum(lo, smin), np.inf]  # min(lo[k:]); inf past the end
    incl_max = np.r_[np.maximum(hi, smax), -np.inf]
    k = np.searchsorted(pts, ends, side="left")
    out_min, out_max = incl_min[k], incl_max[k]
    if fine is None:
        return out_min, out_max
    f_ts, f_end, f_lo, f_hi = (np.asarray(x) for x in fine)
    stop = as_of_ms if as_of_ms is not None else int(f_end[-1])
    nxt = np.where(k < pts.shape[0], pts[np.minimum(k, max(pts.shape[0] - 1, 0))] if pts.shape[0] else stop, stop)
    a = np.searchsorted(np.asarray(f_ts, np.int64), ends, side="left")
    b = np.maximum(np.searchsorted(np.asarray(f_end, np.int64), nxt, side="right"), a)
    gmin, gmax = range_extrema(np.ascontiguousarray(f_lo, np.float64), np.ascontiguousarray(f_hi, np.float64), a, b)
    return np.minimum(out_min, gmin), np.maximum(out_max, gmax)


#: the population parameters that change what :func:`population_inputs` reads or derives from the
#: store; the others only change the draw (:func:`build_from_inputs`)
INPUT_FIELDS = ("open_interest_usd", "long_share", "turnover_half_life_days", "venue", "survival_price")


def inputs_key(params: PopulationParams) -> tuple:
    """The values of :data:`INPUT_FIELDS`: two parameter sets with the same key share their inputs."""
    return tuple(getattr(params, f) for f in INPUT_FIELDS)


@dataclass
class PopulationInputs:
    """What :func:`build_population` reads and derives from the store for one (event, symbol),
    before any random draw: the lookback bars, the tier table (``margin.tier_arrays``), the open
    interest (USD, before ``oi_scale``) and its source, the long share and turnover half-life with
    theirs, the venue and the survival path's extrema. Built once per event and :func:`inputs_key`
    by :func:`population_inputs`; a calibration or sweep rebuilding populations per sample reuses it
    (:func:`build_from_inputs` gives the same population, bit for bit, as a full build)."""

    event: Any
    symbol: str
    key: tuple
    bars: dict
    tiers: tuple
    oi_level: float
    oi_source: str
    oi_series: np.ndarray | None
    long_share: float
    long_share_source: str
    half_life_days: float
    half_life_source: str
    venue: str
    extrema: tuple[np.ndarray, np.ndarray] | None
    survival: str
    tiers_source: str = ""  # where the tier table came from (a borrowed one is an assumption)
    path_proxy: str = ""  # "EXCHANGE SYMBOL" whose bars stand in for a venue without its own, else ""
    #: the window's bars, the open interest (base units) at their ends (None where not stored) and
    #: at the window start (NaN where not): the in-window flow's inputs; None without a window end
    window: tuple | None = None


def population_inputs(event: Any, symbol: str, params: PopulationParams | None = None, store: Any = None) -> PopulationInputs:
    """The store-derived inputs of ``symbol``'s population at the start of ``event`` (see
    :func:`build_population` for where each comes from). Raises like it."""
    from backtest import margin
    from backtest.store import Store

    p = params or PopulationParams()
    p.validate()
    st = store if isinstance(store, Store) else Store(store)
    if isinstance(event, str):
        from backtest.events import get_event

        event = get_event(event, None if store is None or isinstance(store, Store) else store)
    if symbol not in tuple(event.symbols):
        raise PopulationError(f"{symbol} is not a symbol of event {event.id}; choose from {', '.join(event.symbols)}")
    ex = event.exchange
    # a venue without bars of its own (multi-venue events, events.Venue.path_proxy) runs on a
    # proxy exchange's bars; its open interest, tiers and long share stay its own
    path_ex = getattr(event, "path_exchange", "") or ex
    path_sym = event.path_symbol(symbol) if hasattr(event, "path_symbol") else symbol
    bars = market_bars(st, path_ex, path_sym, event.lookback_start_ms, event.start_ms)
    from backtest.population_inputs import open_interest_at, tiers_for

    tiers, tiers_src = tiers_for(st, ex, symbol)
    primary = getattr(event, "primary_exchange", "") or ex
    if not tiers and primary != ex:
        # assumption (labelled in the population's stats and the summary's notes): the primary
        # exchange's tier table for the same symbol stands in for a venue with none stored
        tiers, src = tiers_for(st, primary, symbol)
        tiers_src = f"assumption: {primary}'s {src} (none stored for {ex})"
    if not tiers:
        raise PopulationError(f"the store has no leverage tiers for {ex} {symbol}; import them (backtest data import-tiers, or backtest fetch)")
    recent_vol = recent_volume(bars, event.start_ms)
    oi_level, source, oi_points = resolve_open_interest(st, event, symbol, p, recent_vol, bars=bars)
    oi_series = None
    if oi_points is not None:
        # open interest as of each bar's end (last observation at or before it)
        k = np.searchsorted(oi_points[0], (bars["ts"] + bars["dur"]).astype(np.float64), side="right") - 1
        oi_series = np.where(k >= 0, oi_points[1][np.maximum(k, 0)], oi_points[1][0])
    if p.long_share is not None:
        ls, ls_src = p.long_share, "long_share parameter"
    else:
        ls, ls_src = long_share_from_store(st, ex, symbol, event.lookback_start_ms, event.start_ms)
        if ls is None:
            ls, ls_src = FALLBACK_LONG_SHARE, f"default {FALLBACK_LONG_SHARE:.3g} (no long/short ratio in the store; {'fitted' if 'long_share' in FITTED else 'assumption'})"
    if p.turnover_half_life_days is not None:
        hl, hl_src = p.turnover_half_life_days, "turnover_half_life_days parameter"
    else:
        span_days = max((event.start_ms - max(int(bars["ts"][0]), event.start_ms - 7 * DAY_MS)) / DAY_MS, 1e-9)
        daily = recent_vol / span_days
        hl = math.log(2.0) * oi_level / (0.5 * daily) if daily > 0 else 2.0
        hl = float(min(max(hl, 0.05), 365.0))
        hl_src = f"ln2 x OI / (0.5 x daily traded notional ${daily / 1e9:.2f}B over the last 7 days)"
    venue = venue_for_exchange(ex) if p.venue == "auto" else p.venue
    extrema = None
    survival = "last-price bars (no mark-price bars cover the lookback)"
    if p.survival_price == "last":
        survival = "last-price bars (survival_price=last)"
    else:
        mk = mark_bars(st, path_ex, path_sym, max(event.lookback_start_ms, int(bars["ts"][0])), event.start_ms)
        if mk is not None:
            # last-price bars before the mark series starts, mark bars from then on
            before = bars["ts"] + bars["dur"] <= mk["ts"][0]
            path_ts = np.concatenate([bars["ts"][before], mk["ts"]])
            path_lo = np.concatenate([bars["low"][before], mk["low"]])
            path_hi = np.concatenate([bars["high"][before], mk["high"]])
            bar_end = bars["ts"] + bars["dur"]
            extrema = path_extrema_from(
                bar_end, path_ts, path_lo, path_hi, fine=(bars["ts"], bar_end, bars["low"], bars["high"]), as_of_ms=event.start_ms
            )
            from backtest.store import ms_to_iso

            survival = f"mark-price bars ({mk['timeframe']})" + (
                f" from {ms_to_iso(int(mk['ts'][0]))}, last-price bars before" if before.any() else ""
            )
    window = None
    if getattr(event, "end_ms", None) is not None:
        # the window's bars (the flow of positions opening and closing during it) and the venue's
        # open interest (base units) at their ends and at the window start, where stored
        wb = market_bars(st, path_ex, path_sym, event.start_ms, event.end_ms)
        oi_end = open_interest_at(st, ex, symbol, wb["ts"] + wb["dur"], "open_interest")
        oi_start = open_interest_at(st, ex, symbol, np.array([event.start_ms], np.int64), "open_interest")
        window = (wb, oi_end, float(oi_start[0]) if oi_start is not None else float("nan"))
    return PopulationInputs(event, symbol, inputs_key(p), bars, margin.tier_arrays(tiers), float(oi_level), source, oi_series,
                            ls, ls_src, hl, hl_src, venue, extrema, survival, tiers_src,
                            f"{path_ex} {path_sym}" if path_ex != ex else "", window)


def build_from_inputs(inputs: PopulationInputs, params: PopulationParams | None = None, out: dict[str, np.ndarray] | None = None) -> Population:
    """The population of ``params`` over ``inputs`` (:func:`population_inputs` of parameters with the
    same :func:`inputs_key`; else ``ValueError``): the random draw and the scaling only, no store
    read. Equal, bit for bit, to :func:`build_population` with the same parameters."""
    p = params or PopulationParams()
    p.validate()
    if inputs_key(p) != inputs.key:
        raise ValueError(f"these inputs were read for {dict(zip(INPUT_FIELDS, inputs.key))}, not {dict(zip(INPUT_FIELDS, inputs_key(p)))}")
    event, bars = inputs.event, inputs.bars
    target = inputs.oi_level * p.oi_scale
    source = inputs.oi_source
    if p.oi_scale != 1.0:
        source += f"; x oi_scale {p.oi_scale:g}"
    flow_on = getattr(event, "end_ms", None) is not None and (p.flow_turnover > 0.0 or p.close_rate > 0.0)
    buffer = None
    if flow_on and out is None:  # room for the in-window openings after the draw: no concatenation
        buffer = allocate_population(2 * p.n_positions)
        out = {k: v[: p.n_positions] for k, v in buffer.items()}
    pop = synthesize(
        bars["ts"], bars["open"], bars["high"], bars["low"], bars["close"], bars["volume_usd"],
        tiers=inputs.tiers, params=p, target_open_notional_usd=target, as_of_ms=event.start_ms, bar_ms=bars["dur"],
        open_interest_usd=inputs.oi_series, long_share=inputs.long_share, half_life_days=inputs.half_life_days, venue=inputs.venue,
        symbol=inputs.symbol, exchange=event.exchange, event_id=event.id, target_source=source, path_extrema=inputs.extrema, out=out,
    )
    flow_src = "off (flow_turnover = close_rate = 0)"
    if getattr(event, "end_ms", None) is None:
        flow_src = "off (the event has no window end)"
    elif p.flow_turnover > 0.0 or p.close_rate > 0.0:
        wb, oi_end, oi_start = inputs.window
        ls, ls_src = inputs.long_share, inputs.long_share_source
        flow_ls = ls if p.long_share is not None or not ls_src.startswith("default") else 0.5
        pop = add_window_flow(
            pop, wb["ts"], wb["dur"], wb["close"], wb["volume_usd"], tiers=inputs.tiers, params=p, long_share=flow_ls,
            oi_qty_end=oi_end, oi_qty_start=oi_start, venue=inputs.venue, buffer=buffer,
        )
        flow_src = (
            f"in-window openings {p.flow_turnover:g} x and voluntary closes {p.close_rate:g} x traded notional per bar "
            f"({','.join(wb['timeframes'])} bars)"
            + ("; net flow = the store's open-interest change" if oi_end is not None else "")
            + f"; long share of openings {flow_ls:.3f}"
        )
    pop.stats.update(
        {
            "long_share_source": inputs.long_share_source,
            "turnover_half_life_source": inputs.half_life_source,
            "timeframes": ",".join(bars["timeframes"]),
            "lookback_covered_days": (event.start_ms - int(bars["ts"][0])) / DAY_MS,
            "lookback_days": (event.start_ms - event.lookback_start_ms) / DAY_MS,
            "opening_weights": "open-interest increases" if inputs.oi_series is not None else "traded volume",
            "survival_path": inputs.survival,
            "venue": inputs.venue,
            "flow": flow_src,
            "tiers_source": inputs.tiers_source,
            **({"path_proxy": inputs.path_proxy} if inputs.path_proxy else {}),
        }
    )
    return pop


def build_population(event: Any, symbol: str, params: PopulationParams | None = None, store: Any = None) -> Population:
    """Population of ``symbol`` at the start of ``event`` (an id or an ``Event``), from the store.

    Bars: the store's last-price bars over the event's lookback window (finest timeframe where
    available). Open interest: ``params.open_interest_usd``, else the store, else the event
    catalogue, else an estimate from a reference symbol (see :data:`PARAM_SOURCES`). Tiers: the
    store's ccxt tiers for the exchange and symbol. Raises ``ValueError``/``UserError`` with one
    clear line when something needed is missing. The two steps, :func:`population_inputs` (store
    reads) and :func:`build_from_inputs` (the draw), can be called apart to reuse the first.
    """
    return build_from_inputs(population_inputs(event, symbol, params, store), params)


# ------------------------------------------------------------------------------------------
# summary
# ------------------------------------------------------------------------------------------
LEVERAGE_BUCKETS = (1, 2, 3, 5, 10, 20, 25, 50, 75, 100, 125)


def population_summary(pop: Population) -> dict:
    """Headline figures: positions, open notional long/short, leverage histogram (notional
    share per leverage bucket), notional-weighted mean distance to liquidation from the
    reference price, isolated and stop shares - of the positions open at ``as_of_ms`` (the rows
    that open during the window, :func:`add_window_flow`, are counted apart: ``window_rows``)."""
    a = pop.arrays
    pre = a["open_time"] <= pop.as_of_ms
    n_window = int(len(pop) - pre.sum())
    if n_window:
        a = {k: v[pre] for k, v in a.items()}
    w = a["weight"].astype(np.float64)
    notional = w * a["entry"] * a["qty"]
    total = float(notional.sum())
    long_m = a["side"] > 0
    ref = pop.ref_price if math.isfinite(pop.ref_price) else None
    refp = ref if ref is not None else a["entry"]
    liq = a["liq_price"]
    side = a["side"].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.where(np.isfinite(liq), side * (refp - liq) / refp, np.inf)
    fin = np.isfinite(dist)
    mean_dist = float((dist[fin] * notional[fin]).sum() / notional[fin].sum()) if fin.any() else float("nan")
    lev = a["leverage"].astype(np.float64)
    edges = np.array(LEVERAGE_BUCKETS + (np.inf,), dtype=np.float64)
    idx = np.clip(np.searchsorted(edges, lev, side="right") - 1, 0, len(LEVERAGE_BUCKETS) - 1)
    hist_notional = np.bincount(idx, weights=notional, minlength=len(LEVERAGE_BUCKETS))
    hist_count = np.bincount(idx, weights=w, minlength=len(LEVERAGE_BUCKETS))
    labels = [
        f"{LEVERAGE_BUCKETS[i]}-{LEVERAGE_BUCKETS[i + 1]}x" if i + 1 < len(LEVERAGE_BUCKETS) else f">={LEVERAGE_BUCKETS[i]}x"
        for i in range(len(LEVERAGE_BUCKETS))
    ]
    return {
        "symbol": pop.symbol,
        "exchange": pop.exchange,
        "event": pop.event_id,
        "as_of_ms": pop.as_of_ms,
        "rows": len(pop) - n_window,
        "window_rows": n_window,
        "positions": float(w.sum()),
        "open_notional_usd": total,
        "long_notional_usd": float(notional[long_m].sum()),
        "short_notional_usd": float(notional[~long_m].sum()),
        "long_share": float(notional[long_m].sum() / total) if total else float("nan"),
        "target_open_notional_usd": pop.target_open_notional_usd,
        "target_source": pop.target_source,
        "hedged_notional_usd": pop.hedged_notional_usd,
        "ref_price": pop.ref_price,
        "mean_distance_to_liquidation": mean_dist,
        "isolated_share": float(notional[a["margin_mode"] == 0].sum() / total) if total else float("nan"),
        "stop_share": float(notional[np.isfinite(a["stop_price"])].sum() / total) if total else float("nan"),
        "leverage_histogram": {
            lab: {"notional_usd": float(hist_notional[i]), "positions": float(hist_count[i])} for i, lab in enumerate(labels)
        },
        "stats": dict(pop.stats),
    }
