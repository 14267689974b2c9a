"""The numba pricing of the engine's exits (backtest.kernels.pricing, through
contagion.engine_flows) against its NumPy transcription (tests/reference_pricing.py), bit for bit,
on SYNTHETIC engine runs drawn by hypothesis: several symbols, accounts over them, partial exits,
deficits and fees, a non-settlement collateral with a price series."""

from __future__ import annotations

from types import SimpleNamespace as NS

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from backtest import records as R
from backtest.contagion import engine_flows
from tests.reference_pricing import engine_flows_reference


def _case(seed: int, n_sym: int, n_acc: int, partial: bool):
    """A SYNTHETIC engine run (only what engine_flows reads) and its pricing inputs."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 12, n_sym)
    offset = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    n_rows = int(offset[-1])
    owner = rng.integers(-1, n_acc, n_rows)  # -1: isolated row (not the engine's)
    row_account = owner.astype(np.int32)
    accs = [np.flatnonzero(owner == a) for a in range(n_acc)]
    first = np.concatenate([[0], np.cumsum([len(x) for x in accs])[:-1]]).astype(np.int64)
    count = np.array([len(x) for x in accs], np.int32)
    members = np.concatenate(accs + [np.empty(0, np.int64)]).astype(np.int64)
    nbars = int(rng.integers(1, 4))
    n_pts = nbars * R.PATH_POINTS
    grid_ts = np.sort(rng.choice(np.arange(n_pts * 3), size=n_pts * 2, replace=False)).astype(np.int64) * 250
    # records: some accounts exit, each exiting row once or in two parts, in grid order
    x_row, x_grid, x_share = [], [], []
    for a in range(n_acc):
        if not len(accs[a]) or rng.random() < 0.3:
            continue
        for g in accs[a]:
            if rng.random() < 0.2:
                continue  # a row that stays open
            t = int(rng.integers(0, len(grid_ts)))
            if partial and rng.random() < 0.4:
                x_row += [g, g]
                x_grid += [t, min(t + int(rng.integers(0, 3)), len(grid_ts) - 1)]
                x_share += [0.5, 0.5 if rng.random() < 0.5 else 0.25]
            else:
                x_row.append(g)
                x_grid.append(t)
                x_share.append(1.0)
    o = np.lexsort((np.asarray(x_row, np.int64), np.asarray(x_grid, np.int64))) if x_row else np.empty(0, np.int64)
    out = NS(x_row=np.asarray(x_row, np.int64)[o], x_grid=np.asarray(x_grid, np.int32)[o], x_share=np.asarray(x_share, np.float64)[o])
    coll_asset = (rng.random(n_acc) < 0.3).astype(np.int16)  # 1: the collateral asset (grid series n_sym)
    sub = NS(row_account=row_account, members=members, first=first, count=count, coll_asset=coll_asset,
             wallet_usd=rng.uniform(0.0, 500.0, n_acc), coll_amount=rng.uniform(0.0, 5.0, n_acc))
    px = rng.uniform(50.0, 150.0, (n_sym + 1, len(grid_ts)))
    grid = NS(px=px, coll_series=np.array([-1, n_sym], np.int64), haircut=np.array([0.0, 0.1]))
    syms = [f"S{k}" for k in range(n_sym)]
    run = NS(out=out, acc=NS(row_offset=offset), sub=sub, grid=grid, symbols=syms, grid_ts=grid_ts)
    pops, bar_pt, point_ts = {}, {}, {}
    for k, s in enumerate(syms):
        n = int(sizes[k])
        pops[s] = NS(arrays={"side": rng.choice(np.array([-1, 1], np.int8), n), "qty": rng.uniform(0.1, 20.0, n),
                             "entry": rng.uniform(80.0, 120.0, n), "weight": rng.uniform(0.5, 3.0, n).astype(np.float32)})
        pt = np.empty((nbars, R.PATH_POINTS, R.PT_SIZE))
        pt[:, :, R.PT_PRICE] = pt[:, :, R.PT_HIT] = rng.uniform(40.0, 160.0, (nbars, R.PATH_POINTS))
        pt[:, :, R.PT_FAC] = rng.choice(np.array([1.0, 0.97, 1.02]), (nbars, R.PATH_POINTS))
        bar_pt[s] = pt
        point_ts[s] = np.sort(rng.choice(grid_ts, n_pts, replace=False)) + int(rng.integers(-300, 300))
    return run, pops, bar_pt, point_ts


def _same(a, b) -> bool:
    fields = ("fill", "usd", "deficit_usd", "fee_usd", "bar", "side")
    if not all(np.array_equal(getattr(a, f), getattr(b, f)) for f in fields):
        return False
    return a.ext.keys() == b.ext.keys() and all(np.array_equal(x, y) for s in a.ext for x, y in zip(a.ext[s], b.ext[s]))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), n_sym=st.integers(1, 4), n_acc=st.integers(1, 8), partial=st.booleans())
def test_the_numba_pricing_equals_the_numpy_reference_bit_for_bit(seed, n_sym, n_acc, partial):
    run, pops, bar_pt, point_ts = _case(seed, n_sym, n_acc, partial)
    fast = engine_flows(run, pops, bar_pt, point_ts, 0.005)
    ref = engine_flows_reference(run, pops, bar_pt, point_ts, 0.005)
    assert _same(fast, ref)


def test_the_cases_exercise_deficits_fees_and_the_collateral_series():
    """The drawn cases reach what the comparison is for (else it would pass vacuously)."""
    deficits = fees = coll = 0
    for seed in range(40):
        run, pops, bar_pt, point_ts = _case(seed, 3, 6, True)
        p = engine_flows(run, pops, bar_pt, point_ts, 0.005)
        deficits += int((p.deficit_usd > 0).sum())
        fees += int((p.fee_usd > 0).sum())
        coll += int(run.sub.coll_asset[run.sub.row_account[run.out.x_row]].sum())
    assert deficits > 10 and fees > 10 and coll > 10
