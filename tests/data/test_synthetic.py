"""The synthetic generator: its numbers are re-derived from real tables (the shared files or a user's), its
candidates reproduce the v1.0 class priors, the real rows' centres and spread (v1.0 means where there are
no real rows), and a classifier trained on them recognises real glitches it was not calibrated on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal, norm
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
    Fit,
    Mode,
    Shape,
    generate,
)

#: the v1.0 classes the O3a sample lacks: centred on v1.0 means
UNCALIBRATED = sorted(["1080Lines", "1400Ripples", "Air_Compressor", "Chirp", "Helix", "None_of_the_Above",
                       "Wandering_Line"])
#: the classes whose O3a rows split into a narrow-tile and a broadband-tile mode (``calibrate.two_modes``)
TWO_MODES = sorted(["Light_Modulation", "Low_Frequency_Lines", "No_Glitch", "Power_Line", "Scattered_Light",
                    "Scratchy", "Tomte", "Violin_Mode"])


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
    # and so are the classes given two modes, with where they split
    assert sorted(line.split()[2] for line in err.splitlines() if line.startswith("two modes")) == TWO_MODES
    assert "two modes: Light_Modulation (central frequency 33-658 Hz: 3 rows, 2369-3810 Hz: 7 rows)" in err
    assert sorted(name for name, shape in FIT.shapes.items() if shape.modes) == TWO_MODES


def test_two_modes_split_only_a_clear_gap_with_enough_rows_each_side(shared_data: Path):
    """Light_Modulation's real rows: 3 narrow tiles (33-658 Hz) and 7 broadband ones (2.4-3.8 kHz), a gap of
    ln(2369 / 658) = 1.28; Koi_Fish's widest gap (1021 -> 2380 Hz, 0.85) is under the rule's 1.0."""
    table = pd.read_csv(shared_data / O3A_FILE)
    light = table.loc[table["label"] == "Light_Modulation", "centralFreq"].to_numpy()
    upper = calibrate.two_modes(np.log(light))
    assert upper is not None and sorted(light[~upper].round()) == [33, 541, 658] and upper.sum() == 7
    assert calibrate.two_modes(np.log(table.loc[table["label"] == "Koi_Fish", "centralFreq"])) is None
    # two rows below a wide gap are not a mode; a gap of exactly MODE_GAP is
    assert calibrate.two_modes(np.log([10, 11, 1000, 1100, 1200, 1300])) is None
    assert calibrate.two_modes(np.array([0, 0.1, 0.2, 1.2, 1.3, 1.4])).tolist() == [False] * 3 + [True] * 3


def test_the_fit_source_keeps_two_modes_readable():
    """A two-mode class prints as one Shape with its two Modes, and reads back equal."""
    light = FIT.shapes["Light_Modulation"]
    source = Fit({"Light_Modulation": light}).source()
    assert source.count("Mode(") == 2 and source.splitlines()[3].strip().startswith("modes=(Mode(3, ")
    namespace = dict(vars(synthetic))
    exec(source, namespace)
    assert namespace["FIT"].shapes["Light_Modulation"] == light
    assert [weight for weight, _, _ in light.components()] == [0.3, 0.7]


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
    pd.read_csv(shared_data / O3A_FILE).groupby("label").head(1).to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(SystemExit, match="calibration needs two labelled rows of one class"):
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
    """A one-mode class has its real rows' spread; a two-mode class is drawn with its mixture's spread, and
    each mode's stored spread lies between its own rows' and the class's within-mode spread (shrinkage)."""
    frame = real.frame
    real_logs = np.log(frame[list(LOG_FEATURES)])
    real_sd = np.maximum(real_logs.groupby(frame["label"]).std(), calibrate.MIN_LOG_SD)
    synthetic_sd = np.log(large[list(LOG_FEATURES)]).groupby(large["truth"])
    shared = real_sd.index.intersection(GRAVITY_SPY_CLASSES)
    assert len(shared) == 15
    expected = real_sd.loc[shared].copy()
    for name in TWO_MODES:
        weight, median, sd = (np.array(column) for column in zip(*FIT.shapes[name].components(), strict=True))
        centre = weight @ np.log(median)
        expected.loc[name] = np.sqrt(weight @ (sd**2 + (np.log(median) - centre) ** 2))
        rows = real_logs[frame["label"] == name]
        mode = calibrate.two_modes(rows["central_frequency"].to_numpy())
        within = np.sqrt(((rows - rows.groupby(mode).transform("mean")) ** 2).sum() / (len(rows) - 2))
        for upper, stored in zip((False, True), sd, strict=True):
            own = rows[mode == upper].std()
            assert (stored >= np.minimum(own, within) - 1e-3).all() and (stored <= np.maximum(own, within) + 1e-3).all()
    n = synthetic_sd.count().loc[shared]
    error = (synthetic_sd.std().loc[shared] - expected).abs()
    # 5 standard errors of a standard deviation, plus the table's rounding to 3 decimals
    assert (error < 5 * expected / np.sqrt(2 * n) + 5e-4).all().all(), error.round(4)


def test_a_two_mode_class_is_drawn_from_both_modes(real, large: pd.DataFrame):
    """The drawn central frequencies of each two-mode class follow its mixture (the share below each real
    row's value is the mixture's distribution function there), and Light_Modulation's drawn rows sit where
    its real ones do: 7 of 10 real rows are broadband tiles at 2.4-3.8 kHz, a range one log-normal gave
    11 % of the class and the mixture gives about a quarter (its broadband mode's spread is shrunk wider)."""
    for name in TWO_MODES:
        drawn = np.log(large.loc[large["truth"] == name, "central_frequency"].to_numpy())
        at = np.log(real.frame.loc[real.frame["label"] == name, "central_frequency"].to_numpy())
        mixture = sum(weight * norm.cdf((at - np.log(median[1])) / sd[1])
                      for weight, median, sd in FIT.shapes[name].components())
        share = (drawn[:, None] < at).mean(axis=0)
        assert (np.abs(share - mixture) < 5 * np.sqrt(mixture * (1 - mixture) / len(drawn)) + 1e-3).all(), name
    light = large.loc[large["truth"] == "Light_Modulation", "central_frequency"]
    single = FIT.shapes["Light_Modulation"]  # the class as one log-normal, as before the modes
    one_log_normal = np.diff(norm.cdf((np.log([2369, 3810]) - np.log(single.median[1])) / single.log_sd[1]))[0]
    assert one_log_normal < 0.12 and light.between(2369, 3810).mean() > 0.22


def test_the_class_posterior_of_a_mixture_sums_its_modes_densities(large: pd.DataFrame):
    """Fit.posterior (the difficulty-aware crowd's ambiguity) of a two-mode class: each mode's log-normal
    density in ln space, weighted by the mode's share, summed; rows sum to 1."""
    rows = large.groupby("truth").head(20)
    values = rows[list(LOG_FEATURES)].to_numpy()
    classes = list(GRAVITY_SPY_CLASSES)
    posterior = FIT.posterior(values, classes)
    assert np.allclose(posterior.sum(axis=1), 1.0) and (posterior >= 0).all()
    shape = FIT.shapes["Light_Modulation"]
    matrix = np.eye(len(LOG_FEATURES))
    matrix[np.triu_indices(len(LOG_FEATURES), 1)] = shape.correlation
    matrix = np.triu(matrix) + np.triu(matrix, 1).T
    density = sum(weight * multivariate_normal(np.log(median), matrix * np.outer(sd, sd)).pdf(np.log(values))
                  for weight, median, sd in shape.components())
    # log_likelihood leaves out the constant -3 ln(2 pi) every class shares
    ours = FIT.log_likelihood(values, ["Light_Modulation"])[:, 0] - len(LOG_FEATURES) / 2 * np.log(2 * np.pi)
    assert np.allclose(ours, np.log(density))
    # a one-mode fit of the same class is the plain log-normal: the mixture is what changed
    whole = Fit({"Light_Modulation": shape._replace(modes=())})
    assert not np.allclose(whole.log_likelihood(values, ["Light_Modulation"]), FIT.log_likelihood(values, ["Light_Modulation"]))


def test_each_mode_is_drawn_at_its_share_of_the_rows():
    """A mode holding 7 of a class's 10 rows draws 70 % of its candidates, around its own median."""
    shape = Shape(1, 1, (100.0, 200.0, 1.0, 300.0, 20.0, 1e-22), (0.3,) * 6, 10, (0.0,) * 15)
    broadband = (100.0, 2000.0, 1.0, 3000.0, 20.0, 1e-22)
    fit = Fit({"A": shape._replace(modes=(Mode(3, shape.median, shape.log_sd), Mode(7, broadband, shape.log_sd)))})
    central = generate(20_000, 4, fit=fit)["central_frequency"]
    upper = central > np.sqrt(200 * 2000)
    assert upper.mean() == pytest.approx(0.7, abs=0.02)
    assert np.exp(np.log(central[upper]).mean()) == pytest.approx(2000, rel=0.02)
    assert np.exp(np.log(central[~upper]).mean()) == pytest.approx(200, rel=0.02)


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


def test_interleaved_candidates_take_the_classes_in_turn_and_each_mode_at_its_share():
    drawn = generate(22 * 2000, seed=3, interleaved=True)
    assert drawn["truth"].iloc[:22].tolist() == list(GRAVITY_SPY_CLASSES)  # one of each, in order, then again
    assert drawn["truth"].iloc[:100].value_counts().agg(["min", "max"]).tolist() == [4, 5]
    light = drawn[drawn["truth"] == "Light_Modulation"]
    upper = FIT.shapes["Light_Modulation"].modes[1]
    assert (light["central_frequency"] > 1000).mean() == pytest.approx(upper.rows / 10, abs=0.04)


O1_FILE = "gravityspy_v1_o1_sample.csv"


def test_a_kernel_refit_draws_each_calibrated_class_from_its_own_rows(shared_data: Path, capsys):
    """``refit(kernel=True)`` on the real O1 sample: a mode per row of each class with ``MIN_ROWS`` rows or more
    (the rest as the log-normal refit has them); Blip's 69 rows drawn again keep their ln mean and spread, and
    some of the skew a log-normal evens out; ``--kernel`` prints that fit."""
    lognormal = calibrate.refit(shared_data / SUMMARY_FILE, [shared_data / O1_FILE]).fit
    kernel = calibrate.refit(shared_data / SUMMARY_FILE, [shared_data / O1_FILE], kernel=True).fit
    rows = pd.read_csv(shared_data / O1_FILE)
    counts = rows["label"].value_counts()
    for name, shape in kernel.shapes.items():
        if counts.get(name, 0) >= calibrate.MIN_ROWS:
            assert [mode.rows for mode in shape.modes] == [1] * counts[name]
        else:
            assert shape == lognormal.shapes[name]
    blips = np.log(rows.loc[rows["label"] == "Blip", ["snr", "duration"]].to_numpy())
    drawn = generate(200_000, seed=0, classes=["Blip"], fit=kernel)
    again = np.log(drawn[["snr", "duration"]].to_numpy())
    np.testing.assert_allclose(again.mean(axis=0), blips.mean(axis=0), atol=0.02)
    np.testing.assert_allclose(again.std(axis=0), blips.std(axis=0, ddof=1), rtol=0.03)
    skew = lambda values: (((values - values.mean()) / values.std()) ** 3).mean()  # noqa: E731
    # Blip's SNR is skewed even in ln: the log-normal refit draws no skew, the kernel keeps over half of it
    assert skew(blips[:, 0]) > 0.5 and skew(again[:, 0]) > 0.5 * skew(blips[:, 0])
    calibrate.main(["--refit", str(shared_data), "--table", str(shared_data / O1_FILE), "--kernel"])
    namespace = dict(vars(synthetic))
    exec(capsys.readouterr().out, namespace)
    assert namespace["FIT"] == kernel


@pytest.mark.slow
def test_a_forest_trained_on_a_kernel_refit_recognises_held_out_o1_rows_better_than_on_the_log_normal_one(
        shared_data: Path, tmp_path: Path):
    """5-fold CV of the real O1 sample: the generator refit on four folds, a forest trained on its candidates only
    predicts the fifth; kernel refit against log-normal refit and against the real training rows."""
    o1 = GravitySpyData(shared_data / O1_FILE).load()
    table, truth = pd.read_csv(shared_data / O1_FILE), o1.frame["label"].to_numpy(dtype=object)
    predicted = {kind: np.empty(len(truth), dtype=object) for kind in ("lognormal", "kernel", "real")}
    forest = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=2)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(truth, truth):
        table.iloc[train].to_csv(tmp_path / "train.csv", index=False)
        for kind in ("lognormal", "kernel"):
            fit = calibrate.refit(shared_data / SUMMARY_FILE, [tmp_path / "train.csv"], kernel=kind == "kernel").fit
            drawn = canonical(generate(20_000, 0, fit=fit))
            model = forest.fit(FeatureSpec().matrix(drawn), drawn["truth"].to_numpy(dtype=object))
            predicted[kind][test] = model.predict(o1.features(o1.frame.index[test]))
        model = forest.fit(o1.features(o1.frame.index[train]), truth[train])
        predicted["real"][test] = model.predict(o1.features(o1.frame.index[test]))
    accuracy = {kind: float((found == truth).mean()) for kind, found in predicted.items()}
    print(f"held-out O1 accuracy: {accuracy}")
    assert accuracy["kernel"] >= accuracy["lognormal"] + 0.02 and accuracy["kernel"] >= accuracy["real"] - 0.04
