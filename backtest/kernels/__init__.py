"""Numba kernels: plain ``@njit(cache=True)`` functions over NumPy arrays and named tuples of them.

- :mod:`backtest.kernels.sorting` - trigger lists: each (side, venue, tier) group ordered by
  liquidation threshold (lazily, bucket by bucket), plus one stop list per side.
- :mod:`backtest.kernels.cascade` - the replay / cascade kernel (``simulate_nb``): one loop over
  bars and path points that calls named helpers - a trigger finder per mode (``_trigger_scan``,
  the reference that scans every position every round; ``_trigger_lists``, the fast pointer per
  list) and the settling code both share (``_round_impact``, ``_settle_round``, ``_deleverage``).
- :mod:`backtest.kernels.population_kernels` - building populations.

Arguments and results are the contracts of :mod:`backtest.records` (``Book``, ``MarketPath``,
``KernelParams``, ``TriggerLists``, ``Workspace``, ``RunOutputs``), with its codes and record
layouts; :mod:`backtest.engine` builds them and runs the kernels.
"""
