"""The replay / cascade kernel: one pass over the bars, rounds of forced orders at each path point.

``simulate_nb`` walks the bars. Inside a bar the path is open -> high -> low -> close when the
close is below the open, else open -> low -> high -> close (DESIGN §7). At each path point:

1. the price is the exogenous point times ``exp(E)``, ``E`` the endogenous (impact) log offset,
   which decays with the configured half-life between path points (a third of a bar apart);
2. round 0 finds every open position whose liquidation threshold or stop the price crossed;
   their forced orders (sells for longs, buys for shorts) move the price by the impact model;
   round r+1 finds the positions the new price crosses, and so on until a round triggers
   nothing (or ``max_rounds``: a cascade cut there while its last round still moved the price
   is counted per bar, ``BI_AT_MAX_ROUNDS``, and in ``ST_BARS_AT_MAX_ROUNDS``). Replay mode
   (``KP_NO_FEEDBACK``: the impact sets the fills but does not move the price) and impact "none"
   have round 0 only.

Thresholds move with funding: a settlement at rate ``f`` changes an isolated margin by
``-side * qty * f * price``; with ``F`` the cumulative index ``sum(f * price)`` a position's
liquidation price becomes ``liq + F / (1 - side * mmr)`` and its bankruptcy price
``entry - side * margin / qty + F``. All positions of a (side, venue, tier) list share ``mmr``,
so the list's order holds. Cross positions are treated like isolated ones with their allotted
collateral (population simplification).

Fills: the trigger level (clipped to the price the move started from), moved by the round's own
impact when that impact goes against the position (forced sells fill lower, forced buys higher).
In replay (``KP_NO_FEEDBACK``) the forced orders of a path point still walk the book, so their
fills pay that impact, but the path is not moved and no further round follows. The impact of
one path point, and the endogenous offset ``E``, are capped at ``MAX_IMPACT_LOG``. Liquidations pay the clearance fee out of what margin remains into
the insurance fund; a fill beyond the bankruptcy price is a deficit the fund covers; what it
cannot cover is auto-deleveraged at the bar's end: opposite positions, highest ADL rank first
(:func:`backtest.margin.adl_key_nb`), closed at the current price until their notional covers
the uncovered notional. Stops fire as market orders (taker fee, no clearance fee).

Two ways to find triggered positions, same bookkeeping:
- fast (``reference=False``): one pointer per trigger list (see :mod:`.sorting`), dead positions
  (stopped, ADL'd) skipped by their exit code;
- reference (``reference=True``): scan every position every round.
USD sums are kept in integers (1e-4 USD) so both give bit-identical outputs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest.kernels.sorting import bankruptcy_base, sort_bucket
from backtest.margin import adl_key_nb
from backtest.records import (
    BF_CLOSE,
    BF_ENDO_MAX,
    BF_ENDO_MIN,
    BF_HIGH,
    BF_LOW,
    BF_OPEN,
    BF_SIZE,
    BI_ADL,
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
    MAX_IMPACT_LOG,
    IMPACT_SQRT,
    KP_BAR_MS,
    KP_CLEARANCE,
    KP_DD_BAR,
    KP_DD_DIR,
    KP_DD_REF,
    KP_DEPTH,
    KP_FUND0,
    KP_HALF_LIFE_S,
    KP_IMPACT_COEF,
    KP_IMPACT_MODEL,
    KP_MAX_ROUNDS,
    KP_NO_FEEDBACK,
    KP_SIGMA,
    KP_TAKER,
    KP_VOLUME,
    LIST_LIQ,
    ST_ADL_SHORTFALL,
    ST_BARS_AT_MAX_ROUNDS,
    ST_DD_EXO,
    ST_DD_SIM,
    ST_FUND_MIN,
    ST_FUNDING_INDEX,
    ST_MAX_DEPTH,
    ST_SIZE,
    USD_SCALE,
)


@njit(cache=True)
def _u(x):
    """USD -> fixed-point units (round half up)."""
    return np.int64(np.floor(x * USD_SCALE + 0.5))


@njit(cache=True)
def _crossed(s, p, thr):
    if s > 0:
        return p <= thr
    return p >= thr


@njit(cache=True)
def _impact(model, net_usd, coef, sigma, volume, depth):
    """Log-price displacement caused by a cumulative net forced flow (USD, + = buys).

    Square-root law on the flow accumulated since round 0 of the path point (the cascade acts
    as one metaorder: each round adds the *increment* of the displacement, so the marginal
    impact falls as the cascade grows); linear depth is additive.
    """
    if net_usd == 0.0 or model == IMPACT_NONE:
        return 0.0
    a = abs(net_usd)
    if model == IMPACT_SQRT:
        d = coef * sigma * np.sqrt(a / volume)
    else:  # IMPACT_LINEAR: |dP/P| = 1 % * Q / D, applied in log space
        d = 0.01 * a / depth
    d = min(d, MAX_IMPACT_LOG)
    return d if net_usd > 0 else -d


@njit(cache=True)
def _head(li, lists, ptr, bend, bcur, bstart, bsorted, order, okey, eqw, ew, ebk, est, liq, stop, entry, qty, margin, weight):
    """Trigger level (before the funding shift) of the entry at list ``li``'s pointer.

    Sorts the next bucket if the pointer sits at a bucket boundary; NaN when the list is done.
    """
    kk = ptr[li]
    if kk >= lists[li, 3]:
        return np.nan
    if kk >= bend[li]:
        b = bcur[li] + 1
        while bstart[b + 1] == bstart[b]:
            b += 1
        if not bsorted[b]:
            sort_bucket(order, okey, eqw, ew, ebk, est, bstart[b], bstart[b + 1], lists[li, 0], lists[li, 1], lists[li, 6] != 0, liq, stop, entry, qty, margin, weight)
            bsorted[b] = True
        bcur[li] = b
        bend[li] = bstart[b + 1]
    key = okey[kk]
    return -key if lists[li, 1] > 0 else key


@njit(cache=True)
def _bounds(lists, head_lvl, shift):
    """Highest long trigger and lowest short trigger over all lists' heads."""
    bl = -np.inf
    bs = np.inf
    for li in range(lists.shape[0]):
        lv = head_lvl[li]
        if lv != lv:
            continue
        thr = lv + shift[li] if lists[li, 0] == LIST_LIQ else lv
        if lists[li, 1] > 0:
            if thr > bl:
                bl = thr
        elif thr < bs:
            bs = thr
    return bl, bs


@njit(cache=True)
def _adl(target_side, units, p, F, side, venue, entry, qty, margin, weight, alive, x_pos, x_ts, x_fill, x_round, x_code, nx, t):
    """Close opposite positions, highest ADL rank first (ties: lower index first), until their
    notional covers ``units``. Only the top of the ranking is sorted: the K best by partial
    selection, K growing until they cover ``units`` - the same order as a full sort."""
    n = side.shape[0]
    keys = np.empty(n)
    idx = np.empty(n, np.int32)
    c = 0
    for i in range(n):
        if alive[i] and side[i] == target_side:
            s = side[i]
            m_t = margin[i] - s * qty[i] * F
            k = -adl_key_nb(venue[i], s, entry[i], p, qty[i], m_t)
            keys[c] = k if k == k else np.inf
            idx[c] = i
            c += 1
    if c == 0:
        return np.int64(0), nx
    K = 512
    while True:
        if K >= c:
            sel = np.arange(c)
        else:
            thr = np.partition(keys[:c], K - 1)[K - 1]
            m = 0
            for j in range(c):
                if keys[j] <= thr:
                    m += 1
            sel = np.empty(m, np.int64)
            m = 0
            for j in range(c):
                if keys[j] <= thr:
                    sel[m] = j
                    m += 1
        o = np.argsort(keys[sel], kind="mergesort")
        acc = np.int64(0)
        cut = -1
        for jj in range(o.shape[0]):
            i = idx[sel[o[jj]]]
            acc += _u(qty[i] * np.float64(weight[i]) * p)
            if acc >= units:
                cut = jj
                break
        if cut < 0 and K < c:
            K *= 8
            continue
        last = cut if cut >= 0 else o.shape[0] - 1
        closed = np.int64(0)
        for jj in range(last + 1):
            i = idx[sel[o[jj]]]
            alive[i] = False
            x_pos[nx] = i
            x_ts[nx] = t
            x_fill[nx] = p
            x_round[nx] = -1
            x_code[nx] = EXIT_ADL
            nx += 1
            closed += _u(qty[i] * np.float64(weight[i]) * p)
        return closed, nx


@njit(cache=True)
def workspace_nb(n, nbars, max_rounds):
    """Output and scratch arrays of one run (see :func:`simulate_into_nb`); fresh, so untouched.

    Returns ``(alive, x_pos, x_ts, x_fill, x_round, x_code, bar_i, bar_f, round_units, stats,
    buf, blvl, bqw, bbk, bw, bside, bcode, x_usd)``. A run needs ``n`` positions, ``nbars`` bars and
    ``max_rounds + 1`` round slots; a workspace at least that large can be reused run after run
    (sweeps): fresh memory costs page faults on first touch, reused memory does not.
    """
    return (
        np.empty(n, np.bool_),
        np.empty(n, np.int32),
        np.empty(n, np.int64),
        np.empty(n),
        np.empty(n, np.int16),
        np.empty(n, np.int8),
        np.empty((nbars, BI_SIZE), np.int64),
        np.empty((nbars, BF_SIZE)),
        np.empty(max_rounds + 1, np.int64),
        np.empty(ST_SIZE),
        np.empty(n, np.int32),
        np.empty(n),
        np.empty(n),
        np.empty(n),
        np.empty(n),
        np.empty(n, np.int8),
        np.empty(n, np.int8),
        np.empty(n),
    )


@njit(cache=True)
def simulate_nb(
    side, venue, entry, qty, margin, mmr, liq, stop, weight,
    order, okey, bstart, bsorted, lists, eqw, ew, ebk, est,
    ts, op, hi, lo, cl, funding,
    prm, reference,
):
    """Run one symbol. See the module docstring; outputs are described in backtest.records.

    Returns ``(x_pos, x_ts, x_fill, x_round, x_code, bar_i, bar_f, round_units, stats, x_usd)``:
    one record per exit (position index, time, fill, round (-1 for ADL), EXIT_* code, notional
    qty x weight x fill in USD) in time order (within a round the order depends on the mode),
    and the per-bar and run outputs.
    """
    ws = workspace_nb(side.shape[0], ts.shape[0], np.int64(prm[KP_MAX_ROUNDS]))
    return simulate_into_nb(
        side, venue, entry, qty, margin, mmr, liq, stop, weight,
        order, okey, bstart, bsorted, lists, eqw, ew, ebk, est,
        ts, op, hi, lo, cl, funding,
        prm, reference,
        ws[0], ws[1], ws[2], ws[3], ws[4], ws[5], ws[6], ws[7], ws[8], ws[9],
        ws[10], ws[11], ws[12], ws[13], ws[14], ws[15], ws[16], ws[17],
    )


@njit(cache=True)
def simulate_into_nb(
    side, venue, entry, qty, margin, mmr, liq, stop, weight,
    order, okey, bstart, bsorted, lists, eqw, ew, ebk, est,
    ts, op, hi, lo, cl, funding,
    prm, reference,
    alive, x_pos, x_ts, x_fill, x_round, x_code, bar_i, bar_f, round_units, stats,
    buf, blvl, bqw, bbk, bw, bside, bcode, x_usd,
):
    """:func:`simulate_nb` writing into caller-owned arrays (a workspace, :func:`workspace_nb`),
    which may be larger than the run needs and hold anything: every element the run's outputs
    cover is (re)initialised here. The returned outputs are views into the workspace, valid
    until it is used again.
    """
    n = side.shape[0]
    nbars = ts.shape[0]
    L = lists.shape[0]
    model = np.int64(prm[KP_IMPACT_MODEL])
    coef = prm[KP_IMPACT_COEF]
    sigma = prm[KP_SIGMA]
    volume = prm[KP_VOLUME]
    depth = prm[KP_DEPTH]
    clear_rate = prm[KP_CLEARANCE]
    taker_rate = prm[KP_TAKER]
    max_rounds = np.int64(prm[KP_MAX_ROUNDS])
    dd_bar = np.int64(prm[KP_DD_BAR])
    dd_dir = prm[KP_DD_DIR]
    bar_ms = np.int64(prm[KP_BAR_MS])
    hl = prm[KP_HALF_LIFE_S]
    no_feedback = prm[KP_NO_FEEDBACK] != 0.0
    dseg = 1.0
    if hl > 0.0 and np.isfinite(hl):
        dseg = 0.5 ** ((bar_ms / 3000.0) / hl)

    # exits are appended as records in time order (fresh memory is touched only as it fills)
    alive = alive[:n]
    alive[:] = True
    nx = 0
    bar_i = bar_i[:nbars]  # each row is zeroed when its bar starts
    bar_f = bar_f[:nbars]  # every element is written by its bar
    round_units = round_units[: max_rounds + 1]
    round_units[:] = 0
    stats = stats[:ST_SIZE]
    stats[:] = 0.0

    # trigger-list state (fast mode)
    ptr = np.empty(L, np.int64)
    bend = np.empty(L, np.int64)
    bcur = np.empty(L, np.int64)
    div = np.ones(L)
    shift = np.zeros(L)
    head_lvl = np.empty(L)
    for li in range(L):
        ptr[li] = lists[li, 2]
        bend[li] = lists[li, 2]
        bcur[li] = lists[li, 4] - 1
        if lists[li, 0] == LIST_LIQ and lists[li, 3] > lists[li, 2]:
            div[li] = 1.0 - np.float64(lists[li, 1]) * mmr[order[lists[li, 2]]]
        head_lvl[li] = _head(li, lists, ptr, bend, bcur, bstart, bsorted, order, okey, eqw, ew, ebk, est, liq, stop, entry, qty, margin, weight)
    # fast mode skips a side whose nearest trigger the price has not reached
    bound_l, bound_s = _bounds(lists, head_lvl, shift)

    fund = _u(prm[KP_FUND0])
    fund_min = fund
    F = 0.0
    E = 0.0
    p_prev = op[0] if nbars > 0 else 0.0
    peak_exo = 0.0
    peak_sim = 0.0
    dd_exo = 0.0
    dd_sim = 0.0
    max_depth = 0
    bars_cut = 0  # bars with a cascade cut by max_rounds
    shortfall = np.int64(0)
    nu_long = np.int64(0)  # uncovered notional from long liquidations (ADL closes shorts)
    nu_short = np.int64(0)
    adl_done = False  # no position has been auto-deleveraged yet

    for j in range(nbars):
        for c in range(BI_SIZE):
            bar_i[j, c] = 0
        if funding[j] != 0.0:
            F += funding[j] * p_prev
            for li in range(L):
                if lists[li, 0] == LIST_LIQ:
                    shift[li] = F / div[li]
            bound_l, bound_s = _bounds(lists, head_lvl, shift)
        if j == dd_bar:
            ref = prm[KP_DD_REF] if prm[KP_DD_REF] > 0.0 else op[j]
            peak_exo = ref
            peak_sim = ref
        t_prev = ts[j]
        for k in range(4):
            if k == 0:
                p_exo = op[j]
            elif k == 3:
                p_exo = cl[j]
            elif (k == 1) == (cl[j] < op[j]):
                p_exo = hi[j]
            else:
                p_exo = lo[j]
            if k > 0 and E != 0.0:
                E *= dseg
                if abs(E) < 1e-12:  # decayed away (and no denormals)
                    E = 0.0
            t_pt = ts[j] + (k * (bar_ms - 1)) // 3
            p = p_exo * np.exp(E) if E != 0.0 else p_exo
            p_from = p_prev
            r = 0
            depth_pt = 0
            qcum = np.int64(0)
            imp_prev = 0.0
            while True:
                # ---- find what this price triggers -------------------------------------
                nt = 0
                sell = np.int64(0)
                buy = np.int64(0)
                if reference:
                    for i in range(n):
                        if not alive[i]:
                            continue
                        s = side[i]
                        thr = liq[i] + F / (1.0 - np.float64(s) * mmr[i])
                        c_l = _crossed(s, p, thr)
                        st = stop[i]
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
                        buf[nt] = i
                        blvl[nt] = lvl
                        bcode[nt] = code
                        bside[nt] = s
                        w = np.float64(weight[i])
                        qw = qty[i] * w
                        bqw[nt] = qw
                        bw[nt] = w
                        bbk[nt] = bankruptcy_base(s, entry[i], margin[i], qty[i])
                        nt += 1
                        if s > 0:
                            sell += _u(qw * p)
                        else:
                            buy += _u(qw * p)
                elif p <= bound_l or p >= bound_s:
                    for li in range(L):
                        kind = lists[li, 0]
                        s = lists[li, 1]
                        if (s > 0 and p > bound_l) or (s < 0 and p < bound_s):
                            continue
                        lend = lists[li, 3]
                        k0 = ptr[li]
                        kk = k0
                        sh = shift[li] if kind == LIST_LIQ else 0.0
                        # phase 1: advance the pointer over the crossed entries (sequential reads)
                        while kk < lend:
                            if kk >= bend[li]:
                                b = bcur[li] + 1
                                while bstart[b + 1] == bstart[b]:
                                    b += 1
                                if not bsorted[b]:
                                    sort_bucket(order, okey, eqw, ew, ebk, est, bstart[b], bstart[b + 1], kind, s, lists[li, 6] != 0, liq, stop, entry, qty, margin, weight)
                                    bsorted[b] = True
                                bcur[li] = b
                                bend[li] = bstart[b + 1]
                            key = okey[kk]
                            lvl_key = -key if s > 0 else key
                            thr = lvl_key + sh if kind == LIST_LIQ else lvl_key
                            if not _crossed(s, p, thr):
                                break
                            kk += 1
                        # phase 2: the positions behind them (independent loads, overlapped)
                        # positions of lists without stops can only have left by ADL
                        check = lists[li, 6] != 0 or kind != LIST_LIQ or adl_done
                        for e in range(k0, kk):
                            i = order[e]
                            if check and not alive[i]:
                                continue
                            key = okey[e]
                            lvl_key = -key if s > 0 else key
                            if kind == LIST_LIQ:
                                thr = lvl_key + sh
                                st = est[e] if lists[li, 6] else np.nan
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
                            buf[nt] = i
                            blvl[nt] = lvl
                            bcode[nt] = code
                            bside[nt] = s
                            qw = eqw[e]  # payload gathered in list order (sort_bucket)
                            bqw[nt] = qw
                            bw[nt] = np.float64(ew[e])
                            bbk[nt] = ebk[e]
                            nt += 1
                            if s > 0:
                                sell += _u(qw * p)
                            else:
                                buy += _u(qw * p)
                        ptr[li] = kk
                        head_lvl[li] = _head(li, lists, ptr, bend, bcur, bstart, bsorted, order, okey, eqw, ew, ebk, est, liq, stop, entry, qty, margin, weight)
                    bound_l, bound_s = _bounds(lists, head_lvl, shift)
                if nt == 0:
                    break
                if r > 0:
                    depth_pt = r
                # ---- impact of this round's forced orders ------------------------------
                qcum += buy - sell
                imp = _impact(model, qcum / USD_SCALE, coef, sigma, volume, depth)
                dlog = imp - imp_prev
                imp_prev = imp
                if no_feedback:  # replay: the orders walk the book, the observed path stays
                    fac = np.exp(dlog)
                    p_after = p
                else:  # the endogenous offset stays within +-MAX_IMPACT_LOG
                    if E + dlog > MAX_IMPACT_LOG:
                        dlog = MAX_IMPACT_LOG - E
                    elif E + dlog < -MAX_IMPACT_LOG:
                        dlog = -MAX_IMPACT_LOG - E
                    fac = np.exp(dlog)
                    p_after = p * fac if dlog != 0.0 else p
                    E += dlog
                # ---- fills, fees, insurance fund ---------------------------------------
                fund_in = np.int64(0)
                def_l = np.int64(0)
                def_s = np.int64(0)
                dn_l = np.int64(0)
                dn_s = np.int64(0)
                for jj in range(nt):
                    i = buf[jj]
                    s = bside[jj]
                    lvl = blvl[jj]
                    if s > 0:
                        lv = min(lvl, p_from)
                        f = lv * fac if fac < 1.0 else lv
                    else:
                        lv = max(lvl, p_from)
                        f = lv * fac if fac > 1.0 else lv
                    if r == 0 and p_from != p:
                        frac = (p_from - lv) / (p_from - p)
                        frac = min(1.0, max(0.0, frac))
                        t_ex = t_prev + np.int64(frac * (t_pt - t_prev))
                    else:
                        t_ex = t_pt
                    x_pos[nx] = i
                    x_ts[nx] = t_ex
                    x_fill[nx] = f
                    x_round[nx] = r
                    x_code[nx] = bcode[jj]
                    w = bw[jj]
                    qw = bqw[jj]
                    x_usd[nx] = qw * f
                    nx += 1
                    nu = _u(qw * f)
                    bk = bbk[jj] + F
                    remaining = s * (f - bk) * qw
                    if bcode[jj] == EXIT_LIQUIDATED:
                        if s > 0:
                            bar_i[j, BI_LONG_LIQ] += nu
                            bar_i[j, BI_LONG_LIQ_W] += _u(w)
                            bar_i[j, BI_LONG_ROWS] += 1
                        else:
                            bar_i[j, BI_SHORT_LIQ] += nu
                            bar_i[j, BI_SHORT_LIQ_W] += _u(w)
                            bar_i[j, BI_SHORT_ROWS] += 1
                        if remaining >= 0.0:
                            fund_in += _u(min(remaining, clear_rate * qw * f))
                    else:
                        if s > 0:
                            bar_i[j, BI_LONG_STOP] += nu
                        else:
                            bar_i[j, BI_SHORT_STOP] += nu
                        bar_i[j, BI_TAKER] += _u(taker_rate * qw * f)
                    if remaining < 0.0:
                        d = _u(-remaining)
                        if s > 0:
                            def_l += d
                            dn_l += nu
                        else:
                            def_s += d
                            dn_s += nu
                round_units[min(r, max_rounds)] += sell + buy
                bar_i[j, BI_FUND_IN] += fund_in
                bar_i[j, BI_DEFICIT] += def_l + def_s
                fund += fund_in - def_l - def_s
                if fund < 0:
                    unc = -fund
                    fund = np.int64(0)
                    tot = def_l + def_s
                    bar_i[j, BI_UNCOVERED] += unc
                    nu_long += np.int64(np.float64(unc) * (np.float64(dn_l) / np.float64(tot)))
                    nu_short += np.int64(np.float64(unc) * (np.float64(dn_s) / np.float64(tot)))
                if fund < fund_min:
                    fund_min = fund
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
            # ---- end of path point ------------------------------------------------------
            if depth_pt > max_depth:
                max_depth = depth_pt
            if depth_pt > bar_i[j, BI_ROUNDS]:
                bar_i[j, BI_ROUNDS] = depth_pt
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
            if j >= dd_bar:
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
            p_prev = p
            t_prev = t_pt
        # ---- end of bar: auto-deleveraging of what the fund could not cover -------------
        t_end = ts[j] + bar_ms - 1
        if nu_long > 0 or nu_short > 0:
            adl_done = True
        if nu_long > 0:
            nx0 = nx
            c, nx = _adl(-1, nu_long, p_prev, F, side, venue, entry, qty, margin, weight, alive, x_pos, x_ts, x_fill, x_round, x_code, nx, t_end)
            for r_ in range(nx0, nx):
                x_usd[r_] = qty[x_pos[r_]] * np.float64(weight[x_pos[r_]]) * x_fill[r_]
            bar_i[j, BI_ADL] += c
            if c < nu_long:
                shortfall += nu_long - c
            nu_long = 0
        if nu_short > 0:
            nx0 = nx
            c, nx = _adl(1, nu_short, p_prev, F, side, venue, entry, qty, margin, weight, alive, x_pos, x_ts, x_fill, x_round, x_code, nx, t_end)
            for r_ in range(nx0, nx):
                x_usd[r_] = qty[x_pos[r_]] * np.float64(weight[x_pos[r_]]) * x_fill[r_]
            bar_i[j, BI_ADL] += c
            if c < nu_short:
                shortfall += nu_short - c
            nu_short = 0
        bar_i[j, BI_FUND] = fund

    stats[ST_DD_EXO] = dd_exo
    stats[ST_DD_SIM] = dd_sim
    stats[ST_MAX_DEPTH] = max_depth
    stats[ST_FUND_MIN] = fund_min / USD_SCALE
    stats[ST_ADL_SHORTFALL] = shortfall / USD_SCALE
    stats[ST_FUNDING_INDEX] = F
    stats[ST_BARS_AT_MAX_ROUNDS] = bars_cut
    return x_pos[:nx], x_ts[:nx], x_fill[:nx], x_round[:nx], x_code[:nx], bar_i, bar_f, round_units, stats, x_usd[:nx]


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
