"""The replay / cascade kernel: one pass over the bars, rounds of forced orders at each path point.

``simulate_nb`` walks the bars. Inside a bar the path is open -> high -> low -> close when the
close is below the open, else open -> low -> high -> close (DESIGN §7). At each path point:

1. the price is the exogenous point times ``exp(E)``, ``E`` the endogenous (impact) log offset.
   Book resilience is in wall-clock time: between two path points ``E`` decays by
   ``0.5 ** (elapsed seconds / half_life_s)``, the elapsed time being that of the path (a third
   of a bar between the points of a bar, 1 ms from a bar's close to the next bar's open, the
   whole gap over missing bars), so the rule does not depend on the bar length;
2. round 0 finds every open position whose liquidation threshold or stop the price crossed;
   their forced orders (sells for longs, buys for shorts) move the price by the impact model;
   round r+1 finds the positions the new price crosses, and so on until a round triggers
   nothing (or ``max_rounds``: a cascade cut there while its last round still moved the price
   is counted per bar, ``BI_AT_MAX_ROUNDS``, and in ``ST_BARS_AT_MAX_ROUNDS``). Replay mode
   (``KernelParams.no_feedback``: the impact sets the fills but does not move the price) and
   impact "none" have round 0 only.

External forced flow (issue 12: the account engine's liquidations, :mod:`backtest.contagion`;
``MarketPath.ext_flow`` / ``ext_fund`` / ``ext_fee``, USD per path point, zeros by default -
which give the kernel's results without them bit for bit): at a path point, first the external
clearance fees are paid into the fund and the external deficits drawn from it (what it cannot
cover: ``BI_UNCOVERED``; not handed to ADL); then the external flow (signed, + buys) joins round
0's cumulative flow, so it moves the price through the same impact model and book bound (in a
cascade; in replay it only sets the fills), the round-0 rows fill at that impact and later rounds
follow from the moved price - a round 0 with external flow runs even if no row triggers. Per path
point the kernel reports its final price, its round-0 price and round-0 impact factor
(``RunOutputs.bar_pt``, records.PT_*): the account engine's next pass runs on the prices, and its
rows fill at the round-0 price and factor like a round-0 row.

Positions open and close during the run (issue 11): a position can trigger, and be ADL'd, only
while ``open_time <= t < close_time`` (path time ``t``, UTC ms); its funding counts from its
first open path point (0 for positions open by the first bar's open).

Thresholds move with funding: a settlement at rate ``f`` changes an isolated margin by
``-side * qty * f * price``; with ``F`` the cumulative index ``sum(f * price)`` a position's
liquidation price becomes ``liq + F / (1 - side * mmr)`` and its bankruptcy price
``entry - side * margin / qty + F``. All positions of a (side, venue, tier) list share ``mmr``,
so the list's order holds. Cross positions are treated like isolated ones with their allotted
collateral (population simplification).

Fills (:func:`_fill`): a forced order executes at the price the market actually reached - the
round's price, the first path price past its trigger (after a gap through the trigger that is
beyond it, not the trigger level) - then walks the book: moved by the round's own impact when that
impact goes against the position (forced sells fill lower, forced buys higher).
In replay the forced orders of a path point still walk the book, so their fills pay that impact,
but the path is not moved and no further round follows.

Impact bounded by the book: the square-root or linear model gives the log move of a path point's
cumulative net flow ``Q``; it is capped at the distance at which the side walked (bids for forced
sells, asks for forced buys) of the depth profile's snapshot at the path point holds ``Q``
(:func:`book_reach_nb`; beyond the stored 5 % by :mod:`backtest.book`'s rule) and the
endogenous offset ``E`` stays within ``log(1 -+ MAX_BOOK_MOVE)``. Replay and cascade compute the
same impact and the same ``E`` (reported per bar in both modes); only in a cascade does it move the
path. Liquidations pay the clearance fee out
of what margin remains into the insurance fund; a fill beyond the bankruptcy price is a deficit
the fund covers. Stops fire as market orders (taker fee, no clearance fee).

Auto-deleveraging: each liquidated quantity is closed exactly once, in the market or by ADL.
When a round's deficits (at its fills) exceed the fund plus the round's clearance fees, the fund
can afford to close only the share ``phi = (fund + fees) / deficits`` of each bankrupt position
(liquidation or stop with a deficit) in the market; ADL takes over the rest, ``1 - phi`` of its
quantity, at its bankruptcy price (no loss: ``BI_ADL_TAKEN``, the deficit not covered:
``BI_UNCOVERED``). That share does not go into the book: the round's impact and fills are worked
out again without it (which only improves the market share's fills, so the fund pays at most what
it has; it never goes negative). The exit record of a bankrupt position carries its market fill
and the notional of its market share (``x_usd``). At the bar's end (:func:`_deleverage`) opposite
positions, highest ADL rank first (:func:`backtest.margin.adl_key_nb`), are closed at the
current price until their quantity covers the quantity taken over (whole positions: the last one
may exceed it; quantities summed in integers of a power-of-two unit, :func:`_quantum`, so the two
modes agree bit for bit).

Exit times (:func:`_time_exits`): a path point's segment runs from the previous point (a third
of a bar earlier) to this one; its whole move - the exogenous one and, in a cascade, the impact
of every round - is taken to run straight over the segment from the previous price to the
point's final price, and each exit happens when that move passes its (clipped) trigger level.
So every round's exits get their own, later times within the segment (round r+1's levels lie
beyond the price round r reached), never after the path point; in replay and with impact "none"
(one round, the path not moved) this is the time at which the observed move passed the level.
ADL closes are at the bar's last millisecond.

Structure. The contracts are the named tuples of :mod:`backtest.records` (``Book``,
``MarketPath``, ``KernelParams``, ``TriggerLists``, ``Workspace``; a run returns ``RunOutputs``),
built in :mod:`backtest.engine`. :func:`simulate_nb` walks bars and path points and calls:

- a trigger finder, the only part in which the two modes differ:
  :func:`_trigger_scan` (reference, ``reference=True``: test every open position every round)
  or :func:`_trigger_lists` (fast: one pointer per trigger list, see :mod:`.sorting`, advanced
  bucket by bucket by :func:`_next_bucket`; dead positions - stopped, ADL'd - skipped by
  ``alive``, voluntarily closed ones by their ``close_time``; positions that open during the run
  sit in a cohort of lists of their own opening time, activated at the first path point at or
  after it, and whole cohorts are skipped by their nearest triggers); both put the round's triggered positions into the workspace's ``t_*`` buffer;
- :func:`_round_impact` (the round's price move) and :func:`_settle_round` (fills, exit records,
  fees, deficits, insurance fund) - shared;
- :func:`_deleverage` at each bar's end (ADL of what the fund could not cover) - shared.

A run is :func:`kernel_state_nb` (the state before the first path point, records.KernelState),
:func:`run_points_nb` over a range of path points and :func:`outputs_nb`; :func:`simulate_nb`
runs every point in one call, and a caller may split the points as it likes (a co-simulation
stepping several symbols together) with the same outputs bit for bit.

USD sums are kept in integers (1e-4 USD) so both modes give bit-identical outputs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest.kernels.sorting import bankruptcy_base, sort_bucket
from backtest.kernels.units import usd_units_nb
from backtest.margin import adl_key_nb
from backtest.records import (
    BF_CLOSE,
    BF_ENDO_MAX,
    BF_ENDO_MIN,
    BF_HIGH,
    BF_LOW,
    BF_OPEN,
    BI_ADL,
    BI_ADL_RANKS,
    BI_ADL_TAKEN,
    BI_AT_MAX_ROUNDS,
    BI_DEFICIT,
    BI_FUND,
    BI_FUND_IN,
    BI_LONG_LIQ,
    BI_LONG_LIQ_W,
    BI_LONG_ROWS,
    BI_LONG_STOP,
    BI_ROUNDS,
    BI_SHORT_LIQ,
    BI_SHORT_LIQ_W,
    BI_SHORT_ROWS,
    BI_SHORT_STOP,
    BI_SIZE,
    BI_TAKER,
    BI_UNCOVERED,
    EXIT_ADL,
    EXIT_LIQUIDATED,
    EXIT_STOPPED,
    IMPACT_NONE,
    IMPACT_SQRT,
    LIST_LIQ,
    MAX_BOOK_MOVE,
    PT_FAC,
    PT_HIT,
    PT_PRICE,
    ST_ADL_SHORTFALL,
    ST_BARS_AT_MAX_ROUNDS,
    ST_DD_EXO,
    ST_DD_SIM,
    ST_FUND_MIN,
    ST_FUNDING_INDEX,
    ST_MAX_DEPTH,
    ST_SIZE,
    USD_SCALE,
    KernelState,
    ListState,
    RunOutputs,
)
from backtest.records import (  # the loop-carried state of a run between path points (records.KernelState)
    KF_BOUND_L,
    KF_BOUND_S,
    KF_DD_EXO,
    KF_DD_SIM,
    KF_E,
    KF_F,
    KF_P_PREV,
    KF_PEAK_EXO,
    KF_PEAK_SIM,
    KF_QUANTUM,
    KF_SIZE,
    KI_ADL_DONE,
    KI_BARS_CUT,
    KI_FUND,
    KI_FUND_MIN,
    KI_M_PL,
    KI_M_PS,
    KI_MAX_DEPTH,
    KI_N_ACT,
    KI_N_COH,
    KI_N_COHORTS,
    KI_NX,
    KI_POOL_S,
    KI_Q_LONG,
    KI_Q_SHORT,
    KI_SHORTFALL,
    KI_SIZE,
    KI_SNAP,
    KI_T0,
    KI_T_LAST,
    KI_T_PREV,
)


@njit(cache=True)
def _crossed(s, p, thr):
    if s > 0:
        return p <= thr
    return p >= thr


@njit(cache=True)
def book_reach_nb(depth, snap, side, q):
    """Distance from mid (fraction) at which the cumulative depth of the side a flow of ``q`` USD
    walks (``side`` +1 buys: asks, -1 sells: bids) in snapshot ``snap`` of ``depth``
    (book.BookProfile) equals ``q``: linear between mid (0) and the stored levels; beyond the last
    level at the mean density of the stored range (:mod:`backtest.book`); at most MAX_BOOK_MOVE."""
    lv = depth.levels
    prev_l = 0.0
    prev_d = 0.0
    for l in range(lv.shape[0]):
        d = depth.ask_usd[snap, l] if side > 0 else depth.bid_usd[snap, l]
        if d >= q and d > prev_d:
            return min(prev_l + (lv[l] - prev_l) * (q - prev_d) / (d - prev_d), MAX_BOOK_MOVE)
        if d > prev_d:
            prev_d = d
        prev_l = lv[l]
    if prev_d > 0.0:
        return min(prev_l + (q - prev_d) * prev_l / prev_d, MAX_BOOK_MOVE)
    return MAX_BOOK_MOVE


@njit(cache=True)
def _impact(model, net_usd, coef, sigma, volume, depth_usd, depth, snap):
    """Log-price displacement caused by a cumulative net forced flow (USD, + = buys).

    Square-root law on the flow accumulated since round 0 of the path point (the cascade acts
    as one metaorder: each round adds the *increment* of the displacement, so the marginal
    impact falls as the cascade grows); linear depth is additive. Either is bounded by the book
    (``depth``, snapshot ``snap``): the flow moves the price at most to the level at which the
    side it walks holds it (:func:`book_reach_nb`).
    """
    if net_usd == 0.0 or model == IMPACT_NONE:
        return 0.0
    a = abs(net_usd)
    if model == IMPACT_SQRT:
        d = coef * sigma * np.sqrt(a / volume)
    else:  # IMPACT_LINEAR: |dP/P| = 1 % * Q / D, applied in log space
        d = 0.01 * a / depth_usd
    if net_usd > 0:
        return min(d, np.log1p(book_reach_nb(depth, snap, 1, a)))
    return -min(d, -np.log1p(-book_reach_nb(depth, snap, -1, a)))


# ---- trigger lists (fast mode) ---------------------------------------------------------------
@njit(cache=True)
def _next_bucket(li, tl, ls, book):
    """Move list ``li``'s bucket to the next non-empty one, sorting it (and gathering its payload)
    the first time any run enters it."""
    b = ls.bucket[li] + 1
    while tl.bucket_start[b + 1] == tl.bucket_start[b]:
        b += 1
    if not tl.bucket_sorted[b]:
        sort_bucket(tl, book, tl.bucket_start[b], tl.bucket_start[b + 1], tl.kind[li], tl.side[li], tl.has_stops[li], tl.has_closes[li])
        tl.bucket_sorted[b] = True
    ls.bucket[li] = b
    ls.bucket_end[li] = tl.bucket_start[b + 1]


@njit(cache=True)
def _head(li, tl, ls, book):
    """Trigger level (before the funding shift) of the entry at list ``li``'s pointer; NaN when
    the list is done."""
    kk = ls.ptr[li]
    if kk >= tl.end[li]:
        return np.nan
    if kk >= ls.bucket_end[li]:
        _next_bucket(li, tl, ls, book)
    key = tl.key[kk]
    return -key if tl.side[li] > 0 else key


@njit(cache=True)
def _cohorts(tl):
    """List ranges of the cohorts: maximal runs of lists with the same activation time (lists are
    ordered by it), ``coh[c] .. coh[c + 1]``; returns ``(coh, number of cohorts)``."""
    L = tl.kind.shape[0]
    coh = np.zeros(L + 1, np.int64)
    c = 0
    for li in range(L):
        if li == 0 or tl.act[li] != tl.act[li - 1]:
            coh[c] = li
            c += 1
    coh[c] = L
    return coh, c


@njit(cache=True)
def _side_bounds(cbl, cbs, n_coh):
    """Highest long and lowest short trigger over the active cohorts' bounds."""
    bl = -np.inf
    bs = np.inf
    for c in range(n_coh):
        if cbl[c] > bl:
            bl = cbl[c]
        if cbs[c] < bs:
            bs = cbs[c]
    return bl, bs


@njit(cache=True)
def _bounds(tl, ls, a, b):
    """Highest long trigger and lowest short trigger over the heads of lists ``[a, b)``."""
    bl = -np.inf
    bs = np.inf
    for li in range(a, b):
        lv = ls.head[li]
        if lv != lv:
            continue
        thr = lv + ls.shift[li] if tl.kind[li] == LIST_LIQ else lv
        if tl.side[li] > 0:
            if thr > bl:
                bl = thr
        elif thr < bs:
            bs = thr
    return bl, bs


@njit(cache=True)
def _list_state(book, tl):
    """Pointers at the start of every list (its first bucket sorted), no funding shift."""
    L = tl.kind.shape[0]
    ls = ListState(np.empty(L, np.int64), np.empty(L, np.int64), np.empty(L, np.int64), np.ones(L), np.zeros(L), np.empty(L), np.zeros(L))
    for li in range(L):
        ls.ptr[li] = tl.start[li]
        ls.bucket_end[li] = tl.start[li]
        ls.bucket[li] = tl.first_bucket[li] - 1
        if tl.kind[li] == LIST_LIQ and tl.end[li] > tl.start[li]:
            ls.div[li] = 1.0 - np.float64(tl.side[li]) * book.mmr[tl.order[tl.start[li]]]
        ls.head[li] = _head(li, tl, ls, book)
    return ls


# ---- finding the positions a price triggers ----------------------------------------------
@njit(cache=True)
def _push(ws, nt, i, s, lvl, code, qw, w, bk):
    """Put position ``i`` (side ``s``, trigger level ``lvl``, EXIT_* ``code``, qty x weight
    ``qw``, weight ``w``, bankruptcy price before funding ``bk``) into slot ``nt`` of the round's
    buffer (``ws.t_*``)."""
    ws.t_pos[nt] = i
    ws.t_level[nt] = lvl
    ws.t_code[nt] = code
    ws.t_side[nt] = s
    ws.t_qw[nt] = qw
    ws.t_weight[nt] = w
    ws.t_bankruptcy[nt] = bk


@njit(cache=True)
def _trigger_scan(book, p, F, ws, nt, t, t0):
    """Reference: test every open position against the price ``p`` (funding index ``F``) at path
    time ``t`` (UTC ms; ``t0``: the first bar's open).

    A position is open while ``open_time <= t < close_time``; its funding counts from the
    index at its first open path point (``ws.f0``; 0 for positions open by ``t0``): threshold
    ``liq + (F - f0) / (1 - side * mmr)``, bankruptcy ``entry - side * margin / qty + F - f0``.
    A stop nearer than the liquidation threshold fires first. Appends the triggered positions to
    the path point's buffer (``ws.t_*``) from slot ``nt`` on, marks them dead; returns ``(end of
    the buffer, sell units, buy units)`` (forced notional at ``p``, 1/USD_SCALE USD).
    """
    side = book.side
    alive = ws.alive
    sell = np.int64(0)
    buy = np.int64(0)
    for i in range(side.shape[0]):
        if not alive[i]:
            continue
        ot = book.open_time[i]
        if ot > t or t >= book.close_time[i]:
            continue
        if ot <= t0:
            f0 = 0.0
        else:
            f0 = ws.f0[i]
            if f0 != f0:  # first path point at which it is open
                f0 = F
                ws.f0[i] = F
        s = side[i]
        thr = book.liq[i] + (F - f0) / (1.0 - np.float64(s) * book.mmr[i])
        c_l = _crossed(s, p, thr)
        st = book.stop[i]
        c_s = st == st and _crossed(s, p, st)
        if c_l:
            if c_s and ((s > 0 and st > thr) or (s < 0 and st < thr)):
                code = EXIT_STOPPED
                lvl = st
            else:
                code = EXIT_LIQUIDATED
                lvl = thr
        elif c_s:
            code = EXIT_STOPPED
            lvl = st
        else:
            continue
        alive[i] = False
        w = np.float64(book.weight[i])
        qw = book.qty[i] * w
        _push(ws, nt, i, s, lvl, code, qw, w, bankruptcy_base(s, book.entry[i], book.margin[i], book.qty[i]) - f0)
        nt += 1
        if s > 0:
            sell += usd_units_nb(qw * p)
        else:
            buy += usd_units_nb(qw * p)
    return nt, sell, buy


@njit(cache=True)
def _trigger_lists(book, tl, ls, p, coh, cbl, cbs, n_coh, adl_done, ws, nt, t):
    """Fast: advance each active list's pointer (the lists of cohorts ``[0, n_coh)``, ``coh``
    their list ranges) over the entries ``p`` crosses at path time ``t`` (the same positions, the
    same levels and codes as :func:`_trigger_scan`, in list order; entries closed voluntarily by
    ``t`` are passed over like dead ones). A cohort whose nearest long trigger (``cbl``) and
    short trigger (``cbs``) ``p`` has not reached is skipped; the bounds of the cohorts entered
    are recomputed here (:func:`_bounds`; one cohort of lists per opening time keeps this loop
    short however many lists there are). Returns what :func:`_trigger_scan` does.
    """
    alive = ws.alive
    order = tl.order
    okey = tl.key
    sell = np.int64(0)
    buy = np.int64(0)
    for c in range(n_coh):
        bound_l = cbl[c]
        bound_s = cbs[c]
        if p > bound_l and p < bound_s:
            continue
        for li in range(coh[c], coh[c + 1]):
            kind = tl.kind[li]
            s = tl.side[li]
            if (s > 0 and p > bound_l) or (s < 0 and p < bound_s):
                continue
            lend = tl.end[li]
            k0 = ls.ptr[li]
            kk = k0
            sh = ls.shift[li] if kind == LIST_LIQ else 0.0
            # phase 1: advance the pointer over the crossed entries (sequential reads)
            while kk < lend:
                if kk >= ls.bucket_end[li]:
                    _next_bucket(li, tl, ls, book)
                key = okey[kk]
                lvl_key = -key if s > 0 else key
                thr = lvl_key + sh if kind == LIST_LIQ else lvl_key
                if not _crossed(s, p, thr):
                    break
                kk += 1
            # phase 2: the positions behind them (independent loads, overlapped)
            # positions of lists without stops can only have left by ADL
            stops = tl.has_stops[li]
            closes = tl.has_closes[li]
            check = stops or kind != LIST_LIQ or adl_done or closes
            f0 = ls.f0[li]
            for e in range(k0, kk):
                i = order[e]
                if check and not alive[i]:
                    continue
                if closes and tl.close[e] <= t:
                    continue
                key = okey[e]
                lvl_key = -key if s > 0 else key
                if kind == LIST_LIQ:
                    thr = lvl_key + sh
                    st = tl.stop[e] if stops else np.nan
                    if st == st and _crossed(s, p, st) and ((s > 0 and st > thr) or (s < 0 and st < thr)):
                        code = EXIT_STOPPED
                        lvl = st
                    else:
                        code = EXIT_LIQUIDATED
                        lvl = thr
                else:
                    code = EXIT_STOPPED
                    lvl = lvl_key
                alive[i] = False
                qw = tl.qw[e]  # payload gathered in list order (sort_bucket)
                _push(ws, nt, i, s, lvl, code, qw, np.float64(tl.weight[e]), tl.bankruptcy[e] - f0)
                nt += 1
                if s > 0:
                    sell += usd_units_nb(qw * p)
                else:
                    buy += usd_units_nb(qw * p)
            ls.ptr[li] = kk
            ls.head[li] = _head(li, tl, ls, book)
        bl, bs = _bounds(tl, ls, coh[c], coh[c + 1])
        cbl[c] = bl
        cbs[c] = bs
    return nt, sell, buy


# ---- one round: impact, fills, fund ------------------------------------------------------
@njit(cache=True)
def _fill(ws, jj, p_from, p_hit, fac, F):
    """Buffer slot ``jj``'s clipped trigger level, fill and remaining margin per unit of its
    ``qty x weight`` (negative: a deficit) for a round whose price moved from ``p_from`` to
    ``p_hit`` (the first path price past the trigger) and whose impact factor is ``fac``.

    The forced order executes at the price the market actually reached, ``p_hit`` (after a gap
    through the trigger that is beyond it), then walks the book: moved by ``fac`` when that goes
    against the position (forced sells fill lower, forced buys higher). The trigger level clipped
    to ``p_from`` only times the exit (:func:`_time_exits`). Bankruptcy price
    ``ws.t_bankruptcy + F``: a fill beyond it is a deficit."""
    s = ws.t_side[jj]
    lvl = ws.t_level[jj]
    if s > 0:
        lv = min(lvl, p_from)
        f = p_hit * fac if fac < 1.0 else p_hit
    else:
        lv = max(lvl, p_from)
        f = p_hit * fac if fac > 1.0 else p_hit
    return lv, f, s * (f - (ws.t_bankruptcy[jj] + F))


@njit(cache=True)
def _fund_share(ws, nt0, nt, p_from, p_hit, fac, F, fund, clear_rate):
    """Share of each bankrupt position (slots ``[nt0, nt)`` with a deficit at impact factor
    ``fac``) that the fund (``fund`` units plus the round's clearance fees) can afford to close
    in the market. Returns ``(phi, uncovered units)``: ``(1.0, 0)`` when it covers every deficit."""
    fees = np.int64(0)
    deficit = np.int64(0)
    for jj in range(nt0, nt):
        lv, f, rem = _fill(ws, jj, p_from, p_hit, fac, F)
        qw = ws.t_qw[jj]
        remaining = rem * qw
        if remaining < 0.0:
            deficit += usd_units_nb(-remaining)
        elif ws.t_code[jj] == EXIT_LIQUIDATED:
            fees += usd_units_nb(min(remaining, clear_rate * qw * f))
    avail = fund + fees
    if deficit <= avail:
        return 1.0, np.int64(0)
    return np.float64(avail) / np.float64(deficit), deficit - avail


@njit(cache=True)
def _adl_flow(ws, nt0, nt, p_from, fac, F, phi, p):
    """Forced notional at ``p`` (units) of the ADL share ``1 - phi`` of the bankrupt positions
    (deficit at impact factor ``fac``) in slots ``[nt0, nt)``: ``(sell, buy)``."""
    sell = np.int64(0)
    buy = np.int64(0)
    for jj in range(nt0, nt):
        lv, f, rem = _fill(ws, jj, p_from, p, fac, F)
        if rem * ws.t_qw[jj] < 0.0:
            u = usd_units_nb((1.0 - phi) * ws.t_qw[jj] * p)
            if ws.t_side[jj] > 0:
                sell += u
            else:
                buy += u
    return sell, buy


@njit(cache=True)
def _quantum(book):
    """Unit of the integer quantity sums of ADL: a power of two (so ``x / quantum`` is exact in
    its exponent), with the whole book's ``qty x weight`` below 2**61 units."""
    qsum = 0.0
    for i in range(book.qty.shape[0]):
        qsum += book.qty[i] * np.float64(book.weight[i])
    if not (qsum > 0.0 and np.isfinite(qsum)):
        return 1.0
    return 2.0 ** (np.floor(np.log2(qsum)) - 60.0)


@njit(cache=True)
def _q(x, quantum):
    """Quantity -> integer units of ``quantum`` (round half up)."""
    return np.int64(np.floor(x / quantum + 0.5))


@njit(cache=True)
def _round_impact(prm, depth, snap, qcum, imp_prev, p, E):
    """Price move of a round whose cumulative net forced flow at this path point is ``qcum``
    (units, + = buys) after ``imp_prev`` so far, against snapshot ``snap`` of the book ``depth``.
    Returns ``(imp, dlog, fac, p_after, E)``: the cumulative impact, this round's log move, its
    factor, the price after it and the endogenous offset, kept within ``log(1 -+ MAX_BOOK_MOVE)``.
    Both modes compute the same impact; in replay (``prm.no_feedback``) it sets the fills and the
    offset but does not move the path (``p_after = p``)."""
    imp = _impact(prm.impact_model, qcum / USD_SCALE, prm.impact_coef, prm.sigma, prm.volume_usd, prm.depth_usd, depth, snap)
    dlog = imp - imp_prev
    e_hi = np.log1p(MAX_BOOK_MOVE)
    e_lo = np.log1p(-MAX_BOOK_MOVE)
    if E + dlog > e_hi:
        dlog = max(e_hi - E, 0.0)
    elif E + dlog < e_lo:
        dlog = min(e_lo - E, 0.0)
    fac = np.exp(dlog)
    if prm.no_feedback:  # replay: the orders walk the book, the observed path stays
        p_after = p
    else:
        p_after = p * fac if dlog != 0.0 else p
    E += dlog
    return imp, dlog, fac, p_after, E


@njit(cache=True)
def _settle_round(ws, nt0, nt, nx, j, r, p_from, p_hit, fac, fac1, phi, t_pt, F, fund, prm, quantum):
    """Fill the positions in slots ``[nt0, nt)`` of the path point's buffer (round ``r``; price
    reached from ``p_from``; impact factor ``fac``), append their exit records from slot ``nx``
    (time ``t_pt`` until :func:`_time_exits` sets it), add bar ``j``'s liquidations, stops, fees
    and deficits, and pay the fees and deficits into / out of the fund (units).

    Fill: see :func:`_fill` (the clipped level is kept in ``ws.t_level`` for :func:`_time_exits`).
    With ``phi < 1`` (:func:`_fund_share` at the round's first impact factor ``fac1``) only the
    share ``phi`` of each position bankrupt at ``fac1`` is closed in the market (its record's
    ``x_usd``, its fees and deficit); ADL takes over the rest at the bankruptcy price. Returns
    ``(nx, fund, quantity taken over from longs, from shorts)`` (units of ``quantum``).
    """
    bar_i = ws.bar_i
    clear_rate = prm.clearance_rate
    taker_rate = prm.taker_rate
    fund_in = np.int64(0)
    deficit = np.int64(0)
    q_l = np.int64(0)
    q_s = np.int64(0)
    for jj in range(nt0, nt):
        lv, f, rem = _fill(ws, jj, p_from, p_hit, fac, F)
        ws.t_level[jj] = lv
        i = ws.t_pos[jj]
        s = ws.t_side[jj]
        code = ws.t_code[jj]
        w = ws.t_weight[jj]
        qw = ws.t_qw[jj]
        share = 1.0
        if phi < 1.0:
            rem1 = _fill(ws, jj, p_from, p_hit, fac1, F)[2]
            if rem1 * qw < 0.0:
                share = phi
        qm = share * qw  # closed in the market
        ws.x_pos[nx] = i
        ws.x_ts[nx] = t_pt
        ws.x_fill[nx] = f
        ws.x_round[nx] = r
        ws.x_code[nx] = code
        ws.x_usd[nx] = qm * f
        nx += 1
        nu = usd_units_nb(qm * f)
        remaining = rem * qm
        if code == EXIT_LIQUIDATED:
            if s > 0:
                bar_i[j, BI_LONG_LIQ] += nu
                bar_i[j, BI_LONG_LIQ_W] += usd_units_nb(w)
                bar_i[j, BI_LONG_ROWS] += 1
            else:
                bar_i[j, BI_SHORT_LIQ] += nu
                bar_i[j, BI_SHORT_LIQ_W] += usd_units_nb(w)
                bar_i[j, BI_SHORT_ROWS] += 1
            if remaining >= 0.0:
                fund_in += usd_units_nb(min(remaining, clear_rate * qm * f))
        else:
            if s > 0:
                bar_i[j, BI_LONG_STOP] += nu
            else:
                bar_i[j, BI_SHORT_STOP] += nu
            bar_i[j, BI_TAKER] += usd_units_nb(taker_rate * qm * f)
        if remaining < 0.0:
            deficit += usd_units_nb(-remaining)
        if share < 1.0:  # the rest is taken over by ADL, at the bankruptcy price
            qa = (1.0 - share) * qw
            bar_i[j, BI_ADL_TAKEN] += usd_units_nb(qa * (ws.t_bankruptcy[jj] + F))
            if s > 0:
                q_l += _q(qa, quantum)
            else:
                q_s += _q(qa, quantum)
    bar_i[j, BI_FUND_IN] += fund_in
    bar_i[j, BI_DEFICIT] += deficit
    fund += fund_in - deficit
    if fund < 0:  # rounding of the market shares (units), or bankrupt longs and shorts in one round
        bar_i[j, BI_UNCOVERED] += -fund
        fund = np.int64(0)
    return nx, fund, q_l, q_s


@njit(cache=True)
def _ext_fund(bar_i, j, fund, fee, deficit):
    """Pay the external flow's clearance fees (``fee`` units) into the fund (``fund`` units), then
    its deficits (``deficit`` units) out of it, at a path point of bar ``j``: what the fund pays
    is ``BI_DEFICIT``, what it cannot cover ``BI_UNCOVERED`` (not handed to ADL: the fund never
    goes negative); returns the fund."""
    bar_i[j, BI_FUND_IN] += fee
    fund += fee
    paid = deficit if deficit <= fund else fund
    bar_i[j, BI_DEFICIT] += paid
    bar_i[j, BI_UNCOVERED] += deficit - paid
    return fund - paid


# ---- auto-deleveraging ---------------------------------------------------------------------
@njit(cache=True)
def _adl(target_side, units, p, F, book, ws, nx, t, quantum):
    """Close open positions of ``target_side``, highest ADL rank first (ties: lower index
    first), until their quantity (qty x weight, units of ``quantum``) covers ``units``; their exit
    records go from slot ``nx`` (time ``t``, fill ``p``, round -1, EXIT_ADL). Returns ``(closed
    notional at p in USD units, closed quantity units, nx, deepest quintile of the ranking
    reached)``. One call of :func:`_adl_top` on a fresh :func:`_adl_pool` (the kernel keeps one
    pool per side over its calls)."""
    pool = _adl_pool(book, target_side)
    c, cq, nx, ranks, _m = _adl_top(target_side, units, p, F, book, ws, nx, t, quantum, pool, pool.shape[0])
    return c, cq, nx, ranks


@njit(cache=True)
def _adl_pool(book, target_side):
    """The positions of ``target_side`` in index order (int32), for the ADL calls of one run:
    :func:`_adl_top` drops from it the positions that are dead or closed for good (its calls
    come at increasing times)."""
    n = book.side.shape[0]
    m = 0
    for i in range(n):
        if book.side[i] == target_side:
            m += 1
    pool = np.empty(m, np.int32)
    m = 0
    for i in range(n):
        if book.side[i] == target_side:
            pool[m] = i
            m += 1
    return pool


@njit(cache=True)
def _adl_top(target_side, units, p, F, book, ws, nx, t, quantum, pool, m):
    """:func:`_adl` over the first ``m`` entries of ``pool`` (:func:`_adl_pool` of
    ``target_side``): the candidates are its positions alive and open at ``t``, in index order
    (as a scan of the whole book finds them). Their ranking keys go into the round buffers
    ``ws.t_level`` / ``ws.t_pos`` (free at a bar's end); :func:`_weighted_cut` finds the key at
    which the ranking's quantity first covers ``units``, and only the candidates up to it are
    sorted (stably: ties in index order) - the same closes as a full sort of the ranking.
    Returns :func:`_adl`'s tuple and the pool's new length (the positions dead or closed by
    ``t`` dropped, the order kept)."""
    qty = book.qty
    weight = book.weight
    alive = ws.alive
    keys = ws.t_level
    idx = ws.t_pos
    s = np.int8(target_side)
    qq = np.empty(m, np.int64)
    c = 0
    w = 0
    for r in range(m):
        i = pool[r]
        if not alive[i] or t >= book.close_time[i]:
            continue  # dead, or closed for good: later calls come at later times
        pool[w] = i
        w += 1
        if book.open_time[i] > t:
            continue
        q = qty[i]
        m_t = book.margin[i] - s * q * F
        k = -adl_key_nb(book.venue[i], s, book.entry[i], p, q, m_t)
        keys[c] = k if k == k else np.inf
        idx[c] = i
        qq[c] = _q(q * np.float64(weight[i]), quantum)
        c += 1
    if c == 0:
        return np.int64(0), np.int64(0), nx, 0, w
    # the key of the position at which the ranking's quantity first covers ``units`` (inf when
    # every candidate together does not): the closes are a prefix of the keys up to it
    v, found = _weighted_cut(keys, qq, c, units)
    n_sel = 0
    for j in range(c):
        if not found or keys[j] <= v:
            n_sel += 1
    sel = np.empty(n_sel, np.int64)
    n_sel = 0
    for j in range(c):
        if not found or keys[j] <= v:
            sel[n_sel] = j
            n_sel += 1
    # stable: ties in index order, as a full sort of the ranking
    o = np.argsort(keys[sel], kind="mergesort")
    acc = np.int64(0)
    last = o.shape[0] - 1
    for jj in range(o.shape[0]):
        acc += qq[sel[o[jj]]]
        if acc >= units:
            last = jj
            break
    closed = np.int64(0)
    closed_q = np.int64(0)
    for jj in range(last + 1):
        i = idx[sel[o[jj]]]
        alive[i] = False
        ws.x_pos[nx] = i
        ws.x_ts[nx] = t
        ws.x_fill[nx] = p
        ws.x_round[nx] = -1
        ws.x_code[nx] = EXIT_ADL
        ws.x_usd[nx] = qty[i] * np.float64(weight[i]) * p
        nx += 1
        closed += usd_units_nb(qty[i] * np.float64(weight[i]) * p)
        closed_q += qq[sel[o[jj]]]
    return closed, closed_q, nx, (5 * last) // c + 1, w


@njit(cache=True)
def _weighted_cut(keys, qq, c, units):
    """The smallest key ``v`` among ``keys[:c]`` whose candidates with ``key <= v`` hold at
    least ``units`` (their ``qq``, integers: exact sums in any order) and True; ``(inf, False)``
    when all of them hold less. Weighted quickselect (three-way partitions around a median of
    three, expected linear time); the result does not depend on the pivots."""
    J = np.arange(c)
    lo = 0
    hi = c
    need = units
    while hi - lo > 16:
        a = keys[J[lo]]
        b = keys[J[(lo + hi) // 2]]
        d = keys[J[hi - 1]]
        piv = max(min(a, b), min(max(a, b), d))
        # three-way partition of J[lo:hi]: < piv, == piv, > piv
        lt = lo
        gt = hi
        k = lo
        s_lt = np.int64(0)
        s_eq = np.int64(0)
        while k < gt:
            x = keys[J[k]]
            if x < piv:
                s_lt += qq[J[k]]
                J[lt], J[k] = J[k], J[lt]
                lt += 1
                k += 1
            elif x > piv:
                gt -= 1
                J[gt], J[k] = J[k], J[gt]
            else:
                s_eq += qq[J[k]]
                k += 1
        if lt > lo and s_lt >= need:
            hi = lt
        elif s_lt + s_eq >= need:
            return piv, True
        else:
            need -= s_lt + s_eq
            lo = gt
    # a short range: sort it and walk
    seg = J[lo:hi]
    o = np.argsort(keys[seg], kind="mergesort")
    acc = np.int64(0)
    for jj in range(o.shape[0]):
        acc += qq[seg[o[jj]]]
        if acc >= need:
            return keys[seg[o[jj]]], True
    return np.inf, False


@njit(cache=True)
def _deleverage(j, target_side, units, p, F, book, ws, nx, t, quantum, pool, m):
    """ADL at bar ``j``'s end (time ``t``, price ``p``) against the quantity ``units`` (of
    ``quantum``) taken over from the other side's bankrupt positions, over the first ``m``
    entries of the side's ``pool`` (:func:`_adl_pool`). Returns ``(nx, shortfall, m)``: the
    notional at ``p`` (USD units) of what no open position was left to cover and the pool's new
    length; ``BI_ADL_RANKS`` keeps the deepest quintile of the ranking the bar's closes reached."""
    c, cq, nx, ranks, m = _adl_top(target_side, units, p, F, book, ws, nx, t, quantum, pool, m)
    ws.bar_i[j, BI_ADL] += c
    if ranks > ws.bar_i[j, BI_ADL_RANKS]:
        ws.bar_i[j, BI_ADL_RANKS] = ranks
    if cq < units:
        return nx, usd_units_nb(np.float64(units - cq) * quantum * p), m
    return nx, np.int64(0), m


# ---- path points -------------------------------------------------------------------------
@njit(cache=True)
def _time_exits(ws, nx0, nt, p0, p_end, t_prev, t_pt, open_time):
    """Times of a path point's exit records ``nx0 ...`` (one per buffer slot ``[0, nt)``, in
    order), all rounds alike: the path point's whole move - exogenous and endogenous - runs
    straight from ``p0`` (at ``t_prev``) to its final price ``p_end`` (at ``t_pt``), and an exit
    happens when that move passes its clipped trigger level (``ws.t_level``). Later rounds'
    levels lie beyond the price that triggered the earlier rounds, so their exits come later
    within the same segment; no exit is later than ``t_pt``. Without a move: ``t_pt``. A position
    that opened inside the segment (``open_time``, UTC ms) exits no earlier than it opened.
    """
    for q in range(nt):
        if p0 != p_end:
            frac = (p0 - ws.t_level[q]) / (p0 - p_end)
            frac = min(1.0, max(0.0, frac))
            ws.x_ts[nx0 + q] = max(t_prev + np.int64(frac * (t_pt - t_prev)), open_time[ws.t_pos[q]])
        else:
            ws.x_ts[nx0 + q] = t_pt


@njit(cache=True)
def _record_point(bar_f, j, k, p, E):
    """Bar ``j``'s simulated open / high / low / close and endogenous range after path point ``k``."""
    if k == 0:
        bar_f[j, BF_OPEN] = p
        bar_f[j, BF_HIGH] = p
        bar_f[j, BF_LOW] = p
        bar_f[j, BF_ENDO_MIN] = E
        bar_f[j, BF_ENDO_MAX] = E
    else:
        bar_f[j, BF_HIGH] = max(bar_f[j, BF_HIGH], p)
        bar_f[j, BF_LOW] = min(bar_f[j, BF_LOW], p)
        bar_f[j, BF_ENDO_MIN] = min(bar_f[j, BF_ENDO_MIN], E)
        bar_f[j, BF_ENDO_MAX] = max(bar_f[j, BF_ENDO_MAX], E)
    if k == 3:
        bar_f[j, BF_CLOSE] = p


@njit(cache=True)
def _drawdown(dd_dir, p_exo, p, peak_exo, peak_sim, dd_exo, dd_sim):
    """Running peaks and largest drawdowns (``dd_dir`` -1) or draw-ups (+1) of the exogenous and
    the simulated path after a point at ``p_exo`` / ``p``."""
    if dd_dir < 0:
        peak_exo = max(peak_exo, p_exo)
        peak_sim = max(peak_sim, p)
        dd_exo = max(dd_exo, 1.0 - p_exo / peak_exo)
        dd_sim = max(dd_sim, 1.0 - p / peak_sim)
    else:
        peak_exo = min(peak_exo, p_exo)
        peak_sim = min(peak_sim, p)
        dd_exo = max(dd_exo, p_exo / peak_exo - 1.0)
        dd_sim = max(dd_sim, p / peak_sim - 1.0)
    return peak_exo, peak_sim, dd_exo, dd_sim


@njit(cache=True)
def simulate_nb(book, tl, path, depth, prm, reference, ws):
    """Run one symbol: ``book`` (records.Book), ``tl`` (records.TriggerLists; unused, may be
    empty, when ``reference``), ``path`` (records.MarketPath), ``depth`` (book.BookProfile: the
    order book forced orders walk, at least one snapshot; each path point uses the last snapshot
    at or before its time, the first one before the series starts), ``prm`` (records.KernelParams),
    writing into ``ws`` (records.Workspace, at least as large as the run; every element the
    outputs cover is (re)initialised here). See the module docstring.

    The run is :func:`kernel_state_nb`, :func:`run_points_nb` over every path point and
    :func:`outputs_nb`; a caller that steps the symbol point by point (a co-simulation) makes
    the same calls with the points split as it needs, and gets the same outputs bit for bit.

    Returns a records.RunOutputs of views into ``ws``, valid until it is used again.
    """
    ks = kernel_state_nb(book, tl, path, prm, reference, ws)
    run_points_nb(book, tl, path, depth, prm, reference, ws, ks, 0, 4 * path.ts.shape[0])
    return outputs_nb(path, prm, ws, ks)


@njit(cache=True)
def kernel_state_nb(book, tl, path, prm, reference, ws):
    """The state of a run before its first path point (records.KernelState), the outputs in
    ``ws`` initialised."""
    n = book.side.shape[0]
    nbars = path.ts.shape[0]
    ws.alive[:n] = True
    ws.round_units[: prm.max_rounds + 1] = 0
    ws.stats[:ST_SIZE] = 0.0
    coh, n_cohorts = _cohorts(tl)
    if reference:
        ws.f0[:n] = np.nan
    ki = np.zeros(KI_SIZE, np.int64)
    kf = np.zeros(KF_SIZE)
    fund = usd_units_nb(prm.fund_usd)
    ki[KI_FUND] = fund
    ki[KI_FUND_MIN] = fund
    ki[KI_N_COHORTS] = n_cohorts
    ki[KI_M_PL] = -1
    ki[KI_M_PS] = -1
    ki[KI_T0] = path.ts[0] if nbars > 0 else 0
    ki[KI_T_LAST] = path.ts[0] if nbars > 0 else 0
    kf[KF_BOUND_L] = -np.inf  # fast mode skips a side whose nearest trigger the price has not reached
    kf[KF_BOUND_S] = np.inf
    kf[KF_P_PREV] = path.open[0] if nbars > 0 else 0.0
    # per cohort: highest long trigger, lowest short trigger
    return KernelState(ki, kf, _list_state(book, tl), coh, np.full(max(n_cohorts, 1), -np.inf), np.full(max(n_cohorts, 1), np.inf),
                       np.empty(n, np.int32))


@njit(cache=True)
def outputs_nb(path, prm, ws, ks):
    """The run's outputs (records.RunOutputs, views into ``ws``) after its last path point."""
    nbars = path.ts.shape[0]
    stats = ws.stats[:ST_SIZE]
    stats[ST_DD_EXO] = ks.f[KF_DD_EXO]
    stats[ST_DD_SIM] = ks.f[KF_DD_SIM]
    stats[ST_MAX_DEPTH] = ks.i[KI_MAX_DEPTH]
    stats[ST_FUND_MIN] = ks.i[KI_FUND_MIN] / USD_SCALE
    stats[ST_ADL_SHORTFALL] = ks.i[KI_SHORTFALL] / USD_SCALE
    stats[ST_FUNDING_INDEX] = ks.f[KF_F]
    stats[ST_BARS_AT_MAX_ROUNDS] = ks.i[KI_BARS_CUT]
    nx = ks.i[KI_NX]
    return RunOutputs(ws.x_pos[:nx], ws.x_ts[:nx], ws.x_fill[:nx], ws.x_round[:nx], ws.x_code[:nx], ws.bar_i[:nbars], ws.bar_f[:nbars],
                      ws.round_units[: prm.max_rounds + 1], stats, ws.x_usd[:nx],
                      ws.bar_pt[:nbars], ws.pt_fund[:nbars])


@njit(cache=True, inline="always")
def _point_open(path, prm, j, k, E, t_last):
    """Path point ``k`` of bar ``j`` before its rounds: ``(exogenous price, time (UTC ms), E
    decayed to it, round-0 price)``, ``E`` and ``t_last`` those after the point before."""
    op = path.open
    cl = path.close
    if k == 0:
        p_exo = op[j]
    elif k == 3:
        p_exo = cl[j]
    elif (k == 1) == (cl[j] < op[j]):
        p_exo = path.high[j]
    else:
        p_exo = path.low[j]
    t_pt = path.ts[j] + (k * (prm.bar_ms - 1)) // 3
    hl = prm.half_life_s
    if E != 0.0 and hl > 0.0 and np.isfinite(hl) and t_pt > t_last:
        # resilience in wall-clock time: half-life in seconds of elapsed path time
        E *= 0.5 ** ((t_pt - t_last) / (1000.0 * hl))
        if abs(E) < 1e-12:  # decayed away (and no denormals)
            E = 0.0
    p = p_exo * np.exp(E) if (E != 0.0 and not prm.no_feedback) else p_exo
    return p_exo, t_pt, E, p


@njit(cache=True)
def round0_price_nb(path, prm, ks, q):
    """The round-0 price of path point ``q`` (before any forced order there) of a run standing
    after point ``q - 1`` (state ``ks``): what a co-simulation shows the other symbols' engine
    before the point's rounds run."""
    return _point_open(path, prm, q // 4, q % 4, ks.f[KF_E], ks.i[KI_T_LAST])[3]


@njit(cache=True)
def run_points_nb(book, tl, path, depth, prm, reference, ws, ks, q0, q1):
    """Advance the run (state ``ks``, records.KernelState: after every path point before ``q0``)
    over path points ``q0 .. q1 - 1`` (point ``q`` is point ``q % 4`` of bar ``q // 4``; a bar
    starts at its point 0 and ends - auto-deleveraging - after its point 3). Reads the path's
    inputs (``path.ext_*`` included) of those points only."""
    n = book.side.shape[0]
    max_rounds = prm.max_rounds
    bar_ms = prm.bar_ms
    model = prm.impact_model
    no_feedback = prm.no_feedback
    dd_bar = prm.dd_bar
    n_snap = depth.ts.shape[0]
    op = path.open
    bar_i = ws.bar_i
    bar_f = ws.bar_f
    round_units = ws.round_units[: max_rounds + 1]
    ls = ks.ls
    coh = ks.coh
    cbl = ks.cbl
    cbs = ks.cbs
    ki = ks.i
    kf = ks.f
    # the loop-carried state, from ks (written back at the end)
    snap = ki[KI_SNAP]
    nx = ki[KI_NX]
    n_act = ki[KI_N_ACT]
    n_coh = ki[KI_N_COH]
    n_cohorts = ki[KI_N_COHORTS]
    t0 = ki[KI_T0]
    t_last = ki[KI_T_LAST]
    t_prev = ki[KI_T_PREV]
    max_depth = ki[KI_MAX_DEPTH]
    bars_cut = ki[KI_BARS_CUT]  # bars with a cascade cut by max_rounds
    shortfall = ki[KI_SHORTFALL]
    q_long = ki[KI_Q_LONG]  # quantity ADL took over from bankrupt longs this bar (it closes shorts)
    q_short = ki[KI_Q_SHORT]
    adl_done = ki[KI_ADL_DONE] != 0  # some position has been auto-deleveraged
    # per side, the positions ADL can still close (_adl_pool), built at the side's first ADL:
    # longs from ks.pool[0], shorts from ks.pool[KI_POOL_S]
    m_pl = ki[KI_M_PL]
    m_ps = ki[KI_M_PS]
    off_s = ki[KI_POOL_S]
    fund = ki[KI_FUND]
    fund_min = ki[KI_FUND_MIN]
    bound_l = kf[KF_BOUND_L]
    bound_s = kf[KF_BOUND_S]
    F = kf[KF_F]
    E = kf[KF_E]
    p_prev = kf[KF_P_PREV]
    peak_exo = kf[KF_PEAK_EXO]
    peak_sim = kf[KF_PEAK_SIM]
    dd_exo = kf[KF_DD_EXO]
    dd_sim = kf[KF_DD_SIM]
    quantum = kf[KF_QUANTUM]  # unit of the ADL quantities (_quantum), found when first needed

    for q in range(q0, q1):
        j = q // 4
        k = q % 4
        if k == 0:
            for c in range(BI_SIZE):
                bar_i[j, c] = 0
            if path.funding[j] != 0.0:
                F += path.funding[j] * p_prev
                for li in range(n_act):
                    if tl.kind[li] == LIST_LIQ:
                        ls.shift[li] = (F - ls.f0[li]) / ls.div[li]
                for c in range(n_coh):
                    cbl[c], cbs[c] = _bounds(tl, ls, coh[c], coh[c + 1])
                bound_l, bound_s = _side_bounds(cbl, cbs, n_coh)
            if j == dd_bar:
                ref = prm.dd_ref if prm.dd_ref > 0.0 else op[j]
                peak_exo = ref
                peak_sim = ref
            t_prev = path.ts[j]
        p_exo, t_pt, E, p = _point_open(path, prm, j, k, E, t_last)
        t_last = t_pt
        if n_coh < n_cohorts and tl.act[coh[n_coh]] <= t_pt:
            while n_coh < n_cohorts and tl.act[coh[n_coh]] <= t_pt:
                f0 = 0.0 if tl.act[coh[n_coh]] <= t0 else F
                for li in range(coh[n_coh], coh[n_coh + 1]):
                    ls.f0[li] = f0
                    if tl.kind[li] == LIST_LIQ:
                        ls.shift[li] = (F - f0) / ls.div[li]
                cbl[n_coh], cbs[n_coh] = _bounds(tl, ls, coh[n_coh], coh[n_coh + 1])
                n_act = coh[n_coh + 1]
                n_coh += 1
            bound_l, bound_s = _side_bounds(cbl, cbs, n_coh)
        while snap + 1 < n_snap and depth.ts[snap + 1] <= t_pt:
            snap += 1
        # external forced flow at this point (the account engine's liquidations): its fees and
        # deficits go into / out of the fund first, its notional joins round 0's flow
        ext_u = np.int64(0)
        if path.ext_flow[j, k] != 0.0:
            ext_u = usd_units_nb(path.ext_flow[j, k])
        if path.ext_fund[j, k] != 0.0 or path.ext_fee[j, k] != 0.0:
            fund = _ext_fund(bar_i, j, fund, usd_units_nb(path.ext_fee[j, k]), usd_units_nb(path.ext_fund[j, k]))
            if fund < fund_min:
                fund_min = fund
        fund_pt = fund  # the point's lowest fund after its external payments (records.RunOutputs.pt_fund)
        p_hit0 = p
        fac0 = 1.0
        p_from = p_prev
        r = 0
        depth_pt = 0
        qcum = np.int64(0)
        imp_prev = 0.0
        nx0 = nx  # the path point's exit records start here, one per buffer slot
        nt0 = 0  # the path point's triggered positions so far (buffer slots)
        while True:
            # the only step in which the two modes differ: which positions this price triggers
            if reference:
                nt, sell, buy = _trigger_scan(book, p, F, ws, nt0, t_pt, t0)
            elif p <= bound_l or p >= bound_s:
                nt, sell, buy = _trigger_lists(book, tl, ls, p, coh, cbl, cbs, n_coh, adl_done, ws, nt0, t_pt)
                bound_l, bound_s = _side_bounds(cbl, cbs, n_coh)
            else:
                nt, sell, buy = nt0, np.int64(0), np.int64(0)
            if nt == nt0 and (r > 0 or ext_u == 0):
                break
            if r > 0:
                depth_pt = r
            qcum += buy - sell
            if r == 0:
                qcum += ext_u
            imp, dlog, fac, p_after, E_r = _round_impact(prm, depth, snap, qcum, imp_prev, p, E)
            fac1 = fac
            phi, unc = _fund_share(ws, nt0, nt, p_from, p, fac1, F, fund, prm.clearance_rate)
            if phi < 1.0:
                # the fund cannot pay the deficits at these fills: ADL takes over the rest of
                # the bankrupt quantity, which does not go into the book
                if quantum == 0.0:
                    quantum = _quantum(book)
                sell_a, buy_a = _adl_flow(ws, nt0, nt, p_from, fac1, F, phi, p)
                sell -= sell_a
                buy -= buy_a
                qcum += sell_a - buy_a
                imp, dlog, fac, p_after, E_r = _round_impact(prm, depth, snap, qcum, imp_prev, p, E)
                bar_i[j, BI_UNCOVERED] += unc
            imp_prev = imp
            E = E_r
            if r == 0:
                fac0 = fac
            nx, fund, q_l, q_s = _settle_round(ws, nt0, nt, nx, j, r, p_from, p, fac, fac1, phi, t_pt, F, fund, prm, quantum)
            nt0 = nt
            q_long += q_l
            q_short += q_s
            round_units[min(r, max_rounds)] += sell + buy
            if fund < fund_min:
                fund_min = fund
            if fund < fund_pt:
                fund_pt = fund
            if model == IMPACT_NONE or no_feedback or dlog == 0.0 or r >= max_rounds:
                if model != IMPACT_NONE and not no_feedback and dlog != 0.0:
                    # cut by max_rounds while the price still moved: depth is truncated here
                    if bar_i[j, BI_AT_MAX_ROUNDS] == 0:
                        bars_cut += 1
                    bar_i[j, BI_AT_MAX_ROUNDS] += 1
                p = p_after
                break
            p_from = p
            p = p_after
            r += 1
        # ---- end of path point ----------------------------------------------------------
        if nt0 > 0:
            _time_exits(ws, nx0, nt0, p_prev, p, t_prev, t_pt, book.open_time)
        if depth_pt > max_depth:
            max_depth = depth_pt
        if depth_pt > bar_i[j, BI_ROUNDS]:
            bar_i[j, BI_ROUNDS] = depth_pt
        _record_point(bar_f, j, k, p, E)
        ws.bar_pt[j, k, PT_PRICE] = p
        ws.bar_pt[j, k, PT_HIT] = p_hit0
        ws.bar_pt[j, k, PT_FAC] = fac0
        ws.pt_fund[j, k] = fund_pt
        if j >= dd_bar:
            peak_exo, peak_sim, dd_exo, dd_sim = _drawdown(prm.dd_dir, p_exo, p, peak_exo, peak_sim, dd_exo, dd_sim)
        p_prev = p
        t_prev = t_pt
        if k < 3:
            continue
        # ---- end of bar: auto-deleveraging of what the fund could not cover -----------------
        t_end = path.ts[j] + bar_ms - 1
        if q_long > 0 or q_short > 0:
            adl_done = True
        if q_long > 0:
            if m_ps < 0:
                pool_s = _adl_pool(book, -1)
                m_ps = pool_s.shape[0]
                off_s = n - m_ps
                ks.pool[off_s:] = pool_s
            nx, short, m_ps = _deleverage(j, -1, q_long, p_prev, F, book, ws, nx, t_end, quantum, ks.pool[off_s:], m_ps)
            shortfall += short
            q_long = 0
        if q_short > 0:
            if m_pl < 0:
                pool_l = _adl_pool(book, 1)
                m_pl = pool_l.shape[0]
                ks.pool[:m_pl] = pool_l
            nx, short, m_pl = _deleverage(j, 1, q_short, p_prev, F, book, ws, nx, t_end, quantum, ks.pool, m_pl)
            shortfall += short
            q_short = 0
        bar_i[j, BI_FUND] = fund

    ki[KI_SNAP] = snap
    ki[KI_NX] = nx
    ki[KI_N_ACT] = n_act
    ki[KI_N_COH] = n_coh
    ki[KI_T_LAST] = t_last
    ki[KI_T_PREV] = t_prev
    ki[KI_MAX_DEPTH] = max_depth
    ki[KI_BARS_CUT] = bars_cut
    ki[KI_SHORTFALL] = shortfall
    ki[KI_Q_LONG] = q_long
    ki[KI_Q_SHORT] = q_short
    ki[KI_ADL_DONE] = 1 if adl_done else 0
    ki[KI_M_PL] = m_pl
    ki[KI_M_PS] = m_ps
    ki[KI_POOL_S] = off_s
    ki[KI_FUND] = fund
    ki[KI_FUND_MIN] = fund_min
    kf[KF_BOUND_L] = bound_l
    kf[KF_BOUND_S] = bound_s
    kf[KF_F] = F
    kf[KF_E] = E
    kf[KF_P_PREV] = p_prev
    kf[KF_PEAK_EXO] = peak_exo
    kf[KF_PEAK_SIM] = peak_sim
    kf[KF_DD_EXO] = dd_exo
    kf[KF_DD_SIM] = dd_sim
    kf[KF_QUANTUM] = quantum


@njit(cache=True)
def exit_split_nb(x_pos, x_code, x_usd, x_ts, side, kind_usd, liq_usd):
    """Exit notional (``x_usd`` = qty x weight x fill, USD) split by kind, each in record order.

    Writes the notional of liquidated longs, liquidated shorts, stops and ADL closes one after
    the other into ``kind_usd`` and that of every liquidation into ``liq_usd`` (both at least as
    long as the records); returns ``(n_long, n_short, n_stopped, n_adl, n_liq, first_minute,
    last_minute)`` (minutes ``x_ts // 60_000`` of the liquidations).
    """
    m = x_pos.shape[0]
    nl = 0
    ns = 0
    nst = 0
    for r in range(m):
        c = x_code[r]
        if c == EXIT_LIQUIDATED:
            if side[x_pos[r]] > 0:
                nl += 1
            elif side[x_pos[r]] < 0:
                ns += 1
        elif c == EXIT_STOPPED:
            nst += 1
    o_l = 0
    o_s = nl
    o_st = nl + ns
    o_a = nl + ns + nst
    k = 0
    na = 0
    mmin = np.int64(0)
    mmax = np.int64(-1)
    for r in range(m):
        i = x_pos[r]
        c = x_code[r]
        if c == EXIT_LIQUIDATED:
            u = x_usd[r]
            s = side[i]
            if s > 0:
                kind_usd[o_l] = u
                o_l += 1
            elif s < 0:
                kind_usd[o_s] = u
                o_s += 1
            liq_usd[k] = u
            mi = x_ts[r] // 60_000
            if k == 0 or mi < mmin:
                mmin = mi
            if k == 0 or mi > mmax:
                mmax = mi
            k += 1
        elif c == EXIT_STOPPED:
            kind_usd[o_st] = x_usd[r]
            o_st += 1
        elif c == EXIT_ADL:
            kind_usd[o_a] = x_usd[r]
            o_a += 1
            na += 1
    return nl, ns, nst, na, k, mmin, mmax


@njit(cache=True)
def minute_sums_nb(x_code, x_ts, liq_usd, m0, sums):
    """Add each liquidation's notional (``liq_usd``, from :func:`exit_split_nb`) to its minute's
    bin ``x_ts // 60_000 - m0``, in record order (as ``np.bincount`` with weights does)."""
    k = 0
    for r in range(x_code.shape[0]):
        if x_code[r] == EXIT_LIQUIDATED:
            sums[x_ts[r] // 60_000 - m0] += liq_usd[k]
            k += 1


@njit(cache=True)
def _ends_before(ends, regular, step, x, right):
    """``np.searchsorted(ends, x, side)`` for one ``x`` (``right``: side="right", the ends at or
    before ``x``; else those before it); ``regular``: ``ends`` step by ``step`` (arithmetic)."""
    n = ends.shape[0]
    if regular:
        e0 = ends[0]
        if right:
            if x < e0:
                return 0
            if x >= ends[n - 1]:
                return n
            return (x - e0) // step + 1
        if x <= e0:
            return 0
        if x > ends[n - 1]:
            return n
        return (x - e0 + step - 1) // step
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if ends[mid] < x or (right and ends[mid] == x):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def simulated_oi_nb(qty, weight, open_time, close_time, x_pos, x_ts, x_share, ends, close):
    """Simulated open interest per bar (USD), the fast path of
    :func:`backtest.results.simulated_open_interest` (whose numpy reference it equals bit for bit:
    the same sums in the same order). Rows: ``qty`` (base units), ``weight`` (float32),
    ``open_time`` / ``close_time`` (UTC ms); exit records ``x_pos`` (row), ``x_ts`` (UTC ms),
    ``x_share`` (quantity share, empty: every exit whole); ``ends``: bar end times (UTC ms,
    ascending), ``close``: the bars' closes."""
    n = ends.shape[0]
    N = qty.shape[0]
    step = ends[1] - ends[0] if n > 1 else np.int64(1)
    regular = step > 0
    for k in range(1, n):
        if ends[k] - ends[k - 1] != step:
            regular = False
            break
    a = np.empty(N, np.int64)
    b = np.empty(N, np.int64)
    for i in range(N):
        a[i] = _ends_before(ends, regular, step, open_time[i], False)
        b[i] = _ends_before(ends, regular, step, close_time[i], False)
    part = np.zeros(n + 1)
    M = x_pos.shape[0]
    if M:
        bx = np.empty(M, np.int64)
        for r in range(M):
            bx[r] = _ends_before(ends, regular, step, x_ts[r], True)
        whole = np.ones(M, np.bool_)
        partial = False
        for r in range(x_share.shape[0]):
            if x_share[r] < 1.0:
                partial = True
                break
        if partial:
            prow = np.zeros(N, np.bool_)
            for r in range(M):
                if x_share[r] < 1.0:
                    prow[x_pos[r]] = True
            for r in range(M):
                whole[r] = not prow[x_pos[r]]
            for r in range(M):
                if not whole[r]:
                    i = x_pos[r]
                    pb = bx[r]
                    if a[i] < pb and pb < b[i]:  # exits while the row is open
                        part[pb] += (qty[i] * np.float64(weight[i])) * x_share[r]
        # as a fancy assignment: every new end from the ends before, the last record's kept
        rhs = np.empty(M, np.int64)
        for r in range(M):
            rhs[r] = min(b[x_pos[r]], bx[r])
        for r in range(M):
            if whole[r]:
                b[x_pos[r]] = rhs[r]
    up = np.zeros(n + 1)
    down = np.zeros(n + 1)
    for i in range(N):
        if a[i] < b[i]:
            qw = qty[i] * np.float64(weight[i])
            up[a[i]] += qw
            down[b[i]] += qw
    out = np.empty(n)
    acc = 0.0
    for k in range(n):
        d = (up[k] - down[k]) - part[k]
        acc = d if k == 0 else acc + d
        out[k] = acc * close[k]
    return out
