"""Accounts in ``backtest replay`` and ``backtest cascade`` (issue 12): which rows the account
engine takes, its runs, how its liquidations reach the per-symbol kernels, and the contagion
figures of the summary.

1. :func:`account_set` groups the cross rows of the event's populations into accounts
   (:func:`backtest.accounts.assign_accounts`) and gives the account engine
   (:mod:`backtest.kernels.accounts`) every account whose liquidation depends on more than its
   own row: accounts over two or more symbols, and accounts holding a non-settlement collateral
   asset. Every other row - isolated rows and single-symbol accounts in the settlement coin, whose
   account is the row itself - goes through the per-symbol kernel as before
   (:func:`backtest.engine.run_kernel`); with accounts off, or no such account, the results are
   those of the previous issue bit for bit;
2. :func:`run_on` runs the engine on the common grid (:func:`backtest.accounts.build_grid`) of the
   symbols' path points: the observed ones in replay (:func:`observed_points`), the per-symbol
   kernels' simulated ones in a cascade (:func:`sim_points`);
3. :func:`engine_flows` (the one place that turns the engine's exit records into kernel inputs)
   prices its liquidations at the kernels' path points and makes each symbol's external forced
   flow, fund draws and clearance fees per path point (records.MarketPath ``ext_*``).

Coupling (:func:`backtest.simulate._coupled`, a deterministic fixed point; a joint multi-symbol
kernel would be a rewrite). Cascade: pass 0 runs the per-symbol kernels without the engine's
rows; the engine runs on their simulated path points; its liquidations enter each symbol's kernel
as an external flow in round 0 of their path point (signed USD: an account long's liquidation
sells), so they move the price through the same impact model and book bound, and the per-symbol
rows feel them (their fills, and the rounds they trigger); the kernels run again, the engine runs
on the new path, and so on until no path point moves by more than :data:`CONTAGION_TOL`
(relative: its price, its round-0 price, its round-0 fill) or after ``account_iterations`` passes
(``summary.json``: ``contagion_iterations``, ``contagion_residual``, ``contagion_converged``,
``contagion_tolerance``).
Replay: the path does not move, the engine runs once on the observed path; its flow walks the
book (fills) without moving the path, and the passes only settle its fills and fund draws (to
:data:`REPLAY_TOL`).

The engine's rows pay like every other row (both modes): each fills as a round-0 row of its
path point (the point's round-0 price moved by the round-0 impact of the point's whole forced
flow, the engine's included, when that goes against it); at those fills the account's equity is
either a deficit, drawn from the fund of each row's symbol at the row's path point (split over the
account's rows by notional), or the remaining margin, of which the clearance fee goes into the
fund. A deficit the fund cannot cover is counted as ``uncovered_usd`` (records.BI_UNCOVERED); it is
NOT handed to ADL (the per-symbol ADL step takes over bankrupt positions of its own rows only).

Contagion (definition; ``summary.json`` ``contagion_definition``): a liquidated row is contagion
when its account would not have been liquidated at that grid point by its own symbol's move alone,
i.e. with every other symbol's price and the collateral's price held at their window-start values;
else own-market. Rows of the per-symbol kernel are own-market by construction (also when another
symbol's account liquidation moved their price: the contagion split is by account). The source of
a contagion liquidation is the symbol (or the collateral) whose loss since the window start
contributed most to the account's equity drop.

Simplified (and said so in the summary's notes): the engine closes whole accounts at the grid
point (see :mod:`backtest.accounts` for the venues' procedures); it triggers on the path points of
the pass before (which hold the impact of the engine's flow at that point too); its rows get no
funding and their stop-losses are not simulated (an account's rows leave only by its liquidation);
an engine liquidation goes to its symbol's last own path point at or before the grid time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from backtest import records as R

#: the coupling of the account engine with the per-symbol kernels stops when no path point moves
#: by more than this (relative) from one pass to the next (a numerical choice: far below any price tick)
CONTAGION_TOL = 1e-9
#: the same in replay, where the path does not move and the passes only settle the engine's fills
#: and fund draws (their round-0 factor): one millionth of a fill (2025-10-10 at the fitted defaults:
#: 3 passes instead of 4 on the five Binance symbols, 3 instead of 5 on the whole event; totals move by
#: tens of dollars in billions, measured 2026-12-02)
REPLAY_TOL = 1e-6


def coupling_tolerance(mode: str) -> float:
    """The coupling's stopping tolerance in ``mode``: :data:`CONTAGION_TOL` in a cascade,
    :data:`REPLAY_TOL` in replay."""
    return REPLAY_TOL if mode == "replay" else CONTAGION_TOL

#: the definition written into summary.json
CONTAGION_DEFINITION = (
    "a liquidation is contagion when the account would not have been liquidated at that time by its own symbol's move "
    "alone (every other symbol's price and the collateral's price held at their window-start values); the source is the "
    "symbol (or 'collateral') whose loss since the window start contributed most to the account's equity drop"
)
NOTE = (
    "accounts (issue 12): rows of accounts over several symbols (or holding a non-settlement collateral) are liquidated by "
    "the account engine at a grid point of the symbols' path points (observed in replay, simulated in a cascade, coupled "
    "with the per-symbol kernels by a fixed point: contagion_iterations, contagion_residual), each venue's procedure "
    "(Binance / Gate whole accounts, Bybit / OKX tier steps, Hyperliquid 20 % of large positions then the rest after 30 s); "
    "their forced orders enter their path point's round 0 (in a cascade they move the price), they fill at its impact, "
    "their deficits are drawn from the symbol's fund (what it cannot cover is uncovered, not handed to ADL) and their "
    "clearance fees paid into it; no funding, no stop-losses"
)


@dataclass
class AccountSet:
    """The accounts of one population set and which of them the engine runs (independent of the
    path: built once per population and account parameters)."""

    acc: R.Accounts  # every account of the event (single- and multi-symbol)
    sub: R.Accounts  # the accounts the engine runs (renumbered)
    sub_ids: np.ndarray  # int64: their ids in ``acc``
    rows: R.AccountRows  # the engine's rows, in ``sub``'s member order
    engine_rows: dict[str, np.ndarray]  # symbol -> bool per local row: taken by the engine
    symbols: list[str]
    #: where the non-settlement collateral asset's price path came from (accounts.collateral_path)
    collateral_source: str = ""
    #: accounts holding that asset (0: the path did not matter)
    collateral_accounts: int = 0
    #: the collateral asset's price path (times UTC ms, prices USD): accounts.collateral_path
    coll_path: Any = None
    #: the symbols' tier tables as the rows carry them (accounts.tiers_from_rows), for the venue procedures
    tiers: Any = None


@dataclass
class Pricing:
    """The engine's liquidations priced at the per-symbol kernels' path points (:func:`engine_flows`):
    per exit record (``AccountOutputs`` order), and the external inputs of each symbol's kernel."""

    fill: np.ndarray  # float64: fill, quote currency (the point's round-0 price moved by its round-0 impact when against the row)
    usd: np.ndarray  # float64: notional closed, qty x weight x fill (x_share of it where the engine closes part)
    deficit_usd: np.ndarray  # float64: the row's part of its account's deficit at those fills, weighted
    fee_usd: np.ndarray  # float64: the row's part of its account's clearance fee, weighted
    bar: np.ndarray  # int64: bar of the row's symbol
    side: np.ndarray  # int8: +1 long, -1 short
    ext: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # symbol -> (ext_flow, ext_fund, ext_fee), records.MarketPath


@dataclass
class EngineRun:
    """One account-engine run: the accounts, which rows it took, its outputs, and (once priced
    against the kernels' paths) its fills, deficits and the coupling's iterations."""

    acc: R.Accounts
    sub: R.Accounts
    sub_ids: np.ndarray
    out: R.AccountOutputs
    grid_ts: np.ndarray  # int64: the grid's times, UTC ms
    engine_rows: dict[str, np.ndarray]
    symbols: list[str]
    grid: Any = None  # records.GridPaths the engine ran on
    priced: Pricing | None = None
    #: kernel passes with the engine's external flow, the last residual (largest relative move of
    #: a path point between the last two passes) and whether it fell to ``tolerance``
    iterations: int = 0
    residual: float | None = None
    converged: bool | None = None
    tolerance: float = CONTAGION_TOL  # what converged means (coupling_tolerance of the mode)
    #: where the non-settlement collateral asset's price path came from (accounts.collateral_path)
    collateral_source: str = ""
    #: accounts holding that asset (0: the path did not matter)
    collateral_accounts: int = 0


def account_key(pop_key: str, sim: Any) -> str:
    return json.dumps([pop_key, sim.positions_per_account, sim.collateral_share, sim.collateral_haircut, sim.collateral_shock,
                       getattr(sim, "partial_liquidation", True), getattr(sim, "collateral_asset", "BTC")], sort_keys=True, default=str)


def account_set(symbols: list[str], pops: dict[str, Any], markets: dict[str, Any], seed: int, sim: Any, start_ms: int, *,
                store: Any = None, exchange: str | None = None, end_ms: int | None = None) -> AccountSet:
    """Assign accounts and pick the engine's (module docstring, steps 1 and 2).

    The collateral asset's price path (:func:`backtest.accounts.collateral_path`): the event's own
    ``ASSET/USDT:USDT`` market when it is one of ``symbols`` (its observed bars, also in a cascade),
    else the store's (``store``, ``exchange``, ``end_ms`` given), else constant; the venue
    procedures use the symbols' tier tables as the rows carry them
    (:func:`backtest.accounts.tiers_from_rows`)."""
    from backtest.accounts import account_rows, assign_accounts, collateral_path, parse_collateral_shock, subset_accounts, tiers_from_rows
    from backtest import accounts_params as AP

    arrays = [pops[s].arrays for s in symbols]
    shock = parse_collateral_shock(sim.collateral_shock) if sim.collateral_shock else None
    coll_path, coll_src = collateral_path(getattr(sim, "collateral_asset", AP.DEFAULT_COLLATERAL_ASSET), shock, int(start_ms), end_ms,
                                          markets={s: markets[s] for s in symbols}, store=store, exchange=exchange)
    # the asset's price at the window start (its last point at or before it): the accounts hold
    # as much of it as their wallet is worth after the haircut then
    k0 = max(int(np.searchsorted(coll_path[0], int(start_ms), side="right")) - 1, 0)
    price0 = float(coll_path[1][k0]) / (1.0 + shock[0]) if shock is not None and coll_path[0][k0] >= shock[1] else float(coll_path[1][k0])
    acc = assign_accounts(arrays, [pops[s].open_notional_usd for s in symbols], positions_per_account=sim.positions_per_account,
                          seed=int(seed), collateral_share=sim.collateral_share, collateral_price0=price0,
                          collateral_haircut=sim.collateral_haircut, as_of_ms=int(start_ms))
    keep = (acc.n_symbols >= 2) | (acc.coll_asset != R.COLLATERAL_SETTLEMENT)
    sub, rows = subset_accounts(acc, keep, account_rows(arrays, acc))
    engine_rows = {}
    for k, s in enumerate(symbols):
        lo, hi = int(acc.row_offset[k]), int(acc.row_offset[k + 1])
        m = sub.members[(sub.members >= lo) & (sub.members < hi)] - lo
        mask = np.zeros(hi - lo, np.bool_)
        mask[m] = True
        engine_rows[s] = mask
    return AccountSet(acc, sub, np.flatnonzero(keep), rows, engine_rows, list(symbols), coll_src,
                      int((acc.coll_asset != R.COLLATERAL_SETTLEMENT).sum()), coll_path, tiers_from_rows(arrays))


def run_on(aset: AccountSet, points: list[tuple[np.ndarray, np.ndarray, np.ndarray]], sim: Any, start_ms: int, nbars: int) -> EngineRun:
    """Run the engine over the symbols' path points ``points`` (:func:`backtest.accounts.path_points`
    of the observed bars in replay, :func:`sim_points` of the kernels' simulated path in a cascade),
    each venue's procedure (:func:`backtest.accounts.liq_rules`; ``partial_liquidation=false``: whole accounts)."""
    from backtest.accounts import build_grid, liq_rules, run_accounts

    grid = build_grid(points, [aset.coll_path], [sim.collateral_haircut])
    rules = liq_rules(grid.px.shape[0], aset.tiers, partial=bool(getattr(sim, "partial_liquidation", True)))
    out = run_accounts(aset.sub, aset.rows, grid, nbars, rules=rules)
    return EngineRun(aset.acc, aset.sub, aset.sub_ids, out, grid.ts, aset.engine_rows, aset.symbols, grid=grid,
                     collateral_source=aset.collateral_source, collateral_accounts=aset.collateral_accounts)


def run_engine(symbols: list[str], pops: dict[str, Any], markets: dict[str, Any], seed: int, sim: Any, start_ms: int, *,
               store: Any = None, exchange: str | None = None, end_ms: int | None = None) -> EngineRun:
    """Assign accounts, pick the engine's accounts and run the engine on the observed paths."""
    aset = account_set(symbols, pops, markets, seed, sim, start_ms, store=store, exchange=exchange, end_ms=end_ms)
    nbars = max((len(markets[s].bars["ts"]) for s in symbols), default=1)
    return run_on(aset, observed_points(symbols, markets), sim, start_ms, nbars)


def observed_points(symbols: list[str], markets: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each symbol's observed path points (:func:`backtest.accounts.path_points`)."""
    from backtest.accounts import path_points

    return [path_points(markets[s].bars, markets[s].bar_ms) for s in symbols]


def sim_points(bars: dict[str, np.ndarray], bar_ms: int, bar_pt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A symbol's simulated path points: the times and bars of :func:`backtest.accounts.path_points`,
    the prices the kernel reached there (``bar_pt[:, :, PT_PRICE]``, records.RunOutputs)."""
    from backtest.accounts import path_points

    t, _px, b = path_points(bars, bar_ms)
    return t, np.ascontiguousarray(bar_pt[:, :, R.PT_PRICE]).ravel(), b


def observed_bar_pt(points: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """``bar_pt`` (records.PT_*) of a path no forced flow touched: every point at its observed
    price, round-0 factor 1 (what the engine's fills start from in replay)."""
    _t, px, _b = points
    n = len(px) // R.PATH_POINTS
    pt = np.empty((n, R.PATH_POINTS, R.PT_SIZE))
    pt[:, :, R.PT_PRICE] = px.reshape(n, R.PATH_POINTS)
    pt[:, :, R.PT_HIT] = px.reshape(n, R.PATH_POINTS)
    pt[:, :, R.PT_FAC] = 1.0
    return pt


def path_residual(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Largest relative move of a path point between two passes (``bar_pt`` per symbol): of its
    price, its round-0 price or the round-0 fill (price x factor)."""
    worst = 0.0
    for s, x in a.items():
        y = b[s]
        if not x.size:
            continue
        fx = x[:, :, R.PT_HIT] * x[:, :, R.PT_FAC]
        fy = y[:, :, R.PT_HIT] * y[:, :, R.PT_FAC]
        for u, v in ((x[:, :, R.PT_PRICE], y[:, :, R.PT_PRICE]), (x[:, :, R.PT_HIT], y[:, :, R.PT_HIT]), (fx, fy)):
            d = np.abs(u - v) / np.maximum(np.abs(v), 1e-300)
            worst = max(worst, float(np.max(d)))
    return worst


@dataclass
class _ExitRows:
    """An engine run's exit records joined to their rows, path points and accounts: the part of
    :func:`engine_flows` that does not depend on the kernels' prices (per record, ``out`` order)."""

    sel: list  # per symbol: bool mask of its records
    side: np.ndarray  # int8: +1 long, -1 short
    qty: np.ndarray  # float64: quantity closed (x_share of the row's where the engine closes part)
    entry: np.ndarray  # float64: entry price, quote currency
    w: np.ndarray  # float64: row weight
    pt: np.ndarray  # int64: the symbol's path point (flat index) at or before the record's grid time
    a_of: np.ndarray  # int64: account (``sub``) per record
    t_acc: np.ndarray  # int64: per account, the grid point of its last exit record
    closed: np.ndarray  # bool: per account, every row exited in full
    coll: np.ndarray  # float64: per account, its collateral value (USD) at t_acc


def _exit_rows(run: EngineRun, pops: dict[str, Any], point_ts: dict[str, np.ndarray]) -> _ExitRows:
    """:class:`_ExitRows` of ``run`` (see :func:`engine_flows_reference`)."""
    out, acc, sub = run.out, run.acc, run.sub
    g = out.x_row
    m = len(g)
    sidx = (np.searchsorted(acc.row_offset, g, side="right") - 1).astype(np.int64)
    share = getattr(out, "x_share", None)
    side = np.empty(m, np.int8)
    qty = np.empty(m)
    entry = np.empty(m)
    w = np.empty(m)
    pt = np.empty(m, np.int64)
    sels = []
    for k, s in enumerate(run.symbols):
        sel = sidx == k
        sels.append(sel)
        loc = g[sel] - acc.row_offset[k]
        a = pops[s].arrays
        side[sel] = a["side"][loc]
        qty[sel] = a["qty"][loc]
        entry[sel] = a["entry"][loc]
        w[sel] = a["weight"][loc].astype(np.float64)
        pt[sel] = np.maximum(np.searchsorted(point_ts[s], run.grid_ts[out.x_grid[sel]], side="right") - 1, 0)
    if share is not None:
        qty = qty * np.asarray(share, np.float64)
    # accounts at their fills (one prototype real account, rows unweighted)
    a_of = sub.row_account[g].astype(np.int64)
    A = len(sub.first)
    t_acc = np.zeros(A, np.int64)  # the grid point of each account's last exit record
    np.maximum.at(t_acc, a_of, out.x_grid)
    # closed: every row of the account exited in full (its records' shares sum to 1); an account a
    # venue procedure cut only in part stays open and owes no deficit (its open rows' PnL is not here)
    sh = np.ones(m) if share is None else np.asarray(share, np.float64)
    row_sh = np.bincount(g, weights=sh, minlength=len(sub.row_account))
    open_rows = np.bincount(sub.row_account[sub.members].astype(np.int64), weights=(row_sh[sub.members] < 1.0 - 1e-9).astype(np.float64),
                            minlength=A)
    closed = open_rows == 0
    return _ExitRows(sels, side, qty, entry, w, pt, a_of, t_acc, closed, _collateral_at(run, t_acc))


def engine_flows(run: EngineRun, pops: dict[str, Any], bar_pt: dict[str, np.ndarray], point_ts: dict[str, np.ndarray],
                 clearance_rate: float, cache: dict | None = None) -> Pricing:
    """The engine's liquidations as each symbol's external forced flow, fund draws and fees:
    :func:`engine_flows_reference` (which says what each figure is) in two numba passes over
    the records (backtest.kernels.pricing), bit for bit the same. ``cache`` as there: the
    price-independent pass is kept while the same run is priced again."""
    from backtest.kernels.pricing import exit_rows_nb, price_exits_nb

    out, acc, sub = run.out, run.acc, run.sub
    syms = run.symbols
    m = len(out.x_row)
    A = len(sub.first)
    # the kernels do not check bounds: the shapes they index by are checked here
    if len(acc.row_offset) != len(syms) + 1 or (m and int(np.max(out.x_row)) >= int(acc.row_offset[-1])):
        raise ValueError("engine run: exit records and row offsets do not match its symbols")
    for s in syms:
        if len(point_ts[s]) != bar_pt[s].shape[0] * R.PATH_POINTS:
            raise ValueError(f"{s}: {len(point_ts[s])} path point times for {bar_pt[s].shape[0]} bars of {R.PATH_POINTS} points")
    hit = cache.get("exit_rows") if cache is not None else None
    ex = hit[1] if hit is not None and hit[0] is run else None
    if ex is None:
        share = getattr(out, "x_share", None)
        share = np.zeros(0) if share is None else np.ascontiguousarray(share, np.float64)
        arr = [pops[s].arrays for s in syms]
        sym, side, pt = np.empty(m, np.int64), np.empty(m, np.int8), np.empty(m, np.int64)
        qty, entry, w = np.empty(m), np.empty(m), np.empty(m)
        t_acc, closed = np.zeros(A, np.int64), np.empty(A, np.bool_)
        exit_rows_nb(np.ascontiguousarray(out.x_row, np.int64), np.ascontiguousarray(out.x_grid, np.int64), share,
                     np.ascontiguousarray(acc.row_offset, np.int64), sub.row_account, sub.members,
                     tuple(a["side"] for a in arr), tuple(a["qty"] for a in arr), tuple(a["entry"] for a in arr),
                     tuple(a["weight"] for a in arr), _grid_points(run.grid_ts, [point_ts[s] for s in syms]),
                     sym, side, qty, entry, w, pt, t_acc, closed)
        a_of = sub.row_account[out.x_row].astype(np.int64)
        ex = (sym, side, qty, entry, w, pt, a_of, t_acc, closed, _collateral_at(run, t_acc))
        if cache is not None:
            cache["exit_rows"] = (run, ex)
    sym, side, qty, entry, w, pt, a_of, t_acc, closed, coll = ex
    fill, usd, row_def, row_fee = np.empty(m), np.empty(m), np.empty(m), np.empty(m)
    nbs = [bar_pt[s].shape[0] for s in syms]
    flows = tuple(np.zeros(nb * R.PATH_POINTS) for nb in nbs)
    funds = tuple(np.zeros(nb * R.PATH_POINTS) for nb in nbs)
    fees = tuple(np.zeros(nb * R.PATH_POINTS) for nb in nbs)
    price_exits_nb(sym, side, qty, entry, w, pt, a_of, np.ascontiguousarray(out.x_grid, np.int64), t_acc, closed, coll,
                   tuple(np.ascontiguousarray(bar_pt[s], np.float64) for s in syms), float(clearance_rate),
                   fill, usd, row_def, row_fee, flows, funds, fees)
    ext = {s: (flows[k].reshape(nb, R.PATH_POINTS), funds[k].reshape(nb, R.PATH_POINTS), fees[k].reshape(nb, R.PATH_POINTS))
           for k, (s, nb) in enumerate(zip(syms, nbs))}
    return Pricing(fill, usd, row_def, row_fee, pt // R.PATH_POINTS, side, ext)


def _grid_points(grid_ts: np.ndarray, point_ts: list[np.ndarray]) -> np.ndarray:
    """int64[n_symbols, n_grid]: each symbol's last path point at or before each grid time (0
    before its first): where an engine record at that grid point goes."""
    out = np.empty((len(point_ts), len(grid_ts)), np.int64)
    for k, t in enumerate(point_ts):
        out[k] = np.maximum(np.searchsorted(np.asarray(t, np.int64), np.asarray(grid_ts, np.int64), side="right") - 1, 0)
    return out


def _collateral_at(run: EngineRun, t_acc: np.ndarray) -> np.ndarray:
    """Per account of the engine, its collateral value (USD) at grid point ``t_acc``: the wallet
    in the settlement coin, else the asset's amount at its price there after the haircut."""
    sub = run.sub
    code = sub.coll_asset
    coll = sub.wallet_usd.copy()
    if len(sub.first) and run.grid is not None:
        cs = run.grid.coll_series[code]
        other = cs >= 0
        if other.any():
            coll[other] = (sub.coll_amount[other] * run.grid.px[cs[other], t_acc[other]] * (1.0 - run.grid.haircut[code[other]]))
    return coll


def engine_flows_reference(run: EngineRun, pops: dict[str, Any], bar_pt: dict[str, np.ndarray], point_ts: dict[str, np.ndarray],
                           clearance_rate: float) -> Pricing:
    """The engine's liquidations as each symbol's external forced flow (the one place that turns
    the engine's exit records into kernel inputs; records.MarketPath ``ext_*``).

    Each exit record (row ``g``, grid point ``t``) goes to its symbol's last own path point at or
    before ``grid_ts[t]`` (the point whose price the engine saw). There, with ``bar_pt`` the
    symbol's kernel outputs of the pass before (records.PT_*):

    - flow: ``-side x qty x weight x PT_HIT`` USD (a long's liquidation sells), in round 0 of the point;
    - fill: as a round-0 row of the point - ``PT_HIT x PT_FAC`` when that impact goes against the
      row (forced sells fill lower, forced buys higher), else ``PT_HIT``;
    - the account's equity at its rows' fills, ``collateral (at t) + sum side x qty x (fill - entry)``
      (one prototype real account, rows unweighted, as the engine; ``t`` its last exit's grid
      point): for an account whose rows all exited in full, below 0 it is the deficit the fund
      pays, split over the records of its final grid point by notional (the engine books it
      there), else the clearance fee ``min(equity, clearance_rate x sum qty x fill)`` is paid into
      the fund; an account a venue procedure cut only in part stays open: no deficit, the fee
      ``clearance_rate x`` the notional it closed. Fees are split over all its records by notional;
      both are weighted by each row's weight and charged at the record's path point.

    A per-record share ``x_share`` of the outputs (partial liquidation), when the engine gives one,
    scales the closed quantity. Funding of the engine's rows stays out."""
    out, sub = run.out, run.sub
    syms = run.symbols
    ex = _exit_rows(run, pops, point_ts)
    side, qty, entry, w, pt, a_of, t_acc, closed, coll = ex.side, ex.qty, ex.entry, ex.w, ex.pt, ex.a_of, ex.t_acc, ex.closed, ex.coll
    m = len(out.x_row)
    A = len(sub.first)
    hit = np.empty(m)
    fac = np.empty(m)
    ext = {}
    for k, s in enumerate(syms):
        flat = bar_pt[s].reshape(-1, R.PT_SIZE)
        sel = ex.sel[k]
        i = pt[sel]
        hit[sel] = flat[i, R.PT_HIT]
        fac[sel] = flat[i, R.PT_FAC]
    against = ((side > 0) & (fac < 1.0)) | ((side < 0) & (fac > 1.0))
    fill = np.where(against, hit * fac, hit)
    upnl = side * qty * (fill - entry)
    notional = qty * fill
    eq = coll + np.bincount(a_of, weights=upnl, minlength=A)
    tot = np.bincount(a_of, weights=notional, minlength=A)
    rate = float(clearance_rate)
    deficit = np.where(closed & (eq < 0.0), -eq, 0.0)
    # a closed account pays the fee out of what equity is left; a partly cut one on what it closed
    fee = np.where(closed, np.where(eq > 0.0, np.minimum(eq, rate * tot), 0.0), rate * tot)
    part = np.where(tot[a_of] > 0.0, notional / np.where(tot[a_of] > 0.0, tot[a_of], 1.0), 0.0) * w
    # the deficit falls at the final close (as the engine books it): over the last grid point's records
    last_n = notional * (out.x_grid == t_acc[a_of])
    tot_last = np.bincount(a_of, weights=last_n, minlength=A)
    row_def = deficit[a_of] * np.where(tot_last[a_of] > 0.0, last_n / np.where(tot_last[a_of] > 0.0, tot_last[a_of], 1.0), 0.0) * w
    row_fee = fee[a_of] * part
    usd = notional * w
    flow = -side * qty * w * hit
    for k, s in enumerate(syms):
        nb = bar_pt[s].shape[0]
        sel = ex.sel[k]
        ps = pt[sel]
        # per path point, in record order (np.bincount adds as np.add.at into zeros does)
        f, d, c = (np.bincount(ps, weights=x[sel], minlength=nb * R.PATH_POINTS) for x in (flow, row_def, row_fee))
        ext[s] = (f.reshape(nb, R.PATH_POINTS), d.reshape(nb, R.PATH_POINTS), c.reshape(nb, R.PATH_POINTS))
    return Pricing(fill, usd, row_def, row_fee, pt // R.PATH_POINTS, side, ext)


def unconverged_note(iterations: int, residual: float | None, tolerance: float | None = None) -> str:
    """The note (summary, report, CLI warning) of a coupling that stopped at ``account_iterations``
    before its residual fell to its tolerance (:func:`coupling_tolerance`; default :data:`CONTAGION_TOL`)."""
    r = "?" if residual is None else f"{residual:.1e}"
    tol = CONTAGION_TOL if tolerance is None else tolerance
    return (f"NOT CONVERGED: the coupling of the account engine with the per-symbol kernels stopped after {iterations} passes "
            f"with a path point still moving by {r} (relative; tolerance {tol:.0e}): the accounts' liquidations, "
            f"contagion and the path are those of the last pass, not a fixed point; raise --set account_iterations=N (at most 100) - "
            f"if the residual stops falling with more passes, more will not settle it (dense cross populations: README, Speed)")


def notes(run: EngineRun) -> list[str]:
    """The summary notes of an engine run: :data:`NOTE`, a warning when the coupling did not
    converge (:func:`unconverged_note`), and where the collateral's price came from when some
    account holds it (a perpetual standing in for the spot asset is a proxy)."""
    out = [NOTE]
    if run.converged is False:
        out.append(unconverged_note(run.iterations, run.residual, run.tolerance))
    if run.collateral_accounts:
        out.append(f"collateral asset of {run.collateral_accounts:,} accounts: {run.collateral_source}")
    return out


def symbol_part(run: EngineRun, k: int, nbars: int) -> dict[str, Any]:
    """What the frames of symbol ``k`` need: its records (local rows), per-bar sums, accounts of its
    rows. Once priced (:func:`engine_flows`), the fills, notional and deficits are those at the
    kernel's path points (the per-bar sums rebuilt from them), else the grid point's prices."""
    acc, out = run.acc, run.out
    lo, hi = int(acc.row_offset[k]), int(acc.row_offset[k + 1])
    sel = (out.x_row >= lo) & (out.x_row < hi)
    sub_acc = run.sub.row_account[out.x_row[sel]]
    bar_i = out.bar_i[k, :nbars]
    fill = out.x_fill[sel]
    pr = run.priced
    if pr is not None:
        fill = pr.fill[sel]
        bar_i = bar_i.copy()
        b = pr.bar[sel]
        u = R.usd_units(pr.usd[sel])
        cont = out.x_contagion[sel] == 1
        is_long = pr.side[sel] > 0
        for col in (R.AB_LONG_LIQ, R.AB_SHORT_LIQ, R.AB_CONTAGION, R.AB_OWN, R.AB_DEFICIT):
            bar_i[:, col] = 0
        np.add.at(bar_i[:, R.AB_LONG_LIQ], b[is_long], u[is_long])
        np.add.at(bar_i[:, R.AB_SHORT_LIQ], b[~is_long], u[~is_long])
        np.add.at(bar_i[:, R.AB_CONTAGION], b[cont], u[cont])
        np.add.at(bar_i[:, R.AB_OWN], b[~cont], u[~cont])
        np.add.at(bar_i[:, R.AB_DEFICIT], b, R.usd_units(pr.deficit_usd[sel]))
    return {
        "row": (out.x_row[sel] - lo).astype(np.int64),
        "ts": run.grid_ts[out.x_grid[sel]],
        "fill": fill,
        "usd": pr.usd[sel] if pr is not None else None,
        "contagion": out.x_contagion[sel],
        "source": out.x_source[sel],
        "share": out.x_share[sel],  # the exit's share of the row's quantity (partial liquidations: < 1)
        "account": run.sub_ids[sub_acc],
        "bar_i": bar_i,
        "row_account": acc.row_account[lo:hi],
    }


def _class_of(acc: R.Accounts, account: np.ndarray) -> np.ndarray:
    cls = np.full(len(account), R.ACCOUNT_CLASS_ISOLATED, np.int8)
    has = account >= 0
    ns = acc.n_symbols[account[has]]
    cls[has] = np.where(ns >= 2, R.ACCOUNT_CLASS_MULTI, R.ACCOUNT_CLASS_SINGLE)
    return cls


def summary_fields(run: EngineRun, liqs_by_symbol: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """The ``contagion_*`` fields of ``summary.json``.

    ``liqs_by_symbol[s]``: every liquidation (exit) of symbol ``s`` (both engines) as arrays ``account``
    (-1 isolated), ``usd`` (notional at the fill, by the exit's quantity share), ``weight`` (real
    positions, times the exit's share: a row liquidated in parts counts once in all), ``contagion`` (0/1), ``source``
    (symbol index, SOURCE_COLLATERAL, or -1 for own-market rows of the per-symbol kernel)."""
    acc = run.acc
    names = run.symbols
    classes = {name: {"accounts": 0, "positions_liquidated": 0.0, "liquidated_usd": 0.0, "contagion_usd": 0.0}
               for name in R.ACCOUNT_CLASS_NAMES.values()}
    n_rows = np.diff(acc.row_offset)
    iso = int(n_rows.sum()) - int(acc.count.sum())
    classes["isolated"]["accounts"] = iso
    classes["single_symbol_cross"]["accounts"] = int((acc.n_symbols == 1).sum())
    classes["multi_symbol_cross"]["accounts"] = int((acc.n_symbols >= 2).sum())
    matrix: dict[str, dict[str, float]] = {}
    cont_usd = own_usd = 0.0
    cont_rows = 0
    for s, d in liqs_by_symbol.items():
        if not len(d["usd"]):
            continue
        cls = _class_of(acc, d["account"])
        c = d["contagion"] == 1
        cont_usd += float(d["usd"][c].sum())
        own_usd += float(d["usd"][~c].sum())
        cont_rows += int(c.sum())
        for code, name in R.ACCOUNT_CLASS_NAMES.items():
            m = cls == code
            classes[name]["positions_liquidated"] += float(d["weight"][m].sum())
            classes[name]["liquidated_usd"] += float(d["usd"][m].sum())
            classes[name]["contagion_usd"] += float(d["usd"][m & c].sum())
        for src in np.unique(d["source"][c]):
            key = "collateral" if src == R.SOURCE_COLLATERAL else names[int(src)]
            matrix.setdefault(key, {})[s] = matrix.get(key, {}).get(s, 0.0) + float(d["usd"][c & (d["source"] == src)].sum())
    total = cont_usd + own_usd
    return {
        "contagion_definition": CONTAGION_DEFINITION,
        "contagion_liquidated_usd": cont_usd,
        "contagion_own_market_usd": own_usd,
        "contagion_share": cont_usd / total if total > 0 else None,
        "contagion_rows": cont_rows,
        "contagion_by_class": classes,
        "contagion_matrix_usd": matrix,
        "contagion_account_deficit_usd": float(run.priced.deficit_usd.sum()) if run.priced is not None
        else float(run.out.bar_i[:, :, R.AB_DEFICIT].sum() / R.USD_SCALE),
        "contagion_account_fees_usd": float(run.priced.fee_usd.sum()) if run.priced is not None else 0.0,
        "contagion_engine_accounts": int(len(run.sub.first)),
        "contagion_iterations": int(run.iterations),
        "contagion_residual": None if run.residual is None else float(run.residual),
        "contagion_converged": run.converged,
        "contagion_tolerance": float(run.tolerance),
        "contagion_collateral_source": run.collateral_source,
    }
