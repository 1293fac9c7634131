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

from flask import Response

from glitchrun.embedded_panoptes.counting import WORKFLOW_SUBJECTS
from glitchrun.embedded_panoptes.errors import ApiError
from glitchrun.embedded_panoptes.resources import subjects as serialize_subjects
from glitchrun.embedded_panoptes.store import id_list
from glitchrun.embedded_panoptes.training import (
    configuration_of,
    designator_queue,
    fallback_queue,
    training_chance,
    training_subjects,
)
from glitchrun.embedded_panoptes.web import Ctx, Listing, envelope, json_response, last_arg, ruby_to_i, to_id

DEFAULT_QUEUE_SIZE = 10
FALLBACK_SELECTION_LIMIT = 100


def queued(ctx: Ctx) -> Response:
    """``SubjectsController#queued`` with ``Subjects::Selector``: a grouped workflow needs ``subject_set_id`` (422)
    and selects from that set only; a finished workflow goes straight to the fallback; deactivated subjects
    are selected but left out of the answer (``Subject.active.where(id: selected)``)."""
    raw = last_arg("workflow_id")
    if not raw:
        raise ApiError(422, "workflow_id parameter missing")
    workflow_id = to_id(raw, "workflow_id")
    workflow = ctx.db.execute("SELECT * FROM workflows WHERE id = ?", (workflow_id,)).fetchone()
    if workflow is None:
        raise ApiError(404, f"Couldn't find Workflow with 'id'={workflow_id}")
    attrs = json.loads(workflow["attrs"])
    set_id = last_arg("subject_set_id")
    if attrs.get("grouped") and set_id is None:
        raise ApiError(422, "subject_set_id parameter missing for grouped workflow")
    if ctx.db.execute("SELECT 1 FROM workflow_subject_sets WHERE workflow_id = ?", (workflow_id,)).fetchone() is None:
        raise ApiError(404, "no subject set is associated with this workflow")
    if ctx.db.execute(f"SELECT 1 FROM ({WORKFLOW_SUBJECTS}) LIMIT 1", (workflow_id,)).fetchone() is None:
        raise ApiError(404, "No data available for selection")
    members_sql, params = f"SELECT DISTINCT subject_id FROM ({WORKFLOW_SUBJECTS})", [workflow_id]
    if attrs.get("grouped"):  # postgresql_selection.rb, fallback_selection.rb: only the asked-for set
        members_sql = ("SELECT DISTINCT subject_id FROM set_member_subjects WHERE subject_set_id = ? AND "
                       f"subject_id IN ({WORKFLOW_SUBJECTS})")
        params = [ruby_to_i(set_id), workflow_id]
    members = [r[0] for r in ctx.db.execute(members_sql, params)]
    configured = attrs.get("configuration", {}).get("subject_queue_page_size")
    size = ruby_to_i(str(last_arg("page_size") or configured or DEFAULT_QUEUE_SIZE))
    retired = {r[0] for r in ctx.db.execute(
        "SELECT subject_id FROM subject_workflow_statuses WHERE workflow_id = ? AND retired_at IS NOT NULL",
        (workflow_id,))}
    seen = _seen(ctx.db, ctx.viewer["id"], workflow_id) if ctx.viewer is not None else set()
    finished = workflow["finished_at"] is not None
    state = "normal"
    training = training_subjects(ctx.db, workflow_id)
    open_ = [s for s in members if s not in retired and s not in seen]
    if finished:  # Selector#workflow_has_data?: a finished workflow goes straight to the fallback
        open_ = []
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
    rows = sorted(ctx.db.execute("SELECT * FROM subjects WHERE deactivated_at IS NULL AND id IN "
                                 "(SELECT value FROM json_each(?))", (id_list(chosen),)).fetchall(),
                  key=lambda r: order[r["id"]])
    resources = []
    for subject in serialize_subjects(ctx, rows):
        sid = int(subject["id"])
        resources.append({**subject, "retired": sid in retired, "already_seen": sid in seen,
                          "finished_workflow": finished, "favorite": False, "selection_state": state,
                          "user_has_finished_workflow": _user_finished(ctx, state, finished, chosen, retired, seen)})
    listing = Listing(max(1, ruby_to_i(last_arg("page"))) if last_arg("page") else 1, min(size, 100), size)
    return json_response(envelope("subjects", resources, listing.no_count_meta("/subjects", bool(resources))))


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
