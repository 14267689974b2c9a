"""Accounts: cross margin shared across an event's symbols (issue 12).

The population (:mod:`backtest.population`) builds one symbol's rows at a time; a cross row carries
the collateral its holder keeps behind it (initial margin plus the lognormal excess). Here the
cross rows of all of an event's symbols are grouped into accounts (:func:`assign_accounts`):

- an account holds ``k`` rows on ``k`` distinct symbols, ``k`` drawn from
  :data:`backtest.accounts_params.DEFAULT_POSITIONS_PER_ACCOUNT` (capped by the symbols that still
  have unassigned cross rows); each of its symbols is drawn without replacement with probability
  proportional to the symbol's open-interest share (its population's open notional), among the
  symbols with rows left. When the large symbols' rows run out, the remaining accounts are drawn
  among the rest (so late accounts are mostly single-symbol accounts of the small symbols);
- its wallet balance is the sum of the collateral its rows carry today (``margin``), so sizes,
  leverage and collateral stay those of the book; isolated rows stay isolated (account -1);
- a share ``collateral_share`` of accounts holds its collateral in a non-settlement asset with a
  haircut: the amount is set so that its value after the haircut at the window start equals the
  wallet (:func:`collateral_series` gives the asset's price path: a scenario step, see
  :func:`parse_collateral_shock`).

Weights. A row stands for ``weight`` real positions; an account of rows with different weights is
read as one prototype real account holding one real position of each row (equity, maintenance and
liquidation time are those of that prototype, with unweighted quantities), whose liquidation time
applies to every real position its rows stand for. Notional sums use each row's weight; the
prototype's deficit is split over its rows by notional and weighted by each row's weight.

Cross liquidation per venue (:mod:`backtest.kernels.accounts`): an account is liquidated when its
equity (collateral value + unrealised PnL of all its cross positions, each at its own symbol's
mark) falls below the sum of their maintenance margins (``margin.position_maint_margin_nb``, the
row's tier held). What each venue does then, and what is simplified:

- Binance USDⓈ-M cross: "all cross positions under the same margin asset share the same asset cross
  margin balance"; on liquidation the engine takes over the account's positions (cancels orders,
  closes the positions at the bankruptcy price, what remains goes to the insurance fund). Modelled:
  every position of the account is closed at the grid point's prices (as Binance).
- Bybit Unified Trading Account, cross margin: liquidation is triggered when the account's
  maintenance margin rate (MM / equity) reaches 100 %; Bybit then cancels orders, repays
  liabilities, and reduces positions step by step (lowering risk-limit tiers, partial closes by
  FillOrKill orders) until the rate falls back below 100 %, and only then takes over what remains
  (Bybit help centre "Trading Rules: Liquidation Process (Unified Trading Account)"). Simplified:
  full liquidation of the account at the trigger.
- Hyperliquid cross: liquidation when account equity < maintenance margin (half the initial margin
  at max leverage); market liquidation orders go to the book; for positions above 100k USDC only
  20 % is sent at first, then a 30-second cooldown after which the whole remaining position goes;
  when equity falls below 2/3 of maintenance, the backstop (liquidator vault) takes over all cross
  positions and their margin (Hyperliquid docs "Liquidations"). Simplified: full liquidation at the
  trigger (no 20 % step, no cooldown, no backstop threshold).
- OKX / Gate rows use their rows' rates like Binance (fees in the maintenance rate not added).

Other simplifications: funding during the window is not applied to accounts (the per-symbol
kernel applies it to isolated rows); account deficits are reported per bar, not charged to the
insurance fund and not handed to ADL; the account engine runs on the exogenous path (replay), where
liquidations do not move the price, so its liquidation times are exact for that path.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
from numba import njit

from backtest import records as R
from backtest.errors import SimError


# ------------------------------------------------------------------------------------------
# assignment
# ------------------------------------------------------------------------------------------
@njit(cache=True)
def _assign_nb(cross_start, cross_rows, w, kcdf, seed, members, first, count):
    """Group the cross rows (symbol by symbol in ``cross_rows``, symbol ``s`` holding entries
    ``cross_start[s] : cross_start[s + 1]``, in the order they are taken) into accounts; returns
    the number of accounts. ``kcdf[k - 1]``: P(positions <= k)."""
    np.random.seed(seed)
    S = w.shape[0]
    ptr = cross_start[:S].copy()
    chosen = np.zeros(S, np.bool_)
    A = 0
    nm = 0
    K = kcdf.shape[0]
    while True:
        n_avail = 0
        for s in range(S):
            if ptr[s] < cross_start[s + 1]:
                n_avail += 1
        if n_avail == 0:
            break
        u = np.random.random()
        k = K
        for i in range(K):
            if u < kcdf[i]:
                k = i + 1
                break
        if k > n_avail:
            k = n_avail
        first[A] = nm
        for s in range(S):
            chosen[s] = False
        for _ in range(k):
            tot = 0.0
            for s in range(S):
                if ptr[s] < cross_start[s + 1] and not chosen[s]:
                    tot += w[s]
            x = np.random.random() * tot
            pick = -1
            for s in range(S):
                if ptr[s] < cross_start[s + 1] and not chosen[s]:
                    pick = s
                    x -= w[s]
                    if x < 0.0:
                        break
            chosen[pick] = True
            members[nm] = cross_rows[ptr[pick]]
            ptr[pick] += 1
            nm += 1
        count[A] = k
        A += 1
    return A


def positions_cdf(dist: dict) -> np.ndarray:
    """``{k: probability}`` (k = 1, 2, ...) -> cumulative probabilities for k = 1..max(k)."""
    ks = sorted(int(k) for k in dist)
    if not ks or ks[0] < 1:
        raise SimError("positions_per_account needs keys 1, 2, ... (positions per account) with probabilities")
    p = np.zeros(ks[-1])
    for k, v in dist.items():
        p[int(k) - 1] += float(v)
    if abs(p.sum() - 1.0) > 1e-6 or (p < 0).any():
        raise SimError(f"positions_per_account probabilities must be >= 0 and sum to 1, they sum to {p.sum():.6g}")
    c = np.cumsum(p)
    c[-1] = 1.0 + 1e-12
    return c


def assign_accounts(
    pops: Sequence[dict[str, np.ndarray]],
    oi_usd: Sequence[float],
    *,
    positions_per_account: dict,
    seed: int,
    collateral_share: float = 0.0,
    collateral_price0: float = 1.0,
    collateral_haircut: float = 0.0,
    as_of_ms: int | None = None,
) -> R.Accounts:
    """Group the cross rows of an event's per-symbol populations ``pops`` (records' dicts of
    arrays, in symbol order) into accounts (module docstring). With ``as_of_ms`` (the window
    start, UTC ms) only rows open by then and never closed voluntarily (``close_time`` NO_CLOSE)
    join accounts: the account engine holds every member open over the whole window, so rows
    that open or close during it stay positions of their own (the per-symbol kernel). ``oi_usd``: each symbol's open
    interest (USD) weighting which symbols an account holds. A share ``collateral_share`` of the
    accounts (drawn with ``seed``) holds collateral asset 1 (price ``collateral_price0`` USD at
    the window start, haircut ``collateral_haircut``) worth their wallet after the haircut."""
    S = len(pops)
    sizes = np.array([len(p["side"]) for p in pops], np.int64)
    row_offset = np.zeros(S + 1, np.int64)
    row_offset[1:] = np.cumsum(sizes)
    rng = np.random.default_rng([int(seed), 12])
    parts = []
    cross_start = np.zeros(S + 1, np.int64)
    for s, p in enumerate(pops):
        ok = p["margin_mode"] == R.CROSS
        if as_of_ms is not None:
            ok &= p["open_time"] <= as_of_ms
            if "close_time" in p:
                ok &= p["close_time"] == R.NO_CLOSE
        idx = np.flatnonzero(ok).astype(np.int64) + row_offset[s]
        parts.append(idx[rng.permutation(len(idx))])
        cross_start[s + 1] = cross_start[s] + len(idx)
    cross_rows = np.concatenate(parts) if parts else np.empty(0, np.int64)
    w = np.asarray(oi_usd, np.float64).copy()
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    w = w / w.sum() if w.sum() > 0 else np.ones(S) / max(S, 1)
    w = np.maximum(w, 1e-12)  # a symbol without open interest still gets its rows assigned
    m = len(cross_rows)
    members = np.empty(m, np.int64)
    first = np.empty(m, np.int64)
    count = np.empty(m, np.int32)
    A = int(_assign_nb(cross_start, cross_rows, w, positions_cdf(positions_per_account), int(seed) % (2**32), members, first, count))
    first, count = first[:A].copy(), count[:A].copy()
    n = int(row_offset[-1])
    row_account = np.full(n, R.NO_ACCOUNT, np.int32)
    acc_of_member = np.repeat(np.arange(A, dtype=np.int32), count)
    row_account[members] = acc_of_member
    margin = np.concatenate([p["margin"] for p in pops]) if S else np.empty(0)
    wallet = np.bincount(acc_of_member, weights=margin[members], minlength=A).astype(np.float64) if A else np.empty(0)
    coll_asset = np.zeros(A, np.int16)
    coll_amount = wallet.copy()
    if collateral_share > 0 and A:
        pick = rng.random(A) < float(collateral_share)
        coll_asset[pick] = 1
        coll_amount[pick] = wallet[pick] / (float(collateral_price0) * (1.0 - float(collateral_haircut)))
    return R.Accounts(row_account, row_offset, first, count, members, wallet, coll_asset, coll_amount, count.astype(np.int8))


def account_rows(pops: Sequence[dict[str, np.ndarray]], acc: R.Accounts) -> R.AccountRows:
    """The account kernel's per-row arrays (records.AccountRows) of the concatenated populations,
    in ``acc``'s member order (an account's rows contiguous: the kernel reads them in sequence)."""
    m = acc.members
    cat = lambda k: np.ascontiguousarray(np.concatenate([p[k] for p in pops])[m]) if pops else np.empty(0)  # noqa: E731
    sym = np.concatenate([np.full(len(p["side"]), s, np.int16) for s, p in enumerate(pops)])[m] if pops else np.empty(0, np.int16)
    return R.AccountRows(sym, cat("side"), cat("entry"), cat("qty"), cat("mmr"), cat("maint_amount"), cat("weight"))


def subset_accounts(acc: R.Accounts, keep: np.ndarray, rows: R.AccountRows | None = None):
    """The accounts ``keep`` (bool per account) of ``acc``, renumbered (rows of the others become
    -1); with ``rows`` (member order), also the subset's rows: ``(accounts, rows)``."""
    ids = np.flatnonzero(keep)
    new_id = np.full(len(acc.first), -1, np.int32)
    new_id[ids] = np.arange(len(ids), dtype=np.int32)
    count = acc.count[ids].copy()
    first = np.zeros(len(ids), np.int64)
    if len(ids):
        first[1:] = np.cumsum(count[:-1].astype(np.int64))
    slots = np.repeat(acc.first[ids], count) + (np.arange(int(count.sum())) - np.repeat(first, count))
    members = acc.members[slots]
    if len(new_id):
        row_account = np.where(acc.row_account >= 0, new_id[np.maximum(acc.row_account, 0)], -1).astype(np.int32)
    else:  # no account at all (every row isolated)
        row_account = np.full(len(acc.row_account), R.NO_ACCOUNT, np.int32)
    sub = R.Accounts(row_account, acc.row_offset, first, count, members, acc.wallet_usd[ids].copy(), acc.coll_asset[ids].copy(),
                     acc.coll_amount[ids].copy(), acc.n_symbols[ids].copy())
    if rows is None:
        return sub
    return sub, R.AccountRows(*(np.ascontiguousarray(a[slots]) for a in rows))


# ------------------------------------------------------------------------------------------
# the common grid
# ------------------------------------------------------------------------------------------
#: grid points per block of the fast kernel's tables (records.GridPaths; speed only)
BLOCK = 64


def path_points(bars: dict[str, np.ndarray], bar_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A symbol's path points as ``simulate_nb`` walks them: per bar open, then high and low (high
    first in a bar closing below its open, else low first), close, at ``ts + k * (bar_ms - 1) // 3``
    (k = 0..3). Returns ``(times UTC ms, prices, bar index)``."""
    ts = np.asarray(bars["ts"], np.int64)
    op, hi, lo, cl = (np.asarray(bars[k], np.float64) for k in ("open", "high", "low", "close"))
    down = cl < op
    px = np.stack([op, np.where(down, hi, lo), np.where(down, lo, hi), cl], axis=1).ravel()
    t = (ts[:, None] + (np.arange(4)[None, :] * (int(bar_ms) - 1)) // 3).ravel()
    b = np.repeat(np.arange(len(ts), dtype=np.int32), 4)
    return t, px, b


def build_grid(points: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], collateral: Sequence[tuple[np.ndarray, np.ndarray]] = (),
               haircuts: Sequence[float] = (), *, tables: bool = True) -> R.GridPaths:
    """The common grid (records.GridPaths) of symbols given as ``(times, prices, bar)`` path
    points (:func:`path_points`; times ascending) and collateral assets 1, 2, ... given as
    ``(times, prices)`` step paths (price from each time on; before the first, the first) with
    their ``haircuts``. The grid is the union of the symbols' point times; each series holds its
    last own point's price. ``tables=False`` skips the sparse tables (reference kernel)."""
    ts = np.unique(np.concatenate([p[0] for p in points])) if points else np.empty(0, np.int64)
    T = len(ts)
    series = [*points, *[(c[0], c[1], np.zeros(len(c[0]), np.int32)) for c in collateral]]
    S = len(series)
    px = np.empty((S, T))
    bar = np.empty((S, T), np.int32)
    for s, (t, p, b) in enumerate(series):
        t = np.asarray(t, np.int64)
        j = np.searchsorted(t, ts, side="right") - 1
        j = np.maximum(j, 0)
        px[s] = np.asarray(p, np.float64)[j]
        bar[s] = np.asarray(b, np.int32)[j]
    B = BLOCK
    NB = -(-T // B) if tables else 0
    LB = max(int(NB).bit_length(), 1) if tables else 0
    suf = np.empty((S, T if tables else 0, 2))
    blk = np.empty((S, NB, LB, 2))
    if tables and T:
        from backtest.kernels.accounts import sparse_tables_nb

        sparse_tables_nb(px, B, suf, blk)
    coll_series = np.array([-1, *range(len(points), S)], np.int64)
    haircut = np.array([0.0, *[float(h) for h in haircuts]], np.float64)
    return R.GridPaths(ts, px, bar, suf, blk, B, coll_series, haircut, len(points))


# ------------------------------------------------------------------------------------------
# collateral scenarios
# ------------------------------------------------------------------------------------------
_SHOCK_RE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(%?)\s*@\s*(\S+)\s*$")


def parse_collateral_shock(text: str) -> tuple[float, int]:
    """``"-0.35@2025-10-10T21:00Z"`` (a fraction) or ``"-35%@2025-10-10T21:00Z"`` -> (-0.35, UTC ms):
    the collateral asset's price falls by that share at that time (a step)."""
    from backtest.store import to_ms

    m = _SHOCK_RE.match(str(text or ""))
    if not m:
        raise SimError(f"cannot read collateral_shock {text!r}; give e.g. --set collateral_shock=-0.35@2025-10-10T21:00Z")
    v = float(m.group(1)) / (100.0 if m.group(2) else 1.0)
    if not -0.99 <= v <= 10.0 or v == 0.0:
        raise SimError(f"collateral_shock {text!r} is out of range; give a move between -0.99 and +10 (a fraction), not 0")
    when = m.group(3)
    if not (when.endswith("Z") or "+" in when[10:]):
        raise SimError(f"time of collateral_shock {when!r} has no zone; add Z for UTC: collateral_shock={m.group(1)}{m.group(2)}@{when}Z")
    try:
        return v, to_ms(when.replace("Z", "+00:00") if when.endswith("Z") else when)
    except Exception:
        raise SimError(f"cannot read the time of collateral_shock {text!r}; give ISO-8601 UTC, e.g. -0.35@2025-10-10T21:00Z") from None


def collateral_series(shock: tuple[float, int] | None, start_ms: int, price0: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Step price path of the collateral asset (USD per unit): ``price0`` from ``start_ms``, times
    ``1 + shock`` from the shock's time on (scenario, not market data)."""
    if shock is None:
        return np.array([start_ms], np.int64), np.array([price0])
    v, t = shock
    return np.array([min(start_ms, t - 1), t], np.int64), np.array([price0, price0 * (1.0 + v)])


# ------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------
def run_accounts(acc: R.Accounts, rows: R.AccountRows, grid: R.GridPaths, nbars: int, *, reference: bool = False) -> R.AccountOutputs:
    """Run the account engine (:func:`backtest.kernels.accounts.run_accounts_nb`); ``nbars``: the
    largest bar count of the symbols (per-bar sums ``bar_i[s, bar, AB_*]``)."""
    from backtest.kernels.accounts import run_accounts_nb

    m = len(acc.members)
    A = len(acc.first)
    x_row = np.empty(m, np.int64)
    x_grid = np.empty(m, np.int32)
    x_fill = np.empty(m)
    x_cont = np.empty(m, np.int8)
    x_src = np.empty(m, np.int16)
    acc_grid = np.empty(A, np.int32)
    acc_def = np.empty(A)
    bar_i = np.empty((grid.px.shape[0], max(int(nbars), 1), R.AB_SIZE), np.int64)
    nx, checks = run_accounts_nb(acc, rows, grid, int(nbars), bool(reference), x_row, x_grid, x_fill, x_cont, x_src, acc_grid, acc_def, bar_i)
    # records in one canonical order (grid point, then row), whatever order the kernel visited the
    # accounts in: sums over them then do not depend on the mode or the check schedule
    o = np.lexsort((x_row[:nx], x_grid[:nx]))
    return R.AccountOutputs(x_row[:nx][o], x_grid[:nx][o], x_fill[:nx][o], x_cont[:nx][o], x_src[:nx][o], acc_grid, acc_def, bar_i, int(checks))
