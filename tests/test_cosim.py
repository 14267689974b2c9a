"""The co-simulation prototype (backtest.kernels.cosim, issue 12 point 6): the per-symbol kernels
and the time-major account engine stepped together. On bench_accounts_coupled's SYNTHETIC event
at a small size: the kernels' reference scans give the fast kernels' results bit for bit inside
the co-simulation, and the engine's liquidations do move the path."""

from __future__ import annotations

import os
import sys

import numpy as np

from backtest import records as R

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))


def _run(prep, reference):
    from bench_cosim import inputs

    from backtest.kernels.cascade import outputs_nb
    from backtest.kernels.cosim import cosim_nb

    ker, eng, g, row_offset, T = inputs(prep, reference)
    nx = cosim_nb(*ker, reference, *eng, g["side"], g["qty"], g["weight"], row_offset, T)
    _books, _tls, paths, _depths, prms, wss, kss = ker
    outs = [outputs_nb(paths[k], prms[k], wss[k], kss[k]) for k in range(len(paths))]
    return outs, [x[:nx].copy() for x in eng[6]], [p.ext_flow.copy() for p in paths]


def test_cosim_reference_kernels_equal_fast_and_the_engine_moves_the_path():
    from bench_accounts_coupled import prepared

    from backtest.simulate import simulate_prepared

    prep = prepared(400)  # SYNTHETIC: 400 cross rows per symbol, 5 symbols x 86,400 path points
    simulate_prepared(prep, mode="cascade", summary_only=True)  # assigns the accounts, fills the caches the prototype reads
    fast, fast_x, flows = _run(prep, False)
    ref, ref_x, _ = _run(prep, True)
    for a, b in zip(fast, ref):
        for f in ("bar_i", "bar_f", "round_units", "stats", "bar_pt", "pt_fund"):
            assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True), f
        # the exit records per position (the two modes find a round's positions in other orders)
        oa, ob = np.argsort(a.x_pos, kind="stable"), np.argsort(b.x_pos, kind="stable")
        for f in ("x_pos", "x_ts", "x_fill", "x_round", "x_code", "x_usd"):
            assert np.array_equal(getattr(a, f)[oa], getattr(b, f)[ob], equal_nan=True), f
    for a, b in zip(fast_x, ref_x):
        assert np.array_equal(a, b)
    assert len(fast_x[0]) > 0  # the engine liquidated accounts ...
    moved = [np.any(f != 0.0) for f in flows]
    assert any(moved)  # ... whose forced flow entered the kernels
    k = int(np.argmax(moved))
    pt = fast[k].bar_pt
    assert np.any(pt[:, :, R.PT_FAC] != 1.0)  # and walked the book there
