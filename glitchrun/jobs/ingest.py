"""``job=ingest``: a classification export -> labels in the campaign state, with an agreement report.

The export is either a CSV given on the command line (e.g. an existing project's own export, of any size: it
is streamed) or a fresh one the job asks of the campaign's workflow and downloads (validated, through
``glitchrun.zooniverse.exports``). Rounds do not need it: they read classifications through the API and retire
subjects themselves (``job=retire``); this job brings in votes from elsewhere, e.g. an export of an earlier
workflow or of Gravity Spy itself. An ingest that adds no label, or whose workflow or version filter matches
nothing, is an error naming what did not match.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from glitchrun.campaign.ingest import (
    ACCEPTED,
    REPORT_SCHEMA,
    SURVEY_SCHEMA,
    UNKNOWN_SUBJECT,
    Tally,
    record,
    tally,
)
from glitchrun.campaign.state import CampaignState
from glitchrun.campaign.subjects import SubjectFields
from glitchrun.campaign.tasks import IngestError, TaskSpec
from glitchrun.csvio import write_csv
from glitchrun.zooniverse.exports import (
    ExportRateLimited,
    ExportTarget,
    export_chunks,
    fetch_export,
    request_export,
    wait_until_ready,
)
from glitchrun.zooniverse.resources import ProjectSpec, WorkflowSpec, find_project, find_workflow

log = logging.getLogger(__name__)

REPORT = "agreement_report.csv"
SURVEY_REPORT = "survey_report.csv"


class IngestJob:
    """Ingest one classification export into the campaign state; writes ``agreement_report.csv`` (and
    ``survey_report.csv`` for survey tasks)."""

    def __init__(self, backend: Any, consensus: Any, campaign: dict[str, Any], run_dir: str | os.PathLike[str],
                 subjects: SubjectFields | None = None, export: str | None = None, round: int | None = None,
                 workflows: Any = None, progress: bool = True, export_timeout: float = 600,
                 poll_interval: float = 2) -> None:
        self.backend = backend
        self.consensus = consensus
        self.state_dir = campaign["state_dir"]
        self.project = ProjectSpec(**campaign["project"])
        self.workflow = WorkflowSpec(**campaign["workflow"])
        self.workflow_config = campaign["workflow"]
        self.subjects = subjects or SubjectFields()
        self.run_dir = Path(run_dir)
        self.export = export
        self.round = round
        self.workflows = workflows
        self.progress = progress
        self.export_timeout = export_timeout
        self.poll_interval = poll_interval

    def run(self) -> pd.DataFrame:
        """The labels added (candidate_id, label, votes, agreement, source)."""
        with CampaignState.locked(self.state_dir) as state:
            return self.ingest(state)

    def ingest(self, state: CampaignState) -> pd.DataFrame:
        last = state.last_round()
        number = self.round if self.round is not None else (last.number if last else None)
        if self.export is None:
            with self.backend.connect() as conn:
                workflow = self.find_workflow(conn.login)
                path = self.download(workflow)
                task = TaskSpec.from_workflow(workflow, self.workflow_config)
        else:
            path = Path(self.export)
            task = TaskSpec.from_config(self.workflow_config, state.get("workflow_id"))
        source = f"classification export {path}"
        result = tally(export_chunks(path, "classifications"), state, self.consensus, list(self.workflow.classes),
                       source=source, task=task, workflows=self.workflows, fields=self.subjects,
                       choices=self.workflow.choices, progress=self.progress)
        report = write_csv(result.report, self.run_dir / REPORT, REPORT_SCHEMA, what="agreement report")
        if result.survey is not None:
            write_csv(result.survey, self.run_dir / SURVEY_REPORT, SURVEY_SCHEMA, what="survey report")
        if result.labels().empty:
            raise IngestError(f"{source} adds no label to the campaign: {no_label_reason(result, self.subjects)} "
                              f"(report {report})")
        added = record(result, state, number)
        accepted = result.report[result.report["status"] == ACCEPTED].drop_duplicates("subject_id")
        log.info("ingest of %s: %d labels for round %s; mean agreement of labelled subjects %.2f; report %s",
                 path, len(added), number, accepted["agreement"].mean() if len(accepted) else float("nan"), report)
        return added

    def find_workflow(self, owner: str | None) -> Any:
        project = find_project(self.project, owner)
        workflow = find_workflow(project, self.workflow.display_name) if project is not None else None
        if workflow is None:
            raise LookupError(f"no project {self.project.display_name!r} with workflow {self.workflow.display_name!r}; "
                              "give an export CSV with job.export=path, or check campaign.project/workflow")
        return workflow

    def download(self, workflow: Any) -> Path:
        """A fresh classification export of the workflow, validated, under ``<run_dir>/exports/``."""
        target = ExportTarget(workflow)
        try:
            request_export(target, "classifications")
        except ExportRateLimited as err:  # the current export is still there: ingest it
            log.warning("%s", err)
        medium = wait_until_ready(target, "classifications", self.export_timeout, self.poll_interval)
        return fetch_export(target, "classifications", medium, self.run_dir / "exports", max_age=None,
                            require_all_classifications=True)


def no_label_reason(result: Tally, fields: SubjectFields) -> str:
    """Why a tally labels nothing, in a phrase: what matched nothing."""
    subjects = result.report.drop_duplicates("subject_id")
    counted = f"{result.classifications} classifications" + "".join(f", {n} of {r}" for r, n in result.skipped.items())
    if subjects.empty:
        return f"no classification counts as a volunteer's vote ({counted}; {result.unanswered} without an answer)"
    unknown = int((subjects["status"] == UNKNOWN_SUBJECT).sum())
    if unknown == len(subjects):
        field = f"their metadata field {fields.candidate_field!r}" if fields.candidate_field else "a metadata field"
        return (f"none of its {unknown} subjects is a subject of the campaign, neither uploaded by it nor named by "
                f"{field} (choose the project's fields with subjects=gravityspy or subjects.candidate_field=...)")
    statuses = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in subjects["status"].value_counts().items())
    return f"the consensus accepts none of its {len(subjects)} subjects ({statuses})"
