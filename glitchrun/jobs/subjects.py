"""``job=subjects``: what a Zooniverse subject export says of the campaign's candidates, read from a file.

A subject export (e.g. an existing project's, of any size: it is streamed) has one row per subject and subject
set-workflow link (panoptes ``lib/formatter/csv/subject.rb``) with the subject's metadata and, per workflow, its
classification count and retirement. The job maps each subject to its candidate by its metadata (config group
``subjects``), and writes ``subjects_report.csv``: per row the candidate, the subject's gold class (a gold-standard
subject's label, Gravity Spy's ``#Type``/``#Label``), the learner's top class stored with it, and whether and why
it is retired; the log sums it up (subjects, candidates, retired by reason, gold). With ``dry_run=false`` the gold
classes of the campaign's candidates are recorded as labels (source ``expert``): seeding a campaign with what an
existing project already knows. A filter that matches nothing is an error naming it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from tqdm import tqdm

from glitchrun.campaign.state import CampaignState
from glitchrun.campaign.subjects import SubjectFields, label_classes, squeezed
from glitchrun.campaign.tasks import IngestError
from glitchrun.csvio import LINES, write_csv
from glitchrun.zooniverse.exports import export_chunks, parse_json
from glitchrun.zooniverse.resources import WorkflowSpec

log = logging.getLogger(__name__)

REPORT = "subjects_report.csv"
REPORT_SCHEMA = pa.DataFrameSchema(
    {
        "subject_id": pa.Column(str),
        "candidate_id": pa.Column(str, nullable=True),
        "workflow_id": pa.Column(str, nullable=True),
        "subject_set_id": pa.Column(str, nullable=True),
        "classifications_count": pa.Column(int, pa.Check.ge(0)),
        "retired_at": pa.Column(str, nullable=True),
        "retirement_reason": pa.Column(str, nullable=True),
        "gold_label": pa.Column(str, nullable=True),
        "ml_label": pa.Column(str, nullable=True),
        "ml_probability": pa.Column(float, pa.Check.in_range(0.0, 1.0), nullable=True),
    },
    strict=True,
    coerce=True,
)


class SubjectsJob:
    """Read a subject export: candidates, gold, stored predictions and retirement per subject."""

    def __init__(self, campaign: dict[str, Any], run_dir: str | os.PathLike[str], export: str,
                 subjects: SubjectFields | None = None, workflows: list[Any] | None = None,
                 subject_sets: list[Any] | None = None, dry_run: bool = True, progress: bool = True) -> None:
        self.state_dir = campaign["state_dir"]
        self.workflow = WorkflowSpec(**campaign["workflow"])
        self.fields = subjects or SubjectFields()
        self.run_dir = Path(run_dir)
        self.export = Path(export)
        self.workflows = None if workflows is None else [str(w) for w in workflows]
        self.subject_sets = None if subject_sets is None else [str(s) for s in subject_sets]
        self.dry_run = dry_run
        self.progress = progress

    def run(self) -> pd.DataFrame:
        """The report (columns of ``REPORT_SCHEMA``)."""
        with CampaignState.locked(self.state_dir) as state:
            return self.read(state)

    def read(self, state: CampaignState) -> pd.DataFrame:
        chunks = export_chunks(self.export, "subjects")
        known = state.subject_candidates()
        names = label_classes(self.workflow.choices, self.workflow.classes)
        parts, rows = [], 0
        found: dict[str, set[str]] = {"workflow_id": set(), "subject_set_id": set()}
        with tqdm(desc="reading the subject export", unit=" rows", unit_scale=True, leave=False,
                  disable=None if self.progress else True) as bar:
            for chunk in chunks:
                bar.update(len(chunk))
                rows += len(chunk)
                chunk = self.filtered(chunk, found)
                if len(chunk):
                    parts.append(self.described(chunk, chunks.source, known, names))
        if not parts:
            has = "; ".join(f"{name}s {', '.join(sorted(found[column])[:10])}" for column, name in
                            (("workflow_id", "workflow"), ("subject_set_id", "subject set")) if found[column])
            raise IngestError(f"{chunks.source}: no subject {self.filter_phrase()} ({rows} rows"
                              f"{'; it has ' + has if has else ''})")
        report = pd.concat(parts, ignore_index=True)
        path = write_csv(report, self.run_dir / REPORT, REPORT_SCHEMA, what="subjects report")
        subjects = report.drop_duplicates("subject_id")
        retired = report[report["retired_at"].notna()].drop_duplicates(["subject_id", "workflow_id"])
        by_reason = retired["retirement_reason"].fillna("unknown").value_counts()
        reasons = ", ".join(f"{n} {r}" for r, n in by_reason.items())
        gold = subjects[subjects["gold_label"].notna()]
        log.info("subjects: %d subjects in %d rows, %d of them candidates of the campaign; retired %d "
                 "(subject, workflow) (%s); %d gold-standard subjects; report %s", len(subjects), len(report),
                 int(subjects["candidate_id"].notna().sum()), len(retired), reasons or "none", len(gold), path)
        self.record(state, gold[gold["candidate_id"].notna()])
        return report

    def filtered(self, chunk: pd.DataFrame, found: dict[str, set[str]]) -> pd.DataFrame:
        """The rows of the workflows and subject sets asked for (noting the values the filters met)."""
        for column, wanted in (("workflow_id", self.workflows), ("subject_set_id", self.subject_sets)):
            if wanted is not None:
                values = chunk[column].astype("str").where(chunk[column].notna(), None)
                found[column].update(values.dropna().unique())
                chunk = chunk[values.isin(wanted).to_numpy()]
        return chunk

    def described(self, chunk: pd.DataFrame, source: str, known: dict[str, str], names: dict[str, str]
                  ) -> pd.DataFrame:
        """One report row per export row."""
        metadata = parse_json(chunk["metadata"], dict, "metadata", source, chunk.attrs.get(LINES))
        classes = list(self.workflow.classes)
        subject_ids = chunk["subject_id"].astype("str").to_numpy()
        metadatas = metadata.tolist()
        candidates = [known.get(s) or self.fields.candidate(m) for s, m in zip(subject_ids, metadatas)]
        labels = [self.fields.gold_label(m) for m in metadatas]
        gold = [None if label is None else names.get(squeezed(label)) for label in labels]
        top = np.full(len(metadatas), None, dtype=object)
        probability = np.full(len(metadatas), np.nan)
        found, rows = self.fields.distributions(metadatas, classes)
        if len(found):
            best = np.nanargmax(np.nan_to_num(rows, nan=-1.0), axis=1)
            top[found] = np.asarray(classes, dtype=object)[best]
            probability[found] = rows[np.arange(len(found)), best]
        return pd.DataFrame({
            "subject_id": subject_ids, "candidate_id": candidates,
            "workflow_id": chunk["workflow_id"].astype("str").where(chunk["workflow_id"].notna(), None).to_numpy(),
            "subject_set_id": chunk["subject_set_id"].astype("str").to_numpy(),
            "classifications_count": chunk["classifications_count"].to_numpy(dtype=np.int64),
            "retired_at": chunk["retired_at"].to_numpy(dtype=object),
            "retirement_reason": chunk["retirement_reason"].to_numpy(dtype=object),
            "gold_label": gold, "ml_label": top, "ml_probability": probability,
        })

    def record(self, state: CampaignState, gold: pd.DataFrame) -> None:
        if self.dry_run:
            log.info("subjects: dry run, nothing recorded: %d candidates of the campaign have a gold class; record "
                     "them as labels with job.dry_run=false", len(gold))
            return
        if gold.empty:
            raise IngestError(f"subject export {self.export}: no gold-standard subject is a candidate of the campaign: "
                              "nothing to record (check config group subjects: its gold and candidate fields)")
        state.add_labels({"candidate_id": c, "label": label, "source": "expert"}
                         for c, label in zip(gold["candidate_id"], gold["gold_label"]))
        log.info("subjects: %d gold classes recorded as labels (source expert)", len(gold))

    def filter_phrase(self) -> str:
        parts = [f"of {name} {', '.join(wanted)}" for name, wanted in (("workflow", self.workflows),
                                                                         ("subject set", self.subject_sets)) if wanted]
        return " and ".join(parts) or "at all"

