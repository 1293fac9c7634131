"""Counting and retirement (panoptes-api.md §4, §7, §8) as the real server's workers do them.

On the real server a classification is counted, and a subject retired, by Sidekiq workers after the
request (``lib/classification_lifecycle.rb`` -> ``app/workers/classification_count_worker.rb`` ->
``retirement_worker.rb``; ``POST .../retired_subjects`` -> ``retire_subject_worker.rb``). Here they are
jobs (``JOBS``) that run inside the request on a quiet server, or later in the background worker
(worker.py) when ``rules.worker_delay`` or ``rules.visibility_lag`` make it a busy one.

The totals are the real counters' sums (``app/counters/workflow_counter.rb``, ``project_counter.rb``,
``app/models/project.rb``): a workflow's subjects are the memberships of its subject sets (a subject in
two of its sets counts twice), its retired subjects and classifications are summed over those
memberships, and a project's counts are the sums over its active workflows. They are computed from the
tables when asked for, so they never drift; only ``finished_at`` (a moment, not a total) is stored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from glitchrun.embedded_panoptes.store import id_list
from glitchrun.embedded_panoptes.training import TRAINING_SETS

#: the subject sets whose subjects a workflow counts (``WorkflowCounter``: its linked sets that are not training
#: sets, training.py; params: workflow id, workflow id)
WORKFLOW_SETS = ("SELECT subject_set_id FROM workflow_subject_sets WHERE workflow_id = ? "
                 f"AND subject_set_id NOT IN ({TRAINING_SETS})")
#: the subjects a workflow can show: members of the subject sets linked to it
WORKFLOW_SUBJECTS = (
    "SELECT sms.subject_id FROM set_member_subjects sms "
    "JOIN workflow_subject_sets wss ON wss.subject_set_id = sms.subject_set_id WHERE wss.workflow_id = ?"
)
RETIREMENT_REASONS = frozenset({"classification_count", "flagged", "nothing_here", "consensus", "other", "human"})


class Counts(NamedTuple):
    subjects: int
    retired: int
    classifications: int


def workflow_counts(db: sqlite3.Connection, workflow_id: int) -> Counts:
    """``subjects_count``, ``retired_set_member_subjects_count`` and ``classifications_count`` of a workflow:
    ``WorkflowCounter`` sums over the memberships of the workflow's sets, its training sets left out."""
    subjects = db.execute(f"SELECT COUNT(*) FROM set_member_subjects WHERE subject_set_id IN ({WORKFLOW_SETS})",
                          (workflow_id, workflow_id)).fetchone()[0]
    retired, classifications = db.execute(
        "SELECT COUNT(sws.retired_at), COALESCE(SUM(sws.classifications_count), 0) "
        "FROM subject_workflow_statuses sws JOIN set_member_subjects sms ON sms.subject_id = sws.subject_id "
        f"WHERE sws.workflow_id = ? AND sms.subject_set_id IN ({WORKFLOW_SETS})",
        (workflow_id, workflow_id, workflow_id),
    ).fetchone()
    return Counts(subjects, retired, classifications)


def project_counts(db: sqlite3.Connection, project_id: int) -> Counts:
    """A project's counts: the sums over its active workflows (``Project#subjects_count``,
    ``#retired_subjects_count``, ``ProjectCounter#classifications``)."""
    totals = [workflow_counts(db, r[0]) for r in db.execute(
        "SELECT id FROM workflows WHERE project_id = ? AND active = 1 AND deactivated_at IS NULL", (project_id,))]
    return Counts(*(sum(column) for column in zip(*totals))) if totals else Counts(0, 0, 0)


def workflows_of_set(db: sqlite3.Connection, subject_set_id: int) -> list[int]:
    rows = db.execute("SELECT workflow_id FROM workflow_subject_sets WHERE subject_set_id = ?", (subject_set_id,))
    return [r[0] for r in rows]


def ensure_statuses(db: sqlite3.Connection, where: str, params: Iterable[object], stamp: str) -> None:
    """Create the count-0 status rows of the (subject, workflow) pairs ``where`` selects.

    ``where`` filters ``sms`` (set_member_subjects) joined to ``wss`` (workflow_subject_sets); the rows
    must exist as soon as a subject is reachable, or ``subject_workflow_status()`` raises StopIteration.
    """
    db.execute(
        "INSERT OR IGNORE INTO subject_workflow_statuses (subject_id, workflow_id, created_at, updated_at) "
        "SELECT DISTINCT sms.subject_id, wss.workflow_id, ?, ? FROM set_member_subjects sms "
        f"JOIN workflow_subject_sets wss ON wss.subject_set_id = sms.subject_set_id WHERE {where}",
        (stamp, stamp, *params),
    )


def refresh_finished(db: sqlite3.Connection, workflow_ids: Iterable[int], stamp: str) -> None:
    """Set ``finished_at`` when every subject is retired (keeping the first moment), clear it otherwise."""
    for workflow_id in set(workflow_ids):
        counts = workflow_counts(db, workflow_id)
        finished = counts.subjects > 0 and counts.retired >= counts.subjects
        db.execute(
            "UPDATE workflows SET finished_at = CASE WHEN ? THEN COALESCE(finished_at, ?) END WHERE id = ?",
            (int(finished), stamp, workflow_id),
        )


def seen_subjects(db: sqlite3.Connection, workflow_id: int, user_id: int | None, subject_ids: list[int]) -> set[int]:
    """The subjects of ``subject_ids`` the user has classified in this workflow before (none for anonymous
    classifiers): ``ClassificationLifecycle#subjects_are_unseen_by_user?``."""
    if user_id is None:
        return set()
    return {r[0] for r in db.execute(
        "SELECT cs.subject_id FROM classification_subjects cs JOIN classifications c ON c.id = cs.classification_id "
        "WHERE c.user_id = ? AND c.workflow_id = ? AND cs.subject_id IN (SELECT value FROM json_each(?))",
        (user_id, workflow_id, id_list(subject_ids)),
    )}


def _status(db: sqlite3.Connection, workflow_id: int, subject_id: int, stamp: str) -> None:
    db.execute("INSERT OR IGNORE INTO subject_workflow_statuses (workflow_id, subject_id, created_at, updated_at) "
               "VALUES (?, ?, ?, ?)", (workflow_id, subject_id, stamp, stamp))


def count_classification(db: sqlite3.Connection, payload: dict[str, Any], stamp: str) -> None:
    """``ClassificationCountWorker`` then ``RetirementWorker``: while the workflow's project is live (at the time
    the job runs), each subject the lifecycle said counts gets one more on its status, and is retired with
    reason ``classification_count`` once a ``classification_count`` scheme's count is reached."""
    workflow = db.execute("SELECT w.*, p.live FROM workflows w JOIN projects p ON p.id = w.project_id "
                          "WHERE w.id = ?", (payload["workflow"],)).fetchone()
    if workflow is None or not workflow["live"] or not payload["subjects"]:
        return
    retirement = json.loads(workflow["retirement"])
    # a classification_count scheme without a count is valid but never retires here (the real worker raises)
    limit = retirement["options"].get("count") if retirement["criteria"] == "classification_count" else None
    for subject_id in payload["subjects"]:
        _status(db, workflow["id"], subject_id, stamp)
        db.execute("UPDATE subject_workflow_statuses SET classifications_count = classifications_count + 1, "
                   "updated_at = ? WHERE workflow_id = ? AND subject_id = ?", (stamp, workflow["id"], subject_id))
        if limit is not None:
            db.execute(
                "UPDATE subject_workflow_statuses SET retired_at = ?, retirement_reason = 'classification_count' "
                "WHERE workflow_id = ? AND subject_id = ? AND retired_at IS NULL AND classifications_count >= ?",
                (stamp, workflow["id"], subject_id, limit),
            )
    refresh_finished(db, [workflow["id"]], stamp)


def retire(db: sqlite3.Connection, payload: dict[str, Any], stamp: str) -> None:
    """``RetireSubjectWorker`` (``POST .../retired_subjects``): retire the subjects with the reason (which may be
    None), whatever their counts; subjects already retired keep their first retirement; subjects that no
    longer exist are skipped."""
    _set_retired(db, payload["workflow"], payload["subjects"], payload.get("reason"), stamp, retire=True)


def unretire(db: sqlite3.Connection, payload: dict[str, Any], stamp: str) -> None:
    """``UnretireSubjectWorker`` (``POST .../unretire_subjects``)."""
    _set_retired(db, payload["workflow"], payload["subjects"], None, stamp, retire=False)


def _set_retired(db: sqlite3.Connection, workflow_id: int, subject_ids: list[int], reason: str | None, stamp: str,
                 retire: bool) -> None:
    if db.execute("SELECT 1 FROM workflows WHERE id = ?", (workflow_id,)).fetchone() is None:
        return
    existing = [r[0] for r in db.execute("SELECT id FROM subjects WHERE id IN (SELECT value FROM json_each(?))",
                                         (id_list(subject_ids),))]
    for subject_id in existing:
        _status(db, workflow_id, subject_id, stamp)
    if not retire:
        db.execute(
            "UPDATE subject_workflow_statuses SET retired_at = NULL, retirement_reason = NULL, updated_at = ? "
            "WHERE workflow_id = ? AND subject_id IN (SELECT value FROM json_each(?))",
            (stamp, workflow_id, id_list(existing)),
        )
    else:
        db.execute(
            "UPDATE subject_workflow_statuses SET retired_at = ?, retirement_reason = ?, updated_at = ? "
            "WHERE workflow_id = ? AND retired_at IS NULL AND subject_id IN (SELECT value FROM json_each(?))",
            (stamp, reason, stamp, workflow_id, id_list(existing)),
        )
    refresh_finished(db, [workflow_id], stamp)


#: what the background worker can be asked to do, by job kind
JOBS: dict[str, Callable[[sqlite3.Connection, dict[str, Any], str], None]] = {
    "count": count_classification, "retire": retire, "unretire": unretire,
}
