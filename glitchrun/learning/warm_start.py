"""A synthetic warm start: synthetic candidates drawn from a generator refit on the campaign's own first labels
stand in for the real labels a young campaign lacks, and give way to them one for one.

The generator (``glitchrun.data.synthetic``) is refit at campaign start (``glitchrun.data.calibrate.refit_rows``)
on the labels the campaign started with (round 0: the data's known labels or, in a simulation, the seed
labels): their classes' feature centres and spreads where a class has enough of them, the v1.0 class means
otherwise, and only the detectors they come from. Later labels are left out: active learning chooses them
for being ambiguous, so they are not a fair picture of a class. The same labels give the same refit, so every
round of a campaign draws the same synthetic candidates.

How much the synthetic candidates count (``synthetic_kept``): with ``n`` real labels, the first
``max(0, N - n)`` of the ``N`` synthetic candidates (a fixed, shuffled order) join the training set. Real
labels replace synthetic ones one for one, and from ``N`` real labels on the learner is exactly the cold one.
Dropping candidates rather than lowering a sample weight, because a fully grown forest (the default learner,
``min_samples_leaf: 1``) isolates every training candidate in a leaf of its own whatever its weight: a small
weight still decides every leaf only synthetic candidates reach.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from glitchrun.data.calibrate import refit_rows
from glitchrun.data.loaders import Candidates, canonical
from glitchrun.data.synthetic import LOG_FEATURES, generate

log = logging.getLogger(__name__)


def synthetic_kept(real_labels: int, synthetic: int) -> int:
    """How many of ``synthetic`` candidates train the learner beside ``real_labels`` real ones: the places real
    labels do not yet take. Never increases as labels grow; 0 from ``synthetic`` real labels on."""
    return max(0, int(synthetic) - int(real_labels))


class WarmStarted(ClassifierMixin, BaseEstimator):
    """``estimator`` fitted on the real labels it is given plus the first ``synthetic_kept`` synthetic candidates
    (``X_synthetic``, ``y_synthetic``, in their order). A scikit-learn classifier, so modAL's learner, the
    committee strategy and cross-validation clone and refit it like the estimator it wraps."""

    def __init__(self, estimator: Any, X_synthetic: np.ndarray, y_synthetic: np.ndarray) -> None:
        self.estimator = estimator
        self.X_synthetic = X_synthetic
        self.y_synthetic = y_synthetic

    def fit(self, X: np.ndarray, y: np.ndarray) -> WarmStarted:
        kept = synthetic_kept(len(y), len(self.y_synthetic))
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


@dataclass
class SyntheticWarmStart:
    """conf/warm_start/synthetic.yaml: ``candidates`` synthetic candidates of the classes the refit generator
    knows, drawn with ``seed``, the classes in turn: however many real labels have replaced some, those left
    hold every class equally (to one candidate; see the module docstring)."""

    candidates: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.candidates) < 1:
            raise ValueError(f"warm_start.candidates must be at least 1, got {self.candidates}")

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
                 "(%d classes calibrated on them); real labels replace them one for one", len(drawn), len(classes),
                 len(rows), sum(1 for name in classes if calibration.fit.shapes[name].rows))
        return candidates.feature_spec.matrix(drawn), drawn["truth"].to_numpy(dtype=object)

    def around(self, estimator: Any, candidates: Candidates, start_labels: pd.Series) -> WarmStarted:
        """``estimator`` warm-started for a campaign that began with ``start_labels``."""
        return WarmStarted(estimator, *self.synthetic(candidates, start_labels))
