"""The synthetic generator: its numbers are re-derived from real tables (the shared files or a user's), its
candidates reproduce the v1.0 class priors, the real rows' centres and spread (v1.0 means where there are
no real rows), and a classifier trained on them recognises real glitches it was not calibrated on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from glitchrun.csvio import read_csv
from glitchrun.data import calibrate, synthetic
from glitchrun.data.loaders import (
    CANONICAL_COLUMNS,
    GRAVITY_SPY_CLASSES,
    O3_ADDED_CLASSES,
    FeatureSpec,
    GravitySpyData,
    SyntheticData,
    canonical,
)
from glitchrun.data.synthetic import (
    FEATURES,
    FIT,
    LOG_FEATURES,
    O3A_END,
    O3A_FILE,
    O3A_START,
    SUMMARY_FILE,
    SUMMARY_MEANS,
    generate,
)

#: the v1.0 classes the O3a sample lacks: centred on v1.0 means
UNCALIBRATED = sorted(["1080Lines", "1400Ripples", "Air_Compressor", "Chirp", "Helix", "None_of_the_Above",
                       "Wandering_Line"])


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
    out, err = capsys.readouterr()
    namespace = dict(vars(synthetic))
    exec(out, namespace)
    assert namespace["FIT"] == FIT
    assert list(FIT.shapes) == list(GRAVITY_SPY_CLASSES) and len(GRAVITY_SPY_CLASSES) == 22
    # the 7 v1.0 classes the O3a sample lacks are named, and so are its 2 O3-only classes
    assert sorted(line.split()[2] for line in err.splitlines() if line.startswith("not calibrated")) == UNCALIBRATED
    assert sorted(line.split()[2] for line in err.splitlines() if line.startswith("left out")) == sorted(O3_ADDED_CLASSES)
    assert all(FIT.shapes[name].rows == (0 if name in UNCALIBRATED else 10) for name in GRAVITY_SPY_CLASSES)


def o3a_copy(shared_data: Path, path: Path, drop: dict[str, int]) -> pd.DataFrame:
    """The O3a sample without the first ``drop[class]`` rows of some classes, written to ``path``."""
    table = pd.read_csv(shared_data / O3A_FILE)
    gone = pd.concat([table[table["label"] == name].head(n) for name, n in drop.items()])
    table = table.drop(index=gone.index)
    table.to_csv(path, index=False)
    return table


def test_a_users_table_refits_the_classes_it_has_rows_for_and_names_the_others(shared_data: Path, tmp_path: Path,
                                                                              capsys):
    table = o3a_copy(shared_data, tmp_path / "mine.csv", {"Whistle": 7, "Tomte": 10})
    calibrate.main(["--refit", str(shared_data), "--table", str(tmp_path / "mine.csv"), "--min-rows", "4"])
    out, err = capsys.readouterr()
    namespace = dict(vars(synthetic))
    exec(out, namespace)
    fit = namespace["FIT"]
    assert "not calibrated: Whistle (3 real rows, fewer than 4" in err and "not calibrated: Tomte (0 real rows" in err
    assert fit.shapes["Whistle"].rows == 0 and fit.shapes["Tomte"].rows == 0
    # a class with enough rows is centred on them: its median is the geometric mean of its rows
    blips = table[table["label"] == "Blip"]
    assert fit.shapes["Blip"].median[0] == pytest.approx(np.exp(np.log(blips["peakFreq"]).mean()), rel=1e-3)
    # an uncalibrated class is centred on its v1.0 mean turned into a median with the pooled spread
    sd = fit.shapes["Whistle"].log_sd[0]
    assert fit.shapes["Whistle"].median[0] == pytest.approx(1093 * np.exp(-sd**2 / 2), rel=1e-3)


def test_a_table_the_calibration_cannot_use_is_one_clear_line(shared_data: Path, tmp_path: Path):
    table = pd.read_csv(shared_data / O3A_FILE).drop(columns="amplitude")
    table.to_csv(tmp_path / "no_amplitude.csv", index=False)
    with pytest.raises(SystemExit, match=r"calibrate: .*no_amplitude.csv: calibration needs the feature columns "
                                         r"\['amplitude'\]"):
        calibrate.main(["--refit", str(shared_data), "--table", str(tmp_path / "no_amplitude.csv")])
    pd.read_csv(shared_data / O3A_FILE).groupby("label").head(4).to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(SystemExit, match="no class of .* has 5 labelled real rows"):
        calibrate.main(["--refit", str(shared_data), "--table", str(tmp_path / "few.csv")])


def test_class_priors_and_detector_split_match_v1(summary: pd.DataFrame, large: pd.DataFrame):
    totals = summary["n_H1"] + summary["n_L1"]
    prior = totals / totals.sum()
    observed = large["truth"].value_counts().reindex(prior.index, fill_value=0)
    share = observed / len(large)
    assert (abs(share - prior) < 5 * np.sqrt(prior * (1 - prior) / len(large))).all(), share - prior
    h1 = summary["n_H1"] / totals
    h1_share = (large["ifo"] == "H1").groupby(large["truth"]).mean().reindex(prior.index)
    assert (abs(h1_share - h1) <= 5 * np.sqrt(h1 * (1 - h1) / observed) + 1e-12).all(), h1_share - h1


def test_a_priors_table_replaces_the_v1_counts():
    priors = dict.fromkeys(GRAVITY_SPY_CLASSES, 0.0) | {"Scattered_Light": 3.0, "Blip": 1.0}
    share = generate(8000, seed=0, priors=priors)["truth"].value_counts(normalize=True)
    assert set(share.index) == {"Scattered_Light", "Blip"} and share["Scattered_Light"] == pytest.approx(0.75, abs=0.02)
    loaded = SyntheticData(n=8000, seed=0, priors=priors).load().frame  # data.priors=... in a config
    assert loaded["truth"].value_counts(normalize=True).equals(share)
    with pytest.raises(ValueError, match="class priors lack"):
        generate(10, 0, ["Blip", "Tomte"], priors={"Blip": 1.0})
    with pytest.raises(ValueError, match="non-negative"):
        generate(10, 0, ["Blip", "Tomte"], priors={"Blip": -1.0, "Tomte": 1.0})


def test_class_centres_follow_the_real_rows_where_there_are_some_and_v1_means_elsewhere(
        summary: pd.DataFrame, real, large: pd.DataFrame):
    """Calibrated classes: the mean ln feature is the real rows' (within 5 standard errors of the draw);
    the others: the log-normal estimate of the mean, exp(mean ln x + var ln x / 2), is the v1.0 class mean."""
    logs = np.log(large[list(LOG_FEATURES)]).groupby(large["truth"])
    mean, var, n = logs.mean(), logs.var(), logs.count()
    frame = real.frame
    real_mean = np.log(frame[list(LOG_FEATURES)]).groupby(frame["label"]).mean()
    calibrated = [name for name in GRAVITY_SPY_CLASSES if name not in UNCALIBRATED]
    error = (mean.loc[calibrated] - real_mean.loc[calibrated]).abs() / np.sqrt(var.loc[calibrated] / n.loc[calibrated])
    assert (error < 5).all().all(), error.round(1)
    assert real_mean.loc["Whistle", "central_frequency"] > np.log(3900)  # real Whistles: ~4 kHz, v1.0 mean 2.7 kHz
    features = list(FEATURES)
    estimate = mean.loc[UNCALIBRATED, features] + var.loc[UNCALIBRATED, features] / 2
    expected = np.log(summary.loc[UNCALIBRATED, list(SUMMARY_MEANS.values())]).set_axis(features, axis=1)
    se = np.sqrt((var.loc[UNCALIBRATED, features] + var.loc[UNCALIBRATED, features] ** 2 / 2) / n.loc[UNCALIBRATED, features])
    assert ((estimate - expected).abs() / se < 5).all().all()


def test_within_class_spread_matches_the_real_o3a_rows(real, large: pd.DataFrame):
    frame = real.frame
    real_sd = np.maximum(np.log(frame[list(LOG_FEATURES)]).groupby(frame["label"]).std(), calibrate.MIN_LOG_SD)
    synthetic_sd = np.log(large[list(LOG_FEATURES)]).groupby(large["truth"])
    shared = real_sd.index.intersection(GRAVITY_SPY_CLASSES)
    assert len(shared) == 15
    n = synthetic_sd.count().loc[shared]
    error = (synthetic_sd.std().loc[shared] - real_sd.loc[shared]).abs()
    # 5 standard errors of a standard deviation, plus the table's rounding to 3 decimals
    assert (error < 5 * real_sd.loc[shared] / np.sqrt(2 * n) + 5e-4).all().all(), error.round(4)


def test_each_calibrated_class_keeps_the_shape_of_its_own_real_rows(real, large: pd.DataFrame):
    """A class's correlation of the ln features is its real rows' (shrunk a little towards the pooled one),
    not one matrix for all: Light_Modulation's peak frequency and amplitude go together at r = -0.87."""
    frame = real.frame[real.frame["label"].isin(GRAVITY_SPY_CLASSES)]
    logs = np.log(frame[list(LOG_FEATURES)])
    within = logs - logs.groupby(frame["label"]).transform("mean")
    pooled = np.corrcoef(within.to_numpy().T)
    synthetic = np.log(large[list(LOG_FEATURES)])
    for name, rows in logs.groupby(frame["label"]):
        own = np.corrcoef(rows.to_numpy().T)
        drawn = np.corrcoef(synthetic[large["truth"] == name].to_numpy().T)
        assert np.abs(drawn - own).sum() < 0.5 * np.abs(pooled - own).sum(), name
    light = synthetic[large["truth"] == "Light_Modulation"]
    assert np.corrcoef(light["peak_frequency"], light["amplitude"])[0, 1] < -0.7


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


def test_a_classifier_trained_only_on_synthetic_candidates_recognises_real_o3a_glitches(real, shared_data: Path,
                                                                                        tmp_path: Path):
    """The issue's goal (>= 0.50 accuracy, >= 0.45 macro-F1 on the 150 O3a rows of the 15 classes v1.0 and
    O3a share; chance 1/15), held out: each fold's rows are predicted by a forest trained on candidates of a
    fit calibrated on the other four folds only. The pool is drawn at the test rows' (equal) class priors and
    the forest does not see the detector (the real rows are all H1; see benchmarks/bench_synthetic.py)."""
    spec = FeatureSpec(one_hot_ifo=[])
    known = real.frame.index[real.frame["label"].isin(GRAVITY_SPY_CLASSES)]
    truth = real.frame.loc[known, "label"].to_numpy(dtype=object)
    table = pd.read_csv(shared_data / O3A_FILE).set_index("id").loc[known].reset_index()
    predicted = np.empty(len(known), dtype=object)
    for fold, (train_rows, test_rows) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(truth, truth)):
        table.iloc[train_rows].to_csv(tmp_path / "train.csv", index=False)
        fit = calibrate.refit(shared_data / SUMMARY_FILE, [tmp_path / "train.csv"]).fit
        train = canonical(generate(10_000, fold, fit=fit, priors=dict.fromkeys(GRAVITY_SPY_CLASSES, 1.0)))
        forest = RandomForestClassifier(n_estimators=100, min_samples_leaf=5, random_state=0, n_jobs=2)
        forest.fit(spec.matrix(train), train["truth"].to_numpy(dtype=object))
        predicted[test_rows] = forest.predict(spec.matrix(real.frame.loc[known[test_rows]]))
    accuracy = float((predicted == truth).mean())
    macro_f1 = f1_score(truth, predicted, labels=sorted(set(truth)), average="macro")
    print(f"held-out transfer to real O3a rows: accuracy {accuracy:.3f}, macro-F1 {macro_f1:.3f}")
    assert accuracy >= 0.50 and macro_f1 >= 0.45, (accuracy, macro_f1)
