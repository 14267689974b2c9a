"""Pricing the account engine's exits at the per-symbol kernels' path points (one pass over the
exit records; the numerics of :func:`backtest.contagion.engine_flows`, which documents the rules
and calls :func:`price_exits_nb`).

Per exit record ``r`` (row ``x_row[r]``, grid point ``x_grid[r]``, share ``x_share[r]``), with
the row's symbol ``k`` and its last own path point at or before the grid time:

- fill: ``PT_HIT x PT_FAC`` of that point when its round-0 impact goes against the row, else
  ``PT_HIT`` (quote currency);
- the account's equity at its fills: collateral (USD; a non-settlement asset at its price at the
  account's last exit grid point, after haircut) plus the sum of ``side x qty x share x (fill -
  entry)`` over its records; a closed account (every row's shares sum to 1) below 0 owes that
  deficit, split over the records of its last grid point by notional; else the clearance fee;
- each record's weighted flow ``-side x qty x share x weight x PT_HIT`` (USD; a long's
  liquidation sells), deficit and fee are added to its symbol's path point (record order).

Sums run in record order from 0.0, as ``np.bincount`` / ``np.maximum.at`` over the records do:
``tests/test_pricing.py`` checks the results equal, bit for bit, a NumPy transcription
(``tests/reference_pricing.py``). Per-symbol arrays come as ``numba.typed.List``s (one compiled
version for any symbol count).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest import records as R

PT_HIT = R.PT_HIT
PT_FAC = R.PT_FAC
CLOSED_SHARE = 1.0 - 1e-9  # a row whose exits' shares sum to at least this is closed


@njit(cache=True)
def _right(a, x):
    """``np.searchsorted(a, x, side="right")`` for sorted ``a``."""
    lo, hi = 0, len(a)
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def price_exits_nb(x_row, x_grid, x_share, grid_ts, row_offset, row_account, members, first, count,
                   coll, coll_series, coll_amount, coll_keep, px, side_l, qty_l, entry_l, weight_l, point_ts_l, pt_l,
                   rate, fill, usd, row_def, row_fee, pt, side, flow_l, fund_l, fee_l):
    """Fill every output (per record: ``fill``, ``usd``, ``row_def``, ``row_fee``, ``pt`` the
    symbol's path point, ``side``; per symbol ``k``: ``flow_l[k]``, ``fund_l[k]``, ``fee_l[k]``
    added to, per path point). ``coll`` (float64[A], USD, the settlement wallets) is overwritten
    for accounts whose collateral has a series (``coll_series[a] >= 0``: ``coll_amount[a] x
    px[series, t] x coll_keep[a]`` with ``t`` the account's last exit grid point). ``pt_l[k]``:
    the symbol's ``bar_pt`` as ``[points, PT_SIZE]``."""
    m = len(x_row)
    A = len(first)
    n_rows = len(row_account)
    t_acc = np.zeros(A, np.int64)
    row_sh = np.zeros(n_rows)
    upnl = np.zeros(A)
    tot = np.zeros(A)
    tot_last = np.zeros(A)
    has = np.zeros(A, np.bool_)
    rec_k = np.empty(m, np.int64)
    qty = np.empty(m)
    w = np.empty(m)
    hit = np.empty(m)
    entry = np.empty(m)
    for r in range(m):
        rec_k[r] = _right(row_offset, x_row[r]) - 1
    for k in range(len(side_l)):  # each symbol's arrays taken from its list once
        sk, qk, ek, wk, tk, pk = side_l[k], qty_l[k], entry_l[k], weight_l[k], point_ts_l[k], pt_l[k]
        for r in range(m):
            if rec_k[r] != k:
                continue
            loc = x_row[r] - row_offset[k]
            sd = sk[loc]
            i = _right(tk, grid_ts[x_grid[r]]) - 1
            if i < 0:
                i = 0
            h = pk[i, PT_HIT]
            f = pk[i, PT_FAC]
            against = (sd > 0 and f < 1.0) or (sd < 0 and f > 1.0)
            pt[r] = i
            side[r] = sd
            qty[r] = qk[loc] * x_share[r]
            entry[r] = ek[loc]
            w[r] = np.float64(wk[loc])
            hit[r] = h
            fill[r] = h * f if against else h
    for r in range(m):  # the account sums, in record order
        g = x_row[r]
        a = row_account[g]
        has[a] = True
        if x_grid[r] > t_acc[a]:
            t_acc[a] = x_grid[r]
        row_sh[g] += x_share[r]
        upnl[a] += side[r] * qty[r] * (fill[r] - entry[r])
        tot[a] += qty[r] * fill[r]
    deficit = np.zeros(A)
    fee = np.zeros(A)
    for a in range(A):
        if not has[a]:
            continue
        closed = True
        for j in range(first[a], first[a] + count[a]):
            if row_sh[members[j]] < CLOSED_SHARE:
                closed = False
                break
        c = coll[a]
        if coll_series[a] >= 0:
            c = coll_amount[a] * px[coll_series[a], t_acc[a]] * coll_keep[a]
        e = c + upnl[a]
        if closed:
            deficit[a] = -e if e < 0.0 else 0.0
            fee[a] = min(e, rate * tot[a]) if e > 0.0 else 0.0
        else:
            fee[a] = rate * tot[a]
    for r in range(m):
        a = row_account[x_row[r]]
        if x_grid[r] == t_acc[a]:
            tot_last[a] += qty[r] * fill[r]
    for r in range(m):
        a = row_account[x_row[r]]
        notional = qty[r] * fill[r]
        part = (notional / tot[a] if tot[a] > 0.0 else 0.0) * w[r]
        last_n = notional if x_grid[r] == t_acc[a] else 0.0
        row_def[r] = deficit[a] * (last_n / tot_last[a] if tot_last[a] > 0.0 else 0.0) * w[r]
        row_fee[r] = fee[a] * part
        usd[r] = notional * w[r]
    for k in range(len(flow_l)):  # per path point of each symbol, in record order
        fk, dk, ck = flow_l[k], fund_l[k], fee_l[k]
        for r in range(m):
            if rec_k[r] != k:
                continue
            i = pt[r]
            fk[i] += -side[r] * qty[r] * w[r] * hit[r]
            dk[i] += row_def[r]
            ck[i] += row_fee[r]
