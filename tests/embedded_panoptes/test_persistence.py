"""A restart on the same storage folder keeps accounts, objects, media and counts; ids continue; old
tokens end."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from panoptes_client import Panoptes, Project, Subject, SubjectSet, Workflow

from glitchrun.embedded_panoptes import EmbeddedPanoptes

from .helpers import (
    API,
    classify,
    go_live,
    make_project,
    make_subject_set,
    make_subjects,
    make_workflow,
    png_bytes,
)


def test_restart_keeps_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage = Path("panoptes")  # relative, as in the default config (outputs/embedded_panoptes)
    with EmbeddedPanoptes(storage) as server:
        alice_id, password = server.ensure_user("alice")
        with Panoptes(endpoint=server.endpoint, username="alice", password=password) as client:
            project = go_live(make_project())
            workflow = make_workflow(project, retirement_count=1)
            subject_set = make_subject_set(project)
            subjects = make_subjects(project, 3, images=2)
            subject_set.add(subjects)
            workflow.add_subject_sets(subject_set)
            classify(client, workflow, subjects[0].id, 0)
            old_token = client.get_bearer_token()

    with EmbeddedPanoptes(storage) as server:
        assert server.ensure_user("alice", "new-password")[0] == alice_id
        stale = requests.get(f"{server.endpoint}/api/me", headers={**API, "Authorization": f"Bearer {old_token}"},
                             timeout=10)
        assert stale.status_code == 401
        with Panoptes(endpoint=server.endpoint, username="alice", password="new-password"):
            assert Project.find(project.id).display_name == "Glitch hunt"
            assert {s.id for s in SubjectSet.find(subject_set.id).subjects} == {s.id for s in subjects}
            counts = Workflow.find(workflow.id)
            assert (counts.subjects_count, counts.retired_set_member_subjects_count) == (3, 1)
            location = Subject.find(subjects[2].id).locations[1]["image/png"]
            assert location.startswith(server.endpoint)  # URLs follow the new port
            assert requests.get(location, timeout=10).content == png_bytes(2 * 2 + 1)
            newer = make_project("Second hunt")
            assert int(newer.id) > int(project.id)
