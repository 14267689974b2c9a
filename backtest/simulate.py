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
``simulate_prepared``, ``run_event``) ; the Python side of the kernels (trigger lists,
the kernel parameters, the workspace) is :mod:`backtest.engine`. It is the :class:`backtest.sim_api.SimulationAPI` that
sweeps and the report run on.

Simplifications (see also :mod:`backtest.kernels.cascade`): the population holds the positions
open at the start of the window and those that open during it (at a bar's close, in proportion to
its traded volume; :func:`backtest.population.add_window_flow`), each open from ``open_time`` to
its voluntary ``close_time``; cross positions are treated like isolated ones with their
allotted collateral; linear contracts only; one insurance fund split across the symbols by open
notional; ADL runs at the end of each bar for what the fund could not cover.
"""

from __future__ import annotations

import json
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
    from backtest.population_params import PopulationParams

    return set(field_names(PopulationParams))


# ------------------------------------------------------------------------------------------
# populations
# ------------------------------------------------------------------------------------------
@dataclass
class PopEntry:
    arrays: dict[str, np.ndarray]
    open_notional_usd: float
    source: str
    lists: Any = None  # cached trigger lists (engine.build_lists: records.TriggerLists)
    #: where the open-interest target came from (population.resolve_open_interest): "store ...",
    #: "event catalogue: ...", "estimate: ..." or "open_interest_usd parameter"
    oi_source: str = "unknown"


def _build_population(ev: Any, symbol: str, pop_params: Any, store: Any) -> PopEntry:
    from backtest.population import build_population

    pop = build_population(ev, symbol, pop_params, store=store)
    R.check_population(pop.arrays)
    return PopEntry(pop.arrays, float(pop.open_notional_usd), "backtest.population", oi_source=str(pop.target_source))


from backtest.engine import build_lists, depth_profile, exit_split as _exit_split, kernel_params, run_kernel, summary_workspace as _summary_workspace  # noqa: E402


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
    #: per symbol: (book.BookProfile, note) its forced orders walk (engine.depth_profile), built once
    _depth_cache: dict = field(default_factory=dict, repr=False)


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
    if pop_params is not None:  # before any bar is loaded or population built (backtest.resources)
        from backtest.resources import check_simulation

        check_simulation(pop_params.n_positions, len(syms), (ev.end_ms - ev.lookback_start_ms) // 60_000, what=f"event {ev.id}")
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
        if pe.lists is None or pe.lists.bucket_size != sim.sort_bucket_size or (len(bars["ts"]) and pe.lists.base_max_open > int(bars["ts"][0])):
            # positions opening inside the window get their own cohorts of lists (engine.build_lists)
            pe.lists = build_lists(pe.arrays, sim.sort_bucket_size, int(bars["ts"][0]) if len(bars["ts"]) else None)
        # summary-only runs (sweeps) drop the kernel's outputs once the summary is made: they
        # reuse one workspace per symbol slot instead of faulting in fresh output memory each run
        ws = _summary_workspace(i) if summary_only else None
        if s not in prepared._depth_cache:
            prepared._depth_cache[s] = depth_profile(prepared.store, ev.exchange, s, mk, ev.start_ms, ev.end_ms)
        out = run_kernel(pe.arrays, bars, prm, lists=pe.lists, workspace=ws, depth=prepared._depth_cache[s][0])
        t_sort += out.sort_s
        t_sim += out.sim_s
        per[s] = SymbolRun(out, bars, mk, pe, fund, _exit_split(out, pe.arrays))
    res = assemble(prepared, per, mode, shock, pop_params, sim, timings={"sort_s": t_sort, "simulate_s": t_sim}, summary_only=summary_only)
    if mode == "replay" and not summary_only:  # observed forced orders in the store, when there are any
        from backtest.observed import add_observed_total

        add_observed_total(res.summary, prepared.store, ev)
    return res


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
