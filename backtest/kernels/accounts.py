"""The cross-account engine: one pass over all of an event's symbols on a common time grid.

An account (:class:`backtest.records.Accounts`) holds cross positions on one or more symbols and
one collateral pool. At a grid point ``t`` its

- equity = collateral value + sum of the unrealised PnL of its positions, each at its own
  symbol's price at ``t`` (:func:`backtest.margin.position_upnl_nb`); the collateral value is the
  wallet (USD) for the settlement coin, ``amount x price x (1 - haircut)`` for another asset;
- maintenance = sum of its positions' maintenance margins at their marks, each with its row's tier
  (:func:`backtest.margin.position_maint_margin_nb`).

It is liquidated at the first grid point where equity < maintenance, by its venue's procedure
(:func:`liquidate_nb`, the one helper of both modes; the venue is its first row's ``venue``; every
fill at that grid point's price of the row's symbol: the first price past the trigger, after a gap
not the trigger level; a partial close realises its PnL into the equity, which it leaves unchanged,
and lowers the maintenance margin):

- Binance, Gate (and any venue with ``LiqRules.partial`` off): every position of the account at once;
- Bybit: while equity < maintenance, the open position with the largest maintenance margin among
  those above their first tier goes one tier down: its notional is cut to the lower tier's cap
  (an exit) or, already below it, only its tier is lowered; the account is re-checked at the same
  grid point after each step; when no position can be lowered, what is left goes at once;
- OKX: the same with two tiers per step for positions at the third tier or above; if equity is
  below the maintenance margin at every position's first-tier rate, the account goes at once;
- Hyperliquid: at the first trigger, positions above ``hl_partial_usd`` lose ``hl_partial_share``
  of their size, the others go whole; a cooldown of ``hl_cooldown_ms`` follows, during which only
  equity < ``hl_backstop`` x maintenance (the backstop) liquidates - then everything left at once;
  after the cooldown the next trigger takes everything left.

A partly liquidated account stays open and is checked at later grid points as any other. Each
exit carries its share of the row's quantity (``x_share``). The loss beyond the account's equity at
its final close is its deficit (reported per bar, split over the rows closed then by notional; the
simulation charges the deficits priced at the kernels' path points to the fund: backtest.contagion.engine_flows). Sources of each rule and what is simplified: :mod:`backtest.accounts`.

Two implementations that agree bit for bit (they call the same :func:`state_nb` - the sums of
:func:`account_state_nb` on the packed state, records.AccountState - and the same
:func:`liquidate_nb` at the grid points they visit, and the fast one evaluates every point at
which the reference could find a liquidation):

- reference (``reference=True``): every live account checked at every grid point;
- fast: within one engine run an account's path depends only on its own rows and the grid (no
  account's liquidation feeds back into another's prices: that coupling is the fixed point of
  backtest.simulate), so the kernel runs each account to its end before the next, in memory
  order, its state in a one-account scratch (records.AccountState; the rows' and accounts'
  arrays are read once, in order). From a grid point ``t`` with cushion ``c = equity - thr x
  maintenance`` (``thr`` 1, or ``hl_backstop`` during a Hyperliquid cooldown), the cushion at a
  later point falls by at most the sum over the account's exposures of their loss rate times
  their adverse move since ``t``: a long row ``qty`` per unit its price falls (its maintenance
  margin falls too, or stays at 0), a short ``qty x (1 + mmr)`` per unit it rises (the
  maintenance margin, ``qty x price x mmr - cum`` floored at 0, rises at most at that rate), a
  non-settlement collateral ``amount x (1 - haircut)`` per unit it falls (the settlement coin's
  value does not move), the PnL a partial close realised not at all. A range of grid points in
  which every exposure's furthest adverse move (the range's max / min of its series) keeps that
  bound within :data:`SAFETY` x ``c`` (floating rounding) cannot hold a liquidation
  (:func:`next_liquidation_nb`): the tables of records.GridPaths answer "never" from the suffix
  bound in one look, give the first block whose prefix bound fails from grid point 0 by a binary
  search, skip the longest run of fitting blocks by an exponential search and binary lifting
  over a sparse table, and walk the sub-blocks of a block that does not fit; the points of a
  sub-block that does not fit are evaluated exactly (the reference's :func:`state_nb` and
  :func:`threshold_nb`: the same sums, the same bits), and its last point becomes the new
  anchor. Accounts whose cushion is within :data:`TINY` of their scale are evaluated at the next
  grid point; the cooldown's end (the threshold back to 1) is a point of its own.

The kernels are compiled without numba's runtime (``_nrt=False``: no array is allocated inside,
the caller passes scratch, records.AccountWork): its atomic reference counts of the arrays
passed between the helpers took about 60 % of the fast kernel's time (perf, 2026-12-02).

Contagion (each exit, on the account's state before the procedure step that makes it): the account is re-evaluated at the same grid point with every
series other than the row's own symbol held at its window-start value (grid point 0): if that
account would not be liquidated, the row's liquidation is contagion (caused by another symbol's or
the collateral's move), else own-market. The source of an account's liquidation is the series whose
loss contributed most to its equity drop since grid point 0 (a symbol index, or SOURCE_COLLATERAL).

USD sums are kept in integers (1e-4 USD) so both modes give bit-identical per-bar outputs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest.kernels.units import usd_units_nb
from backtest.margin import position_maint_margin_nb, position_upnl_nb
from backtest.records import (
    AB_CONTAGION,
    AB_CONTAGION_ROWS,
    AB_DEFICIT,
    AB_LONG_W,
    AB_LONG_LIQ,
    AB_LONG_ROWS,
    AB_OWN,
    AB_SHORT_LIQ,
    AB_SHORT_ROWS,
    AB_SHORT_W,
    AB_SIZE,
    AS_COOL,
    AS_COUNT,
    AS_CSER,
    AS_CVAL,
    AS_FIRST,
    AS_HC,
    AS_PHASE,
    AS_REAL,
    RS_CUM,
    RS_ENTRY,
    RS_MMR,
    RS_QTY,
    RS_SIDE,
    RS_SLOT,
    RS_SYM,
    RS_TIER,
    SOURCE_COLLATERAL,
    VENUE_BYBIT,
    VENUE_HYPERLIQUID,
    VENUE_OKX,
)

#: the fast kernel skips a range only while its loss bound stays within this share of the cushion
#: (floating-point rounding margin)
SAFETY = 0.99
#: cushions below this share of the account's scale (collateral + notional) are re-checked at the
#: next grid point (no skipping: rounding could matter there)
TINY = 1e-9


@njit(cache=True, inline="always", _nrt=False)
def collateral_value_nb(acc, grid, a, t):
    """Collateral value of account ``a`` at grid point ``t``, USD (after haircut)."""
    code = acc.coll_asset[a]
    s = grid.coll_series[code]
    if s < 0:
        return acc.wallet_usd[a]
    return acc.coll_amount[a] * grid.px[s, t] * (1.0 - grid.haircut[code])


@njit(cache=True, inline="always", _nrt=False)
def account_state_nb(acc, rows, grid, a, t):
    """``(equity, maintenance, sum notional x (1 + mmr), collateral value)`` of account ``a`` at
    grid point ``t`` with its rows as given (no partial close yet; USD, one real account: rows
    unweighted), summed in member order."""
    coll = collateral_value_nb(acc, grid, a, t)
    eq = coll
    mm = 0.0
    scale = 0.0
    f = acc.first[a]
    for i in range(f, f + acc.count[a]):
        p = grid.px[rows.sym[i], t]
        eq += position_upnl_nb(rows.side[i], rows.qty[i], rows.entry[i], p)
        mm += position_maint_margin_nb(rows.qty[i], p, rows.mmr[i], rows.cum[i])
        # how fast the cushion can fall per unit of relative adverse move (see the module docstring)
        scale += rows.qty[i] * p * (1.0 + rows.mmr[i]) if rows.side[i] < 0 else rows.qty[i] * p
    return eq, mm, scale, coll


@njit(cache=True, inline="always", _nrt=False)
def _coll_nb(st, grid, a, t):
    """:func:`collateral_value_nb` from the packed state (the same product, the same bits)."""
    cs = np.int64(st.acc[a, AS_CSER])
    if cs < 0:
        return st.acc[a, AS_CVAL]
    return st.acc[a, AS_CVAL] * grid.px[cs, t] * st.acc[a, AS_HC]


@njit(cache=True, inline="always", _nrt=False)
def _sums_nb(acc, rows, st, grid, a, t, own):
    """``(equity, maintenance, scale, collateral value)`` of account ``a`` on its open rows:
    ``own < 0`` every series at ``t``; else symbol ``own`` at ``t`` and every other series (the
    collateral too) at grid point 0. Summed in member order."""
    coll = _coll_nb(st, grid, a, t if own < 0 else 0)
    eq = coll + st.acc[a, AS_REAL]
    mm = 0.0
    scale = 0.0
    f = np.int64(st.acc[a, AS_FIRST])
    for i in range(f, f + np.int64(st.acc[a, AS_COUNT])):
        q = st.row[i, RS_QTY]
        if q <= 0.0:
            continue
        si = np.int64(st.row[i, RS_SYM])
        p = grid.px[si, t] if own < 0 or si == own else grid.px[si, 0]
        eq += position_upnl_nb(st.row[i, RS_SIDE], q, st.row[i, RS_ENTRY], p)
        mm += position_maint_margin_nb(q, p, st.row[i, RS_MMR], st.row[i, RS_CUM])
        # how fast the cushion can fall per unit of relative adverse move (see the module docstring)
        scale += q * p * (1.0 + st.row[i, RS_MMR]) if st.row[i, RS_SIDE] < 0 else q * p
    return eq, mm, scale, coll


@njit(cache=True, inline="always", _nrt=False)
def state_nb(acc, rows, st, grid, a, t):
    """:func:`account_state_nb` with the engine's state ``st`` (records.AccountState): the rows'
    open quantities and current tiers, plus the PnL the account's partial closes realised. With
    no partial close the sums are those of :func:`account_state_nb` bit for bit."""
    return _sums_nb(acc, rows, st, grid, a, t, -1)


@njit(cache=True, inline="always", _nrt=False)
def threshold_nb(st, grid, rules, a, t):
    """Share of the maintenance margin below which account ``a`` is liquidated at ``t``: 1, or
    Hyperliquid's backstop share during the cooldown after a partial liquidation."""
    if st.acc[a, AS_PHASE] == 1 and grid.ts[t] < st.acc[a, AS_COOL]:
        return rules.hl_backstop
    return 1.0


@njit(cache=True, _nrt=False)
def _own_market_state(acc, rows, st, grid, a, t, own):
    """Equity and maintenance of account ``a`` at ``t`` with every series but symbol ``own`` at
    its grid point 0 value (the counterfactual of the contagion definition; open quantities and
    realised PnL as they stand)."""
    eq, mm, _scale, _coll = _sums_nb(acc, rows, st, grid, a, t, own)
    return eq, mm


@njit(cache=True, _nrt=False)
def _source(acc, rows, st, grid, a, t, loss):
    """Series whose loss since grid point 0 contributed most to account ``a``'s equity drop at
    ``t``: a symbol index, or SOURCE_COLLATERAL (``loss``: scratch, one slot per symbol)."""
    ns = grid.n_symbols
    for s in range(ns):
        loss[s] = 0.0
    f = np.int64(st.acc[a, AS_FIRST])
    for i in range(f, f + np.int64(st.acc[a, AS_COUNT])):
        si = np.int64(st.row[i, RS_SYM])
        loss[si] += st.row[i, RS_SIDE] * st.row[i, RS_QTY] * (grid.px[si, 0] - grid.px[si, t])
    best = -1
    best_loss = -np.inf
    for s in range(ns):
        if loss[s] > best_loss:
            best_loss = loss[s]
            best = s
    cs = np.int64(st.acc[a, AS_CSER])
    if cs >= 0:
        cl = st.acc[a, AS_CVAL] * (grid.px[cs, 0] - grid.px[cs, t]) * st.acc[a, AS_HC]
        if cl > best_loss:
            best = SOURCE_COLLATERAL
    return best


@njit(cache=True, _nrt=False)
def _mark(acc, rows, st, grid, a, t, xs, nx, loss):
    """Contagion flag and source of every open row of account ``a`` at ``t``, on the state before
    the step's exits (written into the next record slots, member order, for :func:`_exit`)."""
    x_cont, x_src = xs[3], xs[4]
    src = _source(acc, rows, st, grid, a, t, loss)
    j = nx
    f = np.int64(st.acc[a, AS_FIRST])
    for i in range(f, f + np.int64(st.acc[a, AS_COUNT])):
        if st.row[i, RS_QTY] <= 0.0:
            continue
        eq_own, mm_own = _own_market_state(acc, rows, st, grid, a, t, np.int64(st.row[i, RS_SYM]))
        x_cont[j] = 0 if eq_own < mm_own else 1
        x_src[j] = src
        j += 1


@njit(cache=True, _nrt=False)
def _exit(acc, rows, st, grid, a, t, i, q, deficit_usd, bar_i, xs, nx, loss):
    """Close quantity ``q`` of member ``i`` (account ``a``) at grid point ``t``'s price: one exit
    record (its contagion flag and source already in slot ``nx``: :func:`_mark`), the per-bar sums
    (notional by share), the realised PnL; ``deficit_usd`` (one real account) is this exit's part
    of the account's deficit. Returns the record count."""
    x_row, x_grid, x_fill, x_cont, x_src, x_share = xs
    s = np.int64(st.row[i, RS_SYM])
    g = np.int64(st.row[i, RS_SLOT])  # the row's entry in AccountRows / Accounts.members
    p = grid.px[s, t]
    cont = x_cont[nx] == 1
    w = np.float64(rows.weight[g])
    q_open = st.row[i, RS_QTY]
    whole = not q < q_open
    if whole:
        q = q_open
    share = q / rows.qty[g]
    usd = q * w * p
    b = grid.bar[s, t]
    if st.row[i, RS_SIDE] > 0:
        bar_i[s, b, AB_LONG_LIQ] += usd_units_nb(usd)
        bar_i[s, b, AB_LONG_ROWS] += 1
        bar_i[s, b, AB_LONG_W] += usd_units_nb(w * share)
    else:
        bar_i[s, b, AB_SHORT_LIQ] += usd_units_nb(usd)
        bar_i[s, b, AB_SHORT_ROWS] += 1
        bar_i[s, b, AB_SHORT_W] += usd_units_nb(w * share)
    if deficit_usd > 0.0:
        bar_i[s, b, AB_DEFICIT] += usd_units_nb(deficit_usd * w)
    if cont:
        bar_i[s, b, AB_CONTAGION] += usd_units_nb(usd)
        bar_i[s, b, AB_CONTAGION_ROWS] += 1
    else:
        bar_i[s, b, AB_OWN] += usd_units_nb(usd)
    x_row[nx] = acc.members[g]
    x_grid[nx] = t
    x_fill[nx] = p
    x_share[nx] = share
    st.acc[a, AS_REAL] += position_upnl_nb(st.row[i, RS_SIDE], q, st.row[i, RS_ENTRY], p)
    st.row[i, RS_QTY] = 0.0 if whole else q_open - q
    return nx + 1


@njit(cache=True, _nrt=False)
def _close_all(acc, rows, st, grid, a, t, eq, bar_i, xs, nx, loss):
    """Close every open position of account ``a`` at ``t`` (equity ``eq``); returns
    ``(records, deficit)``: the loss beyond the equity, split over the rows by notional."""
    f = np.int64(st.acc[a, AS_FIRST])
    c = np.int64(st.acc[a, AS_COUNT])
    deficit = -eq if eq < 0.0 else 0.0
    _mark(acc, rows, st, grid, a, t, xs, nx, loss)
    tot = 0.0
    for i in range(f, f + c):
        if st.row[i, RS_QTY] > 0.0:
            tot += st.row[i, RS_QTY] * grid.px[np.int64(st.row[i, RS_SYM]), t]
    for i in range(f, f + c):
        q = st.row[i, RS_QTY]
        if q <= 0.0:
            continue
        part = deficit * (q * grid.px[np.int64(st.row[i, RS_SYM]), t] / tot) if deficit > 0.0 and tot > 0.0 else 0.0
        nx = _exit(acc, rows, st, grid, a, t, i, q, part, bar_i, xs, nx, loss)
        st.row[i, RS_QTY] = 0.0
    return nx, deficit


@njit(cache=True, _nrt=False)
def _lower_tier(acc, rows, st, grid, rules, a, t, steps, min_tier, bar_i, xs, nx, loss):
    """Bybit / OKX step: among the account's open positions at tier >= ``min_tier`` whose tier
    ``steps`` lower is known, take the one with the largest maintenance margin (ties: the first
    member), move it ``steps`` tiers down and cut its notional to that tier's cap (the floor of
    the tier above it) if it is above (an exit), else only lower the tier (no exit). Returns
    ``(records, done)``; ``done`` False when no position could be lowered."""
    f = np.int64(st.acc[a, AS_FIRST])
    best = -1
    best_mm = -1.0
    for i in range(f, f + np.int64(st.acc[a, AS_COUNT])):
        q = st.row[i, RS_QTY]
        k = np.int64(st.row[i, RS_TIER])
        if q <= 0.0 or k < min_tier or k - steps < 0:
            continue
        s = np.int64(st.row[i, RS_SYM])
        j = k - steps
        if j + 1 >= rules.tier_floor.shape[1]:
            continue
        if np.isnan(rules.tier_floor[s, j + 1]) or np.isnan(rules.tier_mmr[s, j]) or np.isnan(rules.tier_cum[s, j]):
            continue
        m = position_maint_margin_nb(q, grid.px[s, t], st.row[i, RS_MMR], st.row[i, RS_CUM])
        if m > best_mm:
            best_mm = m
            best = i
    if best < 0:
        return nx, False
    i = best
    s = np.int64(st.row[i, RS_SYM])
    j = np.int64(st.row[i, RS_TIER]) - steps
    p = grid.px[s, t]
    cap = rules.tier_floor[s, j + 1]
    if st.row[i, RS_QTY] * p > cap:
        q_new = cap / p
        # the flags of the account's open rows before the cut: row i's sits at its member rank
        _mark(acc, rows, st, grid, a, t, xs, nx, loss)
        r = 0
        for k in range(np.int64(st.acc[a, AS_FIRST]), i):
            if st.row[k, RS_QTY] > 0.0:
                r += 1
        xs[3][nx] = xs[3][nx + r]
        xs[4][nx] = xs[4][nx + r]
        nx = _exit(acc, rows, st, grid, a, t, i, st.row[i, RS_QTY] - q_new, 0.0, bar_i, xs, nx, loss)
    st.row[i, RS_TIER] = j
    st.row[i, RS_MMR] = rules.tier_mmr[s, j]
    st.row[i, RS_CUM] = rules.tier_cum[s, j]
    return nx, True


@njit(cache=True, _nrt=False)
def _tier0_maintenance(acc, rows, st, grid, rules, a, t):
    """The account's maintenance margin with every open position at its symbol's first tier
    (OKX: below it, the account is liquidated whole); NaN when a first tier is unknown."""
    mm = 0.0
    f = np.int64(st.acc[a, AS_FIRST])
    for i in range(f, f + np.int64(st.acc[a, AS_COUNT])):
        q = st.row[i, RS_QTY]
        if q <= 0.0:
            continue
        s = np.int64(st.row[i, RS_SYM])
        if rules.tier_mmr.shape[1] == 0 or np.isnan(rules.tier_mmr[s, 0]):
            return np.nan
        mm += position_maint_margin_nb(q, grid.px[s, t], rules.tier_mmr[s, 0], rules.tier_cum[s, 0])
    return mm


@njit(cache=True, _nrt=False)
def liquidate_nb(acc, rows, st, grid, rules, a, t, eq, mm, bar_i, xs, nx, loss):
    """Account ``a`` is below its threshold at ``t`` (equity ``eq``, maintenance ``mm``): run its
    venue's procedure (module docstring), re-checking the account at ``t`` after each partial
    step. The one helper of both modes. Returns ``(records, closed, deficit)``: ``closed`` when
    no position is left open."""
    venue = rows.venue[np.int64(st.row[np.int64(st.acc[a, AS_FIRST]), RS_SLOT])]
    if rules.partial and venue == VENUE_HYPERLIQUID and st.acc[a, AS_PHASE] == 0:
        st.acc[a, AS_PHASE] = 1
        st.acc[a, AS_COOL] = grid.ts[t] + rules.hl_cooldown_ms
        any_left = False
        _mark(acc, rows, st, grid, a, t, xs, nx, loss)
        f = np.int64(st.acc[a, AS_FIRST])
        for i in range(f, f + np.int64(st.acc[a, AS_COUNT])):
            q = st.row[i, RS_QTY]
            if q <= 0.0:
                continue
            if q * grid.px[np.int64(st.row[i, RS_SYM]), t] > rules.hl_partial_usd:
                nx = _exit(acc, rows, st, grid, a, t, i, q * rules.hl_partial_share, 0.0, bar_i, xs, nx, loss)
                any_left = True
            else:
                nx = _exit(acc, rows, st, grid, a, t, i, q, 0.0, bar_i, xs, nx, loss)
        if not any_left:
            return nx, True, 0.0
        eq, mm, _s, _c = state_nb(acc, rows, st, grid, a, t)
        if not eq < rules.hl_backstop * mm:
            return nx, False, 0.0
        # backstop: the liquidator vault takes over every remaining cross position
    elif rules.partial and (venue == VENUE_BYBIT or venue == VENUE_OKX):
        steps = 1 if venue == VENUE_BYBIT else 2
        min_tier = 1 if venue == VENUE_BYBIT else 2
        while eq < mm:
            if venue == VENUE_OKX:
                mm0 = _tier0_maintenance(acc, rows, st, grid, rules, a, t)
                if not eq >= mm0:
                    break
            nx, done = _lower_tier(acc, rows, st, grid, rules, a, t, steps, min_tier, bar_i, xs, nx, loss)
            if not done:
                break
            eq, mm, _s, _c = state_nb(acc, rows, st, grid, a, t)
        if not eq < mm:
            st.acc[a, AS_PHASE] = 1
            return nx, False, 0.0
    nx, deficit = _close_all(acc, rows, st, grid, a, t, eq, bar_i, xs, nx, loss)
    return nx, True, deficit


@njit(cache=True, inline="always", _nrt=False)
def _range_loss(grid, kind, b, l, n, ws, wc, wp, wk):
    """Upper bound (USD) of the cushion an account loses anywhere in a range of blocks: over its
    ``n`` exposures (series ``ws``, loss rate ``wc`` per unit of adverse price move, price ``wp``
    at the anchor, ``wk`` 1 when it loses as the price falls - the table's min - 0 as it rises -
    the max), the rate times the furthest adverse move of the series in the range. ``kind`` 0:
    blocks ``[b, b + 2**l)`` (the sparse table ``blk``); 1: blocks ``b`` to the end (``suf``);
    2: sub-block ``b`` (``fine``); 3: blocks 0 to ``b`` (``pre``)."""
    tot = 0.0
    for j in range(n):
        k = wk[j]
        if kind == 0:
            x = grid.blk[b, l, k, ws[j]]
        elif kind == 1:
            x = grid.suf[b, k, ws[j]]
        elif kind == 2:
            x = grid.fine[b, k, ws[j]]
        else:
            x = grid.pre[b, k, ws[j]]
        d = (wp[j] - x) if k == 1 else (x - wp[j])
        tot += wc[j] * (d if d > 0.0 else 0.0)
    return tot


@njit(cache=True, _nrt=False)
def _exposures(st, grid, a, t, ws, wc, wp, wk):
    """Fill the loss rates of account ``a``'s exposures at grid point ``t`` (module docstring):
    a long row loses ``qty`` per unit its price falls (its maintenance margin falls too, or
    stays at 0), a short ``qty x (1 + mmr)`` per unit it rises, a non-settlement collateral
    ``amount x (1 - haircut)`` per unit it falls. Returns their count."""
    n = 0
    f = np.int64(st.acc[a, AS_FIRST])
    for i in range(f, f + np.int64(st.acc[a, AS_COUNT])):
        q = st.row[i, RS_QTY]
        if q <= 0.0:
            continue
        s = np.int64(st.row[i, RS_SYM])
        ws[n] = s
        wp[n] = grid.px[s, t]
        if st.row[i, RS_SIDE] > 0:
            wk[n] = 1
            wc[n] = q
        else:
            wk[n] = 0
            wc[n] = q * (1.0 + st.row[i, RS_MMR])
        n += 1
    cs = np.int64(st.acc[a, AS_CSER])
    if cs >= 0:
        ws[n] = cs
        wp[n] = grid.px[cs, t]
        wk[n] = 1
        wc[n] = st.acc[a, AS_CVAL] * st.acc[a, AS_HC]
        n += 1
    return n


@njit(cache=True, _nrt=False)
def next_liquidation_nb(acc, rows, st, grid, rules, a, t, cushion, scale, coll, ws, wc, wp, wk):
    """``(grid index, checks)``: the first grid point after ``t`` at which account ``a``
    (cushion ``cushion`` >= 0 at ``t``, the account as it stands) is below its threshold, ``T``
    if none - or the end of a Hyperliquid cooldown (the threshold changes there), or the point
    after the last one evaluated when the cushion there is too thin for the bound (:data:`TINY`).
    ``checks``: the grid points whose state it evaluated and found above the threshold.

    Blocks of ``grid.block`` points whose loss bound (:func:`_range_loss`: every exposure at its
    furthest adverse move in the range, from its price at the anchor) stays within
    :data:`SAFETY` x the anchor's cushion cannot hold a liquidation and are skipped: the suffix
    bound answers "never" in one look, an exponential search and binary lifting over the sparse
    table skip the longest run of blocks whose joint bound fits, and a block whose own bound does
    not fit is scanned point by point with the exact state (the reference's :func:`state_nb` and
    :func:`threshold_nb`); the search then goes on from that block's last point, the new anchor."""
    T = grid.ts.shape[0]
    lim = T
    # a cooldown's end raises the threshold back to the maintenance margin: evaluate there at the latest
    if st.acc[a, AS_PHASE] == 1 and grid.ts[t] < st.acc[a, AS_COOL]:
        lim = np.searchsorted(grid.ts, np.int64(st.acc[a, AS_COOL]))
    cs = np.int64(st.acc[a, AS_CSER])
    B = grid.block
    NB = grid.blk.shape[0]
    checks = 0
    F = grid.fine_block
    while True:  # one anchor per pass
        pos = t + 1
        if pos >= lim:
            return lim, checks
        # the settlement coin's value does not move: only another asset's collateral joins the scale
        if not (cushion > TINY * (scale + abs(coll))) or not (scale + coll if cs >= 0 else scale) > 0.0:
            return pos, checks
        n = _exposures(st, grid, a, t, ws, wc, wp, wk)
        budget = SAFETY * cushion
        b = pos // B
        if t == 0:
            # from grid point 0 the prefix bounds are monotone in the block: a binary search over
            # them (a table of one value per block and series: cache-resident) finds the first
            # block whose prefix bound does not fit; every block before it fits
            if not _range_loss(grid, 3, NB - 1, 0, n, ws, wc, wp, wk) > budget:
                return lim, checks
            lo, hi = 0, NB - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if _range_loss(grid, 3, mid, 0, n, ws, wc, wp, wk) > budget:
                    hi = mid
                else:
                    lo = mid + 1
            b = lo
        anchored = False
        while not anchored:
            if b >= NB or b * B >= lim:
                return lim, checks
            if _range_loss(grid, 0, b, 0, n, ws, wc, wp, wk) > budget:
                # walk the block's sub-blocks; evaluate the points of one whose bound does not fit
                end = min((b + 1) * B, lim)
                f = (pos if pos > b * B else b * B) // F
                while f * F < end:
                    if _range_loss(grid, 2, f, 0, n, ws, wc, wp, wk) > budget:
                        stop = min((f + 1) * F, end)
                        for i in range(pos if pos > f * F else f * F, stop):
                            eq, mm, sc, co = state_nb(acc, rows, st, grid, a, i)
                            thr = threshold_nb(st, grid, rules, a, i)
                            if eq < thr * mm:
                                return i, checks
                            checks += 1
                        # no liquidation there: its last point is the new anchor
                        t, cushion, scale, coll = stop - 1, eq - thr * mm, sc, co
                        anchored = True
                        break
                    f += 1
                if anchored:
                    continue
            b += 1
            if b >= NB or b * B >= lim:
                return lim, checks
            if not _range_loss(grid, 1, b, 0, n, ws, wc, wp, wk) > budget:
                return lim, checks
            # the longest run of blocks from b whose joint bound fits: none of them can liquidate
            l = 0
            while b + (1 << l) <= NB and not _range_loss(grid, 0, b, l, n, ws, wc, wp, wk) > budget:
                l += 1
            if l > 0:
                b += 1 << (l - 1)
                for j in range(l - 2, -1, -1):
                    if b + (1 << j) <= NB and not _range_loss(grid, 0, b, j, n, ws, wc, wp, wk) > budget:
                        b += 1 << j


@njit(cache=True, inline="always", _nrt=False)
def _pack_row(rows, st, k, i):
    """Row ``i`` of ``rows`` (member order) into ``st.row[k]``."""
    st.row[k, RS_ENTRY] = rows.entry[i]
    st.row[k, RS_QTY] = rows.qty[i]
    st.row[k, RS_MMR] = rows.mmr[i]
    st.row[k, RS_CUM] = rows.cum[i]
    st.row[k, RS_SIDE] = rows.side[i]
    st.row[k, RS_SYM] = rows.sym[i]
    st.row[k, RS_TIER] = rows.tier[i]
    st.row[k, RS_SLOT] = i


@njit(cache=True, inline="always", _nrt=False)
def _pack_account(acc, grid, st, k, a, first):
    """Account ``a`` of ``acc`` into ``st.acc[k]``, its rows from ``st.row[first]`` on."""
    code = acc.coll_asset[a]
    cs = grid.coll_series[code]
    st.acc[k, AS_FIRST] = first
    st.acc[k, AS_COUNT] = acc.count[a]
    st.acc[k, AS_CSER] = cs
    st.acc[k, AS_CVAL] = acc.wallet_usd[a] if cs < 0 else acc.coll_amount[a]
    st.acc[k, AS_HC] = 1.0 - grid.haircut[code]
    st.acc[k, AS_REAL] = 0.0
    st.acc[k, AS_PHASE] = 0.0
    st.acc[k, AS_COOL] = 0.0


@njit(cache=True, _nrt=False)
def _init_state(acc, rows, grid, st):
    """The reference's state (records.AccountState): every row and every account."""
    for i in range(rows.qty.shape[0]):
        _pack_row(rows, st, i, i)
    for a in range(acc.first.shape[0]):
        _pack_account(acc, grid, st, a, a, acc.first[a])


@njit(cache=True, _nrt=False)
def run_accounts_nb(acc, rows, grid, rules, st, nbars, reference, xs, acc_grid, acc_deficit, bar_i, work):
    """Run every account of ``acc`` (records.Accounts) over ``grid`` (records.GridPaths) with the
    rows ``rows`` (records.AccountRows) and the venue rules ``rules`` (records.LiqRules).
    ``reference``: every live account checked at every grid point, ``st`` (records.AccountState)
    sized for every row and account; else the fast kernel (module docstring), ``st`` sized for
    the largest account (one account at a time). Writes exit records ``xs = (x_row, x_grid,
    x_fill, x_cont, x_src, x_share)`` (long enough for every exit), ``acc_grid`` /
    ``acc_deficit`` per account and ``bar_i[s, bar, AB_*]`` (zeroed here); ``work``: scratch
    (records.AccountWork); returns ``(n_records, checks)``."""
    A = acc.first.shape[0]
    T = grid.ts.shape[0]
    bar_i[:, :, :] = 0
    loss = work.loss
    nx = 0
    checks = 0
    for a in range(A):
        acc_grid[a] = -1
        acc_deficit[a] = 0.0
    if T == 0:
        return nx, checks
    if reference:
        _init_state(acc, rows, grid, st)
        alive = work.alive
        alive[:] = True
        for t in range(T):
            for a in range(A):
                if not alive[a]:
                    continue
                checks += 1
                eq, mm, scale, coll = state_nb(acc, rows, st, grid, a, t)
                if eq < threshold_nb(st, grid, rules, a, t) * mm:
                    if acc_grid[a] < 0:
                        acc_grid[a] = t
                    nx, closed, acc_deficit[a] = liquidate_nb(acc, rows, st, grid, rules, a, t, eq, mm, bar_i, xs, nx, loss)
                    alive[a] = not closed
        return nx, checks
    # the fast kernel: an account's path depends on its own rows and the grid only, so each
    # account runs to its end before the next (its state stays in cache; memory order)
    ws, wc, wp, wk = work.ws, work.wc, work.wp, work.wk
    for ga in range(A):
        f = acc.first[ga]
        for k in range(acc.count[ga]):
            _pack_row(rows, st, k, f + k)
        _pack_account(acc, grid, st, 0, ga, 0)
        t = 0
        while t < T:
            checks += 1
            eq, mm, scale, coll = state_nb(acc, rows, st, grid, 0, t)
            thr = threshold_nb(st, grid, rules, 0, t)
            if eq < thr * mm:
                if acc_grid[ga] < 0:
                    acc_grid[ga] = t
                nx, closed, acc_deficit[ga] = liquidate_nb(acc, rows, st, grid, rules, 0, t, eq, mm, bar_i, xs, nx, loss)
                if closed:
                    break
                # partly liquidated, still open: its state after the procedure
                eq, mm, scale, coll = state_nb(acc, rows, st, grid, 0, t)
                thr = threshold_nb(st, grid, rules, 0, t)
            t, c = next_liquidation_nb(acc, rows, st, grid, rules, 0, t, eq - thr * mm, scale, coll, ws, wc, wp, wk)
            checks += c
    return nx, checks


@njit(cache=True, _nrt=False)
def sparse_tables_nb(px, B, F, suf, pre, blk, fine):
    """Fill ``pre[b, 0 / 1, s]`` with the max / min of ``px[s]`` over blocks ``0`` to ``b``,
    ``fine[f, 0 / 1, s]`` with the max / min of ``px[s]`` over sub-blocks of ``F`` grid
    points, ``blk[b, l, 0 / 1, s]`` with the max / min of ``px[s]`` over blocks ``[b, b + 2**l)``
    of ``B`` grid points (where that range fits - other cells are never read) and
    ``suf[b, 0 / 1, s]`` with the max / min of ``px[s]`` from block ``b`` on (``b = NB``: none,
    -inf / +inf). Series innermost: one query of an account reads one or two cache lines."""
    S, T = px.shape
    NB = blk.shape[0]
    L = blk.shape[1]
    for s in range(S):
        for f in range(fine.shape[0]):
            hi = -np.inf
            lo = np.inf
            for t in range(f * F, min((f + 1) * F, T)):
                if px[s, t] > hi:
                    hi = px[s, t]
                if px[s, t] < lo:
                    lo = px[s, t]
            fine[f, 0, s] = hi
            fine[f, 1, s] = lo
        k = B // F  # sub-blocks per block (F divides B)
        for b in range(NB):
            hi = -np.inf
            lo = np.inf
            for f in range(b * k, min((b + 1) * k, fine.shape[0])):
                if fine[f, 0, s] > hi:
                    hi = fine[f, 0, s]
                if fine[f, 1, s] < lo:
                    lo = fine[f, 1, s]
            blk[b, 0, 0, s] = hi
            blk[b, 0, 1, s] = lo
        suf[NB, 0, s] = -np.inf
        suf[NB, 1, s] = np.inf
        for b in range(NB):
            x = blk[b, 0, 0, s]
            y = pre[b - 1, 0, s] if b > 0 else x
            pre[b, 0, s] = x if x >= y else y
            x = blk[b, 0, 1, s]
            y = pre[b - 1, 1, s] if b > 0 else x
            pre[b, 1, s] = x if x <= y else y
        for b in range(NB - 1, -1, -1):
            x = blk[b, 0, 0, s]
            y = suf[b + 1, 0, s]
            suf[b, 0, s] = x if x >= y else y
            x = blk[b, 0, 1, s]
            y = suf[b + 1, 1, s]
            suf[b, 1, s] = x if x <= y else y
        for l in range(1, L):
            h = 1 << (l - 1)
            for b in range(NB - (1 << l) + 1):
                x = blk[b, l - 1, 0, s]
                y = blk[b + h, l - 1, 0, s]
                blk[b, l, 0, s] = x if x >= y else y
                x = blk[b, l - 1, 1, s]
                y = blk[b + h, l - 1, 1, s]
                blk[b, l, 1, s] = x if x <= y else y
