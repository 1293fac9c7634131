"""GET /subjects/queued: the subjects a classifier is offered next (``SubjectsController#queued``,
``lib/subjects/selector.rb``, ``lib/subjects/postgresql_selection.rb``, ``lib/subjects/fallback_selection.rb``).

The real controller skips the policy scope (anyone may ask, anonymously too). Normally it offers the
workflow's non-retired subjects the caller has not classified yet, in random order; when none is left it
falls back to any of the workflow's subjects (retired and seen ones included, flagged as such) with
``selection_state`` ``failover_fallback``, so a classifier must read ``retired``/``already_seen``. A
workflow's training sets are mixed in as zooniverse.org's selector does it (training.py).
"""

from __future__ import annotations

import json
import random
import sqlite3
from typing import Any

from flask import Response, request

from glitchrun.embedded_panoptes.counting import WORKFLOW_SUBJECTS
from glitchrun.embedded_panoptes.errors import ApiError
from glitchrun.embedded_panoptes.resources import no_count_meta
from glitchrun.embedded_panoptes.resources import subjects as serialize_subjects
from glitchrun.embedded_panoptes.store import id_list
from glitchrun.embedded_panoptes.training import (
    configuration_of,
    designator_queue,
    fallback_queue,
    training_chance,
    training_subjects,
)
from glitchrun.embedded_panoptes.web import Ctx, envelope, json_response, to_id

DEFAULT_QUEUE_SIZE = 10
FALLBACK_SELECTION_LIMIT = 100


def queued(ctx: Ctx) -> Response:
    raw = request.args.get("workflow_id")
    if not raw:
        raise ApiError(422, "workflow_id parameter missing")
    workflow_id = to_id(raw, "workflow_id")
    workflow = ctx.db.execute("SELECT * FROM workflows WHERE id = ?", (workflow_id,)).fetchone()
    if workflow is None:
        raise ApiError(404, f"Couldn't find Workflow with 'id'={workflow_id}")
    if ctx.db.execute("SELECT 1 FROM workflow_subject_sets WHERE workflow_id = ?", (workflow_id,)).fetchone() is None:
        raise ApiError(404, "no subject set is associated with this workflow")
    members = [r[0] for r in ctx.db.execute(f"SELECT DISTINCT subject_id FROM ({WORKFLOW_SUBJECTS})", (workflow_id,))]
    if not members:
        raise ApiError(404, "No data available for selection")
    configured = json.loads(workflow["attrs"]).get("configuration", {}).get("subject_queue_page_size")
    size = to_id(request.args.get("page_size") or configured or DEFAULT_QUEUE_SIZE, "page_size")
    retired = {r[0] for r in ctx.db.execute(
        "SELECT subject_id FROM subject_workflow_statuses WHERE workflow_id = ? AND retired_at IS NOT NULL",
        (workflow_id,))}
    seen = _seen(ctx.db, ctx.viewer["id"], workflow_id) if ctx.viewer is not None else set()
    state = "normal"
    training = training_subjects(ctx.db, workflow_id)
    open_ = [s for s in members if s not in retired and s not in seen]
    if training and ctx.viewer is not None:  # Designator: training directives for logged-in volunteers only
        chance = training_chance(configuration_of(workflow), len(seen))
        chosen = designator_queue([s for s in open_ if s in training], [s for s in open_ if s not in training],
                                  size, chance)
    else:
        chosen = random.sample(open_, min(size, len(open_)))
    if not chosen:
        state = "failover_fallback"
        chosen = fallback_queue(members, training, FALLBACK_SELECTION_LIMIT)
    order = {sid: i for i, sid in enumerate(chosen)}
    rows = sorted(ctx.db.execute("SELECT * FROM subjects WHERE id IN (SELECT value FROM json_each(?))",
                                 (id_list(chosen),)).fetchall(), key=lambda r: order[r["id"]])
    finished = workflow["finished_at"] is not None
    resources = []
    for subject in serialize_subjects(ctx, rows):
        sid = int(subject["id"])
        resources.append({**subject, "retired": sid in retired, "already_seen": sid in seen,
                          "finished_workflow": finished, "favorite": False, "selection_state": state,
                          "user_has_finished_workflow": _user_finished(ctx, state, finished, chosen, retired, seen)})
    meta = no_count_meta("/subjects", 1, size, bool(resources), [("workflow_id", str(workflow_id))])
    return json_response(envelope("subjects", resources, meta))


def _seen(db: sqlite3.Connection, user_id: int, workflow_id: int) -> set[int]:
    return {r[0] for r in db.execute(
        "SELECT DISTINCT cs.subject_id FROM classification_subjects cs JOIN classifications c "
        "ON c.id = cs.classification_id WHERE c.user_id = ? AND c.workflow_id = ?", (user_id, workflow_id))}


def _user_finished(ctx: Ctx, state: str, finished: bool, chosen: list[int], retired: set[int],
                   seen: set[int]) -> Any:
    """``Subjects::SelectorContext``: false for anonymous callers, true in the failover state."""
    if ctx.viewer is None:
        return False
    if finished or state == "failover_fallback":
        return True
    return all(s in seen or s in retired for s in chosen)
