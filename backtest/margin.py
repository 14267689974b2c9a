"""Exchange margin rules: tiers, liquidation and bankruptcy prices, fees, ADL ranking.

One place for each venue's formulas; every formula cites the rule it implements. Units follow
:mod:`backtest.records`: prices in quote currency, ``qty`` in base units for linear contracts and
in contracts for inverse ones (``contract_size`` USD each), wallet balances in the margin currency
(USDT for linear, the coin for inverse), ``side`` +1 long / -1 short.

Venue rule families (``venue`` argument):

``binance``
    Binance USDⓈ-M (linear) and COIN-M (inverse), isolated and cross, one-way mode. Maintenance
    margin ``MM = notional * MMR - cum`` with the bracket (tier) **of the notional at the
    liquidation price**; when that bracket differs from the entry bracket the price is recomputed
    with the new bracket (Binance COIN-M FAQ: "If your position (calculated at the liquidation
    price) and the current position (calculated at the opening price) are of different levels,
    then you must substitute [...] the maintenance margin rate and the maintenance margin amount of
    the position level, to recalculate the liquidation price"; we apply the same rule to USDⓈ-M,
    as DESIGN §5 asks - both FAQs define MMR and cum per bracket of the position's notional).
    Sources: Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts"
    (https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93) and "How to
    Calculate Liquidation Price of COIN-M Futures Contracts"
    (https://www.binance.com/en/support/faq/ceccfcfb4e3a45e3b48b0b1bb1a8ae46).
``bybit``
    Maintenance margin at the **entry** position value: ``MM = value_entry * MMR - deduction``
    (+ the estimated fee to close at the bankruptcy price when ``fee_rate`` is given);
    ``LP = entry - side * (IM + extra margin - MM) / qty``. Sources: Bybit help centre
    "Liquidation Price (USDT Contract)" and "Liquidation Price Calculation under Isolated Mode
    (Unified Trading Account)"; inverse cross: "How to calculate Liquidation Price (Inverse
    Contract)" (https://help.bybit.com/hc/en-us/articles/360039261334).
``okx``, ``gate``
    The taker fee rate is added to the maintenance margin rate: the position is liquidated when
    equity reaches ``notional(P) * (MMR + fee)``. Gate: "Liquidation Price = (Entry Price ±
    Margin / Contract Multiplier / Size) / [1 ± (Maintenance Margin Ratio + Taker Rate)]"
    (https://www.gate.io/help/futures/perpetual/22160/calculation-of-liquidation-price, quoted in
    freqtrade ``exchange.py``). OKX: liquidation when margin ratio = equity / (maintenance margin +
    fees) reaches 100 % (OKX help "Isolated margin mode", https://www.okx.com/help-center/6997123251341).
``hyperliquid``
    ``MMR = 1 / (2 * max leverage)`` ("the maintenance margin is half of the initial margin at max
    leverage"), no maintenance amount unless given; ``liq_price = price - side * margin_available
    / position_size / (1 - l * side)``, ``l = 1 / maintenance_leverage``
    (https://hyperliquid.gitbook.io/hyperliquid-docs/trading/liquidations).

All formulas solve ``equity(P) = maintenance_margin(P)`` for the mark price ``P``. For a long
position whose collateral exceeds its notional the solution is <= 0: the position cannot be
liquidated and ``0.0`` is returned; the mirror case of a short returns ``inf``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from numba import njit

from backtest.errors import TierError
from backtest.records import (
    CROSS,
    INVERSE,
    ISOLATED,
    LINEAR,
    VENUE_BINANCE,
    VENUE_BYBIT,
    VENUE_GATE,
    VENUE_HYPERLIQUID,
    VENUE_OKX,
    VENUES,
)

# ------------------------------------------------------------------------------------------
# published fee rates (defaults; every call can override the rate)
# ------------------------------------------------------------------------------------------
#: Taker fee rate of a regular (non-VIP) account, per venue.
TAKER_FEE: dict[str, float] = {
    # Binance USDⓈ-M VIP 0 taker 0.0500 % (Binance fee schedule, https://www.binance.com/en/fee/futureFee)
    "binance": 0.0005,
    # Bybit non-VIP perpetual/futures taker 0.055 % (https://www.bybit.com/en/help-center/article/Trading-Fee-Structure)
    "bybit": 0.00055,
    # OKX regular user (Lv1) perpetual taker 0.050 % (https://www.okx.com/fees)
    "okx": 0.0005,
    # Gate futures taker 0.075 % as stated by Gate support together with its liquidation formula
    # (https://www.gate.com/post/status/3870211, 2023)
    "gate": 0.00075,
    # Hyperliquid perps base tier taker 0.045 % (https://hyperliquid.gitbook.io/hyperliquid-docs/trading/fees)
    "hyperliquid": 0.00045,
}

#: Liquidation clearance (insurance) fee rate charged on the liquidated notional, per venue.
CLEARANCE_FEE: dict[str, float] = {
    # Binance ``liquidationFee`` of BTCUSDT in /fapi/v1/exchangeInfo is "0.012500" (a recorded
    # exchangeInfo payload; the API docs' example shows "0.010000"). The fee is charged only
    # out of the remaining margin (Binance FAQ "Liquidation Protocols": "Insurance Clearance Fee").
    "binance": 0.0125,
    # Bybit: the position is taken over at the bankruptcy price; what margin remains goes to the
    # insurance fund - no separate clearance rate (Bybit "Liquidation Process (USDT Contract)").
    "bybit": 0.0,
    # OKX and Gate charge the taker fee on the forced close (the fee is part of their
    # maintenance requirement above); no extra clearance rate is modelled.
    "okx": 0.0,
    "gate": 0.0,
    # Hyperliquid liquidates through the book with no clearance fee; a backstop liquidation keeps
    # the maintenance margin for the liquidator vault (Hyperliquid docs "Liquidations").
    "hyperliquid": 0.0,
}

_SIDES = {1: 1, -1: -1, "long": 1, "short": -1, "buy": 1, "sell": -1}


# ------------------------------------------------------------------------------------------
# tiers (ccxt fetchLeverageTiers format)
# ------------------------------------------------------------------------------------------
def _num(x: Any, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise TierError(f"tier field {what}={x!r} is not a number") from None
    if math.isnan(v):
        raise TierError(f"tier field {what} is NaN")
    return v


def tier_arrays(tiers: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ccxt tier list -> ``(notional_floor, notional_cap, mmr, cum, max_leverage)`` float64 arrays.

    ``cum`` (Binance's maintenance amount) is read from ``info.cum`` when present; otherwise it is
    derived so that ``MM = N * mmr - cum`` is continuous across tiers, which is how Binance
    defines it ("Maintenance Amount on Level n = Floor of Level n * (MMR_n - MMR_{n-1}) + Amount on
    Level n-1", Binance COIN-M liquidation FAQ). Raises :class:`backtest.errors.TierError` (a ``ValueError`` too) for an empty, unsorted or
    gapped list, or a rate outside [0, 1).
    """
    if tiers is None or len(tiers) == 0:
        raise TierError("tier list is empty; pass a ccxt fetchLeverageTiers list for the symbol")
    if isinstance(tiers, tuple) and len(tiers) == 5 and all(isinstance(a, np.ndarray) for a in tiers):
        return tiers  # already arrays
    rows = sorted(tiers, key=lambda t: _num(t.get("minNotional", 0.0), "minNotional"))
    n = len(rows)
    lo = np.empty(n)
    hi = np.empty(n)
    mmr = np.empty(n)
    cum = np.empty(n)
    lev = np.empty(n)
    for i, t in enumerate(rows):
        lo[i] = _num(t.get("minNotional", 0.0), "minNotional")
        hi[i] = _num(t.get("maxNotional", math.inf) if t.get("maxNotional") is not None else math.inf, "maxNotional")
        mmr[i] = _num(t.get("maintenanceMarginRate"), "maintenanceMarginRate")
        lev[i] = _num(t.get("maxLeverage"), "maxLeverage")
        info = t.get("info") or {}
        c = info.get("cum") if isinstance(info, dict) else None
        if c is None:
            c = t.get("maintAmt")  # freqtrade's field name
        if c is None:
            cum[i] = 0.0 if i == 0 else lo[i] * (mmr[i] - mmr[i - 1]) + cum[i - 1]
        else:
            cum[i] = _num(c, "cum")
        if not (0.0 <= mmr[i] < 1.0):
            raise TierError(f"tier {i + 1}: maintenance margin rate {mmr[i]} is outside [0, 1)")
        if not lev[i] >= 1.0:
            raise TierError(f"tier {i + 1}: max leverage {lev[i]} is below 1")
        if hi[i] <= lo[i]:
            raise TierError(f"tier {i + 1}: maxNotional {hi[i]} is not above minNotional {lo[i]}")
        if i and abs(lo[i] - hi[i - 1]) > 1e-9 * max(1.0, hi[i - 1]):
            raise TierError(f"tiers {i} and {i + 1} leave a gap or overlap: {hi[i - 1]} then {lo[i]}")
    return lo, hi, mmr, cum, lev


@njit(cache=True, error_model="numpy")
def notional_usd_nb(contract, qty, contract_size, price):
    """Notional in quote currency (USD) at ``price``: ``qty × price`` for a linear contract
    (``contract == 0``, qty in base units), ``qty × contract_size / price`` for an inverse one
    (qty in contracts of ``contract_size`` USD, notional then in base units, as Binance COIN-M tiers)."""
    if contract == 0:
        return qty * price
    return qty * contract_size / price


@njit(cache=True, error_model="numpy")
def liq_solve_nb(contract, side, entry, qty, contract_size, equity0, mmr, cum):
    """The liquidation price under one (mmr, cum) rule, linear or inverse."""
    if contract == 0:
        return solve_liq_linear_nb(side, entry, qty, equity0, mmr, cum)
    return solve_liq_inverse_nb(side, entry, qty * contract_size, equity0, mmr, cum)


@njit(cache=True, error_model="numpy")
def tier_index_nb(notional, lo, hi):
    """Index of the tier whose (floor, cap] holds ``notional`` (Binance's ``notionalFloor`` /
    ``notionalCap``: a notional equal to a cap belongs to that bracket; 0 to the first);
    -1 when the notional is outside the table. The convention only decides which tier's max
    leverage applies at an exact boundary: MM itself is continuous there."""
    n = lo.shape[0]
    if notional < lo[0] or notional > hi[n - 1]:
        return -1
    for i in range(n):
        if notional <= hi[i]:
            return i
    return n - 1


@njit(cache=True, error_model="numpy")
def maintenance_margin_nb(notional, lo, hi, mmr, cum):
    """``notional * MMR - cum`` of the tier holding ``notional`` (NaN outside the table)."""
    t = tier_index_nb(notional, lo, hi)
    if t < 0:
        return np.nan
    return notional * mmr[t] - cum[t]


@njit(cache=True, error_model="numpy")
def position_maint_margin_nb(qty, mark, mmr, cum):
    """Maintenance margin (USD) of one linear position at ``mark`` with its tier's rate ``mmr`` and
    amount ``cum`` (Binance ``notional * MMR - cum``; Bybit / OKX / Gate / Hyperliquid take
    ``cum`` 0 or their own deduction): ``qty * mark * mmr - cum``, never below 0. The tier is the
    row's (``records.POPULATION_FIELDS`` ``tier``: for Binance the bracket at its liquidation
    notional), held while the mark moves. Used by the cross-account engine
    (:mod:`backtest.kernels.accounts`): an account is liquidated when its wallet plus the
    unrealised PnL of its cross positions falls below the sum of these."""
    m = qty * mark * mmr - cum
    return m if m > 0.0 else 0.0


@njit(cache=True, error_model="numpy")
def position_upnl_nb(side, qty, entry, mark):
    """Unrealised PnL (USD) of one linear position at ``mark``: ``side * qty * (mark - entry)``."""
    return side * qty * (mark - entry)


def tier_for_notional(tiers: Any, notional: float) -> tuple[int, float, float, float]:
    """``(index, mmr, cum, max_leverage)`` of the tier holding ``notional`` (ValueError if none)."""
    lo, hi, mmr, cum, lev = tier_arrays(tiers)
    if not np.isfinite(notional) or notional < 0:
        raise ValueError(f"notional {notional} must be a finite non-negative number")
    i = int(tier_index_nb(float(notional), lo, hi))
    if i < 0:
        raise ValueError(f"the tier list covers notional {lo[0]:,.0f} to {hi[-1]:,.0f}; {notional:,.2f} is outside it")
    return i, float(mmr[i]), float(cum[i]), float(lev[i])


def hyperliquid_mmr(max_leverage: float) -> float:
    """Hyperliquid maintenance rate: half the initial margin at max leverage, 1 / (2 * max_lev)."""
    if not (max_leverage >= 1.0):
        raise ValueError(f"max leverage {max_leverage} must be >= 1")
    return 1.0 / (2.0 * float(max_leverage))


# ------------------------------------------------------------------------------------------
# scalar kernels (numba): shared by the public functions, the population builder and kernels
# ------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def solve_liq_linear_nb(side, entry, qty, equity0, mmr, cum):
    """Linear contract, MM proportional to the notional at the price ``P``.

    Solves ``equity0 + side*qty*(P - entry) = qty*P*mmr - cum`` (``equity0`` = wallet balance
    + other positions' unrealised PnL - their maintenance margin), i.e. Binance's
    ``LP = (WB - TMM + UPNL + cum - side*qty*EP) / (qty*MMR - side*qty)``.
    """
    return (equity0 + cum - side * qty * entry) / (qty * mmr - side * qty)


@njit(cache=True, error_model="numpy")
def solve_liq_inverse_nb(side, entry, q_usd, equity0, mmr, cum):
    """Inverse contract (equity in coin), MM proportional to the coin notional ``q_usd / P``.

    Solves ``equity0 + side*q*(1/entry - 1/P) = q*mmr/P - cum``, i.e. Binance COIN-M's
    ``LP = (Q*MMR + side*Q) / (WB + cum + side*Q/EP)`` with ``Q = contracts * contract size``.
    """
    return (q_usd * mmr + side * q_usd) / (equity0 + cum + side * q_usd / entry)


@njit(cache=True, error_model="numpy")
def bankruptcy_linear_nb(side, entry, qty, equity0):
    """Linear bankruptcy price ``EP - side*WB/qty`` (equity zero, no fee), not clipped: the one
    expression the margin rules, the vectorised helper and the kernels' deficit accounting use."""
    return entry - side * equity0 / qty


@njit(cache=True, error_model="numpy")
def bankruptcy_price_nb(side, entry, qty, equity0, contract, contract_size):
    """Price at which equity reaches zero (no fee): linear ``EP - side*WB/qty``; inverse
    ``side*Q / (WB + side*Q/EP)``. Returns 0.0 / inf where no such price exists."""
    if contract == 0:
        p = bankruptcy_linear_nb(side, entry, qty, equity0)
    else:
        q = qty * contract_size
        d = equity0 + side * q / entry
        p = side * q / d if d != 0.0 else np.inf
    return _clip_side(side, p)


@njit(cache=True, error_model="numpy")
def _clip_side(side, p):
    if side > 0:
        if not (p > 0.0):
            return 0.0
        return p
    if not (p > 0.0) or not np.isfinite(p):
        return np.inf
    return p


@njit(cache=True, error_model="numpy")
def liq_price_binance_nb(side, entry, qty, equity0, lo, hi, mmr, cum, contract, contract_size):
    """Binance liquidation price with the tier taken at the notional at the liquidation price.

    Starts from the entry tier and moves to the tier of the notional at the computed price until
    both agree (Binance FAQ note quoted in the module docstring); a tier whose formula has no
    positive root sends the search one tier down. Because ``MM(N) = N*mmr - cum`` is
    continuous and increasing in ``N`` the root is unique; the loop stops after at most one
    pass over the tiers. Returns ``(price, tier)``; ``tier = -1`` if a notional leaves the table,
    ``-2`` if the tiers did not settle (cannot happen for a continuous table).
    """
    n = lo.shape[0]
    t = tier_index_nb(notional_usd_nb(contract, qty, contract_size, entry), lo, hi)
    if t < 0:
        return np.nan, -1
    p = np.nan
    for _ in range(n + 2):
        p = liq_solve_nb(contract, side, entry, qty, contract_size, equity0, mmr[t], cum[t])
        if (side > 0 and not (p > 0.0)) or (side < 0 and (not (p > 0.0) or not np.isfinite(p))):
            # No root under this tier's rule: the price would have to pass zero (linear long) or
            # infinity (inverse short), where the notional - and so the tier - is lower. Only
            # when the first tier has no root either is the position never liquidated.
            if t == 0:
                return (0.0 if side > 0 else np.inf), 0
            t -= 1
            continue
        t2 = tier_index_nb(notional_usd_nb(contract, qty, contract_size, p), lo, hi)
        if t2 < 0:
            return p, -1
        if t2 == t:
            return p, t
        # boundary: if the price computed with t2 lands back in t, both give the same price
        # (MM continuous); take the lower notional tier's description consistently.
        p2 = liq_solve_nb(contract, side, entry, qty, contract_size, equity0, mmr[t2], cum[t2])
        if tier_index_nb(notional_usd_nb(contract, qty, contract_size, p2), lo, hi) == t:
            return p, t
        t = t2
    return p, -2


@njit(cache=True, error_model="numpy")
def liq_price_entry_rate_nb(venue, side, entry, qty, equity0, mmr, cum, fee_rate, contract, contract_size):
    """Liquidation price for the non-Binance families, with the maintenance rate already chosen.

    - bybit: MM fixed at the entry value, ``qty*entry*mmr - cum`` (+ fee to close at the
      bankruptcy price); linear ``LP = EP - side*(WB - MM)/qty``; inverse
      ``LP = side*Q / (WB + side*Q/EP - MM)`` (coin units).
    - okx, gate: MM rate = mmr + fee_rate at the price P (``cum`` subtracted when given).
    - hyperliquid: MM rate = mmr (= 1/(2*max_lev)) at the price P; ``cum`` = maintenance deduction.

    For these three the maintenance margin ``rate*notional(P) - cum`` is floored at zero, so the
    liquidation price never lies beyond the bankruptcy price.
    """
    if venue == VENUE_BYBIT:
        if contract == 0:
            mm = qty * entry * mmr - cum
            if fee_rate > 0.0:
                bp = entry - side * equity0 / qty
                if bp < 0.0:
                    bp = 0.0
                mm += qty * bp * fee_rate
            return entry - side * (equity0 - mm) / qty
        q = qty * contract_size
        mm = q / entry * mmr - cum
        if fee_rate > 0.0:
            # Bybit inverse: bankruptcy price includes the fee to close,
            # BP = Q*(side + fee) / (WB + side*Q/EP); fee to close = Q*fee/BP.
            bp = q * (side + fee_rate) / (equity0 + side * q / entry)
            if bp > 0.0 and np.isfinite(bp):
                mm += q * fee_rate / bp
        d = equity0 + side * q / entry - mm
        if d == 0.0:
            return np.inf
        return side * q / d
    rate = mmr
    if venue == VENUE_OKX or venue == VENUE_GATE:
        rate = mmr + fee_rate
    lp = liq_solve_nb(contract, side, entry, qty, contract_size, equity0, rate, cum)
    # the maintenance margin is never negative: where ``cum`` (a deduction meant for the entry's
    # tier) would make it so at the solved price, the position goes at its bankruptcy price
    # (equity zero), never beyond it
    bp = bankruptcy_price_nb(side, entry, qty, equity0, contract, contract_size)
    if side > 0:
        return lp if lp >= bp else bp
    return lp if lp <= bp else bp


# ------------------------------------------------------------------------------------------
# public scalar API
# ------------------------------------------------------------------------------------------
def _check_finite(name: str, v: Any, *, positive: bool = False, nonneg: bool = False) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {v!r}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be finite, got {x}")
    if positive and not x > 0:
        raise ValueError(f"{name} must be > 0, got {x}")
    if nonneg and x < 0:
        raise ValueError(f"{name} must be >= 0, got {x}")
    return x


def _venue_code(venue: str) -> int:
    if not isinstance(venue, str) or venue.lower() not in VENUES:
        raise ValueError(f"unknown venue {venue!r}; choose from {', '.join(VENUES)}")
    return VENUES[venue.lower()]


def _side(side: Any) -> int:
    key = side.lower() if isinstance(side, str) else side
    if isinstance(key, float) and key in (1.0, -1.0):
        key = int(key)
    if key not in _SIDES:
        raise ValueError(f"side must be +1 (long) or -1 (short), got {side!r}")
    return _SIDES[key]


def _mode(margin_mode: str) -> int:
    if margin_mode not in ("isolated", "cross"):
        raise ValueError(f"margin_mode must be 'isolated' or 'cross', got {margin_mode!r}")
    return ISOLATED if margin_mode == "isolated" else CROSS


def _contract(contract: str) -> int:
    if contract not in ("linear", "inverse"):
        raise ValueError(f"contract must be 'linear' or 'inverse', got {contract!r}")
    return LINEAR if contract == "linear" else INVERSE


def liquidation_price(
    venue: str,
    side: int,
    entry: float,
    qty: float,
    wallet_balance: float,
    *,
    margin_mode: str = "isolated",
    contract: str = "linear",
    tiers: Sequence[dict] | None = None,
    mmr: float | None = None,
    maint_amount: float = 0.0,
    other_mm: float = 0.0,
    other_upnl: float = 0.0,
    fee_rate: float = 0.0,
    contract_size: float = 1.0,
) -> float:
    """Mark price at which the position is liquidated, per the venue's published rule.

    ``wallet_balance`` is the isolated margin (Binance ``isolatedWallet``) in isolated mode, the
    cross wallet balance in cross mode, in the margin currency (USDT linear, coin inverse).
    ``other_mm`` / ``other_upnl`` are the maintenance margin and unrealised PnL of the account's
    other cross positions (Binance ``TMM1`` / ``UPNL1``); they must be 0 in isolated mode.
    ``tiers`` (ccxt ``fetchLeverageTiers`` list) gives the maintenance rate and amount; else pass
    ``mmr`` (and ``maint_amount``). For ``hyperliquid`` the rate from tiers is
    ``1 / (2 * maxLeverage)``. ``fee_rate`` is the taker fee added to the rate by ``okx``/``gate``
    and the fee to close in ``bybit``'s maintenance margin; Binance and Hyperliquid ignore it.

    Rules and sources: see the module docstring. Binance (both contracts):
    ``LP = (WB - TMM1 + UPNL1 + cum - side*Q*EP) / (Q*MMR - side*Q)`` (USDⓈ-M) and
    ``LP = (Q*MMR + side*Q) / (WB - TMM1 + UPNL1 + cum + side*Q/EP)`` (COIN-M, ``Q`` in USD), with
    MMR and cum of the bracket of the notional at LP.

    Returns ``0.0`` for a long and ``inf`` for a short that cannot be liquidated (collateral
    exceeds the exposure). Raises ``ValueError`` for impossible inputs: non-positive or non-finite
    entry/qty, NaN anywhere, an unknown venue/side/mode, leverage above what the entry tier allows
    (isolated), a tier list that does not cover the notional, or a position already below its
    maintenance margin at entry.
    """
    v = _venue_code(venue)
    s = _side(side)
    mode = _mode(margin_mode)
    kind = _contract(contract)
    ep = _check_finite("entry", entry, positive=True)
    q = _check_finite("qty", qty, positive=True)
    wb = _check_finite("wallet_balance", wallet_balance)
    cs = _check_finite("contract_size", contract_size, positive=True)
    fee = _check_finite("fee_rate", fee_rate, nonneg=True)
    cum_in = _check_finite("maint_amount", maint_amount)
    omm = _check_finite("other_mm", other_mm, nonneg=True)
    oup = _check_finite("other_upnl", other_upnl)
    if mode == ISOLATED:
        if omm != 0.0 or oup != 0.0:
            raise ValueError("other_mm/other_upnl apply to cross margin only; isolated positions do not share collateral")
        if wb <= 0:
            raise ValueError(f"isolated wallet balance must be > 0, got {wb}")
    equity0 = wb - omm + oup
    notional_entry = q * ep if kind == LINEAR else q * cs / ep  # quote (linear) / coin (inverse)

    if tiers is not None:
        lo, hi, mmrs, cums, levs = tier_arrays(tiers)
        t0 = int(tier_index_nb(notional_entry, lo, hi))
        if t0 < 0:
            raise ValueError(
                f"the tier list covers notional {lo[0]:,.2f} to {hi[-1]:,.2f}; the position's {notional_entry:,.2f} is outside it"
            )
        if mode == ISOLATED:
            lev = notional_entry / wb
            if lev > levs[t0] * (1 + 1e-9):
                raise ValueError(
                    f"leverage {lev:.4g}x (notional {notional_entry:,.2f} / margin {wb:,.2f}) exceeds the {levs[t0]:g}x "
                    f"that tier {t0 + 1} allows"
                )
        if v == VENUE_BINANCE:
            p, t = liq_price_binance_nb(s, ep, q, equity0, lo, hi, mmrs, cums, kind, cs)
            if t == -1:
                raise ValueError(
                    f"the tier list covers notional up to {hi[-1]:,.2f}; the notional at the liquidation price is outside it"
                )
            if t < -1:
                raise ValueError("maintenance tiers did not settle; the tier table is not continuous")
            return _finish(s, ep, p, equity0)
        rate = float(mmrs[t0])
        cum = float(cums[t0])
        if v == VENUE_HYPERLIQUID:
            rate = hyperliquid_mmr(levs[t0])
    else:
        if mmr is None:
            raise ValueError("give either tiers (ccxt fetchLeverageTiers list) or mmr")
        rate = _check_finite("mmr", mmr, nonneg=True)
        if rate >= 1.0:
            raise ValueError(f"mmr must be below 1, got {rate}")
        cum = cum_in
    if v == VENUE_BINANCE:
        if kind == LINEAR:
            p = solve_liq_linear_nb(s, ep, q, equity0, rate, cum)
        else:
            p = solve_liq_inverse_nb(s, ep, q * cs, equity0, rate, cum)
        return _finish(s, ep, _clip_side(s, p), equity0)
    p = liq_price_entry_rate_nb(v, s, ep, q, equity0, rate, cum, fee, kind, cs)
    return _finish(s, ep, _clip_side(s, p), equity0)


def _finish(s: int, ep: float, p: float, equity0: float) -> float:
    if (s > 0 and p >= ep) or (s < 0 and p <= ep):
        raise ValueError(
            f"collateral {equity0:,.6g} does not cover the maintenance margin at entry: the position would be "
            f"liquidated at once (liquidation price {p:,.6g} vs entry {ep:,.6g})"
        )
    return float(p)


def bankruptcy_price(
    side: int,
    entry: float,
    qty: float,
    wallet_balance: float,
    *,
    contract: str = "linear",
    other_mm: float = 0.0,
    other_upnl: float = 0.0,
    contract_size: float = 1.0,
) -> float:
    """Price at which the position's collateral is exhausted (equity = 0), before fees.

    Linear: ``BP = EP - side * (WB + UPNL_other - MM_other) / Q``; inverse:
    ``BP = side*Q / (WB + side*Q/EP)``. Binance, Bybit and OKX close a liquidated position at (or
    account against) this price; the insurance fund takes the difference between the fill and
    it. Returns 0.0 (long) / inf (short) when no such price exists.
    """
    s = _side(side)
    ep = _check_finite("entry", entry, positive=True)
    q = _check_finite("qty", qty, positive=True)
    wb = _check_finite("wallet_balance", wallet_balance)
    cs = _check_finite("contract_size", contract_size, positive=True)
    eq = wb - _check_finite("other_mm", other_mm, nonneg=True) + _check_finite("other_upnl", other_upnl)
    return float(bankruptcy_price_nb(s, ep, q, eq, _contract(contract), cs))


def taker_fee(venue: str, notional: float, rate: float | None = None) -> float:
    """Taker fee on ``notional`` (USD) at the venue's regular-account rate (:data:`TAKER_FEE`)."""
    _venue_code(venue)
    r = TAKER_FEE[venue.lower()] if rate is None else _check_finite("rate", rate, nonneg=True)
    return _check_finite("notional", notional, nonneg=True) * r


def clearance_fee(venue: str, notional: float, remaining_margin: float | None = None, rate: float | None = None) -> float:
    """Liquidation clearance fee on the liquidated ``notional`` (:data:`CLEARANCE_FEE`).

    Binance charges it only out of what margin remains ("Insurance Clearance Fee"): pass
    ``remaining_margin`` to cap it there (never below zero).
    """
    _venue_code(venue)
    r = CLEARANCE_FEE[venue.lower()] if rate is None else _check_finite("rate", rate, nonneg=True)
    fee = _check_finite("notional", notional, nonneg=True) * r
    if remaining_margin is not None:
        fee = min(fee, max(0.0, _check_finite("remaining_margin", remaining_margin)))
    return fee


@njit(cache=True, error_model="numpy")
def adl_key_nb(venue, side, entry, mark, qty, margin):
    """ADL ranking key (higher = deleveraged first) for one linear position; ``margin`` is its
    collateral (USD, after funding), ``upnl = side * qty * (mark - entry)``, ``equity = margin +
    upnl`` and ``effective leverage = |notional at mark| / equity`` (``mark value / (mark value -
    bankruptcy value)``, the definition of Bybit's and BitMEX's ADL pages). Positions with no
    equity left rank last (``-inf``).

    - Binance / OKX / Gate: ``PnL% * effective leverage`` in profit, ``PnL% / effective leverage``
      otherwise, with ``PnL% = upnl / margin`` (Binance FAQ "What Is Auto-Deleveraging (ADL) and
      How Does It Work", https://www.binance.com/en/support/faq/360033525471: traders are ranked
      by "unrealized PnL as a percentage of their collateral" times their leverage; the FAQ gives
      the final formula only as an image). OKX and Gate publish the same profit-times-leverage
      ordering without a formula; they use Binance's.
    - Bybit: the same two cases with ``PnL% = (mark value - entry value) / |entry value|`` (the
      position's price return, not its return on margin): Bybit help "Auto-Deleveraging (ADL)
      Mechanism" (USDT and USDC contracts, 2024-09-06; "ranking is derived in order of highest
      profit and effective leverage use"), the formula of BitMEX's ADL page that Bybit's older help
      article quotes. In profit, Binance's key is Bybit's times the position's initial leverage,
      so the two venues rank a book differently.
    - Hyperliquid: ``(mark / entry) * (notional / account value)`` for longs (``entry / mark`` for
      shorts), "ranked by unrealized pnl and leverage used" (Hyperliquid docs
      "Auto-deleveraging"; the index as documented by HIP-3 venues).
    """
    upnl = side * qty * (mark - entry)
    equity = margin + upnl
    notional = qty * mark
    if venue == VENUE_HYPERLIQUID:
        if equity <= 0.0:
            return -np.inf
        ratio = mark / entry if side > 0 else entry / mark
        return ratio * notional / equity
    if equity <= 0.0 or margin <= 0.0:
        return -np.inf
    if venue == VENUE_BYBIT:
        pnl_pct = side * (mark - entry) / entry
    else:
        pnl_pct = upnl / margin
    eff_lev = notional / equity
    if pnl_pct > 0:
        return pnl_pct * eff_lev
    return pnl_pct / eff_lev


def adl_rank_key(venue: str, side: int, entry: float, mark: float, qty: float, margin: float) -> float:
    """Scalar wrapper of :func:`adl_key_nb` (see there for the published rules)."""
    return float(
        adl_key_nb(
            _venue_code(venue),
            _side(side),
            _check_finite("entry", entry, positive=True),
            _check_finite("mark", mark, positive=True),
            _check_finite("qty", qty, positive=True),
            _check_finite("margin", margin),
        )
    )


# ------------------------------------------------------------------------------------------
# vectorised helpers (population builder, kernels)
# ------------------------------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def liq_prices_nb(venue, side, entry, qty, margin, lo, hi, mmr, cum, lev, fee_rate, liq_out, tier_out, mmr_out, cum_out):
    """Liquidation price at open for arrays of linear positions of one venue and one symbol.

    ``margin`` is the isolated margin or cross collateral (treated as the position's own
    wallet: other positions contribute nothing). Binance: tier at the liquidation notional;
    other venues: tier at the entry notional (Hyperliquid rate 1/(2*maxLeverage)). Fills
    ``liq_out`` (0.0 / inf where never liquidated, NaN where a notional leaves the table) and
    the tier index / rate / amount used.
    """
    n = side.shape[0]
    for i in range(n):
        s = side[i]
        p = np.nan
        if venue == VENUE_BINANCE:
            p, t = liq_price_binance_nb(s, entry[i], qty[i], margin[i], lo, hi, mmr, cum, 0, 1.0)
        else:
            t = tier_index_nb(qty[i] * entry[i], lo, hi)
        if t < 0:  # the notional leaves the tier table
            liq_out[i] = np.nan
            tier_out[i] = 0
            mmr_out[i] = np.nan
            cum_out[i] = np.nan
            continue
        if venue != VENUE_BINANCE:
            r = mmr[t] if venue != VENUE_HYPERLIQUID else 1.0 / (2.0 * lev[t])
            p = _clip_side(s, liq_price_entry_rate_nb(venue, s, entry[i], qty[i], margin[i], r, cum[t], fee_rate, 0, 1.0))
        liq_out[i] = p
        tier_out[i] = t
        mmr_out[i] = mmr[t] if venue != VENUE_HYPERLIQUID else 1.0 / (2.0 * lev[t])
        cum_out[i] = cum[t]


def liquidation_prices(venue: str, side, entry, qty, margin, tiers, fee_rate: float = 0.0):
    """Vectorised liquidation prices (linear contracts) -> ``(liq, tier, mmr, cum)`` arrays."""
    v = _venue_code(venue)
    lo, hi, mmr, cum, lev = tier_arrays(tiers)
    side = np.ascontiguousarray(side, dtype=np.int8)
    entry = np.ascontiguousarray(entry, dtype=np.float64)
    qty = np.ascontiguousarray(qty, dtype=np.float64)
    margin = np.ascontiguousarray(margin, dtype=np.float64)
    n = side.shape[0]
    liq = np.empty(n)
    tier = np.empty(n, dtype=np.uint8)
    mm = np.empty(n)
    cu = np.empty(n)
    liq_prices_nb(v, side, entry, qty, margin, lo, hi, mmr, cum, lev, float(fee_rate), liq, tier, mm, cu)
    return liq, tier, mm, cu


def bankruptcy_prices(side, entry, qty, margin) -> np.ndarray:
    """Vectorised linear bankruptcy prices ``entry - side * margin / qty`` (clipped at 0 for longs)."""
    side = np.asarray(side, dtype=np.float64)
    p = bankruptcy_linear_nb(side, np.asarray(entry, dtype=np.float64), np.asarray(qty, dtype=np.float64), np.asarray(margin, dtype=np.float64))
    return np.where(side > 0, np.maximum(p, 0.0), np.where(p > 0, p, np.inf))
