"""The routes the campaign loop reads and writes, through panoptes-client as the loop calls them: the
project's classifications by ``last_id``, project roles, the subject queue, the account's upload counts
and retirement by reason. Each test names the real server file that decides what it checks."""

from __future__ import annotations

import pytest
import requests
from panoptes_client import Classification, Panoptes, Project, ProjectRole, User, Workflow
from panoptes_client.panoptes import PanoptesAPIException

from glitchrun.embedded_panoptes import EmbeddedPanoptes

from .helpers import API, classify, make_project, make_subject_set, make_subjects, make_workflow


def login(server: EmbeddedPanoptes, name: str) -> Panoptes:
    _, password = server.ensure_user(name, f"{name}-pw")
    return Panoptes(endpoint=server.endpoint, username=name, password=password)


def linked(project: Project, count: int, retirement: int = 15) -> tuple[Workflow, list]:
    workflow = make_workflow(project, retirement_count=retirement)
    subject_set = make_subject_set(project, f"set for {workflow.id}")
    subjects = make_subjects(project, count)
    subject_set.add(subjects)
    workflow.add_subject_sets(subject_set)
    return workflow, subjects


def add_role(owner: Panoptes, project: Project, user_id: int, *roles: str) -> dict:
    with owner:
        body, _ = owner.post("/project_roles", json={"project_roles": {
            "roles": list(roles), "links": {"project": project.id, "user": str(user_id)}}})
    return body["project_roles"][0]


def test_project_classifications_page_by_last_id(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    """app/controllers/api/v1/classifications_controller.rb#project, classification_serializer.rb
    add_last_id_paging_hrefs: next_href carries last_id (page dropped, keys sorted); an empty page ends."""
    project = make_project()
    workflow, subjects = linked(project, 3)
    bob = login(server, "bob")
    ids = [classify(bob, workflow, subjects[i % 3].id, i % 4)["id"] for i in range(25)]
    with owner:
        all_of_them = [c.id for c in Classification.where(scope="project", project_id=project.id, last_id=0)]
        # ids 1..20 sorted as strings end in "9": the real next page repeats 10..20, it never skips one
        assert all_of_them[:20] == ids[:20] and all_of_them[20:] == ids[9:]
        later = [c.id for c in Classification.where(scope="project", project_id=project.id, last_id=ids[21])]
        assert later == ids[22:]
        body, _ = owner.get("/classifications/project", params={"project_id": project.id, "last_id": ids[0]})
        meta = body["meta"]["classifications"]
        assert len(body["classifications"]) == 20 and meta["count"] == 0
        assert meta["next_href"] == f"/classifications/project?last_id={max(ids[1:21])}&project_id={project.id}"
        assert meta["previous_href"] == f"/classifications/project?last_id={ids[0]}&project_id={project.id}"
        first = body["classifications"][0]
        assert set(first) >= {"id", "annotations", "created_at", "metadata", "href", "links"}
        assert first["metadata"]["workflow_version"] == "1.1"
        assert first["links"]["workflow"] == workflow.id and first["links"]["subjects"] == [subjects[1].id]
        end, _ = owner.get("/classifications/project", params={"project_id": project.id, "last_id": ids[-1]})
        assert end["classifications"] == [] and end["meta"]["classifications"]["next_href"] is None
        with pytest.raises(PanoptesAPIException, match="Project ID required if last_id is included"):
            owner.get("/classifications/project", params={"last_id": 1})
    with bob:  # ClassificationPolicy::ProjectScope: only projects the caller may update; others are empty, not 403
        assert list(Classification.where(scope="project", project_id=project.id)) == []
    assert requests.get(f"{server.endpoint}/api/classifications/project", headers=API, timeout=10).status_code == 401


def test_project_roles_open_a_private_project_to_testers(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    """app/policies/project_policy.rb ReadScope (tester reads), WriteScope (owner, collaborator write);
    project_roles_controller.rb and access_control_list.rb for the role documents."""
    project = make_project("Secret hunt", private=True)
    workflow, subjects = linked(project, 2)
    bob_id = server.ensure_user("bob", "bob-pw")[0]
    with login(server, "bob") as bob:
        with pytest.raises(PanoptesAPIException, match=f"Could not find project with id='{project.id}'"):
            Project.find(project.id)
        with pytest.raises(PanoptesAPIException, match="Couldn't find linked project for current user"):
            classify(bob, workflow, subjects[0].id, 0)
    role = add_role(owner, project, bob_id, "tester")
    assert role["roles"] == ["tester"] and role["links"]["owner"]["id"] == str(bob_id)
    with owner:
        assert {tuple(r.roles) for r in ProjectRole.where(project_id=project.id)} == {("owner",), ("tester",)}
        with pytest.raises(PanoptesAPIException, match="Roles have already been set for this user or group"):
            add_role(owner, project, bob_id, "collaborator")
        with pytest.raises(PanoptesAPIException, match="No User with id: 999 exists"):
            add_role(owner, project, 999, "tester")
    with login(server, "bob") as bob:
        assert Project.find(project.id).display_name == "Secret hunt"
        classify(bob, workflow, subjects[0].id, 0)
        with pytest.raises(PanoptesAPIException, match="Couldn't find linked project for current user"):
            add_role(bob, project, bob_id, "owner")  # a tester may not hand out roles
        assert list(Classification.where(scope="project", project_id=project.id)) == []  # nor read the project's


def test_queued_offers_active_unseen_subjects(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    """app/controllers/api/v1/subjects_controller.rb#queued, lib/subjects/selector.rb: non-retired, unseen;
    when none is left, the failover fallback offers any of them, flagged retired/already_seen."""
    project = make_project()
    workflow, subjects = linked(project, 4)
    workflow.retire_subjects([subjects[0].id], reason="consensus")
    bob = login(server, "bob")
    classify(bob, workflow, subjects[1].id, 0)
    with bob:
        body, _ = bob.get("/subjects/queued", params={"workflow_id": workflow.id})
        offered = body["subjects"]
        assert {s["id"] for s in offered} == {subjects[2].id, subjects[3].id}
        assert {(s["retired"], s["already_seen"], s["selection_state"]) for s in offered} == {(False, False, "normal")}
        with owner:
            workflow.retire_subjects([subjects[2].id, subjects[3].id], reason="other")
        body, _ = bob.get("/subjects/queued", params={"workflow_id": workflow.id})
        assert {s["selection_state"] for s in body["subjects"]} == {"failover_fallback"}
        assert all(s["retired"] or s["already_seen"] for s in body["subjects"])
        with pytest.raises(PanoptesAPIException, match="workflow_id parameter missing"):
            bob.get("/subjects/queued")


def test_me_shows_upload_counts_and_the_limit_refuses_with_403(tmp_path, owner: Panoptes) -> None:
    """subjects_controller.rb check_subject_limit, api_user.rb above_subject_limit?, user.rb (deleted
    subjects still count), user_serializer.rb (ME_ONLY_ATTRS)."""
    with EmbeddedPanoptes(tmp_path / "limited", rules={"subject_limit": 3}) as server:
        with login(server, "carol") as carol:
            project = make_project()
            made = make_subjects(project, 3)
            made[0].delete()
            me, _ = carol.get("/me")
            assert (me["users"][0]["uploaded_subjects_count"], me["users"][0]["subject_limit"]) == (3, 3)
            assert User.find(carol.logged_in_user_id).raw["uploaded_subjects_count"] == 3
            with pytest.raises(PanoptesAPIException, match="User has uploaded 3 subjects of 3 maximum"):
                carol.post("/subjects", json={"subjects": {"locations": ["image/png"],
                                                           "links": {"project": project.id}}})
            response = requests.post(f"{server.endpoint}/api/subjects", timeout=10, headers={
                **API, "Authorization": f"Bearer {carol.get_bearer_token()}"},
                json={"subjects": {"locations": ["image/png"], "links": {"project": project.id}}})
            assert response.status_code == 403
        with login(server, "dave") as dave:
            assert "uploaded_subjects_count" not in User.find(carol.logged_in_user_id).raw  # not dave's business
            assert dave.get("/me")[0]["users"][0]["uploaded_subjects_count"] == 0


def test_retired_subjects_takes_the_real_reasons(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    """app/operations/workflows/retire_subjects.rb: 204, reasons of subject_workflow_status.rb (blank means
    nothing_here), none allowed, anything else 422; unknown ids skipped (retire_subject_worker.rb)."""
    project = make_project()
    workflow, subjects = linked(project, 4)
    workflow.retire_subjects([subjects[0].id], reason="consensus")
    workflow.retire_subjects([subjects[1].id, 999_999], reason="other")
    with owner:
        owner.post(f"/workflows/{workflow.id}/retired_subjects", json={"subject_id": subjects[2].id})
        with pytest.raises(PanoptesAPIException, match="Retirement reason is not included in the list"):
            workflow.retire_subjects([subjects[3].id], reason="tired")
    reasons = [workflow.subject_workflow_status(s.id).retirement_reason for s in subjects]
    assert reasons == ["consensus", "other", None, None]
    assert workflow.subject_workflow_status(subjects[2].id).retired_at is not None
    assert workflow.subject_workflow_status(subjects[3].id).retired_at is None
    with login(server, "bob"), pytest.raises(PanoptesAPIException, match=f"Could not find workflow with id='{workflow.id}'"):
        workflow.retire_subjects([subjects[3].id], reason="consensus")
