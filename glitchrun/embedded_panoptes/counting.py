"""Counting and retirement (panoptes-api.md §4, §7, §8), done synchronously inside the request's transaction.

The real server does this in background workers a few seconds later; doing it at once makes every
test and simulation deterministic. Workflow totals are computed from the tables when asked for, so
they can never drift; only ``finished_at`` (a moment, not a total) is stored.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from glitchrun.embedded_panoptes.store import id_list
from glitchrun.embedded_panoptes.training import COUNTED_SUBJECTS

#: the subjects a workflow can show: members of the subject sets linked to it
WORKFLOW_SUBJECTS = (
    "SELECT sms.subject_id FROM set_member_subjects sms "
    "JOIN workflow_subject_sets wss ON wss.subject_set_id = sms.subject_set_id WHERE wss.workflow_id = ?"
)
RETIREMENT_REASONS = frozenset({"classification_count", "flagged", "nothing_here", "consensus", "other", "human"})


def workflow_counts(db: sqlite3.Connection, workflow_id: int) -> tuple[int, int]:
    """(subjects_count, retired_set_member_subjects_count) of a workflow, its training sets left out (training.py)."""
    subjects = db.execute(f"SELECT COUNT(DISTINCT subject_id) FROM ({COUNTED_SUBJECTS})",
                          (workflow_id, workflow_id)).fetchone()[0]
    retired = db.execute(
        "SELECT COUNT(*) FROM subject_workflow_statuses WHERE workflow_id = ? AND retired_at IS NOT NULL "
        f"AND subject_id IN ({COUNTED_SUBJECTS})",
        (workflow_id, workflow_id, workflow_id),
    ).fetchone()[0]
    return subjects, retired


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
        subjects, retired = workflow_counts(db, workflow_id)
        finished = subjects > 0 and retired >= subjects
        db.execute(
            "UPDATE workflows SET finished_at = CASE WHEN ? THEN COALESCE(finished_at, ?) END WHERE id = ?",
            (int(finished), stamp, workflow_id),
        )


def count_classification(
    db: sqlite3.Connection,
    workflow: sqlite3.Row,
    user_id: int | None,
    subject_ids: list[int],
    counts: bool,
    stamp: str,
) -> bool:
    """Apply §8's counting rules for a new classification; return whether the user had seen a subject.

    A subject counts when ``counts`` (completed and not flagged seen_before by the caller) and the
    classifier is anonymous or classifies it for the first time in this workflow. Call this before
    the classification itself is stored.
    """
    seen: set[int] = set()
    if user_id is not None:
        seen = {r[0] for r in db.execute(
            "SELECT cs.subject_id FROM classification_subjects cs "
            "JOIN classifications c ON c.id = cs.classification_id "
            "WHERE c.user_id = ? AND c.workflow_id = ? AND cs.subject_id IN (SELECT value FROM json_each(?))",
            (user_id, workflow["id"], id_list(subject_ids)),
        )}
    counted = [sid for sid in subject_ids if counts and sid not in seen]
    retirement = json.loads(workflow["retirement"])
    # a classification_count scheme without a count is valid but never retires here (the real worker raises)
    limit = retirement["options"].get("count") if retirement["criteria"] == "classification_count" else None
    for subject_id in counted:
        key = (workflow["id"], subject_id)
        db.execute(
            "INSERT OR IGNORE INTO subject_workflow_statuses (workflow_id, subject_id, created_at, updated_at) "
            "VALUES (?, ?, ?, ?)", (*key, stamp, stamp),
        )
        db.execute(
            "UPDATE subject_workflow_statuses SET classifications_count = classifications_count + 1, updated_at = ? "
            "WHERE workflow_id = ? AND subject_id = ?", (stamp, *key),
        )
        if limit is not None:
            db.execute(
                "UPDATE subject_workflow_statuses SET retired_at = ?, retirement_reason = 'classification_count' "
                "WHERE workflow_id = ? AND subject_id = ? AND retired_at IS NULL AND classifications_count >= ?",
                (stamp, *key, limit),
            )
    # WorkflowCounter#classifications sums the counts of the non-training sets' subjects only
    if counted and db.execute(f"SELECT 1 FROM ({COUNTED_SUBJECTS}) WHERE subject_id IN "
                              "(SELECT value FROM json_each(?))",
                              (workflow["id"], workflow["id"], id_list(counted))).fetchone():
        for table, ident in (("workflows", workflow["id"]), ("projects", workflow["project_id"])):
            db.execute(f"UPDATE {table} SET classifications_count = classifications_count + 1 WHERE id = ?", (ident,))
        refresh_finished(db, [workflow["id"]], stamp)
    return bool(seen)


def set_retired(
    db: sqlite3.Connection, workflow_id: int, subject_ids: list[int], reason: str | None, stamp: str, retire: bool
) -> None:
    """Retire (with ``reason``, which may be None) or unretire subjects of a workflow, whatever their counts."""
    for subject_id in subject_ids:
        db.execute(
            "INSERT OR IGNORE INTO subject_workflow_statuses (workflow_id, subject_id, created_at, updated_at) "
            "VALUES (?, ?, ?, ?)", (workflow_id, subject_id, stamp, stamp),
        )
    if not retire:
        db.execute(
            "UPDATE subject_workflow_statuses SET retired_at = NULL, retirement_reason = NULL, updated_at = ? "
            "WHERE workflow_id = ? AND subject_id IN (SELECT value FROM json_each(?))",
            (stamp, workflow_id, id_list(subject_ids)),
        )
    else:
        db.execute(
            "UPDATE subject_workflow_statuses SET retired_at = ?, retirement_reason = ?, updated_at = ? "
            "WHERE workflow_id = ? AND retired_at IS NULL AND subject_id IN (SELECT value FROM json_each(?))",
            (stamp, reason, stamp, workflow_id, id_list(subject_ids)),
        )
    refresh_finished(db, [workflow_id], stamp)


def project_counts(db: sqlite3.Connection, project_id: int) -> tuple[int, int]:
    """(subjects_count, retired_subjects_count) over the project's active workflows."""
    subjects = db.execute(
        "SELECT COUNT(DISTINCT sms.subject_id) FROM set_member_subjects sms "
        "JOIN workflow_subject_sets wss ON wss.subject_set_id = sms.subject_set_id "
        "JOIN workflows w ON w.id = wss.workflow_id WHERE w.project_id = ? AND w.active = 1",
        (project_id,),
    ).fetchone()[0]
    retired = db.execute(
        "SELECT COUNT(DISTINCT sws.subject_id) FROM subject_workflow_statuses sws "
        "JOIN workflows w ON w.id = sws.workflow_id "
        "WHERE w.project_id = ? AND w.active = 1 AND sws.retired_at IS NOT NULL "
        "AND sws.subject_id IN (SELECT sms.subject_id FROM set_member_subjects sms "
        "JOIN workflow_subject_sets wss ON wss.subject_set_id = sms.subject_set_id WHERE wss.workflow_id = w.id)",
        (project_id,),
    ).fetchone()[0]
    return subjects, retired
