"""A synthetic warm start: synthetic candidates drawn from a generator refit on the campaign's own first labels
stand in for the real labels a young campaign lacks, and give way to them one for one.

The generator (``glitchrun.data.synthetic``) is refit at campaign start (``glitchrun.data.calibrate.refit_rows``)
on the labels the campaign started with (round 0: the data's known labels or, in a simulation, the seed
labels): their classes' feature centres and spreads where a class has enough of them, the v1.0 class means
otherwise, and only the detectors they come from. Later labels are left out: active learning chooses them
for being ambiguous, so they are not a fair picture of a class. The same labels give the same refit, so every
round of a campaign draws the same synthetic candidates.

How much the synthetic candidates count (``synthetic_kept``): with ``n`` real labels, the first
``max(0, N - g n)`` of the ``N`` synthetic candidates (a fixed, shuffled order) join the training set: each
real label takes the place of ``g`` (``give_way``) synthetic ones, and from ``N / g`` real labels on the
learner is exactly the cold one.

Dropping candidates rather than lowering a sample weight, because a fully grown forest (the default learner,
``min_samples_leaf: 1``) isolates every training candidate in a leaf of its own whatever its weight: a small
weight still decides every leaf only synthetic candidates reach.

Whether they help at all is checked at campaign start on the user's own rows (``helps``): the starting labels
are split in two halves of each class, and each half is predicted by a learner trained on the other half with
and without the synthetic candidates (macro-F1 of both halves' predictions, the mean of three splits). Where
the synthetic candidates score no higher, the generator does not describe the user's run (e.g. O3 glitches
drawn around the v1.0 means of classes too few starting labels calibrate) and the campaign starts cold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import f1_score

from glitchrun.data.calibrate import refit_rows
from glitchrun.data.loaders import Candidates, canonical
from glitchrun.data.synthetic import LOG_FEATURES, generate

log = logging.getLogger(__name__)


def synthetic_kept(real_labels: int, synthetic: int, give_way: int = 1) -> int:
    """How many of ``synthetic`` candidates train the learner beside ``real_labels`` real ones, each of which
    takes the place of ``give_way`` synthetic ones. Never increases as labels grow; 0 from
    ``synthetic / give_way`` real labels on."""
    return max(0, int(synthetic) - int(give_way) * int(real_labels))


class WarmStarted(ClassifierMixin, BaseEstimator):
    """``estimator`` fitted on the real labels it is given plus the first ``synthetic_kept`` synthetic candidates
    (``X_synthetic``, ``y_synthetic``, in their order). A scikit-learn classifier, so modAL's learner, the
    committee strategy and cross-validation clone and refit it like the estimator it wraps."""

    def __init__(self, estimator: Any, X_synthetic: np.ndarray, y_synthetic: np.ndarray, give_way: int = 1) -> None:
        self.estimator = estimator
        self.X_synthetic = X_synthetic
        self.y_synthetic = y_synthetic
        self.give_way = give_way

    def fit(self, X: np.ndarray, y: np.ndarray) -> WarmStarted:
        kept = synthetic_kept(len(y), len(self.y_synthetic), self.give_way)
        X_all = np.concatenate([np.asarray(X, dtype=np.float64), self.X_synthetic[:kept]])
        y_all = np.concatenate([np.asarray(y, dtype=object), np.asarray(self.y_synthetic[:kept], dtype=object)])
        self.estimator_ = clone(self.estimator).fit(X_all, y_all)
        self.classes_ = self.estimator_.classes_
        self.n_synthetic_ = kept
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.estimator_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.estimator_.predict(X)


def halves(labels: np.ndarray, seed: int) -> np.ndarray:
    """0 or 1 for each row, alternating within each class in a shuffled order: two halves with (to one row)
    half of each class's rows; a class of one row is all in half 0."""
    labels = np.asarray(labels, dtype=object)
    order = np.random.default_rng(seed).permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # by class, shuffled within it
    half = np.empty(len(labels), dtype=int)
    for name in np.unique(labels):
        rows = order[labels[order] == name]
        half[rows] = np.arange(len(rows)) % 2
    return half


def helps(warm: WarmStarted, X_real: np.ndarray, y_real: np.ndarray, seed: int = 0, repeats: int = 3
          ) -> tuple[float, float]:
    """Macro-F1 on real rows each learner did not see, cold (``warm.estimator`` alone) and warm (with as many
    synthetic candidates as ``warm`` keeps beside all of ``y_real``), each the mean of ``repeats`` splits in
    halves (``halves``): each half trains on the other, the predictions of both halves scored together."""
    X_real, y_real = np.asarray(X_real, dtype=np.float64), np.asarray(y_real, dtype=object)
    kept = synthetic_kept(len(y_real), len(warm.y_synthetic), warm.give_way)
    X_synthetic, y_synthetic = warm.X_synthetic[:kept], np.asarray(warm.y_synthetic[:kept], dtype=object)
    scores = np.zeros(2)
    for repeat in range(repeats):
        half = halves(y_real, seed + repeat)
        predicted = np.empty((2, len(y_real)), dtype=object)
        for test in (0, 1):
            train = half != test
            predicted[0, ~train] = clone(warm.estimator).fit(X_real[train], y_real[train]).predict(X_real[~train])
            predicted[1, ~train] = clone(warm.estimator).fit(
                np.concatenate([X_real[train], X_synthetic]), np.concatenate([y_real[train], y_synthetic])
            ).predict(X_real[~train])
        scores += [f1_score(y_real.astype(str), row.astype(str), average="macro", zero_division=0) for row in predicted]
    cold, warmed = scores / repeats
    return float(cold), float(warmed)


@dataclass
class SyntheticWarmStart:
    """conf/warm_start/synthetic.yaml: ``candidates`` synthetic candidates of the classes the refit generator
    knows, drawn with ``seed``, the classes in turn: however many real labels have replaced some, those left
    hold every class equally (to one candidate; see the module docstring)."""

    candidates: int = 200
    give_way: int = 1
    check: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.candidates) < 1:
            raise ValueError(f"warm_start.candidates must be at least 1, got {self.candidates}")
        if int(self.give_way) < 1:
            raise ValueError(f"warm_start.give_way must be at least 1, got {self.give_way}")

    def synthetic(self, candidates: Candidates, start_labels: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """The synthetic candidates' features (as ``candidates`` computes its own) and classes, in the order
        they give way to real labels, from a generator refit on ``start_labels`` (candidate id -> label)."""
        rows = candidates.frame.loc[start_labels.index, ["ifo", *LOG_FEATURES]].assign(label=start_labels)
        rows = rows.dropna(subset=list(LOG_FEATURES))
        try:
            calibration = refit_rows(rows, own_detectors=True, source=f"the campaign's {len(rows)} starting labels")
        except ValueError as err:
            raise ValueError(f"warm_start: {err}; start with al.seed_per_class >= 2, or without warm_start") from err
        classes = [name for name in candidates.classes if name in calibration.fit.shapes]
        drawn = canonical(generate(int(self.candidates), self.seed, classes, calibration.fit, interleaved=True))
        log.info("warm start: %d synthetic candidates of %d classes from a generator refit on %d starting labels "
                 "(%d classes calibrated on them); each real label replaces %d of them", len(drawn), len(classes),
                 len(rows), sum(1 for name in classes if calibration.fit.shapes[name].rows), int(self.give_way))
        return candidates.feature_spec.matrix(drawn), drawn["truth"].to_numpy(dtype=object)

    def around(self, estimator: Any, candidates: Candidates, start_labels: pd.Series) -> Any:
        """``estimator`` warm-started for a campaign that began with ``start_labels`` or, when ``check`` is on
        and the synthetic candidates do not help on those labels (``helps``), ``estimator`` itself."""
        warm = WarmStarted(estimator, *self.synthetic(candidates, start_labels), give_way=int(self.give_way))
        if not self.check:
            return warm
        cold_f1, warm_f1 = helps(warm, candidates.features(start_labels.index), start_labels.to_numpy(dtype=object),
                                 self.seed)
        if warm_f1 <= cold_f1:
            log.info("warm start off: on the %d starting labels, half trained on the other half, the synthetic "
                     "candidates do not help (macro-F1 %.3f with them, %.3f without); the learner starts cold",
                     len(start_labels), warm_f1, cold_f1)
            return estimator
        log.info("warm start on: on the %d starting labels, half trained on the other half, macro-F1 %.3f with "
                 "the synthetic candidates, %.3f without", len(start_labels), warm_f1, cold_f1)
        return warm
