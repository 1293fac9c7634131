"""Accounts, projects, workflows, subject sets, subjects with uploads, links and paging, through the real
panoptes-client over HTTP, checked against what the server then holds."""

from __future__ import annotations

import io

import requests
from panoptes_client import Panoptes, Project, Subject, SubjectSet, User, Workflow

from glitchrun.embedded_panoptes import EmbeddedPanoptes

from .conftest import CLASSES, make_project, make_subject_set, make_workflow, png_bytes


def test_connect_and_me(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    me = User.me()
    assert me.login == "alice"
    assert int(me.id) == owner.logged_in_user_id


def test_project_workflow_subject_set(owner: Panoptes) -> None:
    project = make_project()
    workflow = make_workflow(project)
    subject_set = make_subject_set(project)
    assert project.slug == "alice/glitch-hunt"
    found = Project.find(project.id)
    assert (found.display_name, found.private) == ("Glitch hunt", False)
    assert set(found.links.workflows._linked_object_ids) == {workflow.id}
    reloaded = Workflow.find(workflow.id)
    assert [a["label"] for a in reloaded.tasks["T0"]["answers"]] == CLASSES
    assert reloaded.retirement == {"criteria": "classification_count", "options": {"count": 2}}
    assert reloaded.version == "1.1"
    assert SubjectSet.find(subject_set.id).links.project.id == project.id
