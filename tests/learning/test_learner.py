"""The learner: every learner config instantiates and learns, query() returns the round's Query, teach works
on scikit-learn 1.7, out-of-fold probabilities cope with few labels,
and folds fixed by candidate id keep rounds comparable."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from modAL.uncertainty import margin_sampling as modal_margin_sampling
from omegaconf import OmegaConf
from sklearn.base import is_classifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from glitchrun.learning.learner import (
    Query,
    cross_validated_proba,
    fixed_fold_performance,
    fixed_folds,
    make_learner,
    query,
    teach,
)
from glitchrun.learning.strategies import mixed_sampling

LEARNER_FILES = sorted((Path(__file__).resolve().parents[2] / "conf" / "learner").glob("*.yaml"))
CLASSES = np.array(["Blip", "Koi_Fish", "Tomte", "Whistle"])


def blobs(n: int, seed: int = 0, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of four Gaussian classes (centres fixed, samples drawn with ``seed``)."""
    centres = np.random.default_rng(99).normal(scale=3.0, size=(4, 3))
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    return centres[y] + spread * rng.normal(size=(n, 3)), CLASSES[y]


@pytest.fixture
def forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=20, random_state=0)


@pytest.mark.parametrize("path", LEARNER_FILES, ids=lambda p: p.stem)
def test_every_learner_config_instantiates_and_queries(path):
    estimator = instantiate(OmegaConf.merge({"seed": 3}, {"learner": OmegaConf.load(path)}).learner)
    assert is_classifier(estimator)
    X, y = blobs(80)
    pool, _ = blobs(50, seed=1)
    learner = make_learner(estimator, X, y)
    with pytest.raises(NotFittedError):  # the configured estimator is cloned, not fitted in place
        check_is_fitted(estimator)
    q = query(learner, functools.partial(mixed_sampling, fractions={"uncertainty": 0.5, "random": 0.5}), pool, 6)
    assert isinstance(q, Query)
    assert q.proba.shape == (6, 4) and list(q.classes) == list(CLASSES)
    np.testing.assert_allclose(q.proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(q.predicted, learner.predict(pool[q.indices]))
    np.testing.assert_allclose(q.probability, q.proba.max(axis=1))
    assert list(q.chosen_by) == ["uncertainty"] * 3 + ["random"] * 3
    assert set(q.all_scores) == {"uncertainty"} and q.all_scores["uncertainty"].shape == (50,)


def test_query_takes_the_whole_pool_when_smaller_than_the_batch(forest):
    learner = make_learner(forest, *blobs(40))
    pool, _ = blobs(3, seed=1)
    q = query(learner, functools.partial(mixed_sampling, fractions={"margin": 1.0}), pool, 20)
    assert sorted(q.indices) == [0, 1, 2] and q.proba.shape == (3, 4)


def test_query_accepts_a_plain_modal_strategy_and_names_it(forest):
    learner = make_learner(forest, *blobs(40))
    pool, _ = blobs(30, seed=1)
    q = query(learner, functools.partial(modal_margin_sampling, random_tie_break=False), pool, 5)
    assert list(q.chosen_by) == ["margin_sampling"] * 5 and q.proba.shape == (5, 4)


def test_query_validates_before_any_work(forest):
    learner = make_learner(forest, *blobs(40))
    with pytest.raises(ValueError, match="n_instances must be an integer >= 1"):
        query(learner, None, np.zeros((5, 3)), 0)
    with pytest.raises(TypeError, match="2-D numpy array"):
        query(learner, None, [[0.0, 0.0, 0.0]], 1)


def test_teach_refits_on_all_labels_without_leaking_the_sklearn_17_warning(forest):
    X, y = blobs(40)
    learner = make_learner(forest, X[:8], y[:8])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        teach(learner, X[8:], list(y[8:]))
    assert len(learner.X_training) == 40
    assert learner.score(X, y) > 0.9


def test_nan_features_reach_an_estimator_that_takes_them(forest):
    X, y = blobs(40)
    X[::5, 1] = np.nan  # a data source lacking a column for some candidates
    learner = make_learner(forest, X[:20], y[:20])
    teach(learner, X[20:], y[20:])
    assert len(learner.X_training) == 40


def test_out_of_fold_probabilities_lower_the_folds_to_few_labels(forest):
    X, y = blobs(11)  # 3, 3, 3 and 2 per class
    with pytest.warns(UserWarning, match="least populated class"):
        proba = cross_validated_proba(forest, X, y, [*CLASSES, "Chirp"])
    assert proba.shape == (11, 5) and np.allclose(proba.sum(axis=1), 1.0) and (proba[:, 4] == 0).all()
    with pytest.raises(ValueError, match=">= 2 labelled candidates of some class"):
        cross_validated_proba(forest, X[:4], y[:4], CLASSES)

def ids(n: int) -> list[str]:
    return [f"c{i:04d}" for i in range(n)]


def test_fixed_folds_score_an_earlier_learner_on_the_same_candidates(forest):
    X, y = blobs(80, spread=1.5)
    early = np.arange(80) < 12  # the labels known at an earlier round: 3 per class
    now = fixed_fold_performance(forest, X, y, ids(80))
    then = fixed_fold_performance(forest, X, y, ids(80), trainable=early)
    assert then.n_labelled == now.n_labelled == 80 and now.n_folds == 5
    assert then.accuracy < now.accuracy  # fewer labels to learn from, scored on the same 80
    assert fixed_fold_performance(forest, *blobs(60, spread=0.1), ids(60)).macro_f1 == 1.0
    # a candidate keeps its fold when labels are added: the first 40's folds do not depend on the rest
    assert (fixed_folds(ids(40), 5) == fixed_folds(ids(80), 5)[:40]).all()


def test_fixed_folds_need_two_classes_to_train_on(forest):
    X, y = blobs(8)
    with pytest.raises(ValueError, match="fewer than 2 classes to train on"):
        fixed_fold_performance(forest, X, y, ids(8), trainable=np.isin(y, ["Blip"]))
