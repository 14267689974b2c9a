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
:func:`liquidate_nb` at the grid points they visit, and the fast one visits every point at which
the reference could find a liquidation):

- reference (``reference=True``): every live account checked at every grid point;
- fast: a check at ``t`` gives the cushion ``c = equity - maintenance``. While every price of the
  account's series (symbols and collateral) stays within a relative move ``d`` of its value at
  ``t``, equity falls by at most ``d x (sum notional + collateral value)`` and maintenance rises by
  at most ``d x sum(notional x mmr)``, so with ``d* = c / (sum notional x (1 + mmr) + collateral
  value)`` no point inside that box can liquidate it (the collateral term only for a
  non-settlement asset: the settlement coin's value does not move). The kernel uses the one-sided
  form of the same bound: a long's cushion only falls as its price falls (by at most ``notional x
  d``: its maintenance margin falls too, or stays at 0), a short's only as its price rises (by at
  most ``notional x (1 + mmr) x d``), the collateral's as its price falls; so ``d*`` is the cushion
  over the sum of those rates, and each series' box is open on its harmless side. The cushion is
  shared out over the series by weight: series ``s`` may move ``d x box_w[s]`` with
  ``d = c / sum(rate x box_w)`` (``GridPaths.box_w``, each series' typical move per grid point:
  any positive weights keep the bound, these make a volatile symbol's box wider). With a
  threshold below 1 (a Hyperliquid cooldown: ``eq < hl_backstop x mm``) the cushion is
  ``eq - hl_backstop x mm`` and the same rates bound its fall; the cooldown's end (the threshold
  back to 1) is a check point of its own. The box is shrunk by :data:`SAFETY` (floating
  rounding); accounts whose cushion is within :data:`TINY` of their scale are checked at the next
  grid point. The first grid point after ``t`` at which one of its series leaves its box comes from
  the series' tables of running max/min (:func:`first_out_nb`, one side per query: the block's own
  bound decides a scan of its rest, a per-block suffix bound answers "never", else binary lifting
  over a sparse table of blocks and a scan of the block found - O(block + log T)); the account
  is put into the bucket of that grid index (a bucket queue: one linked list per grid point) and
  checked again there - liquidated or rescheduled.

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
    RS_SYM,
    RS_TIER,
    SOURCE_COLLATERAL,
    USD_SCALE,
    VENUE_BYBIT,
    VENUE_HYPERLIQUID,
    VENUE_OKX,
)

#: the fast kernel's box is this share of the bound ``d*`` (floating-point rounding margin)
SAFETY = 0.99
#: cushions below this share of the account's scale (collateral + notional) are re-checked at the
#: next grid point (no box: rounding could matter there)
TINY = 1e-9


@njit(cache=True)
def _u(x):
    """USD -> fixed-point units (round half up)."""
    return np.int64(np.floor(x * USD_SCALE + 0.5))


@njit(cache=True, inline="always")
def collateral_value_nb(acc, grid, a, t):
    """Collateral value of account ``a`` at grid point ``t``, USD (after haircut)."""
    code = acc.coll_asset[a]
    s = grid.coll_series[code]
    if s < 0:
        return acc.wallet_usd[a]
    return acc.coll_amount[a] * grid.px[s, t] * (1.0 - grid.haircut[code])


@njit(cache=True, inline="always")
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


@njit(cache=True, inline="always")
def _coll_nb(st, grid, a, t):
    """:func:`collateral_value_nb` from the packed state (the same product, the same bits)."""
    cs = np.int64(st.acc[a, AS_CSER])
    if cs < 0:
        return st.acc[a, AS_CVAL]
    return st.acc[a, AS_CVAL] * grid.px[cs, t] * st.acc[a, AS_HC]


@njit(cache=True, inline="always")
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


@njit(cache=True, inline="always")
def state_nb(acc, rows, st, grid, a, t):
    """:func:`account_state_nb` with the engine's state ``st`` (records.AccountState): the rows'
    open quantities and current tiers, plus the PnL the account's partial closes realised. With
    no partial close the sums are those of :func:`account_state_nb` bit for bit."""
    return _sums_nb(acc, rows, st, grid, a, t, -1)


@njit(cache=True, inline="always")
def threshold_nb(st, grid, rules, a, t):
    """Share of the maintenance margin below which account ``a`` is liquidated at ``t``: 1, or
    Hyperliquid's backstop share during the cooldown after a partial liquidation."""
    if st.acc[a, AS_PHASE] == 1 and grid.ts[t] < st.acc[a, AS_COOL]:
        return rules.hl_backstop
    return 1.0


@njit(cache=True)
def _own_market_state(acc, rows, st, grid, a, t, own):
    """Equity and maintenance of account ``a`` at ``t`` with every series but symbol ``own`` at
    its grid point 0 value (the counterfactual of the contagion definition; open quantities and
    realised PnL as they stand)."""
    eq, mm, _scale, _coll = _sums_nb(acc, rows, st, grid, a, t, own)
    return eq, mm


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
def _exit(acc, rows, st, grid, a, t, i, q, deficit_usd, bar_i, xs, nx, loss):
    """Close quantity ``q`` of member ``i`` (account ``a``) at grid point ``t``'s price: one exit
    record (its contagion flag and source already in slot ``nx``: :func:`_mark`), the per-bar sums
    (notional by share), the realised PnL; ``deficit_usd`` (one real account) is this exit's part
    of the account's deficit. Returns the record count."""
    x_row, x_grid, x_fill, x_cont, x_src, x_share = xs
    s = np.int64(st.row[i, RS_SYM])
    p = grid.px[s, t]
    cont = x_cont[nx] == 1
    w = np.float64(rows.weight[i])
    q_open = st.row[i, RS_QTY]
    whole = not q < q_open
    if whole:
        q = q_open
    share = q / rows.qty[i]
    usd = q * w * p
    b = grid.bar[s, t]
    if st.row[i, RS_SIDE] > 0:
        bar_i[s, b, AB_LONG_LIQ] += _u(usd)
        bar_i[s, b, AB_LONG_ROWS] += 1
        bar_i[s, b, AB_LONG_W] += _u(w * share)
    else:
        bar_i[s, b, AB_SHORT_LIQ] += _u(usd)
        bar_i[s, b, AB_SHORT_ROWS] += 1
        bar_i[s, b, AB_SHORT_W] += _u(w * share)
    if deficit_usd > 0.0:
        bar_i[s, b, AB_DEFICIT] += _u(deficit_usd * w)
    if cont:
        bar_i[s, b, AB_CONTAGION] += _u(usd)
        bar_i[s, b, AB_CONTAGION_ROWS] += 1
    else:
        bar_i[s, b, AB_OWN] += _u(usd)
    x_row[nx] = acc.members[i]
    x_grid[nx] = t
    x_fill[nx] = p
    x_share[nx] = share
    st.acc[a, AS_REAL] += position_upnl_nb(st.row[i, RS_SIDE], q, st.row[i, RS_ENTRY], p)
    st.row[i, RS_QTY] = 0.0 if whole else q_open - q
    return nx + 1


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
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


@njit(cache=True)
def liquidate_nb(acc, rows, st, grid, rules, a, t, eq, mm, bar_i, xs, nx, loss):
    """Account ``a`` is below its threshold at ``t`` (equity ``eq``, maintenance ``mm``): run its
    venue's procedure (module docstring), re-checking the account at ``t`` after each partial
    step. The one helper of both modes. Returns ``(records, closed, deficit)``: ``closed`` when
    no position is left open."""
    venue = rows.venue[np.int64(st.acc[a, AS_FIRST])]
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


@njit(cache=True, inline="always")
def _beyond(p, k, x):
    """``p`` is beyond the bound ``x`` on side ``k`` (0: above, 1: below)."""
    return p > x if k == 0 else p < x


@njit(cache=True, inline="always")
def first_out_nb(grid, s, t, k, x):
    """First grid index after ``t`` at which series ``s`` is beyond ``x`` on side ``k`` (0: above
    ``x``, 1: below it); ``T``: never.

    The block of ``t + 1``: its max / min (level 0 of the block table) says whether the rest of it
    must be scanned; then the suffix bound from the next block on answers "never" in one look
    (a table of one value per block: cache-resident); else an exponential search and binary
    lifting over the block table find the first block beyond ``x``, and a scan of it the point:
    O(block + log blocks), the prices read only in the two blocks scanned."""
    T = grid.ts.shape[0]
    pos = t + 1
    if pos >= T:
        return T
    px = grid.px
    blk = grid.blk
    B = grid.block
    NB = blk.shape[2]
    b = pos // B
    if _beyond(blk[k, s, b, 0], k, x):
        for i in range(pos, min((b + 1) * B, T)):
            if _beyond(px[s, i], k, x):
                return i
    b += 1
    if b >= NB or not _beyond(grid.suf[k, s, b], k, x):
        return T
    l = 0
    while b + (1 << l) <= NB and not _beyond(blk[k, s, b, l], k, x):
        l += 1
    if l > 0:
        b += 1 << (l - 1)
        for j in range(l - 2, -1, -1):
            if b + (1 << j) <= NB and not _beyond(blk[k, s, b, j], k, x):
                b += 1 << j
    for i in range(b * B, min((b + 1) * B, T)):
        if _beyond(px[s, i], k, x):
            return i
    return T


@njit(cache=True, inline="always")
def first_exit_nb(grid, s, t, lo, hi):
    """First grid index after ``t`` at which series ``s`` leaves ``[lo, hi]`` (``T``: never); one
    side infinite (the kernel's one-sided boxes) is one :func:`first_out_nb` query."""
    if hi == np.inf:
        return first_out_nb(grid, s, t, 1, lo)
    if lo == -np.inf:
        return first_out_nb(grid, s, t, 0, hi)
    a = first_out_nb(grid, s, t, 0, hi)
    b = first_out_nb(grid, s, t, 1, lo)
    return a if a < b else b


@njit(cache=True, inline="always")
def _next_check(acc, rows, st, grid, a, t, cushion, scale, coll):
    """Grid index at which account ``a`` (cushion ``cushion`` >= 0 at ``t``) must be checked next."""
    T = grid.ts.shape[0]
    cs = np.int64(st.acc[a, AS_CSER])
    # the settlement coin's value does not move: only another asset's collateral joins the bound
    if not (cushion > TINY * (scale + abs(coll))) or not (scale + coll if cs >= 0 else scale) > 0.0:
        return t + 1
    nxt = T
    # a cooldown's end raises the threshold back to the maintenance margin: check there at the latest
    if st.acc[a, AS_PHASE] == 1 and grid.ts[t] < st.acc[a, AS_COOL]:
        nxt = np.searchsorted(grid.ts, np.int64(st.acc[a, AS_COOL]))
        if nxt <= t + 1:
            return t + 1
    # the cushion is shared out over the series in proportion to rate x typical move (box_w): the
    # relative move allowed to series s is d x box_w[s] with sum(rate x d x box_w) = SAFETY x cushion
    f = np.int64(st.acc[a, AS_FIRST])
    c = np.int64(st.acc[a, AS_COUNT])
    bw = grid.box_w
    den = 0.0
    for i in range(f, f + c):
        q = st.row[i, RS_QTY]
        if q <= 0.0:
            continue
        s = np.int64(st.row[i, RS_SYM])
        p = grid.px[s, t]
        r = q * p * (1.0 + st.row[i, RS_MMR]) if st.row[i, RS_SIDE] < 0 else q * p
        den += r * bw[s]
    if cs >= 0:
        den += coll * bw[cs]
    if not den > 0.0:
        return t + 1
    d = SAFETY * cushion / den
    for i in range(f, f + c):
        if st.row[i, RS_QTY] <= 0.0:
            continue
        s = np.int64(st.row[i, RS_SYM])
        p = grid.px[s, t]
        # one-sided: a long only loses cushion as its price falls, a short as its price rises
        if st.row[i, RS_SIDE] > 0:
            e = first_out_nb(grid, s, t, 1, p * (1.0 - d * bw[s]))
        else:
            e = first_out_nb(grid, s, t, 0, p * (1.0 + d * bw[s]))
        if e < nxt:
            nxt = e
            if nxt == t + 1:
                return nxt
    if cs >= 0:
        p = grid.px[cs, t]
        e = first_out_nb(grid, cs, t, 1, p * (1.0 - d * bw[cs]))
        if e < nxt:
            nxt = e
    return nxt


@njit(cache=True)
def _init_state(acc, rows, grid, st):
    """Pack what a check reads into ``st`` (records.AccountState): one 64-byte record per row and
    per account, so that a check touches a few cache lines (the accounts come in queue order)."""
    for i in range(rows.qty.shape[0]):
        st.row[i, RS_ENTRY] = rows.entry[i]
        st.row[i, RS_QTY] = rows.qty[i]
        st.row[i, RS_MMR] = rows.mmr[i]
        st.row[i, RS_CUM] = rows.cum[i]
        st.row[i, RS_SIDE] = rows.side[i]
        st.row[i, RS_SYM] = rows.sym[i]
        st.row[i, RS_TIER] = rows.tier[i]
        st.row[i, 7] = 0.0
    for a in range(acc.first.shape[0]):
        code = acc.coll_asset[a]
        cs = grid.coll_series[code]
        st.acc[a, AS_FIRST] = acc.first[a]
        st.acc[a, AS_COUNT] = acc.count[a]
        st.acc[a, AS_CSER] = cs
        st.acc[a, AS_CVAL] = acc.wallet_usd[a] if cs < 0 else acc.coll_amount[a]
        st.acc[a, AS_HC] = 1.0 - grid.haircut[code]
        st.acc[a, AS_REAL] = 0.0
        st.acc[a, AS_PHASE] = 0.0
        st.acc[a, AS_COOL] = 0.0


@njit(cache=True)
def run_accounts_nb(acc, rows, grid, rules, st, nbars, reference, xs, acc_grid, acc_deficit, bar_i):
    """Run every account of ``acc`` (records.Accounts) over ``grid`` (records.GridPaths) with the
    rows ``rows`` (records.AccountRows), the venue rules ``rules`` (records.LiqRules) and the
    state ``st`` (records.AccountState, initialised here). ``reference``: check every live
    account at every grid point; else the bucket-queue kernel (module docstring). Writes exit
    records ``xs = (x_row, x_grid, x_fill, x_cont, x_src, x_share)`` (long enough for every
    exit), ``acc_grid`` / ``acc_deficit`` per account and ``bar_i[s, bar, AB_*]`` (zeroed here);
    returns ``(n_records, checks)``."""
    A = acc.first.shape[0]
    T = grid.ts.shape[0]
    bar_i[:, :, :] = 0
    loss = np.empty(max(grid.n_symbols, 1))
    nx = 0
    checks = 0
    _init_state(acc, rows, grid, st)
    for a in range(A):
        acc_grid[a] = -1
        acc_deficit[a] = 0.0
    if T == 0:
        return nx, checks
    if reference:
        alive = np.ones(A, np.bool_)
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
    head = np.full(T, -1, np.int32)
    nxt = np.empty(A, np.int32)
    # every account is checked at grid point 0: push in reverse so the list pops 0, 1, 2, ...
    for a in range(A - 1, -1, -1):
        nxt[a] = head[0]
        head[0] = a
    for t in range(T):
        a = head[t]
        while a >= 0:
            after = nxt[a]
            checks += 1
            eq, mm, scale, coll = state_nb(acc, rows, st, grid, a, t)
            thr = threshold_nb(st, grid, rules, a, t)
            closed = False
            if eq < thr * mm:
                if acc_grid[a] < 0:
                    acc_grid[a] = t
                nx, closed, acc_deficit[a] = liquidate_nb(acc, rows, st, grid, rules, a, t, eq, mm, bar_i, xs, nx, loss)
                if not closed:  # partly liquidated, still open: its state after the procedure
                    eq, mm, scale, coll = state_nb(acc, rows, st, grid, a, t)
                    thr = threshold_nb(st, grid, rules, a, t)
            if not closed:
                k = _next_check(acc, rows, st, grid, a, t, eq - thr * mm, scale, coll)
                if k < T:
                    nxt[a] = head[k]
                    head[k] = a
            a = after
    return nx, checks


@njit(cache=True)
def sparse_tables_nb(px, B, suf, blk):
    """Fill ``blk[0 / 1, s, b, l]`` with the max / min of ``px[s]`` over blocks ``[b, b + 2**l)``
    of ``B`` grid points (where that range fits - other cells are never read) and ``suf[0 / 1, s, b]``
    with the max / min of ``px[s]`` from block ``b`` on (``b = NB``: none, -inf / +inf)."""
    S, T = px.shape
    NB = blk.shape[2]
    L = blk.shape[3]
    for s in range(S):
        for b in range(NB):
            hi = -np.inf
            lo = np.inf
            for t in range(b * B, min((b + 1) * B, T)):
                if px[s, t] > hi:
                    hi = px[s, t]
                if px[s, t] < lo:
                    lo = px[s, t]
            blk[0, s, b, 0] = hi
            blk[1, s, b, 0] = lo
        suf[0, s, NB] = -np.inf
        suf[1, s, NB] = np.inf
        for b in range(NB - 1, -1, -1):
            x = blk[0, s, b, 0]
            y = suf[0, s, b + 1]
            suf[0, s, b] = x if x >= y else y
            x = blk[1, s, b, 0]
            y = suf[1, s, b + 1]
            suf[1, s, b] = x if x <= y else y
        for l in range(1, L):
            h = 1 << (l - 1)
            for b in range(NB - (1 << l) + 1):
                x = blk[0, s, b, l - 1]
                y = blk[0, s, b + h, l - 1]
                blk[0, s, b, l] = x if x >= y else y
                x = blk[1, s, b, l - 1]
                y = blk[1, s, b + h, l - 1]
                blk[1, s, b, l] = x if x <= y else y
