"""Calibration and out-of-sample validation (issue 13).

* :mod:`~backtest.calibration.figures` - published figures with their kind, metric and scope;
  a loader with validation; judging a simulated value by the figure's kind.
* :mod:`~backtest.calibration.targets` - an event's targets, the simulated value of each (read
  from summaries only) and the distance.
* :mod:`~backtest.calibration.priors` - the fittable parameters and their priors, in one place.
* :mod:`~backtest.calibration.abc` - ABC-SMC with pyabc (``backtest calibrate``).
* :mod:`~backtest.calibration.validate` - fit on training events, predict test events (``backtest validate``).
* :mod:`~backtest.calibration.sensitivity` - Sobol indices with SALib (``backtest sensitivity``).

Everything calls the public simulation API (``backtest.simulate.prepare`` / ``simulate_prepared``)
and reads summary dicts, so it works unchanged when the model changes.
"""
