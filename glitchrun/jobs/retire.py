"""``job=retire``: one consensus-retirement pass over the campaign, then exit (run it from cron or by hand).

The same pass begins every round (``glitchrun.campaign.retire``): sync the classifications through the
API, retire each subject whose consensus is reached (reason ``consensus``) or that reached the vote cap
without it (reason ``other``, disputed), and let labels follow the evidence. It writes
``<run_dir>/subjects.csv`` (every campaign subject's status and votes) and ``<run_dir>/disputed.csv``
(the disputed subjects with their votes per class, for an expert).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa

from glitchrun.campaign.retire import ConsensusRetirement, PassResult
from glitchrun.campaign.state import ACTIVE, DISPUTED, GOLD, LABELLED, CampaignState
from glitchrun.csvio import write_csv
from glitchrun.zooniverse.resources import ProjectSpec, WorkflowSpec, find_project, find_workflow

log = logging.getLogger(__name__)

SUBJECTS_SCHEMA = pa.DataFrameSchema(
    {
        "subject_id": pa.Column(str, unique=True),
        "candidate_id": pa.Column(str),
        "round": pa.Column(int, pa.Check.ge(1)),
        "status": pa.Column(str, pa.Check.isin([ACTIVE, LABELLED, DISPUTED, GOLD])),
        "votes": pa.Column(int, pa.Check.ge(0)),
        "retirement_reason": pa.Column(str, nullable=True),
        "label": pa.Column(str, nullable=True),
    },
    strict=True,
    coerce=True,
)
DISPUTED_SCHEMA = pa.DataFrameSchema(
    {"subject_id": pa.Column(str, unique=True), "candidate_id": pa.Column(str), "round": pa.Column(int),
     "votes": pa.Column(int, pa.Check.ge(0)), r"votes\..+": pa.Column(int, pa.Check.ge(0), regex=True)},
    strict=True,
    coerce=True,
)


class RetireJob:
    """Find the campaign's project and workflow, hold the campaign lock, run one retire pass, list subjects."""

    def __init__(self, backend: Any, consensus: Any, campaign: dict[str, Any], run_dir: str | os.PathLike[str]) -> None:
        self.backend = backend
        self.state_dir = campaign["state_dir"]
        self.project = ProjectSpec(**campaign["project"])
        self.workflow = WorkflowSpec(**campaign["workflow"])
        self.retirement = ConsensusRetirement.from_campaign(consensus, campaign)
        self.run_dir = Path(run_dir)

    def run(self) -> PassResult:
        with self.backend.connect() as conn:
            return self.run_connected(conn)

    def run_connected(self, conn: Any) -> PassResult:
        """The pass on an open connection (the simulated crowd runs it between its sweeps, as cron would)."""
        with CampaignState.locked(self.state_dir) as state:
            project = find_project(self.project, conn.login)
            workflow = find_workflow(project, self.workflow.display_name) if project is not None else None
            if workflow is None:
                raise LookupError(f"no project {self.project.display_name!r} with workflow "
                                  f"{self.workflow.display_name!r} at {conn.endpoint}; run job=init_project first")
            result = self.retirement.run(state, str(project.id), workflow)
            self.write_lists(state, result)
        return result

    def write_lists(self, state: CampaignState, result: PassResult) -> None:
        """``subjects.csv`` and ``disputed.csv`` in the run directory."""
        subjects = result.subjects.reset_index()
        labels = state.labels()["label"]
        subjects["label"] = subjects["candidate_id"].map(labels).where(subjects["status"] == LABELLED)
        write_csv(subjects[list(SUBJECTS_SCHEMA.columns)], self.run_dir / "subjects.csv", SUBJECTS_SCHEMA,
                  what="campaign subjects")
        disputed = subjects[subjects["status"] == DISPUTED][["subject_id", "candidate_id", "round", "votes"]]
        votes = state.votes()
        counts = pd.crosstab(votes["subject_id"], votes["label"]).add_prefix("votes.")
        disputed = disputed.join(counts, on="subject_id").fillna(0)
        path = write_csv(disputed, self.run_dir / "disputed.csv", DISPUTED_SCHEMA, what="disputed subjects")
        if len(disputed):
            log.info("%d disputed subjects (no consensus within the vote cap, or none in reach of one more vote), "
                     "listed for an expert in %s",
                     len(disputed), path)
