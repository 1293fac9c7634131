"""The ``/api`` routes: reads through the resource kinds, writes with ownership checks, links, exports.

Who may do what is the real server's policies (policies.py): owners and collaborators write a project
and everything in it; anyone else finds nothing to change (404) or nothing to link to (422). Every write
needs a token (401), except classifications: anyone may classify what they may see (public projects, and
private ones where they hold a role, e.g. testers). Bodies are checked against the real JSON schemas
(schemas.py, 422) and then the real models' validations (400).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from typing import Any

from flask import Flask, Response, request
from werkzeug.routing import BaseConverter

from glitchrun.embedded_panoptes import exports, policies, schemas
from glitchrun.embedded_panoptes.counting import (
    RETIREMENT_REASONS,
    ensure_statuses,
    refresh_finished,
    seen_subjects,
    workflows_of_set,
)
from glitchrun.embedded_panoptes.errors import ApiError, not_found
from glitchrun.embedded_panoptes.media import EXTENSIONS, UPLOADS, Media
from glitchrun.embedded_panoptes.resources import (
    CLASSIFICATIONS,
    KINDS,
    PROJECT_DEFAULTS,
    PROJECT_ROLES,
    PROJECTS,
    SUBJECT_SETS,
    SUBJECTS,
    USERS,
    WORKFLOW_DEFAULTS,
    WORKFLOWS,
    Kind,
    list_gold_standard,
    list_project_classifications,
    list_resources,
    subject_limit,
)
from glitchrun.embedded_panoptes.resources import subjects as serialize_subjects
from glitchrun.embedded_panoptes.rules import Rules
from glitchrun.embedded_panoptes.selection import queued
from glitchrun.embedded_panoptes.store import Store, dumps, id_list, insert, now, update
from glitchrun.embedded_panoptes.tasks import normalize_retirement, version_bumps
from glitchrun.embedded_panoptes.web import (
    Ctx,
    api_view,
    json_body,
    require_if_match,
    to_id,
    to_ids,
)
from glitchrun.embedded_panoptes.worker import schedule

#: project attributes kept in their own columns (filterable); the rest live in ``attrs``
PROJECT_COLUMNS = ("display_name", "private", "live", "launch_approved", "beta_approved", "state")
#: projects_controller.rb: only admins may set these ("Only Admins may set field X for project", 422)
ADMIN_ONLY_PROJECT_FIELDS = ("beta_approved", "launch_approved", "redirect", "launched_row_order_position",
                             "beta_row_order_position", "experimental_tools", "featured",
                             "run_subject_set_completion_events")
LINK_ERROR = "Error: check the subject set and all the subjects exist."


def no_content() -> Response:
    return Response(status=204)


def slug_of(login: str, display_name: str) -> str:
    return f"{login.lower()}/{re.sub(r'[^a-z0-9]+', '-', display_name.lower()).strip('-')}"


# ------------------------------------------------------------------------------------ ownership
def writable_project(ctx: Ctx, project_id: int) -> sqlite3.Row:
    """The project if the caller may update it (owner or collaborator) and it is not deactivated: 401 without
    a token, else the real 404 (``lib/json_api_controller/check_resources_exist.rb``: outside the update
    scope, or deactivated (``pundit_policy.rb`` ``scope.active``), it is not found)."""
    project = policies.in_scope(ctx.db, policies.writable(ctx.require_viewer()), project_id)
    if project is None or project["deactivated_at"] is not None:
        raise not_found("project", project_id)
    return project


def linked_project(ctx: Ctx, value: Any) -> sqlite3.Row:
    """``links.project`` of a create: a project the caller may update, else the real 422 (NotLinkable)."""
    project = policies.in_scope(ctx.db, policies.writable(ctx.require_viewer()), to_id(value, "links.project"))
    if project is None:
        raise policies.not_linkable("project")
    return project


def writable(ctx: Ctx, kind: Kind, ident: int) -> sqlite3.Row:
    """A workflow, subject set or subject of a project the caller may update (and not deactivated), else 404."""
    ctx.require_viewer()
    row = ctx.db.execute(f"SELECT {kind.alias}.* {kind.source} WHERE {kind.alias}.id = ?", (ident,)).fetchone()
    if row is None or policies.in_scope(ctx.db, policies.writable(ctx.viewer), row["project_id"]) is None or (
            kind.activatable and row["deactivated_at"] is not None):
        raise not_found(kind.singular, ident)
    return row


def deactivate(ctx: Ctx, table: str, row: sqlite3.Row, **changes: Any) -> Response:
    """DELETE of an ``Activatable`` resource (projects, workflows, subjects:
    ``lib/json_api_controller/deactivatable_resource.rb``): it is deactivated, not removed. It leaves every
    list and show (404), and nothing linked to it changes: a subject stays in its sets, a workflow keeps
    its classifications."""
    stamp = now()
    update(ctx.db, table, row["id"], {"deactivated_at": stamp, "updated_at": stamp, **changes})
    return no_content()


def _id_array(body: dict[str, Any], key: str) -> list[int]:
    values = body.get(key)
    if isinstance(values, (str, int)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, list) or not values:
        raise ApiError(422, f'the body must be {{"{key}": [ids]}}')
    return to_ids(values, key)


def _existing(ctx: Ctx, table: str, ids: list[int]) -> list[sqlite3.Row]:
    return ctx.db.execute(f"SELECT * FROM {table} WHERE id IN (SELECT value FROM json_each(?))",
                          (id_list(ids),)).fetchall()


def _link_ids(body: dict[str, Any], relation: str) -> list[int]:
    """The ids of a link body (``updatable_resource.rb`` ``update_links``): the body must name the relation
    (``check_relation``, 422 BadLinkParams); one id or a list."""
    values = body.get(relation)
    if values is None:
        raise ApiError(422, f"Link relation {relation} must match body key")
    return to_ids(values if isinstance(values, list) else [values], relation)


def linkable(ctx: Ctx, kind: Kind, ids: list[int], scope: tuple[str, list[Any]] | None = None) -> list[sqlite3.Row]:
    """``RelationManager#relation_find`` over the policy's linkable scope (by default what the caller may see:
    public projects' and the projects where they hold a role): the rows found, in id order; when ids were
    asked for and none is found, 422 NotLinkable. Some missing is no error: the others are linked."""
    clause, params = scope or policies.readable(ctx.viewer)
    rows = ctx.db.execute(f"SELECT {kind.alias}.* {kind.source} WHERE {kind.alias}.id IN "
                          f"(SELECT value FROM json_each(?)) AND {clause} ORDER BY {kind.alias}.id",
                          (id_list(ids), *params)).fetchall()
    if ids and not rows:
        raise policies.not_linkable(kind.key)
    return rows


def copy_subject_set(ctx: Ctx, subject_set: sqlite3.Row, project_id: int) -> int:
    """``lib/subject_set_copier.rb``: a set of another project linked to this one's project or workflow is
    duplicated into this project (same name, metadata and member subjects; the subjects are not copied)."""
    _check_set_name(ctx, project_id, subject_set["display_name"])
    stamp = now()
    set_id = insert(ctx.db, "subject_sets", {"project_id": project_id, "display_name": subject_set["display_name"],
                                             "metadata": subject_set["metadata"], "created_at": stamp,
                                             "updated_at": stamp})
    ctx.db.execute("INSERT INTO set_member_subjects (subject_set_id, subject_id, created_at, updated_at) "
                   "SELECT ?, subject_id, ?, ? FROM set_member_subjects WHERE subject_set_id = ? ORDER BY id",
                   (set_id, stamp, stamp, subject_set["id"]))
    return set_id


def copy_workflow(ctx: Ctx, workflow: sqlite3.Row, project_id: int) -> int:
    """``lib/workflow_copier.rb``: a workflow linked to a project is copied into it (even one of the same
    project): inactive, named ``<name> (copy: <UTC time>)``, ``configuration.source_workflow_id`` the
    original, version 1.1, no subject sets, counts from zero."""
    attrs = json.loads(workflow["attrs"])
    attrs["configuration"] = {**attrs.get("configuration", {}), "source_workflow_id": workflow["id"]}
    moment = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    stamp = now()
    wid = insert(ctx.db, "workflows", {
        "project_id": project_id, "display_name": f"{workflow['display_name']} (copy: {moment})", "active": 0,
        "major": 1, "minor": 1, "tasks": workflow["tasks"], "first_task": workflow["first_task"],
        "retirement": workflow["retirement"], "attrs": dumps(attrs), "created_at": stamp, "updated_at": stamp,
    })
    _add_version(ctx, wid, 1, 1, json.loads(workflow["tasks"]), workflow["first_task"])
    return wid


# ------------------------------------------------------------------------------------ projects
def _check_display_name(ctx: Ctx, owner_id: int, name: str, project_id: int = 0) -> None:
    """``UniqueForOwnerValidator``: one display name per owner, whatever the case (400)."""
    taken = ctx.db.execute("SELECT id FROM projects WHERE owner_id = ? AND lower(display_name) = lower(?) "
                           "AND id != ?", (owner_id, name, project_id)).fetchone()
    if taken is not None:
        raise ApiError(400, "Validation failed: Display name Must be unique for owner")


def _admin_only(ctx: Ctx, attrs: dict[str, Any]) -> None:
    if not ctx.require_viewer()["admin"]:
        for name in ADMIN_ONLY_PROJECT_FIELDS:
            if name in attrs:
                raise ApiError(422, f"Only Admins may set field {name} for project")


def _project_columns(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: int(v) if isinstance(v, bool) else v for k, v in attrs.items() if k in PROJECT_COLUMNS}


def create_project(ctx: Ctx) -> Response:
    viewer = ctx.require_viewer()
    attrs, links = schemas.validate("projects", "create", schemas.require(json_body(), "projects"))
    _admin_only(ctx, attrs)
    owner = links.get("owner", {"id": viewer["id"], "type": "users"})
    if str(owner["id"]) != str(viewer["id"]) or owner["type"] not in ("users", "user"):
        raise policies.not_linkable("owner")  # user groups as owners are not modelled here
    _check_display_name(ctx, viewer["id"], attrs["display_name"])
    stamp = now()
    pid = insert(ctx.db, "projects", {
        "owner_id": viewer["id"], "slug": slug_of(viewer["login"], attrs["display_name"]), **_project_columns(attrs),
        "attrs": dumps({**PROJECT_DEFAULTS, **{k: v for k, v in attrs.items() if k not in PROJECT_COLUMNS}}),
        "created_at": stamp, "updated_at": stamp,
    })
    insert(ctx.db, "project_roles", {"project_id": pid, "user_id": viewer["id"], "roles": dumps(["owner"]),
                                     "created_at": stamp, "updated_at": stamp})
    return PROJECTS.respond(ctx, [PROJECTS.find(ctx, pid)], 201)


def update_project(ctx: Ctx, ident: str) -> Response:
    project = writable_project(ctx, to_id(ident, "project id"))
    require_if_match("projects", project)
    attrs, _ = schemas.validate("projects", "update", schemas.require(json_body(), "projects"))
    _admin_only(ctx, attrs)
    changes = _project_columns(attrs)
    if "display_name" in attrs:
        _check_display_name(ctx, project["owner_id"], attrs["display_name"], project["id"])
        owner = ctx.db.execute("SELECT login FROM users WHERE id = ?", (project["owner_id"],)).fetchone()["login"]
        changes["slug"] = slug_of(owner, attrs["display_name"])
    stored = {**json.loads(project["attrs"]), **{k: v for k, v in attrs.items() if k not in PROJECT_COLUMNS}}
    update(ctx.db, "projects", project["id"], {**changes, "attrs": dumps(stored), "updated_at": now()})
    return PROJECTS.respond(ctx, [PROJECTS.find(ctx, project["id"])])


def delete_project(ctx: Ctx, ident: str) -> Response:
    """``projects_controller.rb#destroy``: deactivated, its display name suffixed ``_deleted`` (once), so the
    owner may make a project of that name again."""
    project = writable_project(ctx, to_id(ident, "project id"))
    require_if_match("projects", project)
    name = project["display_name"]
    return deactivate(ctx, "projects", project,
                      display_name=name if name.split("_")[-1] == "deleted" else f"{name}_deleted")


def link_to_project(ctx: Ctx, ident: str, link: str) -> Response:
    """POST /projects/{id}/links/{subject_sets|workflows} (``projects_controller.rb`` ``construct_new_items``):
    any set or workflow the caller may see; a set of another project is copied into this one, and every
    linked workflow is copied (``WorkflowCopier``), this project's own too."""
    project = writable_project(ctx, to_id(ident, "project id"))
    for row in linkable(ctx, SUBJECT_SETS if link == "subject_sets" else WORKFLOWS, _link_ids(json_body(), link)):
        if link == "workflows":
            copy_workflow(ctx, row, project["id"])
        elif row["project_id"] != project["id"]:
            copy_subject_set(ctx, row, project["id"])
    update(ctx.db, "projects", project["id"], {"updated_at": now()})  # update_links touches the resource
    return PROJECTS.respond(ctx, [PROJECTS.find(ctx, project["id"])])


# ------------------------------------------------------------------------------------ workflows
def _workflow_definition(row: sqlite3.Row) -> dict[str, Any]:
    return {**json.loads(row["attrs"]), "tasks": json.loads(row["tasks"]), "first_task": row["first_task"]}


def _add_version(ctx: Ctx, workflow_id: int, major: int, minor: int, tasks: Any, first_task: str) -> None:
    insert(ctx.db, "workflow_versions", {"workflow_id": workflow_id, "major": major, "minor": minor,
                                         "tasks": dumps(tasks), "first_task": first_task, "created_at": now()})


def _link_sets(ctx: Ctx, workflow: sqlite3.Row, set_ids: list[int]) -> None:
    """Link subject sets the caller may see (``WorkflowPolicy#linkable_subject_sets``); a set of another project
    is copied into the workflow's project and the copy linked (``workflows_controller.rb``
    ``construct_new_items``). Make the status rows of their subjects."""
    set_ids = [r["id"] if r["project_id"] == workflow["project_id"] else copy_subject_set(ctx, r, workflow["project_id"])
               for r in linkable(ctx, SUBJECT_SETS, set_ids)]
    stamp = now()
    ctx.db.executemany("INSERT OR IGNORE INTO workflow_subject_sets (workflow_id, subject_set_id) VALUES (?, ?)",
                       [(workflow["id"], sid) for sid in set_ids])
    ensure_statuses(ctx.db, "wss.workflow_id = ? AND wss.subject_set_id IN (SELECT value FROM json_each(?))",
                    (workflow["id"], id_list(set_ids)), stamp)
    refresh_finished(ctx.db, [workflow["id"]], stamp)


def _unlink_sets(ctx: Ctx, workflow_id: int, set_ids: list[int]) -> None:
    ctx.db.execute("DELETE FROM workflow_subject_sets WHERE workflow_id = ? AND subject_set_id IN "
                   "(SELECT value FROM json_each(?))", (workflow_id, id_list(set_ids)))
    refresh_finished(ctx.db, [workflow_id], now())


def create_workflow(ctx: Ctx) -> Response:
    attrs, links = schemas.validate("workflows", "create", schemas.require(json_body(), "workflows"))
    project = linked_project(ctx, links["project"])
    retirement = normalize_retirement(attrs.pop("retirement", {}))
    tasks, first_task = attrs.pop("tasks", {}), attrs.pop("first_task", "")
    stamp = now()
    wid = insert(ctx.db, "workflows", {
        "project_id": project["id"], "display_name": attrs.pop("display_name"),
        # a live project's new workflows start inactive (§4)
        "active": int(attrs.pop("active", True) and not project["live"]), "major": 1, "minor": 1,
        "tasks": dumps(tasks), "first_task": first_task, "retirement": dumps(retirement),
        "attrs": dumps({**WORKFLOW_DEFAULTS, **attrs}), "created_at": stamp, "updated_at": stamp,
    })
    _add_version(ctx, wid, 1, 1, tasks, first_task)
    if links.get("subject_sets"):
        _link_sets(ctx, WORKFLOWS.find(ctx, wid), to_ids(links["subject_sets"], "links.subject_sets"))
    return WORKFLOWS.respond(ctx, [WORKFLOWS.find(ctx, wid)], 201)


def update_workflow(ctx: Ctx, ident: str) -> Response:
    row = writable(ctx, WORKFLOWS, to_id(ident, "workflow id"))
    require_if_match("workflows", row)
    attrs, links = schemas.validate("workflows", "update", schemas.require(json_body(), "workflows"))
    old = _workflow_definition(row)
    new = {**old, **{k: v for k, v in attrs.items() if k not in ("display_name", "active", "retirement")}}
    project = PROJECTS.find(ctx, row["project_id"])
    major, minor = version_bumps(old, new)
    if major and project["live"] and row["active"]:
        raise ApiError(403, "Can't change an active workflow for a live project.")
    changes: dict[str, Any] = {"tasks": dumps(new.pop("tasks")), "first_task": new.pop("first_task"),
                               "attrs": dumps(new), "updated_at": now(),
                               "major": row["major"] + major, "minor": row["minor"] + minor}
    if "display_name" in attrs:
        changes["display_name"] = attrs["display_name"]
    if "active" in attrs:
        changes["active"] = int(attrs["active"])
    if "retirement" in attrs:
        changes["retirement"] = dumps(normalize_retirement(attrs["retirement"]))
    update(ctx.db, "workflows", row["id"], changes)
    if major or minor:
        _add_version(ctx, row["id"], changes["major"], changes["minor"], json.loads(changes["tasks"]),
                     changes["first_task"])
    if "subject_sets" in links:
        wanted = set(to_ids(links["subject_sets"] or [], "links.subject_sets"))
        current = {r[0] for r in ctx.db.execute(
            "SELECT subject_set_id FROM workflow_subject_sets WHERE workflow_id = ?", (row["id"],))}
        if current - wanted:
            _unlink_sets(ctx, row["id"], sorted(current - wanted))
        if wanted - current:
            _link_sets(ctx, row, sorted(wanted - current))
    return WORKFLOWS.respond(ctx, [WORKFLOWS.find(ctx, row["id"])])


def delete_workflow(ctx: Ctx, ident: str) -> Response:
    row = writable(ctx, WORKFLOWS, to_id(ident, "workflow id"))
    require_if_match("workflows", row)
    return deactivate(ctx, "workflows", row)


def link_sets_to_workflow(ctx: Ctx, ident: str) -> Response:
    row = writable(ctx, WORKFLOWS, to_id(ident, "workflow id"))
    _link_sets(ctx, row, _link_ids(json_body(), "subject_sets"))
    update(ctx.db, "workflows", row["id"], {"updated_at": now()})  # update_links touches the resource
    return WORKFLOWS.respond(ctx, [WORKFLOWS.find(ctx, row["id"])])


def unlink_sets_from_workflow(ctx: Ctx, ident: str, ids: str) -> Response:
    row = writable(ctx, WORKFLOWS, to_id(ident, "workflow id"))
    _unlink_sets(ctx, row["id"], to_ids(ids.split(","), "subject set id"))
    return no_content()


def _operation_ids(body: dict[str, Any]) -> list[int]:
    """``subject_ids`` (array of integers) merged with ``subject_id`` as ``Workflows::RetireSubjects`` does;
    anything but integers is ActiveInteraction's 422."""
    ids = body.get("subject_ids", [])
    ids = ids if isinstance(ids, list) else [ids]
    single = body.get("subject_id")
    return list(dict.fromkeys(to_ids([*ids, *([single] if single is not None else [])], "subject_ids")))


def _later(ctx: Ctx, kind: str, payload: dict[str, Any]) -> None:
    """Hand a job to the worker (``rules.worker_delay`` from now; on a quiet server, at once)."""
    schedule(ctx.db, ctx.rules, kind, payload, ctx.rules.clock() + ctx.rules.worker_delay)


def retire_subjects(ctx: Ctx, ident: str) -> Response:
    """POST /workflows/{id}/retired_subjects (``app/operations/workflows/retire_subjects.rb``): 204; reason
    one of the SubjectWorkflowStatus reasons, ``blank`` meaning nothing_here, or none. The retirement itself
    is ``RetireSubjectWorker``'s (rules.py ``worker_delay``): unknown subject ids are skipped there;
    subjects need not be in the workflow's sets."""
    row = writable(ctx, WORKFLOWS, to_id(ident, "workflow id"))
    body = json_body()
    reason = body.get("retirement_reason")
    reason = "nothing_here" if reason == "blank" else reason
    if reason is not None and reason not in RETIREMENT_REASONS:
        raise ApiError(422, "Retirement reason is not included in the list")
    subject_ids = _operation_ids(body)
    if subject_ids:
        _later(ctx, "retire", {"workflow": row["id"], "subjects": sorted(subject_ids), "reason": reason or None})
    return no_content()


def unretire_subjects(ctx: Ctx, ident: str) -> Response:
    """POST /workflows/{id}/unretire_subjects with ``subject_ids`` or ``subject_set_ids``."""
    row = writable(ctx, WORKFLOWS, to_id(ident, "workflow id"))
    body = json_body()
    if "subject_set_ids" in body:
        set_ids = _id_array(body, "subject_set_ids")
        subject_ids = [r[0] for r in ctx.db.execute(
            "SELECT DISTINCT subject_id FROM set_member_subjects "
            "WHERE subject_set_id IN (SELECT value FROM json_each(?))", (id_list(set_ids),))]
    else:
        subject_ids = _operation_ids(body)
    if subject_ids:
        _later(ctx, "unretire", {"workflow": row["id"], "subjects": sorted(set(subject_ids))})
    return no_content()


# ------------------------------------------------------------------------------------ subject sets
def _link_subjects(ctx: Ctx, subject_set: sqlite3.Row, subject_ids: list[int], exact: bool = False) -> None:
    """Add members (existing ones are kept once): any subjects the caller may see
    (``SubjectSetPolicy#linkable_subjects``: public projects' too), none found is 422 NotLinkable.

    ``exact`` (a link body, ``subject_sets_controller.rb#add_relation``): the active subjects found must
    number as many as the ids sent, so a deactivated subject, a missing one or the same subject twice is
    422; a create's ``links.subjects`` takes the subjects it finds."""
    rows = linkable(ctx, SUBJECTS, subject_ids)
    if exact and sum(r["deactivated_at"] is None for r in rows) != len(subject_ids):
        raise ApiError(422, LINK_ERROR)
    subject_ids = [r["id"] for r in rows]
    stamp = now()
    ctx.db.executemany(
        "INSERT OR IGNORE INTO set_member_subjects (subject_set_id, subject_id, created_at, updated_at) "
        "VALUES (?, ?, ?, ?)",
        [(subject_set["id"], sid, stamp, stamp) for sid in subject_ids],
    )
    ensure_statuses(ctx.db, "sms.subject_set_id = ? AND sms.subject_id IN (SELECT value FROM json_each(?))",
                    (subject_set["id"], id_list(subject_ids)), stamp)
    refresh_finished(ctx.db, workflows_of_set(ctx.db, subject_set["id"]), stamp)


def _check_set_name(ctx: Ctx, project_id: int, name: str, set_id: int = 0) -> None:
    """``app/models/subject_set.rb``: ``validates_uniqueness_of :display_name, scope: :project_id`` (400)."""
    if ctx.db.execute("SELECT 1 FROM subject_sets WHERE project_id = ? AND display_name = ? AND id != ?",
                      (project_id, name, set_id)).fetchone() is not None:
        raise ApiError(400, "Validation failed: Display name has already been taken")


def create_subject_set(ctx: Ctx) -> Response:
    attrs, links = schemas.validate("subject_sets", "create", schemas.require(json_body(), "subject_sets"))
    project = linked_project(ctx, links["project"])
    _check_set_name(ctx, project["id"], attrs["display_name"])
    stamp = now()
    set_id = insert(ctx.db, "subject_sets", {"project_id": project["id"], "display_name": attrs["display_name"],
                                             "metadata": dumps(attrs.get("metadata", {})),
                                             "created_at": stamp, "updated_at": stamp})
    if links.get("subjects"):
        _link_subjects(ctx, SUBJECT_SETS.find(ctx, set_id), to_ids(links["subjects"], "links.subjects"))
    return SUBJECT_SETS.respond(ctx, [SUBJECT_SETS.find(ctx, set_id)], 201)


def update_subject_set(ctx: Ctx, ident: str) -> Response:
    row = writable(ctx, SUBJECT_SETS, to_id(ident, "subject set id"))
    require_if_match("subject_sets", row)
    attrs, links = schemas.validate("subject_sets", "update", schemas.require(json_body(), "subject_sets"))
    if "display_name" in attrs:
        _check_set_name(ctx, row["project_id"], attrs["display_name"], row["id"])
    changes = {"display_name": attrs["display_name"]} if "display_name" in attrs else {}
    if "metadata" in attrs:
        changes["metadata"] = dumps(attrs["metadata"])
    update(ctx.db, "subject_sets", row["id"], {**changes, "updated_at": now()})
    if "subjects" in links:  # an update's links replace the set's subjects (has_many assignment)
        ctx.db.execute("DELETE FROM set_member_subjects WHERE subject_set_id = ?", (row["id"],))
        _link_subjects(ctx, row, to_ids(links["subjects"] or [], "links.subjects"))
        refresh_finished(ctx.db, workflows_of_set(ctx.db, row["id"]), now())
    return SUBJECT_SETS.respond(ctx, [SUBJECT_SETS.find(ctx, row["id"])])


def delete_subject_set(ctx: Ctx, ident: str) -> Response:
    """The set and its memberships go; the subjects stay (as on the real server)."""
    row = writable(ctx, SUBJECT_SETS, to_id(ident, "subject set id"))
    require_if_match("subject_sets", row)
    workflows = workflows_of_set(ctx.db, row["id"])
    ctx.db.execute("DELETE FROM subject_sets WHERE id = ?", (row["id"],))
    refresh_finished(ctx.db, workflows, now())
    return no_content()


def link_subjects_to_set(ctx: Ctx, ident: str) -> Response:
    row = writable(ctx, SUBJECT_SETS, to_id(ident, "subject set id"))
    _link_subjects(ctx, row, _link_ids(json_body(), "subjects"), exact=True)
    update(ctx.db, "subject_sets", row["id"], {"updated_at": now()})  # update_links touches the resource
    return SUBJECT_SETS.respond(ctx, [SUBJECT_SETS.find(ctx, row["id"])])


def unlink_subjects_from_set(ctx: Ctx, ident: str, ids: str) -> Response:
    row = writable(ctx, SUBJECT_SETS, to_id(ident, "subject set id"))
    ctx.db.execute("DELETE FROM set_member_subjects WHERE subject_set_id = ? AND subject_id IN "
                   "(SELECT value FROM json_each(?))", (row["id"], id_list(to_ids(ids.split(","), "subject id"))))
    refresh_finished(ctx.db, workflows_of_set(ctx.db, row["id"]), now())
    return no_content()


# ------------------------------------------------------------------------------------ subjects
def _parse_locations(locations: list[Any]) -> list[tuple[str, str | None]]:
    """(MIME type, external URL or None for an upload) per entry, in request order
    (``Subject.location_attributes_from_params``: a string is a type to upload, an object's first key and
    value a hosted file); a type outside ``medium.rb``'s list fails the subject's validation (400)."""
    parsed = []
    for entry in locations:
        mime, url = (entry, None) if isinstance(entry, str) else next(iter(entry.items()), (None, None))
        if mime not in EXTENSIONS:
            raise ApiError(400, "Validation failed: Locations is invalid")
        parsed.append((mime, url if isinstance(url, str) or url is None else json.dumps(url)))
    return parsed


def _write_locations(ctx: Ctx, subject_id: int, locations: list[Any], keep: dict[str, sqlite3.Row]) -> frozenset[str]:
    """Store the locations of a subject; an entry whose URL ends in a name of ``keep`` keeps that file.
    Returns the names that now await an upload."""
    fresh = set()
    for position, (mime, url) in enumerate(_parse_locations(locations)):
        name = next((n for n in keep if url is not None and url.endswith(f"/{UPLOADS}/{n}")), None)
        kept = keep.pop(name) if name else None
        if url is None:
            name = ctx.media.new_name(EXTENSIONS[mime])
            fresh.add(name)
        insert(ctx.db, "locations", {
            "subject_id": subject_id, "position": position, "mime": mime, "media_name": name,
            "external_url": None if name else url, "content_type": kept["content_type"] if kept else None,
        })
    return frozenset(fresh)


def check_subject_limit(ctx: Ctx) -> None:
    """``subjects_controller.rb`` ``check_subject_limit`` (before_action of create), ``api_user.rb``
    ``above_subject_limit?``: admins are exempt; blocked once the count reaches the limit (403)."""
    viewer = ctx.require_viewer()
    current, limit = viewer["uploaded_subjects_count"], subject_limit(ctx, viewer)
    if not viewer["admin"] and current >= limit:
        raise ApiError(403, f"User has uploaded {current} subjects of {limit} maximum")


def _set_memberships(ctx: Ctx, subject_id: int, links: dict[str, Any]) -> None:
    """``links.subject_sets`` of a subject create or update: the sets the caller may update
    (``SubjectPolicy#linkable_subject_sets``: their own projects' sets, NotLinkable when none is found)
    become the subject's sets (has_many assignment: an update replaces its memberships)."""
    if "subject_sets" not in links:
        return
    wanted = [r["id"] for r in linkable(ctx, SUBJECT_SETS, to_ids(links["subject_sets"] or [], "links.subject_sets"),
                                        policies.writable(ctx.viewer))]
    dropped = [r[0] for r in ctx.db.execute(
        "SELECT subject_set_id FROM set_member_subjects WHERE subject_id = ? AND subject_set_id NOT IN "
        "(SELECT value FROM json_each(?))", (subject_id, id_list(wanted)))]
    ctx.db.execute("DELETE FROM set_member_subjects WHERE subject_id = ? AND subject_set_id IN "
                   "(SELECT value FROM json_each(?))", (subject_id, id_list(dropped)))
    stamp = now()
    ctx.db.executemany("INSERT OR IGNORE INTO set_member_subjects (subject_set_id, subject_id, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?)", [(set_id, subject_id, stamp, stamp) for set_id in wanted])
    ensure_statuses(ctx.db, "sms.subject_id = ?", (subject_id,), stamp)
    refresh_finished(ctx.db, [w for s in wanted + dropped for w in workflows_of_set(ctx.db, s)], stamp)


def create_subject(ctx: Ctx) -> Response:
    check_subject_limit(ctx)
    attrs, links = schemas.validate("subjects", "create", schemas.require(json_body(), "subjects"))
    project = linked_project(ctx, links["project"])
    stamp = now()
    # every subject the user ever made counts, deleted ones included (``User#uploaded_subjects_count``)
    ctx.db.execute("UPDATE users SET uploaded_subjects_count = uploaded_subjects_count + 1 WHERE id = ?",
                   (ctx.viewer["id"],))
    sid = insert(ctx.db, "subjects", {"project_id": project["id"], "metadata": dumps(attrs.get("metadata", {})),
                                      "external_id": attrs.get("external_id"), "created_at": stamp,
                                      "updated_at": stamp})
    uploads = _write_locations(ctx, sid, attrs["locations"], {})
    _set_memberships(ctx, sid, links)
    rows = [SUBJECTS.find(ctx, sid)]
    return SUBJECTS.respond(ctx, rows, 201, serialize_subjects(ctx, rows, uploads))


def update_subject(ctx: Ctx, ident: str) -> Response:
    """PUT /subjects/{id}: metadata is replaced whole; ``locations`` replaces the list (kept files stay)."""
    row = writable(ctx, SUBJECTS, to_id(ident, "subject id"))
    require_if_match("subjects", row)
    attrs, links = schemas.validate("subjects", "update", schemas.require(json_body(), "subjects"))
    changes: dict[str, Any] = {"updated_at": now()}
    if "metadata" in attrs:
        changes["metadata"] = dumps(attrs["metadata"])
    update(ctx.db, "subjects", row["id"], changes)
    _set_memberships(ctx, row["id"], links)
    uploads: frozenset[str] = frozenset()
    if "locations" in attrs:
        keep = {r["media_name"]: r for r in ctx.db.execute(
            "SELECT * FROM locations WHERE subject_id = ? AND media_name IS NOT NULL", (row["id"],))}
        ctx.db.execute("DELETE FROM locations WHERE subject_id = ?", (row["id"],))
        uploads = _write_locations(ctx, row["id"], attrs["locations"], keep)
        ctx.media.remove(UPLOADS, list(keep))  # what is left in keep was dropped from the subject
    rows = [SUBJECTS.find(ctx, row["id"])]
    return SUBJECTS.respond(ctx, rows, 200, serialize_subjects(ctx, rows, uploads))


def delete_subject(ctx: Ctx, ident: str) -> Response:
    """Deactivated, not removed (``subjects_controller.rb#destroy``): it stays in its subject sets and keeps
    its images. (``SubjectRemovalWorker`` may later remove a subject nobody ever classified, but only behind a
    feature flag: a client must expect the subject to stay.)"""
    row = writable(ctx, SUBJECTS, to_id(ident, "subject id"))
    require_if_match("subjects", row)
    return deactivate(ctx, "subjects", row)


# ------------------------------------------------------------------------------------ classifications
def _linked_workflow(ctx: Ctx, links: dict[str, Any]) -> sqlite3.Row:
    """The links of a classification, resolved in the body's key order against the caller's show scope
    (``ClassificationPolicy#linkable_projects``/``linkable_workflows``): a private project without a role
    is the real 422 ``Couldn't find linked project for current user``, whichever link comes first. The real
    server does not check that the workflow belongs to the project, nor the subjects' visibility."""
    scope = policies.readable(ctx.viewer)
    workflow = None
    for key in (k for k in links if k in ("project", "workflow")):
        ident = to_id(links[key], f"links.{key}")
        if key == "project":
            found = policies.in_scope(ctx.db, scope, ident)
        else:
            found = ctx.db.execute(f"SELECT w.* FROM workflows w JOIN projects p ON p.id = w.project_id "
                                   f"WHERE w.id = ? AND {scope[0]}", (ident, *scope[1])).fetchone()
            workflow = found
        if found is None:
            raise policies.not_linkable(key)
    assert workflow is not None
    return workflow


def _validate_classification(ctx: Ctx, attrs: dict[str, Any], subject_ids: list[int], completed: bool,
                             project_id: int) -> None:
    """``app/models/classification.rb``'s validations (400, ``Validation failed: ...``), behind the schema."""
    problems = []
    if not subject_ids:
        problems.append("Subjects can't be blank")
    if not attrs["annotations"]:
        problems.append("Annotations can't be blank")
    if not completed and ctx.viewer is None:
        problems.append("User Only logged in users can store incomplete classifications")
    if attrs["metadata"].get("seen_before", True) is not True:
        problems.append("Metadata seen_before attribute can only be set to 'true'")
    gold = attrs.get("gold_standard")
    if gold is False:
        problems.append("Gold standard can not be set to false")
    elif gold is True and ctx.viewer is None:
        problems.append("Gold standard user must be logged in")
    elif gold is True and policies.in_scope(ctx.db, policies.project_scope(ctx.viewer, policies.EXPERT_ROLES, False),
                                            project_id) is None:
        problems.append("Gold standard classifier is not a project expert")
    if problems:
        raise ApiError(400, f"Validation failed: {', '.join(problems)}")


def _classified_subjects(ctx: Ctx, ids: list[int]) -> list[int]:
    """``Classification.new(subject_ids: ...)`` (Rails' ``ids_writer``): every subject must exist, deactivated
    ones included, or the create is ``ActiveRecord::RecordNotFound`` (404) before its links are looked at."""
    found = {r["id"] for r in _existing(ctx, "subjects", ids)}
    missing = [i for i in ids if i not in found]
    if not missing:
        return ids
    if len(ids) == 1:
        raise ApiError(404, f"Couldn't find Subject with 'id'={ids}")
    raise ApiError(404, f"Couldn't find all Subjects with 'id': ({', '.join(map(str, ids))}) (found "
                        f"{len(ids) - len(missing)} results, but was looking for {len(ids)}). Couldn't find "
                        f"{'Subject' if len(missing) == 1 else 'Subjects'} with "
                        f"{'id' if len(missing) == 1 else 'ids'} {', '.join(map(str, missing))}.")


def _expert_level(ctx: Ctx, project_id: int) -> str | None:
    """``Project#expert_classifier_level``: the first of ``Project::EXPERT_ROLES`` the caller holds on the project,
    recorded on a gold-standard classification of subjects new to them (``lib/classification_lifecycle.rb``
    ``#mark_expert_classifier``; the export's ``expert`` column)."""
    if ctx.viewer is None:
        return None
    row = ctx.db.execute("SELECT owner_id, (SELECT roles FROM project_roles WHERE project_id = p.id AND user_id = ?) "
                         "FROM projects p WHERE id = ?", (ctx.viewer["id"], project_id)).fetchone()
    held = set(json.loads(row[1] or "[]")) | ({"owner"} if row[0] == ctx.viewer["id"] else set())
    return next((role for role in policies.EXPERT_ROLES if role in held), None)


def create_classification(ctx: Ctx) -> Response:
    """POST /classifications (anonymous allowed): store it, then count it (``ClassificationLifecycle``, a
    worker job: at once on a quiet server, later on a busy one). It becomes visible to other requests at
    once, or after the rules' ``visibility_lag``."""
    attrs, links = schemas.validate("classifications", "create", schemas.require(json_body(), "classifications"))
    metadata = attrs["metadata"]
    completed = attrs.get("completed", True)
    subject_ids = _classified_subjects(ctx, to_ids(links["subjects"], "links.subjects"))
    workflow = _linked_workflow(ctx, links)
    project_id = to_id(links["project"], "links.project")
    _validate_classification(ctx, attrs, subject_ids, completed, project_id)
    user_id = ctx.viewer["id"] if ctx.viewer is not None else None
    stamp = now()
    seen = seen_subjects(ctx.db, workflow["id"], user_id, subject_ids)
    live = ctx.db.execute("SELECT live FROM projects WHERE id = ?", (workflow["project_id"],)).fetchone()["live"]
    gold = attrs.get("gold_standard") is True
    stored = {k: v for k, v in metadata.items() if k != "workflow_version"}
    stored["live_project"] = bool(live)  # lib/classification_lifecycle.rb stores it either way
    if user_id is not None:
        stored["user_group_ids"] = []
    if seen:
        stored["seen_before"] = True
    visible_at = ctx.rules.visible_at()
    cid = insert(ctx.db, "classifications", {
        "project_id": project_id, "workflow_id": workflow["id"], "user_id": user_id,
        "user_ip": request.remote_addr or "", "completed": int(completed),
        "gold_standard": None if attrs.get("gold_standard") is None else int(attrs["gold_standard"]),
        "expert_classifier": _expert_level(ctx, project_id) if gold and not seen else None,
        "workflow_version": str(metadata["workflow_version"]), "annotations": dumps(attrs["annotations"]),
        "metadata": dumps(stored), "created_at": stamp, "updated_at": stamp, "visible_at": visible_at,
    })
    ctx.db.executemany("INSERT INTO classification_subjects (classification_id, subject_id) VALUES (?, ?)",
                       [(cid, sid) for sid in dict.fromkeys(subject_ids)])
    # should_count_towards_retirement?: completed, not flagged seen_before by the caller, and (for a logged-in
    # classifier) a subject not classified before; the worker counts it only if the project is live then;
    # app/counters/subject_workflow_counter.rb: a gold-standard classification never counts towards retirement
    counted = [sid for sid in dict.fromkeys(subject_ids) if sid not in seen]
    if completed and metadata.get("seen_before") is not True and not gold and counted:
        schedule(ctx.db, ctx.rules, "count", {"workflow": workflow["id"], "subjects": counted},
                 (visible_at or ctx.rules.clock()) + ctx.rules.worker_delay)
    rows = ctx.db.execute("SELECT * FROM classifications WHERE id = ?", (cid,)).fetchall()
    return CLASSIFICATIONS.respond(ctx, rows, 201)


# ------------------------------------------------------------------------------------ exports, me
def export_view(ctx: Ctx, ident: str, linked_type: str, export_type: str, generate: bool) -> Response:
    """POST (generate) or GET (describe) ``/{projects|workflows|subject_sets}/{id}/{type}_export``: only
    owners and collaborators (the policies' WriteScope; anyone else gets 404)."""
    if linked_type == "projects":
        linked_id = writable_project(ctx, to_id(ident, "project id"))["id"]
    else:
        kind = WORKFLOWS if linked_type == "workflows" else SUBJECT_SETS
        linked_id = writable(ctx, kind, to_id(ident, f"{kind.singular} id"))["id"]
    if not generate:
        return exports.describe(ctx, linked_type, linked_id, export_type)
    body = json_body() if request.get_data() else {}
    recipients = exports.export_request(linked_type, body, ctx.require_viewer()["id"])
    return exports.generate(ctx, linked_type, linked_id, export_type, recipients)


def retired_export(ctx: Ctx, ident: str) -> Response:
    raise ApiError(410, "workflow_contents_export is retired on Zooniverse; use the project's workflows export")


def me(ctx: Ctx) -> Response:
    return USERS.respond(ctx, [ctx.require_viewer()])


# ------------------------------------------------------------------------------------ project roles
#: ``project_roles_controller.rb`` ``allowed_params``: ``[]`` an array of scalars, a tuple a nested hash's keys
ROLE_PARAMS = {"create": {"roles": [], "links": ("user", "project")}, "update": {"roles": []}}
#: Rails' permitted scalar types (strong parameters): strings, numbers, booleans, nil
SCALARS = (str, int, float, bool, type(None))


def permit(doc: dict[str, Any], allowed: dict[str, Any] | tuple[str, ...]) -> None:
    """Rails' strong parameters with ``action_on_unpermitted_parameters = :raise`` (``config/application.rb``):
    a key not allowed, or whose value has the wrong shape (a string where an array of scalars is allowed, an
    object where a scalar is), is ``UnpermittedParameters``: 422, nested keys first."""
    spec = dict.fromkeys(allowed) if isinstance(allowed, tuple) else allowed
    refused = []
    for key, value in doc.items():
        rule = spec.get(key, ())
        if key not in spec:
            ok = False
        elif rule is None:
            ok = isinstance(value, SCALARS)
        elif rule == []:
            ok = isinstance(value, list) and all(isinstance(v, SCALARS) for v in value)
        else:
            ok = isinstance(value, dict)
            if ok:
                permit(value, rule)
        if not ok:
            refused.append(key)
    if refused:
        raise ApiError(422, f"found unpermitted parameter{'s' if len(refused) > 1 else ''}: "
                            f"{', '.join(f':{key}' for key in refused)}")


def _roles_doc(action: str) -> dict[str, Any]:
    """``params.require(:project_roles).permit(...)`` (``app/controllers/concerns/roles_controller.rb``, strong
    params, no JSON schema): a missing or empty document is Rails' ParameterMissing, anything not permitted
    UnpermittedParameters; both 422."""
    doc = json_body().get("project_roles")
    if not isinstance(doc, dict) or not doc:
        raise ApiError(422, "param is missing or the value is empty: project_roles")
    permit(doc, ROLE_PARAMS[action])
    return doc


def _roles(doc: dict[str, Any]) -> list[str]:
    """The role names as stored (the real server does not check them)."""
    return ["" if r is None else str(r).lower() if isinstance(r, bool) else str(r) for r in doc.get("roles") or []]


def create_project_role(ctx: Ctx) -> Response:
    """POST /project_roles (``project_roles_controller.rb``, ``access_control_list.rb``): the user must exist
    (422), the project must be one the caller may update (422 NotLinkable), one role row per user and
    project (400). Role names are stored as given, as the real server does."""
    ctx.require_viewer()
    doc = _roles_doc("create")
    links = doc.get("links") or {}
    user_ref = links.get("user")
    user = ctx.db.execute("SELECT id FROM users WHERE id = ?", (to_id(user_ref, "links.user"),)).fetchone() \
        if user_ref is not None and str(user_ref).strip().isdigit() else None
    if user is None:
        raise ApiError(422, f"No User with id: {user_ref} exists")
    project = linked_project(ctx, links.get("project"))
    taken = ctx.db.execute("SELECT 1 FROM project_roles WHERE project_id = ? AND user_id = ?",
                           (project["id"], user["id"])).fetchone()
    if taken is not None:
        raise ApiError(400, "Validation failed: User group . Roles have already been set for this user or group")
    stamp = now()
    role_id = insert(ctx.db, "project_roles", {"project_id": project["id"], "user_id": user["id"],
                                               "roles": dumps(_roles(doc)), "created_at": stamp,
                                               "updated_at": stamp})
    return PROJECT_ROLES.respond(ctx, [PROJECT_ROLES.find(ctx, role_id)], 201)


def _writable_role(ctx: Ctx, ident: str) -> sqlite3.Row:
    """``ProjectRolePolicy``: update and destroy only on roles of projects the caller may update, else 404."""
    role_id = to_id(ident, "project role id")
    row = ctx.db.execute("SELECT * FROM project_roles WHERE id = ?", (role_id,)).fetchone()
    if row is None or policies.in_scope(ctx.db, policies.writable(ctx.require_viewer()), row["project_id"]) is None:
        raise not_found("project_role", role_id)
    return row


def update_project_role(ctx: Ctx, ident: str) -> Response:
    row = _writable_role(ctx, ident)
    require_if_match("project_roles", row)
    doc = _roles_doc("update")
    update(ctx.db, "project_roles", row["id"], {"roles": dumps(_roles(doc)), "updated_at": now()})
    return PROJECT_ROLES.respond(ctx, [PROJECT_ROLES.find(ctx, row["id"])])


def delete_project_role(ctx: Ctx, ident: str) -> Response:
    row = _writable_role(ctx, ident)
    require_if_match("project_roles", row)
    ctx.db.execute("DELETE FROM project_roles WHERE id = ?", (row["id"],))
    return no_content()


class IdConverter(BaseConverter):
    """``lib/routes/json_api_routes.rb`` ``VALID_IDS``: a resource id in a route is digits only, so a comma list
    or anything else in its place matches no route (404 ``Not Found``)."""

    regex = "[0-9]+"


def register(app: Flask, store: Store, viewer_of: Callable[[sqlite3.Connection], sqlite3.Row | None], media: Media,
             rules: Rules) -> None:
    view = api_view(store, viewer_of, media, rules)
    app.url_map.converters["id"] = IdConverter

    def route(rule: str, fn: Any, method: str) -> None:
        app.add_url_rule(f"/api{rule}", f"{method} {rule}", view(fn), methods=[method])

    # before the <id:path_ids> routes of the kinds, as in the real routes.rb (collection routes first)
    route("/classifications/project", list_project_classifications, "GET")
    route("/classifications/gold_standard", list_gold_standard, "GET")
    route("/subjects/queued", queued, "GET")
    for kind in KINDS:
        route(f"/{kind.key}", partial(list_resources, kind=kind), "GET")
        route(f"/{kind.key}/<id:path_ids>", partial(list_resources, kind=kind), "GET")
    route("/me", me, "GET")
    writes = {"projects": (create_project, update_project, delete_project),
              "workflows": (create_workflow, update_workflow, delete_workflow),
              "subject_sets": (create_subject_set, update_subject_set, delete_subject_set),
              "subjects": (create_subject, update_subject, delete_subject)}
    for key, (create, change, delete) in writes.items():
        route(f"/{key}", create, "POST")
        route(f"/{key}/<id:ident>", change, "PUT")
        route(f"/{key}/<id:ident>", delete, "DELETE")
    route("/classifications", create_classification, "POST")
    route("/project_roles", create_project_role, "POST")
    route("/project_roles/<id:ident>", update_project_role, "PUT")
    route("/project_roles/<id:ident>", delete_project_role, "DELETE")
    route("/projects/<id:ident>/links/subject_sets", partial(link_to_project, link="subject_sets"), "POST")
    route("/projects/<id:ident>/links/workflows", partial(link_to_project, link="workflows"), "POST")
    route("/workflows/<id:ident>/links/subject_sets", link_sets_to_workflow, "POST")
    route("/workflows/<id:ident>/links/subject_sets/<ids>", unlink_sets_from_workflow, "DELETE")
    route("/workflows/<id:ident>/retired_subjects", retire_subjects, "POST")
    route("/workflows/<id:ident>/unretire_subjects", unretire_subjects, "POST")
    route("/subject_sets/<id:ident>/links/subjects", link_subjects_to_set, "POST")
    route("/subject_sets/<id:ident>/links/subjects/<ids>", unlink_subjects_from_set, "DELETE")
    for linked_type, export_types in exports.EXPORT_TYPES.items():
        for export_type in export_types:
            for method, generate in (("POST", True), ("GET", False)):
                route(f"/{linked_type}/<id:ident>/{export_type}_export",
                      partial(export_view, linked_type=linked_type, export_type=export_type, generate=generate), method)
    route("/workflows/<id:ident>/workflow_contents_export", retired_export, "POST")
