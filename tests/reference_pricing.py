"""A NumPy transcription of backtest.contagion.engine_flows (the code it ran before the numba
pass of backtest.kernels.pricing): the slow, obviously-correct reference tests/test_pricing.py
compares it with, bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np

from backtest import records as R
from backtest.contagion import Pricing


def engine_flows_reference(run: Any, pops: dict[str, Any], bar_pt: dict[str, np.ndarray], point_ts: dict[str, np.ndarray],
                           clearance_rate: float) -> Pricing:
    """What backtest.contagion.engine_flows returns, computed array by array."""
    out, acc, sub = run.out, run.acc, run.sub
    syms = run.symbols
    g = out.x_row
    m = len(g)
    sidx = (np.searchsorted(acc.row_offset, g, side="right") - 1).astype(np.int64)
    share = getattr(out, "x_share", None)
    side = np.empty(m, np.int8)
    qty = np.empty(m)
    entry = np.empty(m)
    w = np.empty(m)
    hit = np.empty(m)
    fac = np.empty(m)
    pt = np.empty(m, np.int64)
    ext = {}
    for k, s in enumerate(syms):
        sel = sidx == k
        loc = g[sel] - acc.row_offset[k]
        a = pops[s].arrays
        side[sel] = a["side"][loc]
        qty[sel] = a["qty"][loc]
        entry[sel] = a["entry"][loc]
        w[sel] = a["weight"][loc].astype(np.float64)
        i = np.maximum(np.searchsorted(point_ts[s], run.grid_ts[out.x_grid[sel]], side="right") - 1, 0)
        flat = bar_pt[s].reshape(-1, R.PT_SIZE)
        hit[sel] = flat[i, R.PT_HIT]
        fac[sel] = flat[i, R.PT_FAC]
        pt[sel] = i
    if share is not None:
        qty = qty * np.asarray(share, np.float64)
    against = ((side > 0) & (fac < 1.0)) | ((side < 0) & (fac > 1.0))
    fill = np.where(against, hit * fac, hit)
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
    code = sub.coll_asset
    coll = sub.wallet_usd.copy()
    if A and run.grid is not None:
        cs = run.grid.coll_series[code]
        other = cs >= 0
        if other.any():
            coll[other] = (sub.coll_amount[other] * run.grid.px[cs[other], t_acc[other]] * (1.0 - run.grid.haircut[code[other]]))
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
        sel = sidx == k
        ps = pt[sel]
        # per path point, in record order (np.bincount adds as np.add.at into zeros does)
        f, d, c = (np.bincount(ps, weights=x[sel], minlength=nb * R.PATH_POINTS) for x in (flow, row_def, row_fee))
        ext[s] = (f.reshape(nb, R.PATH_POINTS), d.reshape(nb, R.PATH_POINTS), c.reshape(nb, R.PATH_POINTS))
    return Pricing(fill, usd, row_def, row_fee, pt // R.PATH_POINTS, side, ext)
