"""Data exports through ``get_export`` (the client's own download path), read with pandas: Zooniverse's
exact columns and cell formats (§9 of the contract)."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import pandas as pd
import pytest
import requests
from panoptes_client import Panoptes, Project, Subject, SubjectSet, Workflow
from panoptes_client.panoptes import PanoptesAPIException

from glitchrun.embedded_panoptes import EmbeddedPanoptes
from glitchrun.embedded_panoptes.exports import (
    CLASSIFICATION_COLUMNS,
    SUBJECT_COLUMNS,
    WORKFLOW_COLUMNS,
)
from glitchrun.embedded_panoptes.rules import Rules

from .helpers import (
    CLASSES,
    classify,
    go_live,
    make_project,
    make_subject_set,
    make_subjects,
    make_workflow,
)

CSV_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


@dataclass
class Campaign:
    project: Project
    workflow: Workflow
    other_workflow: Workflow
    subject_set: SubjectSet
    subjects: list[Subject]


@pytest.fixture
def campaign(server: EmbeddedPanoptes, owner: Panoptes) -> Campaign:
    """Two subjects in a set linked to two workflows; the first retired by bob and an anonymous volunteer."""
    project = go_live(make_project())
    workflow, other = make_workflow(project), make_workflow(project)
    subject_set = make_subject_set(project)
    subjects = make_subjects(project, 2)
    subjects[1].metadata["note"] = "Störung <&>"  # non-ASCII and HTML-ish text survive the round trip
    subjects[1].save()
    subject_set.add(subjects)
    workflow.add_subject_sets(subject_set)
    other.add_subject_sets(subject_set)
    _, password = server.ensure_user("bob")
    classify(Panoptes(endpoint=server.endpoint, username="bob", password=password), workflow, subjects[0].id, 1)
    classify(Panoptes(endpoint=server.endpoint), workflow, subjects[0].id, 7)  # an index past the answers
    classify(Panoptes(endpoint=server.endpoint), other, subjects[1].id, 2)
    return Campaign(project, workflow, other, subject_set, subjects)


def read(response: requests.Response) -> pd.DataFrame:
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert int(response.headers["Content-Length"]) == len(response.content)
    return pd.read_csv(io.StringIO(response.text), dtype=str, keep_default_na=False)


def test_classification_export(campaign: Campaign) -> None:
    frame = read(campaign.project.get_export("classifications", generate=True, wait_timeout=10))
    assert list(frame.columns) == CLASSIFICATION_COLUMNS
    assert len(frame) == 3 and list(frame.classification_id) == sorted(frame.classification_id, key=int)
    bob, anonymous, other = frame.to_dict("records")
    assert (bob["user_name"], bob["workflow_id"], bob["workflow_version"]) == ("bob", campaign.workflow.id, "1.1")
    assert anonymous["user_id"] == "" and anonymous["user_name"] == f"not-logged-in-{anonymous['user_ip']}"
    assert re.fullmatch(r"[0-9a-f]{20}", anonymous["user_ip"]) and anonymous["user_ip"] == other["user_ip"]
    assert CSV_TIME.fullmatch(bob["created_at"]) and bob["gold_standard"] == "" and bob["expert"] == ""
    assert json.loads(bob["annotations"]) == [{"task": "T0", "task_label": "Which glitch class is this?",
                                               "value": CLASSES[1]}]
    assert json.loads(anonymous["annotations"])[0]["value"] == "unknown answer label"
    metadata = json.loads(bob["metadata"])
    assert "workflow_version" not in metadata
    assert (metadata["live_project"], metadata["user_group_ids"], metadata["source"]) == (True, [], "api")
    retired = json.loads(anonymous["subject_data"])[campaign.subjects[0].id]
    assert next(iter(retired)) == "retired" and retired["candidate"] == "c0"
    status = retired["retired"]
    assert (status["retirement_reason"], status["classifications_count"]) == ("classification_count", 2)
    assert status["workflow_id"] == int(campaign.workflow.id) and status["subject_id"] == int(campaign.subjects[0].id)
    assert json.loads(other["subject_data"]) == {
        campaign.subjects[1].id: {"retired": None, "candidate": "c1", "#truth": CLASSES[1], "note": "Störung <&>"}}
    assert other["subject_ids"] == campaign.subjects[1].id

    only_workflow = read(campaign.workflow.get_export("classifications", generate=True, wait_timeout=10))
    assert list(only_workflow.columns) == CLASSIFICATION_COLUMNS
    assert set(only_workflow.workflow_id) == {campaign.workflow.id} and len(only_workflow) == 2


def test_subject_export(campaign: Campaign) -> None:
    frame = read(campaign.project.get_export("subjects", generate=True, wait_timeout=10))
    assert list(frame.columns) == SUBJECT_COLUMNS
    pairs = [(r["subject_id"], r["workflow_id"]) for r in frame.to_dict("records")]
    workflows = (campaign.workflow.id, campaign.other_workflow.id)
    by_id = sorted((s.id for s in campaign.subjects), key=int)
    assert pairs == [(subject, workflow) for subject in by_id for workflow in workflows]
    retired = frame[(frame.subject_id == campaign.subjects[0].id) & (frame.workflow_id == workflows[0])].iloc[0]
    assert (retired.classifications_count, retired.retirement_reason) == ("2", "classification_count")
    assert CSV_TIME.fullmatch(retired.retired_at) and CSV_TIME.fullmatch(retired.created_at)
    unclassified = frame[(frame.subject_id == campaign.subjects[0].id) & (frame.workflow_id == workflows[1])].iloc[0]
    assert unclassified.retired_at == "" and unclassified.classifications_count == "0"
    locations = json.loads(retired.locations)
    assert list(locations) == ["0"] and requests.get(locations["0"], timeout=10).status_code == 200


def test_workflow_export_has_a_row_per_version(campaign: Campaign) -> None:
    workflow = Workflow.find(campaign.workflow.id)
    workflow.display_name = "Glitch classes, renamed"
    workflow.tasks = {"T0": {**workflow.tasks["T0"], "question": "Which class?"}}
    workflow.save()
    frame = read(campaign.project.get_export("workflows", generate=True, wait_timeout=10))
    assert list(frame.columns) == WORKFLOW_COLUMNS
    rows = frame[frame.workflow_id == campaign.workflow.id]
    assert [(r["version"], r["minor_version"]) for r in rows.to_dict("records")] == [("1", "1"), ("1", "2")]
    latest = rows.iloc[-1]
    assert latest.display_name == "Glitch classes, renamed" and latest.retired_set_member_subjects_count == "1"
    assert json.loads(latest.tasks)["T0"]["question"] == "T0.question"
    assert json.loads(latest.strings)["T0.question"] == "Which class?"
    assert json.loads(latest.strings)["T0.answers.2.label"] == CLASSES[2]
    assert json.loads(latest.retirement) == {"criteria": "classification_count", "options": {"count": 2}}


class Clock:
    """A clock the export rate limit reads, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_second_export_within_the_interval_stays_creating_and_the_first_is_still_served(tmp_path) -> None:
    """app/workers/concerns/rate_limit_dump_worker.rb, config/initializers/rate_limit_dump_worker.rb (one
    dump per 24 h, 12 h apart, excess cancelled: 201, medium ``creating``, the old file stays);
    create_or_update_medium.rb reuses the medium; the 404 before any export is media_controller.rb's."""
    clock = Clock()
    with EmbeddedPanoptes(tmp_path / "panoptes", rules=Rules(clock=clock)) as server:
        _, password = server.ensure_user("alice")
        with Panoptes(endpoint=server.endpoint, username="alice", password=password):
            project = make_project()
            with pytest.raises(PanoptesAPIException, match=f"No subjects_export exists for project #{project.id}"):
                project.describe_export("subjects")
            first = project.generate_export("subjects")["media"][0]
            assert first["metadata"]["state"] == "ready" and first["media_type"] == "project_subjects_export"
            assert read(requests.get(first["src"], timeout=10)).shape == (0, len(SUBJECT_COLUMNS))
            subject_set = make_subject_set(project)
            subject_set.add(make_subjects(project, 2))

            clock.now += 12 * 3600  # past the minimum delay, but the day's one dump is spent
            again = project.generate_export("subjects")["media"][0]
            assert again["metadata"]["state"] == "creating" and again["src"] == first["src"]
            assert project.describe_export("subjects")["media"][0]["metadata"]["state"] == "creating"
            assert read(requests.get(first["src"], timeout=10)).shape == (0, len(SUBJECT_COLUMNS))

            clock.now += 12 * 3600 + 1  # a day after the first dump (the refused request did not count)
            fresh = project.generate_export("subjects")["media"][0]
            assert fresh["metadata"]["state"] == "ready" and fresh["src"] != first["src"]
            assert requests.get(first["src"], timeout=10).status_code == 404
            assert read(project.get_export("subjects")).shape == (2, len(SUBJECT_COLUMNS))
            # another export type, or another resource, has its own allowance
            assert project.generate_export("workflows")["media"][0]["metadata"]["state"] == "ready"


def test_survey_classifications_are_stored_and_exported_in_the_real_format(owner: Panoptes) -> None:
    """lib/formatter/csv/annotation_for_csv.rb: a survey annotation (not drawing/single/multiple/text/
    dropdown/combo) is exported as submitted: ``[{"choice": ..., "answers": {...}, "filters": {...}}]``."""
    project = make_project()
    workflow = Workflow()
    workflow.links.project = project
    workflow.display_name = "Gravity Spy survey"
    workflow.primary_language = "en"
    choice = {"label": "Blip", "description": "Short glitch", "images": [], "characteristics": {},
              "confusions": {}, "confusionsOrder": [], "noQuestions": True}
    workflow.tasks = {"T0": {"type": "survey", "required": False, "characteristics": {}, "characteristicsOrder": [],
                             "choices": {"BLIP": choice, "WHISTLE": {**choice, "label": "Whistle"}},
                             "choicesOrder": ["BLIP", "WHISTLE"], "questions": {}, "questionsOrder": [],
                             "images": {}}}
    workflow.first_task = "T0"
    workflow.save()
    (subject,) = make_subjects(project, 1)
    annotations = [{"task": "T0", "value": [{"choice": "BLIP", "answers": {}, "filters": {}}]}]
    body = {"classifications": {
        "annotations": annotations, "completed": True,
        "metadata": {"started_at": "2025-01-01T00:00:00Z", "finished_at": "2025-01-01T00:00:09Z",
                     "user_agent": "test", "user_language": "en", "workflow_version": workflow.version},
        "links": {"project": project.id, "workflow": workflow.id, "subjects": [subject.id]}}}
    with owner:
        stored = owner.post("/classifications", json=body)[0]["classifications"][0]
    assert stored["annotations"] == annotations
    frame = read(workflow.get_export("classifications", generate=True, wait_timeout=10))
    assert json.loads(frame.annotations[0]) == annotations
