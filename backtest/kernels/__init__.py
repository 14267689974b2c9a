"""Numba kernels: plain ``@njit(cache=True)`` functions over NumPy arrays and scalars.

- :mod:`backtest.kernels.sorting` - trigger lists: each (side, venue, tier) group ordered by
  liquidation threshold (lazily, bucket by bucket), plus one stop list per side.
- :mod:`backtest.kernels.cascade` - the replay / cascade kernel (``simulate_nb``), with a fast
  pointer-per-list mode and a slow reference mode that scans every position every round.

Codes and record layouts come from :mod:`backtest.records`.
"""
