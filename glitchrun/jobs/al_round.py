"""``job=al_round``: one round of the campaign, from the retire pass to the verified upload and report.

A round begins with glitchrun's retire pass (``glitchrun.campaign.retire``: sync the classifications
through the API, retire subjects whose consensus is reached or that hit the vote cap). The next batch is
chosen only when every subject of the previous round is labelled or disputed in the campaign state: no
export, and no dependence on Zooniverse counting classifications (it does not on a project that is not live).

The order keeps Zooniverse safe: everything that can fail on bad input (config, data, learner, query,
images, manifest, the account's upload limit) runs before the first write, and each step that changes
something is recorded in the campaign state first, so a re-run after a crash resumes the same round
instead of starting another.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from glitchrun.campaign.retire import ConsensusRetirement, fitted_ml_weight
from glitchrun.campaign.state import CampaignState, Round
from glitchrun.crowd.simulated import FEATURES_KEY, hidden_features
from glitchrun.csvio import write_csv
from glitchrun.data.loaders import Candidates
from glitchrun.images.qscan import STRAIN_COLUMNS
from glitchrun.learning.learner import make_learner, query
from glitchrun.learning.strategies import part_counts, pool_measures
from glitchrun.report import append_upload_section, write_round_report
from glitchrun.zooniverse.backend import Connection
from glitchrun.zooniverse.manifest import Manifest
from glitchrun.zooniverse.resources import (
    ProjectSpec,
    WorkflowSpec,
    check_upload_room,
    ensure_project,
    ensure_subject_set,
    ensure_workflow,
    find_project,
    find_subject_set,
    find_workflow,
    link_subject_set,
    subject_set_members,
)
from glitchrun.zooniverse.uploader import SubjectUploader

log = logging.getLogger(__name__)

KEY = "candidate_id"

#: the round's manifest; predictions and provenance are hidden (``#``) so they cannot anchor volunteers
MANIFEST_SCHEMA = pa.DataFrameSchema(
    {
        KEY: pa.Column(str, unique=True),
        r"image_.*": pa.Column(str, regex=True),
        "ifo": pa.Column(str, nullable=True),
        "#round": pa.Column(int, pa.Check.ge(1)),
        "#strategy": pa.Column(str, pa.Check.str_length(min_value=1)),
        "#score": pa.Column(float, nullable=True),
        "#predicted_class": pa.Column(str),
        "#probability": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "#truth": pa.Column(str, nullable=True, required=False),
    },
    strict=False,
    coerce=True,
)

LABELLED_SCHEMA = pa.DataFrameSchema(
    {KEY: pa.Column(str, unique=True), "label": pa.Column(str), "source": pa.Column(str)}, strict=True
)
POOL_SCHEMA = pa.DataFrameSchema(
    {KEY: pa.Column(str, unique=True), "predicted_class": pa.Column(str), "probability": pa.Column(float)}, strict=True
)


class RoundFailed(RuntimeError):
    """The round's upload did not verify; a re-run resumes it."""


@dataclass
class RoundResult:
    """What a round did, for callers (tests, the simulate job) and the log."""

    status: str  # "uploaded", "waiting"
    round: int | None = None
    subject_set_id: str | None = None
    subject_ids: dict[str, str] = field(default_factory=dict)
    report: Path | None = None
    message: str = ""


#: campaign-state key: the round has said once that the project is not live
NOT_LIVE_NOTED = "not_live_noted"


class ActiveLearningRound:
    """Log in, retire what has consensus, check the previous batch is settled, query, render, upload, verify, report."""

    def __init__(
        self,
        backend: Any,
        data: Any,
        estimator: Any,
        strategy: Any,
        images: Any,
        uploader: SubjectUploader,
        consensus: Any,
        campaign: dict,
        al: dict,
        run_dir: str,
        ask_name: bool | None = None,
        seed: int = 0,
        warm_start: Any = None,
    ) -> None:
        self.backend = backend
        self.data = data
        self.estimator = estimator
        self.strategy = strategy
        self.images = images
        self.uploader = uploader
        self.consensus = consensus
        self.campaign = campaign
        self.project_spec = ProjectSpec(**campaign["project"])
        self.workflow_spec = WorkflowSpec(**campaign["workflow"])
        self.retirement = ConsensusRetirement(consensus, campaign["workflow"],
                                              campaign["retirement"]["max_votes"], self.workflow_spec.retirement_count,
                                              campaign["retirement"].get("min_next_vote_chance", 0.0))
        self.offer_disputed = bool(campaign["retirement"].get("offer_disputed", False))
        self.batch_size = int(al["batch_size"])
        self.subject_set_name = al.get("subject_set_name")
        self.seed_per_class = al.get("seed_per_class")
        self.seed_fraction = al.get("seed_fraction")
        self.run_dir = Path(run_dir)
        self.ask_name = ask_name
        self.seed = seed
        self.warm_start = warm_start  # e.g. glitchrun.learning.warm_start.SyntheticWarmStart; None = cold start
        self.validate()

    def validate(self) -> None:
        """Reject bad settings before any data is loaded or any request is sent."""
        if self.batch_size < 1:
            raise ValueError(f"al.batch_size must be at least 1, got {self.batch_size}")
        if self.seed_per_class is not None and int(self.seed_per_class) < 1:
            raise ValueError(f"al.seed_per_class must be at least 1 (or null), got {self.seed_per_class}")
        if self.seed_fraction is not None and not 0 < float(self.seed_fraction) <= 1:
            raise ValueError(f"al.seed_fraction must be in (0, 1] (or null), got {self.seed_fraction}")
        # a mixed strategy's fractions are otherwise checked only when the batch is queried, after connecting
        fractions = getattr(self.strategy, "keywords", {}).get("fractions")
        if fractions is not None:
            part_counts(fractions, self.batch_size)

    # -- the round ------------------------------------------------------------------------------------
    def run(self) -> RoundResult:
        state = CampaignState(self.campaign["state_dir"])
        try:
            with state.lock():
                result = self.run_locked(state)
        finally:
            state.close()
        log.info(result.message)
        return result

    def run_locked(self, state: CampaignState) -> RoundResult:
        candidates = self.data.load()
        self.check_classes(candidates)
        last = state.last_round()
        with self.backend.connect() as conn:
            project, workflow = self.resources(conn)
            state.put(project_id=project.id, workflow_id=workflow.id)
            if last is not None:
                self.note_not_live(state, project)
                passed = self.retirement.run(state, str(project.id), workflow)
            if last and last.status in ("selected", "uploading"):
                log.info("round %d stopped while %s; resuming it", last.number, last.status)
                return self.upload_round(conn, state, candidates, last, project, workflow)
            if last and last.status == "uploaded":
                active, total, needed = passed.waiting(last.number, self.retirement.max_votes, self.retirement.min_votes)
                if active:
                    message = (f"{active} of {total} subjects of {last.subject_set_name} (subject set "
                               f"{last.subject_set_id}) still need votes, about {needed} more classifications; "
                               "nothing to do until glitchrun retires them (run again, or job=retire)")
                    return RoundResult("waiting", last.number, last.subject_set_id, message=message)
                state.update_round(last.number, "labelled")
                settled = passed.subjects[passed.subjects["round"] == last.number]["status"].value_counts()
                log.info("round %d settled: %d subjects labelled, %d disputed", last.number,
                         settled.get("labelled", 0), settled.get("disputed", 0))
            number = last.number + 1 if last else 1
            name = self.new_set_name(state, number)
            if number == 1:
                self.seed_labels(state, candidates)
            selected = self.select(state, candidates, number, name)
            return self.upload_round(conn, state, candidates, selected, project, workflow)

    def note_not_live(self, state: CampaignState, project: Any) -> None:
        """Say once per campaign that Zooniverse does not count this project's classifications."""
        if project.raw.get("live") or state.get(NOT_LIVE_NOTED):
            return
        log.warning("project %s is not live: Zooniverse stores its classifications but does not count them or "
                    "retire subjects by count; glitchrun reads the classifications and retires subjects itself "
                    "(at the start of each round, or with job=retire)", project.id)
        state.put(**{NOT_LIVE_NOTED: "1"})

    def check_classes(self, candidates: Candidates) -> None:
        unknown = set(candidates.classes) - set(self.workflow_spec.classes)
        if unknown:
            raise ValueError(f"the data's classes {sorted(unknown)} are not answers of the workflow (campaign.workflow.classes)")

    def resources(self, conn: Connection) -> tuple[Any, Any]:
        """The campaign's project and workflow; made on first use on the embedded backend only."""
        if conn.server is not None:
            project, _ = ensure_project(self.project_spec, conn.login)
            workflow, _ = ensure_workflow(project, self.workflow_spec)
            return project, workflow
        project = find_project(self.project_spec, conn.login)
        workflow = find_workflow(project, self.workflow_spec.display_name) if project is not None else None
        if workflow is None:
            raise LookupError(
                f"no project {self.project_spec.display_name!r} with workflow {self.workflow_spec.display_name!r} "
                f"at {conn.endpoint}; create them first with `glitchrun job=init_project backend=...`"
            )
        return project, workflow

    # -- naming ---------------------------------------------------------------------------------------
    def new_set_name(self, state: CampaignState, number: int) -> str:
        """The new subject set's name: from config (``{round}`` and ``{campaign}`` filled in), asked, or generated."""
        fields = {"round": number, "campaign": self.campaign["name"]}
        generated = f"{self.campaign['name']}-round-{number:03d}"
        if self.subject_set_name:
            name = str(self.subject_set_name).format(**fields)
        elif self.ask_name or (self.ask_name is None and sys.stdin.isatty()):
            name = input(f"Name of the new subject set [{generated}]: ").strip() or generated
        else:
            name = generated
            log.info("al.subject_set_name is not set; using the generated name %r", name)
        used = state.rounds()
        if name in set(used["subject_set_name"]):
            raise ValueError(f"subject set name {name!r} was already used by an earlier round; choose another "
                             "(e.g. al.subject_set_name='glitches-round-{round}')")
        return name

    # -- labels ---------------------------------------------------------------------------------------
    def seed_labels(self, state: CampaignState, candidates: Candidates) -> None:
        """First round: known labels (or, in a simulated campaign, revealed truth) seed the labelled pool."""
        frame = candidates.frame
        known = frame["label"].dropna()
        source = "data"
        if known.empty:
            known = frame["truth"].dropna()
            source = "seed"
        if known.empty:
            raise ValueError("no labelled candidates to seed the learner: the data has neither labels nor ground truth")
        rng = np.random.default_rng(self.seed)
        if self.seed_fraction is not None:
            chosen = known.sample(frac=float(self.seed_fraction), random_state=rng)
        elif self.seed_per_class is not None:
            chosen = known.groupby(known, group_keys=False).apply(
                lambda g: g.sample(min(len(g), int(self.seed_per_class)), random_state=rng)
            )
        else:
            chosen = known
        state.add_labels({KEY: c, "label": l, "source": source, "round": 0} for c, l in chosen.items())
        log.info("seeded the labelled pool with %d %s labels over %d classes", len(chosen), source, chosen.nunique())

    # -- query ----------------------------------------------------------------------------------------
    def select(self, state: CampaignState, candidates: Candidates, number: int, name: str) -> Round:
        """Fit the learner on every label so far and choose this round's batch; recorded before any upload."""
        labels = state.labels()
        known = labels.index.intersection(candidates.frame.index)
        if known.empty:
            raise ValueError("the campaign's labels match no candidate of this data; is it the campaign's dataset?")
        queried = pd.Index(sorted(state.queried(except_disputed=self.offer_disputed)))
        pool_ids = candidates.frame.index.difference(known).difference(queried)
        if pool_ids.empty:
            raise ValueError("the candidate pool is empty: every candidate is labelled or already queried")
        y = labels.loc[known, "label"].to_numpy(dtype=object)
        estimator = self.estimator if self.warm_start is None else self.warm_start.around(
            self.estimator, candidates, labels.loc[known][labels.loc[known, "round"] == 0]["label"])
        learner = make_learner(estimator, candidates.features(known), y)
        X_pool = candidates.features(pool_ids)
        chosen = query(learner, self.strategy, X_pool, self.batch_size)
        batch = pd.DataFrame({
            KEY: pool_ids[chosen.indices].astype(str),
            "strategy": chosen.chosen_by,
            "score": chosen.scores.astype(float),
            "predicted_class": chosen.predicted.astype(str),
            "probability": chosen.probability.astype(float),
            "distribution": [dict(zip(map(str, chosen.classes), map(float, row))) for row in chosen.proba],
            "tie_break": chosen.drawn,
        })
        weight = fitted_ml_weight(self.estimator, candidates.features(known), y, self.workflow_spec.classes, self.seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pool_predicted = self.save_pools(labels.loc[known], learner, pool_ids, X_pool)
        write_round_report(self.run_dir, state, candidates, number, name, batch, pool_predicted, chosen.all_scores,
                           estimator, self.consensus, list(self.workflow_spec.classes))
        log.info("round %d: chose %d of %d pool candidates (%s; %d by random tie-break)", number, len(batch),
                 len(pool_ids), ", ".join(f"{k}: {v}" for k, v in batch["strategy"].value_counts().items()),
                 batch["tie_break"].sum())
        return state.start_round(number, name, str(self.run_dir), batch, ml_weight=weight)

    def save_pools(self, labelled: pd.DataFrame, learner: Any, pool_ids: pd.Index, X_pool: np.ndarray) -> np.ndarray:
        """Write the labelled pool, and the unlabelled pool with the learner's predictions; returns those."""
        measures = pool_measures(learner, X_pool, {"confidence", "predicted_class"})  # chunked: no pool x classes matrix
        predicted = np.asarray(learner.estimator.classes_)[measures["predicted_class"]]
        write_csv(labelled.reset_index()[[KEY, "label", "source"]], self.run_dir / "labelled_pool.csv",
                  LABELLED_SCHEMA, what="labelled pool")
        pool = pd.DataFrame({KEY: pool_ids.astype(str), "predicted_class": predicted.astype(str),
                             "probability": measures["confidence"]})
        write_csv(pool, self.run_dir / "unlabelled_pool.csv", POOL_SCHEMA, what="unlabelled pool")
        return predicted

    # -- images, manifest, upload ---------------------------------------------------------------------
    def manifest(self, candidates: Candidates, selected: Round, batch: pd.DataFrame) -> Manifest:
        rows = candidates.frame.loc[batch[KEY]]
        images = self.images.render(rows, self.run_dir / "images")
        media = [column for column in images.columns if column not in STRAIN_COLUMNS]
        frame = pd.DataFrame({KEY: batch[KEY].to_numpy()})
        for column in media:
            frame[column] = ("images/" + images.loc[batch[KEY], column].astype(str)).to_numpy()
        frame["ifo"] = rows["ifo"].to_numpy(dtype=object)
        frame["event_time"] = rows["event_time"].to_numpy(dtype=float)
        frame["#round"] = selected.number
        frame["#strategy"] = batch["strategy"].to_numpy()
        frame["#score"] = batch["score"].to_numpy()
        frame["#predicted_class"] = batch["predicted_class"].to_numpy()
        frame["#probability"] = batch["probability"].to_numpy()
        for column in STRAIN_COLUMNS:  # where each subject's strain came from (never synthetic for a real event)
            frame[f"#{column}"] = images.loc[batch[KEY], column].to_numpy()
        if candidates.frame["label"].isna().all() and rows["truth"].notna().any():
            frame["#truth"] = rows["truth"].to_numpy(dtype=object)  # simulated campaign: for the simulated crowd only
            frame[FEATURES_KEY] = hidden_features(rows)  # how ambiguous each glitch is, for the difficulty-aware crowd
        path = write_csv(frame, self.run_dir / "manifest.csv", MANIFEST_SCHEMA, what="round manifest")
        log.info("manifest of %d subjects written to %s", len(frame), path)
        return Manifest.from_frame(frame, KEY, self.run_dir, media_columns=media)

    def upload_round(self, conn: Connection, state: CampaignState, candidates: Candidates, selected: Round,
                     project: Any, workflow: Any) -> RoundResult:
        batch = state.batch(selected.number)
        missing = pd.Index(batch[KEY]).difference(candidates.frame.index)
        if not missing.empty:
            raise ValueError(f"round {selected.number} chose candidates the data no longer has: {list(missing[:5])}")
        existing = find_subject_set(project, selected.subject_set_name)
        check_upload_room(len(batch) - (len(subject_set_members(existing.id)) if existing is not None else 0))
        manifest = self.manifest(candidates, selected, batch)
        subject_set, created = ensure_subject_set(project, selected.subject_set_name)
        if created is False and selected.subject_set_id not in (None, str(subject_set.id)):
            raise RuntimeError(f"subject set {selected.subject_set_name!r} is not the one round {selected.number} made")
        state.update_round(selected.number, "uploading", subject_set_id=str(subject_set.id))
        outcome = self.uploader.upload(manifest, str(project.id), str(subject_set.id), self.run_dir)
        state.record_subjects(selected.number, outcome.subject_ids)
        if not outcome.ok:
            raise RoundFailed(
                f"round {selected.number}: upload to subject set {subject_set.id} did not verify "
                f"({len(outcome.uploaded)} uploaded, {len(outcome.adopted)} adopted, {len(outcome.skipped)} already there, "
                f"{len(outcome.failed)} failed); "
                f"see {self.run_dir / 'upload_report.csv'} and run glitchrun again to resume"
            )
        link_subject_set(workflow, subject_set)
        state.update_round(selected.number, "uploaded")
        report = append_upload_section(self.run_dir, selected.number, str(subject_set.id), outcome, selected.run_dir)
        message = (f"round {selected.number} uploaded: subject set {subject_set.id} ({selected.subject_set_name!r}) "
                   f"holds {len(manifest.keys)} verified subjects, linked to workflow {workflow.id}; "
                   f"report: {report}")
        return RoundResult("uploaded", selected.number, str(subject_set.id), dict(outcome.subject_ids), report, message)
