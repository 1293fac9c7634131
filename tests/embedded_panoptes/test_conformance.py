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
from panoptes_client import Panoptes, Project, Subject, Workflow
from panoptes_client.panoptes import PanoptesAPIException

from glitchrun.embedded_panoptes import EmbeddedPanoptes
from glitchrun.embedded_panoptes.auth import FIRST_PARTY_CLIENT_ID
from glitchrun.zooniverse.backend import LOCAL_CLIENT_ID

from .helpers import (
    API,
    classify,
    go_live,
    make_campaign,
    make_project,
    make_subject_set,
    make_subjects,
    make_workflow,
    png_bytes,
)

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
    """alice's private project (a workflow, a set with one of two subjects, a deleted subject, mallory a
    tester); mallory's public project (a workflow, a set with one subject)."""
    with EmbeddedPanoptes(tmp_path_factory.mktemp("conformance") / "panoptes") as server:
        _, password = server.ensure_user("alice")
        mallory_id, other = server.ensure_user("mallory")
        with Panoptes(endpoint=server.endpoint, username="mallory", password=other) as stranger:
            stranger_token = stranger.get_bearer_token()
            public = make_project("Mallory's public project")
            public_set = make_subject_set(public, "Public set")
            public_subject, = make_subjects(public, 1)
            public_set.add(public_subject)
            public_workflow = make_workflow(public)
        with Panoptes(endpoint=server.endpoint, username="alice", password=password) as client:
            project = make_project("Conformance", private=True)
            workflow = make_workflow(project)
            subject_set = make_subject_set(project, "Taken name")
            subjects = make_subjects(project, 3)
            subject_set.add(subjects[:1])
            workflow.add_subject_sets(subject_set)
            Subject.find(subjects[2].id).delete()
            role, _ = client.post("/project_roles", json={"project_roles": {
                "roles": ["tester"], "links": {"project": project.id, "user": str(mallory_id)}}})
            yield Site(server.endpoint, client.get_bearer_token(), stranger_token, {
                "project": project.id, "workflow": workflow.id, "set": subject_set.id,
                "subject": subjects[0].id, "other_subject": subjects[1].id, "deleted_subject": subjects[2].id,
                "alice": str(client.logged_in_user_id), "role": role["project_roles"][0]["id"],
                "public_project": public.id, "public_set": public_set.id, "public_subject": public_subject.id,
                "public_workflow": public_workflow.id})


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
    ("project: duplicate name", "lib/validators/unique_for_owner_validator.rb", "POST", "/projects",
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
    ("workflow: retirement criteria", "app/models/concerns/retirement_validator.rb", "POST", "/workflows",
     workflow(retirement={"criteria": "consensus"}), 400, "Retirement criteria must be one of"),
    ("workflow: retirement count", "app/models/concerns/retirement_validator.rb", "POST", "/workflows",
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
     "/classifications", links(classification(gold_standard=True), project="{public_project}",
                               workflow="{public_workflow}", subjects=["{public_subject}"]), 400,
     "Gold standard user must be logged in"),
    ("classification: anonymously to a private project", "app/policies/classification_policy.rb", "POST",
     "/classifications", classification(gold_standard=True), 422, "Couldn't find linked project for current user"),
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
    ("role: unknown user", "app/controllers/concerns/roles_controller.rb", "POST", "/project_roles",
     {"project_roles": {"roles": ["tester"], "links": {"project": "{project}", "user": "999"}}}, 422,
     "No User with id: 999 exists"),
    # -------------------------------------------------------------- issue 25: the real server's other rules
    ("classification: unknown subject", "app/controllers/api/v1/classifications_controller.rb", "POST",
     "/classifications", links(classification(), subjects=["999999"]), 404,
     "Couldn't find Subject with 'id'=[999999]"),
    ("classification: unknown subject before the links", "app/controllers/api/v1/classifications_controller.rb",
     "POST", "/classifications", links(classification(), subjects=["{subject}", "999999"], project="999999"), 404,
     "(found 1 results, but was looking for 2). Couldn't find Subject with id 999999."),
    ("classification: a deleted subject is still classifiable", "app/controllers/api/v1/classifications_controller.rb",
     "POST", "/classifications", links(classification(), subjects=["{deleted_subject}"]), 201, ""),
    ("role: unpermitted key", "app/controllers/api/v1/project_roles_controller.rb", "POST", "/project_roles",
     {"project_roles": {"roles": ["tester"], "colour": "red", "links": {"project": "{project}", "user": "999"}}},
     422, "found unpermitted parameter: :colour"),
    ("role: roles not an array", "app/controllers/api/v1/project_roles_controller.rb", "POST", "/project_roles",
     {"project_roles": {"roles": "tester", "links": {"project": "{project}", "user": "999"}}}, 422,
     "found unpermitted parameter: :roles"),
    ("role: unpermitted link", "app/controllers/api/v1/project_roles_controller.rb", "POST", "/project_roles",
     {"project_roles": {"roles": ["tester"], "links": {"project": "{project}", "user": "999", "owner": "1"}}}, 422,
     "found unpermitted parameter: :owner"),
    ("role: ill-typed link", "app/controllers/api/v1/project_roles_controller.rb", "POST", "/project_roles",
     {"project_roles": {"roles": ["tester"], "links": {"project": {"id": "{project}"}, "user": "999"}}}, 422,
     "found unpermitted parameter: :project"),
    ("role update: links not permitted", "app/controllers/api/v1/project_roles_controller.rb", "PUT",
     "/project_roles/{role}", {"project_roles": {"roles": ["tester"], "links": {"user": "1"}}}, 422,
     "found unpermitted parameter: :links"),
    ("role update: accepted", "app/controllers/api/v1/project_roles_controller.rb", "PUT", "/project_roles/{role}",
     {"project_roles": {"roles": ["tester", "translator"]}}, 200, ""),
    ("workflow: 1.0 is not an integer", SCHEMAS + "workflow_create_schema.rb", "POST", "/workflows",
     workflow(display_order_position=1.0), 422,
     '"display_order_position"=>"of type number did not match one or more of the following types: string, integer"'),
    ("workflow: 1 is", SCHEMAS + "workflow_create_schema.rb", "POST", "/workflows", workflow(display_order_position=1),
     201, ""),
    ("classification: 1.0 is not an id", SCHEMAS + "classification_create_schema.rb", "POST", "/classifications",
     links(classification(), subjects=[1.0]), 422, '"links/subjects/0"=>"of type number'),
    ("subject set link: a public project's subject", "app/policies/subject_set_policy.rb", "POST",
     "/subject_sets/{set}/links/subjects", {"subjects": ["{public_subject}"]}, 200, ""),
    ("subject set link: a deleted subject", "app/controllers/api/v1/subject_sets_controller.rb", "POST",
     "/subject_sets/{set}/links/subjects", {"subjects": ["{deleted_subject}"]}, 422,
     "Error: check the subject set and all the subjects exist."),
    ("subject set link: none found", "lib/json_api_controller/relation_manager.rb", "POST",
     "/subject_sets/{set}/links/subjects", {"subjects": ["999999"]}, 422,
     "Couldn't find linked subjects for current user"),
    ("subject set link: body key", "lib/json_api_controller/updatable_resource.rb", "POST",
     "/subject_sets/{set}/links/subjects", {"subject": ["{subject}"]}, 422,
     "Link relation subjects must match body key"),
    ("subject: another owner's set not linkable", "app/policies/subject_policy.rb", "POST", "/subjects",
     links(subject(), subject_sets=["{public_set}"]), 422, "Couldn't find linked subject_sets for current user"),
    ("workflow link: a public project's set is copied", "app/controllers/api/v1/workflows_controller.rb", "POST",
     "/workflows/{workflow}/links/subject_sets", {"subject_sets": ["{public_set}"]}, 200, ""),
    ("project link: a workflow is copied", "app/controllers/api/v1/projects_controller.rb", "POST",
     "/projects/{project}/links/workflows", {"workflows": ["{workflow}"]}, 200, ""),
]
STRANGER = {"project update: stranger", "subject set link: stranger", "export: stranger",
            "classification: gold standard by a volunteer who is no expert"}
ANONYMOUS = {"classification: gold standard anonymously", "classification: anonymously to a private project"}
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


# -- issue 25: request-level rules, listing, and the rules that need more than one request ------------------
def raw(site: Site, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A request with only the headers given (``send`` adds the client's)."""
    return requests.request(method, f"{site.endpoint}/api{path.format(**site.ids)}", timeout=10, **kwargs)


def test_the_api_is_routed_by_the_versioned_accept_header(site: Site) -> None:
    """config/routes.rb (``api_version`` header ``Accept: application/vnd.api+json; version=1``, matched as
    versionist's header strategy matches it: contained in Accept) and application_controller.rb
    ``unknown_route``: without it no API route matches, 404 (JSON to a JSON client, else the HTML page)."""
    auth = {"Authorization": f"Bearer {site.token}"}
    assert raw(site, "GET", "/projects", headers=auth).status_code == 404
    assert "html" in raw(site, "GET", "/projects", headers=auth).headers["Content-Type"]
    as_json = raw(site, "GET", "/projects", headers={**auth, "Accept": "application/json"})
    assert as_json.status_code == 404 and as_json.json()["errors"][0]["message"] == "Not Found"
    unversioned = raw(site, "GET", "/projects", headers={**auth, "Accept": "application/vnd.api+json"})
    assert unversioned.status_code == 404
    among = {**auth, "Accept": "text/html, application/vnd.api+json; version=1"}
    assert raw(site, "GET", "/projects", headers=among).status_code == 200


def test_a_write_must_say_json_even_without_a_body(site: Site) -> None:
    """lib/content_type_filter.rb, prepended to every API controller (api_controller.rb): a POST or PUT whose
    Content-Type is not application/json or application/vnd.api+json is 415, body or not, before the login
    check; GET and DELETE need none."""
    headers = {**API, "Authorization": f"Bearer {site.token}"}
    bodiless = raw(site, "POST", "/projects/{project}/classifications_export", headers=headers)
    assert bodiless.status_code == 415
    assert bodiless.json()["errors"][0]["message"] == (
        "Only requests with Content-Type: application/json or application/vnd.api+json are allowed")
    text = raw(site, "POST", "/projects", headers={**API, "Content-Type": "text/plain"}, data="{}")
    assert text.status_code == 415  # anonymous, yet not 401: the filter runs first
    typed = raw(site, "POST", "/projects/{project}/classifications_export",
                headers={**headers, "Content-Type": "application/vnd.api+json"})
    assert typed.status_code == 201
    assert raw(site, "DELETE", "/subject_sets/{set}/links/subjects/{other_subject}", headers=headers).status_code == 204


def test_includes_side_load_known_associations_and_refuse_others(site: Site) -> None:
    """restpack_serializer ``side_loading.rb`` (zooniverse fork) with each serializer's ``can_include``
    (app/serializers/project_serializer.rb, workflow_serializer.rb): a known include fills ``linked`` and
    ``meta.include`` and is repeated in the paging hrefs; an unknown one is InvalidInclude, 422
    (api_controller.rb), checked only when the page has rows."""
    body = site.send("GET", "/projects?id={project}&include=workflows,subject_sets").json()
    assert site.ids["workflow"] in [w["id"] for w in body["linked"]["workflows"]]
    assert site.ids["set"] in [s["id"] for s in body["linked"]["subject_sets"]]
    assert body["meta"]["projects"]["include"] == ["workflows", "subject_sets"]
    assert "include=workflows,subject_sets" in body["meta"]["projects"]["first_href"]
    bad = site.send("GET", "/projects?id={project}&include=colour")
    assert bad.status_code == 422 and bad.json()["errors"][0]["message"] == ":colour is not a valid include for Project"
    assert site.send("GET", "/projects?id=999999&include=colour").status_code == 200
    owners = site.send("GET", "/workflows/{workflow}?include=project").json()
    assert [p["id"] for p in owners["linked"]["projects"]] == [site.ids["project"]]


def test_sort_by_the_attributes_a_serializer_allows(site: Site) -> None:
    """restpack ``options.rb`` ``sorting_from_params`` with ``can_sort_by`` (subject_set_serializer.rb:
    display_name, id): ``-`` descends, unknown attributes are ignored, the sort is repeated in the hrefs;
    subjects_controller.rb#index sorts by id when no sort is given (so its hrefs say ``sort=id``)."""
    names = [s["display_name"] for s in site.send("GET", "/subject_sets?project_id={project}&sort=-display_name")
             .json()["subject_sets"]]
    assert names == sorted(names, reverse=True) and len(names) > 1
    meta = site.send("GET", "/subject_sets?project_id={project}&sort=colour,-display_name&page_size=1").json()
    assert meta["meta"]["subject_sets"]["next_href"] == (
        f"/subject_sets?page=2&page_size=1&sort=-display_name&project_id={site.ids['project']}")
    subjects = site.send("GET", "/subjects?project_id={project}&page_size=1").json()["meta"]["subjects"]
    assert subjects["next_href"] == f"/subjects?page=2&page_size=1&sort=id&project_id={site.ids['project']}"


def test_paging_as_kaminari_pages_and_restpack_writes_the_hrefs(site: Site) -> None:
    """lib/serialization/panoptes_restpack.rb ``page_href`` (no ``page=1``, no default ``page_size``, only the
    serializer's filters, sorted, as given) over Kaminari 1.2: ``page_size`` 0 or not a number is
    ``kaminari_zero_page`` (json_api_responses.rb, 422), negative is Kaminari's 25, above the maximum is
    capped (config/initializers/kaminari_config.rb 100; app/models/workflow.rb 25) but the hrefs repeat it
    as asked; ``page`` below 1 is page 1; past the last page, or with nothing found, there is no previous
    or next page and ``page_count`` is 0 when nothing matches."""
    for size in ("0", "abc"):
        zero = site.send("GET", f"/subjects?page_size={size}")
        assert zero.status_code == 422 and "page_size: 0" in zero.json()["errors"][0]["message"]
    assert site.send("GET", "/subjects?page_size=-3").json()["meta"]["subjects"]["page_size"] == 25
    capped = site.send("GET", "/projects?page_size=1000&owner=alice").json()["meta"]["projects"]
    assert capped["page_size"] == 100 and capped["first_href"] == "/projects?page_size=1000"  # owner: not a filter
    assert site.send("GET", "/workflows?page_size=1000").json()["meta"]["workflows"]["page_size"] == 25
    assert site.send("GET", "/subjects?page=-4&page_size=1").json()["meta"]["subjects"]["page"] == 1
    beyond = site.send("GET", "/subjects?project_id={project}&page=50").json()["meta"]["subjects"]
    assert (beyond["page"], beyond["previous_page"], beyond["next_page"]) == (50, None, None)
    empty = site.send("GET", "/projects?id=999999&display_name=a b,c").json()["meta"]["projects"]
    assert (empty["count"], empty["page_count"], empty["next_page"], empty["previous_page"]) == (0, 0, None, None)
    assert empty["last_href"] == "/projects?page=0&display_name=a b,c&id=999999"


def test_filters_split_on_commas_and_repeated_keys_keep_the_last(site: Site) -> None:
    """restpack ``options.rb`` ``filters_from_params``: every filter value is ``split(',')`` with nothing
    stripped, so a display name holding a comma never matches itself; Rails keeps the last of repeated keys;
    a filter given empty matches nothing (``where(display_name: [])``)."""
    made = site.send("POST", "/subject_sets", fill(subject_set(display_name="O3, pilot"), site.ids))
    assert made.status_code == 201
    by_name = site.send("GET", "/subject_sets?project_id={project}&display_name=O3, pilot").json()["subject_sets"]
    assert by_name == []
    assert site.send("GET", "/subject_sets?project_id={project}&display_name=O3").json()["subject_sets"] == []
    assert site.send("GET", "/subject_sets?project_id={project}&display_name=").json()["subject_sets"] == []
    repeated = site.send("GET", "/subject_sets?id=999999&id={set}").json()["subject_sets"]
    assert [s["id"] for s in repeated] == [site.ids["set"]]


def test_serializers_give_the_real_keys(site: Site) -> None:
    """app/serializers/project_serializer.rb, workflow_serializer.rb, subject_set_serializer.rb,
    subject_serializer.rb: their ``attributes`` (and ``href``, ``links``), no more and no less; media
    links from ``media_include``; a project's ``state`` is live or development unless paused or finished."""
    shown = site.send("GET", "/projects/{project}").json()["projects"][0]
    assert set(shown) == {
        "id", "display_name", "classifications_count", "subjects_count", "created_at", "updated_at",
        "available_languages", "title", "description", "introduction", "private", "retired_subjects_count",
        "configuration", "live", "urls", "migrated", "classifiers_count", "slug", "redirect", "beta_requested",
        "beta_approved", "launch_requested", "launch_approved", "launch_date", "href", "workflow_description",
        "primary_language", "tags", "experimental_tools", "completeness", "activity", "state", "researcher_quote",
        "mobile_friendly", "featured", "run_subject_set_completion_events", "links"}
    assert set(shown["links"]) == {"workflows", "active_workflows", "subject_sets", "project_roles", "pages",
                                     "organizations", "owner", "avatar", "background", "attached_images",
                                     "classifications_export", "subjects_export"}
    assert shown["links"]["project_roles"]
    fresh = site.send("POST", "/projects", fill(project(), site.ids)).json()["projects"][0]
    assert (fresh["state"], fresh["live"]) == ("development", False)
    workflow = site.send("GET", "/workflows/{workflow}").json()["workflows"][0]
    assert set(workflow) == {
        "id", "display_name", "tasks", "steps", "classifications_count", "subjects_count", "created_at", "updated_at",
        "finished_at", "first_task", "primary_language", "version", "content_language", "prioritized", "grouped",
        "pairwise", "retirement", "retired_set_member_subjects_count", "href", "active", "mobile_friendly",
        "configuration", "public_gold_standard", "completeness", "links"}
    assert set(workflow["links"]) == {"project", "subject_sets", "tutorial_subject", "published_version",
                                      "attached_images", "classifications_export"}
    subject_set_ = site.send("GET", "/subject_sets/{set}").json()["subject_sets"][0]
    assert set(subject_set_) == {"id", "display_name", "set_member_subjects_count", "metadata", "created_at",
                                 "updated_at", "href", "completeness", "links"}
    assert subject_set_["completeness"] == {site.ids["workflow"]: 0.0}
    subject_ = site.send("GET", "/subjects/{subject}").json()["subjects"][0]
    assert set(subject_["links"]) == {"project", "collections", "subject_sets", "attached_images"}


def test_links_to_other_projects_copy_or_share(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    """Linking across projects: a subject set takes the subjects of any project the caller may see
    (subject_set_policy.rb ``linkable_subjects``); a workflow linked to another project's set gets a copy of
    that set in its own project (workflows_controller.rb ``construct_new_items``, lib/subject_set_copier.rb:
    same name and members, the subjects shared); a workflow linked to a project is always copied
    (projects_controller.rb, lib/workflow_copier.rb: inactive, ``(copy: <time>)``, source_workflow_id)."""
    mine = make_project("Mine")
    other = make_project("My other project")
    workflow = make_workflow(mine)
    theirs = make_subject_set(other, "Shared glitches")
    shared = make_subjects(other, 2)
    theirs.add(shared)
    owner.post(f"/workflows/{workflow.id}/links/subject_sets", json={"subject_sets": [theirs.id]})
    copied = [s for s in owner.get("/subject_sets", params={"project_id": mine.id})[0]["subject_sets"]]
    assert [s["display_name"] for s in copied] == ["Shared glitches"] and copied[0]["id"] != theirs.id
    members = owner.get("/set_member_subjects", params={"subject_set_id": copied[0]["id"]})[0]["set_member_subjects"]
    assert sorted(m["links"]["subject"] for m in members) == sorted(s.id for s in shared)
    assert owner.get(f"/workflows/{workflow.id}")[0]["workflows"][0]["links"]["subject_sets"] == [copied[0]["id"]]

    owner.post(f"/projects/{mine.id}/links/workflows", json={"workflows": [workflow.id]})
    made = owner.get("/workflows", params={"project_id": mine.id})[0]["workflows"]
    copy = next(w for w in made if w["id"] != workflow.id)
    assert copy["display_name"].startswith("Glitch classes (copy: ") and copy["display_name"].endswith(" UTC)")
    assert (copy["active"], copy["version"], copy["configuration"]["source_workflow_id"]) == (False, "1.1",
                                                                                              int(workflow.id))
    assert copy["links"]["subject_sets"] == []


def test_deleted_subjects_workflows_and_projects_are_deactivated(server: EmbeddedPanoptes, owner: Panoptes) -> None:
    """lib/json_api_controller/deactivatable_resource.rb (subjects, workflows, projects): DELETE deactivates;
    pundit_policy.rb ``scope.active`` hides it from every list, show and change (404); nothing linked to it
    changes: a subject stays a member of its set and keeps counting there; projects_controller.rb#destroy
    renames the project ``<name>_deleted``, so its name is free again for the owner."""
    project = make_project("Short-lived")
    workflow, subject_set, subjects = make_campaign(project, 2)
    Subject.find(subjects[0].id).delete()
    assert owner.get("/subjects", params={"id": subjects[0].id})[0]["subjects"] == []
    members = owner.get("/set_member_subjects", params={"subject_set_id": subject_set.id})[0]["set_member_subjects"]
    assert sorted(m["links"]["subject"] for m in members) == sorted(s.id for s in subjects)
    assert owner.get(f"/subject_sets/{subject_set.id}")[0]["subject_sets"][0]["set_member_subjects_count"] == 2
    assert owner.get(f"/workflows/{workflow.id}")[0]["workflows"][0]["subjects_count"] == 2

    _, etag = owner.get(f"/workflows/{workflow.id}")
    owner.delete(f"/workflows/{workflow.id}", etag=etag)
    assert owner.get("/workflows", params={"project_id": project.id})[0]["workflows"] == []
    assert owner.get(f"/projects/{project.id}")[0]["projects"][0]["links"]["workflows"] == []

    _, etag = owner.get(f"/projects/{project.id}")
    owner.delete(f"/projects/{project.id}", etag=etag)
    with pytest.raises(PanoptesAPIException, match="Could not find project"):
        owner.get(f"/projects/{project.id}")
    assert make_project("Short-lived").id != project.id  # the old one is "Short-lived_deleted" now


def test_a_survey_confusions_edit_is_a_minor_version(owner: Panoptes) -> None:
    """app/models/workflow.rb ``update_version`` with lib/tasks_visitors/extract_strings.rb: the strings
    (instruction, label, question, help, description and a survey choice's whole ``confusions``) are a minor
    version; anything else in the tasks a major one."""
    project = make_project()
    survey = {"T0": {"type": "survey", "choices": {"BLIP": {"label": "Blip", "confusions": {"WHISTLE": "shorter"},
                                                            "images": []}}, "choicesOrder": ["BLIP"]}}
    body, _ = owner.post("/workflows", json={"workflows": {"display_name": "Survey", "primary_language": "en",
                                                           "tasks": survey, "links": {"project": project.id}}})
    workflow_id = body["workflows"][0]["id"]
    for change, version in ((("confusions", {"WHISTLE": "much shorter"}), "1.2"), (("images", ["blip.png"]), "2.2")):
        survey["T0"]["choices"]["BLIP"][change[0]] = change[1]
        _, etag = owner.get(f"/workflows/{workflow_id}")
        owner.put(f"/workflows/{workflow_id}", json={"workflows": {"tasks": survey}}, etag=etag)
        assert owner.get(f"/workflows/{workflow_id}")[0]["workflows"][0]["version"] == version


def test_counts_are_the_real_counters_sums(owner: Panoptes) -> None:
    """app/counters/workflow_counter.rb (subjects: the set-member counts of the workflow's sets; retired and
    classifications: over those memberships) and app/models/project.rb (subjects_count,
    retired_subjects_count: sums over the active workflows): a subject in two of a workflow's sets counts
    twice, a set in two active workflows twice for the project."""
    project = make_project()
    first, second = make_workflow(project), make_workflow(project)
    sets = [make_subject_set(project, f"Set {i}") for i in range(2)]
    subjects = make_subjects(project, 2)
    sets[0].add(subjects)
    sets[1].add(subjects[:1])
    for workflow in (first, second):
        workflow.add_subject_sets(sets)
    first.retire_subjects(subjects[:1], reason="other")
    counts = owner.get(f"/workflows/{first.id}")[0]["workflows"][0]
    assert (counts["subjects_count"], counts["retired_set_member_subjects_count"]) == (3, 2)
    totals = owner.get(f"/projects/{project.id}")[0]["projects"][0]
    assert (totals["subjects_count"], totals["retired_subjects_count"]) == (6, 2)


def test_a_grouped_workflow_queues_one_subject_set(owner: Panoptes) -> None:
    """lib/subjects/selector.rb: a grouped workflow's queue needs ``subject_set_id`` (422 MissingParameter)
    and selects from that set only (postgresql_selection.rb, fallback_selection.rb)."""
    project = make_project()
    workflow = make_workflow(project)
    _, etag = owner.get(f"/workflows/{workflow.id}")
    owner.put(f"/workflows/{workflow.id}", json={"workflows": {"grouped": True}}, etag=etag)
    sets = [make_subject_set(project, f"Group {i}") for i in range(2)]
    subjects = make_subjects(project, 4)
    sets[0].add(subjects[:2])
    sets[1].add(subjects[2:])
    workflow.add_subject_sets(sets)
    with pytest.raises(PanoptesAPIException, match="subject_set_id parameter missing for grouped workflow"):
        owner.get("/subjects/queued", params={"workflow_id": workflow.id})
    queued = owner.get("/subjects/queued", params={"workflow_id": workflow.id, "subject_set_id": sets[1].id})[0]
    assert sorted(s["id"] for s in queued["subjects"]) == sorted(s.id for s in subjects[2:])


def test_an_upload_without_the_blob_type_is_refused_as_azure_refuses_it(owner: Panoptes) -> None:
    """app/services/media_storage/azure_adapter.rb: the upload URLs are Azure Blob Storage URLs, and Azure's Put
    Blob needs ``x-ms-blob-type`` (400 MissingRequiredHeader); nothing is stored."""
    project = make_project()
    body, _ = owner.post("/subjects", json={"subjects": {"locations": ["image/png"], "links": {"project": project.id}}})
    url = body["subjects"][0]["locations"][0]["image/png"]
    refused = requests.put(url, data=png_bytes(1), headers={"Content-Type": "image/png"}, timeout=10)
    assert refused.status_code == 400 and "MissingRequiredHeader" in refused.text
    stored = requests.put(url, data=png_bytes(1), timeout=10,
                          headers={"Content-Type": "image/png", "x-ms-blob-type": "BlockBlob"})
    assert stored.status_code == 201


def test_a_token_needs_a_known_client_allowed_the_grant(server: EmbeddedPanoptes) -> None:
    """app/controllers/tokens_controller.rb ``allowed_grants`` with lib/gem_ext/doorkeeper/application.rb: the
    ``client_id`` must name an application allowed the grant (the first-party one: password; one made for
    client credentials: not password), else 422 with an empty body; panoptes-client's default id is
    zooniverse.org's first-party application, and glitchrun's local client sends it."""
    _, password = server.ensure_user("alice")
    server.add_client_app("service", "s3cret", "alice")
    token = f"{server.endpoint}/oauth/token"
    form = {"grant_type": "password", "login": "alice", "password": password}
    for client_id in ("", "somebody-elses-app", "service"):
        refused = requests.post(token, data={**form, "client_id": client_id}, timeout=10)
        assert refused.status_code == 422 and refused.content == b""
    assert requests.post(token, data={**form, "client_id": FIRST_PARTY_CLIENT_ID}, timeout=10).status_code == 200
    assert LOCAL_CLIENT_ID == FIRST_PARTY_CLIENT_ID == Panoptes._endpoint_client_ids["default"]


def test_an_id_in_a_route_is_digits_only(site: Site) -> None:
    """lib/routes/json_api_routes.rb ``VALID_IDS`` (``only match integers in route ids``): a comma list in the
    path matches no route (404 ``Not Found``, as panoptes-client's ``where(id="1,2")`` asks); in the query
    ``id`` (or ``ids``) takes the list."""
    listed = site.send("GET", "/subjects/{subject},{other_subject}")
    assert listed.status_code == 404 and listed.json()["errors"][0]["message"] == "Not Found"
    assert site.send("PUT", "/subjects/abc", {"subjects": {}}, if_match=None).status_code == 404
    query = site.send("GET", "/subjects?ids={subject},{other_subject}").json()["subjects"]
    assert sorted(s["id"] for s in query) == sorted([site.ids["subject"], site.ids["other_subject"]])


def test_projects_by_the_callers_roles(site: Site) -> None:
    """app/controllers/concerns/filter_by_current_user_roles.rb: ``current_user_roles`` keeps the projects where
    the logged-in caller holds one of the roles (and is taken out of the params: not in the hrefs)."""
    owned = site.send("GET", "/projects?current_user_roles=owner&page_size=100").json()
    assert site.ids["project"] in [p["id"] for p in owned["projects"]]
    assert site.ids["public_project"] not in [p["id"] for p in owned["projects"]]
    assert owned["meta"]["projects"]["first_href"] == "/projects?page_size=100"
    tested = site.send("GET", "/projects?current_user_roles=tester", token=site.stranger).json()["projects"]
    assert [p["id"] for p in tested] == [site.ids["project"]]


def test_the_queue_of_a_finished_workflow_and_of_deleted_subjects(owner: Panoptes) -> None:
    """lib/subjects/selector.rb ``workflow_has_data?``: a finished workflow goes straight to the fallback
    (``selection_state`` failover_fallback); subjects_controller.rb#queued answers ``Subject.active`` only, so a
    deleted subject is never offered."""
    project = make_project()
    workflow, subject_set, subjects = make_campaign(project, 3)
    Subject.find(subjects[0].id).delete()
    offered = owner.get("/subjects/queued", params={"workflow_id": workflow.id})[0]["subjects"]
    assert sorted(s["id"] for s in offered) == sorted(s.id for s in subjects[1:])
    assert {s["selection_state"] for s in offered} == {"normal"}
    workflow.retire_subjects([s.id for s in subjects], reason="other")
    finished = owner.get("/subjects/queued", params={"workflow_id": workflow.id})[0]["subjects"]
    assert {(s["selection_state"], s["retired"], s["finished_workflow"]) for s in finished} == {
        ("failover_fallback", True, True)}


def test_links_in_an_update_replace_the_relation(owner: Panoptes) -> None:
    """lib/json_api_controller/updatable_resource.rb ``build_update_hash``: the links of a PUT are assigned, so a
    subject set's ``links.subjects`` becomes its members and a subject's ``links.subject_sets`` its sets
    (subject_policy.rb: only sets the caller may update)."""
    project = make_project()
    sets = [make_subject_set(project, f"Set {i}") for i in range(2)]
    subjects = make_subjects(project, 3)
    sets[0].add(subjects[:2])
    _, etag = owner.get(f"/subject_sets/{sets[0].id}")
    owner.put(f"/subject_sets/{sets[0].id}", json={"subject_sets": {"links": {"subjects": [subjects[2].id]}}},
              etag=etag)
    members = owner.get("/set_member_subjects", params={"subject_set_id": sets[0].id})[0]["set_member_subjects"]
    assert [m["links"]["subject"] for m in members] == [subjects[2].id]
    _, etag = owner.get(f"/subjects/{subjects[2].id}")
    owner.put(f"/subjects/{subjects[2].id}", json={"subjects": {"links": {"subject_sets": [sets[1].id]}}}, etag=etag)
    assert owner.get(f"/subjects/{subjects[2].id}")[0]["subjects"][0]["links"]["subject_sets"] == [sets[1].id]


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
