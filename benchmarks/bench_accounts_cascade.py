"""Accounts in the cascade (issue 12): ``backtest cascade 2025-10-10`` with accounts on (the
account engine coupled with the per-symbol kernels by a fixed point, backtest.simulate._coupled)
against accounts off, at 200,000 positions per symbol (every leg of the event), one core.

Reported: the wall time of each run (simulate_prepared, frames included; market data and
populations prepared once beforehand, numba compiled by a warm-up run on a small population, the
order-book profiles and trigger lists cached by an untimed accounts-off run; the first accounts-on
run also sorts the lists of the rows the engine leaves to the kernels), the
coupling's kernel passes, residual and convergence, and the account engine's time per pass (its
run on the grid plus the pricing of its liquidations, contagion.engine_flows); the account
assignment (once per population set, cached afterwards) is reported apart.

Run: .venv/bin/python benchmarks/bench_accounts_cascade.py [--positions N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from backtest.simulate import prepare, simulate_prepared  # noqa: E402


def timed(prep, overrides: dict) -> tuple[float, object]:
    t0 = time.perf_counter()
    res = simulate_prepared(prep, overrides, mode="cascade")
    return time.perf_counter() - t0, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=200_000, help="positions per symbol (default 200,000)")
    ap.add_argument("--quick", action="store_true", help="20,000 positions per symbol")
    a = ap.parse_args()
    n = 20_000 if a.quick else a.positions
    warm = prepare("2025-10-10", {"n_positions": 2_000})
    simulate_prepared(warm, mode="cascade")
    simulate_prepared(warm, {"accounts": False}, mode="cascade")
    t0 = time.perf_counter()
    prep = prepare("2025-10-10", {"n_positions": n})
    t_prep = time.perf_counter() - t0
    # fills the caches every later run shares (order-book profiles, the full populations' trigger lists)
    simulate_prepared(prep, {"accounts": False}, mode="cascade", summary_only=True)
    t_off, off = timed(prep, {"accounts": False})
    t_on1, on1 = timed(prep, {})  # the account assignment happens here (then cached)
    t_on, on = timed(prep, {})
    s, ts = on.summary, on.summary.timings_s
    runs = max(ts.get("account_engine_runs", 1.0), 1.0)
    per_pass = (ts["accounts_s"] - ts.get("account_assign_s", 0.0)) / runs
    legs = len(prep.symbols)
    print(f"2025-10-10 cascade, {n:,} positions per symbol x {legs} legs ({n * legs:,} rows), one core; prepare {t_prep:.1f} s")
    print(f"{'':34s}{'wall s':>9s}{'kernels s':>11s}{'accounts s':>12s}{'liquidated':>14s}")
    print(f"{'accounts off':34s}{t_off:9.2f}{off.summary.timings_s['simulate_s']:11.2f}{'-':>12s}{off.summary.liquidated_notional_usd / 1e9:13.3f}B")
    print(f"{'accounts on (assignment included)':34s}{t_on1:9.2f}{on1.summary.timings_s['simulate_s']:11.2f}"
          f"{on1.summary.timings_s['accounts_s']:12.2f}{on1.summary.liquidated_notional_usd / 1e9:13.3f}B")
    print(f"{'accounts on (assignment cached)':34s}{t_on:9.2f}{ts['simulate_s']:11.2f}{ts['accounts_s']:12.2f}{s.liquidated_notional_usd / 1e9:13.3f}B")
    print(f"coupling: {s.contagion_iterations} kernel passes with the engine's flow (plus pass 0), residual {s.contagion_residual:.2e}, "
          f"converged {s.contagion_converged}; {int(runs)} engine runs, {per_pass:.3f} s per pass "
          f"({s.contagion_engine_accounts:,} accounts in the engine); account assignment {on1.summary.timings_s.get('account_assign_s', 0.0):.2f} s")
    print(f"accounts on / off wall: {t_on / t_off:.2f}x; contagion ${s.contagion_liquidated_usd / 1e9:.3f}B, "
          f"engine deficits charged ${s.contagion_account_deficit_usd / 1e6:.1f}M")


if __name__ == "__main__":
    main()
