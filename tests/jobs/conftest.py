"""Seeding the embedded Panoptes for the management-job tests, and running a job as the CLI would.

Each ``LocalBackend.connect()`` starts its own server on the storage directory, and the data persists
in SQLite: a test seeds with one connection, closes it, runs the job (which starts the server again) and
then opens another connection to look at what the job left.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from hydra import compose, initialize_config_module
from panoptes_client import Panoptes

from glitchrun.cli import run
from glitchrun.zooniverse.resources import (
    ProjectSpec,
    WorkflowSpec,
    ensure_project,
    ensure_subject_set,
    ensure_workflow,
    link_subject_set,
    subject_set_members,
)

#: the campaign project of conf/config.yaml, so jobs find it by its default name
PROJECT = "glitchrun demo campaign"
CLASSES = ["Blip", "Whistle"]
IMAGE = "https://example.org/glitch.png"


@dataclass
class Seeded:
    project_id: str
    workflow_id: str
    subject_set_id: str
    subject_ids: list[str]


def create_subjects(project_id: str, subject_set_id: str, metadata: list[dict]) -> list[str]:
    """Subjects with an external image, linked to the set at creation (one POST each)."""
    client = Panoptes.client()
    ids = []
    for fields in metadata:
        body, _ = client.post("/subjects", json={"subjects": {
            "locations": [{"image/png": IMAGE}], "metadata": fields,
            "links": {"project": project_id, "subject_sets": [subject_set_id]}}})
        ids.append(body["subjects"][0]["id"])
    return ids


@pytest.fixture
def seed_campaign(local_backend) -> Callable[..., Seeded]:
    """``seed_campaign(metadata, set_name="batch-1", live=False)``: the campaign project (live: Zooniverse counts its
    classifications) and workflow, a set linked to it, its subjects."""

    def make(metadata: list[dict], set_name: str = "batch-1", live: bool = False) -> Seeded:
        with local_backend.connect() as connection:
            spec = ProjectSpec(display_name=PROJECT, description="tests", private=False, live=live)
            project, _ = ensure_project(spec, connection.login)
            workflow, _ = ensure_workflow(project, WorkflowSpec(display_name="Glitch classification", classes=CLASSES))
            subject_set, _ = ensure_subject_set(project, set_name)
            link_subject_set(workflow, subject_set)
            ids = create_subjects(str(project.id), str(subject_set.id), metadata)
            return Seeded(str(project.id), str(workflow.id), str(subject_set.id), ids)

    return make


@pytest.fixture
def run_job(tmp_path: Path, local_backend) -> Callable[..., tuple[Any, Path]]:
    """``run_job(job, *overrides, run_dir="run")``: compose the config as the CLI does and run the job on the
    test's embedded Panoptes; returns (what the job returned, its run directory)."""

    def run_(job: str, *overrides: str, run_dir: str = "run") -> tuple[Any, Path]:
        directory = tmp_path / run_dir
        with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
            cfg = compose("config", overrides=[f"paths.outputs={tmp_path}", f"paths.run_dir={directory}", f"job={job}",
                                               f"backend.storage_dir={local_backend.storage_dir}", *overrides])
        return run(cfg), directory

    return run_


@pytest.fixture
def server_state(local_backend) -> Callable[..., tuple[dict[str, set[str]], dict[str, dict]]]:
    """``server_state(set_ids, subject_ids)``: after a job, the members of each set (from the set-member list) and the
    metadata of those of the subjects that still exist."""

    def look_(set_ids: list[str], subject_ids: list[str]) -> tuple[dict[str, set[str]], dict[str, dict]]:
        with local_backend.connect():
            members = {set_id: set(subject_set_members(set_id)) for set_id in set_ids}
            found, _ = Panoptes.client().get("/subjects", params={"id": ",".join(subject_ids), "page_size": 100})
            return members, {s["id"]: s["metadata"] for s in found["subjects"]}

    return look_


@pytest.fixture
def http_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every HTTP request the client side makes from now on, as (METHOD, path): ``requests.Session.request``
    wrapped (the embedded server runs in-process but does not use requests)."""
    calls: list[tuple[str, str]] = []
    original = requests.Session.request

    def request(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        calls.append((method.upper(), urlparse(url).path))
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", request)
    return calls
