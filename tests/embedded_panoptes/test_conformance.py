"""Conformance: bodies the real Zooniverse refuses and bodies it accepts, for every resource and route
glitchrun and the official CLI write, each case naming the real server file (zooniverse/panoptes) that
decides it. The embedded server must give the same verdict with the same status: 422 for a schema
failure (``lib/json_schema.rb``), 400 for a model validation (``ActiveRecord::RecordInvalid`` in
``app/controllers/api/api_controller.rb``), 428/412 for a missing/stale If-Match
(``lib/json_api_controller/precondition_check.rb``), 404 outside the policies' scope."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from panoptes_client import Panoptes

from glitchrun.embedded_panoptes import EmbeddedPanoptes

from .helpers import make_project, make_subject_set, make_subjects, make_workflow

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
        headers = {"Authorization": f"Bearer {token or self.token}", "Accept": "application/vnd.api+json; version=1"}
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
STRANGER = {"project update: stranger", "subject set link: stranger", "export: stranger"}
NO_IF_MATCH = {"project update: no If-Match"}
STALE = {"project update: stale If-Match", "workflow update: stale If-Match"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_same_verdict_and_status_as_the_real_server(site: Site, case: tuple) -> None:
    name, source, method, path, body, status, message = case
    assert source.startswith(("app/", "lib/"))  # every verdict names the real file that decides it
    if_match = None if name in NO_IF_MATCH else '"not-the-current-etag"' if name in STALE else "current"
    response = site.send(method, path, fill(body, site.ids), site.stranger if name in STRANGER else None, if_match)
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
