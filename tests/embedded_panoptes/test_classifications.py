"""Classifications by logged-in and anonymous volunteers, counted and retired at once on a quiet server (§8 of
the contract) and by the background worker on a busy one, as the statuses and the workflow's and project's
counters then show."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from panoptes_client import Panoptes, Project, Workflow
from panoptes_client.panoptes import PanoptesAPIException

from glitchrun.embedded_panoptes import EmbeddedPanoptes
from glitchrun.embedded_panoptes.rules import Rules

from .helpers import (
    classify,
    go_live,
    make_project,
    make_subject_set,
    make_subjects,
    make_workflow,
)


def volunteer(server: EmbeddedPanoptes, login: str) -> Panoptes:
    _, password = server.ensure_user(login)
    return Panoptes(endpoint=server.endpoint, username=login, password=password)


def test_classifications_count_and_retire_subjects(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    project = go_live(make_project())
    workflow = make_workflow(project, retirement_count=2)
    subject_set = make_subject_set(project)
    a, b, c = make_subjects(project, 3)
    subject_set.add([a, b, c])
    workflow.add_subject_sets(subject_set)
    bob, carol, anonymous = volunteer(server, "bob"), volunteer(server, "carol"), Panoptes(endpoint=server.endpoint)

    first = classify(bob, workflow, a.id, 0)
    assert first["links"]["user"] == str(bob.logged_in_user_id)
    assert first["metadata"]["workflow_version"] == "1.1" and first["metadata"]["user_group_ids"] == []
    again = classify(bob, workflow, a.id, 1)  # the same volunteer again: stored, not counted
    assert again["metadata"]["seen_before"] is True
    assert workflow.subject_workflow_status(a.id).classifications_count == 1
    assert workflow.subject_workflow_status(a.id).retired_at is None

    classify(carol, workflow, a.id, 0)
    status = workflow.subject_workflow_status(a.id)
    assert (status.classifications_count, status.retirement_reason) == (2, "classification_count")
    assert status.retired_at is not None

    for _ in range(2):  # anonymous classifications all count
        assert classify(anonymous, workflow, b.id, 3)["links"]["user"] is None
    assert workflow.subject_workflow_status(b.id).retirement_reason == "classification_count"

    counts = Workflow.find(workflow.id)
    assert (counts.classifications_count, counts.subjects_count, counts.retired_set_member_subjects_count) == (4, 3, 2)
    assert counts.completeness == pytest.approx(2 / 3) and counts.finished_at is None
    # project_counter.rb: the project's count is the sum over its active workflows, and a workflow made on a
    # live project starts inactive
    assert (Project.find(project.id).classifications_count, Project.find(project.id).classifiers_count) == (0, 2)
    counts.active = True
    counts.save()
    assert Project.find(project.id).classifications_count == 4

    workflow.retire_subjects([c.id], reason="blank")
    assert workflow.subject_workflow_status(c.id).retirement_reason == "nothing_here"
    finished = Workflow.find(workflow.id)
    assert finished.completeness == 1.0 and finished.finished_at is not None
    workflow.unretire_subjects([c.id])
    assert Workflow.find(workflow.id).finished_at is None
    assert workflow.subject_workflow_status(c.id).retired_at is None


def test_never_retire_and_bad_classifications(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    project = go_live(make_project())
    workflow = make_workflow(project)
    workflow.retirement = {"criteria": "never_retire"}
    workflow.save()
    workflow = Workflow.find(workflow.id)
    (subject,) = make_subjects(project, 1)
    anonymous = Panoptes(endpoint=server.endpoint)
    for _ in range(3):
        classify(anonymous, workflow, subject.id, 0)
    assert workflow.subject_workflow_status(subject.id).classifications_count == 3
    assert workflow.subject_workflow_status(subject.id).retired_at is None

    body = {"classifications": {"annotations": [{"task": "T0", "value": 0}], "metadata": {"source": "api"},
                                "links": {"project": project.id, "workflow": workflow.id, "subjects": [subject.id]}}}
    with anonymous, pytest.raises(PanoptesAPIException, match="did not contain a required property of 'workflow_version'"):
        anonymous.post("/classifications", json=body)
    other = make_project("Other hunt")
    body["classifications"]["links"]["project"] = other.id
    body["classifications"]["metadata"] = {
        k: "x" for k in ("started_at", "finished_at", "user_agent", "user_language", "workflow_version")}
    with anonymous:  # lib/classification_lifecycle.rb: no check that the workflow is in the linked project
        anonymous.post("/classifications", json=body)
    assert workflow.subject_workflow_status(subject.id).classifications_count == 4  # the refused one was not


def test_private_projects_take_classifications_from_role_holders_only(server: EmbeddedPanoptes,
                                                                      owner: Panoptes) -> None:
    """app/policies/classification_policy.rb: links resolve in the show scope (project_policy.rb ReadScope)."""
    project = make_project("Secret hunt", private=True)
    workflow = make_workflow(project)
    (subject,) = make_subjects(project, 1)
    for stranger in (Panoptes(endpoint=server.endpoint), volunteer(server, "bob")):
        with pytest.raises(PanoptesAPIException, match="Couldn't find linked project for current user"):
            classify(stranger, workflow, subject.id, 0)
    bob_id = server.ensure_user("bob", "pw")[0]
    with owner:
        owner.post("/project_roles", json={"project_roles": {"roles": ["tester"],
                                                             "links": {"project": project.id, "user": bob_id}}})
    with Panoptes(endpoint=server.endpoint, username="bob", password="pw") as bob:
        classify(bob, workflow, subject.id, 0)
        assert Project.find(project.id).id == project.id


def test_a_project_in_development_stores_but_never_counts_until_it_goes_live(server: EmbeddedPanoptes,
                                                                           owner: Panoptes) -> None:
    """app/workers/classification_count_worker.rb: counters and retirement move only when project.live;
    live is set by an update only (app/schemas/project_update_schema.rb; the create schema refuses it)."""
    project = make_project()
    workflow = make_workflow(project, retirement_count=2)
    subject_set = make_subject_set(project)
    (subject,) = make_subjects(project, 1)
    subject_set.add([subject])
    workflow.add_subject_sets(subject_set)
    bob, carol, dave = (volunteer(server, name) for name in ("bob", "carol", "dave"))
    for client in (bob, carol):
        assert classify(client, workflow, subject.id, 0)["metadata"]["live_project"] is False
    status = workflow.subject_workflow_status(subject.id)
    assert (status.classifications_count, status.retired_at) == (0, None)
    counts = Workflow.find(workflow.id)
    assert (counts.classifications_count, counts.retired_set_member_subjects_count) == (0, 0)
    assert Project.find(project.id).classifications_count == 0
    with owner:  # every classification is stored all the same
        assert len(owner.get("/classifications/project", params={"project_id": project.id})[0]["classifications"]) == 2

    go_live(project)
    classify(dave, workflow, subject.id, 0)
    assert workflow.subject_workflow_status(subject.id).classifications_count == 1
    classify(volunteer(server, "erin"), workflow, subject.id, 0)
    status = workflow.subject_workflow_status(subject.id)
    assert (status.classifications_count, status.retirement_reason) == (2, "classification_count")
    assert Workflow.find(workflow.id).retired_set_member_subjects_count == 1


class Clock:
    """A clock the test moves (the rules' ``clock``: visibility and the worker's due times)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait for the background worker (it looks for due jobs every 50 ms) to make ``check`` true."""
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, f"the worker never {what}"
        time.sleep(0.05)


def test_a_busy_server_counts_and_retires_in_a_worker_after_the_delay(tmp_path: Path) -> None:
    """lib/classification_lifecycle.rb -> app/workers/classification_count_worker.rb -> retirement_worker.rb, and
    app/operations/workflows/retire_subjects.rb -> retire_subject_worker.rb: on the real server counting and
    retirement happen in Sidekiq workers after the request answered (rules.py ``worker_delay``). The queue
    outlives a restart, and what fell due while the server was stopped runs before its first request."""
    clock = Clock()
    storage = tmp_path / "panoptes"
    with EmbeddedPanoptes(storage, rules=Rules(worker_delay=30, clock=clock)) as server:
        _, password = server.ensure_user("alice")
        with Panoptes(endpoint=server.endpoint, username="alice", password=password):
            project = go_live(make_project())
            workflow = make_workflow(project, retirement_count=1)
            workflow.active = True
            workflow.save()
            subject_set = make_subject_set(project)
            a, b, c = make_subjects(project, 3)
            subject_set.add([a, b, c])
            workflow.add_subject_sets(subject_set)
            classify(volunteer(server, "bob"), workflow, a.id, 0)
            workflow.retire_subjects([b.id], reason="consensus")  # 204 at once; the retirement is the worker's
            for subject in (a, b):
                assert workflow.subject_workflow_status(subject.id).retired_at is None
            assert Workflow.find(workflow.id).classifications_count == 0
            clock.now += 30
            eventually(lambda: workflow.subject_workflow_status(b.id).retirement_reason == "consensus", "retired b")
            eventually(lambda: workflow.subject_workflow_status(a.id).retirement_reason == "classification_count",
                       "counted a")
            assert Workflow.find(workflow.id).classifications_count == 1
            workflow.retire_subjects([c.id], reason="other")
    clock.now += 30
    with EmbeddedPanoptes(storage, rules=Rules(worker_delay=30, clock=clock)) as server:
        _, password = server.ensure_user("alice")
        with Panoptes(endpoint=server.endpoint, username="alice", password=password):
            assert Workflow.find(workflow.id).subject_workflow_status(c.id).retirement_reason == "other"
