"""Parameters of the synthetic position population (``--set name=value``): their defaults, each
with its source or marked as a parameter for calibration, and their valid ranges
(:class:`PopulationParams`, checked before anything is built). The population itself is built by
:mod:`backtest.population`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from backtest.errors import ParamError
from backtest.fitted_defaults import FITTED, FITTED_AT
from backtest.records import VENUES


def fitted_or(name: str, assumed: float) -> float:
    """The package default of ``name``: its fitted posterior median (:data:`backtest.fitted_defaults.FITTED`,
    issue 13) when the committed fit covers it, else ``assumed`` (the sourced or assumed value)."""
    return float(FITTED.get(name, assumed))


def _src(name: str, text: str) -> str:
    """``text`` (the basis of an assumed default) prefixed by how the default was fitted, if it was."""
    if name not in FITTED:
        return text
    return (f"fitted: {FITTED[name]:.4g}, the posterior median of the ABC-SMC fit over the training events in "
            f"data/calibration/defaults.toml ({FITTED_AT}; refit: make refit-defaults). Before the fit: " + text)


#: the long share for a symbol without a stored long/short ratio (a stored ratio is sourced and wins)
FALLBACK_LONG_SHARE: float = fitted_or("long_share", 0.6)


#: Leverage mix (leverage -> share of positions). Source / assumption: Binance opens USDⓈ-M
#: positions at 20x unless the user changes it (Binance FAQ "How to adjust leverage": the default
#: leverage is 20x), so 20x is the mode; the spread over 2-125x (Binance's range for BTCUSDT,
#: tier 1 max 125x) is an assumption: most retail positions at 5-25x, a tail at 50-125x.
DEFAULT_LEVERAGE_MIX: dict[float, float] = {
    2: 0.05,
    3: 0.05,
    5: 0.12,
    10: 0.23,
    20: 0.30,
    25: 0.07,
    50: 0.10,
    75: 0.04,
    100: 0.03,
    125: 0.01,
}

#: Where each default comes from (printed by ``backtest population --help`` users via docs/tests).
PARAM_SOURCES: dict[str, str] = {
    "seed": "any integer; the same seed gives the same population",
    "n_positions": "rows simulated (not real positions: 'weight' carries the count); 1 M keeps the build well under a second",
    "long_share": _src("long_share", "None = the store's long/short account ratio at the event start; without one 0.6 (assumption: "
    "retail accounts lean long; Binance's BTCUSDT global long/short account ratio usually sits between 1 and 2.5, "
    "i.e. a long share of 0.5-0.7)"),
    "leverage_mix": "Binance's default leverage is 20x (Binance FAQ); the rest of the spread over 2-125x is an assumption",
    "leverage_scale": _src("leverage_scale", "1.0 = the mix as given (sweep parameter)"),
    "oi_scale": _src("oi_scale", "1.0 = open notional equals the open-interest level (see the module docstring's convention)"),
    "open_interest_usd": "None = the store's open interest at the event start, else the catalogue's pre-event level; "
    "for symbols without one, the catalogue level of the exchange's reference symbol (BTC) times the ratio of the "
    "symbols' traded notional over the lookback (assumption: similar open-interest-to-volume ratios)",
    "isolated_share": _src("isolated_share", "0.3, assumption: Binance's default margin mode is cross (Binance FAQ 'Cross vs isolated margin'), "
    "so most positions are cross"),
    "cross_extra_collateral": _src("cross_extra_collateral", "1.0, the median excess collateral of a cross position as a multiple of its initial "
    "margin (free wallet balance behind it); calibrated: parameter for calibration (issue 13)"),
    "cross_extra_sigma": "1.0, the log-standard deviation of that multiple (lognormal: most cross accounts hold "
    "a fraction to a few times the margin, a few hold much more); calibrated: parameter for calibration (issue 13)",
    "leverage_size_slope": "0.2: leverage falls with size as (notional / size_min_usd) ** -slope (a $1M position "
    "at a third of the leverage of a $4k one), then the tier table caps it: exchanges cap max leverage by notional "
    "(Binance BTCUSDT leverage brackets, data/leverage_tiers: 125x up to $50k, 20x from $10M ...); calibrated: "
    "parameter for calibration (issue 13)",
    "hedged_share": "0.2, the share of open interest held by hedged or market-making holders (basis trades, "
    "delta-neutral books) whom a price move alone does not liquidate: they count in open interest but are not "
    "in the liquidatable population; calibrated: parameter for calibration (issue 13)",
    "stop_share": _src("stop_share", "0.25, assumption: a quarter of positions carry a stop-loss"),
    "stop_distance": "0.03, assumption: mean stop distance 3 % of entry (exponential), capped at 90 % of the distance "
    "to liquidation",
    "size_tail_alpha": "1.5: the tail exponent of trade sizes in financial markets (Gabaix, Gopikrishnan, Plerou, "
    "Stanley, 'A theory of power-law distributions in financial market fluctuations', Nature 423, 2003); assumed "
    "to hold for position sizes",
    "size_min_usd": "4,000 USD, calibrated so that the mean position (about 3x the minimum for a tail exponent of 1.5) "
    "is about $11.8k: CoinGlass counted 1,618,240 traders liquidated for $19.13B on 2025-10-10/11 (event catalogue), "
    "and we assume liquidated positions are sized like the rest. Binance's own floor is the MIN_NOTIONAL filter "
    "(100 USDT for BTCUSDT, 5 USDT for most symbols)",
    "size_max_usd": "50 M USD, assumption: the largest single positions (Binance's BTCUSDT tiers run to 1.8 B, but "
    "positions that large are few)",
    "turnover_half_life_days": "None = ln 2 x open interest / (0.5 x mean daily traded notional over the lookback): "
    "half of traded volume opens positions (assumption), so the mean holding time is OI / opening volume",
    "venue": "auto = the margin rule of the event's exchange (binanceusdm -> binance)",
    "survival_price": "mark: liquidations and stops before the event are judged on the mark price, as Binance "
    "triggers liquidations on it (Binance FAQ 'What is Mark Price'), wherever the store has mark bars running up "
    "to the event; before they start, and with 'last', on last-price bars, whose wicks are deeper",
    "max_tries_factor": "candidates tried per requested survivor before giving up",
    "flow_turnover": "0.5, the share of each window bar's traded notional that opens leveraged positions (in the "
    "population's units: times oi_scale and 1 - hedged_share); the same assumption as turnover_half_life_days (half "
    "of traded volume opens positions); parameter for calibration (issue 13). With close_rate, 0 switches the "
    "in-window flow off",
    "close_rate": "0.5, the share of each window bar's traded notional that closes open positions voluntarily (the "
    "same units): equal to flow_turnover, open interest is stationary in expectation where the store has no "
    "open-interest series; where it has one, openings minus closes follow its change bar by bar and the two rates "
    "set only the gross flow; parameter for calibration (issue 13)",
}


#: the seed is a 64-bit signed integer in the kernels (numba int64)
MAX_SEED = 2**63 - 1
#: rows of one population, at most (10^9 rows is ~30 GB before the simulation's workspace;
#: backtest.resources refuses what does not fit this machine long before that)
MAX_POSITIONS = 1_000_000_000
#: name -> (lo, hi, lo_open, unit): sane ranges checked before any kernel runs. The bounds are
#: guards against typos and overflow, not calibration: total crypto open interest is ~1e11 USD
#: (2025), so 1e13 is a hundred times any market; 1 USD is below every venue's minimum order.
PARAM_RANGES: dict[str, tuple[float, float, bool, str]] = {
    "leverage_scale": (0.0, 100.0, True, ""),
    "oi_scale": (0.0, 1000.0, True, ""),
    "open_interest_usd": (0.0, 1e13, True, "USD"),
    "cross_extra_collateral": (0.0, 100.0, False, "x margin"),
    "cross_extra_sigma": (0.0, 5.0, False, ""),
    "leverage_size_slope": (0.0, 2.0, False, ""),
    "size_tail_alpha": (0.0, 100.0, True, ""),
    "size_min_usd": (1.0, 1e12, False, "USD"),
    "size_max_usd": (1.0, 1e13, False, "USD"),
    "turnover_half_life_days": (0.0, 36500.0, True, "days"),
    "max_tries_factor": (0.0, 1e6, True, ""),
    "flow_turnover": (0.0, 100.0, False, "x volume"),
    "close_rate": (0.0, 100.0, False, "x volume"),
}


@dataclass(frozen=True)
class PopulationParams:
    """Parameters of a synthetic population (flat names; see :data:`PARAM_SOURCES`)."""

    seed: int = 0
    n_positions: int = 1_000_000
    long_share: float | None = None
    leverage_mix: dict = field(default_factory=lambda: dict(DEFAULT_LEVERAGE_MIX))
    leverage_scale: float = fitted_or("leverage_scale", 1.0)
    oi_scale: float = fitted_or("oi_scale", 1.0)
    open_interest_usd: float | None = None
    isolated_share: float = fitted_or("isolated_share", 0.3)
    cross_extra_collateral: float = fitted_or("cross_extra_collateral", 1.0)
    cross_extra_sigma: float = 1.0
    leverage_size_slope: float = 0.2
    hedged_share: float = 0.2
    stop_share: float = fitted_or("stop_share", 0.25)
    stop_distance: float = 0.03
    size_tail_alpha: float = 1.5
    size_min_usd: float = 4000.0
    size_max_usd: float = 50_000_000.0
    turnover_half_life_days: float | None = None
    venue: str = "auto"
    survival_price: str = "mark"
    max_tries_factor: float = 50.0
    flow_turnover: float = 0.5
    close_rate: float = 0.5

    def validate(self) -> None:
        """Raise ``ValueError`` (one line) for out-of-range values."""

        def frac(name: str, v: Any, allow_none: bool = False) -> None:
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and 0.0 <= float(v) <= 1.0):
                raise ParamError(f"{name} must be between 0 and 1{' or auto (derived from the data)' if allow_none else ''}, got {v!r}")

        def pos(name: str, v: Any, allow_none: bool = False, strict: bool = True) -> None:
            if v is None and allow_none:
                return
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(float(v)) or (
                float(v) <= 0 if strict else float(v) < 0
            ):
                raise ParamError(f"{name} must be a {'positive' if strict else 'non-negative'} number, got {v!r}")

        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise ParamError(f"seed must be an integer in [0, 2**63 - 1], got {self.seed!r}")
        if not isinstance(self.n_positions, int) or isinstance(self.n_positions, bool) or not 1 <= self.n_positions <= MAX_POSITIONS:
            raise ParamError(f"n_positions must be a positive integer up to {MAX_POSITIONS:,}, got {self.n_positions!r}")
        frac("long_share", self.long_share, allow_none=True)
        frac("isolated_share", self.isolated_share)
        frac("stop_share", self.stop_share)
        frac("hedged_share", self.hedged_share)
        if not self.hedged_share < 1.0:
            raise ParamError(f"hedged_share must be below 1 (some open interest must be leveraged), got {self.hedged_share!r}")
        pos("leverage_scale", self.leverage_scale)
        pos("oi_scale", self.oi_scale)
        pos("open_interest_usd", self.open_interest_usd, allow_none=True)
        pos("cross_extra_collateral", self.cross_extra_collateral, strict=False)
        pos("cross_extra_sigma", self.cross_extra_sigma, strict=False)
        pos("leverage_size_slope", self.leverage_size_slope, strict=False)
        pos("stop_distance", self.stop_distance)
        if not self.stop_distance < 1.0:  # a fraction of the entry price: 1 puts a long's stop at 0
            raise ParamError(f"stop_distance is a fraction of the entry price and must be between 0 and 1 (exclusive), got {self.stop_distance!r}")
        pos("size_tail_alpha", self.size_tail_alpha)
        pos("size_min_usd", self.size_min_usd)
        pos("size_max_usd", self.size_max_usd)
        pos("turnover_half_life_days", self.turnover_half_life_days, allow_none=True)
        pos("max_tries_factor", self.max_tries_factor)
        pos("flow_turnover", self.flow_turnover, strict=False)
        pos("close_rate", self.close_rate, strict=False)
        if self.size_max_usd <= self.size_min_usd:
            raise ParamError(f"size_max_usd ({self.size_max_usd}) must exceed size_min_usd ({self.size_min_usd})")
        if self.survival_price not in ("mark", "last"):
            raise ParamError(f"survival_price must be 'mark' or 'last', got {self.survival_price!r}")
        if self.venue != "auto" and self.venue not in VENUES:
            raise ParamError(f"venue must be one of {', '.join(VENUES)}, got {self.venue!r}")
        mix = self.leverage_mix
        if not isinstance(mix, dict) or not mix:
            raise ParamError("leverage_mix must be a non-empty mapping leverage -> weight, e.g. {\"10\": 0.5, \"20\": 0.5}")
        for k, w in mix.items():
            try:
                lev = float(k)
            except (TypeError, ValueError):
                raise ParamError(f"leverage_mix key {k!r} is not a number") from None
            if not (lev >= 1.0 and math.isfinite(lev)):
                raise ParamError(f"leverage_mix key {k!r}: leverage must be >= 1")
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not (w >= 0 and math.isfinite(w)):
                raise ParamError(f"leverage_mix weight for {k!r} must be a non-negative number, got {w!r}")
        total = sum(float(w) for w in mix.values())
        if abs(total - 1.0) > 1e-6:
            raise ParamError(f"leverage_mix weights must sum to 1, they sum to {total:.6g}")
        from backtest.params import check_ranges

        check_ranges(self, PARAM_RANGES)  # after the checks above: their messages come first
