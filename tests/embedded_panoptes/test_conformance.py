"""Conformance: bodies the real Zooniverse refuses and bodies it accepts, for every resource and route
glitchrun and the official CLI write, each case naming the real server file (zooniverse/panoptes) that
decides it. The embedded server must give the same verdict with the same status: 422 for a schema
failure (``lib/json_schema.rb``), 400 for a model validation (``ActiveRecord::RecordInvalid`` in
``app/controllers/api/api_controller.rb``), 428/412 for a missing/stale If-Match
(``lib/json_api_controller/precondition_check.rb``), 404 outside the policies' scope."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from panoptes_client import Panoptes, Project, Workflow
from panoptes_client.panoptes import PanoptesAPIException

from glitchrun.embedded_panoptes import EmbeddedPanoptes

from .helpers import classify, go_live, make_project, make_subject_set, make_subjects, make_workflow

SCHEMAS = "app/schemas/"
NAMES = itertools.count()


@dataclass
class Site:
    endpoint: str
    token: str
    stranger: str
    ids: dict[str, str]

    def send(self, method: str, path: str, body: Any = None, token: str | None = None,
             if_match: str | None = "current") -> requests.Response:
        path = path.format(**self.ids)
        headers = {"Accept": "application/vnd.api+json; version=1"}
        if token != ANONYMOUS_TOKEN:
            headers["Authorization"] = f"Bearer {token or self.token}"
        if method in ("PUT", "DELETE") and if_match == "current":
            headers["If-Match"] = self.send("GET", path).headers["ETag"]
        elif if_match not in (None, "current"):
            headers["If-Match"] = if_match
        return requests.request(method, f"{self.endpoint}/api{path}", json=body, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with EmbeddedPanoptes(tmp_path_factory.mktemp("conformance") / "panoptes") as server:
        _, password = server.ensure_user("alice")
        _, other = server.ensure_user("mallory")
        with Panoptes(endpoint=server.endpoint, username="mallory", password=other) as stranger:
            stranger_token = stranger.get_bearer_token()
        with Panoptes(endpoint=server.endpoint, username="alice", password=password) as client:
            project = make_project("Conformance")
            workflow = make_workflow(project)
            subject_set = make_subject_set(project, "Taken name")
            subjects = make_subjects(project, 2)
            subject_set.add(subjects[:1])
            workflow.add_subject_sets(subject_set)
            yield Site(server.endpoint, client.get_bearer_token(), stranger_token, {
                "project": project.id, "workflow": workflow.id, "set": subject_set.id,
                "subject": subjects[0].id, "other_subject": subjects[1].id, "alice": str(client.logged_in_user_id)})


def fill(value: Any, ids: dict[str, str]) -> Any:
    """Put the site's ids into a body (``{project}``...) and a fresh name wherever ``{name}`` appears."""
    if isinstance(value, str):
        return value.replace("{name}", f"name {next(NAMES)}").format(**ids)
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


def project(**extra: Any) -> dict:
    return {"projects": {"display_name": "{name}", "description": "d", "primary_language": "en", "private": True,
                         **extra}}


def workflow(**extra: Any) -> dict:
    return {"workflows": {"display_name": "{name}", "primary_language": "en", "links": {"project": "{project}"},
                          **extra}}


def subject_set(**extra: Any) -> dict:
    return {"subject_sets": {"display_name": "{name}", "links": {"project": "{project}"}, **extra}}


def subject(**extra: Any) -> dict:
    return {"subjects": {"locations": [{"image/png": "https://example.org/a.png"}],
                         "links": {"project": "{project}"}, **extra}}


META = {"started_at": "2025-01-01T00:00:00Z", "finished_at": "2025-01-01T00:00:05Z", "user_agent": "t",
        "user_language": "en", "workflow_version": "1.1"}


def classification(**extra: Any) -> dict:
    return {"classifications": {"annotations": [{"task": "T0", "value": 0}], "metadata": META,
                                "links": {"project": "{project}", "workflow": "{workflow}", "subjects": ["{subject}"]},
                                **extra}}


def links(body: dict, **changes: Any) -> dict:
    (key, doc), = body.items()
    return {key: {**doc, "links": {**doc["links"], **changes}}}


# (id, real source file, method, path, body, status, message fragment)
CASES = [
    # -------------------------------------------------------------- projects, create
    ("project: accepted", SCHEMAS + "project_create_schema.rb", "POST", "/projects",
     project(urls=[{"label": "blog", "url": "https://example.org"}], tags=["glitch"], configuration={"x": 1},
             links={"owner": {"id": "{alice}", "type": "users"}}), 201, ""),
    ("project: required key", SCHEMAS + "project_create_schema.rb", "POST", "/projects",
     {"projects": {"display_name": "{name}", "description": "d", "primary_language": "en"}}, 422,
     "did not contain a required property of 'private'"),
    ("project: unknown key", SCHEMAS + "project_create_schema.rb", "POST", "/projects", project(colour="red"), 422,
     'contains additional properties [\\"colour\\"]'),
    ("project: unknown link", SCHEMAS + "project_create_schema.rb", "POST", "/projects",
     project(links={"organization": "1"}), 422, '"links"=>'),
    ("project: link shape", SCHEMAS + "project_create_schema.rb", "POST", "/projects",
     project(links={"owner": {"id": "{alice}"}}), 422, "did not contain a required property of 'type'"),
    ("project: url item shape", SCHEMAS + "project_create_schema.rb", "POST", "/projects",
     project(urls=[{"label": "x"}]), 422, '"urls/0"=>'),
    ("project: null", SCHEMAS + "project_create_schema.rb", "POST", "/projects", project(description=None), 422,
     "of type null did not match the following type: string"),
    ("project: array item type", SCHEMAS + "project_create_schema.rb", "POST", "/projects", project(tags=["a", 1]),
     422, '"tags/1"=>"of type integer'),
    ("project: live only on update", SCHEMAS + "project_create_schema.rb", "POST", "/projects", project(live=True),
     422, 'additional properties [\\"live\\"]'),
    ("project: admin-only field", "app/controllers/api/v1/projects_controller.rb", "POST", "/projects",
     project(launch_approved=True), 422, "Only Admins may set field launch_approved for project"),
    ("project: duplicate name", "app/validators/unique_for_owner_validator.rb", "POST", "/projects",
     {"projects": {"display_name": "CONFORMANCE", "description": "d", "primary_language": "en", "private": True}},
     400, "Validation failed: Display name Must be unique for owner"),
    ("project: missing document", "app/controllers/api/api_controller.rb", "POST", "/projects", {"project": {}},
     422, "param is missing or the value is empty: projects"),
    # -------------------------------------------------------------- projects, update
    ("project update: live accepted", SCHEMAS + "project_update_schema.rb", "PUT", "/projects/{project}",
     {"projects": {"live": False, "name": "x", "state": "paused"}}, 200, ""),
    ("project update: owner link refused", SCHEMAS + "project_update_schema.rb", "PUT", "/projects/{project}",
     {"projects": {"links": {"owner": {"id": "{alice}", "type": "users"}}}}, 422, '"links"=>'),
    ("project update: unknown key", SCHEMAS + "project_update_schema.rb", "PUT", "/projects/{project}",
     {"projects": {"colour": "red"}}, 422, "outside of the schema"),
    ("project update: null", SCHEMAS + "project_update_schema.rb", "PUT", "/projects/{project}",
     {"projects": {"private": None}}, 422, "of type null"),
    ("project update: no If-Match", "lib/json_api_controller/precondition_check.rb", "PUT", "/projects/{project}",
     {"projects": {"description": "x"}}, 428, "Request requires If-Match header to be present"),
    ("project update: stale If-Match", "lib/json_api_controller/precondition_check.rb", "PUT", "/projects/{project}",
     {"projects": {"description": "x"}}, 412, "JsonApiController::PreconditionFailed"),
    ("project update: stranger", "app/policies/project_policy.rb", "PUT", "/projects/{project}",
     {"projects": {"description": "x"}}, 404, "Could not find project with id="),
    # -------------------------------------------------------------- workflows
    ("workflow: accepted", SCHEMAS + "workflow_create_schema.rb", "POST", "/workflows",
     workflow(steps=[], serialize_with_project=True, display_order_position="3", retirement={}), 201, ""),
    ("workflow: required link", SCHEMAS + "workflow_create_schema.rb", "POST", "/workflows",
     {"workflows": {"display_name": "{name}", "primary_language": "en", "links": {}}}, 422,
     "\"links\"=>\"did not contain a required property of 'project'\""),
    ("workflow: unknown retirement key", SCHEMAS + "workflow_create_schema.rb", "POST", "/workflows",
     workflow(retirement={"criteria": "never_retire", "when": "never"}), 422, '"retirement"=>'),
    ("workflow: link value shape", SCHEMAS + "workflow_create_schema.rb", "POST", "/workflows",
     links(workflow(), project={"id": "{project}"}), 422, '"links/project"=>"of type object'),
    ("workflow: link id list items", SCHEMAS + "workflow_create_schema.rb", "POST", "/workflows",
     links(workflow(), subject_sets=[True]), 422, '"links/subject_sets/0"=>'),
    ("workflow: aggregation is not in the schema", SCHEMAS + "workflow_create_schema.rb", "POST", "/workflows",
     workflow(aggregation={}), 422, "outside of the schema"),
    ("workflow: not linkable", "lib/json_api_controller/relation_manager.rb", "POST", "/workflows",
     links(workflow(), project="999"), 422, "Couldn't find linked project for current user"),
    ("workflow: retirement criteria", "app/models/retirement_validator.rb", "POST", "/workflows",
     workflow(retirement={"criteria": "consensus"}), 400, "Retirement criteria must be one of"),
    ("workflow: retirement count", "app/models/retirement_validator.rb", "POST", "/workflows",
     workflow(retirement={"criteria": "classification_count", "options": {"count": "3"}}), 400,
     "Retirement count must be a number"),
    ("workflow update: accepted", SCHEMAS + "workflow_update_schema.rb", "PUT", "/workflows/{workflow}",
     {"workflows": {"display_name": "renamed", "links": {"tutorials": [], "published_version": "1"}}}, 200, ""),
    ("workflow update: create-only key", SCHEMAS + "workflow_update_schema.rb", "PUT", "/workflows/{workflow}",
     {"workflows": {"primary_language": "de"}}, 422, 'additional properties [\\"primary_language\\"]'),
    ("workflow update: create-only link", SCHEMAS + "workflow_update_schema.rb", "PUT", "/workflows/{workflow}",
     {"workflows": {"links": {"project": "{project}"}}}, 422, '"links"=>'),
    ("workflow update: stale If-Match", "lib/json_api_controller/precondition_check.rb", "PUT",
     "/workflows/{workflow}", {"workflows": {"display_name": "x"}}, 412, "PreconditionFailed"),
    # -------------------------------------------------------------- subject sets
    ("subject set: accepted", SCHEMAS + "subject_set_create_schema.rb", "POST", "/subject_sets",
     links(subject_set(metadata={"a": 1}, expert_set=False), subjects=["{other_subject}", "{other_subject}"]), 201,
     ""),
    ("subject set: required key", SCHEMAS + "subject_set_create_schema.rb", "POST", "/subject_sets",
     {"subject_sets": {"links": {"project": "{project}"}}}, 422, "required property of 'display_name'"),
    ("subject set: unknown link", SCHEMAS + "subject_set_create_schema.rb", "POST", "/subject_sets",
     links(subject_set(), owner="1"), 422, '"links"=>'),
    ("subject set: metadata type", SCHEMAS + "subject_set_create_schema.rb", "POST", "/subject_sets",
     subject_set(metadata=["a"]), 422, '"metadata"=>"of type array'),
    ("subject set: duplicate name", "app/models/subject_set.rb", "POST", "/subject_sets",
     {"subject_sets": {"display_name": "Taken name", "links": {"project": "{project}"}}}, 400,
     "Validation failed: Display name has already been taken"),
    ("subject set update: project link", SCHEMAS + "subject_set_update_schema.rb", "PUT", "/subject_sets/{set}",
     {"subject_sets": {"links": {"project": "{project}"}}}, 422, '"links"=>'),
    ("subject set update: accepted", SCHEMAS + "subject_set_update_schema.rb", "PUT", "/subject_sets/{set}",
     {"subject_sets": {"metadata": {"k": "v"}}}, 200, ""),
    ("subject set link: same subject twice", "app/controllers/api/v1/subject_sets_controller.rb", "POST",
     "/subject_sets/{set}/links/subjects", {"subjects": ["{other_subject}", "{other_subject}"]}, 422,
     "Error: check the subject set and all the subjects exist."),
    ("subject set link: stranger", "app/policies/subject_set_policy.rb", "POST", "/subject_sets/{set}/links/subjects",
     {"subjects": ["{other_subject}"]}, 404, "Could not find subject_set"),
    # -------------------------------------------------------------- subjects
    ("subject: accepted", SCHEMAS + "subject_create_schema.rb", "POST", "/subjects",
     subject(external_id="x", locations=["image/png", {"image/tiff": "https://example.org/b.tif"}]), 201, ""),
    ("subject: required key", SCHEMAS + "subject_create_schema.rb", "POST", "/subjects",
     {"subjects": {"links": {"project": "{project}"}}}, 422, "required property of 'locations'"),
    ("subject: location item", SCHEMAS + "subject_create_schema.rb", "POST", "/subjects", subject(locations=[3]),
     422, '"locations/0"=>'),
    ("subject: null external id", SCHEMAS + "subject_create_schema.rb", "POST", "/subjects",
     subject(external_id=None), 422, "of type null"),
    ("subject: location type", "app/models/medium.rb", "POST", "/subjects", subject(locations=["text/html"]), 400,
     "Validation failed: Locations is invalid"),
    ("subject update: create-only key", SCHEMAS + "subject_update_schema.rb", "PUT", "/subjects/{subject}",
     {"subjects": {"external_id": "x"}}, 422, 'additional properties [\\"external_id\\"]'),
    ("subject update: accepted", SCHEMAS + "subject_update_schema.rb", "PUT", "/subjects/{subject}",
     {"subjects": {"metadata": {"a": 1}, "links": {"subject_sets": ["{set}"]}}}, 200, ""),
    # -------------------------------------------------------------- classifications
    ("classification: accepted", SCHEMAS + "classification_create_schema.rb", "POST", "/classifications",
     classification(annotations=[{"value": 1.5}, {"task": "T1", "value": [{"choice": "BLIP", "answers": {},
                                                                           "filters": {}}]}],
                    metadata={**META, "source": "api", "anything": {"goes": True}}), 201, ""),
    ("classification: required metadata", SCHEMAS + "classification_create_schema.rb", "POST", "/classifications",
     classification(metadata={"started_at": "x"}), 422, '"metadata"=>"did not contain a required property'),
    ("classification: link pattern", SCHEMAS + "classification_create_schema.rb", "POST", "/classifications",
     links(classification(), subjects=["abc"]), 422, "did not match the regex"),
    ("classification: unknown link", SCHEMAS + "classification_create_schema.rb", "POST", "/classifications",
     links(classification(), collection="1"), 422, '"links"=>'),
    ("classification: annotation type", SCHEMAS + "classification_create_schema.rb", "POST", "/classifications",
     classification(annotations=["T0"]), 422, '"annotations/0"=>"of type string'),
    ("classification: empty annotations", "app/models/classification.rb", "POST", "/classifications",
     classification(annotations=[]), 400, "Validation failed: Annotations can't be blank"),
    ("classification: seen_before false", "app/models/classification.rb", "POST", "/classifications",
     classification(metadata={**META, "seen_before": False}), 400, "seen_before attribute can only be set to 'true'"),
    ("classification: gold standard false", "app/models/classification.rb", "POST", "/classifications",
     classification(gold_standard=False), 400, "Gold standard can not be set to false"),
    ("classification: gold standard by a volunteer who is no expert", "app/models/concerns/classification_validator.rb",
     "POST", "/classifications", classification(gold_standard=True), 400,
     "Validation failed: Gold standard classifier is not a project expert"),
    ("classification: gold standard anonymously", "app/models/concerns/classification_validator.rb", "POST",
     "/classifications", classification(gold_standard=True), 400, "Gold standard user must be logged in"),
    ("classification: gold standard by the owner", "app/models/project.rb", "POST", "/classifications",
     classification(gold_standard=True), 201, ""),  # Project::EXPERT_ROLES = [:owner, :expert]
    # -------------------------------------------------------------- exports, retirement, roles
    ("export: content type", "app/models/medium.rb", "POST", "/projects/{project}/classifications_export",
     {"media": {"content_type": "application/json"}}, 400, "Content-Type for exports must be one of text/csv"),
    ("export: subject set takes any allowed type", "app/models/medium.rb", "POST",
     "/subject_sets/{set}/classifications_export", {"media": {"content_type": "application/json"}}, 201, ""),
    ("export: unknown keys dropped", "app/operations/create_or_update_medium.rb", "POST",
     "/workflows/{workflow}/classifications_export", {"media": {"content_type": "text/csv", "colour": 1}}, 201, ""),
    ("export: stranger", "app/policies/project_policy.rb", "POST", "/projects/{project}/classifications_export",
     {"media": {}}, 404, "Could not find project"),
    ("retire: reason", "app/operations/workflows/retire_subjects.rb", "POST", "/workflows/{workflow}/retired_subjects",
     {"subject_ids": ["{subject}"], "retirement_reason": "bored"}, 422, "Retirement reason is not included in the list"),
    ("retire: accepted", "app/operations/workflows/retire_subjects.rb", "POST",
     "/workflows/{workflow}/retired_subjects", {"subject_ids": [999999], "retirement_reason": "blank"}, 204, ""),
    ("role: missing document", "app/controllers/concerns/roles_controller.rb", "POST", "/project_roles", {}, 422,
     "param is missing or the value is empty: project_roles"),
    ("role: unknown user", "app/controllers/concerns/build_override.rb", "POST", "/project_roles",
     {"project_roles": {"roles": ["tester"], "links": {"project": "{project}", "user": "999"}}}, 422,
     "No User with id: 999 exists"),
]
STRANGER = {"project update: stranger", "subject set link: stranger", "export: stranger",
            "classification: gold standard by a volunteer who is no expert"}
ANONYMOUS = {"classification: gold standard anonymously"}
ANONYMOUS_TOKEN = ""
NO_IF_MATCH = {"project update: no If-Match"}
STALE = {"project update: stale If-Match", "workflow update: stale If-Match"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_same_verdict_and_status_as_the_real_server(site: Site, case: tuple) -> None:
    name, source, method, path, body, status, message = case
    assert source.startswith(("app/", "lib/"))  # every verdict names the real file that decides it
    if_match = None if name in NO_IF_MATCH else '"not-the-current-etag"' if name in STALE else "current"
    token = site.stranger if name in STRANGER else ANONYMOUS_TOKEN if name in ANONYMOUS else None
    response = site.send(method, path, fill(body, site.ids), token, if_match)
    assert response.status_code == status, f"{name} ({source}): {response.status_code} {response.text}"
    if message:
        assert message in response.json()["errors"][0]["message"], response.text


def test_an_object_read_from_a_list_is_stale_for_an_update(site: Site) -> None:
    """lib/json_api_controller/precondition_check.rb with json_api_render.rb: an index answers the hash of
    its body as ETag, a show the record's; only the record's passes (panoptes-python-client issue 220)."""
    listed = site.send("GET", "/subjects?project_id={project}").headers["ETag"]
    shown = site.send("GET", "/subjects/{subject}").headers["ETag"]
    body = {"subjects": {"metadata": {"b": 2}}}
    assert site.send("PUT", "/subjects/{subject}", body, if_match=listed).status_code == 412
    assert site.send("PUT", "/subjects/{subject}", body, if_match=shown).status_code == 200
    assert site.send("PUT", "/subjects/{subject}", body, if_match=shown).status_code == 412  # changed since
    weak = f"W/{site.send('GET', '/subjects/{subject}').headers['ETag']}"
    assert site.send("PUT", "/subjects/{subject}", body, if_match=weak).status_code == 200


# -- gold standard and training sets ----------------------------------------------------------------------
def member(server: EmbeddedPanoptes, project: Project, login: str, roles: list[str]) -> Panoptes:
    """A logged-in account holding ``roles`` on the project (given by its owner, the current client)."""
    _, password = server.ensure_user(login)
    client = Panoptes(endpoint=server.endpoint, username=login, password=password)
    with client:
        user_id = str(client.logged_in_user_id)
    Panoptes.client().post("/project_roles", json={"project_roles": {
        "roles": roles, "links": {"project": str(project.id), "user": user_id}}})
    return client


def gold_classification(client: Panoptes, workflow: Workflow, subject_id: str, answer: int) -> dict:
    moment = "2025-01-01T00:00:00.000Z"
    body = {"classifications": {
        "gold_standard": True, "annotations": [{"task": "T0", "value": answer}],
        "metadata": {"started_at": moment, "finished_at": moment, "user_agent": "t", "user_language": "en",
                     "workflow_version": workflow.version},
        "links": {"project": workflow.raw["links"]["project"], "workflow": workflow.id, "subjects": [subject_id]}}}
    with client:
        return client.post("/classifications", json=body)[0]["classifications"][0]


def test_an_experts_gold_standard_classification_is_recorded_but_never_counted(server, owner) -> None:
    """app/counters/subject_workflow_counter.rb (``gold_standard IS NOT TRUE``): not counted for retirement;
    lib/classification_lifecycle.rb#mark_expert_classifier: the export's ``expert`` column; the API's
    app/serializers/classification_serializer.rb has no ``gold_standard``; and
    app/models/gold_standard_annotation.rb: ``GET /classifications/gold_standard`` lists a snapshot it never joins."""
    project = go_live(make_project(private=True))
    workflow = make_workflow(project, retirement_count=1)
    subject_set = make_subject_set(project)
    subject, = make_subjects(project, 1)
    subject_set.add([subject])
    workflow.add_subject_sets(subject_set)
    expert = member(server, project, "erin", ["expert", "tester"])
    tester = member(server, project, "tom", ["tester"])

    made = gold_classification(expert, workflow, subject.id, 1)
    assert "gold_standard" not in made
    status = workflow.subject_workflow_status(subject.id)
    assert (status.classifications_count, status.retired_at) == (0, None)
    assert Workflow.find(workflow.id).classifications_count == 0
    with pytest.raises(PanoptesAPIException, match="Gold standard classifier is not a project expert"):
        gold_classification(tester, workflow, subject.id, 1)

    rows = list(csv.DictReader(io.StringIO(export_text(server, workflow))))
    assert [(row["gold_standard"], row["expert"]) for row in rows] == [("true", "expert")]
    listed = requests.get(f"{server.endpoint}/api/classifications/gold_standard",
                          headers={"Accept": "application/vnd.api+json; version=1"}, timeout=10)
    assert listed.status_code == 200 and listed.json()["classifications"] == []


def test_training_sets_are_left_out_of_the_workflows_counts(server, owner) -> None:
    """app/models/workflow.rb#training_set_ids (configured ids as integers, zeros dropped, linked ones only) and
    app/counters/workflow_counter.rb: a workflow counts, retires and finishes over its other sets."""
    project = go_live(make_project())
    workflow = make_workflow(project, retirement_count=1)
    ordinary, training, unlinked = (make_subject_set(project, name) for name in ("batch", "gold", "elsewhere"))
    a, b, gold = make_subjects(project, 3)
    ordinary.add([a, b])
    training.add([gold])
    workflow.add_subject_sets([ordinary, training])
    set_configuration(workflow, {"training_set_ids": [str(training.id), 0, int(unlinked.id)]})
    volunteer = member(server, project, "val", [])

    classify(volunteer, workflow, gold.id, 0)
    counts = Workflow.find(workflow.id)
    assert (counts.subjects_count, counts.retired_set_member_subjects_count, counts.classifications_count) == (2, 0, 0)
    assert workflow.subject_workflow_status(gold.id).retired_at is not None  # its own count still retires it
    workflow.retire_subjects([a.id, b.id], reason="consensus")
    assert Workflow.find(workflow.id).finished_at is not None


def test_the_queue_mixes_training_subjects_as_designator_does(server, owner) -> None:
    """zooniverse/designator lib/designator/streams/training.ex: a logged-in volunteer's queue takes a training
    subject with chance ``training_chances[seen]``, else ``training_default_chance`` (0 unset), the other stream
    when one runs dry; lib/subjects/fallback_selection.rb: a tenth of the fallback queue is training subjects."""
    project = make_project()
    workflow = make_workflow(project, retirement_count=5)
    ordinary, training = make_subject_set(project, "batch"), make_subject_set(project, "gold")
    others, golds = make_subjects(project, 4), make_subjects(project, 3, start=4)
    ordinary.add(others)
    training.add(golds)
    workflow.add_subject_sets([ordinary, training])
    gold_ids = {str(s.id) for s in golds}
    volunteer = member(server, project, "vic", [])

    def queue(client: Panoptes, size: int = 20) -> list[dict]:
        with client:
            return client.get("/subjects/queued", params={"workflow_id": workflow.id, "page_size": size})[0]["subjects"]

    set_configuration(workflow, {"training_set_ids": [training.id]})  # chance 0: once the other stream runs dry
    assert {s["id"] for s in queue(volunteer, size=4)} == {str(s.id) for s in others}
    assert [s["id"] in gold_ids for s in queue(volunteer)] == [False] * 4 + [True] * 3
    assert gold_ids <= {s["id"] for s in queue(Panoptes(endpoint=server.endpoint))}  # anonymous: no directives
    set_configuration(workflow, {"training_set_ids": [training.id], "training_chances": [1.0] * 2,
                                 "training_default_chance": 0.0})
    assert {s["id"] for s in queue(volunteer)[:3]} == gold_ids  # a new volunteer: training first
    for subject in others:
        classify(volunteer, workflow, subject.id, 0)
    offered = queue(volunteer)  # seen 4 > len(training_chances): chance 0, but nothing else is left
    assert {s["id"] for s in offered} == gold_ids and {s["selection_state"] for s in offered} == {"normal"}
    for subject in golds:
        classify(volunteer, workflow, subject.id, 0)
    fallback = queue(volunteer)
    assert {s["selection_state"] for s in fallback} == {"failover_fallback"}
    assert len(fallback) == 4 + 3 and sum(s["id"] in gold_ids for s in fallback) == 3  # round(100 / 10) >= 3


def set_configuration(workflow: Workflow, configuration: dict) -> None:
    """Replace the workflow's configuration (a PUT with the record's ETag, as ``Workflow.save`` sends it)."""
    fresh = Workflow.find(workflow.id)
    Panoptes.client().put(f"/workflows/{workflow.id}", json={"workflows": {"configuration": configuration}},
                          etag=fresh.etag)


def export_text(server: EmbeddedPanoptes, workflow: Workflow) -> str:
    workflow.generate_export("classifications")
    return workflow.get_export("classifications", generate=False).text
