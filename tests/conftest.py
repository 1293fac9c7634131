"""Fixtures shared by every test: the real shared data, an embedded Panoptes, a logged-in connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout: real Gravity Spy rows and O3 strain (read-only)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data folder {SHARED_DATA} is missing; it must sit beside the checkout")
    return SHARED_DATA


@pytest.fixture
def local_backend(tmp_path: Path):
    """A ``backend=local`` component storing under ``tmp_path`` (nothing shared between tests)."""
    from glitchrun.zooniverse.backend import LocalBackend

    return LocalBackend(storage_dir=tmp_path / "panoptes")


@pytest.fixture
def connection(local_backend) -> Iterator:
    """A running embedded Panoptes and a ``panoptes-client`` logged in as its owner."""
    with local_backend.connect() as conn:
        yield conn
