"""Fixtures of the embedded Panoptes tests: a running server on a temporary folder and its owner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from panoptes_client import Panoptes

from glitchrun.embedded_panoptes import EmbeddedPanoptes


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedPanoptes]:
    """A running server of its own, storing under ``tmp_path``."""
    with EmbeddedPanoptes(tmp_path / "panoptes") as running:
        yield running


@pytest.fixture
def owner(server: EmbeddedPanoptes) -> Iterator[Panoptes]:
    """A client logged in as ``alice``, the owner of everything the tests create."""
    _, password = server.ensure_user("alice")
    with Panoptes(endpoint=server.endpoint, username="alice", password=password) as client:
        yield client
