"""numba kernels of the population builder (plain @njit(cache=True, error_model="numpy") functions over arrays).

Randomness is counter-based: the k-th uniform of candidate i is a SplitMix64 hash of
``(seed, i, k)``, so a population depends only on the seed and the inputs - not on chunking,
threads or the order in which candidates are drawn.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest.margin import _clip_side, liq_price_binance_nb, liq_price_entry_rate_nb, solve_liq_linear_nb, tier_index_nb

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53
N_STREAMS = 4


@njit(cache=True, error_model="numpy", inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, error_model="numpy", inline="always")
def uniform(key, i, k):
    """Uniform in (0, 1): SplitMix64 of (key, i, k). ``key`` is the mixed seed."""
    z = key + (np.uint64(i) * np.uint64(N_STREAMS) + np.uint64(k) + np.uint64(1)) * _GOLDEN
    return (np.float64(_mix(z) >> np.uint64(11)) + 0.5) * _INV53


@njit(cache=True, error_model="numpy")
def seed_key(seed):
    return _mix(np.uint64(seed) * _GOLDEN + np.uint64(0x632BE59BD9B4E019))


@njit(cache=True, error_model="numpy")
def guide_table(cdf):
    """Guide (cut-point) table for O(1) expected inverse-CDF sampling over ``cdf`` (last = 1)."""
    m = cdf.shape[0]
    g = np.empty(m, dtype=np.int64)
    j = 0
    for k in range(m):
        thr = k / m
        while j < m - 1 and cdf[j] <= thr:
            j += 1
        g[k] = j
    return g


@njit(cache=True, error_model="numpy", inline="always")
def sample_index(cdf, guide, u):
    m = cdf.shape[0]
    j = guide[min(int(u * m), m - 1)]
    while j < m - 1 and cdf[j] <= u:
        j += 1
    return j


@njit(cache=True, error_model="numpy")
def suffix_extrema(low, high):
    """``smin[j] = min(low[j+1:])`` and ``smax[j] = max(high[j+1:])`` (inf / -inf past the end)."""
    n = low.shape[0]
    smin = np.empty(n)
    smax = np.empty(n)
    lo = np.inf
    hi = -np.inf
    for j in range(n - 1, -1, -1):
        smin[j] = lo
        smax[j] = hi
        if low[j] < lo:
            lo = low[j]
        if high[j] > hi:
            hi = high[j]
    return smin, smax


@njit(cache=True, error_model="numpy")
def range_extrema(low, high, a, b):
    """``(min(low[a[i]:b[i]]), max(high[a[i]:b[i]]))`` per ``i`` (inf / -inf for an empty range).
    The ranges are short (the fine bars inside one coarse bar), so a plain loop is the fast way."""
    n = a.shape[0]
    rmin = np.empty(n)
    rmax = np.empty(n)
    for i in range(n):
        lo = np.inf
        hi = -np.inf
        for k in range(a[i], b[i]):
            if low[k] < lo:
                lo = low[k]
            if high[k] > hi:
                hi = high[k]
        rmin[i] = lo
        rmax[i] = hi
    return rmin, rmax


@njit(cache=True, error_model="numpy", inline="always")
def _hash(key, i, k):
    return _mix(key + (np.uint64(i) * np.uint64(N_STREAMS) + np.uint64(k) + np.uint64(1)) * _GOLDEN)


@njit(cache=True, error_model="numpy", inline="always")
def _u16(h, slot):
    return (np.float64((h >> np.uint64(16 * slot)) & np.uint64(0xFFFF)) + 0.5) * (1.0 / 65536.0)


@njit(cache=True, error_model="numpy", inline="always")
def _u32(h, slot):
    return (np.float64((h >> np.uint64(32 * slot)) & np.uint64(0xFFFFFFFF)) + 0.5) * (1.0 / 4294967296.0)


PARETO_BINS = 4096
PARETO_CUT = 1.0 - 1.0 / 64.0


@njit(cache=True, error_model="numpy")
def pareto_table(size_min, size_max, size_alpha):
    """Truncated-Pareto inverse CDF on ``PARETO_BINS`` equal steps of u in [0, PARETO_CUT]
    (linear interpolation between them is within ~3e-5 relative of the exact quantile;
    u above the cut is computed exactly)."""
    tail = 1.0 - (size_min / size_max) ** size_alpha
    tab = np.empty(PARETO_BINS + 1)
    for b in range(PARETO_BINS + 1):
        u = PARETO_CUT * b / PARETO_BINS
        tab[b] = size_min * (1.0 - u * tail) ** (-1.0 / size_alpha)
    return tab


@njit(cache=True, error_model="numpy", inline="always")
def pareto_quantile(u, tab, size_min, tail, inv_alpha):
    if u < PARETO_CUT:
        x = u * (PARETO_BINS / PARETO_CUT)
        b = int(x)
        f = x - b
        return tab[b] + f * (tab[b + 1] - tab[b])
    return size_min * np.exp(inv_alpha * np.log(1.0 - u * tail))


@njit(cache=True, error_model="numpy", inline="always")
def table_quantile(u, tab):
    """Quantile at ``u`` in (0, 1) of a distribution tabulated at ``u = k / (len(tab) - 1)``
    (linear interpolation between the nodes; the end nodes hold the quantiles of the first and
    last half step, so the draws are bounded)."""
    m = tab.shape[0] - 1
    x = u * m
    b = int(x)
    if b >= m:
        return tab[m]
    f = x - b
    return tab[b] + f * (tab[b + 1] - tab[b])


@njit(cache=True, error_model="numpy", inline="always")
def binance_liq_from_tier(s, entry, qty, margin, t0, t_lo, t_hi, t_mmr, t_cum):
    """Binance linear liquidation price starting from the entry tier ``t0``: the common case
    (the notional at the price stays in ``t0``) costs one solve and one comparison; otherwise
    the general search :func:`backtest.margin.liq_price_binance_nb` runs."""
    p = solve_liq_linear_nb(s, entry, qty, margin, t_mmr[t0], t_cum[t0])
    if s > 0:
        if not (p > 0.0):
            if t0 == 0:
                return 0.0, t0
            return liq_price_binance_nb(s, entry, qty, margin, t_lo, t_hi, t_mmr, t_cum, 0, 1.0)
        nl = qty * p
        if nl > t_lo[t0] or t0 == 0:
            return p, t0
    else:
        if not (p > 0.0) or not np.isfinite(p):
            return np.inf, t0
        nl = qty * p
        if nl <= t_hi[t0]:
            return p, t0
    return liq_price_binance_nb(s, entry, qty, margin, t_lo, t_hi, t_mmr, t_cum, 0, 1.0)


@njit(cache=True, error_model="numpy")
def synthesize_nb(
    n_out, seed, max_tries,
    cdf, guide, bar_ts, bar_dur, bar_low, bar_high, suf_min, suf_max,
    long_share, lev_values, lev_cdf, lev_scale, lev_slope,
    size_min, size_max, size_alpha,
    iso_share, extra_tab, stop_share, stop_dist,
    venue, fee_rate, t_lo, t_hi, t_mmr, t_cum, t_lev,
    o_side, o_mode, o_venue, o_tier, o_entry, o_qty, o_margin, o_mmr, o_cum, o_open, o_stop, o_liq, o_lev,
):
    """Draw candidates until ``n_out`` survive the lookback path; write survivors to ``o_*``.

    Per candidate ``i`` SplitMix64 hashes of ``(seed, i, k)`` give: (k=0) 16-bit uniforms for the
    side (long with prob ``long_share``), margin mode (isolated with prob ``iso_share``), stop
    flag (prob ``stop_share``) and leverage (from the mix); (k=1) 32-bit uniforms for the opening
    bar (inverse CDF of ``cdf``: volume x turnover survival) and the open time (uniform in the
    bar); (k=2) 32-bit uniforms for the entry (uniform in the bar's [low, high]) and the notional
    (truncated Pareto(``size_alpha``) on [size_min, size_max], via :func:`pareto_quantile`);
    (k=3, cross positions and stops) 32-bit uniforms for the excess collateral (slot 0: the
    quantile table ``extra_tab``, see :func:`table_quantile`) and the stop distance (slot 1:
    exponential, mean ``stop_dist``, capped at 90 % of the distance to liquidation). Leverage =
    mix value x ``lev_scale`` x ``(notional / size_min) ** -lev_slope`` (leverage falls with
    size), capped by the entry tier's max leverage (>= 1); cross collateral = initial margin x
    (1 + excess). The candidate survives unless a later bar's low (high) reaches the long's
    (short's) liquidation or stop price.

    Returns ``(written, tried, died_liquidated, died_stopped, long_notional, short_notional)``
    (notionals of the written rows at entry, unweighted).
    """
    key = seed_key(seed)
    n_lev = lev_values.shape[0]
    tail = 1.0 - (size_min / size_max) ** size_alpha
    inv_alpha = -1.0 / size_alpha
    ptab = pareto_table(size_min, size_max, size_alpha)
    ftab = (ptab / size_min) ** (-lev_slope)  # leverage factor at the same nodes
    lev_guide = guide_table(lev_cdf)
    top = t_hi[t_hi.shape[0] - 1]
    count = 0
    i = 0
    died_liq = 0
    died_stop = 0
    long_n = 0.0
    short_n = 0.0
    while count < n_out and i < max_tries:
        h0 = _hash(key, i, 0)
        h1 = _hash(key, i, 1)
        h2 = _hash(key, i, 2)
        s = 1 if _u16(h0, 0) < long_share else -1
        j = sample_index(cdf, guide, _u32(h1, 0))
        lo_j = bar_low[j]
        entry = lo_j + _u32(h2, 0) * (bar_high[j] - lo_j)
        u_size = _u32(h2, 1)
        notional = pareto_quantile(u_size, ptab, size_min, tail, inv_alpha)
        if lev_slope != 0.0:
            lev_f = pareto_quantile(u_size, ftab, 1.0, 0.0, 0.0) if u_size < PARETO_CUT else (notional / size_min) ** (-lev_slope)
        else:
            lev_f = 1.0
        if notional > top:
            notional = top
        k = sample_index(lev_cdf, lev_guide, _u16(h0, 3))
        lev = lev_values[k] * lev_scale * lev_f
        t0 = tier_index_nb(notional, t_lo, t_hi)
        if lev > t_lev[t0]:
            lev = t_lev[t0]
        if lev < 1.0:
            lev = 1.0
        qty = notional / entry
        iso = _u16(h0, 1) < iso_share
        margin = notional / lev
        stop_on = _u16(h0, 2) < stop_share
        h3 = _hash(key, i, 3) if (stop_on or not iso) else np.uint64(0)
        if not iso:
            margin *= 1.0 + table_quantile(_u32(h3, 0), extra_tab)
        if venue == 0:
            # common case inline (the notional at the price stays in the entry tier); anything
            # else goes through binance_liq_from_tier, which gives the same price there
            liq = solve_liq_linear_nb(s, entry, qty, margin, t_mmr[t0], t_cum[t0])
            t = t0
            nl = qty * liq
            if s > 0:
                if not (liq > 0.0 and (nl > t_lo[t0] or t0 == 0)):
                    liq, t = binance_liq_from_tier(s, entry, qty, margin, t0, t_lo, t_hi, t_mmr, t_cum)
            elif not (liq > 0.0 and nl <= t_hi[t0]):
                liq, t = binance_liq_from_tier(s, entry, qty, margin, t0, t_lo, t_hi, t_mmr, t_cum)
            if t < 0:
                i += 1
                continue
            rate = t_mmr[t]
        else:
            t = t0
            rate = t_mmr[t]
            if venue == 4:
                rate = 1.0 / (2.0 * t_lev[t])
            liq = _clip_side(s, liq_price_entry_rate_nb(venue, s, entry, qty, margin, rate, t_cum[t], fee_rate, 0, 1.0))
        # liquidated later in the lookback?
        if (s > 0 and suf_min[j] <= liq) or (s < 0 and suf_max[j] >= liq):
            died_liq += 1
            i += 1
            continue
        stop = np.nan
        if stop_on:
            d = -stop_dist * np.log(_u32(h3, 1))
            if s > 0:
                ld = (entry - liq) / entry
            else:
                ld = (liq - entry) / entry
            if d > 0.9 * ld:
                d = 0.9 * ld
            stop = entry * (1.0 - s * d)
            if (s > 0 and suf_min[j] <= stop) or (s < 0 and suf_max[j] >= stop):
                died_stop += 1
                i += 1
                continue
        o_side[count] = s
        o_mode[count] = 0 if iso else 1
        o_venue[count] = venue
        o_tier[count] = t
        o_entry[count] = entry
        o_qty[count] = qty
        o_margin[count] = margin
        o_mmr[count] = rate
        o_cum[count] = t_cum[t]
        o_open[count] = bar_ts[j] + np.int64(_u32(h1, 1) * bar_dur[j])
        o_stop[count] = stop
        o_liq[count] = liq
        o_lev[count] = lev
        if s > 0:
            long_n += notional
        else:
            short_n += notional
        count += 1
        i += 1
    return count, i, died_liq, died_stop, long_n, short_n


@njit(cache=True, error_model="numpy")
def set_weights(side, w_long, w_short, weight):
    for i in range(side.shape[0]):
        weight[i] = w_long if side[i] > 0 else w_short


@njit(cache=True, error_model="numpy")
def weighted_notionals(side, entry, qty, weight):
    """(long, short) open notional ``sum(weight*entry*qty)`` in float64, no temporaries."""
    a = 0.0
    b = 0.0
    for i in range(side.shape[0]):
        v = np.float64(weight[i]) * entry[i] * qty[i]
        if side[i] > 0:
            a += v
        else:
            b += v
    return a, b


@njit(cache=True, error_model="numpy")
def side_notionals(side, entry, qty):
    """(long notional, short notional) at entry, float64 accumulation."""
    a = 0.0
    b = 0.0
    for i in range(side.shape[0]):
        v = entry[i] * qty[i]
        if side[i] > 0:
            a += v
        else:
            b += v
    return a, b


@njit(cache=True, error_model="numpy")
def row_uniforms(seed, n, stream):
    """``n`` uniforms in (0, 1), the i-th a SplitMix64 hash of ``(seed, i, stream)`` (counter-based:
    the same seed gives the same draws whatever else is drawn)."""
    key = seed_key(seed)
    out = np.empty(n)
    for i in range(n):
        out[i] = uniform(key, i, stream)
    return out


@njit(cache=True, error_model="numpy")
def close_bars(u, first_bar, cum_hazard):
    """Bar of each row's voluntary close: the first bar ``j >= first_bar[i]`` at which the
    cumulative hazard since ``first_bar[i]`` reaches the row's exponential draw ``-log(u[i])``
    (``cum_hazard[j]`` = hazard of bars ``0..j``); ``len(cum_hazard)`` when it never closes."""
    n = u.shape[0]
    m = cum_hazard.shape[0]
    out = np.empty(n, np.int64)
    for i in range(n):
        a = first_bar[i]
        if a >= m:
            out[i] = m
            continue
        base = cum_hazard[a - 1] if a > 0 else 0.0
        target = base - np.log(u[i])
        lo = a
        hi = m
        while lo < hi:  # first j in [a, m) with cum_hazard[j] >= target
            mid = (lo + hi) // 2
            if cum_hazard[mid] >= target:
                hi = mid
            else:
                lo = mid + 1
        out[i] = lo
    return out
