"""Simulation parameters: :class:`SimParams` (the ``--set`` names of the market path, impact,
fund, fees and outputs) and :func:`resolve_params`, which applies flat overrides to the two
parameter groups (:class:`backtest.population.PopulationParams` and :class:`SimParams`).

Every default names its source or says it is an assumption (a parameter for calibration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from backtest import accounts_params as AP
from backtest import records as R
from backtest.errors import ParamError
from backtest.params import apply_overrides


#: name -> (lo, hi, lo_open, unit): finite ranges checked before any kernel runs (guards against
#: typos and float overflow in the kernels, not calibration; 1e13 USD is a hundred times the
#: whole crypto derivatives market's open interest)
SIM_PARAM_RANGES: dict[str, tuple[float, float, bool, str]] = {
    "impact_coef": (0.0, 1000.0, False, ""),
    "depth_usd_1pct": (0.0, 1e13, True, "USD"),
    "depth_volume_ratio": (0.0, 100.0, True, ""),
    "depth_multiplier": (0.0, 1000.0, True, ""),
    "liquidity_multiplier": (0.0, 1000.0, True, ""),
    "insurance_fund_usd": (0.0, 1e13, False, "USD"),
    "heatmap_minutes": (1.0, 10080.0, False, "minutes"),
    "sort_bucket_size": (1.0, 2.0**24, False, ""),
}


@dataclass(frozen=True)
class SimParams:
    """Simulation parameters (flat names; ``--set name=value``). Sources or "assumption"."""

    #: the path: "anchored" - the finest last-price bars scaled to the hourly mark price at each
    #: hour's open and clipped to the mark's hourly range (keeps the minutes, follows the mark,
    #: which is what Binance liquidates on); "last" - the finest last-price bars as they are;
    #: "mark" - the hourly mark price only. Where no mark is stored, last price (flagged).
    price_path: str = "anchored"
    #: "sqrt": |dlnP| = Y * sigma * sqrt(Q / V) (square-root law: Toth et al. 2011, "Anomalous
    #: price impact and the critical nature of liquidity in financial markets", PRX 1, 021006;
    #: Bouchaud et al. "Trades, Quotes and Prices", ch. 12); "linear": |dP/P| = 1 % * Q / D;
    #: "none": no impact. Either model is bounded by the order book (stored depth, else the
    #: estimate of backtest.book; records.MAX_BOOK_MOVE at most). Forced orders fill at the price
    #: the path reached (after a gap, the first path price past the trigger), moved by their own
    #: impact; replay does not move the path (set "none" for fills at the price reached).
    impact_model: str = "sqrt"
    #: Y of the square-root law; of order 1 in the literature (Toth et al. 2011 report Y ~ 0.5-1).
    impact_coef: float = 1.0
    #: notional resting within 1 % of mid, USD; None = depth_volume_ratio x daily volume.
    depth_usd_1pct: float | None = None
    #: assumption: 1 %-depth as a share of daily traded notional (BTC perp: ~$150-250M depth for
    #: ~$15-25B daily volume in 2025 order-book snapshots - an order of magnitude, not a measurement).
    depth_volume_ratio: float = 0.01
    #: scale on depth and volume (sweep knob; 1 = as derived).
    depth_multiplier: float = 1.0
    #: assumption: stressed-book factor on depth/volume during forced selling (books thinned by
    #: roughly an order of magnitude on 2025-10-10 per market-maker commentary; 0.25 is a guess).
    liquidity_multiplier: float = 0.25
    #: assumption: half-life of transient impact, seconds of elapsed path time (the book's
    #: resilience; the same on any bar length).
    impact_half_life_s: float = 60.0
    #: assumption: insurance fund available for the event's symbols, USD, split by open notional
    #: (order of magnitude of Binance's published USDS-M insurance-fund balance, ~$1B).
    insurance_fund_usd: float = 1.0e9
    #: Binance BTCUSDT ``liquidationFee`` 1.25 % (exchangeInfo; see backtest.margin.CLEARANCE_FEE),
    #: charged only out of the remaining margin.
    clearance_fee_rate: float = 0.0125
    #: Binance USDS-M VIP0 taker fee 0.05 % (backtest.margin.TAKER_FEE), paid by stop fills.
    taker_fee_rate: float = 0.0005
    #: cascade rounds per path point, at most (a guard; real cascades here stop far earlier).
    max_rounds: int = 200
    #: width of a liquidation-map price bucket, as a fraction of the start price.
    bucket_pct: float = 0.0025
    #: time bucket of the realised heatmap, minutes.
    heatmap_minutes: int = 5
    #: a cluster is a run of adjacent buckets each holding at least this share of its side's open notional.
    cluster_min_share: float = 0.01
    #: clusters are looked for within this distance of the start price (fraction).
    cluster_range_pct: float = 0.3
    #: entries per lazily-sorted bucket of the fast kernel's trigger lists (speed only).
    sort_bucket_size: int = 1024
    #: issue 12: cross rows of the event's symbols share accounts (backtest.accounts), in replay and
    #: in a cascade (backtest.simulate couples the account engine with the per-symbol kernels).
    #: False = every row its own account.
    accounts: bool = AP.DEFAULT_ACCOUNTS
    #: positions (symbols) per cross account, k -> probability (backtest.accounts_params: for calibration)
    positions_per_account: dict = field(default_factory=lambda: dict(AP.DEFAULT_POSITIONS_PER_ACCOUNT))
    #: share of cross accounts holding a non-settlement collateral asset (for calibration)
    collateral_share: float = AP.DEFAULT_COLLATERAL_SHARE
    #: haircut of that asset (assumption, for calibration)
    collateral_haircut: float = AP.DEFAULT_COLLATERAL_HAIRCUT
    #: scenario: the collateral asset's price step, e.g. "-0.35@2025-10-10T21:00Z" ("" = none; not market data)
    collateral_shock: str = ""
    #: kernel passes with the account engine's external flow, at most (the fixed-point coupling of
    #: backtest.simulate; it stops earlier once no path point moves by more than
    #: contagion.coupling_tolerance: 1e-9 in a cascade, 1e-6 in replay). A numerical choice, not a market parameter: 5 passes settle the
    #: 2025-10-10 cascade (summary.json contagion_residual says how far the last one was from settled).
    account_iterations: int = 8
    #: issue 12: each venue's cross-liquidation procedure (partial liquidations; backtest.accounts);
    #: false = whole accounts at the trigger
    partial_liquidation: bool = AP.DEFAULT_PARTIAL_LIQUIDATION
    #: the non-settlement collateral asset (price path from the store where it has one, else constant)
    collateral_asset: str = AP.DEFAULT_COLLATERAL_ASSET

    def validate(self) -> None:
        if self.price_path not in ("anchored", "last", "mark"):
            raise ParamError(f"price_path must be 'anchored', 'last' or 'mark', got {self.price_path!r}")
        if self.impact_model not in R.IMPACT_MODELS:
            raise ParamError(f"impact_model must be one of {sorted(R.IMPACT_MODELS)}, got {self.impact_model!r}")
        checks = [
            ("impact_coef", self.impact_coef >= 0, ">= 0"),
            ("depth_volume_ratio", self.depth_volume_ratio > 0, "> 0"),
            ("depth_multiplier", self.depth_multiplier > 0, "> 0"),
            ("liquidity_multiplier", self.liquidity_multiplier > 0, "> 0"),
            ("impact_half_life_s", self.impact_half_life_s > 0, "> 0 (inf = permanent impact)"),
            ("insurance_fund_usd", self.insurance_fund_usd >= 0, ">= 0"),
            ("clearance_fee_rate", 0 <= self.clearance_fee_rate < 1, "in [0, 1)"),
            ("taker_fee_rate", 0 <= self.taker_fee_rate < 1, "in [0, 1)"),
            ("max_rounds", 0 <= self.max_rounds <= 10_000, "in [0, 10000]"),
            ("bucket_pct", 0 < self.bucket_pct <= 0.5, "in (0, 0.5]"),
            ("heatmap_minutes", self.heatmap_minutes >= 1, ">= 1"),
            ("cluster_min_share", 0 < self.cluster_min_share < 1, "in (0, 1)"),
            ("cluster_range_pct", 0 < self.cluster_range_pct <= 1, "in (0, 1]"),
            ("sort_bucket_size", self.sort_bucket_size >= 1, ">= 1"),
            ("account_iterations", 1 <= self.account_iterations <= 100, "in [1, 100]"),
        ]
        if self.depth_usd_1pct is not None:
            checks.append(("depth_usd_1pct", self.depth_usd_1pct > 0, "> 0 (or auto to derive it from volume)"))
        for name, ok, what in checks:
            if isinstance(getattr(self, name), bool):  # True is not 1.0
                raise ParamError(f"parameter {name!r} must be a number, got {getattr(self, name)!r}")
            if not ok or (isinstance(getattr(self, name), float) and math.isnan(getattr(self, name))):
                raise ParamError(f"parameter {name!r} must be {what}, got {getattr(self, name)!r}")
        if not isinstance(self.accounts, bool):
            raise ParamError(f"parameter 'accounts' must be true or false, got {self.accounts!r}")
        if isinstance(self.collateral_share, bool) or not 0.0 <= self.collateral_share <= 1.0:
            raise ParamError(f"parameter 'collateral_share' must be between 0 and 1, got {self.collateral_share!r}")
        if isinstance(self.collateral_haircut, bool) or not 0.0 <= self.collateral_haircut < 1.0:
            raise ParamError(f"parameter 'collateral_haircut' must be in [0, 1), got {self.collateral_haircut!r}")
        from backtest.accounts import parse_collateral_shock, positions_cdf
        from backtest.errors import SimError

        try:
            if not isinstance(self.positions_per_account, dict):
                raise SimError("x")
            positions_cdf(self.positions_per_account)
        except (SimError, TypeError, ValueError):
            raise ParamError("parameter 'positions_per_account' must map 1, 2, ... to probabilities summing to 1, "
                             "e.g. positions_per_account='{\"1\": 0.5, \"2\": 0.5}'") from None
        if self.collateral_shock:
            parse_collateral_shock(self.collateral_shock)
        if not isinstance(self.partial_liquidation, bool):
            raise ParamError(f"parameter 'partial_liquidation' must be true or false, got {self.partial_liquidation!r}")
        from backtest.accounts import check_collateral_asset

        check_collateral_asset(self.collateral_asset)
        from backtest.params import check_ranges

        check_ranges(self, SIM_PARAM_RANGES)


def default_groups() -> list[Any]:
    """The parameter groups overrides resolve against: [PopulationParams(), SimParams()]."""
    from backtest.population_params import PopulationParams

    return [PopulationParams(), SimParams()]


def resolve_params(overrides: dict | None) -> tuple[Any, SimParams]:
    """(PopulationParams, SimParams) with the flat ``overrides`` applied and validated."""
    pop, sim = apply_overrides(default_groups(), dict(overrides or {}))
    return pop, sim
