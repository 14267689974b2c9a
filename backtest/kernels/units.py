"""Fixed-point money for the kernels: one USD -> units conversion (``records.USD_SCALE`` units per
USD, round half up) shared by the per-symbol kernels (``cascade.py``) and the account engine
(``accounts.py``); ``records.usd_units`` is the same rule over arrays for the polars side."""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest.records import USD_SCALE


@njit(cache=True, _nrt=False)
def usd_units_nb(x):
    """USD -> fixed-point units (int64, round half up)."""
    return np.int64(np.floor(x * USD_SCALE + 0.5))
