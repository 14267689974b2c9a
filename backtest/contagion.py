"""Accounts in ``backtest replay`` (issue 12): which rows the account engine takes, its run, and
the contagion figures of the summary.

Replay runs on the exogenous path (forced orders do not move it), so an account engine over the
symbols' exogenous mark paths gives exact liquidation times for that path. :func:`run_engine`

1. groups the cross rows of the event's populations into accounts (:func:`backtest.accounts.assign_accounts`);
2. gives the account engine (:mod:`backtest.kernels.accounts`) every account whose liquidation
   depends on more than its own row: accounts over two or more symbols, and accounts holding a
   non-settlement collateral asset. Every other row - isolated rows and single-symbol accounts in
   the settlement coin, whose account is the row itself - goes through the per-symbol kernel as
   before (:func:`backtest.engine.run_kernel`, unchanged); with accounts off, or no such account,
   the results are those of the previous issue bit for bit;
3. runs the engine on the common grid of the symbols' path points (:func:`backtest.accounts.build_grid`).

Contagion (definition; ``summary.json`` ``contagion_definition``): a liquidated row is contagion
when its account would not have been liquidated at that grid point by its own symbol's move alone,
i.e. with every other symbol's price and the collateral's price held at their window-start values;
else own-market. Rows of the per-symbol kernel are own-market by construction. The source of a
contagion liquidation is the symbol (or the collateral) whose loss since the window start
contributed most to the account's equity drop.

Simplified (and said so in the summary's notes): the engine's rows pay no impact on their fills
(the grid point's price), pay no clearance fee, get no funding, and their stop-losses are not
simulated (an account's rows leave only by its liquidation); their deficits (losses beyond the
account's equity) are reported (``account_deficit_usd`` per bar, ``contagion_account_deficit_usd``)
but not charged to the insurance fund and not handed to ADL; the per-symbol kernels' fund and ADL
see only their own rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from backtest import records as R

#: the definition written into summary.json
CONTAGION_DEFINITION = (
    "a liquidation is contagion when the account would not have been liquidated at that time by its own symbol's move "
    "alone (every other symbol's price and the collateral's price held at their window-start values); the source is the "
    "symbol (or 'collateral') whose loss since the window start contributed most to the account's equity drop"
)
NOTE = (
    "accounts (issue 12): rows of accounts over several symbols (or holding a non-settlement collateral) are liquidated by "
    "the account engine on the exogenous paths at the grid point's prices, each venue's procedure (Binance / Gate whole "
    "accounts, Bybit / OKX tier steps, Hyperliquid 20 % of large positions then the rest after 30 s; no impact, no clearance "
    "fee, no funding, no stop-losses); their deficits are reported (contagion_account_deficit_usd), not charged to the insurance fund or ADL"
)


@dataclass
class EngineRun:
    """One replay's account-engine run: the accounts, which rows it took, its outputs."""

    acc: R.Accounts  # every account of the event (single- and multi-symbol)
    sub: R.Accounts  # the accounts the engine ran (renumbered)
    sub_ids: np.ndarray  # int64: their ids in ``acc``
    out: R.AccountOutputs
    grid_ts: np.ndarray  # int64: the grid's times, UTC ms
    engine_rows: dict[str, np.ndarray]  # symbol -> bool per local row: taken by the engine
    symbols: list[str]
    #: where the non-settlement collateral asset's price path came from (accounts.collateral_path)
    collateral_source: str = ""
    #: accounts holding that asset (0: the path did not matter)
    collateral_accounts: int = 0


def account_key(pop_key: str, sim: Any) -> str:
    return json.dumps([pop_key, sim.positions_per_account, sim.collateral_share, sim.collateral_haircut, sim.collateral_shock,
                       getattr(sim, "partial_liquidation", True), getattr(sim, "collateral_asset", "BTC")], sort_keys=True, default=str)


def run_engine(symbols: list[str], pops: dict[str, Any], markets: dict[str, Any], seed: int, sim: Any, start_ms: int, *,
               store: Any = None, exchange: str | None = None, end_ms: int | None = None) -> EngineRun:
    """Assign accounts, pick the engine's accounts and run the engine (module docstring).

    The collateral asset's price path (:func:`backtest.accounts.collateral_path`): the event's own
    ``ASSET/USDT:USDT`` market when it is one of ``symbols``, else the store's (``store``,
    ``exchange``, ``end_ms`` given), else constant; the venue procedures use the symbols' tier
    tables as the rows carry them (:func:`backtest.accounts.tiers_from_rows`)."""
    from backtest.accounts import (
        account_rows,
        assign_accounts,
        build_grid,
        collateral_path,
        liq_rules,
        parse_collateral_shock,
        path_points,
        run_accounts,
        subset_accounts,
        tiers_from_rows,
    )
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
    grid = build_grid([path_points(markets[s].bars, markets[s].bar_ms) for s in symbols], [coll_path], [sim.collateral_haircut])
    nbars = max((len(markets[s].bars["ts"]) for s in symbols), default=1)
    rules = liq_rules(grid.px.shape[0], tiers_from_rows(arrays), partial=bool(getattr(sim, "partial_liquidation", True)))
    out = run_accounts(sub, rows, grid, nbars, rules=rules)
    engine_rows = {}
    for k, s in enumerate(symbols):
        lo, hi = int(acc.row_offset[k]), int(acc.row_offset[k + 1])
        m = sub.members[(sub.members >= lo) & (sub.members < hi)] - lo
        mask = np.zeros(hi - lo, np.bool_)
        mask[m] = True
        engine_rows[s] = mask
    return EngineRun(acc, sub, np.flatnonzero(keep), out, grid.ts, engine_rows, list(symbols), coll_src,
                     int((acc.coll_asset != R.COLLATERAL_SETTLEMENT).sum()))


def notes(run: EngineRun) -> list[str]:
    """The summary notes of an engine run: :data:`NOTE`, and where the collateral's price came
    from when some account holds it (a perpetual standing in for the spot asset is a proxy)."""
    out = [NOTE]
    if run.collateral_accounts:
        out.append(f"collateral asset of {run.collateral_accounts:,} accounts: {run.collateral_source}")
    return out


def symbol_part(run: EngineRun, k: int, nbars: int) -> dict[str, Any]:
    """What the frames of symbol ``k`` need: its records (local rows), per-bar sums, accounts of its rows."""
    acc, out = run.acc, run.out
    lo, hi = int(acc.row_offset[k]), int(acc.row_offset[k + 1])
    sel = (out.x_row >= lo) & (out.x_row < hi)
    sub_acc = run.sub.row_account[out.x_row[sel]]
    return {
        "row": (out.x_row[sel] - lo).astype(np.int64),
        "ts": run.grid_ts[out.x_grid[sel]],
        "fill": out.x_fill[sel],
        "contagion": out.x_contagion[sel],
        "source": out.x_source[sel],
        "share": out.x_share[sel],  # the exit's share of the row's quantity (partial liquidations: < 1)
        "account": run.sub_ids[sub_acc],
        "bar_i": out.bar_i[k, :nbars],
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
        "contagion_account_deficit_usd": float(run.out.bar_i[:, :, R.AB_DEFICIT].sum() / R.USD_SCALE),
        "contagion_engine_accounts": int(len(run.sub.first)),
        "contagion_collateral_source": run.collateral_source,
    }
