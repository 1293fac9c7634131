"""The classification sync against a server whose classifications become visible out of id order (the embedded
Panoptes with ``rules.visibility_lag``, on a clock the test moves): the old cursor rule (the highest id read)
loses a vote; the trailing window loses none and stores each vote once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from panoptes_client import Panoptes, Workflow

from glitchrun.campaign.state import CampaignState
from glitchrun.campaign.sync import CURSOR, sync_classifications
from glitchrun.campaign.tasks import TaskSpec
from glitchrun.embedded_panoptes import EmbeddedPanoptes
from glitchrun.embedded_panoptes.rules import Rules
from glitchrun.zooniverse.resources import ProjectSpec, WorkflowSpec, ensure_project, ensure_workflow

from ..embedded_panoptes.helpers import classify, make_subject_set, make_subjects

CLASSES = ["Blip", "Whistle"]
CONFIG = {"display_name": "Glitch classification", "classes": CLASSES}
LAG = 10.0  # each classification becomes visible up to 10 s (of the test's clock) after it was made


START = 1_000_000.0


class Clock:
    """The server's clock for visibility: moved by the test, not by time passing."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Busy:
    owner: Panoptes
    workflow: Workflow
    project_id: str
    made: list[int]  # the ids of the classifications made, all at the clock's start
    clock: Clock


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[Busy]:
    """Eight classifications made at one moment, visible over the next LAG seconds in a seeded random order."""
    clock = Clock()
    with EmbeddedPanoptes(tmp_path / "panoptes", rules=Rules(visibility_lag=LAG, seed=1, clock=clock)) as server:
        _, password = server.ensure_user("alice")
        _, volunteer_password = server.ensure_user("vera")
        with Panoptes(endpoint=server.endpoint, username="alice", password=password) as owner:
            project, _ = ensure_project(ProjectSpec("Busy campaign", "d", private=False), "alice")
            workflow, _ = ensure_workflow(project, WorkflowSpec(**CONFIG))
            subject_set = make_subject_set(project)
            subjects = make_subjects(project, 8)
            subject_set.add(subjects)
            workflow.add_subject_sets(subject_set)
            volunteer = Panoptes(endpoint=server.endpoint, username="vera", password=volunteer_password)
            made = [int(classify(volunteer, workflow, s.id, i % 2)["id"]) for i, s in enumerate(subjects)]
            yield Busy(owner, workflow, str(project.id), made, clock)


def visible_ids(busy: Busy) -> list[int]:
    """What a reader sees now (the whole project route, no cursor)."""
    with busy.owner:
        page, _ = busy.owner.get("/classifications/project", params={"project_id": busy.project_id, "page_size": 100})
    return sorted(int(c["id"]) for c in page["classifications"])


def passes(busy: Busy, state: CampaignState, window: float) -> None:
    """A pass halfway through the lag, and one once everything is visible."""
    task = TaskSpec.from_workflow(busy.workflow, CONFIG)
    with busy.owner:
        for moment in (LAG / 2, LAG + 1):
            busy.clock.now = START + moment
            sync_classifications(state, busy.project_id, busy.workflow, task, window=window)


def stored_ids(state: CampaignState) -> list[int]:
    return sorted(state.classifications()["classification_id"].astype(int))


def test_classifications_become_visible_out_of_id_order(busy: Busy) -> None:
    assert visible_ids(busy) == []
    busy.clock.now = START + LAG / 2
    seen = visible_ids(busy)
    hidden = sorted(set(busy.made) - set(seen))
    assert seen and hidden and min(hidden) < max(seen)  # a later id shows while an earlier one does not
    busy.clock.now = START + LAG
    assert visible_ids(busy) == sorted(busy.made)


def test_the_highest_id_as_cursor_loses_a_vote_the_trailing_window_none(busy: Busy, tmp_path: Path) -> None:
    busy.clock.now = START + LAG / 2
    first_seen = visible_ids(busy)
    behind = [i for i in busy.made if i not in first_seen and i < max(first_seen)]

    old = CampaignState(tmp_path / "old")
    passes(busy, old, window=0.0)  # a window of 0 s: the cursor is the highest id read
    assert int(old.get(CURSOR)) == max(busy.made)
    assert sorted(set(busy.made) - set(stored_ids(old))) == behind and behind  # lost for good
    old.close()

    new = CampaignState(tmp_path / "new")
    passes(busy, new, window=600.0)
    assert stored_ids(new) == sorted(busy.made)  # every vote, once
    assert int(new.get(CURSOR)) == 0  # all of them are younger than the window: every pass reads them again
    old_rows = len(new.classifications())
    passes(busy, new, window=600.0)
    assert len(new.classifications()) == old_rows == len(busy.made)
    new.close()
