"""Trigger lists for the fast kernel: positions ordered by the price at which they trigger.

A *list* is either a liquidation group - the positions of one (side, venue, tier), which share
the maintenance rate and so shift together under funding, split by whether they carry a stop
(so the kernel reads stop prices only where there are some) - or the stop-loss list of one side.
Positions in a list are ordered by a key that rises as the trigger comes nearer to being hit
from above (longs: ``-liq_price``, descending price) or from below (shorts: ``+liq_price``), so
the kernel advances one pointer per list while the price moves.

Sorting 10 M float keys fully costs about a second on a small machine, more than the whole
simulation. So the order is built in two steps: one counting pass puts every entry into its
list's bucket (buckets split the list's key range evenly, about ``bucket_size`` entries each;
non-finite keys - "never triggers" - go to a last bucket), and each bucket gets its keys and is
sorted only when the kernel's pointer first enters it (:func:`sort_bucket`); a flag per bucket remembers it, so
runs that share the lists (sweeps) sort each bucket once. Buckets the price never reaches are
never sorted. Bucket boundaries are monotone in the key, so the order inside the touched part
is exact.

:func:`build_lists_nb` returns the layout as plain arrays; :func:`backtest.engine.build_lists`
assembles them, with the per-entry payload arrays, into a :class:`backtest.records.TriggerLists`,
which :func:`sort_bucket` (called by the cascade kernel) fills bucket by bucket from a
:class:`backtest.records.Book`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest.margin import bankruptcy_linear_nb
from backtest.records import LIST_LIQ, LIST_STOP

N_VENUE_SLOTS = 8
N_GROUPS = 2 * N_VENUE_SLOTS * 2 * 256  # (side, venue, has a stop, tier) liquidation groups
G_STOP_LONG = N_GROUPS
G_STOP_SHORT = N_GROUPS + 1

#: status codes of build_lists_nb
SORT_OK = 0
SORT_MIXED_MMR = 1  # one (side, venue, tier) group holds different maintenance rates
SORT_BAD_CODE = 2  # a side, venue or tier code out of range


@njit(cache=True)
def _key(side, x):
    # longs trigger from the highest threshold down: negate so keys ascend in trigger order
    return -x if side > 0 else x


@njit(cache=True)
def bankruptcy_base(s, entry, margin, qty):
    """Bankruptcy price before funding: ``entry - side * margin / qty``
    (:func:`backtest.margin.bankruptcy_linear_nb`)."""
    return bankruptcy_linear_nb(s, entry, qty, margin)


@njit(cache=True)
def build_lists_nb(side, venue, tier, mmr, liq, stop, bucket_size):
    """Bucket every position into its trigger lists.

    Returns ``(order, okey, bstart, kind, side, start, end, first_bucket, n_buckets, has_stops,
    status)``: ``order`` (int32) and ``okey`` (float64, filled later by :func:`sort_bucket`) hold
    position indices and their keys list by list, bucket by bucket; ``bstart`` (int64) the first
    entry of each bucket (one more element than buckets); then one element per list: its kind,
    side, entries ``[start, end)``, first bucket, bucket count and whether its members have stops
    (the fields of :class:`backtest.records.TriggerLists`, which :func:`backtest.engine.build_lists`
    assembles).
    """
    n = side.shape[0]
    G = N_GROUPS + 2
    # pass 1, on a sample: key ranges and sizes per group, to lay out the buckets. Any range
    # is correct (keys outside it go to the edge buckets); a good one keeps buckets even.
    stride = max(np.int64(1), n // 65536)
    cs = np.zeros(G, np.int64)
    lo = np.full(G, np.inf)
    hi = np.full(G, -np.inf)
    for i in range(0, n, stride):
        s = side[i]
        v = venue[i]
        if (s != 1 and s != -1) or v < 0 or v >= N_VENUE_SLOTS:
            continue  # pass 2 reports it
        g = _gid(s, v, stop[i], tier[i])
        cs[g] += 1
        _widen(lo, hi, g, _key(s, liq[i]))
        st = stop[i]
        if st == st:
            gs = G_STOP_LONG if s > 0 else G_STOP_SHORT
            cs[gs] += 1
            _widen(lo, hi, gs, _key(s, st))
    nreg, scale, boff, nb_total = _bucket_layout(cs, lo, hi, stride, bucket_size)
    # pass 2: check the codes and rates, count every bucket
    cnt = np.zeros(G, np.int64)
    gm = np.full(G, np.nan)
    bcount = np.zeros(nb_total + 1, np.int64)
    status = SORT_OK
    for i in range(n):
        s = side[i]
        v = venue[i]
        if (s != 1 and s != -1) or v < 0 or v >= N_VENUE_SLOTS:
            return _no_lists(SORT_BAD_CODE)
        g = _gid(s, v, stop[i], tier[i])
        cnt[g] += 1
        if cnt[g] == 1:
            gm[g] = mmr[i]
        elif mmr[i] != gm[g] and not (mmr[i] != mmr[i] and gm[g] != gm[g]):
            status = SORT_MIXED_MMR
        bcount[_bucket(_key(s, liq[i]), lo[g], scale[g], nreg[g], boff[g]) + 1] += 1
        st = stop[i]
        if st == st:
            gs = G_STOP_LONG if s > 0 else G_STOP_SHORT
            cnt[gs] += 1
            bcount[_bucket(_key(s, st), lo[gs], scale[gs], nreg[gs], boff[gs]) + 1] += 1
    if status != SORT_OK:
        return _no_lists(status)
    for b in range(nb_total):
        bcount[b + 1] += bcount[b]
    m = bcount[nb_total]
    # lists: liquidation groups first, stop lists last (group ids are laid out in that order)
    nl = 0
    for g in range(G):
        if cnt[g] > 0:
            nl += 1
    kind = np.zeros(nl, np.int64)
    lside = np.zeros(nl, np.int64)
    lstart = np.zeros(nl, np.int64)
    lend = np.zeros(nl, np.int64)
    first = np.zeros(nl, np.int64)
    nbk = np.zeros(nl, np.int64)
    has_stops = np.zeros(nl, np.bool_)
    li = 0
    for g in range(G):
        if cnt[g] == 0:
            continue
        kind[li], lside[li], has_stops[li] = _group_list(g)
        lstart[li] = bcount[boff[g]]
        lend[li] = bcount[boff[g] + nreg[g] + 1]
        first[li] = boff[g]
        nbk[li] = nreg[g] + 1
        li += 1
    bstart = bcount.copy()
    pos = bcount[:-1].copy()
    order = np.empty(m, np.int32)
    okey = np.empty(m)  # filled bucket by bucket when first entered (see sort_bucket)
    for i in range(n):
        s = side[i]
        g = _gid(s, venue[i], stop[i], tier[i])
        k = _key(s, liq[i])
        b = _bucket(k, lo[g], scale[g], nreg[g], boff[g])
        p = pos[b]
        pos[b] = p + 1
        order[p] = i
        st = stop[i]
        if st == st:
            gs = G_STOP_LONG if s > 0 else G_STOP_SHORT
            k = _key(s, st)
            b = _bucket(k, lo[gs], scale[gs], nreg[gs], boff[gs])
            p = pos[b]
            pos[b] = p + 1
            order[p] = i
    return order, okey, bstart, kind, lside, lstart, lend, first, nbk, has_stops, status


@njit(cache=True)
def _no_lists(status):
    """The empty result of :func:`build_lists_nb` with an error ``status``."""
    z = np.empty(0, np.int64)
    return (np.empty(0, np.int32), np.empty(0), np.zeros(1, np.int64), z, z, z, z, z, z, np.empty(0, np.bool_), status)


@njit(cache=True)
def _widen(lo, hi, g, k):
    """Widen group ``g``'s key range ``[lo[g], hi[g]]`` to a finite key ``k``."""
    if np.isfinite(k):
        lo[g] = min(lo[g], k)
        hi[g] = max(hi[g], k)


@njit(cache=True)
def _bucket_layout(cs, lo, hi, stride, bucket_size):
    """Per group (sampled counts ``cs`` at ``stride``, key ranges ``lo``/``hi``): its regular
    bucket count, key scale and first bucket, and the bucket total (each group also gets a
    last, "never triggers" bucket)."""
    G = cs.shape[0]
    nreg = np.zeros(G, np.int64)
    scale = np.zeros(G)
    boff = np.zeros(G, np.int64)
    nb_total = 0
    for g in range(G):
        nr = max(np.int64(1), cs[g] * stride // bucket_size)
        nreg[g] = nr
        if hi[g] > lo[g]:
            scale[g] = nr / (hi[g] - lo[g])
        boff[g] = nb_total
        nb_total += nr + 1  # + the "never" bucket
    return nreg, scale, boff, nb_total


@njit(cache=True)
def _group_list(g):
    """(kind, side, members have stops) of the list of group id ``g``."""
    if g >= N_GROUPS:
        return LIST_STOP, 1 if g == G_STOP_LONG else -1, False
    return LIST_LIQ, 1 if g >= N_VENUE_SLOTS * 2 * 256 else -1, (g // 256) % 2 == 1


@njit(cache=True)
def _gid(s, v, st, t):
    """Liquidation group of a position: (side, venue, has a stop, tier)."""
    return (((1 if s > 0 else 0) * N_VENUE_SLOTS + np.int64(v)) * 2 + (1 if st == st else 0)) * 256 + np.int64(t)


@njit(cache=True)
def _bucket(k, lo, scale, nreg, boff):
    if not np.isfinite(k):
        return boff + nreg  # the "never" bucket
    b = np.int64((k - lo) * scale)
    if b < 0:
        b = 0
    if b >= nreg:
        b = nreg - 1
    return boff + b


@njit(cache=True)
def sort_bucket(tl, book, s, e, kind, side, has_stops, has_closes):
    """Fill the keys of entries ``[s, e)`` of ``tl`` (a :class:`~backtest.records.TriggerLists`;
    one list: ``kind``, ``side``), sort them by key, and gather what the kernel reads of each
    triggered position (from ``book``, a :class:`~backtest.records.Book`) in list order.

    Keys are written here rather than in :func:`build_lists_nb`: a bucket the price never
    reaches costs nothing but its index entries. The sort splits the bucket's key range evenly
    into about one sub-bucket per entry (a counting pass), then insertion-sorts (sub-buckets of
    a few entries; big ones - clustered keys - are sorted with ``argsort``): linear time on the
    near-uniform keys of a bucket. Ties may come in any order (they trigger together).
    The payload - ``qw`` = qty x weight, ``weight``, ``bankruptcy`` = the bankruptcy price before
    funding, ``stop`` (liquidation lists whose members have stops), ``close`` (the voluntary close
    time, lists whose members have one) - is computed with
    the same expressions as from the population arrays, so the kernel reads it sequentially
    instead of gathering it position by position, once per bucket however many runs share the
    lists.
    """
    order = tl.order
    okey = tl.key
    liq = book.liq
    stop = book.stop
    weight = book.weight
    qty = book.qty
    m = e - s
    kmin = np.inf
    kmax = -np.inf
    finite = True
    for j in range(s, e):
        i = order[j]
        k = _key(side, liq[i] if kind == LIST_LIQ else stop[i])
        okey[j] = k
        if not np.isfinite(k):
            finite = False
        else:
            kmin = min(kmin, k)
            kmax = max(kmax, k)
    nsb = m
    sscale = nsb / (kmax - kmin) if kmax > kmin else 0.0
    if m <= 48 or not finite or not (sscale > 0.0 and np.isfinite(sscale)):
        if not finite or m <= 48 or kmax > kmin:
            _sort_range(order, okey, s, e)
        # else: all keys equal, already in order
    else:
        cnt = np.zeros(nsb + 1, np.int64)
        sb = np.empty(m, np.int32)
        for t in range(m):
            b = np.int64((okey[s + t] - kmin) * sscale)  # monotone in the key
            if b >= nsb:
                b = nsb - 1
            if b < 0:
                b = 0
            sb[t] = b
            cnt[b + 1] += 1
        for b in range(nsb):
            cnt[b + 1] += cnt[b]
        tk = np.empty(m)
        to = np.empty(m, np.int32)
        for t in range(m):
            b = sb[t]
            q = cnt[b]
            cnt[b] = q + 1
            tk[q] = okey[s + t]
            to[q] = order[s + t]
        # cnt[b] is now the end of sub-bucket b (the start of b + 1)
        a = 0
        for b in range(nsb):
            z = cnt[b]
            if z - a > 1:
                _sort_range(to, tk, a, z)
            a = z
        okey[s:e] = tk
        order[s:e] = to
    for j in range(s, e):
        i = order[j]
        w = np.float64(weight[i])
        tl.weight[j] = weight[i]
        tl.qw[j] = qty[i] * w
        tl.bankruptcy[j] = bankruptcy_base(side, book.entry[i], book.margin[i], qty[i])
        if has_stops:
            tl.stop[j] = stop[i]
        if has_closes:
            tl.close[j] = book.close_time[i]


@njit(cache=True)
def _sort_range(order, okey, s, e):
    """Sort ``okey[s:e]`` ascending, moving ``order`` along (insertion sort when short)."""
    if e - s <= 48:
        for j in range(s + 1, e):
            key = okey[j]
            ij = order[j]
            k = j - 1
            while k >= s and okey[k] > key:
                okey[k + 1] = okey[k]
                order[k + 1] = order[k]
                k -= 1
            okey[k + 1] = key
            order[k + 1] = ij
        return
    idx = np.argsort(okey[s:e])
    ko = okey[s:e][idx]
    oo = order[s:e][idx]
    okey[s:e] = ko
    order[s:e] = oo


@njit(cache=True)
def build_cohort_lists_nb(side, venue, tier, mmr, liq, stop, rows, cstart, bucket_size):
    """:func:`build_lists_nb` on each cohort of rows, its buckets compacted and the cohorts
    concatenated, in one call (the layout :func:`backtest.engine.build_lists` assembles).

    Cohort ``c`` is the population rows ``rows[cstart[c]:cstart[c + 1]]`` (int64 indices, in the
    order :func:`build_lists_nb` would see them; cohorts may not be empty). Each cohort's lists
    keep only the buckets of their own groups, in list order; entries, buckets and lists of cohort
    ``c`` follow those of ``c - 1``. Returns ``(order, okey, bstart, kind, side, start, end,
    first_bucket, n_buckets, has_stops, cohort, status)``: the fields of :func:`build_lists_nb`
    (``order`` holding population rows) plus ``cohort`` (int64, one per list: its cohort);
    ``status`` is the first failing cohort's (then the arrays are empty).

    The same arithmetic as :func:`build_lists_nb` (same sample stride, ranges, bucket counts and
    placement), but over the groups a cohort has rather than all :data:`N_GROUPS` (a cohort of
    in-window openings is a few hundred rows in a handful of groups): the cost is linear in the
    rows, not in cohorts x groups. Tests compare it with one ``build_lists_nb`` per cohort.
    """
    nc = cstart.shape[0] - 1
    n = rows.shape[0]
    G = N_GROUPS + 2
    # upper bounds: a row is in at most two lists (its group's and its side's stop list); a
    # cohort of k rows has at most 2 k lists of n_regular + 1 buckets each, n_regular <= 1 + the
    # group's sampled count x stride / bucket_size (at most 4 k entries over the cohort)
    m_cap = 2 * n
    l_cap = 2 * n
    b_cap = 8 * n + 1
    order = np.empty(m_cap, np.int32)
    bst = np.empty(b_cap + 1, np.int64)
    kind = np.empty(l_cap, np.int64)
    lside = np.empty(l_cap, np.int64)
    lstart = np.empty(l_cap, np.int64)
    lend = np.empty(l_cap, np.int64)
    first = np.empty(l_cap, np.int64)
    nbk = np.empty(l_cap, np.int64)
    hs = np.empty(l_cap, np.bool_)
    coh = np.empty(l_cap, np.int64)
    gmap = np.full(G, -1, np.int64)  # group id -> its rank among the cohort's groups
    rg = np.empty(n, np.int64)  # per row of a cohort: its liquidation group's rank
    rs = np.empty(n, np.int64)  # its stop list's rank (-1: no stop)
    used = np.empty(min(G, 2 * n + 2), np.int64)
    # the rows' fields in cohort order, gathered once: every pass below reads them sequentially
    side, venue, tier, mmr, liq, stop = _gather6(side, venue, tier, mmr, liq, stop, rows)
    m_off = 0
    b_off = 0
    l_off = 0
    for c in range(nc):
        a0 = cstart[c]
        k = cstart[c + 1] - a0
        # the cohort's groups, ascending (the order build_lists_nb lays its lists in)
        u = 0
        for t in range(k):
            i = a0 + t
            s = side[i]
            v = venue[i]
            if (s != 1 and s != -1) or v < 0 or v >= N_VENUE_SLOTS:
                return _no_cohort_lists(SORT_BAD_CODE)
            g = _gid(s, v, stop[i], tier[i])
            if gmap[g] < 0:
                gmap[g] = 0
                used[u] = g
                u += 1
            st = stop[i]
            if st == st:
                gs = G_STOP_LONG if s > 0 else G_STOP_SHORT
                if gmap[gs] < 0:
                    gmap[gs] = 0
                    used[u] = gs
                    u += 1
        ug = np.sort(used[:u])
        for r in range(u):
            gmap[ug[r]] = r
        for t in range(k):
            i = a0 + t
            s = side[i]
            rg[t] = gmap[_gid(s, venue[i], stop[i], tier[i])]
            st = stop[i]
            rs[t] = gmap[G_STOP_LONG if s > 0 else G_STOP_SHORT] if st == st else -1
        # pass 1, on the same sample as build_lists_nb: key ranges and sizes per group
        stride = max(np.int64(1), k // 65536)
        cs = np.zeros(u, np.int64)
        lo = np.full(u, np.inf)
        hi = np.full(u, -np.inf)
        for t in range(0, k, stride):
            i = a0 + t
            s = side[i]
            r = rg[t]
            cs[r] += 1
            _widen(lo, hi, r, _key(s, liq[i]))
            r = rs[t]
            if r >= 0:
                cs[r] += 1
                _widen(lo, hi, r, _key(s, stop[i]))
        nreg, scale, boff, nb_total = _bucket_layout(cs, lo, hi, stride, bucket_size)
        # pass 2: the rates, every bucket's count
        cnt = np.zeros(u, np.int64)
        gm = np.full(u, np.nan)
        bcount = np.zeros(nb_total + 1, np.int64)
        for t in range(k):
            i = a0 + t
            s = side[i]
            r = rg[t]
            cnt[r] += 1
            if cnt[r] == 1:
                gm[r] = mmr[i]
            elif mmr[i] != gm[r] and not (mmr[i] != mmr[i] and gm[r] != gm[r]):
                return _no_cohort_lists(SORT_MIXED_MMR)
            bcount[_bucket(_key(s, liq[i]), lo[r], scale[r], nreg[r], boff[r]) + 1] += 1
            r = rs[t]
            if r >= 0:
                cnt[r] += 1
                bcount[_bucket(_key(s, stop[i]), lo[r], scale[r], nreg[r], boff[r]) + 1] += 1
        for b in range(nb_total):
            bcount[b + 1] += bcount[b]
        for r in range(u):
            g = ug[r]
            q = l_off + r
            kind[q], lside[q], hs[q] = _group_list(g)
            lstart[q] = bcount[boff[r]] + m_off
            lend[q] = bcount[boff[r] + nreg[r] + 1] + m_off
            first[q] = b_off + boff[r]
            nbk[q] = nreg[r] + 1
            coh[q] = c
        for b in range(nb_total):
            bst[b_off + b] = bcount[b] + m_off
        pos = bcount[:-1].copy()
        for t in range(k):
            i = a0 + t
            s = side[i]
            r = rg[t]
            b = _bucket(_key(s, liq[i]), lo[r], scale[r], nreg[r], boff[r])
            p = pos[b]
            pos[b] = p + 1
            order[m_off + p] = np.int32(rows[i])
            r = rs[t]
            if r >= 0:
                b = _bucket(_key(s, stop[i]), lo[r], scale[r], nreg[r], boff[r])
                p = pos[b]
                pos[b] = p + 1
                order[m_off + p] = np.int32(rows[i])
        for r in range(u):
            gmap[ug[r]] = -1
        l_off += u
        b_off += nb_total
        m_off += bcount[nb_total]
    bst[b_off] = m_off
    return (order[:m_off].copy(), np.empty(m_off), bst[: b_off + 1].copy(), kind[:l_off].copy(), lside[:l_off].copy(),
            lstart[:l_off].copy(), lend[:l_off].copy(), first[:l_off].copy(), nbk[:l_off].copy(), hs[:l_off].copy(),
            coh[:l_off].copy(), SORT_OK)


@njit(cache=True)
def _no_cohort_lists(status):
    """The empty result of :func:`build_cohort_lists_nb` with an error ``status``."""
    z = np.empty(0, np.int64)
    return (np.empty(0, np.int32), np.empty(0), np.zeros(1, np.int64), z, z, z, z, z, z, np.empty(0, np.bool_), z, status)


@njit(cache=True)
def _gather6(a, b, c, d, e, f, rows):
    """The six columns at ``rows``, in one pass (fancy indexing makes six)."""
    n = rows.shape[0]
    a2 = np.empty(n, a.dtype)
    b2 = np.empty(n, b.dtype)
    c2 = np.empty(n, c.dtype)
    d2 = np.empty(n, d.dtype)
    e2 = np.empty(n, e.dtype)
    f2 = np.empty(n, f.dtype)
    for t in range(n):
        i = rows[t]
        a2[t] = a[i]
        b2[t] = b[i]
        c2[t] = c[i]
        d2[t] = d[i]
        e2[t] = e[i]
        f2[t] = f[i]
    return a2, b2, c2, d2, e2, f2
