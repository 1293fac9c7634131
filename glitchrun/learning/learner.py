"""The active learner: a modAL ``ActiveLearner`` around a scikit-learn estimator, one query of it, and the
cross-validated performance the round reports.

Estimators get plain float64 feature arrays and numpy label arrays (pandas 3 Arrow strings break
scikit-learn 1.7 indexing). modAL 0.4.2.1 passes ``force_all_finite`` to scikit-learn's ``check_X_y``, which
scikit-learn 1.7 accepts with a FutureWarning (1.8 removes it, hence the pin below 1.8); that one warning is
silenced here, where it is known and harmless.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from modAL.models import ActiveLearner
from sklearn.base import clone
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from glitchrun.learning.strategies import (
    Selection,
    check_n_instances,
    uncertainty_sampling,
)
from glitchrun.learning.warm_start import WarmStarted


@contextmanager
def _modal_on_sklearn_17() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'force_all_finite' was renamed", category=FutureWarning)
        yield


def _features(X: Any) -> np.ndarray:
    return np.ascontiguousarray(X, dtype=np.float64)


def _labels(y: Any) -> np.ndarray:
    return np.asarray(y)


def make_learner(
    estimator: Any, X_labelled: Any, y_labelled: Sequence | np.ndarray, query_strategy: Callable = uncertainty_sampling
) -> ActiveLearner:
    """A modAL ActiveLearner fitted on the labelled candidates, around a clone of ``estimator`` (the
    configured estimator stays unfitted and reusable).

    NaN features (a data source lacking a column) are the estimator's business: the forests and gradient
    boosting take them, the logistic-regression pipeline imputes them. So ``force_all_finite`` is turned off
    for ``teach``; it is set after construction because modAL 0.4.2.1's ``__init__`` also forwards it to
    ``estimator.fit``, which rejects it.
    """
    learner = ActiveLearner(
        estimator=clone(estimator),
        query_strategy=query_strategy,
        X_training=_features(X_labelled),
        y_training=_labels(y_labelled),
    )
    learner.force_all_finite = False
    return learner


def teach(learner: ActiveLearner, X: Any, y: Sequence | np.ndarray) -> None:
    """Add newly labelled candidates to the learner and refit it on all its labelled data."""
    with _modal_on_sklearn_17():
        learner.teach(_features(X), _labels(y))


@dataclass(frozen=True, eq=False)  # array fields: == would be ambiguous
class Query:
    """One batch chosen from the pool, with what the learner predicts for it (for the manifest)."""

    indices: np.ndarray  # int, rows of X_pool, distinct
    scores: np.ndarray  # float, each one's score under the strategy (part) that chose it
    chosen_by: np.ndarray  # str, the name of that strategy (part)
    proba: np.ndarray  # (len(indices), n_classes), the learner's class probabilities for each
    classes: np.ndarray  # the class of each proba column
    all_scores: dict[str, np.ndarray]  # strategy (part) name -> its score for every pool candidate
    drawn: np.ndarray  # bool, each one chosen by a random tie-break (False where the strategy does not say)

    @property
    def predicted(self) -> np.ndarray:
        """The learner's predicted class for each chosen candidate."""
        return self.classes[self.proba.argmax(axis=1)]

    @property
    def probability(self) -> np.ndarray:
        """The learner's probability of that predicted class."""
        return self.proba.max(axis=1)


def chooser(learner: ActiveLearner) -> ActiveLearner:
    """The learner whose probabilities choose a batch: ``learner`` itself, but for a warm-started learner that
    still trains on synthetic candidates (``WarmStarted``), its estimator fitted on the real labels alone.

    Synthetic candidates may say what a glitch is; they never say which real glitches volunteers should look at
    next: where the learner is unsure near a synthetic candidate is the generator's doubt, not the user's
    data's. So a warm start changes predictions, never the batch: a campaign labels the same glitches with or
    without it, and its learner differs from the cold one by the synthetic candidates alone, which the held-out
    checks switch off once they stop helping (BENCHMARKS.md, "Active learning on real glitches")."""
    estimator = learner.estimator
    if isinstance(estimator, WarmStarted) and getattr(estimator, "n_synthetic_", 0):
        return make_learner(estimator.estimator, learner.X_training, learner.y_training, learner.query_strategy)
    return learner


def query(learner: ActiveLearner, strategy: Callable, X_pool: np.ndarray, n: int) -> Query:
    """Choose ``n`` candidates of ``X_pool`` (all of it if smaller) with ``strategy`` and the ``chooser`` of
    ``learner``; their predictions are ``learner``'s.

    ``strategy`` is any modAL query strategy ``(learner, X_pool, n_instances=...)``: one of
    ``glitchrun.learning.strategies`` (which name the part that chose each candidate), or a plain modAL function
    returning ``(indices, scores)``, whose ``chosen_by`` is then the function's ``__name__``.
    """
    check_n_instances(n)
    if not isinstance(X_pool, np.ndarray) or X_pool.ndim != 2:
        raise TypeError(f"X_pool must be a 2-D numpy array, got {type(X_pool).__name__}")
    selection = strategy(chooser(learner), X_pool, n_instances=n)
    if not isinstance(selection, Selection):
        indices, scores = selection
        name = getattr(strategy, "func", strategy).__name__  # functools.partial (Hydra _partial_) or function
        selection = Selection(np.asarray(indices), np.asarray(scores, dtype=float), np.full(len(indices), name), {},
                              np.zeros(len(indices), dtype=bool))
    classes = learner.estimator.classes_
    # predict_proba again on the chosen rows only: the strategies keep no (n_pool, n_classes) matrix
    proba = learner.predict_proba(X_pool[selection.indices]) if len(selection.indices) else np.empty((0, len(classes)))
    return Query(selection.indices, selection.scores, selection.chosen_by, proba, classes, selection.all_scores,
                 selection.drawn)


@dataclass(frozen=True)
class Performance:
    """Out-of-fold scores of the estimator on the labelled candidates."""

    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    n_folds: int
    n_labelled: int


def fixed_folds(ids: Sequence[str], folds: int) -> np.ndarray:
    """Each candidate's fold, from a hash of its id: the same in every round and every process."""
    return np.array([zlib.crc32(str(i).encode()) % folds for i in ids], dtype=int)


def fixed_fold_performance(
    estimator: Any, X_labelled: Any, y_labelled: Sequence | np.ndarray, ids: Sequence[str], folds: int = 5,
    trainable: np.ndarray | None = None,
) -> Performance:
    """Out-of-fold scores of clones of ``estimator``, with folds fixed by candidate id (``fixed_folds``).

    Fixed folds keep rounds comparable: a candidate is scored in the same fold whichever round it is, so the
    learner of an earlier round (``trainable``: the labels known then) and today's are scored on the same
    candidates, each by a model that never saw it; stratified folds drawn anew as labels grow change their
    number and split every round. Raises ``ValueError`` when a fold leaves fewer than 2 classes to train on.
    """
    X, y = _features(X_labelled), _labels(y_labelled)
    fold = fixed_folds(ids, folds)
    allowed = np.ones(len(y), dtype=bool) if trainable is None else np.asarray(trainable, dtype=bool)
    predicted = np.empty(len(y), dtype=object)
    for f in np.unique(fold):
        train = allowed & (fold != f)
        if len(np.unique(y[train])) < 2:
            raise ValueError(f"fold {f} leaves fewer than 2 classes to train on ({int(train.sum())} labels)")
        predicted[fold == f] = clone(estimator).fit(X[train], y[train]).predict(X[fold == f])
    predicted = predicted.astype(y.dtype)
    return Performance(
        accuracy=float(accuracy_score(y, predicted)),
        balanced_accuracy=float(balanced_accuracy_score(y, predicted)),
        macro_f1=float(f1_score(y, predicted, average="macro", zero_division=0)),
        n_folds=len(np.unique(fold)),
        n_labelled=len(y),
    )


def cross_validated_proba(estimator: Any, X_labelled: Any, y_labelled: Sequence | np.ndarray, classes: Sequence[str],
                          folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold class probabilities of the labelled candidates, columns in ``classes`` order (0 for a
    class the labels lack): how sure the learner is on candidates it did not see, to weigh its vote."""
    X, y = _features(X_labelled), _labels(y_labelled)
    proba = cross_val_predict(clone(estimator), X, y, cv=_folds(y, folds, seed), method="predict_proba")
    out = np.zeros((len(y), len(classes)))
    out[:, [list(classes).index(c) for c in np.unique(y)]] = proba
    return out


def _folds(y: np.ndarray, folds: int, seed: int) -> StratifiedKFold:
    """Stratified folds, k lowered to the size of the largest class when that is smaller."""
    largest_class = int(np.unique(y, return_counts=True)[1].max()) if len(y) else 0
    n_folds = min(folds, largest_class)
    if n_folds < 2:
        raise ValueError(f"cross-validation needs >= 2 labelled candidates of some class, got {len(y)} labels")
    return StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
