"""The synthetic warm start: how much the synthetic candidates count as real labels arrive, the learner it
wraps, and the generator refit on a campaign's starting labels (real O1 and O3a rows)."""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier

from glitchrun.data.loaders import GravitySpyData
from glitchrun.data.synthetic import GRAVITY_SPY_CLASSES
from glitchrun.learning.learner import make_learner, query, teach
from glitchrun.learning.strategies import mixed_sampling
from glitchrun.campaign.state import CampaignState
from glitchrun.learning.warm_start import (
    CHECKS_KEY,
    Check,
    SyntheticWarmStart,
    WarmStarted,
    checks_from_json,
    checks_to_json,
    halves,
    helps,
    synthetic_kept,
)

O1 = "gravityspy_v1_o1_sample.csv"
O3A = "gravityspy_o3a_h1_sample.csv"


@pytest.mark.parametrize("give_way", [1, 2, 3])
def test_synthetic_candidates_weigh_less_as_labels_grow_and_none_from_a_share_of_them(give_way: int):
    for synthetic in (0, 1, 200, 1000):
        kept = [synthetic_kept(labels, synthetic, give_way) for labels in range(2 * synthetic + 50)]
        assert kept[0] == synthetic and all(a >= b for a, b in zip(kept, kept[1:]))  # monotone
        gone = -(-synthetic // give_way)  # ceil(synthetic / give_way) real labels
        assert kept[gone:] == [0] * (len(kept) - gone) and (gone == 0 or kept[gone - 1] > 0)
        assert all(a - b <= give_way for a, b in zip(kept, kept[1:]))  # a real label replaces give_way at most


@pytest.fixture(scope="module")
def o1(shared_data: Path):
    return GravitySpyData(shared_data / O1, labels_as="truth").load()


def starting_labels(candidates, per_class: int, seed: int = 0) -> pd.Series:
    truth = candidates.frame["truth"]
    return truth.groupby(truth).sample(frac=1.0, random_state=seed).groupby(truth).head(per_class)


def test_the_wrapped_learner_trains_on_the_synthetic_candidates_left_and_is_the_cold_one_once_none_are(o1):
    start = starting_labels(o1, 2)
    warm = SyntheticWarmStart(candidates=60, seed=0, check=False).around(RandomForestClassifier(20, random_state=0), o1,
                                                                     start)
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


@pytest.mark.parametrize("fractions", [{"margin": 0.8, "high_probability": 0.2}, {"uncertainty": 1.0}])
def test_a_warm_started_learner_chooses_the_batch_the_cold_one_would_and_predicts_with_its_candidates(o1, fractions):
    """Real O1 rows, 2 starting labels a class, synthetic candidates on: the batch is the one the same learner
    without them chooses, round after round; the probabilities reported for it are the warm learner's own."""
    start = starting_labels(o1, 2)
    estimator = RandomForestClassifier(50, random_state=0)
    warm_estimator = SyntheticWarmStart(seed=0, check=False).around(estimator, o1, start)
    rest = o1.frame.index.difference(start.index)
    X_pool, X_start = o1.features(rest), o1.features(start.index)
    y_pool = o1.frame.loc[rest, "truth"].to_numpy(dtype=object)
    strategy = partial(mixed_sampling, fractions=fractions, seed=0)
    cold = make_learner(estimator, X_start, start.to_numpy(dtype=object))
    warm = make_learner(warm_estimator, X_start, start.to_numpy(dtype=object))
    pool = np.arange(len(rest))
    for _ in range(3):
        assert warm.estimator.n_synthetic_ > 0
        chosen_cold, chosen_warm = query(cold, strategy, X_pool[pool], 10), query(warm, strategy, X_pool[pool], 10)
        np.testing.assert_array_equal(chosen_warm.indices, chosen_cold.indices)
        np.testing.assert_array_equal(chosen_warm.proba, warm.predict_proba(X_pool[pool][chosen_warm.indices]))
        assert not np.array_equal(chosen_warm.proba, chosen_cold.proba)  # the synthetic candidates train it
        taught = pool[chosen_cold.indices]
        teach(cold, X_pool[taught], y_pool[taught])
        teach(warm, X_pool[taught], y_pool[taught])
        pool = np.setdiff1d(pool, taught)


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


def test_the_halves_of_the_held_out_check_split_every_class():
    labels = np.array(["Blip"] * 5 + ["Tomte"] * 2 + ["Chirp"], dtype=object)
    half = halves(labels, seed=3)
    for name, n in (("Blip", 5), ("Tomte", 2), ("Chirp", 1)):
        assert sorted(half[labels == name]) == sorted(np.arange(n) % 2)
    assert [halves(labels, seed).tolist() for seed in (0, 1)] != [half.tolist()] * 2  # shuffled within a class


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_warm_start_stays_on_where_its_candidates_help_and_is_off_where_they_are_noise(o1, seed: int):
    """Real O1 starting labels (2 a class): the candidates of the generator refit on them help the learner on
    the labels it did not see; the same candidates with their classes shuffled do not, and start cold."""
    start = starting_labels(o1, 2, seed)
    forest = RandomForestClassifier(100, random_state=seed)
    warm = SyntheticWarmStart(seed=seed).around(forest, o1, start)
    assert warm.on and [(check.labels, check.helped) for check in warm.checks] == [(len(start), True)]
    X, y = o1.features(start.index), start.to_numpy(dtype=object)
    cold_f1, warm_f1, _ = helps(warm, X, y, seed)
    assert warm_f1 > cold_f1 + 0.05
    noise = WarmStarted(forest, warm.X_synthetic, np.random.default_rng(seed).permutation(warm.y_synthetic))
    cold_f1, noise_f1, _ = helps(noise, X, y, seed)
    assert noise_f1 <= cold_f1
    shuffled = SyntheticWarmStart(seed=seed)
    shuffled.synthetic = lambda candidates, labels: (noise.X_synthetic, noise.y_synthetic)  # type: ignore[method-assign]
    off = shuffled.around(forest, o1, start)
    assert not off.on and clone(off).fit(X, y).n_synthetic_ == 0  # the cold learner


def test_a_check_is_due_at_start_and_each_time_the_real_labels_grow_by_recheck_and_never_once_off():
    warm = WarmStarted(RandomForestClassifier(), np.zeros((4, 2)), np.array(["Blip"] * 4, dtype=object),
                       recheck=1.5)
    assert warm.due(44)  # no check yet
    warm.set_params(checks=(Check(44, 0.3, 0.4, 0.35, True),))
    assert not warm.due(65) and warm.due(66) and warm.on
    warm.set_params(checks=(Check(44, 0.3, 0.4, 0.35, True), Check(66, 0.4, 0.4, 0.35, False)))
    assert not warm.on and not any(warm.due(n) for n in (66, 100, 1000))
    at_start_only = warm.set_params(checks=(Check(44, 0.3, 0.4, 0.35, True),), recheck=None)
    assert not at_start_only.due(1000)
    settings = SyntheticWarmStart().settings(RandomForestClassifier(50, random_state=0))
    assert checks_from_json(checks_to_json(warm.checks, settings), settings) == warm.checks
    assert checks_from_json(None, settings) == ()
    assert checks_from_json(json.dumps([asdict(check) for check in warm.checks]), settings) == warm.checks  # older


def test_a_learner_taught_batch_by_batch_checks_again_as_labels_grow_and_stays_cold_once_they_do_not_help(o1):
    """Real O1 rows: the start check (kept, as a campaign keeps it) found the synthetic candidates help; taught 5
    labels at a time, the learner checks again at 1.5x those labels, where candidates with their classes shuffled
    do not help: from that fit on none train it, and it checks no more."""
    start = starting_labels(o1, 2)
    warm = SyntheticWarmStart(seed=0).around(RandomForestClassifier(50, random_state=0), o1, start)
    assert warm.on and [check.labels for check in warm.checks] == [len(start)] and warm.recheck == 1.5
    noise = clone(warm).set_params(y_synthetic=np.random.default_rng(0).permutation(warm.y_synthetic))
    rest = o1.frame.index.difference(start.index)
    ids = start.index.append(rest[np.random.default_rng(1).permutation(len(rest))])
    X, y = o1.features(ids), o1.frame.loc[ids, "truth"].to_numpy(dtype=object)
    learner = make_learner(noise, X[:len(start)], y[:len(start)])
    kept = {len(start): learner.estimator.n_synthetic_}
    for end in range(len(start) + 5, 140, 5):
        teach(learner, X[end - 5:end], y[end - 5:end])
        kept[end] = learner.estimator.n_synthetic_
    rechecked = min(n for n in kept if n >= 1.5 * len(start))
    checks = learner.estimator.checks_
    assert [check.labels for check in checks] == [len(start), rechecked] and not checks[-1].helped
    assert all(kept[n] == 200 - n for n in kept if n < rechecked) and all(kept[n] == 0 for n in kept if n >= rechecked)
    assert not learner.estimator.on


def test_a_campaign_keeps_its_checks_so_a_round_chosen_again_decides_the_same_and_checks_once(o1, tmp_path: Path,
                                                                                              caplog):
    start = starting_labels(o1, 2)
    warm_start = SyntheticWarmStart(seed=0)
    forest = RandomForestClassifier(50, random_state=0)
    caplog.set_level("INFO", logger="glitchrun.learning.warm_start")
    first = warm_start.around(forest, o1, start)
    with closing(CampaignState(tmp_path)) as state:
        state.put(**{CHECKS_KEY: checks_to_json(first.checks, warm_start.settings(forest))})
    with closing(CampaignState(tmp_path)) as state:
        kept = checks_from_json(state.get(CHECKS_KEY), warm_start.settings(forest))
        other_settings = [checks_from_json(state.get(CHECKS_KEY), settings) for settings in (
            SyntheticWarmStart(seed=0, candidates=100).settings(forest),
            SyntheticWarmStart(seed=0, margin=0.05).settings(forest),
            warm_start.settings(RandomForestClassifier(300, random_state=0)))]
    assert other_settings == [(), (), ()]  # checks judged other candidates or another learner: made again
    caplog.clear()
    again = warm_start.around(forest, o1, start, checks=kept)
    assert again.checks == first.checks and not [r for r in caplog.records if "real labels" in r.getMessage()]
    more = starting_labels(o1, 4)  # 1.5x the starting labels or more: the next check is due
    later = warm_start.around(forest, o1, start, more, checks=kept)
    assert [check.labels for check in later.checks] == [len(start), len(more)]
    # a setting that does not change a verdict, when to check again, keeps them
    assert checks_from_json(checks_to_json(first.checks, warm_start.settings(forest)),
                            SyntheticWarmStart(seed=0, recheck=2.0).settings(forest)) == first.checks


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_the_warm_start_is_off_on_o3a_rows_that_its_candidates_alone_do_not_recognise(shared_data: Path, seed: int):
    """Real O3a starting labels (2 a class, all too few to calibrate a class: the candidates are drawn around the
    v1.0 means). On halves of 1 label a class the candidates lift the score all the same; alone they recognise
    the O3a rows worse than half of those rows do, and the warm start is off."""
    o3a = GravitySpyData(shared_data / O3A, classes=[*GRAVITY_SPY_CLASSES, "Blip_Low_Frequency", "Fast_Scattering"],
                         labels_as="truth").load()
    held = set(o3a.frame["truth"])
    o3a = type(o3a)(o3a.frame, o3a.feature_spec, [name for name in o3a.classes if name in held])
    warm = SyntheticWarmStart(seed=seed).around(RandomForestClassifier(100, random_state=seed), o3a,
                                                starting_labels(o3a, 2, seed))
    (check,) = warm.checks
    assert check.warm > check.cold > check.synthetic and not check.helped and not warm.on
