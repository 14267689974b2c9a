"""The fittable parameters and their priors, in one place, each with its basis.

A prior is uniform or log-uniform on ``[low, high]`` (in the parameter's own unit). Population
parameters rebuild the population per sample (``simulate_prepared`` does that when they change);
simulation parameters only re-run the kernel. Names are the flat parameter names of
``backtest.simulate.resolve_params``; a prior whose name the model no longer knows is refused
when a calibration starts (so a renamed parameter fails in one line, not deep in a run).
"""

from __future__ import annotations

from dataclasses import dataclass

from backtest.errors import CalibrationError, ParamError


@dataclass(frozen=True)
class Prior:
    """A prior on one parameter: ``shape`` "uniform" or "loguniform" on [low, high]."""

    name: str
    shape: str
    low: float
    high: float
    group: str  # "population" or "simulation"
    unit: str
    basis: str

    def rv(self):
        """The pyabc random variable (scipy.stats names: ``uniform(loc, scale)``, ``loguniform(a, b)``)."""
        import pyabc

        if self.shape == "uniform":
            return pyabc.RV("uniform", self.low, self.high - self.low)
        return pyabc.RV("loguniform", self.low, self.high)

    def from_unit(self, u: float) -> float:
        """The value at quantile ``u`` in [0, 1] of the prior (for Sobol designs)."""
        if self.shape == "uniform":
            return self.low + u * (self.high - self.low)
        return self.low * (self.high / self.low) ** u


PRIORS: dict[str, Prior] = {
    p.name: p
    for p in (
        Prior("leverage_scale", "uniform", 0.5, 2.0, "population", "x",
              "multiplies the leverage mix (default 1 = DEFAULT_LEVERAGE_MIX, itself an assumption around Binance's "
              "default 20x); half to double covers the spread of published retail-leverage surveys (assumption)"),
        Prior("long_share", "uniform", 0.4, 0.8, "population", "fraction of open notional",
              "Binance's global long/short account ratio usually sits between 1 and 2.5 (long share 0.5-0.7; "
              "HYPEUSDT 2.33 at 20:00 on 2025-10-10, metrics file): widened by 0.1 on each side"),
        Prior("cross_extra_collateral", "uniform", 0.0, 3.0, "population", "x initial margin",
              "free wallet balance behind a cross position, in initial margins: none to three times (assumption; the "
              "default 1 is one)"),
        Prior("isolated_share", "uniform", 0.1, 0.7, "population", "fraction",
              "Binance's default margin mode is cross (Binance FAQ), so a minority isolated: 10-70 % (assumption)"),
        Prior("oi_scale", "uniform", 0.5, 1.5, "population", "x open interest",
              "open notional over the stored or published open interest: vendors' open-interest figures differ by "
              "up to ~50 % (CoinGlass vs Glassnode, figure 101 of published_figures)"),
        Prior("stop_share", "uniform", 0.0, 0.5, "population", "fraction of positions",
              "share of positions with a stop-loss: none to half (assumption; default a quarter)"),
        Prior("impact_coef", "loguniform", 0.1, 4.0, "simulation", "Y of the square-root law",
              "Toth et al. 2011 report Y ~ 0.5-1; a decade either side for a stressed, thinning book"),
        Prior("liquidity_multiplier", "loguniform", 0.02, 1.0, "simulation", "x depth",
              "books thinned by about an order of magnitude on 2025-10-10 (Kaiko, figure 91; Binance bookDepth: ask "
              "notional within 1 % fell ~70 %, -5 % bids 98 %): 1/50 to unchanged"),
        Prior("insurance_fund_usd", "loguniform", 1.0e7, 2.0e9, "simulation", "USD",
              "Binance's USDS-M fund ~ $1B in 2025 (order of magnitude), ~ $13M in March 2020 (figure 12): both inside"),
    )
}

#: parameters fitted when none are named (population structure the targets speak to)
DEFAULT_FIT = ("leverage_scale", "cross_extra_collateral", "long_share")


def priors_for(names: list[str] | tuple[str, ...]) -> list[Prior]:
    """The priors of ``names`` (in order); :class:`CalibrationError` for a name without a prior or
    one the model does not know (one line, the closest name suggested)."""
    from backtest.params import suggest
    from backtest.simulate import resolve_params

    if not names:
        raise CalibrationError(f"give at least one --fit PARAM; fittable: {', '.join(PRIORS)}")
    out = []
    for n in names:
        if n not in PRIORS:
            raise CalibrationError(f"no prior for parameter {n!r}{suggest(n, list(PRIORS))}; fittable: {', '.join(PRIORS)}")
        if n in (p.name for p in out):
            raise CalibrationError(f"parameter {n!r} is given twice to --fit")
        p = PRIORS[n]
        try:
            resolve_params({n: p.from_unit(0.5)})
        except ParamError as e:
            raise CalibrationError(f"parameter {n!r} is not a parameter of the model ({e})") from None
        out.append(p)
    return out


def distribution(priors: list[Prior]):
    """The pyabc prior over ``priors`` (independent)."""
    import pyabc

    return pyabc.Distribution(**{p.name: p.rv() for p in priors})
