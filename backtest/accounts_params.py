"""Parameters of the accounts (issue 12): defaults with their sources, or marked for calibration.

Used by :mod:`backtest.accounts` (assignment of cross rows to accounts, collateral assets) and
the replay integration (:mod:`backtest.simulate`).
"""

from __future__ import annotations

#: Positions (symbols) per cross account, k -> probability. No public venue statistic gives how
#: many of an event's symbols one account trades at once; parameter for calibration (assumption:
#: most accounts hold one or two of the event's symbols, a tail holds all five; mean 2.05).
DEFAULT_POSITIONS_PER_ACCOUNT: dict[int, float] = {1: 0.45, 2: 0.25, 3: 0.15, 4: 0.08, 5: 0.07}

#: Share of cross accounts whose collateral is a non-settlement asset (Binance Multi-Assets mode:
#: BTC, BNB, ... as USDⓈ-M collateral). Parameter for calibration; 0 = every account holds USDT.
DEFAULT_COLLATERAL_SHARE: float = 0.0

#: Haircut of that asset: assumption (Binance values Multi-Assets collateral at a "collateral rate" below
#: 100 %; the 5 % here is of that order, not read from its current table). Parameter for calibration.
DEFAULT_COLLATERAL_HAIRCUT: float = 0.05

#: Accounts switched on by default in replay (issue 12 "Done when": replay 2025-10-10 runs with
#: accounts at defaults). See backtest.simulate.
DEFAULT_ACCOUNTS: bool = True

#: Venue procedures on: Bybit / OKX lower tiers and Hyperliquid cuts large positions in part
#: before whole liquidation (backtest.kernels.accounts, module docstring); False: every venue's
#: account goes whole at its trigger.
DEFAULT_PARTIAL_LIQUIDATION: bool = True

#: Hyperliquid docs, "Liquidations" (hyperliquid.gitbook.io/hyperliquid-docs/trading/liquidations):
#: below 2/3 of the maintenance margin without a successful liquidation through the book, a
#: backstop liquidation moves all cross positions and margin to the liquidator vault. Partial
#: liquidation (as restated by docs built on Hyperliquid's: docs.hyena.trade/trading/liquidation,
#: cortex-vigil.com/wiki/liquidations): positions above 100k USDC send 20 % first, then a 30 s
#: cooldown, after which every liquidation order is for the whole remaining position.
HL_PARTIAL_USD: float = 100_000.0
HL_PARTIAL_SHARE: float = 0.20
HL_COOLDOWN_MS: int = 30_000
HL_BACKSTOP: float = 2.0 / 3.0

#: Collateral asset of the accounts holding a non-settlement coin (Binance Multi-Assets mode; BTC
#: is the largest non-stablecoin collateral there). Its price path is read from the store (the
#: event primary venue's ASSET/USDT:USDT perpetual as a proxy for the spot asset), else constant.
DEFAULT_COLLATERAL_ASSET: str = "BTC"
#: collateral assets the accounts know (a perpetual ASSET/USDT:USDT stands in for each one's price)
COLLATERAL_ASSETS: tuple[str, ...] = ("BTC", "ETH", "BNB", "SOL", "XRP", "DOGE")

PARAM_SOURCES: dict[str, str] = {
    "accounts": "on: cross rows of an event's symbols share accounts (issue 12); off: every row its own account (the "
    "previous issue's model, bit for bit)",
    "positions_per_account": "k -> probability of k of the event's symbols per cross account; parameter for calibration",
    "collateral_share": "share of cross accounts holding a non-settlement collateral asset; parameter for calibration",
    "collateral_haircut": "haircut of that asset (assumption of the order of Binance Multi-Assets collateral rates); for calibration",
    "partial_liquidation": "on: each venue's documented cross procedure (Bybit / OKX lower tiers, Hyperliquid 20 % of large positions "
    "then a 30 s cooldown); off: whole accounts at the trigger",
    "collateral_asset": "the non-settlement collateral asset (default BTC); its price path from the store (the primary venue's "
    "ASSET/USDT:USDT perpetual, a proxy for the spot asset) where it has one, else constant; collateral_shock applies on top",
    "collateral_shock": "scenario: the collateral asset's price step, e.g. -0.35@2025-10-10T21:00Z (not market data)",
}
