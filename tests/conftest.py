"""Shared test fixtures: where the read-only benchmark data lives, and a skip when it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """The benchmark data folder: $TENFOLD_SHARED_DATA or ../shared/data beside the checkout."""
    env = os.environ.get("TENFOLD_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data():
    """Return a function that gives a path under the shared data folder or skips the test with a reason."""

    def get(relative: str) -> Path:
        path = shared_data_root() / relative
        if not path.exists():
            pytest.skip(f"shared benchmark data not found at {path} (set TENFOLD_SHARED_DATA to enable)")
        return path

    return get
