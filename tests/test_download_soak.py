"""Soak (issue 15): N concurrent `backtest download` processes over overlapping ranges into one
store, against the local fake exchange with faults on every second request. The store must end
with exactly the source's rows, each once. Bounded: 4 processes, 2 rounds, 120 s per process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from backtest.store import Store
from tests.fakes.exchange_server import FakeExchangeServer, every_other
from tests.fakes.fixtures import KLINES_1M, all_data
from tests.test_download import ALL_FAULTS, FAST_RETRY, REPO, binance_config, check_real_1m, stored

pytestmark = pytest.mark.skipif(not KLINES_1M.exists(), reason="needs /work/shared/data")

#: overlapping by ten minutes only: a write lost to a race is not written again by another process
RANGES = [("2025-10-10T19:38:00Z", "2025-10-10T20:50:00Z"), ("2025-10-10T20:40:00Z", "2025-10-10T21:50:00Z"),
          ("2025-10-10T21:40:00Z", "2025-10-10T22:50:00Z"), ("2025-10-10T22:40:00Z", "2025-10-11T00:00:00Z")]


def test_concurrent_downloads_with_faults_end_with_the_exact_union(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "BACKTEST_NO_PROGRESS": "1", "BACKTEST_LOCK_TIMEOUT": "60"}
    with FakeExchangeServer(all_data()) as srv:
        srv.plan = every_other(ALL_FAULTS)
        # faults are interleaved across the processes: one may see many in a row, so allow more retries
        cfg = binance_config(tmp_path, srv, page_limits={"ohlcv": 3}, retry={**FAST_RETRY, "max_retries": 40})
        for round_ in range(2):
            st = tmp_path / f"st{round_}"
            t0 = time.monotonic()
            procs = [subprocess.Popen([sys.executable, "-m", "backtest.cli", "download", "binanceusdm", "BTC/USDT:USDT",
                                       "--datasets", "ohlcv", "--timeframe", "1m", "--since", a, "--until", b,
                                       "--store", str(st), "--ccxt-config", str(cfg)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for a, b in RANGES]
            for p in procs:
                out, err = p.communicate(timeout=120)
                assert p.returncode == 0, err[-2000:]
            assert time.monotonic() - t0 < 120
            check_real_1m(stored(st))  # the 262 real bars, each once: nothing lost, nothing doubled
            assert Store(st).verify() == []
            assert not [f for d, _s, fs in os.walk(st) for f in fs if f.endswith(".tmp")]
