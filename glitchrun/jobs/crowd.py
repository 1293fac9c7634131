"""``job=crowd``: simulated volunteers classify the campaign's active subject sets until every subject retires.

They work through the Zooniverse API like real volunteers: each is an account of the embedded Panoptes,
logged in with its own client, and posts classifications (panoptes-api.md section 8); the server counts
them and retires subjects. Each volunteer answers from the subject's hidden ``#truth`` metadata key
through its skill model (``glitchrun.crowd.simulated.SimulatedCrowd``), which only a simulated campaign has.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
from panoptes_client import SubjectWorkflowStatus, Workflow
from tqdm import tqdm

from glitchrun.campaign.tasks import TaskSpec
from glitchrun.crowd.simulated import Crowd
from glitchrun.csvio import write_csv
from glitchrun.zooniverse.backend import LocalBackend
from glitchrun.zooniverse.resources import (
    ProjectSpec,
    find_project,
    find_workflow,
    set_subjects,
)

log = logging.getLogger(__name__)

TRUTH_KEY = "#truth"
CLASSIFICATIONS_SCHEMA = pa.DataFrameSchema(
    {
        "subject_id": pa.Column(str),
        "volunteer": pa.Column(str),
        "answer": pa.Column(str),
        "truth": pa.Column(str),
    },
    strict=True,
)


class CrowdJob:
    """Post simulated volunteers' classifications until every subject of the workflow's linked sets retires."""

    def __init__(self, backend: Any, crowd: Crowd, project: dict[str, Any], workflow: dict[str, Any],
                 run_dir: str | os.PathLike[str], progress: bool = True) -> None:
        self.backend = backend
        self.crowd = crowd.volunteers
        self.project = ProjectSpec(**project)
        self.workflow_name = workflow["display_name"]
        self.workflow_config = workflow
        self.run_dir = Path(run_dir)
        self.progress = progress

    def run(self) -> pd.DataFrame:
        """The classifications made (subject_id, volunteer, answer, truth), also written to the run directory."""
        if not isinstance(self.backend, LocalBackend):
            raise RuntimeError("job=crowd simulates volunteers on the embedded Panoptes only (backend=local); "
                               "on Zooniverse real volunteers classify the subjects")
        with self.backend.connect() as conn:
            project = find_project(self.project, conn.login)
            workflow = find_workflow(project, self.workflow_name) if project is not None else None
            if workflow is None:
                raise LookupError(f"no project {self.project.display_name!r} with workflow {self.workflow_name!r} "
                                  "on the embedded Panoptes; run a round first (glitchrun) or job=init_project")
            task = TaskSpec.from_workflow(workflow, self.workflow_config)
            made = Volunteering(conn, self.crowd, workflow, task, self.progress).classify_until_retired()
        path = write_csv(made, self.run_dir / "crowd_classifications.csv", CLASSIFICATIONS_SCHEMA,
                         what="crowd classifications")
        correct = float((made["answer"] == made["truth"]).mean()) if len(made) else float("nan")
        log.info("crowd: %d classifications by %d volunteers (%.0f%% gave the true class) -> %s", len(made),
                 made["volunteer"].nunique(), 100 * correct, path)
        return made


class Volunteering:
    """One crowd session on one workflow: which subjects are open, who classifies them next, posting."""

    def __init__(self, conn: Any, crowd: Any, workflow: Workflow, task: TaskSpec, progress: bool) -> None:
        self.conn = conn
        self.crowd = crowd
        self.workflow = workflow
        self.task = task
        self.progress = progress
        self.answers = task.classes
        retirement = workflow.raw.get("retirement") or {}
        if retirement.get("criteria") != "classification_count":
            raise ValueError(f"workflow {workflow.id} retires by {retirement.get('criteria')!r}; the simulated crowd "
                             "needs classification_count retirement to know when to stop")
        self.retirement_count = int(retirement["options"]["count"])
        if self.retirement_count > len(crowd.logins):
            raise ValueError(f"workflow {workflow.id} retires subjects after {self.retirement_count} classifications "
                             f"but the crowd has {len(crowd.logins)} volunteers; raise crowd.volunteers.volunteers")

    def classify_until_retired(self) -> pd.DataFrame:
        truth = self.truths()
        status = self.statuses(list(truth))
        open_ = [s for s in truth if not status[s][1]]
        log.info("crowd: %d of %d subjects of workflow %s to classify", len(open_), len(truth), self.workflow.id)
        done = {s: status[s][0] for s in open_}  # how far along its volunteer order each subject is
        needed = sum(max(self.retirement_count - done[s], 1) for s in open_)
        made = []
        with tqdm(total=needed, desc="crowd", unit="classification", disable=None if self.progress else True) as bar:
            while open_:
                for subject in open_:
                    order = self.crowd.order(subject)
                    if done[subject] >= len(order):
                        raise RuntimeError(f"subject {subject} is not retired after every volunteer classified it")
                    volunteer = order[done[subject]]
                    answer = self.crowd.answer(volunteer, subject, truth[subject], self.answers)
                    self.post(self.crowd.logins[volunteer], subject, answer)
                    made.append((subject, self.crowd.logins[volunteer], self.answers[answer], truth[subject]))
                    done[subject] += 1
                    bar.update()
                status = self.statuses(open_)
                open_ = [s for s in open_ if not status[s][1]]
        return pd.DataFrame(made, columns=list(CLASSIFICATIONS_SCHEMA.columns)).astype(str)

    def truths(self) -> dict[str, str]:
        """The true class of every subject of the workflow's linked sets, from its hidden ``#truth`` key."""
        subjects = {}
        for set_id in self.workflow.raw.get("links", {}).get("subject_sets", []):
            subjects.update({str(s.id): s.metadata for s in set_subjects(set_id)})
        missing = [s for s, metadata in subjects.items() if not metadata.get(TRUTH_KEY)]
        if missing:
            raise ValueError(f"{len(missing)} subjects have no {TRUTH_KEY} metadata (e.g. {', '.join(missing[:5])}): "
                             "the simulated crowd needs the ground truth a simulated campaign hides in each subject")
        unknown = sorted({m[TRUTH_KEY] for m in subjects.values()} - set(self.answers))
        if unknown:
            raise ValueError(f"true classes {unknown} are not answers of workflow {self.workflow.id}")
        return {s: str(metadata[TRUTH_KEY]) for s, metadata in subjects.items()}

    def statuses(self, subject_ids: list[str]) -> dict[str, tuple[int, bool]]:
        """(classifications counted, retired) per subject for this workflow, 100 subjects per request."""
        found = {}
        for start in range(0, len(subject_ids), 100):
            chunk = ",".join(subject_ids[start : start + 100])
            for row in SubjectWorkflowStatus.where(subject_ids=chunk, workflow_id=self.workflow.id, page_size=100):
                found[str(row.raw["links"]["subject"])] = (int(row.raw.get("classifications_count") or 0),
                                                           bool(row.raw.get("retired_at")))
        return {s: found.get(s, (0, False)) for s in subject_ids}

    def post(self, login: str, subject_id: str, answer: int) -> None:
        """One classification as this volunteer, with the metadata Panoptes requires."""
        finished = datetime.now(timezone.utc)
        body = {"classifications": {
            "completed": True,
            "annotations": [self.task.annotation_for(self.answers[answer])],
            "metadata": {
                "started_at": iso(finished - timedelta(seconds=5)), "finished_at": iso(finished),
                "user_agent": "glitchrun-crowd", "user_language": "en", "utc_offset": "0", "source": "api",
                "workflow_version": str(self.workflow.raw["version"]),
            },
            "links": {"project": str(self.workflow.raw["links"]["project"]), "workflow": str(self.workflow.id),
                      "subjects": [subject_id]},
        }}
        self.conn.as_user(login).post("/classifications", json=body)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
