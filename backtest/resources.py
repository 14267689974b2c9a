"""Memory and time estimates made before any work, and the refusal of a run that cannot fit.

A simulation holds, per position and symbol, one population row
(:data:`backtest.records.POPULATION_BYTES_PER_ROW`) and the kernel's workspace
(:data:`KERNEL_WORKSPACE_BYTES_PER_POSITION`); a sweep holds that in the parent and in each
worker, plus one results row per combination. The estimate is compared with the memory the
machine has available (``MemAvailable`` of ``/proc/meminfo``); a run that needs more than
:data:`MEMORY_HEADROOM` of it is refused with one line giving both numbers, unless the user
insists (``--force``, or ``BACKTEST_FORCE=1``). Where the free memory cannot be read, nothing
is refused.

Downloads are bounded by requests: a span that would need more than :data:`MAX_REQUESTS`
requests per series (``download --since 0001-01-01`` at 1m) is refused with the estimate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from backtest.errors import ResourceError

#: measured: peak RSS growth of `replay 2025-10-10 --set n_positions=2000000` (5 symbols) over
#: the population rows was ~100 B per position and symbol (numba 0.6x, this project's kernels);
#: rounded up. Covers the trigger lists, sort buckets and per-position outputs.
KERNEL_WORKSPACE_BYTES_PER_POSITION = 120
#: measured the same way: ~0.84 us per position and symbol for a replay with its frames, about
#: 0.15 us to build a population row; rounded up (an order of magnitude, not a benchmark)
SIM_SECONDS_PER_POSITION = 1.0e-6
BUILD_SECONDS_PER_POSITION = 0.3e-6
#: bytes per market bar and symbol held by a prepared event (about ten float64 arrays)
BAR_BYTES = 80
#: bytes of one sweep results row (a summary's metrics and the combination), rounded up
RESULT_ROW_BYTES = 400
#: share of the available memory a run may plan to use (the rest: the OS, polars, fragmentation)
MEMORY_HEADROOM = 0.8
#: requests one series of one download may need at most; about 2 hours at the 5 requests per
#: second ccxt allows Binance (assumption: a longer span is a mistyped --since, not a plan)
MAX_REQUESTS = 40_000


def bytes_per_position() -> int:
    """Memory of one position of one symbol in a simulation: its population row and the
    kernel's workspace (bytes)."""
    from backtest.records import POPULATION_BYTES_PER_ROW

    return int(POPULATION_BYTES_PER_ROW) + KERNEL_WORKSPACE_BYTES_PER_POSITION


def available_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes, or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def forced() -> bool:
    """True when the user insists (``--force`` sets ``BACKTEST_FORCE=1``, also for workers)."""
    return os.environ.get("BACKTEST_FORCE", "").strip().lower() in ("1", "true", "yes")


def gib(b: float) -> str:
    return f"{b / 2**30:,.1f} GiB" if b >= 2**30 else f"{b / 2**20:,.0f} MiB"


@dataclass(frozen=True)
class Estimate:
    """What a run needs: ``bytes`` of memory at its peak and ``seconds`` of work (one core)."""

    what: str  # e.g. "replay of 2025-10-10: 100,000,000 positions x 5 symbols"
    bytes: int
    seconds: float

    def check(self, *, force: bool | None = None, available: int | None = None) -> None:
        """Refuse (:class:`ResourceError`, one line) an estimate beyond the available memory."""
        if force if force is not None else forced():
            return
        free = available_bytes() if available is None else available
        if free is not None and self.bytes > MEMORY_HEADROOM * free:
            raise ResourceError(
                f"{self.what} would need about {gib(self.bytes)} of memory, but this machine has {gib(free)} available; "
                "lower n_positions (or the grid, or --workers), or pass --force to run anyway"
            )


def simulation_estimate(n_positions: int, n_symbols: int, n_bars: int = 0, *, what: str = "the simulation") -> Estimate:
    """Memory and time of one simulation of ``n_positions`` per symbol over ``n_symbols``."""
    n = int(n_positions) * int(n_symbols)
    return Estimate(f"{what}: {int(n_positions):,} positions x {n_symbols} symbol{'s' if n_symbols != 1 else ''}",
                    n * bytes_per_position() + int(n_bars) * int(n_symbols) * BAR_BYTES,
                    n * (SIM_SECONDS_PER_POSITION + BUILD_SECONDS_PER_POSITION))


def check_simulation(n_positions: int, n_symbols: int, n_bars: int = 0, *, what: str = "the simulation") -> Estimate:
    """:func:`simulation_estimate`, refused when it cannot fit; returned otherwise."""
    est = simulation_estimate(n_positions, n_symbols, n_bars, what=what)
    est.check()
    return est


def prepared_bytes(n_positions: int, n_symbols: int, n_bars: int) -> int:
    """A prepared event: every symbol's population rows and market bars (bytes)."""
    from backtest.records import POPULATION_BYTES_PER_ROW

    return int(n_positions) * int(n_symbols) * int(POPULATION_BYTES_PER_ROW) + int(n_bars) * int(n_symbols) * BAR_BYTES


def sweep_estimate(n_positions: int, n_symbols: int, n_bars: int, combinations: int, workers: int, *, parallel: bool = True,
                   what: str = "the sweep") -> Estimate:
    """A sweep: the prepared event in the parent and, with ``parallel`` workers, in each of
    them with room for one rebuilt population, the kernel's workspace per running simulation,
    and one results row per combination."""
    blob = prepared_bytes(n_positions, n_symbols, n_bars)
    peak = int(n_positions) * int(n_symbols) * KERNEL_WORKSPACE_BYTES_PER_POSITION
    held = blob + (int(workers) * (2 * blob + peak) if parallel else blob + peak)
    one = simulation_estimate(n_positions, n_symbols, n_bars)
    return Estimate(f"{what}: {int(combinations):,} combinations of {int(n_positions):,} positions x {n_symbols} symbols on {workers} worker(s)",
                    held + int(combinations) * RESULT_ROW_BYTES, one.seconds * int(combinations))


#: rows per request assumed for the estimate: the smallest default page of the venues served
#: (OKX: 100 bars per history page; Binance 1500, Bybit 1000), so the estimate is an upper bound
ROWS_PER_REQUEST = 100
#: funding settles at most every hour on the venues served (Binance 8h/4h/1h)
EVENT_STEP_MS = 3_600_000


def download_requests(t0: int, t1: int, step_ms: int, rows_per_request: int = ROWS_PER_REQUEST) -> int:
    """Requests one series over [t0, t1) (UTC ms) needs at most, one page of bars at a time."""
    return -(-max(0, t1 - t0) // (max(1, step_ms) * max(1, rows_per_request)))


def check_download_span(t0: int, t1: int, timeframe: str, datasets: list[str], page_limits: dict[str, int] | None = None) -> None:
    """Every series of a download, before the first request: bars at ``timeframe``, funding
    at most hourly, ``page_limits`` (rows per request) where the user set them."""
    from backtest.timeframes import timeframe_ms

    for ds in datasets:
        step = EVENT_STEP_MS if ds == "funding" else timeframe_ms(timeframe)
        rows = min(ROWS_PER_REQUEST, int((page_limits or {}).get(ds, ROWS_PER_REQUEST)))
        check_download(t0, t1, step, rows, f"downloading {ds} {'' if ds == 'funding' else timeframe + ' '}over this span")


def check_download(t0: int, t1: int, step_ms: int, rows_per_request: int, what: str) -> None:
    """Refuse (one line, with the estimate) a series that would need over :data:`MAX_REQUESTS`."""
    n = download_requests(t0, t1, step_ms, rows_per_request)
    if n > MAX_REQUESTS and not forced():
        from datetime import datetime, timezone

        latest = t1 - MAX_REQUESTS * step_ms * rows_per_request
        hint = datetime.fromtimestamp(latest / 1000, tz=timezone.utc).strftime("%Y-%m-%d") if latest > -62135596800000 else "later"
        raise ResourceError(
            f"{what} would need up to {n:,} requests (over {MAX_REQUESTS:,}); give a --since of {hint} or later, "
            "or a coarser --timeframe, or pass --force to run anyway"
        )
