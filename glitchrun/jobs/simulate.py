"""``job=simulate``: N full campaign rounds on the embedded Panoptes with a simulated crowd, and a learning curve.

Each round is the real thing, on the loop a campaign runs on zooniverse.org: the ``al_round`` job
(beginning with glitchrun's retire pass) queries and uploads a batch, the ``crowd`` job's volunteers
classify it through the API, sweep by sweep, with a retire pass after each, until glitchrun has retired
every subject by consensus or as disputed. No export is made. Only the evaluation is added: after every
round the configured learner is fitted on the campaign's labels and scored on a held-out split the
campaign never sees, and the volunteer votes spent so far are counted.

A simulation owns its server and campaign: both live in its run directory, so the runs of a sweep
(``-m ... hydra/launcher=joblib``) never share state, and every run starts from round 1.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from matplotlib.figure import Figure
from sklearn.base import clone
from sklearn.metrics import accuracy_score, f1_score

from glitchrun.campaign.state import CampaignState
from glitchrun.csvio import write_csv
from glitchrun.data.loaders import Candidates
from glitchrun.learning.warm_start import CHECKS_KEY, checks_from_json
from glitchrun.report import save
from glitchrun.zooniverse.backend import LocalBackend

log = logging.getLogger(__name__)

CURVE = "learning_curve.csv"
FRACTION = pa.Check.in_range(0.0, 1.0)
CURVE_SCHEMA = pa.DataFrameSchema(
    {
        "round": pa.Column(int, pa.Check.ge(0)),
        "labels": pa.Column(int, pa.Check.ge(0)),
        "macro_f1": pa.Column(float, FRACTION),
        "accuracy": pa.Column(float, FRACTION),
        "label_accuracy": pa.Column(float, FRACTION),  # share of the labels used that are the true class
        "votes": pa.Column(int, pa.Check.ge(0)),  # volunteer votes spent by the campaign so far
        "disputed": pa.Column(int, pa.Check.ge(0)),  # subjects retired without consensus so far
        "full_pool_macro_f1": pa.Column(float, FRACTION),  # the learner trained on the whole pool's truth
    },
    strict=True,
)


@dataclass
class Subset:
    """A data component that hands out fixed candidates: the pool a simulated campaign may query."""

    candidates: Candidates

    def load(self) -> Candidates:
        return self.candidates


class Simulation:
    """Run ``rounds`` rounds (round -> crowd with retire passes) and record the learning curve."""

    def __init__(self, round: Callable[..., Any], crowd_job: Callable[..., Any], backend: Any, data: Any, estimator: Any, campaign: dict[str, Any], run_dir: str | os.PathLike[str],
                 rounds: int = 3, test_fraction: float = 0.2, seed: int = 0, warm_start: Any = None) -> None:
        if not isinstance(backend, LocalBackend):
            raise RuntimeError("job=simulate runs on the embedded Panoptes only (backend=local)")
        if int(rounds) < 1:
            raise ValueError(f"job.rounds must be at least 1, got {rounds}")
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"job.test_fraction must be in (0, 1), got {test_fraction}")
        self.round = round
        self.crowd_job = crowd_job
        self.data = data
        self.estimator = estimator
        self.run_dir = Path(run_dir)
        self.backend = backend
        self.backend.storage_dir = self.run_dir / "embedded_panoptes"
        self.campaign = {**campaign, "state_dir": str(self.run_dir / "campaign")}
        self.rounds = int(rounds)
        self.test_fraction = float(test_fraction)
        self.seed = int(seed)
        self.warm_start = warm_start  # the rounds' warm start, so that the learner scored is the one that queried

    def run(self) -> pd.DataFrame:
        """The learning curve (one row per round, round 0 = the seed labels), also as CSV and PNG."""
        with closing(CampaignState(self.campaign["state_dir"])) as state:
            fresh = state.last_round() is None
        if not fresh:
            raise RuntimeError(f"{self.campaign['state_dir']} already holds a campaign; "
                               "a simulation starts from a fresh one")
        candidates = with_truth(self.data.load())
        test = held_out(candidates.frame["truth"], self.test_fraction, self.seed)
        pool = Candidates(candidates.frame.drop(index=test), candidates.feature_spec, candidates.classes)
        scorer = Scorer(self.estimator, pool, candidates.features(test),
                        candidates.frame.loc[test, "truth"].to_numpy(dtype=object))
        log.info("simulation: %d rounds on %d pool candidates, %d held out; full-pool macro-F1 %.3f",
                 self.rounds, len(pool.frame), len(test), scorer.full_pool_macro_f1)
        rows = []
        for number in range(1, self.rounds + 1):
            step_dir = self.run_dir / "rounds" / f"{number:03d}"
            result = self.round(backend=self.backend, data=Subset(pool), campaign=self.campaign,
                                run_dir=str(step_dir / "al_round")).run()
            if result.status != "uploaded":
                raise RuntimeError(f"simulation round {number}: the round did not upload a batch: {result.message}")
            if self.warm_start is not None:
                scorer.estimator = self.warm_started(pool)
            if number == 1:
                rows.append(scorer.score(0, *self.progress()))
            self.crowd_job(backend=self.backend, campaign=self.campaign, run_dir=str(step_dir / "crowd")).run()
            rows.append(scorer.score(number, *self.progress()))
            log.info("simulation round %d: %d labels (%d disputed subjects) for %d votes, macro-F1 %.3f, accuracy %.3f",
                     number, rows[-1]["labels"], rows[-1]["disputed"], rows[-1]["votes"], rows[-1]["macro_f1"],
                     rows[-1]["accuracy"])
        curve = pd.DataFrame(rows)
        write_csv(curve, self.run_dir / CURVE, CURVE_SCHEMA, what="learning curve")
        plot_curve(curve, self.run_dir / "learning_curve.png")
        return curve

    def warm_started(self, pool: Candidates) -> Any:
        """The warm-started learner as the last round queried with it: the held-out checks the rounds made (in
        the campaign state), none made here."""
        with closing(CampaignState(self.campaign["state_dir"])) as state:
            checks = checks_from_json(state.get(CHECKS_KEY), self.warm_start.settings(self.estimator))
        return self.warm_start.around(self.estimator, pool, self.start_labels(), checks=checks).set_params(recheck=None)

    def start_labels(self) -> pd.Series:
        """The labels the campaign started with (round 0: the seed labels)."""
        with closing(CampaignState(self.campaign["state_dir"])) as state:
            labels = state.labels()
        return labels.loc[labels["round"] == 0, "label"]

    def progress(self) -> tuple[pd.Series, int, int]:
        """(the campaign's labels, volunteer votes stored, disputed subjects) now."""
        with closing(CampaignState(self.campaign["state_dir"])) as state:
            summary = state.summary()
            return state.labels()["label"], summary["classifications"], summary["subjects_by_status"].get("disputed", 0)


class Scorer:
    """Fits the learner on the labels so far and scores it on the held-out split."""

    def __init__(self, estimator: Any, pool: Candidates, X_test: np.ndarray, y_test: np.ndarray) -> None:
        self.estimator = estimator
        self.pool = pool
        self.X_test = X_test
        self.y_test = y_test
        self.full_pool_macro_f1 = self.fit_and_score(pool.frame.index, pool.frame["truth"])[0]

    def fit_and_score(self, ids: pd.Index, labels: pd.Series) -> tuple[float, float]:
        model = clone(self.estimator).fit(self.pool.features(ids), labels.to_numpy(dtype=object))
        return held_out_scores(self.y_test, model.predict(self.X_test))

    def score(self, number: int, labels: pd.Series, votes: int, disputed: int) -> dict[str, Any]:
        labels = labels[labels.index.isin(self.pool.frame.index)]
        macro_f1, accuracy = self.fit_and_score(labels.index, labels)
        correct = float((labels == self.pool.frame.loc[labels.index, "truth"]).mean())
        return {"round": number, "labels": len(labels), "macro_f1": macro_f1, "accuracy": accuracy,
                "label_accuracy": correct, "votes": votes, "disputed": disputed,
                "full_pool_macro_f1": self.full_pool_macro_f1}


def held_out_scores(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(macro-F1, accuracy): macro-F1 weighs the rare glitch classes as much as Blips."""
    return (float(f1_score(truth, predicted, average="macro", zero_division=0)),
            float(accuracy_score(truth, predicted)))


def with_truth(candidates: Candidates) -> Candidates:
    """The candidates with ground truth for every row: known labels become the truth of a simulated campaign
    (e.g. ``data=gravityspy``), so every row is in the pool and volunteers are scored against it."""
    frame = candidates.frame.copy()
    if frame["truth"].isna().all() and frame["label"].notna().any():
        log.info("simulation: the data's known labels are used as the hidden ground truth")
        frame["truth"], frame["label"] = frame["label"], pd.NA
    missing = frame.index[frame["truth"].isna()]
    if len(missing):
        raise ValueError(f"{len(missing)} candidates have no ground truth (e.g. {list(missing[:3])}); a simulation "
                         "needs it for every candidate: use data=synthetic, or labelled rows (data=gravityspy)")
    return Candidates(frame, candidates.feature_spec, candidates.classes)


def held_out(truth: pd.Series, fraction: float, seed: int) -> pd.Index:
    """A test split of ``fraction`` of each class (rounded; a class too small to share keeps its rows)."""
    return truth.groupby(truth).sample(frac=fraction, random_state=seed).index


def plot_curve(curve: pd.DataFrame, path: Path) -> Path:
    """Macro-F1 and accuracy on the held-out split against the labels used, with the full-pool macro-F1."""
    fig = Figure(figsize=(6, 3.8))
    ax = fig.add_subplot()
    ax.plot(curve["labels"], curve["macro_f1"], "o-", label="macro-F1")
    ax.plot(curve["labels"], curve["accuracy"], "s-", label="accuracy")
    ax.axhline(curve["full_pool_macro_f1"].iloc[0], color="grey", ls="--", label="macro-F1, whole pool labelled")
    for labels, score, votes in zip(curve["labels"], curve["macro_f1"], curve["votes"]):
        ax.annotate(f"{votes} votes", (labels, score), textcoords="offset points", xytext=(0, 6), fontsize=7,
                    ha="center")
    ax.set_xlabel("labels used")
    ax.set_ylabel("held-out score")
    ax.set_ylim(0, 1)
    ax.set_title("Learning curve of the simulated campaign")
    ax.legend(fontsize=8, loc="lower right")
    return save(fig, path)
