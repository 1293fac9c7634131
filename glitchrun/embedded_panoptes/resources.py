"""The resource kinds of the API: how each is queried, filtered, scoped to the caller and serialised.

Every kind is listed through one code path (``list_resources``), so paging, comma-list ids in the path
(``GET /subjects/1,2,3``), visibility of private projects and the envelope are identical everywhere.
Serialisers take a whole page of rows at once, so a page of 100 subjects costs a handful of queries.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Response, request

from glitchrun.embedded_panoptes import policies
from glitchrun.embedded_panoptes.counting import project_counts, workflow_counts
from glitchrun.embedded_panoptes.errors import ApiError, not_found
from glitchrun.embedded_panoptes.store import id_list
from glitchrun.embedded_panoptes.web import (
    DEFAULT_PAGE_SIZE,
    Ctx,
    Filter,
    Query,
    apply_filters,
    arg_values,
    envelope,
    json_response,
    page_bounds,
    page_meta,
    record_etag,
    to_id,
    to_ids,
)

Serializer = Callable[[Ctx, list[sqlite3.Row]], list[dict[str, Any]]]

PROJECT_DEFAULTS: dict[str, Any] = {
    "description": "", "introduction": "", "primary_language": "en", "tags": [], "urls": [],
    "configuration": {}, "researcher_quote": "", "workflow_description": "",
}
WORKFLOW_DEFAULTS: dict[str, Any] = {
    "primary_language": "en", "configuration": {}, "grouped": False, "pairwise": False, "prioritized": False,
    "aggregation": {}, "public_gold_standard": False, "mobile_friendly": False,
}


def media_link(href: str, kind: str) -> dict[str, str]:
    return {"href": href, "type": kind}


def owner_link(user: sqlite3.Row) -> dict[str, str]:
    return {"id": str(user["id"]), "display_name": user["display_name"], "type": "users",
            "href": f"/users/{user['id']}"}


def _grouped(db: sqlite3.Connection, sql: str, ids: list[int]) -> dict[int, list[str]]:
    """``sql`` selects (key, value) for keys in a JSON id array; values come back as id strings."""
    found: dict[int, list[str]] = defaultdict(list)
    for key, value in db.execute(sql, (id_list(ids),)):
        found[key].append(str(value))
    return found


# ------------------------------------------------------------------------------------ serialisers
def users(ctx: Ctx, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    """``app/serializers/user_serializer.rb``: the ME_ONLY_ATTRS (upload count and limit, admin, ...) only
    for the user themself or an admin."""
    out = []
    for r in rows:
        user = {"id": str(r["id"]), "login": r["login"], "display_name": r["display_name"],
                "credited_name": r["display_name"], "avatar_src": None, "created_at": r["created_at"],
                "updated_at": r["updated_at"], "href": f"/users/{r['id']}", "links": {}}
        if ctx.viewer is not None and (ctx.viewer["id"] == r["id"] or ctx.viewer["admin"]):
            user.update({"admin": bool(r["admin"]), "uploaded_subjects_count": r["uploaded_subjects_count"],
                         "subject_limit": subject_limit(ctx, r), "upload_whitelist": False})
        out.append(user)
    return out


def subject_limit(ctx: Ctx, user: sqlite3.Row) -> int:
    """``User#subject_limit``: the user's own limit, else the server's."""
    return user["subject_limit"] if user["subject_limit"] is not None else ctx.rules.subject_limit


def projects(ctx: Ctx, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    db = ctx.db
    out = []
    for row in rows:
        pid = row["id"]
        owner = db.execute("SELECT * FROM users WHERE id = ?", (row["owner_id"],)).fetchone()
        workflows = db.execute("SELECT id, active FROM workflows WHERE project_id = ? ORDER BY id", (pid,)).fetchall()
        set_ids = [str(r[0]) for r in db.execute(
            "SELECT id FROM subject_sets WHERE project_id = ? ORDER BY id", (pid,))]
        subjects, retired = project_counts(db, pid)
        classifiers = db.execute(
            "SELECT COUNT(DISTINCT user_id) FROM classifications WHERE project_id = ?", (pid,)
        ).fetchone()[0]
        attrs = {**PROJECT_DEFAULTS, **json.loads(row["attrs"])}
        out.append({
            "id": str(pid), "display_name": row["display_name"], "title": row["display_name"], "slug": row["slug"],
            **attrs, "available_languages": [attrs["primary_language"]],
            "private": bool(row["private"]), "live": bool(row["live"]),
            "launch_approved": bool(row["launch_approved"]), "beta_approved": bool(row["beta_approved"]),
            "launch_requested": False, "beta_requested": False, "state": row["state"],
            "classifications_count": row["classifications_count"], "subjects_count": subjects,
            "retired_subjects_count": retired, "classifiers_count": classifiers,
            "completeness": retired / subjects if subjects else 0.0, "activity": 0, "mobile_friendly": False,
            "featured": False, "redirect": "", "launch_date": None, "experimental_tools": [], "migrated": False,
            "created_at": row["created_at"], "updated_at": row["updated_at"], "href": f"/projects/{pid}",
            "links": {
                "workflows": [str(w["id"]) for w in workflows],
                "active_workflows": [str(w["id"]) for w in workflows if w["active"]],
                "subject_sets": set_ids, "owner": owner_link(owner), "project_roles": [], "pages": [],
                "organization": None, "avatar": media_link(f"/projects/{pid}/avatar", "avatars"),
                **{f"{e}_export": media_link(f"/projects/{pid}/{e}_export", f"{e}_exports")
                   for e in ("classifications", "subjects", "workflows")},
            },
        })
    return out


def workflows(ctx: Ctx, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    sets = _grouped(ctx.db, "SELECT workflow_id, subject_set_id FROM workflow_subject_sets "
                            "WHERE workflow_id IN (SELECT value FROM json_each(?)) ORDER BY subject_set_id",
                    [r["id"] for r in rows])
    out = []
    for row in rows:
        wid = row["id"]
        subjects, retired = workflow_counts(ctx.db, wid)
        attrs = {**WORKFLOW_DEFAULTS, **json.loads(row["attrs"])}
        out.append({
            "id": str(wid), "display_name": row["display_name"], "tasks": json.loads(row["tasks"]),
            "first_task": row["first_task"], "steps": [], **attrs, "content_language": attrs["primary_language"],
            "version": f"{row['major']}.{row['minor']}", "active": bool(row["active"]),
            "retirement": json.loads(row["retirement"]), "classifications_count": row["classifications_count"],
            "subjects_count": subjects, "retired_set_member_subjects_count": retired,
            "finished_at": row["finished_at"], "completeness": retired / subjects if subjects else 0.0,
            "created_at": row["created_at"], "updated_at": row["updated_at"], "href": f"/workflows/{wid}",
            "links": {
                "project": str(row["project_id"]), "subject_sets": sets.get(wid, []), "tutorial_subject": None,
                "published_version": None,
                "attached_images": media_link(f"/workflows/{wid}/attached_images", "attached_images"),
                "classifications_export": media_link(f"/workflows/{wid}/classifications_export",
                                                     "classifications_exports"),
            },
        })
    return out


def subject_sets(ctx: Ctx, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    ids = [r["id"] for r in rows]
    flows = _grouped(ctx.db, "SELECT subject_set_id, workflow_id FROM workflow_subject_sets "
                             "WHERE subject_set_id IN (SELECT value FROM json_each(?)) ORDER BY workflow_id", ids)
    counts = dict(ctx.db.execute(
        "SELECT subject_set_id, COUNT(*) FROM set_member_subjects "
        "WHERE subject_set_id IN (SELECT value FROM json_each(?)) GROUP BY subject_set_id", (id_list(ids),)
    ).fetchall())
    return [{"id": str(r["id"]), "display_name": r["display_name"], "metadata": json.loads(r["metadata"]),
             "set_member_subjects_count": counts.get(r["id"], 0), "created_at": r["created_at"],
             "updated_at": r["updated_at"], "href": f"/subject_sets/{r['id']}",
             "links": {"project": str(r["project_id"]), "workflows": flows.get(r["id"], [])}}
            for r in rows]


def set_member_subjects(ctx: Ctx, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    return [{"id": str(r["id"]), "priority": None, "created_at": r["created_at"], "updated_at": r["updated_at"],
             "href": f"/set_member_subjects/{r['id']}",
             "links": {"subject": str(r["subject_id"]), "subject_set": str(r["subject_set_id"])}}
            for r in rows]


def subjects(ctx: Ctx, rows: list[sqlite3.Row], upload_names: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Subjects with absolute location URLs: PUT URLs for ``upload_names`` (just created), GET URLs otherwise."""
    ids = [r["id"] for r in rows]
    locations: dict[int, list[dict[str, str]]] = defaultdict(list)
    for loc in ctx.db.execute(
        "SELECT * FROM locations WHERE subject_id IN (SELECT value FROM json_each(?)) ORDER BY subject_id, position",
        (id_list(ids),),
    ):
        name = loc["media_name"]
        if name is None:
            url = loc["external_url"]
        elif name in upload_names:
            url = ctx.media.upload_url(ctx.base_url, name)
        else:
            url = ctx.media.location_url(ctx.base_url, name)
        locations[loc["subject_id"]].append({loc["mime"]: url})
    sets = _grouped(ctx.db, "SELECT subject_id, subject_set_id FROM set_member_subjects "
                            "WHERE subject_id IN (SELECT value FROM json_each(?)) ORDER BY subject_set_id", ids)
    return [{"id": str(r["id"]), "metadata": json.loads(r["metadata"]), "locations": locations.get(r["id"], []),
             "zooniverse_id": None, "external_id": r["external_id"], "created_at": r["created_at"],
             "updated_at": r["updated_at"], "href": f"/subjects/{r['id']}",
             "links": {"project": str(r["project_id"]), "collections": [], "subject_sets": sets.get(r["id"], [])}}
            for r in rows]


def subject_workflow_statuses(ctx: Ctx, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    return [{"id": str(r["id"]), "classifications_count": r["classifications_count"], "retired_at": r["retired_at"],
             "retirement_reason": r["retirement_reason"], "created_at": r["created_at"],
             "updated_at": r["updated_at"], "href": f"/subject_workflow_statuses/{r['id']}",
             "links": {"subject": str(r["subject_id"]), "workflow": str(r["workflow_id"])}}
            for r in rows]


def classifications(ctx: Ctx, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    """``app/serializers/classification_serializer.rb``: no ``gold_standard`` (nor ``expert_classifier``), so an
    API client tells experts' classifications by their role, not by a flag (the export has both)."""
    subject_ids = _grouped(ctx.db, "SELECT classification_id, subject_id FROM classification_subjects "
                                   "WHERE classification_id IN (SELECT value FROM json_each(?)) ORDER BY subject_id",
                           [r["id"] for r in rows])
    return [{"id": str(r["id"]), "annotations": json.loads(r["annotations"]),
             "metadata": {**json.loads(r["metadata"]), "workflow_version": r["workflow_version"]},
             "completed": bool(r["completed"]),
             "created_at": r["created_at"], "updated_at": r["updated_at"], "href": f"/classifications/{r['id']}",
             "links": {"project": str(r["project_id"]), "workflow": str(r["workflow_id"]),
                       "user": None if r["user_id"] is None else str(r["user_id"]), "user_group": None,
                       "subjects": subject_ids.get(r["id"], [])}}
            for r in rows]


def project_roles(ctx: Ctx, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    """``app/serializers/project_role_serializer.rb`` with ``concerns/acl_serializer.rb``."""
    return [{"id": str(r["id"]), "roles": json.loads(r["roles"]), "href": f"/project_roles/{r['id']}",
             "links": {"project": str(r["project_id"]),
                       "owner": {"id": str(r["user_id"]), "type": "users", "href": f"/users/{r['user_id']}"}}}
            for r in rows]


# ------------------------------------------------------------------------------------ kinds
def visible_projects(ctx: Ctx, query: Query) -> None:
    """Private projects (and everything in them) exist only for those with a role on them (policies.py)."""
    clause, params = policies.readable(ctx.viewer)
    query.where(clause, *params)


def own_classifications(ctx: Ctx, query: Query) -> None:
    """``ClassificationPolicy::CompleteScope``: the caller's own completed classifications."""
    query.where("c.user_id = ? AND c.completed = 1", ctx.require_viewer()["id"])


def updatable_projects(ctx: Ctx, query: Query) -> None:
    """``ClassificationPolicy::ProjectScope``: everything in the projects the caller may update."""
    clause, params = policies.writable(ctx.require_viewer())
    query.where(clause, *params)


def everyone(ctx: Ctx, query: Query) -> None:
    """Accounts are public (``User.where(login=...)`` works anonymously)."""


@dataclass(frozen=True)
class Kind:
    """One resource type: ``key`` (plural, the envelope key), the SQL source aliased ``alias`` (joined to
    its project as ``p`` where visibility applies), its filters and its serialiser."""

    key: str
    singular: str
    source: str
    alias: str
    serialize: Serializer
    filters: Mapping[str, Filter] = field(default_factory=dict)
    scope: Callable[[Ctx, Query], None] = visible_projects
    max_page_size: int = 100

    def query(self, ctx: Ctx) -> Query:
        query = Query(self.source, self.alias)
        self.scope(ctx, query)
        return query

    def find(self, ctx: Ctx, ident: int) -> sqlite3.Row:
        """One row the caller may see, or 404 (a private project's objects are not found, not forbidden)."""
        rows = self.query(ctx).where(f"{self.alias}.id = ?", ident).rows(ctx.db)
        if not rows:
            raise not_found(self.singular, ident)
        return rows[0]

    def respond(self, ctx: Ctx, rows: list[sqlite3.Row], status: int = 200,
                resources: list[dict[str, Any]] | None = None) -> Response:
        """The envelope of ``rows`` (or of ``resources`` already serialised), with Location on a create."""
        resources = self.serialize(ctx, rows) if resources is None else resources
        headers = {"Location": f"{ctx.base_url}/api{resources[0]['href']}"} if status == 201 and resources else None
        etag = record_etag(self.table, rows) if status == 201 else None  # json_api_responses.rb
        return json_response(envelope(self.key, resources), status, headers, etag)

    @property
    def table(self) -> str:
        return self.source.split()[1]


def by_ids(sql: str) -> Filter:
    return Filter(sql + " IN (SELECT value FROM json_each(?))")


USERS = Kind("users", "user", "FROM users u", "u", users, scope=everyone, filters={
    "id": by_ids("u.id"),
    "login": Filter("u.login COLLATE NOCASE IN (SELECT value FROM json_each(?))", "texts"),
})
PROJECTS = Kind("projects", "project", "FROM projects p", "p", projects, filters={
    "id": by_ids("p.id"),
    "display_name": Filter("p.display_name IN (SELECT value FROM json_each(?))", "text"),
    "slug": Filter("p.slug COLLATE NOCASE IN (SELECT value FROM json_each(?))", "text"),
    "owner": Filter("p.owner_id IN (SELECT id FROM users WHERE login COLLATE NOCASE IN "
                    "(SELECT value FROM json_each(?)))", "texts"),
    "live": Filter("p.live = ?", "flag"),
    "private": Filter("p.private = ?", "flag"),
    "launch_approved": Filter("p.launch_approved = ?", "flag"),
    "beta_approved": Filter("p.beta_approved = ?", "flag"),
    "state": Filter("p.state IN (SELECT value FROM json_each(?))", "texts"),
})
WORKFLOWS = Kind("workflows", "workflow", "FROM workflows w JOIN projects p ON p.id = w.project_id", "w", workflows,
                 max_page_size=25, filters={
    "id": by_ids("w.id"),
    "project_id": by_ids("w.project_id"),
    "subject_set_id": Filter("w.id IN (SELECT workflow_id FROM workflow_subject_sets "
                             "WHERE subject_set_id IN (SELECT value FROM json_each(?)))"),
    "display_name": Filter("w.display_name IN (SELECT value FROM json_each(?))", "text"),
    "active": Filter("w.active = ?", "flag"),
})
SUBJECT_SETS = Kind("subject_sets", "subject_set", "FROM subject_sets ss JOIN projects p ON p.id = ss.project_id",
                    "ss", subject_sets, filters={
    "id": by_ids("ss.id"),
    "project_id": by_ids("ss.project_id"),
    "workflow_id": Filter("ss.id IN (SELECT subject_set_id FROM workflow_subject_sets "
                          "WHERE workflow_id IN (SELECT value FROM json_each(?)))"),
    "display_name": Filter("ss.display_name IN (SELECT value FROM json_each(?))", "text"),
})
SET_MEMBER_SUBJECTS = Kind(
    "set_member_subjects", "set_member_subject",
    "FROM set_member_subjects sms JOIN subject_sets ss ON ss.id = sms.subject_set_id "
    "JOIN projects p ON p.id = ss.project_id", "sms", set_member_subjects, filters={
        "id": by_ids("sms.id"),
        "subject_set_id": by_ids("sms.subject_set_id"),
        "subject_id": by_ids("sms.subject_id"),
    })
SUBJECTS = Kind("subjects", "subject", "FROM subjects s JOIN projects p ON p.id = s.project_id", "s", subjects,
                filters={
    "id": by_ids("s.id"),
    "project_id": by_ids("s.project_id"),
    "subject_set_id": Filter("s.id IN (SELECT subject_id FROM set_member_subjects "
                             "WHERE subject_set_id IN (SELECT value FROM json_each(?)))"),
})
SUBJECT_WORKFLOW_STATUSES = Kind(
    "subject_workflow_statuses", "subject_workflow_status",
    "FROM subject_workflow_statuses sws JOIN workflows w ON w.id = sws.workflow_id "
    "JOIN projects p ON p.id = w.project_id", "sws", subject_workflow_statuses, filters={
        "id": by_ids("sws.id"),
        "subject_id": by_ids("sws.subject_id"),
        "workflow_id": by_ids("sws.workflow_id"),
    })
#: ``ClassificationSerializer`` ``filterable_by``: the primary key, the belongs_to keys and ``subject_id``
CLASSIFICATION_FILTERS = {
    "id": by_ids("c.id"),
    "project_id": by_ids("c.project_id"),
    "workflow_id": by_ids("c.workflow_id"),
    "user_id": by_ids("c.user_id"),
    "subject_id": Filter("c.id IN (SELECT classification_id FROM classification_subjects "
                         "WHERE subject_id IN (SELECT value FROM json_each(?)))"),
}
CLASSIFICATIONS = Kind("classifications", "classification", "FROM classifications c", "c", classifications,
                       scope=own_classifications, filters=CLASSIFICATION_FILTERS)
PROJECT_CLASSIFICATIONS = Kind("classifications", "classification",
                               "FROM classifications c JOIN projects p ON p.id = c.project_id", "c", classifications,
                               scope=updatable_projects, filters=CLASSIFICATION_FILTERS)
PROJECT_ROLES = Kind("project_roles", "project_role",
                     "FROM project_roles pr JOIN projects p ON p.id = pr.project_id", "pr", project_roles, filters={
    "id": by_ids("pr.id"),
    "project_id": by_ids("pr.project_id"),
    "user_id": by_ids("pr.user_id"),
})
KINDS = (USERS, PROJECTS, WORKFLOWS, SUBJECT_SETS, SET_MEMBER_SUBJECTS, SUBJECTS, SUBJECT_WORKFLOW_STATUSES,
         CLASSIFICATIONS, PROJECT_ROLES)


def list_resources(ctx: Ctx, kind: Kind, path_ids: str | None = None) -> Response:
    """GET a page of ``kind`` (filtered by the query string, and by a comma id list in the path if any)."""
    query = kind.query(ctx)
    if path_ids is not None:
        ids = to_ids([i.strip() for i in path_ids.split(",") if i.strip()], f"{kind.singular} id")
        query.where(f"{kind.alias}.id IN (SELECT value FROM json_each(?))", id_list(ids))
    apply_filters(query, kind.filters)
    if kind is PROJECTS:
        for term in arg_values("search", split=False):
            query.where("p.display_name LIKE ?", f"%{term}%")
    page, size = page_bounds(kind.max_page_size)
    count = query.count(ctx.db)
    if path_ids is not None and count == 0:
        raise not_found(kind.singular, path_ids)
    rows = query.rows(ctx.db, size, (page - 1) * size)
    # showable_resource.rb: a show (ids in the path) answers the records' ETag; an index the body's hash
    etag = record_etag(kind.table, rows) if path_ids is not None else None
    return json_response(envelope(kind.key, kind.serialize(ctx, rows), page_meta(kind.key, count, page, size)),
                         etag=etag)



def list_project_classifications(ctx: Ctx) -> Response:
    """GET /classifications/project (``classifications_controller.rb#project``): every classification of the
    projects the caller may update, paged as ``NoCountSerializer`` pages (no totals) and, with ``last_id``,
    by id as ``ClassificationSerializer.add_last_id_paging_hrefs`` writes the hrefs."""
    last_id = request.args.get("last_id")
    if last_id is not None and not request.args.get("project_id"):
        raise ApiError(422, "Project ID required if last_id is included")
    query = PROJECT_CLASSIFICATIONS.query(ctx)
    apply_filters(query, PROJECT_CLASSIFICATIONS.filters)
    if last_id is not None:
        query.where("c.id > ?", to_id(last_id, "last_id"))
    page, size = page_bounds(PROJECT_CLASSIFICATIONS.max_page_size)
    rows = query.rows(ctx.db, size, (page - 1) * size)
    resources = classifications(ctx, rows)
    kept = [(k, ",".join(arg_values(k))) for k in request.args if k in CLASSIFICATION_FILTERS]
    meta = no_count_meta("/classifications/project", page, size, bool(resources), kept)
    if last_id is not None:
        # the serialized ids are strings, sorted as strings: across 99 -> 100 the "last" id is not the largest
        # (the real server's quirk: the next page then repeats some classifications, it never skips one)
        next_last = max(r["id"] for r in resources) if resources else None
        for key, value in (("next_href", next_last), ("previous_href", last_id)):
            if meta[key] is not None:
                meta[key] = with_last_id(meta[key], value)
    return json_response(envelope("classifications", resources, meta))


def list_gold_standard(ctx: Ctx) -> Response:
    """GET /classifications/gold_standard (``classifications_controller.rb#gold_standard``, anyone may ask): the
    ``GoldStandardAnnotation`` rows of workflows with ``public_gold_standard`` (admins: all), by id, filtered by
    ``workflow_id`` and ids. That table is a read-only snapshot of historical gold-standard classifications
    (``app/models/gold_standard_annotation.rb``, filled once by ``lib/tasks/migrate.rake``): a classification
    posted with ``gold_standard: true`` never joins it, so this route does not list experts' new answers."""
    query = Query("FROM gold_standard_annotations g JOIN workflows w ON w.id = g.workflow_id", "g")
    if ctx.viewer is None or not ctx.viewer["admin"]:
        query.where("json_extract(w.attrs, '$.public_gold_standard') = 1")
    for name, column in (("workflow_id", "g.workflow_id"), ("id", "g.classification_id")):
        values = arg_values(name) + (arg_values("ids") if name == "id" else [])
        if values:
            query.where(f"{column} IN (SELECT value FROM json_each(?))", id_list(to_ids(values, name)))
    page, size = page_bounds(PROJECT_CLASSIFICATIONS.max_page_size)
    rows = query.rows(ctx.db, size, (page - 1) * size)
    resources = [{"id": str(r["classification_id"]), "annotations": json.loads(r["annotations"]),
                  "metadata": json.loads(r["metadata"]), "created_at": r["created_at"], "updated_at": r["updated_at"],
                  "links": {"project": str(r["project_id"]), "user": str(r["user_id"]),
                            "workflow": str(r["workflow_id"]), "subjects": str(r["subject_id"])}} for r in rows]
    kept = [(k, ",".join(arg_values(k))) for k in request.args if k in ("workflow_id", "id", "ids")]
    meta = no_count_meta("/classifications/gold_standard", page, size, bool(resources), kept)
    return json_response(envelope("classifications", resources, meta))


def no_count_meta(path: str, page: int, size: int, any_rows: bool, kept: list[tuple[str, str]]) -> dict[str, Any]:
    """``app/serializers/concerns/no_count_serializer.rb`` with the hrefs of ``PanoptesRestpack#page_href``:
    ``page=`` unless 1, ``page_size=`` unless the default 20, then the filters (``kept``)."""

    def href(number: int | None) -> str | None:
        if number is None:
            return None
        params = ([("page", str(number))] if number != 1 else []) + (
            [("page_size", str(size))] if size != DEFAULT_PAGE_SIZE else []) + kept
        return f"{path}?{urlencode(params, safe=',')}" if params else path

    next_page = page + 1 if any_rows else None
    return {"page": page, "page_size": size, "count": 0, "include": [], "page_count": 0,
            "previous_page": page - 1, "next_page": next_page, "first_href": href(1),
            "previous_href": href(page - 1), "next_href": href(next_page), "last_href": href(0)}


def with_last_id(href: str, last_id: str) -> str:
    """``updated_last_id_href``: the query without ``page``, with ``last_id``, keys sorted (Rails ``to_query``)."""
    path, _, query = href.partition("?")
    params = {k: v for k, v in parse_qsl(query) if k != "page"}
    params["last_id"] = last_id
    return f"{path}?{urlencode(sorted(params.items()), safe=',')}"
