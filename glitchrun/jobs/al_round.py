"""``job=al_round``: one round of the campaign, from the retire pass to the verified upload and report.

A round begins with glitchrun's retire pass (``glitchrun.campaign.retire``: sync the classifications
through the API, retire subjects whose consensus is reached or that hit the vote cap). The next batch is
chosen only when every subject of the previous round is labelled or disputed in the campaign state: no
export, and no dependence on Zooniverse counting classifications (it does not on a project that is not live).

The order keeps Zooniverse safe: everything that can fail on bad input (config, data, learner, query,
images, manifest, the account's upload limit) runs before the first write, and each step that changes
something is recorded in the campaign state first, so a re-run after a crash resumes the same round
instead of starting another. A round that fails before its first write to Zooniverse leaves the campaign
state as it found it; one stopped later but before any subject was uploaded (status ``selected``) is resumed,
or chosen again with ``rechoose`` or when the settings that chose its batch changed.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from glitchrun.campaign.gold import (
    GOLD_TYPE,
    LABEL_KEY,
    STRATEGY,
    TYPE_KEY,
    choose_known,
    known_count,
    known_set_name,
    use_training_sets,
)
from glitchrun.campaign.retire import ConsensusRetirement, fitted_ml_weight, out_of_fold
from glitchrun.campaign.state import CampaignState, Round
from glitchrun.crowd.simulated import FEATURES_KEY, hidden_features
from glitchrun.csvio import write_csv
from glitchrun.data.loaders import Candidates
from glitchrun.errors import add_note
from glitchrun.images.qscan import STRAIN_COLUMNS
from glitchrun.learning.learner import make_learner, query
from glitchrun.learning.strategies import part_counts, pool_measures
from glitchrun.learning.warm_start import CHECKS_KEY, checks_from_json, checks_to_json
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
    set_subject_count,
)
from glitchrun.zooniverse.uploader import SubjectUploader, UploadOutcome

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
        # known-answer subjects only, as Gravity Spy marks its gold images (glitchrun/campaign/gold.py)
        TYPE_KEY: pa.Column(str, pa.Check.eq(GOLD_TYPE), nullable=True, required=False),
        LABEL_KEY: pa.Column(str, nullable=True, required=False),
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


#: a memory address in a repr (``<function mixed at 0x7f...>``): differs between runs of the same settings
ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
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
        rechoose: bool = False,
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
        self.retirement = ConsensusRetirement.from_campaign(consensus, campaign)
        self.offer_disputed = bool(campaign["retirement"].get("offer_disputed", False))
        self.known_share = float(campaign.get("gold", {}).get("share", 0.0))
        self.batch_size = int(al["batch_size"])
        self.subject_set_name = al.get("subject_set_name")
        self.seed_per_class = al.get("seed_per_class")
        self.seed_fraction = al.get("seed_fraction")
        self.run_dir = Path(run_dir)
        self.ask_name = ask_name
        self.seed = seed
        self.warm_start = warm_start  # e.g. glitchrun.learning.warm_start.SyntheticWarmStart; None = cold start
        self.rechoose = rechoose
        self.validate()

    def validate(self) -> None:
        """Reject bad settings before any data is loaded or any request is sent."""
        if self.batch_size < 1:
            raise ValueError(f"al.batch_size must be at least 1, got {self.batch_size}")
        if self.seed_per_class is not None and int(self.seed_per_class) < 1:
            raise ValueError(f"al.seed_per_class must be at least 1 (or null), got {self.seed_per_class}")
        if self.seed_fraction is not None and not 0 < float(self.seed_fraction) <= 1:
            raise ValueError(f"al.seed_fraction must be in (0, 1] (or null), got {self.seed_fraction}")
        known_count(self.known_share, self.batch_size)
        # a mixed strategy's fractions are otherwise checked only when the batch is queried, after connecting
        fractions = getattr(self.strategy, "keywords", {}).get("fractions")
        if fractions is not None:
            part_counts(fractions, self.batch_size)

    # -- the round ------------------------------------------------------------------------------------
    def run(self) -> RoundResult:
        with CampaignState.locked(self.campaign["state_dir"]) as state:
            result = self.run_locked(state)
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
                if not self.choose_again(state, last):
                    log.info("round %d stopped while %s; resuming it", last.number, last.status)
                    return self.resume_round(state, candidates, last, project, workflow)
                last = state.last_round()
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
            try:  # until the first write to Zooniverse, a failure leaves the campaign state as it found it
                if number == 1:
                    self.seed_labels(state, candidates)
                selected = self.select(state, candidates, number, name)
                manifests = self.prepare(state, candidates, selected, project)
            except BaseException:
                state.discard_round(number)
                raise
            return self.upload_round(state, selected, manifests, project, workflow)

    def note_not_live(self, state: CampaignState, project: Any) -> None:
        """Say once per campaign that Zooniverse does not count this project's classifications."""
        if project.raw.get("live") or state.get(NOT_LIVE_NOTED):
            return
        log.warning("project %s is not live: Zooniverse stores its classifications but does not count them or "
                    "retire subjects by count; glitchrun reads the classifications and retires subjects itself "
                    "(at the start of each round, or with job=retire)", project.id)
        state.put(**{NOT_LIVE_NOTED: "1"})

    # -- a round stopped before its upload -------------------------------------------------------------
    def selection(self) -> dict[str, str]:
        """The settings that chose a batch, recorded with it: a stopped round whose batch nothing of which
        was uploaded is chosen again when one of them changed (e.g. a smaller al.batch_size)."""
        settings = {"al.batch_size": self.batch_size, "al.seed_per_class": self.seed_per_class,
                    "al.seed_fraction": self.seed_fraction, "seed": self.seed, "data": self.data,
                    "learner": self.estimator, "strategy": self.strategy,
                    "campaign.retirement.offer_disputed": self.offer_disputed, "campaign.gold.share": self.known_share}
        return {key: ADDRESS.sub("", repr(value)) for key, value in settings.items()}

    def choose_again(self, state: CampaignState, stopped: Round) -> bool:
        """Whether to drop a stopped round's batch and choose a new one: only while nothing of it was uploaded
        (status ``selected``), and only when asked (``job.rechoose=true``) or when the settings that chose it
        changed; otherwise it is resumed."""
        if stopped.status != "selected":
            if self.rechoose:
                raise ValueError(f"round {stopped.number} began uploading to subject set {stopped.subject_set_id} "
                                 f"({stopped.subject_set_name!r}), so its batch can only be resumed: run glitchrun "
                                 "again without job.rechoose=true")
            return False
        before = state.round_selection(stopped.number)
        changed = [key for key, value in self.selection().items() if before is not None and before.get(key) != value]
        if not (self.rechoose or changed):
            return False
        state.discard_round(stopped.number)
        log.info("round %d: nothing of its batch was uploaded; %s, so its batch is chosen again", stopped.number,
                 "job.rechoose=true" if self.rechoose else f"{', '.join(changed)} changed since it was chosen")
        return True

    def resume_round(self, state: CampaignState, candidates: Candidates, stopped: Round, project: Any,
                     workflow: Any) -> RoundResult:
        try:
            manifests = self.prepare(state, candidates, stopped, project)
        except Exception as err:
            if stopped.status == "selected":
                add_note(err, f"round {stopped.number}'s batch was chosen earlier and nothing of it was uploaded: "
                              "job.rechoose=true chooses a new one (so does a change of al.*, data, learner or "
                              "strategy)")
            raise
        return self.upload_round(state, stopped, manifests, project, workflow)

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
    def warm_started(self, state: CampaignState, candidates: Candidates, labels: pd.DataFrame, known: pd.Index) -> Any:
        """The learner warm-started from the campaign's starting labels, with the held-out checks of earlier
        rounds (kept in the campaign state, so that a round chosen again decides as before) and this round's
        if one is due on the labels known now."""
        start = labels.loc[known][labels.loc[known, "round"] == 0]["label"]
        settings = self.warm_start.settings(self.estimator)
        warm = self.warm_start.around(self.estimator, candidates, start, labels.loc[known, "label"],
                                      checks_from_json(state.get(CHECKS_KEY), settings))
        state.put(**{CHECKS_KEY: checks_to_json(warm.checks, settings)})
        return warm

    def select(self, state: CampaignState, candidates: Candidates, number: int, name: str) -> Round:
        """Fit the learner on every label so far and choose this round's batch; recorded before any upload."""
        labels = state.labels()
        known = labels.index.intersection(candidates.frame.index)
        if known.empty:
            raise ValueError("the campaign's labels match no candidate of this data; is it the campaign's dataset?")
        queried = pd.Index(sorted(state.queried(except_disputed=self.offer_disputed)))
        # rows with a known label are never sent to volunteers: those the seed left out train nothing either
        pool_ids = candidates.pool().index.difference(known).difference(queried)
        if pool_ids.empty:
            raise ValueError("the candidate pool is empty: every candidate is labelled or already queried")
        y = labels.loc[known, "label"].to_numpy(dtype=object)
        classes = list(self.workflow_spec.classes)
        estimator = self.estimator if self.warm_start is None else self.warm_started(state, candidates, labels, known)
        learner = make_learner(estimator, candidates.features(known), y)
        oof = out_of_fold(self.estimator, candidates.features(known), y, classes, self.seed)
        answers = self.known_answers(state, labels, known, oof)
        X_pool = candidates.features(pool_ids)
        chosen = query(learner, self.strategy, X_pool, self.batch_size - len(answers))
        batch = pd.DataFrame({
            KEY: pool_ids[chosen.indices].astype(str),
            "strategy": chosen.chosen_by,
            "score": chosen.scores.astype(float),
            "predicted_class": chosen.predicted.astype(str),
            "probability": chosen.probability.astype(float),
            "distribution": [dict(zip(map(str, chosen.classes), map(float, row))) for row in chosen.proba],
            "tie_break": chosen.drawn,
        })
        if len(answers):  # their learner's vote is out of fold, as a queried candidate's is: never trained on it
            proba = oof[known.get_indexer(answers.index)]
            batch = pd.concat([batch, pd.DataFrame({
                KEY: answers.index.astype(str), "strategy": STRATEGY, "score": np.nan,
                "predicted_class": np.asarray(classes)[proba.argmax(axis=1)], "probability": proba.max(axis=1),
                "distribution": [dict(zip(classes, map(float, row))) for row in proba], "tie_break": False})],
                ignore_index=True)
        weight = fitted_ml_weight(self.estimator, candidates.features(known), y, classes, self.seed, oof)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pool_predicted = self.save_pools(labels.loc[known], learner, pool_ids, X_pool)
        write_round_report(self.run_dir, state, candidates, number, name, batch, pool_predicted, chosen.all_scores,
                           estimator, self.consensus, list(self.workflow_spec.classes))
        log.info("round %d: chose %d of %d pool candidates (%s; %d by random tie-break)", number, len(batch),
                 len(pool_ids), ", ".join(f"{k}: {v}" for k, v in batch["strategy"].value_counts().items()),
                 batch["tie_break"].sum())
        return state.start_round(number, name, str(self.run_dir), batch, ml_weight=weight, selection=self.selection())

    def known_answers(self, state: CampaignState, labels: pd.DataFrame, known: pd.Index,
                      oof: np.ndarray | None) -> pd.Series:
        """This round's known-answer subjects (candidate id -> class): ``campaign.gold.share`` of the batch."""
        wanted = known_count(self.known_share, self.batch_size)
        if wanted and oof is None:
            log.info("no known-answer subjects this round: no class has two labels to give them an out-of-fold "
                     "learner's vote")
            return pd.Series(dtype=object)
        answers = choose_known(labels, known, state.gold_uses(), wanted, self.seed)
        if len(answers) < wanted:
            log.warning("only %d of the %d known-answer subjects campaign.gold.share asks for: no more candidates of "
                        "known class", len(answers), wanted)
        elif not wanted and self.known_share:
            log.info("campaign.gold.share %g of %d subjects rounds to no known-answer subject", self.known_share,
                     self.batch_size)
        return answers

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
    def manifest(self, candidates: Candidates, selected: Round, batch: pd.DataFrame,
                 known: pd.Series) -> tuple[Manifest, Manifest | None]:
        """The round's manifest (``manifest.csv``), as two uploads: the learner's picks, and the known-answer
        subjects (``known``: candidate id -> class) with Gravity Spy's hidden marks ``#Type``/``#Label``."""
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
        is_known = frame[KEY].isin(known.index)
        if is_known.any():
            frame[TYPE_KEY] = np.where(is_known, GOLD_TYPE, None)
            frame[LABEL_KEY] = frame[KEY].map(known)
        path = write_csv(frame, self.run_dir / "manifest.csv", MANIFEST_SCHEMA, what="round manifest")
        log.info("manifest of %d subjects (%d of known class) written to %s", len(frame), int(is_known.sum()), path)
        picked = Manifest.from_frame(frame[~is_known].drop(columns=[TYPE_KEY, LABEL_KEY], errors="ignore"), KEY,
                                     self.run_dir, media_columns=media)
        marked = (Manifest.from_frame(frame[is_known], KEY, self.run_dir, media_columns=media)
                  if is_known.any() else None)
        return picked, marked

    def known_of(self, state: CampaignState, selected: Round) -> pd.Series:
        """The round's known-answer subjects (candidate id -> class), as its batch recorded them."""
        batch = state.batch(selected.number)
        return state.labels()["label"].reindex(batch.loc[batch["strategy"] == STRATEGY, KEY]).dropna()

    def prepare(self, state: CampaignState, candidates: Candidates, selected: Round,
                project: Any) -> tuple[Manifest, Manifest | None]:
        """Everything before the first write to Zooniverse: the account's room for the batch, its Q-scans,
        the manifest (the learner's picks, and the known-answer subjects if any)."""
        batch = state.batch(selected.number)
        missing = pd.Index(batch[KEY]).difference(candidates.frame.index)
        if not missing.empty:
            raise ValueError(f"round {selected.number} chose candidates the data no longer has: {list(missing[:5])}")
        known = self.known_of(state, selected)
        names = [selected.subject_set_name] + ([known_set_name(selected.subject_set_name)] if len(known) else [])
        existing = [find_subject_set(project, name) for name in names]
        check_upload_room(len(batch) - sum(set_subject_count(s.id) for s in existing if s is not None))
        return self.manifest(candidates, selected, batch, known)

    def upload_round(self, state: CampaignState, selected: Round, manifests: tuple[Manifest, Manifest | None],
                     project: Any, workflow: Any) -> RoundResult:
        picked, marked = manifests
        subject_set, created = ensure_subject_set(project, selected.subject_set_name)
        if created is False and selected.subject_set_id not in (None, str(subject_set.id)):
            raise RuntimeError(f"subject set {selected.subject_set_name!r} is not the one round {selected.number} made")
        state.update_round(selected.number, "uploading", subject_set_id=str(subject_set.id),
                           upload_run_dir=str(self.run_dir))
        outcome = self.uploader.upload(picked, str(project.id), str(subject_set.id), self.run_dir)
        state.record_subjects(selected.number, outcome.subject_ids)
        if marked is not None:  # the known answers: a training set of the workflow, shown at the configured share
            known_set, _ = ensure_subject_set(project, known_set_name(selected.subject_set_name))
            answered = self.uploader.upload(marked, str(project.id), str(known_set.id), self.run_dir / "known_answers")
            known = self.known_of(state, selected).to_dict()
            state.record_subjects(selected.number, answered.subject_ids, known=known)
            outcome = merged(outcome, answered)
        if not outcome.ok:
            raise RoundFailed(
                f"round {selected.number}: upload to subject set {subject_set.id} did not verify "
                f"({len(outcome.uploaded)} uploaded, {len(outcome.adopted)} adopted, {len(outcome.skipped)} already there, "
                f"{len(outcome.failed)} failed); "
                f"see {self.run_dir / 'upload_report.csv'} and run glitchrun again to resume"
            )
        if marked is not None:  # a training set before it is linked: never shown or counted as an ordinary set
            use_training_sets(workflow, [str(known_set.id)], self.known_share)
            link_subject_set(workflow, known_set)
        link_subject_set(workflow, subject_set)
        state.update_round(selected.number, "uploaded")
        report = append_upload_section(self.run_dir, selected.number, str(subject_set.id), outcome, selected.run_dir)
        message = (f"round {selected.number} uploaded: subject set {subject_set.id} ({selected.subject_set_name!r}) "
                   f"holds {len(picked.keys)} verified subjects"
                   + (f", {known_set.display_name!r} ({known_set.id}) {len(marked.keys)} of known class"
                      if marked is not None else "")
                   + f", linked to workflow {workflow.id}; report: {report}")
        return RoundResult("uploaded", selected.number, str(subject_set.id), dict(outcome.subject_ids), report, message)


def merged(first: UploadOutcome, second: UploadOutcome) -> UploadOutcome:
    """Two uploads of one round as one outcome (the first one's report)."""
    return UploadOutcome(first.uploaded + second.uploaded, first.adopted + second.adopted,
                         first.skipped + second.skipped, first.failed + second.failed,
                         {**first.subject_ids, **second.subject_ids}, first.ok and second.ok, first.report)
