"""The synthetic warm start: how much the synthetic candidates count as real labels arrive, the learner it
wraps, and the generator refit on a campaign's starting labels (real O1 and O3a rows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier

from glitchrun.data.loaders import GravitySpyData
from glitchrun.data.synthetic import GRAVITY_SPY_CLASSES
from glitchrun.learning.learner import make_learner, teach
from glitchrun.learning.warm_start import SyntheticWarmStart, synthetic_kept

O1 = "gravityspy_v1_o1_sample.csv"
O3A = "gravityspy_o3a_h1_sample.csv"


def test_synthetic_candidates_weigh_less_as_labels_grow_and_none_from_as_many_labels():
    for synthetic in (0, 1, 200, 1000):
        kept = [synthetic_kept(labels, synthetic) for labels in range(2 * synthetic + 50)]
        assert kept[0] == synthetic and all(a >= b for a, b in zip(kept, kept[1:]))  # monotone
        assert kept[synthetic:] == [0] * (len(kept) - synthetic)  # 0 from `synthetic` real labels on
        assert all(a - b <= 1 for a, b in zip(kept, kept[1:]))  # one real label replaces at most one synthetic


@pytest.fixture(scope="module")
def o1(shared_data: Path):
    return GravitySpyData(shared_data / O1, labels_as="truth").load()


def starting_labels(candidates, per_class: int, seed: int = 0) -> pd.Series:
    truth = candidates.frame["truth"]
    return truth.groupby(truth).sample(frac=1.0, random_state=seed).groupby(truth).head(per_class)


def test_the_wrapped_learner_trains_on_the_synthetic_candidates_left_and_is_the_cold_one_once_none_are(o1):
    start = starting_labels(o1, 2)
    warm = SyntheticWarmStart(candidates=60, seed=0).around(RandomForestClassifier(20, random_state=0), o1, start)
    X, y = o1.features(), o1.frame["truth"].to_numpy(dtype=object)
    few = clone(warm).fit(X[:10], y[:10])
    assert few.n_synthetic_ == 50 and set(few.classes_) == set(GRAVITY_SPY_CLASSES)  # every class, from 10 labels
    many = clone(warm).fit(X[:100], y[:100])
    cold = RandomForestClassifier(20, random_state=0).fit(X[:100], y[:100])
    assert many.n_synthetic_ == 0
    np.testing.assert_array_equal(many.predict_proba(X), cold.predict_proba(X))
    # inside modAL's learner, teaching refits with fewer synthetic candidates
    learner = make_learner(warm, X[:40], y[:40])
    assert learner.estimator.n_synthetic_ == 20
    teach(learner, X[40:50], y[40:50])
    assert learner.estimator.n_synthetic_ == 10


def test_synthetic_candidates_come_from_the_campaigns_rows_classes_and_detectors(o1, shared_data: Path):
    warm_start = SyntheticWarmStart(candidates=220, seed=1)
    X, y = warm_start.synthetic(o1, starting_labels(o1, 2))
    assert X.shape == (220, len(o1.feature_columns)) and X.dtype == np.float64
    assert pd.Series(y).value_counts().to_dict() == dict.fromkeys(GRAVITY_SPY_CLASSES, 10)  # an equal share each
    ifo = dict(zip(o1.feature_columns, X.T, strict=True))
    assert ifo["ifo_H1"].any() and ifo["ifo_L1"].any()  # the O1 rows come from both detectors
    # the O3a rows are all Hanford's: so are their synthetic stand-ins (v1.0's Whistles are 99 % L1)
    o3a = GravitySpyData(shared_data / O3A, classes=[*GRAVITY_SPY_CLASSES, "Blip_Low_Frequency", "Fast_Scattering"],
                         labels_as="truth").load()
    X, y = warm_start.synthetic(o3a, starting_labels(o3a, 2))
    h1 = X[:, o3a.feature_columns.index("ifo_H1")]
    assert (h1 == 1).all() and set(y) == set(GRAVITY_SPY_CLASSES)  # the O3-only classes have no v1.0 shape
    # the same starting labels draw the same candidates (every round of a campaign)
    np.testing.assert_array_equal(warm_start.synthetic(o3a, starting_labels(o3a, 2))[0], X)


def test_starting_labels_too_few_to_refit_are_one_clear_error(o1):
    with pytest.raises(ValueError, match=r"warm_start: calibration needs two labelled rows of one class.*"
                                         r"al.seed_per_class >= 2"):
        SyntheticWarmStart().around(RandomForestClassifier(), o1, starting_labels(o1, 1))
