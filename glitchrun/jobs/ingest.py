"""``job=ingest``: a classification export -> consensus labels in the campaign state, with an agreement report.

The export is either a CSV given on the command line or a fresh one the job asks of the campaign's
workflow and downloads (validated, through ``glitchrun.zooniverse.exports``). Rounds do not need it: they
read classifications through the API and retire subjects themselves (``job=retire``); this job brings in
votes from elsewhere, e.g. an export of an earlier workflow.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from glitchrun.campaign.ingest import ACCEPTED, REPORT_SCHEMA, record, tally
from glitchrun.campaign.state import CampaignState
from glitchrun.campaign.tasks import TaskSpec
from glitchrun.csvio import write_csv
from glitchrun.zooniverse.exports import (
    ExportRateLimited,
    ExportTarget,
    fetch_export,
    read_classification_export,
    request_export,
    wait_until_ready,
)
from glitchrun.zooniverse.resources import ProjectSpec, WorkflowSpec, find_project, find_workflow

log = logging.getLogger(__name__)

REPORT = "agreement_report.csv"


class IngestJob:
    """Ingest one classification export into the campaign state; writes ``agreement_report.csv``."""

    def __init__(self, backend: Any, consensus: Any, campaign: dict[str, Any], run_dir: str | os.PathLike[str],
                 export: str | None = None, round: int | None = None, export_timeout: float = 600,
                 poll_interval: float = 2) -> None:
        self.backend = backend
        self.consensus = consensus
        self.state_dir = campaign["state_dir"]
        self.project = ProjectSpec(**campaign["project"])
        self.workflow = WorkflowSpec(**campaign["workflow"])
        self.workflow_config = campaign["workflow"]
        self.run_dir = Path(run_dir)
        self.export = export
        self.round = round
        self.export_timeout = export_timeout
        self.poll_interval = poll_interval

    def run(self) -> pd.DataFrame:
        """The labels added (candidate_id, label, votes, agreement, source)."""
        state = CampaignState(self.state_dir)
        try:
            with state.lock():
                return self.ingest(state)
        finally:
            state.close()

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
        result = tally(read_classification_export(path), state, self.consensus, list(self.workflow.classes),
                       source=f"classification export {path}", task=task)
        report = write_csv(result.report, self.run_dir / REPORT, REPORT_SCHEMA, what="agreement report")
        added = record(result, state, number)
        accepted = result.report[result.report["status"] == ACCEPTED]
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
