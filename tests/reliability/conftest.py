"""Fixtures of the reliability suite: the jobs' fixtures of tests/jobs, a ledger of every embedded server a
test started (its fault counters), and the session's tally of injected faults for RELIABILITY.md.

Set ``GLITCHRUN_RELIABILITY_TALLY=path.json`` to have the tally written there at the end of the session
(``benchmarks/reliability_report.py`` does, and prints it as a table).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from glitchrun.embedded_panoptes import EmbeddedPanoptes
from tests.jobs.conftest import Seeded, http_calls, run_job, seed_campaign  # noqa: F401  (fixtures of tests/jobs)

TALLY_ENV = "GLITCHRUN_RELIABILITY_TALLY"

#: the types of the fixtures above, for the tests' signatures
RunJob = Callable[..., tuple[Any, Path]]
SeedCampaign = Callable[..., Seeded]
Calls = list[tuple[str, str]]
Tally = dict[str, Counter[str]]


class Ledger:
    """Every ``EmbeddedPanoptes`` started while the test runs, so faults can be counted across jobs."""

    def __init__(self) -> None:
        self.servers: list[EmbeddedPanoptes] = []

    def faults(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for server in self.servers:
            total.update(server.fault_counts)
        return total


@pytest.fixture
def ledger(monkeypatch: pytest.MonkeyPatch) -> Ledger:
    found = Ledger()
    start = EmbeddedPanoptes.start

    def recorded(self: EmbeddedPanoptes) -> EmbeddedPanoptes:
        found.servers.append(self)
        return start(self)

    monkeypatch.setattr(EmbeddedPanoptes, "start", recorded)
    return found


@pytest.fixture(scope="session")
def tally() -> Iterator[Tally]:
    """operation -> fault kind -> count, over the session; written out when ``GLITCHRUN_RELIABILITY_TALLY`` is set."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    yield counts
    target = os.environ.get(TALLY_ENV)
    if target:
        Path(target).write_text(json.dumps({op: dict(kinds) for op, kinds in counts.items()}, indent=1))
