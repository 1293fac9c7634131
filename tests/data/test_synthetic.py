"""The synthetic generator: its numbers are re-derived from the shared files, its candidates reproduce the
v1.0 class priors and centres and the O3a spread, and a classifier trained on them recognises real
glitches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from glitchrun.data import calibrate, synthetic
from glitchrun.csvio import read_csv
from glitchrun.data.loaders import (
    CANONICAL_COLUMNS,
    GRAVITY_SPY_CLASSES,
    O3_ADDED_CLASSES,
    GravitySpyData,
    SyntheticData,
)
from glitchrun.data.synthetic import (
    FEATURES,
    FIT,
    O3A_END,
    O3A_FILE,
    O3A_START,
    SUMMARY_FILE,
    SUMMARY_MEANS,
    generate,
)


@pytest.fixture(scope="module")
def summary(shared_data: Path) -> pd.DataFrame:
    return read_csv(shared_data / SUMMARY_FILE, calibrate.SUMMARY_SCHEMA).set_index("label")


@pytest.fixture(scope="module")
def real(shared_data: Path):
    return GravitySpyData(shared_data / O3A_FILE, classes=[*GRAVITY_SPY_CLASSES, *O3_ADDED_CLASSES]).load()


@pytest.fixture(scope="module")
def large() -> pd.DataFrame:
    """Enough candidates that the rarest class (Paired_Doves, 0.3 %) has over a thousand."""
    return generate(400_000, seed=1)


def test_the_stored_fit_is_what_refit_prints(shared_data: Path, capsys):
    calibrate.main(["--refit", str(shared_data)])
    namespace = dict(vars(synthetic))
    exec(capsys.readouterr().out, namespace)
    assert namespace["FIT"] == FIT
    assert list(FIT.shapes) == list(GRAVITY_SPY_CLASSES) and len(GRAVITY_SPY_CLASSES) == 22


def test_class_priors_and_detector_split_match_v1(summary: pd.DataFrame, large: pd.DataFrame):
    totals = summary["n_H1"] + summary["n_L1"]
    prior = totals / totals.sum()
    observed = large["truth"].value_counts().reindex(prior.index, fill_value=0)
    share = observed / len(large)
    assert (abs(share - prior) < 5 * np.sqrt(prior * (1 - prior) / len(large))).all(), share - prior
    h1 = summary["n_H1"] / totals
    h1_share = (large["ifo"] == "H1").groupby(large["truth"]).mean().reindex(prior.index)
    assert (abs(h1_share - h1) <= 5 * np.sqrt(h1 * (1 - h1) / observed) + 1e-12).all(), h1_share - h1


def test_class_means_match_v1(summary: pd.DataFrame, large: pd.DataFrame):
    """Per class and feature, the log-normal estimate of the mean, exp(mean ln x + var ln x / 2), is the v1.0
    class mean within 5 standard errors (arithmetic means of heavy tails would need far more rows)."""
    logs = np.log(large[list(FEATURES)]).groupby(large["truth"])
    var, n = logs.var(), logs.count()
    estimate = logs.mean() + var / 2
    expected = np.log(summary[list(SUMMARY_MEANS.values())]).set_axis(list(FEATURES), axis=1)
    error = (estimate - expected.loc[estimate.index]).abs() / np.sqrt((var + var**2 / 2) / n)
    assert (error < 5).all().all(), error.round(1)


def test_within_class_spread_matches_the_real_o3a_rows(real, large: pd.DataFrame):
    frame = real.frame
    real_sd = np.log(frame[list(FEATURES)]).groupby(frame["label"]).std()
    synthetic_sd = np.log(large[list(FEATURES)]).groupby(large["truth"])
    shared = real_sd.index.intersection(GRAVITY_SPY_CLASSES)
    assert len(shared) == 15
    n = synthetic_sd.count().loc[shared]
    error = (synthetic_sd.std().loc[shared] - real_sd.loc[shared]).abs()
    # 5 standard errors of a standard deviation, plus the table's rounding to 3 decimals
    assert (error < 5 * real_sd.loc[shared] / np.sqrt(2 * n) + 5e-4).all().all(), error.round(4)


def test_the_frame_is_canonical_and_plausible():
    frame = SyntheticData(n=1000, seed=3).load().frame
    assert list(frame.columns) == list(CANONICAL_COLUMNS) and frame.index.is_unique
    assert frame.index[0] == "syn000" and frame.index.name == "id"
    assert (frame[["peak_frequency", "central_frequency", "duration", "bandwidth", "snr", "amplitude"]] > 0).all().all()
    assert set(frame["ifo"]) == {"H1", "L1"} and frame["event_time"].between(O3A_START, O3A_END).all()
    assert frame["label"].isna().all() and set(frame["truth"]) <= set(GRAVITY_SPY_CLASSES)


def test_the_same_seed_gives_the_same_candidates():
    first = SyntheticData(n=2000, seed=7, labelled_per_class=1).load().frame
    pd.testing.assert_frame_equal(first, SyntheticData(n=2000, seed=7, labelled_per_class=1).load().frame)
    other = SyntheticData(n=2000, seed=8, labelled_per_class=1).load().frame
    assert (first["truth"] != other["truth"]).mean() > 0.5


def test_labelled_per_class_reveals_that_many_true_labels_per_class():
    found = SyntheticData(n=5000, seed=2, labelled_per_class=3).load()
    labelled = found.labelled()
    assert (labelled["label"] == labelled["truth"]).all()
    assert labelled["label"].value_counts().to_dict() == dict.fromkeys(GRAVITY_SPY_CLASSES, 3)
    assert len(found.pool()) == 5000 - 3 * 22
    assert SyntheticData(n=5000, seed=2).load().labelled().empty


def test_a_class_subset_keeps_the_relative_priors():
    found = SyntheticData(n=4000, seed=0, classes=["Blip", "Whistle"]).load()
    share = found.frame["truth"].value_counts(normalize=True)
    assert set(share.index) == {"Blip", "Whistle"} and found.classes == ["Blip", "Whistle"]
    assert abs(share["Whistle"] - 299 / (299 + 1821)) < 0.03
    with pytest.raises(ValueError, match="Bleep"):
        generate(10, 0, ["Blip", "Bleep"])


def test_a_classifier_trained_only_on_synthetic_candidates_recognises_real_o3a_glitches(real):
    """Chance: the 150 O3a rows of the 15 classes v1.0 and O3a share (the generator cannot know the O3-only
    Blip_Low_Frequency and Fast_Scattering) hold 10 rows per class, so a guess is right 1 time in 15."""
    known = real.frame.index[real.frame["label"].isin(GRAVITY_SPY_CLASSES)]
    train = SyntheticData(n=10_000, seed=0).load()
    assert train.feature_columns == real.feature_columns
    forest = RandomForestClassifier(n_estimators=100, min_samples_leaf=5, random_state=0, n_jobs=2)
    forest.fit(train.features(), train.frame["truth"].to_numpy(dtype=object))
    predicted = forest.predict(real.features(known))
    accuracy = (predicted == real.frame.loc[known, "label"].to_numpy(dtype=object)).mean()
    chance = 1 / 15
    assert accuracy >= 4 * chance, f"accuracy {accuracy:.3f} on {len(known)} real rows = {accuracy / chance:.1f}x chance"
    print(f"synthetic-trained forest on real O3a rows: accuracy {accuracy:.3f} = {accuracy / chance:.1f}x chance")
