"""The simulation API: polars in, polars out.

``run_event`` replays a catalogued event (``mode="replay"``: the observed path, no feedback; the
forced orders fill at their own impact, but the path is not moved) or runs it with feedback
(``mode="cascade"``: forced orders move the price through an impact model, round after round). The
sweep-friendly split is :func:`prepare` (market arrays and populations, built once) and
:func:`simulate_prepared` (re-runs only what the overrides need).

Its parts live by job: parameters in :mod:`backtest.sim_params`, shocks in
:mod:`backtest.shocks`, market loading in :mod:`backtest.market` (the path's ``price_source``),
results (the typed summary, the declared frames) in :mod:`backtest.results`, the liquidation map,
heatmap and clusters in :mod:`backtest.liqmap`. This module orchestrates (``prepare``,
``simulate_prepared``, ``run_event``) and holds the Python side of the kernels (trigger lists,
the parameter vector, the workspace). It is the :class:`backtest.sim_api.SimulationAPI` that
sweeps and the report run on.

Simplifications (see also :mod:`backtest.kernels.cascade`): every position of the population is
open at the start of the window; cross positions are treated like isolated ones with their
allotted collateral; linear contracts only; one insurance fund split across the symbols by open
notional; ADL runs at the end of each bar for what the fund could not cover.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from backtest import records as R
from backtest.errors import SimError
from backtest.market import Market, load_market
from backtest.params import as_dict
from backtest.results import SimResult, SymbolRun, assemble
from backtest.shocks import parse_shock, shocked_path
from backtest.sim_params import SimParams, default_groups, resolve_params

#: the parameter groups of the simulation API (backtest.sim_api.SimulationAPI)
param_groups = default_groups


def population_param_names() -> set[str]:
    """Names of the parameters that change the population (backtest.sim_api.SimulationAPI)."""
    from backtest.params import field_names
    from backtest.population import PopulationParams

    return set(field_names(PopulationParams))


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


def _build_population(ev: Any, symbol: str, pop_params: Any, store: Any) -> PopEntry:
    from backtest.population import build_population

    pop = build_population(ev, symbol, pop_params, store=store)
    R.check_population(pop.arrays)
    return PopEntry(pop.arrays, float(pop.open_notional_usd), "backtest.population", oi_source=str(pop.target_source))


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
        pops[s] = _build_population(ev, s, pop_params, st)
    prep = Prepared(ev, syms, markets, pop_params, sim, pops, st, dict(overrides or {}))
    prep._pop_cache[_pop_key(pop_params)] = pops
    return prep


def _pop_key(pop_params: Any) -> str:
    return json.dumps(as_dict(pop_params), sort_keys=True, default=str)


def simulate_prepared(
    prepared: Prepared,
    overrides: dict | None = None,
    mode: str = "cascade",
    shock: str | None = None,
    progress: Callable | None = None,
    summary_only: bool = False,
) -> SimResult:
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
        pops = {s: _build_population(ev, s, pop_params, prepared.store) for s in prepared.symbols}
        prepared._pop_cache.clear()  # keep one extra population set in memory at most
        prepared._pop_cache[_pop_key(prepared.pop_params)] = prepared.populations
        prepared._pop_cache[key] = pops
    shock_v = shock_ms = None
    if shock is not None:
        shock_v, shock_ms = parse_shock(shock, ev.core_start_ms)
        if not ev.start_ms <= shock_ms < ev.end_ms:
            from backtest.store import ms_to_iso

            raise SimError(f"shock time {ms_to_iso(shock_ms)} is outside the event window {ms_to_iso(ev.start_ms)} → {ms_to_iso(ev.end_ms)}")
    total_on = sum(p.open_notional_usd for p in pops.values()) or 1.0
    per: dict[str, SymbolRun] = {}
    t_sort = t_sim = 0.0
    for i, s in enumerate(prepared.symbols):
        if progress:
            progress(f"simulating {s}", i, len(prepared.symbols))
        mk = prepared.markets[s]
        pe = pops[s]
        bars = mk.bars
        dd_bar, dd_ref, dd_dir = 0, 0.0, -1
        if shock_v is not None:
            bars, dd_bar, dd_ref = shocked_path(bars, shock_v, shock_ms)
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
        per[s] = SymbolRun(out, bars, mk, pe, fund, _exit_split(out, pe.arrays))
    return assemble(prepared, per, mode, shock, pop_params, sim, timings={"sort_s": t_sort, "simulate_s": t_sim}, summary_only=summary_only)


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


def run_event(
    event_id: Any,
    *,
    mode: str = "replay",
    overrides: dict | None = None,
    shock: str | None = None,
    symbols: list[str] | None = None,
    store: Any = None,
    progress: Callable | None = None,
) -> SimResult:
    """Replay (``mode="replay"``) or cascade (``mode="cascade"``) one catalogued event."""
    if mode not in ("replay", "cascade"):
        raise SimError(f"mode must be 'replay' or 'cascade', got {mode!r}")
    if shock is not None and mode != "cascade":
        raise SimError("--shock applies to the cascade command (mode='cascade')")
    prep = prepare(event_id, overrides, symbols, store, progress)
    return simulate_prepared(prep, overrides, mode=mode, shock=shock, progress=progress)


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
