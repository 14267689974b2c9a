"""Shared test fixtures. Tests never touch the network (only 127.0.0.1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
COMMITTED_STORE = ROOT / "data"

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.exists():
        pytest.skip("../shared/data is not beside the project")
    return SHARED


@pytest.fixture
def committed_store() -> Path:
    return COMMITTED_STORE
