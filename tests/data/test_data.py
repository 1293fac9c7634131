"""Data loaders and their schemas on the real Gravity Spy O3a rows, v1.0-format copies of them, corrupted
copies, and users' feature tables."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from glitchrun.csvio import CsvError
from glitchrun.data.loaders import (
    GRAVITY_SPY_CLASSES,
    O3_ADDED_CLASSES,
    Candidates,
    CsvData,
    FeatureSpec,
    GravitySpyData,
    SyntheticData,
)

O3A = "gravityspy_o3a_h1_sample.csv"
O3_CLASSES = [*GRAVITY_SPY_CLASSES, *O3_ADDED_CLASSES]
#: v1.0 column -> O3 catalogue column, to write the real O3a rows in the v1.0 format
V1_FROM_O3 = {"gravityspy_id": "id", "ifo": "ifo", "peak_frequency": "peakFreq", "central_freq": "centralFreq",
              "bandwidth": "bandwidth", "duration": "duration", "snr": "snr", "amplitude": "amplitude",
              "label": "label"}


@pytest.fixture(scope="module")
def o3a(shared_data: Path) -> pd.DataFrame:
    """The real O3a sample as the file has it."""
    return pd.read_csv(shared_data / O3A)


def v1_copy(o3a: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The O3a rows of v1.0 classes written in the v1.0 training-set format, times split in s and ns (and,
    as in the real v1.0 file, also whole in ``event_time``)."""
    rows = o3a[o3a["label"].isin(GRAVITY_SPY_CLASSES)].reset_index(drop=True)
    table = pd.DataFrame({"event_time": rows["GPStime"], **{v1: rows[o3] for v1, o3 in V1_FROM_O3.items()}})
    table.insert(3, "peak_time", np.floor(rows["GPStime"]).astype(int))
    table.insert(4, "peak_time_ns", np.round((rows["GPStime"] % 1) * 1e9).astype(int))
    table["sample_type"] = "train"
    table.to_csv(path, index=False)
    return table


def test_o3_catalogue_rows_map_to_the_canonical_columns(shared_data: Path, o3a: pd.DataFrame, caplog):
    caplog.set_level(logging.INFO, logger="glitchrun.data.loaders")
    found = GravitySpyData(shared_data / O3A, classes=O3_CLASSES).load()
    frame = found.frame
    assert frame.index.name == "id" and frame.index.is_unique and len(frame) == 170
    assert frame.index.tolist() == o3a["id"].tolist()
    pd.testing.assert_series_equal(frame["peak_frequency"], o3a.set_index("id")["peakFreq"], check_names=False)
    pd.testing.assert_series_equal(frame["event_time"], o3a.set_index("id")["GPStime"], check_names=False)
    assert frame["label"].value_counts().to_dict() == o3a["label"].value_counts().to_dict()
    assert frame["truth"].isna().all() and len(found.labelled()) == 170 and found.pool().empty
    assert found.classes == O3_CLASSES
    assert "170 candidates, 170 labelled, 0 with ground truth, 24 classes" in caplog.text


def test_features_are_plain_float64_rows_in_the_asked_order(shared_data: Path, o3a: pd.DataFrame):
    found = GravitySpyData(shared_data / O3A, classes=O3_CLASSES).load()
    assert found.feature_columns == ["log10_peak_frequency", "log10_central_frequency", "log10_duration",
                                     "log10_bandwidth", "log10_snr", "log10_amplitude", "ifo_H1", "ifo_L1"]
    ids = found.frame.index[[5, 0, 42]]
    X = found.features(ids)
    assert X.dtype == np.float64 and X.flags["C_CONTIGUOUS"] and X.shape == (3, 8)
    expected = o3a.set_index("id").loc[ids]
    np.testing.assert_allclose(X[:, 0], np.log10(expected["peakFreq"]))
    np.testing.assert_allclose(X[:, 5], np.log10(expected["amplitude"]))
    np.testing.assert_array_equal(X[:, 6:], [[1, 0]] * 3)  # every O3a row is from H1
    assert found.features().shape == (170, 8)


def test_labels_as_truth_makes_a_simulated_campaign_on_real_rows(shared_data: Path, o3a: pd.DataFrame):
    found = GravitySpyData(shared_data / O3A, classes=O3_CLASSES, labels_as="truth").load()
    assert found.frame["label"].isna().all() and len(found.pool()) == 170 and found.labelled().empty
    assert found.frame["truth"].tolist() == o3a["label"].tolist()


def test_o3_labels_outside_the_v1_vocabulary_are_named_by_line(shared_data: Path, o3a: pd.DataFrame):
    with pytest.raises(CsvError) as err:
        GravitySpyData(shared_data / O3A).load()
    first = o3a.index[o3a["label"] == "Blip_Low_Frequency"][0] + 2
    assert "column 'label'" in str(err.value) and f"line {first}," in str(err.value)


def test_v1_format_is_detected_and_its_times_joined(o3a: pd.DataFrame, tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="glitchrun.data.loaders")
    table = v1_copy(o3a, tmp_path / "v1.csv")
    table.loc[3, "label"] = None  # an unlabelled row joins the pool
    table.to_csv(tmp_path / "v1.csv", index=False)
    found = GravitySpyData(tmp_path / "v1.csv").load()
    assert len(found.frame) == 150 and found.pool().index.tolist() == [table.loc[3, "gravityspy_id"]]
    real_times = o3a.set_index("id")["GPStime"].loc[found.frame.index]
    np.testing.assert_allclose(found.frame["event_time"], real_times, rtol=0, atol=1e-6)
    assert found.frame["central_frequency"].tolist() == table["central_freq"].tolist()
    assert "Gravity Spy v1.0 metadata" in caplog.text and "150 candidates, 149 labelled" in caplog.text


def test_v1_format_reads_event_time_when_the_split_times_are_absent(o3a: pd.DataFrame, tmp_path: Path):
    v1_copy(o3a, tmp_path / "v1.csv").drop(columns=["peak_time", "peak_time_ns"]).to_csv(tmp_path / "v1.csv",
                                                                                       index=False)
    found = GravitySpyData(tmp_path / "v1.csv").load()
    real_times = o3a.set_index("id")["GPStime"].loc[found.frame.index]
    np.testing.assert_allclose(found.frame["event_time"], real_times, rtol=0, atol=1e-6)


def test_the_real_o1_sample_loads_with_its_event_times(shared_data: Path):
    """The shared v1.0 sample has ``event_time`` and no ``peak_time``: every row loads, times and labels as filed."""
    table = pd.read_csv(shared_data / "gravityspy_v1_o1_sample.csv")
    found = GravitySpyData(shared_data / "gravityspy_v1_o1_sample.csv").load()
    assert len(found.frame) == 279 and found.pool().empty
    assert found.frame["event_time"].tolist() == table["event_time"].tolist()
    assert found.frame["label"].value_counts().to_dict() == table["label"].value_counts().to_dict()
    assert set(found.frame["ifo"]) == {"H1", "L1"} and found.features().shape == (279, 8)


def test_a_missing_amplitude_is_left_out_of_the_features(o3a: pd.DataFrame, tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="glitchrun.data.loaders")
    v1_copy(o3a, tmp_path / "v1.csv").drop(columns="amplitude").to_csv(tmp_path / "v1.csv", index=False)
    found = GravitySpyData(tmp_path / "v1.csv").load()
    assert "log10_amplitude" not in found.feature_columns and found.features().shape == (150, 7)
    assert found.frame["amplitude"].isna().all()
    assert "has no amplitude: left out of the features" in caplog.text


# corruption -> (column in the O3 file, column in the v1.0 file, a bad value or None to drop the column)
CORRUPTIONS = {
    "missing column": ("snr", "snr", None),
    "duplicate id": ("id", "gravityspy_id", "duplicate"),
    "negative SNR": ("snr", "snr", -3.0),
    "unknown class": ("label", "label", "Bleep"),
    "unknown ifo": ("ifo", "ifo", "X1"),
    "non-numeric": ("peakFreq", "peak_frequency", "loud"),
    "zero duration": ("duration", "duration", 0.0),
}


@pytest.mark.parametrize("fmt", ["O3", "v1.0"])
@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupted_copy_is_rejected_naming_column_and_line(fmt: str, corruption: str, shared_data: Path,
                                                             o3a: pd.DataFrame, tmp_path: Path):
    path = tmp_path / "corrupted.csv"
    table = o3a if fmt == "O3" else v1_copy(o3a, path)
    column = CORRUPTIONS[corruption][0 if fmt == "O3" else 1]
    value = CORRUPTIONS[corruption][2]
    if value is None:
        table = table.drop(columns=column)
    else:
        table = table.astype({column: object})
        table.loc[7, column] = table.loc[3, column] if value == "duplicate" else value
    table.to_csv(path, index=False)
    with pytest.raises(CsvError) as err:
        GravitySpyData(path, classes=O3_CLASSES).load()
    message = str(err.value)
    assert str(path) in message and repr(column) in message
    if value is None:
        assert f"missing column {column!r}" in message
    else:
        assert "line 9" in message  # row 7 below the header
    if value == "duplicate":
        assert "line 5" in message


def test_a_file_of_neither_format_says_which_id_columns_it_lacks(o3a: pd.DataFrame, tmp_path: Path):
    o3a.rename(columns={"id": "glitch"}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(CsvError, match="line 1 has no id column 'gravityspy_id' .* or 'id'"):
        GravitySpyData(tmp_path / "other.csv").load()


def feature_table(path: Path) -> pd.DataFrame:
    table = pd.DataFrame({"key": [10, 11, 12, 13], "f1": [0.5, -1.0, 2.0, 3.5], "f2": [1e3, 2e3, 0.0, -4.0],
                          "ifo": ["H1", "L1", "H1", "L1"], "class": ["Blip", None, "Whistle", None]})
    table.to_csv(path, index=False)
    return table


def test_a_feature_table_takes_its_columns_as_they_are(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="glitchrun.data.loaders")
    table = feature_table(tmp_path / "features.csv")
    found = CsvData(tmp_path / "features.csv", id_column="key", label_column="class").load()
    assert found.feature_columns == ["f1", "f2"]  # ifo is canonical, key and class are id and label
    np.testing.assert_array_equal(found.features(["13", "10"]), table.loc[[3, 0], ["f1", "f2"]].to_numpy())
    assert found.frame.index.tolist() == ["10", "11", "12", "13"]
    assert found.frame["ifo"].tolist() == table["ifo"].tolist()
    assert found.labelled().index.tolist() == ["10", "12"] and found.pool().index.tolist() == ["11", "13"]
    assert found.frame["snr"].isna().all()
    assert "4 candidates, 2 labelled, 0 with ground truth, 22 classes, features f1, f2" in caplog.text
    hidden = CsvData(tmp_path / "features.csv", ["f2"], id_column="key", label_column="class",
                     labels_as="truth").load()
    assert hidden.feature_columns == ["f2"] and hidden.labelled().empty
    assert hidden.frame["truth"].tolist() == table["class"].tolist()


@pytest.mark.parametrize("column,row,value", [
    ("key", 2, 10),              # duplicate id
    ("f2", 1, "n/a"),            # non-numeric
    ("f1", 3, float("inf")),     # not finite
    ("f1", 0, None),             # empty feature
    ("class", 2, "Bleep"),       # unknown class
    ("ifo", 1, "X1"),            # a kept canonical column is checked too
])
def test_a_bad_feature_table_is_rejected_naming_column_and_line(column: str, row: int, value: object,
                                                               tmp_path: Path):
    table = feature_table(tmp_path / "features.csv").astype({column: object})
    table.loc[row, column] = value
    table.to_csv(tmp_path / "features.csv", index=False)
    with pytest.raises(CsvError) as err:
        CsvData(tmp_path / "features.csv", ["f1", "f2"], id_column="key", label_column="class").load()
    assert f"column {column!r}" in str(err.value) and f"line {row + 2}" in str(err.value)


def test_a_feature_table_without_a_named_feature_column_is_rejected(tmp_path: Path):
    feature_table(tmp_path / "features.csv")
    with pytest.raises(CsvError, match="'f3'"):
        CsvData(tmp_path / "features.csv", ["f1", "f3"], id_column="key").load()


def test_loaders_refuse_a_missing_path_or_an_unknown_labels_use():
    with pytest.raises(ValueError, match="data.path is not set"):
        GravitySpyData().load()
    with pytest.raises(ValueError, match="labels_as"):
        CsvData("x.csv", labels_as="hidden")


def test_candidates_refuse_duplicate_ids_and_unknown_feature_columns():
    frame = SyntheticData(n=5).load().frame
    with pytest.raises(ValueError, match="unique index named .id."):
        Candidates(pd.concat([frame, frame.iloc[:1]]))
    with pytest.raises(ValueError, match=r"\['loudness'\]"):
        FeatureSpec(log10=["loudness"]).available(frame, "test frame")


def compose_data(tmp_path: Path, overrides: list[str]):
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        cfg = compose("config", overrides=[f"paths.outputs={tmp_path}", f"paths.run_dir={tmp_path / 'run'}",
                                           *overrides])
    return instantiate(cfg.data, _convert_="all")


def test_every_data_config_loads(o3a: pd.DataFrame, tmp_path: Path):
    synthetic = compose_data(tmp_path, ["data.n=300", "seed=4"]).load()
    assert len(synthetic.frame) == 300 and synthetic.classes == list(GRAVITY_SPY_CLASSES)
    assert synthetic.frame.equals(SyntheticData(n=300, seed=4).load().frame)
    v1_copy(o3a, tmp_path / "v1.csv")
    real = compose_data(tmp_path, ["data=gravityspy", f"data.path={tmp_path / 'v1.csv'}", "data.labels_as=truth",
                                   "data.features.log10=[snr,duration]"]).load()
    assert real.feature_columns == ["log10_snr", "log10_duration", "ifo_H1", "ifo_L1"]
    assert len(real.pool()) == 150
    feature_table(tmp_path / "features.csv")
    own = compose_data(tmp_path, ["data=csv", f"data.path={tmp_path / 'features.csv'}", "data.id_column=key",
                                  "data.label_column=class"]).load()
    assert own.feature_columns == ["f1", "f2"] and len(own.labelled()) == 2
