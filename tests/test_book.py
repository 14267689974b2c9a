"""Depth profiles from the store (real BTCUSDT 2025-10-10 snapshots) and the volume-scaled estimate."""

from __future__ import annotations

import numpy as np
import pytest

from backtest import book
from backtest.store import Store, to_ms

BTC = "BTC/USDT:USDT"


def test_stored_profile_thins_into_the_crash_and_mirrors_stale_bids(committed_store):
    got = book.load_profile(Store(committed_store), "binanceusdm", BTC, "2025-10-10T00:00:00Z", "2025-10-11T00:00:00Z")
    assert got is not None
    prof, note = got
    assert prof.ts.size == 2879 and prof.bid_usd.shape == (2879, 5)
    assert np.all(np.diff(prof.ts) > 0) and np.all(np.diff(prof.bid_usd, axis=1) >= 0) and np.all(np.diff(prof.ask_usd, axis=1) >= 0)
    assert "stale bid" in note
    before = book.depth_at(prof, to_ms("2025-10-10T20:05:00Z"), +1, 0.01)
    during = book.depth_at(prof, to_ms("2025-10-10T21:25:00Z"), +1, 0.01)
    assert 300e6 < before < 400e6 and 80e6 < during < 130e6  # PROVENANCE: ~$351M -> ~$101M within +1 %
    # after the anomaly the bids are the asks times the day's earlier ratio, never above the
    # asks' own size by more than that ratio, and never the stale 121,363 order's artefacts
    k = int(np.searchsorted(prof.ts, to_ms("2025-10-10T21:30:00Z")))
    ratio = prof.bid_usd[k] / prof.ask_usd[k]
    assert np.all((ratio > 0.5) & (ratio < 2.5))
    # depth between levels is linear, zero at mid, flat beyond 5 %
    t = int(prof.ts[10])
    assert book.depth_at(prof, t, -1, 0.0) == 0.0
    assert book.depth_at(prof, t, -1, 0.015) == pytest.approx((prof.bid_usd[10, 0] + prof.bid_usd[10, 1]) / 2)
    assert book.depth_at(prof, t, -1, 0.2) == prof.bid_usd[10, 4]


def test_no_stored_depth_is_none_and_the_estimate_scales_with_volume(committed_store, tmp_path):
    assert book.load_profile(Store(committed_store), "binanceusdm", "ETH/USDT:USDT") is None
    p1, note = book.estimated_profile(1e9)
    p2, _ = book.estimated_profile(2e9)
    assert book.depth_at(p1, 0, -1, 0.01) == pytest.approx(book.DEPTH_1PCT_PER_DAILY_VOLUME * 1e9)
    assert np.allclose(p2.ask_usd, 2 * p1.ask_usd) and "estimated" in note
    with pytest.raises(ValueError):
        book.estimated_profile(0.0)
