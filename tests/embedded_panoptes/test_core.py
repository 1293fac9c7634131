"""Projects, workflows, subject sets, subjects with uploads, links and paging through the real
panoptes-client over HTTP, checked against what the server then holds."""

from __future__ import annotations

import pytest
import requests
from panoptes_client import Panoptes, Project, Subject, SubjectSet, Workflow
from panoptes_client.panoptes import PanoptesAPIException
from panoptes_client.set_member_subject import SetMemberSubject

from glitchrun.embedded_panoptes import EmbeddedPanoptes

from .helpers import (
    API,
    CLASSES,
    make_campaign,
    make_project,
    make_subject_set,
    make_subjects,
    make_workflow,
    png_bytes,
)


def test_project_workflow_and_subject_set_are_stored(owner: Panoptes) -> None:
    project = make_project()
    workflow = make_workflow(project)
    subject_set = make_subject_set(project)
    found = Project.find(project.id)
    assert (found.display_name, found.private, found.slug) == ("Glitch hunt", False, "alice/glitch-hunt")
    assert Project.find(slug="ALICE/glitch-hunt").id == project.id
    assert found.links.workflows._linked_object_ids == [workflow.id]
    assert found.links.subject_sets._linked_object_ids == [subject_set.id]
    reloaded = Workflow.find(workflow.id)
    assert [a["label"] for a in reloaded.tasks["T0"]["answers"]] == CLASSES
    assert reloaded.retirement == {"criteria": "classification_count", "options": {"count": 2}}
    assert (reloaded.version, reloaded.subjects_count, reloaded.completeness) == ("1.1", 0, 0.0)
    assert SubjectSet.find(subject_set.id).links.project.id == project.id


def test_150_subjects_with_4_pngs_upload_link_and_page(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    project = make_project()
    workflow = make_workflow(project)
    subject_set = make_subject_set(project)
    subjects = make_subjects(project, 150, images=4)
    assert all(s.async_save_result for s in subjects)
    assert len({s.id for s in subjects}) == 150
    assert len(list((server.storage_dir / "media" / "subject_location").glob("*.png"))) == 600

    for index in (0, 77, 149):  # the bytes come back from the GET URLs with the uploaded type
        locations = Subject.find(subjects[index].id).locations
        assert len(locations) == 4
        for k, location in enumerate(locations):
            response = requests.get(location["image/png"], timeout=10)
            assert response.status_code == 200
            assert response.headers["Content-Type"] == "image/png"
            assert response.content == png_bytes(index * 4 + k)

    subject_set.add(subjects)
    workflow.add_subject_sets(subject_set)
    ids = {s.id for s in subjects}
    assert {s.id for s in Subject.where(subject_set_id=subject_set.id)} == ids  # 8 pages of 20
    assert {s.id for s in Subject.where(subject_set_id=subject_set.id, page_size=100)} == ids  # 2 pages
    assert {s.id for s in subject_set.subjects} == ids
    assert SubjectSet.find(subject_set.id).set_member_subjects_count == 150
    assert Workflow.find(workflow.id).subjects_count == 150
    # every subject reachable from the workflow has its status row, so this does not raise StopIteration
    assert workflow.subject_workflow_status(subjects[5].id).classifications_count == 0
    statuses = list(subject_set.subject_workflow_statuses(workflow.id))  # ids joined with ", "
    assert {s.raw["links"]["subject"] for s in statuses} == ids


def test_paging_hrefs_repeat_filters_and_cap_the_page_size(owner: Panoptes) -> None:
    project = make_project()
    subjects = make_subjects(project, 3)
    body, etag = owner.get("/subjects", params={"project_id": project.id, "page_size": 2})
    meta = body["meta"]["subjects"]
    assert etag and (meta["count"], meta["page_count"], meta["next_page"]) == (3, 2, 2)
    assert meta["next_href"].startswith("/subjects?") and f"project_id={project.id}" in meta["next_href"]
    second, _ = owner.get(meta["next_href"])
    assert [s["id"] for s in body["subjects"] + second["subjects"]] == sorted((s.id for s in subjects), key=int)
    assert second["meta"]["subjects"]["next_href"] is None
    capped, _ = owner.get("/subjects", params={"page_size": 1000})
    assert capped["meta"]["subjects"]["page_size"] == 100


def test_ids_as_comma_lists_with_spaces_and_repeated_keys(owner: Panoptes) -> None:
    project = make_project()
    subject_set = make_subject_set(project)
    a, b, c = make_subjects(project, 3)
    subject_set.add([a, b])
    # lib/routes/json_api_routes.rb: an id in the path is digits only; a list goes in the query (items not
    # stripped, but an integer column reads " 3" as 3)
    with pytest.raises(PanoptesAPIException, match="Not Found"):
        list(Subject.where(id=f"{a.id},{c.id}"))  # GET /subjects/1,3: no such route
    in_query, _ = owner.get("/subjects", params={"id": f"{b.id}, {c.id}"})
    assert {s["id"] for s in in_query["subjects"]} == {b.id, c.id}
    # a list passed to where() arrives as repeated keys, of which Rails keeps the last
    repeated = SetMemberSubject.where(subject_set_id=subject_set.id, subject_id=[int(c.id), int(a.id)])
    assert [m.raw["links"]["subject"] for m in repeated] == [a.id]
    assert not list(SetMemberSubject.where(subject_set_id=subject_set.id, subject_id=[int(a.id), int(c.id)]))


def test_metadata_update_needs_if_match_and_unlinking_removes_a_member(owner: Panoptes) -> None:
    project = make_project()
    workflow, subject_set, subjects = make_campaign(project, 3)

    subject = Subject.find(subjects[0].id)
    subject.metadata["!checked"] = "yes"
    subject.save()  # PUT with the ETag of the GET as If-Match
    assert Subject.find(subject.id).metadata == {"candidate": "c0", "#truth": CLASSES[0], "!checked": "yes"}
    with pytest.raises(PanoptesAPIException, match="If-Match"):
        owner.put(f"/subjects/{subject.id}", json={"subjects": {"metadata": {}}})
    assert Subject.find(subject.id).metadata["!checked"] == "yes"

    subject_set.remove(subjects[1])
    assert subjects[1] not in subject_set and subjects[0] in subject_set
    assert {s.id for s in subject_set.subjects} == {subjects[0].id, subjects[2].id}
    assert Workflow.find(workflow.id).subjects_count == 2

    Subject.find(subjects[2].id).delete()  # deactivated: gone from the API, still a member of its set
    with pytest.raises(PanoptesAPIException, match=f"Could not find subject with id='{subjects[2].id}'"):
        Subject.find(subjects[2].id)
    assert Workflow.find(workflow.id).subjects_count == 2
    assert {s.id for s in Subject.where(subject_set_id=subject_set.id)} == {subjects[0].id}


def test_external_locations_and_rejected_media(owner: Panoptes) -> None:
    project = make_project()
    subject = Subject()
    subject.links.project = project
    subject.add_location({"image/png": "https://example.org/remote.png"})
    subject.save()
    assert Subject.find(subject.id).locations == [{"image/png": "https://example.org/remote.png"}]
    with pytest.raises(PanoptesAPIException, match="Validation failed: Locations is invalid"):
        owner.post("/subjects", json={"subjects": {"locations": ["text/html"], "links": {"project": project.id}}})


def test_workflow_versions_and_retirement_validation(owner: Panoptes) -> None:
    project = make_project()
    workflow = make_workflow(project)
    workflow.tasks = {**workflow.tasks, "T0": {**workflow.tasks["T0"], "question": "Which class?"}}
    workflow.save()
    assert Workflow.find(workflow.id).version == "1.2"  # text only: minor
    workflow = Workflow.find(workflow.id)
    workflow.tasks = {"T0": {**workflow.tasks["T0"], "answers": workflow.tasks["T0"]["answers"][:2]}}
    workflow.save()
    assert Workflow.find(workflow.id).version == "2.3"  # structure and its strings: both
    defaulted = Workflow()
    defaulted.links.project = project
    defaulted.display_name = "default retirement"
    defaulted.primary_language = "en"
    defaulted.save()
    assert defaulted.retirement == {"criteria": "classification_count", "options": {"count": 15}}
    with pytest.raises(PanoptesAPIException, match="Retirement criteria must be one of never_retire, classification_count"):
        owner.post("/workflows", json={"workflows": {"display_name": "x", "primary_language": "en",
                                                     "retirement": {"criteria": "sometimes"},
                                                     "links": {"project": int(project.id)}}})
    with pytest.raises(PanoptesAPIException, match="did not contain a required property of 'private'"):
        owner.post("/projects", json={"projects": {"display_name": "x", "primary_language": "en"}})


def test_unknown_ids_are_404_with_the_real_message(owner: Panoptes) -> None:
    for cls, name in ((Project, "project"), (Workflow, "workflow"), (SubjectSet, "subject_set"), (Subject, "subject")):
        with pytest.raises(PanoptesAPIException, match=f"Could not find {name} with id='999'"):
            cls.find(999)
    response = requests.get(f"{owner.endpoint}/api/no_such_things", headers=API, timeout=10)
    assert response.status_code == 404 and response.json()["errors"][0]["message"] == "Not Found"


def test_writes_need_a_token_and_repeated_slashes_are_collapsed(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    project = make_project()
    response = requests.post(f"{server.endpoint}/api/subject_sets", timeout=10, headers=API,
                             json={"subject_sets": {"display_name": "x", "links": {"project": project.id}}})
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"] == "You must be logged in to access this resource."
    with Panoptes(endpoint=server.endpoint + "/"):  # the client then asks for //api/projects/1
        assert Project.find(project.id).display_name == "Glitch hunt"


def test_another_user_finds_nothing_to_change_and_private_projects_are_hidden(
    server: EmbeddedPanoptes, owner: Panoptes
) -> None:
    """project_policy.rb: outside the update scope a project is not found (404, check_resources_exist.rb),
    and a link to it is not linkable (422, relation_manager.rb); private ones are not even readable."""
    public = make_project("Public hunt")
    private = make_project("Secret hunt", private=True)
    private_set = make_subject_set(private)
    _, password = server.ensure_user("bob")
    with Panoptes(endpoint=server.endpoint, username="bob", password=password):
        stolen = Project.find(public.id)
        stolen.display_name = "Bob's now"
        with pytest.raises(PanoptesAPIException, match=f"Could not find project with id='{public.id}'"):
            stolen.save()
        with pytest.raises(PanoptesAPIException, match="Couldn't find linked project for current user"):
            make_subject_set(public)
        with pytest.raises(PanoptesAPIException, match=f"Could not find project with id='{private.id}'"):
            Project.find(private.id)
        with pytest.raises(PanoptesAPIException, match="Could not find subject_set"):
            SubjectSet.find(private_set.id)
        assert [p.id for p in Project.where()] == [public.id]
    with Panoptes(endpoint=server.endpoint):
        assert [p.id for p in Project.where()] == [public.id]
    assert Project.find(public.id).display_name == "Public hunt"
    assert {p.id for p in Project.where()} == {public.id, private.id}  # the owner sees both
