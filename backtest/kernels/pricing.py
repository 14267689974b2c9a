"""numba kernels of the account engine's pricing (:func:`backtest.contagion.engine_flows`): its
exit records priced at the per-symbol kernels' path points, in two passes over the records.

- :func:`exit_rows_nb` - what does not depend on the kernels' prices: each record's symbol, side
  (+1 long, -1 short), quantity closed, entry (quote currency), weight and path point, and per
  account the grid point of its last record and whether every row of it exited in full;
- :func:`price_exits_nb` - the fills at those points' round-0 prices and factors (records.PT_*),
  each account's equity at its fills, its deficit or clearance fee (USD), each record's share of
  them, and the symbols' external flow, fund draws and fees per path point.

Every sum runs over the records in their order, as ``np.bincount`` does, so the results equal
:func:`backtest.contagion.engine_flows_reference` (the numpy reference) bit for bit (tests).
Tuples of per-symbol arrays (``sides``, ``point_ts``, ``bar_pts``, ``ext_*``) are indexed by the
record's symbol.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest.records import PATH_POINTS, PT_FAC, PT_HIT


@njit(cache=True)
def exit_rows_nb(x_row, x_grid, share, row_offset, row_account, members, sides, qtys, entries, weights, grid_pt,
                 sym, side, qty, entry, w, pt, t_acc, closed):
    """Fill the per-record ``sym, side, qty, entry, w, pt`` and per-account ``t_acc, closed``
    (see the module docstring). ``x_row``: each record's row in the accounts' row numbering
    (``row_offset[k]`` starts symbol ``k``'s rows), ``x_grid`` its grid point, ``share`` its share
    of the row's quantity (empty: whole rows); ``row_account``/``members``: the engine's accounts'
    rows; ``sides, qtys, entries, weights``: per symbol its population's arrays; ``grid_pt[k, t]``:
    symbol ``k``'s last path point at or before grid point ``t`` (0 before its first)."""
    m = x_row.shape[0]
    n_sym = row_offset.shape[0] - 1
    row_sh = np.zeros(row_account.shape[0])
    for r in range(m):
        g = x_row[r]
        k = 0
        while k + 1 < n_sym and row_offset[k + 1] <= g:
            k += 1
        loc = g - row_offset[k]
        sym[r] = k
        side[r] = sides[k][loc]
        q = qtys[k][loc]
        if share.shape[0]:
            q = q * share[r]
        qty[r] = q
        entry[r] = entries[k][loc]
        w[r] = np.float64(weights[k][loc])
        pt[r] = grid_pt[k, x_grid[r]]
        a = row_account[g]
        if x_grid[r] > t_acc[a]:
            t_acc[a] = x_grid[r]
        row_sh[g] += share[r] if share.shape[0] else 1.0
    open_rows = np.zeros(t_acc.shape[0])
    for j in range(members.shape[0]):
        g = members[j]
        open_rows[row_account[g]] += 1.0 if row_sh[g] < 1.0 - 1e-9 else 0.0
    for a in range(t_acc.shape[0]):
        closed[a] = open_rows[a] == 0.0


@njit(cache=True)
def price_exits_nb(sym, side, qty, entry, w, pt, a_of, x_grid, t_acc, closed, coll, bar_pts, rate,
                   fill, usd, row_def, row_fee, ext_flow, ext_fund, ext_fee):
    """Fill the per-record ``fill, usd, row_def, row_fee`` (USD, weighted) and add each record's
    flow, fund draw and fee into its symbol's ``ext_*[k]`` (flat, path point index; zeros on
    entry), from :func:`exit_rows_nb`'s outputs, ``a_of`` (account per record), ``coll`` (per
    account, collateral value at its last record, USD), ``bar_pts`` (per symbol the kernel's
    ``bar_pt``) and the clearance ``rate`` (see backtest.contagion.engine_flows)."""
    m = sym.shape[0]
    A = t_acc.shape[0]
    hit = np.empty(m)
    notional = np.empty(m)
    last_n = np.empty(m)
    eqs = np.zeros(A)
    tot = np.zeros(A)
    tot_last = np.zeros(A)
    for r in range(m):
        k = sym[r]
        j = pt[r] // PATH_POINTS
        c = pt[r] - j * PATH_POINTS
        h = bar_pts[k][j, c, PT_HIT]
        f = bar_pts[k][j, c, PT_FAC]
        s = side[r]
        against = (s > 0 and f < 1.0) or (s < 0 and f > 1.0)
        x = h * f if against else h
        hit[r] = h
        fill[r] = x
        a = a_of[r]
        eqs[a] += np.float64(s) * qty[r] * (x - entry[r])
        nt = qty[r] * x
        notional[r] = nt
        tot[a] += nt
        ln = nt * (1.0 if x_grid[r] == t_acc[a] else 0.0)
        last_n[r] = ln
        tot_last[a] += ln
    deficit = np.empty(A)
    fee = np.empty(A)
    for a in range(A):
        eq = coll[a] + eqs[a]
        deficit[a] = -eq if (closed[a] and eq < 0.0) else 0.0
        if closed[a]:
            fee[a] = min(eq, rate * tot[a]) if eq > 0.0 else 0.0
        else:
            fee[a] = rate * tot[a]
    for r in range(m):
        a = a_of[r]
        part = (notional[r] / tot[a] if tot[a] > 0.0 else 0.0) * w[r]
        d = deficit[a] * (last_n[r] / tot_last[a] if tot_last[a] > 0.0 else 0.0) * w[r]
        cf = fee[a] * part
        row_def[r] = d
        row_fee[r] = cf
        usd[r] = notional[r] * w[r]
        k = sym[r]
        ext_flow[k][pt[r]] += np.float64(-side[r]) * qty[r] * w[r] * hit[r]
        ext_fund[k][pt[r]] += d
        ext_fee[k][pt[r]] += cf
