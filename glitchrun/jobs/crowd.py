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
classify: glitchrun retired them all (or every volunteer has seen the ones left). Then the crowd's project
experts (``reviewers``, given the ``expert`` role) review the subjects glitchrun disputed, in Zooniverse's
gold-standard mode (``gold_standard: true``), and one more retire pass turns their answers into labels.
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

from glitchrun.campaign.gold import EXPERT_ROLE
from glitchrun.campaign.state import DISPUTED, CampaignState
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
    grant_roles,
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
        "expert": pa.Column(bool),  # a project expert's review in gold-standard mode (after the sweeps)
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
        self.state_dir = campaign["state_dir"]
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
            if self.retire and self.crowd.reviewer_logins:
                reviewed = session.review(self.disputed(), int(made["sweep"].max()) + 1 if len(made) else 1)
                if len(reviewed):
                    self.retire.run_connected(conn)
                    made = pd.concat([made, reviewed], ignore_index=True)
        path = write_csv(made, self.run_dir / "crowd_classifications.csv", CLASSIFICATIONS_SCHEMA,
                         what="crowd classifications")
        correct = float((made["answer"] == made["truth"]).mean()) if len(made) else float("nan")
        log.info("crowd: %d classifications by %d volunteers in %d sweeps (%.0f%% gave the true class) -> %s",
                 len(made), made["volunteer"].nunique(), made["sweep"].max() if len(made) else 0, 100 * correct, path)
        return made

    def disputed(self) -> list[str]:
        """The campaign's disputed subjects no expert has classified yet."""
        state = CampaignState(self.state_dir)
        try:
            subjects = state.subjects()
            reviewed = set(state.votes(expert=True)["subject_id"])
        finally:
            state.close()
        return sorted((s for s in subjects.index[subjects["status"] == DISPUTED] if s not in reviewed), key=int)


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
        self.metadata: dict[str, dict[str, Any]] = {}  # the workflow's subjects' metadata, read by check_truths

    def check_truths(self) -> None:
        """Every subject of the workflow's linked sets hides a true class that is an answer (checked before any vote)."""
        subjects = self.metadata
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
        """Make every volunteer a tester of the project, as its owner invites testers (needed while it is private),
        and the reviewers its experts (and testers, to see it while it is private)."""
        added = add_testers(project, [self.user_id(login) for login in self.crowd.logins])
        if added:
            log.info("crowd: %d volunteers made testers of project %s", added, project.id)
        experts = grant_roles(project, [self.user_id(login) for login in self.crowd.reviewer_logins],
                              [EXPERT_ROLE, "tester"])
        if experts:
            log.info("crowd: %d reviewers given the expert role of project %s", experts, project.id)

    def user_id(self, login: str) -> str:
        return self.conn.as_user(login).get("/me")[0]["users"][0]["id"]

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
                        made.append((sid, login, self.answers[answer], truth, sweep, False))
                        voted.add(sid)
                        bar.update()
                if not voted:
                    break
                log.info("crowd sweep %d: %d subjects got a vote", sweep, len(voted))
                retire_pass()
        return pd.DataFrame(made, columns=list(CLASSIFICATIONS_SCHEMA.columns))

    def review(self, subject_ids: list[str], sweep: int) -> pd.DataFrame:
        """The reviewers, in turn, classify these subjects in gold-standard mode (as experts reviewing the subjects
        glitchrun lists as disputed)."""
        made = []
        for n, sid in enumerate(subject_ids):
            reviewer = n % len(self.crowd.reviewer_logins)
            login, metadata = self.crowd.reviewer_logins[reviewer], self.metadata[sid]
            truth = str(metadata[TRUTH_KEY])
            answer = self.crowd.answer(len(self.crowd.logins) + reviewer, sid, truth, self.answers,
                                       features=metadata.get(FEATURES_KEY))
            self.post(login, sid, answer, gold_standard=True)
            made.append((sid, login, self.answers[answer], truth, sweep, True))
        if made:
            log.info("crowd: %d disputed subjects reviewed by %d experts in gold-standard mode", len(made),
                     min(len(made), len(self.crowd.reviewer_logins)))
        return pd.DataFrame(made, columns=list(CLASSIFICATIONS_SCHEMA.columns))

    def post(self, login: str, subject_id: str, answer: int, gold_standard: bool = False) -> None:
        """One classification as this volunteer (a project expert's in gold-standard mode), with the metadata
        Panoptes requires."""
        finished = datetime.now(timezone.utc)
        body = {"classifications": {
            **({"gold_standard": True} if gold_standard else {}),
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
