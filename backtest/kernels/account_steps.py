"""The time-major account engine: every account advanced together, one grid point after another.

The account-major fast engine (:func:`backtest.kernels.accounts.run_accounts_nb`) runs each
account to its end before the next, so it needs the whole grid before it starts. A simulation in
which the accounts' liquidations move the prices (a co-simulation with the per-symbol kernels)
knows a grid point's prices only when it reaches it. This engine needs nothing beyond the point
it is at: :func:`step_point_nb` takes grid point ``t`` (``grid.px[:, t]`` written, later columns
unread) and evaluates only the accounts that point can liquidate; :func:`run_steps_nb` steps
over a whole grid, bit for bit the results of the reference (every live account at every grid
point; the same :func:`~backtest.kernels.accounts.state_nb`,
:func:`~backtest.kernels.accounts.threshold_nb` and
:func:`~backtest.kernels.accounts.liquidate_nb` at the points it visits).

Which accounts a point can liquidate (the bound of the account-major engine, per point instead of
per range): from an anchor (grid point ``t0``, cushion ``c = equity - thr x maintenance``), the
cushion at a later point falls by at most the sum over the account's exposures of their loss rate
``wc`` times their adverse move since ``t0`` (a long row ``qty`` per unit its price falls, a short
``qty x (1 + mmr)`` per unit it rises, a non-settlement collateral ``amount x (1 - haircut)`` per
unit it falls: :func:`~backtest.kernels.accounts._exposures`). The budget ``SAFETY x c`` is split
over the exposures by their notional at the anchor ``wc x wp`` times their series' move scale
``v`` (records.WAKE_EPOCH: a moving average of the series' absolute log moves per grid point,
frozen per epoch of grid points): exposure ``e`` may move adversely by the share ``kappa x v_e``
of its anchor price ``wp_e``, ``kappa = SAFETY x c / sum(wc x wp x v)``, so its level is
``wp x (1 - kappa v)`` (falls) or ``wp x (1 + kappa v)`` (rises); any split keeps the bound, this
one gives the series that moves the most the most room. While no exposure's price has reached its
level the account cannot be below its threshold. Levels sit in wake buckets (records.WakeIndex):
a series' move from one bucket to another wakes every live entry of the buckets it enters (a wake
before the level is reached costs one evaluation, never a missed liquidation); an evaluated
account that is not closed is anchored again at that point (its old entries go stale). An account
whose cushion is within :data:`~backtest.kernels.accounts.TINY` of its scale, or one of whose
levels lies in or past the bucket its price is in, is evaluated at the next grid point (hot); a
Hyperliquid cooldown's end (the threshold back to 1) is a point of its own (a FIFO: every
cooldown lasts as long).

Memory order: the state (records.AccountState, the reference's layout) holds the accounts by the
series, direction and bucket of their largest exposure's level at grid point 0
(:func:`_layout_key`, a counting sort), so that the accounts one price sweep wakes lie side by
side; a point's woken accounts are evaluated in slot order.

Cost (benchmarks/bench_accounts.py, 2026-12-04): memory-latency bound. The accounts a point wakes
are scattered over the state, the entry pool and the bucket heads, so an evaluation costs about
1 us at 5 M positions against about 0.1 us for the account-major engine, which reads each account
once, in order: several times slower over a known grid (README, Speed).

No account's evaluation reads another's state, so the order in which a point's accounts are
evaluated changes only the order of the exit records, which :func:`backtest.accounts.run_accounts`
sorts into one canonical order; the per-bar sums are integers (1e-4 USD).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest.kernels.accounts import (
    SAFETY,
    TINY,
    _exposures,
    _pack_account,
    _pack_row,
    account_state_nb,
    liquidate_nb,
    state_nb,
    threshold_nb,
)
from backtest.records import (
    AS_COOL,
    AS_CSER,
    AS_PHASE,
    WA_ANCHOR,
    WA_KAPPA,
    WA_STAMP,
    WA_VER,
    WAKE_DECAY,
    WAKE_EPOCH,
    WAKE_FALLS,
    WAKE_RISES,
    WAKE_VOL_FLOOR,
    WC_CHECKS,
    WC_COOL_HEAD,
    WC_COOL_TAIL,
    WC_HOT,
    WC_POOL,
    WC_REBUILDS,
)


@njit(cache=True, inline="always", _nrt=False)
def bucket_nb(wk, s, x):
    """Wake bucket of price ``x`` on series ``s`` (monotone in ``x``; the end buckets take
    everything beyond them, NaN the first)."""
    y = (np.log(x) - wk.base[s]) * wk.geom[0]
    if not y > 0.0:
        return 0
    top = wk.head.shape[2] - 1
    if y >= top:
        return top
    return np.int64(y)


@njit(cache=True, inline="always", _nrt=False)
def _push(wk, a, s, d, b):
    """A live entry of account ``a`` in bucket ``b`` of series ``s``, direction ``d``."""
    k = wk.counts[WC_POOL]
    wk.pool[k, 0] = wk.head[s, d, b]
    wk.pool[k, 1] = a
    wk.pool[k, 2] = np.int32(wk.arec[a, WA_VER])
    wk.head[s, d, b] = k
    wk.counts[WC_POOL] = k + 1


@njit(cache=True, _nrt=False)
def _levels(wk, t, kappa, n, check):
    """The wake levels of the ``n`` exposures in ``wk.ex_*`` (:func:`_exposures` of an account
    anchored at grid point ``t``) for budget factor ``kappa`` (module docstring: exposure ``e``
    may move adversely by ``kappa x`` its series' move scale): their series, directions and
    buckets into ``wk.lv``; returns their count, or -1 when ``check`` and one lies in or past its
    price's bucket (the account is hot)."""
    vol = wk.vol[t // WAKE_EPOCH]
    m = 0
    for j in range(n):
        s = wk.ex_ser[j]
        p = wk.ex_px[j]
        if wk.ex_falls[j] == 1:
            lvl = p * (1.0 - kappa * vol[s])
            if not lvl > 0.0:
                continue  # no fall of this price alone uses its share of the budget
            b = bucket_nb(wk, s, lvl)
            if check and b >= wk.cur[s]:
                return -1
            d = WAKE_FALLS
        else:
            b = bucket_nb(wk, s, p * (1.0 + kappa * vol[s]))
            if check and b <= wk.cur[s]:
                return -1
            d = WAKE_RISES
        wk.lv[m, 0] = s
        wk.lv[m, 1] = d
        wk.lv[m, 2] = b
        m += 1
    return m


@njit(cache=True, inline="always", _nrt=False)
def _account_exposures(wk, st, grid, a, t):
    """Account ``a``'s exposures at grid point ``t`` into ``wk.ex_*``
    (:func:`backtest.kernels.accounts._exposures`: series, loss rate, price, loses as it falls)."""
    return _exposures(st, grid, a, t, wk.ex_ser, wk.ex_rate, wk.ex_px, wk.ex_falls)


@njit(cache=True, inline="always", _nrt=False)
def _push_levels(wk, a, n):
    for k in range(n):
        _push(wk, a, wk.lv[k, 0], wk.lv[k, 1], wk.lv[k, 2])


@njit(cache=True, _nrt=False)
def _rebuild(wk, st, grid):
    """Empty the pool and push every anchored account's levels again (from its anchor: the same
    levels, the same buckets), in account order."""
    wk.head[:, :, :] = -1
    wk.counts[WC_POOL] = 0
    wk.counts[WC_REBUILDS] += 1
    for a in range(wk.arec.shape[0]):
        t0 = np.int64(wk.arec[a, WA_ANCHOR])
        if t0 >= 0:
            n = _account_exposures(wk, st, grid, a, t0)
            _push_levels(wk, a, _levels(wk, t0, wk.arec[a, WA_KAPPA], n, False))


@njit(cache=True, inline="always", _nrt=False)
def _drop(wk, a):
    """Account ``a``'s entries go stale (it is anchored again, hot or closed)."""
    wk.arec[a, WA_VER] += 1.0
    wk.arec[a, WA_ANCHOR] = -1.0


@njit(cache=True, inline="always", _nrt=False)
def _queue(wk, a, t, n):
    if wk.arec[a, WA_VER] >= 0.0 and wk.arec[a, WA_STAMP] != t:
        wk.arec[a, WA_STAMP] = t
        wk.todo[n] = a
        return n + 1
    return n


@njit(cache=True, _nrt=False)
def _hot(wk, a):
    k = wk.counts[WC_HOT]
    wk.hot[k] = a
    wk.counts[WC_HOT] = k + 1


@njit(cache=True, _nrt=False)
def _anchor(wk, st, grid, a, t, cushion, scale, coll):
    """Anchor account ``a`` (open, above its threshold) at grid point ``t``: its wake levels
    (module docstring), or hot when its cushion is too thin for them."""
    _drop(wk, a)
    cs = np.int64(st.acc[a, AS_CSER])
    if not (cushion > TINY * (scale + abs(coll))) or not (scale + coll if cs >= 0 else scale) > 0.0:
        _hot(wk, a)
        return
    n = _account_exposures(wk, st, grid, a, t)
    vol = wk.vol[t // WAKE_EPOCH]
    tot = 0.0  # sum over the exposures of loss rate x anchor price x the series' move scale
    for j in range(n):
        tot += wk.ex_rate[j] * wk.ex_px[j] * vol[wk.ex_ser[j]]
    kappa = SAFETY * cushion / tot
    m = _levels(wk, t, kappa, n, True) if kappa > 0.0 else -1
    if m < 0:
        _hot(wk, a)
        return
    if wk.counts[WC_POOL] + m > wk.pool.shape[0]:
        _rebuild(wk, st, grid)  # (it uses wk.ex_* and wk.lv: this account's again after it)
        m = _levels(wk, t, kappa, _account_exposures(wk, st, grid, a, t), False)
    wk.arec[a, WA_ANCHOR] = t
    wk.arec[a, WA_KAPPA] = kappa
    _push_levels(wk, a, m)


@njit(cache=True, _nrt=False)
def _wake(wk, s, d, b0, b1, t, n):
    """Wake the live entries of series ``s``, direction ``d``, buckets ``b0 .. b1``: queue their
    accounts (``todo`` from ``n`` on), empty the buckets."""
    for b in range(b0, b1 + 1):
        e = wk.head[s, d, b]
        if e < 0:
            continue
        while e >= 0:
            a = wk.pool[e, 1]
            if wk.pool[e, 2] == wk.arec[a, WA_VER]:
                n = _queue(wk, a, t, n)
            e = wk.pool[e, 0]
        wk.head[s, d, b] = -1
    return n


@njit(cache=True, _nrt=False)
def _evaluate(acc, rows, st, grid, rules, wk, a, t, bar_i, xs, nx, acc_grid, acc_deficit, loss):
    """Evaluate account ``a`` at ``t`` as the reference does; anchor it again if it stays open."""
    wk.counts[WC_CHECKS] += 1
    eq, mm, scale, coll = state_nb(acc, rows, st, grid, a, t)
    thr = threshold_nb(st, grid, rules, a, t)
    if eq < thr * mm:
        ga = wk.perm[a]  # the account's id (a is its slot)
        if acc_grid[ga] < 0:
            acc_grid[ga] = t
        phase0 = st.acc[a, AS_PHASE]
        nx, closed, acc_deficit[ga] = liquidate_nb(acc, rows, st, grid, rules, a, t, eq, mm, bar_i, xs, nx, loss)
        if closed:
            _drop(wk, a)
            wk.arec[a, WA_VER] = -1.0
            return nx
        if phase0 == 0 and st.acc[a, AS_COOL] > grid.ts[t]:
            # a Hyperliquid cooldown began: its end is a point of its own
            k = wk.counts[WC_COOL_TAIL]
            wk.cool_acc[k] = a
            wk.cool_ms[k] = np.int64(st.acc[a, AS_COOL])
            wk.counts[WC_COOL_TAIL] = k + 1
        eq, mm, scale, coll = state_nb(acc, rows, st, grid, a, t)
        thr = threshold_nb(st, grid, rules, a, t)
    _anchor(wk, st, grid, a, t, eq - thr * mm, scale, coll)
    return nx


@njit(cache=True, _nrt=False)
def _sort(x, n):
    """Heap sort of ``x[:n]`` in place (no allocation): a point's accounts are evaluated in
    memory order."""
    for start in range(n // 2 - 1, -1, -1):
        _sift(x, start, n)
    for end in range(n - 1, 0, -1):
        x[0], x[end] = x[end], x[0]
        _sift(x, 0, end)


@njit(cache=True, inline="always", _nrt=False)
def _sift(x, i, n):
    while True:
        c = 2 * i + 1
        if c >= n:
            return
        if c + 1 < n and x[c + 1] > x[c]:
            c += 1
        if x[c] <= x[i]:
            return
        x[i], x[c] = x[c], x[i]
        i = c


@njit(cache=True, _nrt=False)
def _layout_key(acc, rows, grid, wk, a):
    """Where account ``a`` goes in the engine's memory: by the series, direction and bucket of
    its largest exposure's level at grid point 0 (the accounts one price sweep wakes lie side by
    side; only the memory order depends on it, never a result)."""
    eq, mm, _scale, coll = account_state_nb(acc, rows, grid, a, 0)
    best = -1.0
    sb, db, pb = 0, WAKE_FALLS, 1.0
    tot = 0.0
    for i in range(acc.first[a], acc.first[a] + acc.count[a]):
        s = np.int64(rows.sym[i])
        p = grid.px[s, 0]
        x = rows.qty[i] * p if rows.side[i] > 0 else rows.qty[i] * (1.0 + rows.mmr[i]) * p
        tot += x
        if x > best:
            best, sb, db, pb = x, s, (WAKE_FALLS if rows.side[i] > 0 else WAKE_RISES), p
    cs = grid.coll_series[acc.coll_asset[a]]
    if cs >= 0:
        x = coll
        tot += x
        if x > best:
            best, sb, db, pb = x, cs, WAKE_FALLS, grid.px[cs, 0]
    rho = (eq - mm) / tot if tot > 0.0 else 0.0
    if not rho > 0.0:
        rho = 0.0
    b = bucket_nb(wk, sb, pb * (1.0 - rho) if db == WAKE_FALLS else pb * (1.0 + rho))
    return (sb * 2 + db) * wk.head.shape[2] + b


@njit(cache=True, _nrt=False)
def step_init_nb(acc, rows, grid, st, wk):
    """Pack the state (every row and account: records.AccountState, the reference's layout with
    the accounts in :func:`_layout_key` order: slot ``k`` holds account ``wk.perm[k]``) and an
    empty wake index centred on each series' grid point 0 price."""
    A = acc.first.shape[0]
    S = grid.px.shape[0]
    NB = wk.head.shape[2]
    for s in range(S):
        wk.base[s] = np.log(grid.px[s, 0]) - (wk.head.shape[2] // 2) / wk.geom[0]
    # a counting sort of the layout keys (wk.head as the counters, wk.todo holding the keys)
    wk.head[:, :, :] = 0
    for a in range(A):
        key = _layout_key(acc, rows, grid, wk, a)
        wk.todo[a] = key
        b = key % NB
        sd = key // NB
        wk.head[sd // 2, sd % 2, b] += 1
    pos = 0
    for s in range(S):
        for d in range(2):
            for b in range(NB):
                c = wk.head[s, d, b]
                wk.head[s, d, b] = pos
                pos += c
    for a in range(A):
        key = wk.todo[a]
        b = key % NB
        sd = key // NB
        k = wk.head[sd // 2, sd % 2, b]
        wk.head[sd // 2, sd % 2, b] = k + 1
        wk.perm[k] = a
    r = 0
    for k in range(A):
        a = wk.perm[k]
        f = acc.first[a]
        for j in range(acc.count[a]):
            _pack_row(rows, st, r + j, f + j)
        _pack_account(acc, grid, st, k, a, r)
        r += acc.count[a]
    wk.head[:, :, :] = -1
    wk.counts[:] = 0
    for a in range(A):
        wk.arec[a, WA_STAMP] = -1.0
        wk.arec[a, WA_VER] = 0.0
        wk.arec[a, WA_ANCHOR] = -1.0
        wk.arec[a, WA_KAPPA] = 0.0


@njit(cache=True, _nrt=False)
def step_point_nb(acc, rows, grid, rules, st, wk, t, bar_i, xs, nx, acc_grid, acc_deficit, loss):
    """Advance every account to grid point ``t`` (after ``step_init_nb`` and every point before
    ``t``, in order): evaluate the accounts the point can liquidate (module docstring) and write
    their exits as the reference would at ``t``. Reads ``grid.px[:, t]`` and earlier columns
    only. Returns the record count."""
    n = 0
    if t == 0:
        for s in range(grid.px.shape[0]):
            wk.cur[s] = bucket_nb(wk, s, grid.px[s, 0])
            wk.last_log[s] = np.log(grid.px[s, 0])
            wk.ewma[s] = WAKE_VOL_FLOOR
            wk.vol[0, s] = WAKE_VOL_FLOOR
        for a in range(acc.first.shape[0]):
            n = _queue(wk, a, t, n)
    else:
        nh = wk.counts[WC_HOT]
        wk.counts[WC_HOT] = 0
        for k in range(nh):
            n = _queue(wk, wk.hot[k], t, n)
        ts = grid.ts[t]
        k = wk.counts[WC_COOL_HEAD]
        while k < wk.counts[WC_COOL_TAIL] and wk.cool_ms[k] <= ts:
            n = _queue(wk, wk.cool_acc[k], t, n)
            k += 1
        wk.counts[WC_COOL_HEAD] = k
        new_epoch = t % WAKE_EPOCH == 0
        for s in range(grid.px.shape[0]):
            lp = np.log(grid.px[s, t])
            r = abs(lp - wk.last_log[s])
            wk.last_log[s] = lp
            if r == r:
                wk.ewma[s] = WAKE_DECAY * wk.ewma[s] + (1.0 - WAKE_DECAY) * r
            if new_epoch:
                wk.vol[t // WAKE_EPOCH, s] = max(wk.ewma[s], WAKE_VOL_FLOOR)
            b = bucket_nb(wk, s, grid.px[s, t])
            c = wk.cur[s]
            if b < c:
                n = _wake(wk, s, WAKE_FALLS, b, c - 1, t, n)
            elif b > c:
                n = _wake(wk, s, WAKE_RISES, c + 1, b, t, n)
            wk.cur[s] = b
    if n > 1 and t > 0:
        _sort(wk.todo, n)
    for k in range(n):
        nx = _evaluate(acc, rows, st, grid, rules, wk, wk.todo[k], t, bar_i, xs, nx, acc_grid, acc_deficit, loss)
    return nx


@njit(cache=True, _nrt=False)
def run_steps_nb(acc, rows, grid, rules, st, wk, xs, acc_grid, acc_deficit, bar_i, loss):
    """Every account of ``acc`` over the whole of ``grid``, point by point (the outputs of
    :func:`backtest.kernels.accounts.run_accounts_nb`); returns ``(n_records, checks)``."""
    A = acc.first.shape[0]
    T = grid.ts.shape[0]
    bar_i[:, :, :] = 0
    for a in range(A):
        acc_grid[a] = -1
        acc_deficit[a] = 0.0
    nx = 0
    if T == 0:
        return nx, 0
    step_init_nb(acc, rows, grid, st, wk)
    for t in range(T):
        nx = step_point_nb(acc, rows, grid, rules, st, wk, t, bar_i, xs, nx, acc_grid, acc_deficit, loss)
    return nx, wk.counts[WC_CHECKS]
