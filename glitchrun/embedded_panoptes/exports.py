"""Data exports (panoptes-api.md §9): Zooniverse's CSV columns and formats, generated synchronously.

A POST the real rate limit lets through builds the CSV inside the request, stores it under
``media/exports/``, replaces the previous export of that type and answers with the medium already
``ready``, so ``get_export(generate=True)`` downloads at once instead of polling every 2 s; one beyond the
limit leaves the medium ``creating`` (rules.py). Cells never hold raw newlines: the client splits lines
before parsing CSV.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from flask import Response

from glitchrun.embedded_panoptes.counting import workflow_counts
from glitchrun.embedded_panoptes.errors import ApiError
from glitchrun.embedded_panoptes.media import EXPORTS, EXTENSIONS, Media
from glitchrun.embedded_panoptes.store import (
    csv_time,
    dumps,
    id_list,
    insert,
    now,
    update,
)
from glitchrun.embedded_panoptes.tasks import label_annotations, split_strings
from glitchrun.embedded_panoptes.web import Ctx, envelope, json_response

#: the export types of each exportable resource
EXPORT_TYPES = {"projects": ("classifications", "subjects", "workflows"), "workflows": ("classifications",),
                "subject_sets": ("classifications",)}
#: which classifications an export holds: the project's, the workflow's, or (``app/models/subject_set.rb``
#: ``#classifications``) those of the set's workflows that name one of the set's subjects
CLASSIFICATION_SCOPES = {
    "projects": "c.project_id = :id",
    "workflows": "c.workflow_id = :id",
    "subject_sets": "c.workflow_id IN (SELECT workflow_id FROM workflow_subject_sets WHERE subject_set_id = :id) "
                    "AND c.id IN (SELECT classification_id FROM classification_subjects WHERE subject_id IN "
                    "(SELECT subject_id FROM set_member_subjects WHERE subject_set_id = :id))",
}
#: ``app/models/medium.rb``: exports of projects and workflows must be CSV (EXPORT_MEDIUM_TYPE_REGEX does not
#: match ``subject_set_classifications_export``, so those take any of ALLOWED_CONTENT_TYPES)
ALLOWED_EXPORT_CONTENT_TYPES = ("text/csv",)
ALLOWED_CONTENT_TYPES = tuple(EXTENSIONS)
CLASSIFICATION_COLUMNS = [
    "classification_id", "user_name", "user_id", "user_ip", "workflow_id", "workflow_name", "workflow_version",
    "created_at", "gold_standard", "expert", "metadata", "annotations", "subject_data", "subject_ids",
]
SUBJECT_COLUMNS = [
    "subject_id", "project_id", "workflow_id", "subject_set_id", "metadata", "locations", "classifications_count",
    "retired_at", "retirement_reason", "created_at", "updated_at",
]
WORKFLOW_COLUMNS = [
    "workflow_id", "display_name", "version", "active", "classifications_count", "pairwise", "grouped",
    "prioritized", "primary_language", "first_task", "tutorial_subject_id", "retired_set_member_subjects_count",
    "tasks", "retirement", "aggregation", "strings", "minor_version",
]


def _bool(value: Any) -> str:
    """Ruby's CSV writes booleans as true/false and nil as an empty cell."""
    return "" if value is None else "true" if value else "false"


def _text(value: str) -> str:
    return value.replace("\r", " ").replace("\n", " ")


def _status_json(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "workflow_id": row["workflow_id"], "classifications_count": row["classifications_count"],
            "created_at": row["created_at"], "updated_at": row["updated_at"], "retired_at": row["retired_at"],
            "subject_id": row["subject_id"], "retirement_reason": row["retirement_reason"]}


def _retired(db: sqlite3.Connection, subject_ids: list[int]) -> dict[tuple[int, int], sqlite3.Row]:
    """Retired status rows of the subjects, by (workflow_id, subject_id)."""
    rows = db.execute("SELECT * FROM subject_workflow_statuses WHERE retired_at IS NOT NULL "
                      "AND subject_id IN (SELECT value FROM json_each(?))", (id_list(subject_ids),))
    return {(r["workflow_id"], r["subject_id"]): r for r in rows}


def classification_rows(ctx: Ctx, linked_type: str, linked_id: int) -> list[list[Any]]:
    """§9.2: one row per completed classification of the project, workflow or subject set, by id. Annotations
    of the task types the real ``annotation_for_csv.rb`` relabels get labels; others (survey) stay verbatim."""
    db = ctx.db
    rows = db.execute(
        "SELECT c.*, w.display_name AS workflow_name, w.tasks AS current_tasks, u.login AS login "
        "FROM classifications c JOIN workflows w ON w.id = c.workflow_id LEFT JOIN users u ON u.id = c.user_id "
        "WHERE c.completed = 1 AND (c.visible_at IS NULL OR c.visible_at <= :now) AND "
        f"{CLASSIFICATION_SCOPES[linked_type]} ORDER BY c.id", {"id": linked_id, "now": ctx.rules.clock()},
    ).fetchall()
    subjects_of: dict[int, list[int]] = defaultdict(list)
    for cid, sid in db.execute("SELECT classification_id, subject_id FROM classification_subjects "
                               "WHERE classification_id IN (SELECT value FROM json_each(?)) ORDER BY rowid",
                               (id_list([r["id"] for r in rows]),)):
        subjects_of[cid].append(sid)
    all_subjects = sorted({sid for sids in subjects_of.values() for sid in sids})
    metadata = {r["id"]: json.loads(r["metadata"]) for r in db.execute(
        "SELECT id, metadata FROM subjects WHERE id IN (SELECT value FROM json_each(?))", (id_list(all_subjects),))}
    retired = _retired(db, all_subjects)
    versions = {(r["workflow_id"], f"{r['major']}.{r['minor']}"): json.loads(r["tasks"]) for r in db.execute(
        "SELECT workflow_id, major, minor, tasks FROM workflow_versions WHERE workflow_id IN "
        "(SELECT DISTINCT workflow_id FROM classifications WHERE id IN (SELECT value FROM json_each(?)))",
        (id_list([r["id"] for r in rows]),))}
    salt = secrets.token_hex(8)  # one export: the same IP always gets the same opaque hash

    def ip_hash(ip: str) -> str:
        return hashlib.sha256(f"{salt}{ip}".encode()).hexdigest()[:20]

    out = []
    for r in rows:
        wid = r["workflow_id"]
        tasks = versions.get((wid, r["workflow_version"])) or json.loads(r["current_tasks"])
        subject_data = {
            str(sid): {"retired": _status_json(retired[wid, sid]) if (wid, sid) in retired else None,
                       **metadata.get(sid, {})}
            for sid in subjects_of[r["id"]]
        }
        user = _text(r["login"]) if r["login"] is not None else f"not-logged-in-{ip_hash(r['user_ip'])}"
        out.append([
            r["id"], user, r["user_id"] if r["user_id"] is not None else "", ip_hash(r["user_ip"]), wid,
            _text(r["workflow_name"]), r["workflow_version"], csv_time(r["created_at"]), _bool(r["gold_standard"]),
            r["expert_classifier"] or "",
            dumps(json.loads(r["metadata"])), dumps(label_annotations(json.loads(r["annotations"]), tasks)),
            dumps(subject_data), ";".join(map(str, subjects_of[r["id"]])),
        ])
    return out


def subject_rows(ctx: Ctx, linked_type: str, project_id: int) -> list[list[Any]]:
    """§9.3: per subject of the project's sets, per set, one row per linked workflow (or one without)."""
    db = ctx.db
    members = db.execute(
        "SELECT s.*, sms.subject_set_id FROM set_member_subjects sms "
        "JOIN subject_sets ss ON ss.id = sms.subject_set_id "
        "JOIN subjects s ON s.id = sms.subject_id WHERE ss.project_id = ? ORDER BY s.id, sms.subject_set_id",
        (project_id,),
    ).fetchall()
    workflows_of: dict[int, list[int]] = defaultdict(list)
    for set_id, wid in db.execute(
        "SELECT wss.subject_set_id, wss.workflow_id FROM workflow_subject_sets wss JOIN subject_sets ss "
        "ON ss.id = wss.subject_set_id WHERE ss.project_id = ? ORDER BY wss.workflow_id", (project_id,)):
        workflows_of[set_id].append(wid)
    subject_ids = sorted({m["id"] for m in members})
    statuses = {(r["workflow_id"], r["subject_id"]): r for r in db.execute(
        "SELECT * FROM subject_workflow_statuses WHERE subject_id IN (SELECT value FROM json_each(?))",
        (id_list(subject_ids),))}
    locations: dict[int, dict[str, str]] = defaultdict(dict)
    for loc in db.execute("SELECT * FROM locations WHERE subject_id IN (SELECT value FROM json_each(?)) "
                          "ORDER BY subject_id, position", (id_list(subject_ids),)):
        url = loc["external_url"] or Media.location_url(ctx.base_url, loc["media_name"])
        locations[loc["subject_id"]][str(loc["position"])] = url
    out = []
    for m in members:
        for wid in workflows_of.get(m["subject_set_id"]) or [None]:
            status = statuses.get((wid, m["id"]))
            out.append([
                m["id"], m["project_id"], "" if wid is None else wid, m["subject_set_id"],
                dumps(json.loads(m["metadata"])), dumps(locations.get(m["id"], {})),
                status["classifications_count"] if status else 0,
                csv_time(status["retired_at"]) if status else "",
                (status["retirement_reason"] or "") if status else "",
                csv_time(m["created_at"]), csv_time(m["updated_at"]),
            ])
    return out


def workflow_rows(ctx: Ctx, linked_type: str, project_id: int) -> list[list[Any]]:
    """§9.4: one row per workflow version; ``tasks`` with string keys and ``strings`` as on Zooniverse."""
    db = ctx.db
    rows = db.execute(
        "SELECT v.*, w.display_name, w.active, w.retirement, w.attrs "
        "FROM workflow_versions v JOIN workflows w ON w.id = v.workflow_id WHERE w.project_id = ? "
        "ORDER BY v.workflow_id, v.major, v.minor", (project_id,),
    ).fetchall()
    counts = {wid: workflow_counts(db, wid) for wid in {r["workflow_id"] for r in rows}}
    out = []
    for r in rows:
        attrs = json.loads(r["attrs"])
        structure, strings = split_strings(json.loads(r["tasks"]))
        out.append([
            r["workflow_id"], _text(r["display_name"]), r["major"], _bool(r["active"]),
            counts[r["workflow_id"]].classifications,
            _bool(attrs.get("pairwise", False)), _bool(attrs.get("grouped", False)),
            _bool(attrs.get("prioritized", False)), attrs.get("primary_language", "en"), r["first_task"], "",
            counts[r["workflow_id"]].retired, dumps(structure), r["retirement"], dumps(attrs.get("aggregation", {})),
            dumps(strings), r["minor"],
        ])
    return out


BUILDERS: dict[str, tuple[list[str], Callable[[Ctx, str, int], list[list[Any]]]]] = {
    "classifications": (CLASSIFICATION_COLUMNS, classification_rows),
    "subjects": (SUBJECT_COLUMNS, subject_rows),
    "workflows": (WORKFLOW_COLUMNS, workflow_rows),
}


def _csv(columns: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def media_type_of(linked_type: str, export_type: str) -> str:
    """e.g. ``project_classifications_export``."""
    return f"{linked_type[:-1]}_{export_type}_export"


def _find(ctx: Ctx, linked_type: str, linked_id: int, media_type: str) -> sqlite3.Row | None:
    return ctx.db.execute("SELECT * FROM media WHERE linked_type = ? AND linked_id = ? AND media_type = ?",
                          (linked_type, linked_id, media_type)).fetchone()


def generate(ctx: Ctx, linked_type: str, linked_id: int, export_type: str, recipients: list[int]) -> Response:
    """POST …/<type>_export (``create_or_update_medium.rb``, ``rate_limit_dump_worker.rb``): the medium goes
    ``creating`` and the answer is 201 either way; the dump runs (here: at once, then ``ready``, replacing
    the previous file) only if the rate limit lets it, else the medium stays ``creating`` and the previous
    file is still served. Admins are exempt from the limit, as on the real server."""
    media_type = media_type_of(linked_type, export_type)
    stamp = now()
    previous = _find(ctx, linked_type, linked_id, media_type)
    values = {"state": "creating", "recipients": dumps(recipients), "updated_at": stamp}
    if previous is None:
        insert(ctx.db, "media", {"linked_type": linked_type, "linked_id": linked_id, "media_type": media_type,
                                 "file_name": "", "created_at": stamp, **values})
    else:
        update(ctx.db, "media", previous["id"], values)
    medium = _find(ctx, linked_type, linked_id, media_type)
    if ctx.require_viewer()["admin"] or _dump_allowed(ctx, medium["id"]):
        columns, build = BUILDERS[export_type]
        name = Media.new_name("csv")
        ctx.media.write(EXPORTS, name, _csv(columns, build(ctx, linked_type, linked_id)))
        update(ctx.db, "media", medium["id"], {"file_name": name, "state": "ready"})
        if medium["file_name"]:
            ctx.media.remove(EXPORTS, [medium["file_name"]])
        medium = _find(ctx, linked_type, linked_id, media_type)
    resource = _resource(ctx, medium)
    return json_response(envelope("media", [resource]), 201, {"Location": f"{ctx.base_url}/api{resource['href']}"})


def _dump_allowed(ctx: Ctx, media_id: int) -> bool:
    """The congestion rule (key: resource, type and medium): fewer than ``export_max_in_interval`` dumps in
    the last ``export_interval`` seconds and none in the last ``export_min_delay``; a rejected request is
    not tracked (congestion's ``add_request unless rejected?``)."""
    rules = ctx.rules
    moment = rules.clock()
    recent = [r[0] for r in ctx.db.execute("SELECT at FROM dump_requests WHERE media_id = ? AND at > ?",
                                           (media_id, moment - rules.export_interval))]
    last = ctx.db.execute("SELECT MAX(at) FROM dump_requests WHERE media_id = ?", (media_id,)).fetchone()[0]
    if len(recent) >= rules.export_max_in_interval or (last is not None and moment - last < rules.export_min_delay):
        return False
    insert(ctx.db, "dump_requests", {"media_id": media_id, "at": moment})
    return True


def export_request(linked_type: str, body: dict[str, Any], viewer_id: int) -> list[int]:
    """The recipients of an export request (``create_or_update_medium.rb``'s ActiveInteraction filter:
    wrong types are 422, unknown keys dropped), after ``medium.rb``'s content type check (400)."""
    media = body.get("media", {})
    if not isinstance(media, dict):
        raise ApiError(422, "Media has an invalid nested value")
    content_type = media.get("content_type", "text/csv")
    metadata = media.get("metadata", {})
    recipients = metadata.get("recipients", [viewer_id]) if isinstance(metadata, dict) else None
    if not isinstance(content_type, str) or not isinstance(recipients, list) or not all(
            isinstance(r, int) and not isinstance(r, bool) for r in recipients):
        raise ApiError(422, "Media has an invalid nested value")
    if content_type not in ALLOWED_CONTENT_TYPES:
        raise ApiError(400, "Validation failed: Content type Invalid file type. Content-Type must be one of the "
                            f"following: {', '.join(ALLOWED_CONTENT_TYPES)}")
    if linked_type != "subject_sets" and content_type not in ALLOWED_EXPORT_CONTENT_TYPES:
        raise ApiError(400, "Validation failed: Content type Content-Type for exports must be one of "
                            f"{', '.join(ALLOWED_EXPORT_CONTENT_TYPES)}")
    return recipients


def describe(ctx: Ctx, linked_type: str, linked_id: int, export_type: str) -> Response:
    """GET …/<type>_export: the medium, or the real server's 404 when none was ever made."""
    row = _find(ctx, linked_type, linked_id, media_type_of(linked_type, export_type))
    if row is None:
        raise ApiError(404, f"No {export_type}_export exists for {linked_type[:-1]} #{linked_id}")
    return json_response(envelope("media", [_resource(ctx, row)]))


def _resource(ctx: Ctx, row: sqlite3.Row) -> dict[str, Any]:
    linked = f"/{row['linked_type']}/{row['linked_id']}"
    export = row["media_type"].removeprefix(f"{row['linked_type'][:-1]}_")
    return {
        "id": str(row["id"]), "href": f"{linked}/{export}",
        "src": Media.export_url(ctx.base_url, row["media_type"], row["linked_id"], row["file_name"])
        if row["file_name"] else None,
        "content_type": "text/csv", "media_type": row["media_type"], "external_link": False,
        "metadata": {"recipients": json.loads(row["recipients"]), "state": row["state"]},
        "created_at": row["created_at"], "updated_at": row["updated_at"],
        "links": {"linked": {"href": linked, "id": str(row["linked_id"]), "type": row["linked_type"]}},
    }
