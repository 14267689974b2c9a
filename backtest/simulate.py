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

Accounts (issue 12, on at defaults; :mod:`backtest.contagion`): the rows of accounts over several
symbols of the primary venue (or holding a non-settlement collateral), among the positions open at
the window start, are liquidated by the account engine, the rest by the per-symbol kernels.
:func:`_coupled` couples the two by a deterministic fixed point: in a cascade the engine runs on
the kernels' simulated path points and its liquidations enter each symbol's kernel as an external
forced flow (round 0 of their path point: it moves the price through the impact model, and the
kernel's rows feel it), fund draws (its deficits) and clearance fees, pass after pass until no
path point moves by more than ``contagion.coupling_tolerance`` or ``account_iterations`` passes
(``summary.json`` ``contagion_iterations`` / ``contagion_residual`` / ``contagion_converged`` /
``contagion_tolerance``); in
replay the engine runs once on the observed path and its flow sets fills, fees and fund draws
without moving the path. A pass re-runs only the symbols whose external inputs changed.

Simplifications (see also :mod:`backtest.kernels.cascade` and :mod:`backtest.contagion`): the
population holds the positions open at the start of the window and those that open during it (at
a bar's close, in proportion to its traded volume; :func:`backtest.population.add_window_flow`),
each open from ``open_time`` to its voluntary ``close_time``; cross positions outside the engine
are treated like isolated ones with their allotted collateral; linear contracts only; one
insurance fund per venue split across its symbols by open notional (the engine's deficits drawn
from the fund of each row's symbol); ADL runs at the end of each bar for what the fund could not
cover of the kernel's own rows (an engine deficit the fund cannot cover is counted uncovered).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
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
    #: where the leverage tiers came from (population stats "tiers_source")
    tiers_source: str = ""


def _build_population(ev: Any, symbol: str, pop_params: Any, store: Any, exchange: str | None = None,
                      inputs_cache: dict | None = None, out: dict[str, np.ndarray] | None = None) -> PopEntry:
    """The population entry of ``symbol`` on ``exchange`` (default: the event's primary exchange),
    from that venue's view of the event (events.Event.venue_event: its open interest, tiers,
    margin rule). ``inputs_cache`` (a Prepared's) keeps the store-derived inputs
    (:func:`backtest.population.population_inputs`) per venue, symbol and input parameters, so a
    rebuild for other population parameters only draws (the same population, bit for bit)."""
    from backtest.population import PopulationParams, build_from_inputs, inputs_key, population_inputs

    if exchange is not None and hasattr(ev, "venue_event"):
        ev = ev.venue_event(exchange)
    pop_params = pop_params or PopulationParams()
    key = (exchange, symbol, inputs_key(pop_params))
    inp = inputs_cache.get(key) if inputs_cache is not None else None
    if inp is None:
        inp = population_inputs(ev, symbol, pop_params, store)
        if inputs_cache is not None:
            inputs_cache[key] = inp
    if out is not None and len(out["side"]) != pop_params.n_positions:
        out = None
    pop = build_from_inputs(inp, pop_params, out=out)
    R.check_population(pop.arrays)
    return PopEntry(pop.arrays, float(pop.open_notional_usd), "backtest.population", oi_source=str(pop.target_source),
                    tiers_source=str(pop.stats.get("tiers_source", "")))


from backtest.engine import build_lists, depth_profile, exit_split as _exit_split, kernel_params, run_kernel, with_external_fund, summary_workspace as _summary_workspace  # noqa: E402


# ------------------------------------------------------------------------------------------
# prepare / simulate
# ------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    """Market arrays and populations of one event, built once (for sweeps)."""

    event: Any
    #: the results keys of the run's (exchange, symbol) legs (events.Leg.key: the bare symbol on
    #: the primary exchange, SYMBOL@EXCHANGE on a further venue); markets and populations use them
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
    #: accounts (issue 12): the account engine's run and each symbol's remaining rows and their
    #: trigger lists, per population and account parameters (backtest.contagion), one set kept
    _acc_cache: dict = field(default_factory=dict, repr=False)
    #: results key -> events.Leg (exchange, symbol, the exchange whose bars drive it)
    legs: dict = field(default_factory=dict)
    #: per (exchange, symbol, population.inputs_key): the populations' store-derived inputs, read once
    _inputs_cache: dict = field(default_factory=dict, repr=False)
    #: a rebuild writes into the arrays of the population set it evicts from the cache (no fresh
    #: memory to fault in per sample: calibrations, which keep no result of an earlier call; a
    #: result of an earlier call that held those arrays would change under it)
    reuse_buffers: bool = False
    #: per symbol, the arrays the account engine's remaining rows are gathered into when
    #: ``reuse_buffers`` (simulate._gather)
    _sub_buffers: dict = field(default_factory=dict, repr=False)

    def leg(self, key: str) -> Any:
        """The events.Leg of a results key (a single-venue event's symbols: the primary exchange)."""
        from backtest.events import Leg

        ex = self.event.exchange
        return self.legs.get(key) or Leg(key, ex, key, ex)


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
    every = [leg.key for leg in ev.legs()] if hasattr(ev, "legs") else list(ev.symbols)
    unknown = [s for s in (symbols or ()) if s not in every]
    if unknown:
        more = " (a further venue's symbol is SYMBOL@EXCHANGE)" if getattr(ev, "venues", ()) else ""
        raise SimError(f"symbol {unknown[0]!r} is not part of event {ev.id}; its symbols: {', '.join(every)}{more}")
    legs = ev.legs(symbols) if hasattr(ev, "legs") else None
    if legs is None:  # an event-like object without venues (tests)
        from backtest.events import Leg

        legs = [Leg(s, ev.exchange, s, ev.exchange) for s in (symbols or ev.symbols)]
    syms = [leg.key for leg in legs]
    if pop_params is not None:  # before any bar is loaded or population built (backtest.resources)
        from backtest.resources import check_simulation

        check_simulation(pop_params.n_positions, len(syms), (ev.end_ms - ev.lookback_start_ms) // 60_000, what=f"event {ev.id}")
    markets: dict[str, Market] = {}
    pops: dict[str, PopEntry] = {}
    inputs: dict = {}
    for i, leg in enumerate(legs):
        if progress:
            progress(f"loading {leg.key}", i, len(syms))
        markets[leg.key] = load_market(st, leg.path_exchange, leg.path_symbol, ev.start_ms, ev.end_ms, ev.lookback_start_ms, sim.price_path,
                                       funding_exchange=leg.exchange, funding_symbol=leg.symbol)
        pops[leg.key] = _build_population(ev, leg.symbol, pop_params, st, leg.exchange if getattr(ev, "venues", ()) else None, inputs)
    prep = Prepared(ev, syms, markets, pop_params, sim, pops, st, dict(overrides or {}), legs={leg.key: leg for leg in legs},
                    _inputs_cache=inputs)
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
        spare = None
        if prepared.reuse_buffers:  # the set this rebuild evicts: neither the prepared one nor the new one
            spare = next((v for v in prepared._pop_cache.values() if v is not prepared.populations), None)
        pops = {k: _build_population(ev, prepared.leg(k).symbol, pop_params, prepared.store, _venue_arg(prepared, k), prepared._inputs_cache,
                                     out=spare[k].arrays if spare is not None and k in spare else None) for k in prepared.symbols}
        prepared._pop_cache.clear()  # keep one extra population set in memory at most
        prepared._pop_cache[_pop_key(prepared.pop_params)] = prepared.populations
        prepared._pop_cache[key] = pops
    shock_v = shock_ms = None
    if shock is not None:
        shock_v, shock_ms = parse_shock(shock, ev.core_start_ms)
        if not ev.start_ms <= shock_ms < ev.end_ms:
            from backtest.store import ms_to_iso

            raise SimError(f"shock time {ms_to_iso(shock_ms)} is outside the event window {ms_to_iso(ev.start_ms)} → {ms_to_iso(ev.end_ms)}")
    funds = venue_funds(prepared, pops, sim.insurance_fund_usd)
    aset, t_acc = _accounts(prepared, pops, key, pop_params, sim, progress)
    ctx = _Ctx(prepared, pops, key, sim, mode, shock_v, shock_ms, funds, summary_only, progress)
    acc_run = None
    t_eng = 0.0
    if aset is None:
        kr = _run_symbols(ctx, None, None)
    else:
        kr, acc_run, t_eng = _coupled(ctx, aset)
    per: dict[str, SymbolRun] = {}
    for s in prepared.symbols:
        out, bars, pe, full, fund = kr[s]
        split = _exit_split(out, pe.arrays)
        if acc_run is None or s not in acc_run.symbols:
            per[s] = SymbolRun(out, bars, prepared.markets[s], pe, fund, split)
        else:
            from backtest.contagion import symbol_part

            k = acc_run.symbols.index(s)
            per[s] = SymbolRun(out, bars, prepared.markets[s], full, fund, split, rows=pe.rows, accounts=symbol_part(acc_run, k, len(bars["ts"])))
    t_sort, t_sim = ctx.t_sort, ctx.t_sim
    timings = {"sort_s": t_sort, "simulate_s": t_sim}
    if acc_run is not None:  # the account engine's time and its account checks (speed figures)
        # accounts_s: the assignment (0 when cached) plus every engine run and pricing
        timings["accounts_s"] = t_acc + t_eng
        timings["account_assign_s"] = t_acc
        timings["account_checks"] = float(acc_run.out.checks)
        timings["account_engine_runs"] = float(ctx.engine_runs)
        timings["account_fund_only_runs"] = float(ctx.fund_only)  # symbol passes that only moved the fund
    res = assemble(prepared, per, mode, shock, pop_params, sim, timings=timings, summary_only=summary_only, accounts=acc_run)
    if mode == "replay" and not summary_only:  # observed forced orders in the store, when there are any
        from backtest.observed import add_observed_total

        add_observed_total(res.summary, prepared.store, ev)
    return res


@dataclass
class _SubPop:
    """A symbol's rows left to the per-symbol kernel when the account engine takes some."""

    arrays: dict[str, np.ndarray]
    open_notional_usd: float
    rows: np.ndarray  # int64: their indices in the full population
    lists: Any = None


@dataclass
class _Ctx:
    """One simulate_prepared call's inputs to the per-symbol kernel runs (and their timings)."""

    prepared: Prepared
    pops: dict[str, PopEntry]
    key: str
    sim: SimParams
    mode: str
    shock_v: float | None
    shock_ms: int | None
    funds: dict[str, float]
    summary_only: bool
    progress: Callable | None
    t_sort: float = 0.0  # the kernel runs' times (s), over every pass
    t_sim: float = 0.0
    engine_runs: int = 0
    fund_only: int = 0  # symbol passes that only re-priced the fund (engine.with_external_fund)


def _run_symbols(ctx: _Ctx, aset: Any, ext: dict | None, prev: dict | None = None, only: set | None = None,
                 ext_prev: dict | None = None) -> dict[str, tuple]:
    """One pass of the per-symbol kernels: per results key ``(KernelRun, bars, the population
    entry the kernel ran, the full population entry, fund share)``; with ``aset`` (the account
    engine's accounts) the rows it holds leave the kernel; ``ext``: per symbol the engine's
    external flow, fund draws and fees (contagion.engine_flows), None for none. With ``only``,
    the symbols outside it keep their run of ``prev`` (their inputs did not change: the kernel is
    deterministic); a symbol in it whose run of ``prev`` (made with ``ext_prev``) only needs its
    fund re-priced for the new inputs keeps that run with the fund moved, without running the
    kernel (engine.with_external_fund: the same outputs, bit for bit). The kernels' times add to
    ``ctx.t_sort`` / ``ctx.t_sim``."""
    prepared, sim = ctx.prepared, ctx.sim
    ev = prepared.event
    res = {}
    for i, s in enumerate(prepared.symbols):
        if only is not None and s not in only:
            res[s] = prev[s]
            continue
        if prev is not None and ext_prev is not None and ext is not None:
            patched = with_external_fund(prev[s][0], prev[s][4], ext_prev.get(s), ext.get(s))
            if patched is not None:
                res[s] = (patched, *prev[s][1:])
                ctx.fund_only += 1
                continue
        if ctx.progress:
            ctx.progress(f"simulating {s}", i, len(prepared.symbols))
        mk = prepared.markets[s]
        pe = full = ctx.pops[s]
        if aset is not None and s in aset.symbols:  # the rows the account engine took leave the per-symbol kernel
            pe = prepared._acc_cache[ctx.key, s]
        bars = mk.bars
        dd_bar, dd_ref, dd_dir = 0, 0.0, -1
        if ctx.shock_v is not None:
            bars, dd_bar, dd_ref = shocked_path(bars, ctx.shock_v, ctx.shock_ms)
            dd_dir = -1 if ctx.shock_v < 0 else 1
        fund = ctx.funds[s]
        prm = kernel_params(sim, mk, mode=ctx.mode, fund_usd=fund, dd_bar=dd_bar, dd_ref=dd_ref, dd_dir=dd_dir)
        if pe.lists is None or pe.lists.bucket_size != sim.sort_bucket_size or (len(bars["ts"]) and pe.lists.base_max_open > int(bars["ts"][0])):
            # positions opening inside the window get their own cohorts of lists (engine.build_lists)
            pe.lists = build_lists(pe.arrays, sim.sort_bucket_size, int(bars["ts"][0]) if len(bars["ts"]) else None)
        # summary-only runs (sweeps) drop the kernel's outputs once the summary is made: they
        # reuse one workspace per symbol slot instead of faulting in fresh output memory each run
        ws = _summary_workspace(i) if ctx.summary_only else None
        if s not in prepared._depth_cache:
            leg = prepared.leg(s)
            prepared._depth_cache[s] = depth_profile(prepared.store, leg.path_exchange, leg.path_symbol, mk, ev.start_ms, ev.end_ms)
        x = ext.get(s) if ext is not None else None
        out = run_kernel(pe.arrays, bars, prm, lists=pe.lists, workspace=ws, depth=prepared._depth_cache[s][0], ext=x)
        ctx.t_sort += out.sort_s
        ctx.t_sim += out.sim_s
        res[s] = (out, bars, pe, full, fund)
    return res


def _coupled(ctx: _Ctx, aset: Any) -> tuple[dict[str, tuple], Any, float]:
    """The per-symbol kernels and the account engine coupled by a fixed point (module docstring):
    returns the last kernel pass, the engine's run priced at it (contagion.EngineRun) and the
    engine's time (s).

    Cascade: pass 0 runs the kernels without the engine's rows; then, until no path point moves
    by more than contagion.coupling_tolerance (relative) or ``account_iterations`` passes with the
    engine's flow: the engine runs on the last pass's simulated path points, its liquidations
    become each symbol's external flow, fund draws and fees (contagion.engine_flows, priced at
    the last pass's points), and the kernels run again with them. Replay: the path does not move,
    so the engine runs once, on the observed points; the passes only settle its fills (the first
    priced at the observed points without impact)."""
    import time

    from backtest.contagion import coupling_tolerance, engine_flows, observed_bar_pt, observed_points, path_residual, run_on, sim_points

    prepared, sim = ctx.prepared, ctx.sim
    syms = aset.symbols
    tol = coupling_tolerance(ctx.mode)
    start = prepared.event.start_ms
    nbars = max((len(prepared.markets[s].bars["ts"]) for s in syms), default=1)
    t_eng = 0.0
    point_ts = {}
    priced_rows: dict = {}  # engine_flows' price-independent part, kept while the same engine run is priced again

    def points_ts(s: str, bars: dict) -> np.ndarray:
        if s not in point_ts:
            from backtest.accounts import path_points

            point_ts[s] = path_points(bars, prepared.markets[s].bar_ms)[0]
        return point_ts[s]

    def engine(points: list) -> Any:
        nonlocal t_eng
        if ctx.progress:
            ctx.progress("accounts", 0, 1)
        t0 = time.perf_counter()
        run = run_on(aset, points, sim, start, nbars)
        t_eng += time.perf_counter() - t0
        ctx.engine_runs += 1
        return run

    def price(run: Any, pts: dict, kr_bars: dict) -> Any:
        nonlocal t_eng
        t0 = time.perf_counter()
        pr = engine_flows(run, ctx.pops, pts, {s: points_ts(s, kr_bars[s]) for s in syms}, sim.clearance_fee_rate, cache=priced_rows)
        t_eng += time.perf_counter() - t0
        return pr

    if not len(aset.sub.first):  # no account the engine runs: one pass, nothing external
        kr = _run_symbols(ctx, aset, None)
        run = engine(observed_points(syms, prepared.markets))
        pts = {s: kr[s][0].bar_pt for s in syms}
        run.priced = price(run, pts, {s: kr[s][1] for s in syms})
        run.iterations, run.residual, run.converged, run.tolerance = 0, 0.0, True, tol
        return kr, run, t_eng
    if ctx.mode == "replay":
        hit = prepared._acc_cache.get("replay_run")
        if hit is not None and hit[0] is aset:
            run = replace(hit[1])  # the cached run stays unpriced (this call prices its copy)
        else:
            run = engine(observed_points(syms, prepared.markets))
            prepared._acc_cache["replay_run"] = (aset, replace(run))
        obs = observed_points(syms, prepared.markets)
        pts = {s: observed_bar_pt(p) for s, p in zip(syms, obs)}
        bars_of = {s: prepared.markets[s].bars for s in syms}
    else:
        kr = _run_symbols(ctx, aset, None)
        pts = {s: kr[s][0].bar_pt.copy() for s in syms}
        bars_of = {s: kr[s][1] for s in syms}
        run = engine([sim_points(bars_of[s], prepared.markets[s].bar_ms, pts[s]) for s in syms])
    pricing = price(run, pts, bars_of)
    it = 0
    residual = None
    kr_prev, ext_prev = (kr, None) if ctx.mode == "cascade" else (None, None)
    while True:
        # a pass re-runs only the symbols whose external inputs changed (the first: every symbol)
        only = None if kr_prev is None else {s for s in syms if ext_prev is None or not _same_ext(pricing.ext[s], ext_prev[s])}
        kr = _run_symbols(ctx, aset, pricing.ext, kr_prev, only, ext_prev)
        it += 1
        new = {s: kr[s][0].bar_pt.copy() for s in syms}
        residual = path_residual(new, pts)
        if residual <= tol or it >= sim.account_iterations:
            break
        pts = new
        kr_prev, ext_prev = kr, pricing.ext
        if ctx.mode == "cascade":
            run = engine([sim_points(bars_of[s], prepared.markets[s].bar_ms, pts[s]) for s in syms])
        pricing = price(run, pts, bars_of)
    run.priced = pricing
    run.iterations = it
    run.residual = residual
    run.converged = bool(residual <= tol)
    run.tolerance = tol
    return kr, run, t_eng


def _same_ext(a: tuple, b: tuple) -> bool:
    """Whether two symbols' external inputs (contagion.engine_flows) are equal, bit for bit."""
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def _accounts(prepared: Prepared, pops: dict[str, PopEntry], key: str, pop_params: Any, sim: SimParams, progress: Callable | None):
    """The accounts the engine runs (contagion.AccountSet) when accounts are on, else None, and
    the time taken (s); caches each symbol's remaining rows under ``prepared._acc_cache[key, symbol]``.

    Accounts live on one exchange: in a multi-venue event they are built over the primary
    venue's symbols only; the other venues' rows stay one account each (the per-symbol kernel)."""
    import time

    if not sim.accounts:
        return None, 0.0
    from backtest.contagion import account_key, account_set

    akey = account_key(key, sim)
    hit = prepared._acc_cache.get("accounts")
    if hit is not None and hit[0] == akey:
        return hit[1], 0.0
    if progress:
        progress("accounts", 0, 1)
    t0 = time.perf_counter()
    syms = account_symbols(prepared)
    ev = prepared.event
    aset = account_set(syms, pops, prepared.markets, pop_params.seed, sim, ev.start_ms,
                       store=prepared.store, exchange=ev.exchange, end_ms=ev.end_ms)
    prepared._acc_cache.clear()
    prepared._acc_cache["accounts"] = (akey, aset)
    for s in syms:
        pe = pops[s]
        keep = np.flatnonzero(~aset.engine_rows[s])
        arrays = _gather(prepared, s, pe.arrays, keep) if len(keep) < len(pe.arrays["side"]) else pe.arrays
        prepared._acc_cache[key, s] = _SubPop(arrays, pe.open_notional_usd, keep, pe.lists if arrays is pe.arrays else None)
    return aset, time.perf_counter() - t0


def _gather(prepared: Prepared, symbol: str, arrays: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """``{field: arrays[field][keep]}``: the rows the per-symbol kernel keeps. With
    ``prepared.reuse_buffers`` (calibrations) they are gathered into arrays kept per symbol
    from one call to the next (``prepared._sub_buffers``, grown as needed: no fresh memory to
    fault in per sample), which the previous call's sub-population held."""
    if not prepared.reuse_buffers:
        return {k: v[keep] for k, v in arrays.items()}
    bufs = prepared._sub_buffers.setdefault(symbol, {})
    out = {}
    for k, v in arrays.items():
        b = bufs.get(k)
        if b is None or len(b) < len(keep) or b.dtype != v.dtype:
            b = bufs[k] = np.empty(max(len(keep), int(1.25 * len(keep))), v.dtype)
        out[k] = np.take(v, keep, out=b[: len(keep)], mode="clip")
    return out


def _venue_arg(prepared: Prepared, key: str) -> str | None:
    """The exchange to build ``key``'s population on: None (the event itself) for a single-venue event."""
    return prepared.leg(key).exchange if getattr(prepared.event, "venues", ()) else None


def account_symbols(prepared: Prepared) -> list[str]:
    """The results keys whose rows can share accounts: the primary exchange's symbols."""
    return [s for s in prepared.symbols if prepared.leg(s).exchange == prepared.event.exchange]


def venue_funds(prepared: Prepared, pops: dict[str, PopEntry], fund_usd: float) -> dict[str, float]:
    """Each leg's share of an insurance fund (USD), by results key.

    One fund per venue, split across that venue's symbols by open notional (each exchange's fund
    covers only its own positions). The primary venue's fund is ``fund_usd`` (the
    ``insurance_fund_usd`` parameter, sourced for Binance: see sim_params); a further venue's is
    ``fund_usd`` x its open notional / the primary venue's - an assumption (no per-venue fund is
    catalogued), named in the summary's notes."""
    by_venue: dict[str, float] = {}
    for k in prepared.symbols:
        ex = prepared.leg(k).exchange
        by_venue[ex] = by_venue.get(ex, 0.0) + pops[k].open_notional_usd
    primary = prepared.event.exchange
    base = by_venue.get(primary) or 0.0
    out = {}
    for k in prepared.symbols:
        ex = prepared.leg(k).exchange
        venue_fund = fund_usd if ex == primary or base <= 0 else fund_usd * by_venue[ex] / base
        out[k] = venue_fund * pops[k].open_notional_usd / (by_venue[ex] or 1.0)
    return out


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
