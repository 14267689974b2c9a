"""Numba kernels: plain ``@njit(cache=True)`` functions over NumPy arrays and named tuples of them.

- :mod:`backtest.kernels.sorting` - trigger lists: each (side, venue, tier) group ordered by
  liquidation threshold (lazily, bucket by bucket), plus one stop list per side.
- :mod:`backtest.kernels.cascade` - the replay / cascade kernel (``simulate_nb``): one loop over
  bars and path points that calls named helpers - a trigger finder per mode (``_trigger_scan``,
  the reference that scans every position every round; ``_trigger_lists``, the fast pointer per
  list) and the settling code both share (``_round_impact``, ``_settle_round``, ``_deleverage``).
  A run can stop after any path point and go on from its saved state (``kernel_state_nb``,
  ``run_points_nb``, ``outputs_nb``).
- :mod:`backtest.kernels.accounts` - the cross-account engine, account by account over a known
  grid (``run_accounts_nb``, with the reference that checks every account at every point).
- :mod:`backtest.kernels.account_steps` - the same engine time-major: every account advanced one
  grid point after another, reading no later point (``step_point_nb``).
- :mod:`backtest.kernels.cosim` - a co-simulation PROTOTYPE: the per-symbol kernels and the
  time-major engine stepped together (``cosim_nb``; not used by the commands).
- :mod:`backtest.kernels.pricing` - the engine's exits priced at the kernels' path points.
- :mod:`backtest.kernels.population_kernels` - building populations.

Arguments and results are the contracts of :mod:`backtest.records` (``Book``, ``MarketPath``,
``KernelParams``, ``TriggerLists``, ``Workspace``, ``RunOutputs``), with its codes and record
layouts; :mod:`backtest.engine` builds them and runs the kernels.
"""
