"""Exports: Zooniverse's export formats, staleness, and the request/download jobs against the embedded Panoptes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from glitchrun.csvio import CsvError
from glitchrun.exports import ExportJob, read_classification_export, read_subject_export, staleness

CLASSIFICATIONS = """\
classification_id,user_name,user_id,user_ip,workflow_id,workflow_name,workflow_version,created_at,gold_standard,expert,metadata,annotations,subject_data,subject_ids
1,alice,1,4b84b15bff6ee5796152,2,Is it a cat?,1.1,2024-05-01 12:00:06 UTC,,,"{""started_at"":""2024-05-01T12:00:00.000Z"",""live_project"":true,""user_group_ids"":[]}","[{""task"":""T0"",""task_label"":""Is there a cat?"",""value"":""Yes""}]","{""12"":{""retired"":null,""filename"":""cat1.png"",""#truth"":""cat""}}",12
2,NA,,4b84b15bff6ee5796152,2,Is it a cat?,1.1,2024-05-01 12:00:07 UTC,true,,{},[],{},12;13
"""

SUBJECTS = """\
subject_id,project_id,workflow_id,subject_set_id,metadata,locations,classifications_count,retired_at,retirement_reason,created_at,updated_at
12,1,2,5,"{""candidate_id"":""c1"",""snr"":8}","{""0"":""http://127.0.0.1/a.png""}",3,2024-05-01 12:00:09 UTC,classification_count,2024-05-01 11:00:00 UTC,2024-05-01 12:00:09 UTC
13,1,,6,{},{},0,,,2024-05-01 11:00:00 UTC,2024-05-01 11:00:00 UTC
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_classification_export_is_parsed(tmp_path: Path):
    frame = read_classification_export(write(tmp_path, "c.csv", CLASSIFICATIONS))
    assert frame["classification_id"].tolist() == [1, 2]
    assert frame.at[0, "annotations"][0]["value"] == "Yes"
    assert frame.at[0, "subject_data"]["12"]["#truth"] == "cat"
    assert frame.at[1, "user_name"] == "NA"  # a login, not a missing value
    assert frame["user_id"].isna().tolist() == [False, True]
    assert frame["gold_standard"].tolist()[1] is True
    assert frame.at[1, "created_at"] == datetime(2024, 5, 1, 12, 0, 7, tzinfo=timezone.utc)


def test_subject_export_is_parsed(tmp_path: Path):
    frame = read_subject_export(write(tmp_path, "s.csv", SUBJECTS))
    assert frame.at[0, "metadata"] == {"candidate_id": "c1", "snr": 8}
    assert frame["workflow_id"].isna().tolist() == [False, True]
    assert frame["retired_at"].isna().tolist() == [False, True]


@pytest.mark.parametrize("change,expected", [
    (("[{", "[{{"), "column 'annotations' fails is not a JSON array at line 2"),
    (("1.1,2024-05-01 12:00:07", "1.1,yesterday"), "column 'created_at' fails is not a 'YYYY-MM-DD HH:MM:SS UTC' time at line 3"),
    (("12;13", "12,13"), "not a well-formed CSV"),
    (("workflow_version,", ""), "workflow_version"),
])
def test_malformed_classification_export_names_line_and_column(tmp_path: Path, change: tuple[str, str], expected: str):
    text = CLASSIFICATIONS.replace(*change, 1)
    with pytest.raises(CsvError) as err:
        read_classification_export(write(tmp_path, "c.csv", text))
    assert expected in str(err.value) and "c.csv" in str(err.value)


def test_staleness_by_age_and_by_missing_classifications():
    now = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)
    medium = {"updated_at": "2024-05-01T12:00:00.000Z"}
    assert "24.0 h ago" in staleness(medium, max_age=3600, now=now)
    assert staleness(medium, max_age=None, now=now) is None
    assert staleness(medium, max_age=2 * 86400, rows=5, classifications=5, now=now) is None
    assert "holds 4 classifications but Zooniverse has counted 5" in staleness(medium, None, rows=4, classifications=5)


@pytest.mark.parametrize("exports,workflow_id,message", [
    (["classifications", "talk"], None, "non-empty list"),
    ([], None, "non-empty list"),
    (["subjects", "subjects"], None, "twice"),
    (["classifications", "subjects"], 4, "only a classifications export"),
])
def test_export_config_is_checked_before_connecting(exports: list[str], workflow_id: int | None, message: str):
    job = ExportJob(backend=None, run_dir=".", exports=exports, workflow_id=workflow_id)
    with pytest.raises(ValueError, match=message):
        job.check_config()
