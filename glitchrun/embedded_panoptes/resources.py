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

from flask import Response

from glitchrun.embedded_panoptes import policies
from glitchrun.embedded_panoptes.counting import project_counts, workflow_counts
from glitchrun.embedded_panoptes.errors import ApiError, not_found
from glitchrun.embedded_panoptes.store import id_list
from glitchrun.embedded_panoptes.web import (
    DEFAULT_PAGE_SIZE,
    Ctx,
    Filter,
    Listing,
    Query,
    apply_filters,
    envelope,
    json_response,
    last_arg,
    record_etag,
    ruby_split,
    ruby_to_i,
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


def media_links(path: str, names: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``MediaLinksSerializer#add_links``: ``{"href": "/<resource>/<id>/<name>", "type": "<name>s"}``."""
    return {name: media_link(f"{path}/{name}", f"{name}s") for name in names}


#: ``app/serializers/project_serializer.rb`` ``attributes`` that live in the stored free-form ``attrs``, with
#: the value a project has when it was never given one
PROJECT_ATTRIBUTES: dict[str, Any] = {
    **PROJECT_DEFAULTS, "redirect": "", "beta_requested": False, "launch_requested": False, "mobile_friendly": False,
    "featured": False, "experimental_tools": [], "run_subject_set_completion_events": False,
}


def projects(ctx: Ctx, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    """``ProjectSerializer``: its attributes (and no others), ``links.workflows`` the project's workflows that are
    not deactivated, ``active_workflows`` those of them with ``active``, the owner as an object, and the
    media links it declares; counts are the sums over the active workflows (counting.py)."""
    db = ctx.db
    out = []
    for row in rows:
        pid = row["id"]
        owner = db.execute("SELECT * FROM users WHERE id = ?", (row["owner_id"],)).fetchone()
        workflows = db.execute("SELECT id, active FROM workflows WHERE project_id = ? AND deactivated_at IS NULL "
                               "ORDER BY id", (pid,)).fetchall()
        set_ids = [str(r[0]) for r in db.execute(
            "SELECT id FROM subject_sets WHERE project_id = ? ORDER BY id", (pid,))]
        role_ids = [str(r[0]) for r in db.execute(
            "SELECT id FROM project_roles WHERE project_id = ? AND roles != '[]' ORDER BY id", (pid,))]
        counts = project_counts(db, pid)
        classifiers = db.execute(
            "SELECT COUNT(DISTINCT user_id) FROM classifications WHERE project_id = ?", (pid,)
        ).fetchone()[0]
        stored = json.loads(row["attrs"])
        attrs = {key: stored.get(key, default) for key, default in PROJECT_ATTRIBUTES.items()}
        out.append({
            "id": str(pid), "display_name": row["display_name"], "classifications_count": counts.classifications,
            "subjects_count": counts.subjects, "created_at": row["created_at"], "updated_at": row["updated_at"],
            "available_languages": [attrs["primary_language"]], "title": row["display_name"], **attrs,
            "private": bool(row["private"]), "retired_subjects_count": counts.retired, "live": bool(row["live"]),
            "migrated": False, "classifiers_count": classifiers, "slug": row["slug"],
            "beta_approved": bool(row["beta_approved"]), "launch_approved": bool(row["launch_approved"]),
            "launch_date": None, "href": f"/projects/{pid}",
            "completeness": counts.retired / counts.subjects if counts.subjects else 0.0, "activity": 0,
            # Project#state: paused or finished when set, else live or development
            "state": row["state"] if row["state"] in ("paused", "finished") else
            "live" if row["live"] else "development",
            "links": {
                "workflows": [str(w["id"]) for w in workflows],
                "active_workflows": [str(w["id"]) for w in workflows if w["active"]],
                "subject_sets": set_ids, "project_roles": role_ids, "pages": [], "organizations": [],
                "owner": owner_link(owner),
                **media_links(f"/projects/{pid}", ("avatar", "background", "attached_images",
                                                   "classifications_export", "subjects_export")),
            },
        })
    return out


#: ``app/serializers/workflow_serializer.rb`` ``attributes`` that live in the stored free-form ``attrs``
WORKFLOW_ATTRIBUTES = ("steps", "primary_language", "prioritized", "grouped", "pairwise", "mobile_friendly",
                       "configuration", "public_gold_standard")


def workflows(ctx: Ctx, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    """``WorkflowSerializer``: its attributes and links, and no others."""
    sets = _grouped(ctx.db, "SELECT workflow_id, subject_set_id FROM workflow_subject_sets "
                            "WHERE workflow_id IN (SELECT value FROM json_each(?)) ORDER BY subject_set_id",
                    [r["id"] for r in rows])
    out = []
    for row in rows:
        wid = row["id"]
        counts = workflow_counts(ctx.db, wid)
        stored = {"steps": [], **WORKFLOW_DEFAULTS, **json.loads(row["attrs"])}
        attrs = {key: stored[key] for key in WORKFLOW_ATTRIBUTES}
        out.append({
            "id": str(wid), "display_name": row["display_name"], "tasks": json.loads(row["tasks"]),
            "classifications_count": counts.classifications, "subjects_count": counts.subjects,
            "created_at": row["created_at"], "updated_at": row["updated_at"], "finished_at": row["finished_at"],
            "first_task": row["first_task"], **attrs, "version": f"{row['major']}.{row['minor']}",
            "content_language": attrs["primary_language"], "retirement": json.loads(row["retirement"]),
            "retired_set_member_subjects_count": counts.retired, "href": f"/workflows/{wid}",
            "active": bool(row["active"]),
            "completeness": counts.retired / counts.subjects if counts.subjects else 0.0,
            "links": {
                "project": str(row["project_id"]), "subject_sets": sets.get(wid, []), "tutorial_subject": None,
                "published_version": None,
                **media_links(f"/workflows/{wid}", ("attached_images", "classifications_export")),
            },
        })
    return out


def subject_sets(ctx: Ctx, rows: list[sqlite3.Row]) -> list[dict[str, Any]]:
    """``SubjectSetSerializer``; ``completeness`` is ``SubjectSetCompletenessWorker``'s per-workflow share of the
    set's subjects that are retired, keyed by workflow id."""
    ids = [r["id"] for r in rows]
    flows = _grouped(ctx.db, "SELECT subject_set_id, workflow_id FROM workflow_subject_sets "
                             "WHERE subject_set_id IN (SELECT value FROM json_each(?)) ORDER BY workflow_id", ids)
    counts = dict(ctx.db.execute(
        "SELECT subject_set_id, COUNT(*) FROM set_member_subjects "
        "WHERE subject_set_id IN (SELECT value FROM json_each(?)) GROUP BY subject_set_id", (id_list(ids),)
    ).fetchall())
    retired: dict[tuple[int, int], int] = {(s, w): n for s, w, n in ctx.db.execute(
        "SELECT sms.subject_set_id, sws.workflow_id, COUNT(*) FROM set_member_subjects sms "
        "JOIN subject_workflow_statuses sws ON sws.subject_id = sms.subject_id AND sws.retired_at IS NOT NULL "
        "WHERE sms.subject_set_id IN (SELECT value FROM json_each(?)) GROUP BY 1, 2", (id_list(ids),))}
    out = []
    for r in rows:
        size = counts.get(r["id"], 0)
        completeness = {w: retired.get((r["id"], int(w)), 0) / size for w in flows.get(r["id"], [])} if size else {}
        out.append({"id": str(r["id"]), "display_name": r["display_name"], "set_member_subjects_count": size,
                    "metadata": json.loads(r["metadata"]), "created_at": r["created_at"],
                    "updated_at": r["updated_at"], "href": f"/subject_sets/{r['id']}", "completeness": completeness,
                    "links": {"project": str(r["project_id"]), "workflows": flows.get(r["id"], [])}})
    return out


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
             "links": {"project": str(r["project_id"]), "collections": [], "subject_sets": sets.get(r["id"], []),
                       **media_links(f"/subjects/{r['id']}", ("attached_images",))}}
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
class SideLoad:
    """One ``include`` a serializer allows (``can_include``): the ``linked`` key it fills and, where the emulator
    holds that association, the kind listed there and the SQL selecting its ids from the page's ids (a JSON
    array). restpack side-loads a has-many association as a first page of 20, unscoped by the policies."""

    linked: str
    kind: str | None = None
    sql: str | None = None
    has_many: bool = False


@dataclass(frozen=True)
class Kind:
    """One resource type: ``key`` (plural, the envelope key), the SQL source aliased ``alias`` (joined to
    its project as ``p`` where visibility applies), its filters, sorts and includes (the serializer's
    ``filterable_by``, ``can_sort_by``, ``can_include``) and its serialiser. ``activatable`` kinds
    (``Activatable`` models) hide deactivated rows from every route that lists, shows or changes them
    (``lib/json_api_controller/pundit_policy.rb`` ``policy_scope``: ``scope.active``)."""

    key: str
    singular: str
    source: str
    alias: str
    serialize: Serializer
    filters: Mapping[str, Filter] = field(default_factory=dict)
    scope: Callable[[Ctx, Query], None] = visible_projects
    max_page_size: int = 100
    sorts: Mapping[str, str] = field(default_factory=dict)
    default_sort: str = ""
    includes: Mapping[str, SideLoad] = field(default_factory=dict)
    activatable: bool = False
    model: str = ""

    def query(self, ctx: Ctx) -> Query:
        query = Query(self.source, self.alias)
        self.scope(ctx, query)
        if self.activatable:
            query.where(f"{self.alias}.deactivated_at IS NULL")
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

    def listing(self) -> Listing:
        return Listing.read(self.max_page_size, self.sorts, self.default_sort)

    def side_load(self, ctx: Ctx, rows: list[sqlite3.Row], listing: Listing) -> dict[str, list[dict[str, Any]]]:
        """The ``linked`` resources of the page's ``include``: a name the serializer does not allow is restpack's
        ``InvalidInclude`` (422), checked as restpack checks it, only when the page has rows."""
        linked: dict[str, list[dict[str, Any]]] = {}
        if not rows:
            return linked
        for name in listing.includes:
            spec = self.includes.get(name)
            if spec is None:
                raise ApiError(422, f":{name} is not a valid include for {self.model}")
            found: list[dict[str, Any]] = []
            if spec.kind is not None and spec.sql is not None:
                target = KIND_BY_KEY[spec.kind]
                ids = [r[0] for r in ctx.db.execute(spec.sql, (id_list([r["id"] for r in rows]),))]
                related = ctx.db.execute(
                    f"SELECT * FROM {target.table} WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id"
                    + (f" LIMIT {DEFAULT_PAGE_SIZE}" if spec.has_many else ""), (id_list(ids),)).fetchall()
                found = target.serialize(ctx, related)
            linked.setdefault(spec.linked, [])
            linked[spec.linked] += [r for r in found if r not in linked[spec.linked]]
        return linked


def by_ids(sql: str) -> Filter:
    return Filter(sql + " IN (SELECT value FROM json_each(?))")


def flag(sql: str) -> Filter:
    return Filter(sql + " IN (SELECT value FROM json_each(?))", "flag")


def text_in(sql: str, href: str | None = "") -> Filter:
    return Filter(sql + " IN (SELECT value FROM json_each(?))", "text", href)


def _ids_from(table: str, column: str, parent: str) -> str:
    """SQL: ``column`` of the ``table`` rows whose ``parent`` is one of the page's ids (a has-many include)."""
    return f"SELECT DISTINCT {column} FROM {table} WHERE {parent} IN (SELECT value FROM json_each(?))"


def _parent(table: str, column: str) -> str:
    """SQL: what the page's rows (of ``table``) point at through ``column`` (a belongs-to include)."""
    return _ids_from(table, column, "id")


def not_held(linked: str) -> SideLoad:
    """An include the serializer allows but the emulator has no rows for: an empty list under its key."""
    return SideLoad(linked)

USERS = Kind("users", "user", "FROM users u", "u", users, scope=everyone, model="User", filters={
    "id": by_ids("u.id"),
    "login": Filter("u.login COLLATE NOCASE IN (SELECT value FROM json_each(?))", "text"),
}, includes={name: not_held(name) for name in ("classifications", "project_preferences", "collection_preferences",
                                              "projects", "collections", "avatar", "profile_header")})
PROJECTS = Kind("projects", "project", "FROM projects p", "p", projects, activatable=True, model="Project", filters={
    "id": by_ids("p.id"),
    "display_name": text_in("p.display_name"),
    "slug": Filter("p.slug IN (SELECT lower(value) FROM json_each(?))", "text"),  # slug.rb: the param downcased
    # filter_by_owner.rb: applied by the controller, which takes it out of the params (not in the hrefs)
    "owner": Filter("p.owner_id IN (SELECT id FROM users WHERE lower(login) IN (SELECT lower(value) FROM "
                    "json_each(?)))", "text", None),
    "live": flag("p.live"),
    "private": flag("p.private"),
    "launch_approved": flag("p.launch_approved"),
    "beta_approved": flag("p.beta_approved"),
    **{name: flag(f"COALESCE(json_extract(p.attrs, '$.{name}'), 0)")
       for name in ("beta_requested", "launch_requested", "mobile_friendly", "featured")},
    "state": text_in("p.state"),
}, sorts={  # attributes the emulator does not keep (launch_date, activity, completeness) sort as equal
    "launch_date": "NULL", "activity": "0", "completeness": "0",
    "classifiers_count": "(SELECT COUNT(DISTINCT user_id) FROM classifications WHERE project_id = p.id)",
    "updated_at": "p.updated_at", "display_name": "p.display_name",
}, includes={
    "workflows": SideLoad("workflows", "workflows",
                          _ids_from("workflows", "id", "deactivated_at IS NULL AND project_id"), True),
    "active_workflows": SideLoad("workflows", "workflows",
                                 _ids_from("workflows", "id", "deactivated_at IS NULL AND active = 1 AND project_id"),
                                 True),
    "subject_sets": SideLoad("subject_sets", "subject_sets", _ids_from("subject_sets", "id", "project_id"), True),
    "owners": not_held("owners"), "project_roles": SideLoad(
        "project_roles", "project_roles", _ids_from("project_roles", "id", "project_id"), True),
    **{name: not_held(name) for name in ("pages", "organizations", "avatar", "background", "attached_images")},
})
WORKFLOWS = Kind("workflows", "workflow", "FROM workflows w JOIN projects p ON p.id = w.project_id", "w", workflows,
                 max_page_size=25, activatable=True, model="Workflow", filters={
    "id": by_ids("w.id"),
    "project_id": by_ids("w.project_id"),
    "subject_set_id": Filter("w.id IN (SELECT workflow_id FROM workflow_subject_sets "
                             "WHERE subject_set_id IN (SELECT value FROM json_each(?)))"),
    "active": flag("w.active"),
    "mobile_friendly": flag("COALESCE(json_extract(w.attrs, '$.mobile_friendly'), 0)"),
}, sorts={"completeness": "0", "id": "w.id"}, includes={
    "project": SideLoad("projects", "projects", _parent("workflows", "project_id")),
    "subject_sets": SideLoad("subject_sets", "subject_sets",
                             _ids_from("workflow_subject_sets", "subject_set_id", "workflow_id"), True),
    **{name: not_held(f"{name}s") for name in ("tutorial_subject", "published_version")},
    "attached_images": not_held("attached_images"),
})
SUBJECT_SETS = Kind("subject_sets", "subject_set", "FROM subject_sets ss JOIN projects p ON p.id = ss.project_id",
                    "ss", subject_sets, model="SubjectSet", filters={
    "id": by_ids("ss.id"),
    "project_id": by_ids("ss.project_id"),
    "workflow_id": Filter("ss.id IN (SELECT subject_set_id FROM workflow_subject_sets "
                          "WHERE workflow_id IN (SELECT value FROM json_each(?)))"),
    "subject_id": Filter("ss.id IN (SELECT subject_set_id FROM set_member_subjects "
                         "WHERE subject_id IN (SELECT value FROM json_each(?)))"),
    "display_name": text_in("ss.display_name"),
}, sorts={"display_name": "ss.display_name", "id": "ss.id"}, includes={
    "project": SideLoad("projects", "projects", _parent("subject_sets", "project_id")),
    "workflows": SideLoad("workflows", "workflows",
                          _ids_from("workflow_subject_sets", "workflow_id", "subject_set_id"), True),
})
SET_MEMBER_SUBJECTS = Kind(
    "set_member_subjects", "set_member_subject",
    "FROM set_member_subjects sms JOIN subject_sets ss ON ss.id = sms.subject_set_id "
    "JOIN projects p ON p.id = ss.project_id", "sms", set_member_subjects, model="SetMemberSubject", filters={
        "id": by_ids("sms.id"),
        "subject_set_id": by_ids("sms.subject_set_id"),
        "subject_id": by_ids("sms.subject_id"),
    }, includes={
        "subject_set": SideLoad("subject_sets", "subject_sets", _parent("set_member_subjects", "subject_set_id")),
        "subject": SideLoad("subjects", "subjects", _parent("set_member_subjects", "subject_id")),
    })
SUBJECTS = Kind("subjects", "subject", "FROM subjects s JOIN projects p ON p.id = s.project_id", "s", subjects,
                activatable=True, model="Subject", sorts={"id": "s.id"}, default_sort="id", filters={
    "id": by_ids("s.id"),
    "project_id": by_ids("s.project_id"),
    "subject_set_id": Filter("s.id IN (SELECT subject_id FROM set_member_subjects "
                             "WHERE subject_set_id IN (SELECT value FROM json_each(?)))"),
    "workflow_id": Filter("s.id IN (SELECT sms.subject_id FROM set_member_subjects sms JOIN workflow_subject_sets "
                          "wss ON wss.subject_set_id = sms.subject_set_id "
                          "WHERE wss.workflow_id IN (SELECT value FROM json_each(?)))"),
}, includes={
    "project": SideLoad("projects", "projects", _parent("subjects", "project_id")),
    "subject_sets": SideLoad("subject_sets", "subject_sets",
                             _ids_from("set_member_subjects", "subject_set_id", "subject_id"), True),
    "collections": not_held("collections"), "attached_images": not_held("attached_images"),
})
SUBJECT_WORKFLOW_STATUSES = Kind(
    "subject_workflow_statuses", "subject_workflow_status",
    "FROM subject_workflow_statuses sws JOIN workflows w ON w.id = sws.workflow_id "
    "JOIN projects p ON p.id = w.project_id", "sws", subject_workflow_statuses, model="SubjectWorkflowStatus",
    filters={
        "id": by_ids("sws.id"),
        "subject_id": by_ids("sws.subject_id"),
        "workflow_id": by_ids("sws.workflow_id"),
    }, includes={
        "subject": SideLoad("subjects", "subjects", _parent("subject_workflow_statuses", "subject_id")),
        "workflow": SideLoad("workflows", "workflows", _parent("subject_workflow_statuses", "workflow_id")),
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
CLASSIFICATION_INCLUDES = {
    "project": SideLoad("projects", "projects", _parent("classifications", "project_id")),
    "user": SideLoad("users", "users", _parent("classifications", "user_id")),
    "workflow": SideLoad("workflows", "workflows", _parent("classifications", "workflow_id")),
    "user_group": not_held("user_groups"),
}
CLASSIFICATIONS = Kind("classifications", "classification", "FROM classifications c", "c", classifications,
                       scope=own_classifications, filters=CLASSIFICATION_FILTERS, model="Classification",
                       sorts={"created_at": "c.created_at"}, includes=CLASSIFICATION_INCLUDES)
PROJECT_CLASSIFICATIONS = Kind("classifications", "classification",
                               "FROM classifications c JOIN projects p ON p.id = c.project_id", "c", classifications,
                               scope=updatable_projects, filters=CLASSIFICATION_FILTERS, model="Classification",
                               sorts={"created_at": "c.created_at"}, includes=CLASSIFICATION_INCLUDES)
PROJECT_ROLES = Kind("project_roles", "project_role",
                     "FROM project_roles pr JOIN projects p ON p.id = pr.project_id", "pr", project_roles,
                     model="AccessControlList", filters={
    "id": by_ids("pr.id"),
    # roles_controller.rb: project_id becomes the ACL's resource_id (so the hrefs say resource_id), and user_id
    # is applied by the controller and taken out of the params
    "project_id": Filter("pr.project_id IN (SELECT value FROM json_each(?))", "ids", "resource_id"),
    "user_id": Filter("pr.user_id IN (SELECT value FROM json_each(?))", "ids", None),
}, includes={"user_group": not_held("user_groups"), "resource": not_held("resources")})
KINDS = (USERS, PROJECTS, WORKFLOWS, SUBJECT_SETS, SET_MEMBER_SUBJECTS, SUBJECTS, SUBJECT_WORKFLOW_STATUSES,
         CLASSIFICATIONS, PROJECT_ROLES)
KIND_BY_KEY = {kind.key: kind for kind in KINDS}


def visible(ctx: Ctx, query: Query) -> None:
    """Only classifications committed by now (rules.py ``visibility_lag``) are seen by a read."""
    query.where("(c.visible_at IS NULL OR c.visible_at <= ?)", ctx.rules.clock())


def project_index_filters(ctx: Ctx, query: Query) -> None:
    """What ``projects_controller.rb``'s concerns filter by before the serializer, and take out of the params
    (so the paging hrefs do not repeat them): ``search`` (``index_search.rb``: each word a part of the display
    name) and ``current_user_roles`` (``filter_by_current_user_roles.rb``: projects where the logged-in caller
    holds one of these roles; ignored for anonymous callers)."""
    for term in (last_arg("search") or "").split():
        query.where("p.display_name LIKE ?", f"%{term}%")
    roles = ruby_split(last_arg("current_user_roles") or "")
    if roles and ctx.viewer is not None:
        query.where("p.id IN (SELECT r.project_id FROM project_roles r, json_each(r.roles) j WHERE r.user_id = ? "
                    "AND j.value IN (SELECT value FROM json_each(?)))", ctx.viewer["id"], json.dumps(roles))


def list_resources(ctx: Ctx, kind: Kind, path_ids: str | None = None) -> Response:
    """GET a page of ``kind`` (filtered by the query string), or the one with the id in the path (a show)."""
    query = kind.query(ctx)
    if path_ids is not None:
        query.where(f"{kind.alias}.id = ?", int(path_ids))
    if kind is CLASSIFICATIONS:
        visible(ctx, query)
    listing = kind.listing()
    listing.filters = apply_filters(query, kind.filters)
    if kind is PROJECTS:
        project_index_filters(ctx, query)
    count = query.count(ctx.db)
    if path_ids is not None and count == 0:
        raise not_found(kind.singular, path_ids)
    rows = query.rows(ctx.db, listing.limit, listing.offset, listing.order(kind.sorts))
    # showable_resource.rb: a show (ids in the path) answers the records' ETag; an index the body's hash
    etag = record_etag(kind.table, rows) if path_ids is not None else None
    linked = kind.side_load(ctx, rows, listing)
    body = envelope(kind.key, kind.serialize(ctx, rows), listing.meta(f"/{kind.key}", count))
    return json_response({**body, "linked": linked} if linked else body, etag=etag)


def list_project_classifications(ctx: Ctx) -> Response:
    """GET /classifications/project (``classifications_controller.rb#project``): every classification of the
    projects the caller may update, paged as ``NoCountSerializer`` pages (no totals) and, with ``last_id``,
    by id as ``ClassificationSerializer.add_last_id_paging_hrefs`` writes the hrefs. Only classifications
    already visible are listed (rules.py ``visibility_lag``)."""
    last_id = last_arg("last_id")
    if last_id is not None and not last_arg("project_id"):
        raise ApiError(422, "Project ID required if last_id is included")
    kind = PROJECT_CLASSIFICATIONS
    query = kind.query(ctx)
    visible(ctx, query)
    listing = kind.listing()
    listing.filters = apply_filters(query, kind.filters)
    if last_id is not None:
        query.where("c.id > ?", ruby_to_i(last_id))
    rows = query.rows(ctx.db, listing.limit, listing.offset, listing.order(kind.sorts))
    resources = classifications(ctx, rows)
    meta = listing.no_count_meta("/classifications/project", bool(resources))
    if last_id is not None:
        # the serialized ids are strings, sorted as strings: across 99 -> 100 the "last" id is not the largest
        # (the real server's quirk: the next page then repeats some classifications, it never skips one)
        next_last = max(r["id"] for r in resources) if resources else None
        for key, value in (("next_href", next_last), ("previous_href", last_id)):
            if meta[key] is not None:
                meta[key] = with_last_id(meta[key], value)
    linked = kind.side_load(ctx, rows, listing)
    body = envelope("classifications", resources, meta)
    return json_response({**body, "linked": linked} if linked else body)


#: ``classifications_controller.rb#gold_standard``: ``workflow_id`` and the ids (``resource_ids``) only
GOLD_STANDARD_FILTERS = {"workflow_id": by_ids("g.workflow_id"), "id": by_ids("g.classification_id")}


def list_gold_standard(ctx: Ctx) -> Response:
    """GET /classifications/gold_standard (``classifications_controller.rb#gold_standard``, anyone may ask): the
    ``GoldStandardAnnotation`` rows of workflows with ``public_gold_standard`` (admins: all), by id, filtered by
    ``workflow_id`` and ids. That table is a read-only snapshot of historical gold-standard classifications
    (``app/models/gold_standard_annotation.rb``, filled once by ``lib/tasks/migrate.rake``): a classification
    posted with ``gold_standard: true`` never joins it, so this route does not list experts' new answers."""
    query = Query("FROM gold_standard_annotations g JOIN workflows w ON w.id = g.workflow_id", "g")
    if ctx.viewer is None or not ctx.viewer["admin"]:
        query.where("json_extract(w.attrs, '$.public_gold_standard') = 1")
    listing = Listing.read(PROJECT_CLASSIFICATIONS.max_page_size)
    listing.filters = apply_filters(query, GOLD_STANDARD_FILTERS)
    rows = query.rows(ctx.db, listing.limit, listing.offset)
    resources = [{"id": str(r["classification_id"]), "annotations": json.loads(r["annotations"]),
                  "metadata": json.loads(r["metadata"]), "created_at": r["created_at"], "updated_at": r["updated_at"],
                  "links": {"project": str(r["project_id"]), "user": str(r["user_id"]),
                            "workflow": str(r["workflow_id"]), "subjects": str(r["subject_id"])}} for r in rows]
    return json_response(envelope("classifications", resources,
                                  listing.no_count_meta("/classifications/gold_standard", bool(resources))))


def with_last_id(href: str, last_id: str) -> str:
    """``updated_last_id_href``: the query without ``page``, with ``last_id``, keys sorted (Rails ``to_query``)."""
    path, _, query = href.partition("?")
    params = {k: v for k, v in parse_qsl(query) if k != "page"}
    params["last_id"] = last_id
    return f"{path}?{urlencode(sorted(params.items()), safe=',')}"
