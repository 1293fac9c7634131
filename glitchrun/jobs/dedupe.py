"""``job=dedupe``: keep one subject per value of a metadata field in a subject set.

Re-uploading a manifest (or a crashed upload re-run by another tool) leaves several subjects for one
candidate in a set, and each would be shown to volunteers and counted separately. Subjects whose field
holds the same value (compared as JSON, so ``"3"`` and ``3`` differ) are duplicates; the oldest (or
newest) stays, the others leave the set, and are deleted only when asked. Every decision is written to a
report first; a dry run (the default) stops there.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
from panoptes_client import Subject

from glitchrun.csvio import write_csv
from glitchrun.zooniverse.resources import (
    check_subject_set_choice,
    delete_subject,
    metadata_json,
    resolve_subject_set,
    set_subjects,
    unlink_subjects,
)
from glitchrun.zooniverse.retry import Retry

log = logging.getLogger(__name__)

ACTIONS = ("keep", "unlink", "delete", "skip-missing-field")
KEEP = ("oldest", "newest")

REPORT = pa.DataFrameSchema(
    {
        "subject_id": pa.Column(str, pa.Check.str_matches(r"^\d+$"), unique=True),
        "value": pa.Column(str, nullable=True),  # the field's value as JSON; empty when the field is missing
        "action": pa.Column(str, pa.Check.isin(ACTIONS)),
        "applied": pa.Column(bool),
        "note": pa.Column(str, nullable=True),
    },
    strict=True,
    ordered=True,
    name="dedupe report",
)
REPORT_DTYPES = {"subject_id": str, "value": str, "action": str, "applied": bool, "note": str}


def subject_table(subjects: list[Subject]) -> pd.DataFrame:
    """What planning needs of each listed subject: id, creation time, metadata, the sets it is in."""
    return pd.DataFrame(
        {
            "subject_id": [str(s.id) for s in subjects],
            "created_at": [s.raw.get("created_at") or "" for s in subjects],
            "metadata": [s.raw.get("metadata") or {} for s in subjects],
            "subject_sets": [[str(i) for i in s.raw.get("links", {}).get("subject_sets") or []] for s in subjects],
        },
        columns=["subject_id", "created_at", "metadata", "subject_sets"],
    )


def plan_dedupe(subjects: pd.DataFrame, field: str, keep: str, delete: bool, subject_set_id: str) -> pd.DataFrame:
    """One report row per subject of ``subject_table``: which one of each value stays and what happens to the rest.

    ``keep='oldest'`` keeps the earliest ``created_at`` (then the lowest id), ``'newest'`` the latest. With
    ``delete`` a duplicate is deleted, unless it is also in another subject set: deleting it would take
    it out of that set too, so it is only unlinked, and the note says why.
    """
    order = subjects.assign(_id=subjects["subject_id"].astype(int)).sort_values(
        ["created_at", "_id"], ascending=keep == "oldest")
    kept: set[str] = set()
    rows = []
    for row in order.itertuples(index=False):
        if field not in row.metadata:
            rows.append((row.subject_id, None, "skip-missing-field", False, f"no metadata field {field!r}"))
            continue
        value = metadata_json(row.metadata[field])
        if value not in kept:
            kept.add(value)
            rows.append((row.subject_id, value, "keep", False, None))
            continue
        others = sorted(set(row.subject_sets) - {str(subject_set_id)}, key=int)
        if delete and others:
            rows.append((row.subject_id, value, "unlink", False,
                         f"also in subject sets {','.join(others)}: unlinked, not deleted"))
        else:
            rows.append((row.subject_id, value, "delete" if delete else "unlink", False, None))
    report = pd.DataFrame(rows, columns=list(REPORT.columns)).astype(REPORT_DTYPES)
    # grouped by value, the kept subject first; subjects without the field last
    rank = report["action"].map({"keep": 0, "unlink": 1, "delete": 1, "skip-missing-field": 2})
    report = report.assign(_missing=report["value"].isna(), _rank=rank, _id=report["subject_id"].astype(int))
    report = report.sort_values(["_missing", "value", "_rank", "_id"]).drop(columns=["_missing", "_rank", "_id"])
    return report.reset_index(drop=True)


class Dedupe:
    """Remove duplicate subjects (same value of ``field``) from a subject set; a dry run unless ``dry_run=false``."""

    def __init__(self, backend: Any, run_dir: str | os.PathLike[str], field: str,
                 subject_set_id: int | str | None = None, subject_set_name: str | None = None,
                 project_id: int | str | None = None, project_name: str | None = None, keep: str = "oldest",
                 dry_run: bool = True, delete: bool = False, batch_size: int = 100) -> None:
        self.backend = backend
        self.run_dir = Path(run_dir)
        self.field = field
        self.subject_set_id = subject_set_id
        self.subject_set_name = subject_set_name
        self.project_id = project_id
        self.project_name = project_name
        self.keep = keep
        self.dry_run = dry_run
        self.delete = delete
        self.batch_size = batch_size

    def check_config(self) -> None:
        check_subject_set_choice(self.subject_set_id, self.subject_set_name)
        if not self.field:
            raise ValueError("field (the metadata field whose values must be unique) is required")
        if self.keep not in KEEP:
            raise ValueError(f"keep must be one of {list(KEEP)}, got {self.keep!r}")
        if not 1 <= self.batch_size <= 100:
            raise ValueError(f"batch_size must be 1..100 subjects per request, got {self.batch_size}")

    def run(self) -> pd.DataFrame:
        """Returns the report (also written to ``dedupe_plan.csv``, and ``dedupe_report.csv`` when applied)."""
        self.check_config()
        with self.backend.connect() as connection:
            subject_set = resolve_subject_set(self.subject_set_id, self.subject_set_name, self.project_id,
                                              self.project_name, connection.login)
            subjects = set_subjects(subject_set.id)
            report = plan_dedupe(subject_table(subjects), self.field, self.keep, self.delete, str(subject_set.id))
            plan_path = write_csv(report, self.run_dir / "dedupe_plan.csv", REPORT, what="dedupe plan")
            counts = report["action"].value_counts().to_dict()
            log.info("subject set %s (%r): %d subjects, %d distinct %r values; plan %s written to %s", subject_set.id,
                     subject_set.display_name, len(report), counts.get("keep", 0), self.field, counts, plan_path)
            if self.dry_run:
                log.info("dry run: nothing changed; apply with job.dry_run=false%s",
                         "" if self.delete else " (and job.delete=true to delete)")
                return report
            try:
                self.apply(report, str(subject_set.id), connection.client.retry)
            finally:
                path = write_csv(report, self.run_dir / "dedupe_report.csv", REPORT, what="dedupe report")
                log.info("%d of %d actions applied; report in %s", int(report["applied"].sum()),
                         int(report["action"].isin(["unlink", "delete"]).sum()), path)
        return report

    def apply(self, report: pd.DataFrame, subject_set_id: str, retry: Retry) -> None:
        """Unlink every duplicate (``batch_size`` per request), then delete those marked ``delete``.

        ``report.applied`` is set as each step succeeds, so the report stays true if a step fails. A delete
        is retried like the unlinks: once unlinked, a duplicate is no longer in the set, so a re-run of the
        job would not find it to delete.
        """
        leaving = report.index[report["action"].isin(["unlink", "delete"])]
        for start in range(0, len(leaving), self.batch_size):
            rows = leaving[start : start + self.batch_size]
            unlink_subjects(subject_set_id, report.loc[rows, "subject_id"].tolist())
            unlinked = report.loc[rows, "action"].eq("unlink")
            report.loc[rows, "applied"] = unlinked
            report.loc[unlinked.index[~unlinked], "note"] = "unlinked, not deleted yet"
        for row in report.index[report["action"].eq("delete")]:
            retry(partial(delete_subject, report.at[row, "subject_id"]))
            report.loc[row, ["applied", "note"]] = [True, None]
