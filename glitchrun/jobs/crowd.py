"""``job=crowd``: simulated volunteers classify the campaign's subjects until glitchrun has retired them.

They work through the Zooniverse API as real volunteers do under the real rules: the owner makes each
volunteer account a ``tester`` of the (private) project (``POST /api/project_roles``); each volunteer asks
the server which subjects to classify (``GET /api/subjects/queued?workflow_id=``, the real front end's
call, which offers non-retired subjects the volunteer has not seen) and posts classifications. Each
answer comes from the subject's hidden ``#truth`` metadata key through the volunteer's skill model
(``glitchrun.crowd.simulated.SimulatedCrowd``), which only a simulated campaign has.

They work in sweeps: in each sweep every still-open subject gets at most one new vote, then glitchrun's
retire pass runs (as cron would run ``job=retire``), so votes are spent one at a time until the
consensus is reached, as Gravity Spy does. The crowd stops when no volunteer is offered a subject to
classify: glitchrun retired them all (or every volunteer has seen the ones left).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from panoptes_client import Workflow
from tqdm import tqdm

from glitchrun.campaign.tasks import TaskSpec
from glitchrun.crowd.simulated import FEATURES_KEY, Crowd
from glitchrun.csvio import write_csv
from glitchrun.jobs.retire import RetireJob
from glitchrun.zooniverse.backend import LocalBackend
from glitchrun.zooniverse.resources import (
    ProjectSpec,
    add_testers,
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
        "sweep": pa.Column(int, pa.Check.ge(1)),
    },
    strict=True,
    coerce=True,
)


class CrowdJob:
    """Simulated volunteers classify the campaign workflow's subjects, sweep by sweep, until none is offered."""

    def __init__(self, backend: Any, crowd: Crowd, campaign: dict[str, Any], run_dir: str | os.PathLike[str],
                 retire: bool = True, queue_size: int = 10, progress: bool = True) -> None:
        if int(queue_size) < 1:
            raise ValueError(f"job.queue_size must be at least 1, got {queue_size}")
        self.backend = backend
        self.crowd = crowd.volunteers
        self.project = ProjectSpec(**campaign["project"])
        self.workflow_name = campaign["workflow"]["display_name"]
        self.workflow_config = campaign["workflow"]
        self.run_dir = Path(run_dir)
        # glitchrun's retire pass between sweeps; without it only Zooniverse's own count retires subjects
        self.retire = RetireJob(backend, crowd.consensus, campaign, self.run_dir / "retire") if retire else None
        self.queue_size = int(queue_size)
        self.progress = progress

    def run(self) -> pd.DataFrame:
        """The classifications made (subject_id, volunteer, answer, truth, sweep), also written to the run directory."""
        if not isinstance(self.backend, LocalBackend):
            raise RuntimeError("job=crowd simulates volunteers on the embedded Panoptes only (backend=local); "
                               "on Zooniverse real volunteers classify the subjects")
        with self.backend.connect() as conn:
            project = find_project(self.project, conn.login)
            workflow = find_workflow(project, self.workflow_name) if project is not None else None
            if workflow is None:
                raise LookupError(f"no project {self.project.display_name!r} with workflow {self.workflow_name!r} "
                                  "on the embedded Panoptes; run a round first (glitchrun) or job=init_project")
            session = Volunteering(conn, self.crowd, workflow, TaskSpec.from_workflow(workflow, self.workflow_config),
                                   self.queue_size, self.progress)
            session.check_truths()
            session.join(project)
            made = session.classify(lambda: self.retire.run_connected(conn) if self.retire else None)
        path = write_csv(made, self.run_dir / "crowd_classifications.csv", CLASSIFICATIONS_SCHEMA,
                         what="crowd classifications")
        correct = float((made["answer"] == made["truth"]).mean()) if len(made) else float("nan")
        log.info("crowd: %d classifications by %d volunteers in %d sweeps (%.0f%% gave the true class) -> %s",
                 len(made), made["volunteer"].nunique(), made["sweep"].max() if len(made) else 0, 100 * correct, path)
        return made


class Volunteering:
    """One crowd session on one workflow: who joins, what the server offers each volunteer, posting."""

    def __init__(self, conn: Any, crowd: Any, workflow: Workflow, task: TaskSpec, queue_size: int,
                 progress: bool) -> None:
        self.conn = conn
        self.crowd = crowd
        self.workflow = workflow
        self.task = task
        self.queue_size = queue_size
        self.progress = progress
        self.answers = task.classes

    def check_truths(self) -> None:
        """Every subject of the workflow's linked sets hides a true class that is an answer (checked before any vote)."""
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

    def join(self, project: Any) -> None:
        """Make every volunteer a tester of the project, as its owner invites testers (needed while it is private)."""
        ids = [self.conn.as_user(login).get("/me")[0]["users"][0]["id"] for login in self.crowd.logins]
        added = add_testers(project, ids)
        if added:
            log.info("crowd: %d volunteers made testers of project %s", added, project.id)

    def offered(self, login: str) -> list[dict[str, Any]]:
        """The subjects the server offers this volunteer now: its queue, less retired or already seen ones
        (the fallback the real selector serves when nothing is left)."""
        page, _ = self.conn.as_user(login).get("/subjects/queued", params={
            "workflow_id": str(self.workflow.id), "page_size": self.queue_size})
        return [s for s in page.get("subjects", []) if not s.get("retired") and not s.get("already_seen")]

    def classify(self, retire_pass: Any) -> pd.DataFrame:
        """Sweeps of at most one new vote per subject, each followed by ``retire_pass()``, until a sweep posts none."""
        made = []
        with tqdm(desc="crowd", unit="classification", disable=None if self.progress else True) as bar:
            for sweep in count(1):
                voted: set[str] = set()
                for volunteer in np.random.default_rng([self.crowd.seed, sweep]).permutation(len(self.crowd.logins)):
                    login = self.crowd.logins[volunteer]
                    for subject in self.offered(login):
                        sid = str(subject["id"])
                        if sid in voted:
                            continue
                        truth = str(subject["metadata"][TRUTH_KEY])
                        answer = self.crowd.answer(int(volunteer), sid, truth, self.answers,
                                                   features=subject["metadata"].get(FEATURES_KEY))
                        self.post(login, sid, answer)
                        made.append((sid, login, self.answers[answer], truth, sweep))
                        voted.add(sid)
                        bar.update()
                if not voted:
                    break
                log.info("crowd sweep %d: %d subjects got a vote", sweep, len(voted))
                retire_pass()
        return pd.DataFrame(made, columns=list(CLASSIFICATIONS_SCHEMA.columns))

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
