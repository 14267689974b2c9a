"""The package defaults that are fitted (issue 13), written by ``scripts/refit_defaults.py``: do not edit.

Posterior medians of the ABC-SMC fit recorded in ``data/calibration/defaults.toml`` (its
``[calibration]`` table: training events, targets, seed, budget, library versions, the refit
command). :class:`backtest.population_params.PopulationParams` takes its defaults of these
parameters from :data:`FITTED`; ``long_share`` is the fallback for symbols without a stored
long/short ratio (a stored ratio, where there is one, is sourced and wins).
"""

#: when the fit was adopted and the commit it ran on
FITTED_AT = '2026-12-02 08:06 UTC'
FITTED_COMMIT = '3d966d6'

#: the training events of the fit (the events it was fitted on)
FITTED_EVENTS: tuple[str, ...] = ('2025-04-07', '2024-08-05', '2022-11-08', '2021-05-19', '2020-03-12')

#: parameter -> posterior median (units as in backtest.population_params.PARAM_SOURCES)
FITTED: dict[str, float] = {
    'cross_extra_collateral': 0.9088822979203448,
    'leverage_scale': 1.5971776127892372,
    'long_share': 0.4761352677105488,
}
