"""job=update_metadata: CSV checks and the plan without a server, then the job against the embedded Panoptes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from glitchrun.csvio import CsvError, read_csv, validate
from glitchrun.jobs.update_metadata import DIFF, infer_dtype, plan_updates, same_value, subjects_by_key, updates_schema

CURRENT = {
    "1": {"candidate_id": "c1", "snr": 8, "ifo": "H1", "#truth": "Blip"},
    "2": {"candidate_id": "c2", "snr": 9.5, "ifo": "L1"},
    "3": {"candidate_id": "c3", "snr": 10, "ifo": "H1"},
}


def csv_frame(tmp_path: Path, text: str) -> pd.DataFrame:
    path = tmp_path / "updates.csv"
    path.write_text(text)
    return read_csv(path, dtype=str, keep_default_na=False)


def test_types_follow_the_current_values():
    assert infer_dtype([1, 2]) == "int"
    assert infer_dtype([1, 2.5]) == "float"
    assert infer_dtype([True, None]) == "bool"
    assert infer_dtype([1, "x"]) == "str"
    assert infer_dtype([]) == "str"


def test_same_value_is_json_equality_except_for_equal_numbers():
    assert same_value(3, 3.0)
    assert not same_value(1, True)
    assert not same_value("3", 3)
    assert same_value({"a": [1]}, {"a": [1]})


def test_merge_changes_only_given_cells_and_keeps_other_fields(tmp_path: Path):
    updates = csv_frame(tmp_path, "subject_id,snr,ifo\n1,8,V1\n2,,L1\n3,11,H1\n")
    diff, changes = plan_updates(updates, "subject_id", {k: k for k in CURRENT}, CURRENT,
                                 {"snr": "float", "ifo": "str"}, "merge")
    DIFF.validate(diff)
    assert diff.values.tolist() == [["1", "ifo", '"H1"', '"V1"'], ["3", "snr", "10", "11.0"]]
    assert changes == {"1": {"candidate_id": "c1", "snr": 8, "ifo": "V1", "#truth": "Blip"},
                       "3": {"candidate_id": "c3", "snr": 11.0, "ifo": "H1"}}


def test_replace_makes_the_metadata_exactly_the_row(tmp_path: Path):
    updates = csv_frame(tmp_path, "candidate_id,snr,ifo\nc1,8,H1\nc2,9.5,\n")
    subject_of, ambiguous = subjects_by_key(CURRENT, "candidate_id")
    assert not ambiguous
    diff, changes = plan_updates(updates, "candidate_id", subject_of, CURRENT,
                                 {"candidate_id": "str", "snr": "float", "ifo": "str"}, "replace")
    assert changes == {"1": {"candidate_id": "c1", "snr": 8, "ifo": "H1"}, "2": {"candidate_id": "c2", "snr": 9.5}}
    assert set(map(tuple, diff[["subject_id", "field"]].values.tolist())) == {("1", "#truth"), ("2", "ifo")}
    assert diff["new"].isna().all()


def test_schema_names_every_bad_row(tmp_path: Path):
    updates = csv_frame(tmp_path, "subject_id,snr\n1,8\n1,9\n99,x\n,7\n")
    schema = updates_schema("subject_id", {"snr": "int"}, {"snr": "the field's current values are integers"},
                            keys={"1", "2", "3"}, where="subject set 5")
    with pytest.raises(CsvError) as err:
        validate(updates, schema, source="updates.csv")
    message = str(err.value)
    assert "field_uniqueness at line 2, line 3" in message
    assert "is not a subject of subject set 5 at line 4" in message
    assert "is not an integer (the field's current values are integers) at line 4" in message
    assert "is empty at line 5" in message


def test_a_key_held_by_several_subjects_is_refused(tmp_path: Path):
    current = CURRENT | {"4": {"candidate_id": "c1"}}
    subject_of, ambiguous = subjects_by_key(current, "candidate_id")
    assert ambiguous == {"c1"}
    updates = csv_frame(tmp_path, "candidate_id,ifo\nc1,V1\nc2,V1\n")
    with pytest.raises(CsvError, match="matches several subjects of set 5 .* at line 2"):
        validate(updates, updates_schema("candidate_id", {}, keys=subject_of, ambiguous=ambiguous, where="set 5"),
                 source="updates.csv")
