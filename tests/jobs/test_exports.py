"""Exports: Zooniverse's export formats, staleness, and the request/download jobs against the embedded Panoptes."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from panoptes_client import Panoptes

from glitchrun.csvio import CsvError
from glitchrun.zooniverse.exports import (
    ExportJob,
    ExportTarget,
    StaleExportError,
    read_classification_export,
    read_export,
    read_subject_export,
    staleness,
    wait_until_ready,
)

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


def test_waiting_gives_up_with_a_clear_error():
    class Creating:  # an export Zooniverse never finishes
        id, display_name = 7, "slow"

        def describe_export(self, export_type: str) -> dict:
            return {"media": [{"metadata": {"state": "creating"}}]}

    with pytest.raises(TimeoutError, match=r"classifications export of project 7 \('slow'\) is still 'creating' after 0.05 s"):
        wait_until_ready(ExportTarget(Creating()), "classifications", timeout=0.05, poll_interval=0.01)


# -- against the embedded Panoptes -------------------------------------------------------------------
def classify(connection, zoo, subject_id: str, answer: int, anonymous: bool = False) -> None:
    """A completed classification of one subject, posted as the Zooniverse web app would (§8)."""
    body = {"classifications": {
        "completed": True, "annotations": [{"task": "T0", "value": answer}],
        "metadata": {"started_at": "2024-05-01T12:00:00.000Z", "finished_at": "2024-05-01T12:00:05.000Z",
                     "user_agent": "glitchrun-tests", "user_language": "en", "workflow_version": "1.1"},
        "links": {"project": zoo.project_id, "workflow": zoo.workflow_id, "subjects": [subject_id]}}}
    if anonymous:
        with Panoptes(endpoint=connection.endpoint):
            Panoptes.client().post("/classifications", json=body)
    else:
        connection.client.post("/classifications", json=body)


def test_request_then_download_round_trip(seed_campaign, run_job, local_backend, caplog):
    zoo = seed_campaign([{"candidate_id": "c1", "#truth": "Blip"}, {"candidate_id": "c2"}], live=True)
    s1, s2 = zoo.subject_ids
    with local_backend.connect() as connection:
        classify(connection, zoo, s1, 0)
        classify(connection, zoo, s1, 1, anonymous=True)
        classify(connection, zoo, s2, 0)

    media, _ = run_job("export_request")
    assert set(media) == {"classifications", "subjects", "workflows"}
    again, _ = run_job("export_request", run_dir="again")  # within Zooniverse's rate limit: nothing is sent
    assert again == {} and caplog.text.count("not requested: Zooniverse generates at most one") == 3
    files, run_dir = run_job("export_download", run_dir="download")
    assert files["classifications"] == run_dir / "exports" / f"project-{zoo.project_id}_classifications.csv"

    classifications = read_classification_export(files["classifications"])
    assert [a[0]["value"] for a in classifications["annotations"]] == ["Blip", "Whistle", "Blip"]
    assert classifications["subject_ids"].tolist() == [s1, s1, s2]
    assert classifications["user_name"].iloc[0] == "glitchrun"
    assert classifications["user_id"].isna().tolist() == [False, True, False]
    assert classifications["subject_data"].iloc[0][s1]["#truth"] == "Blip"
    subjects = read_subject_export(files["subjects"])
    assert sorted(subjects["subject_id"].astype(str)) == [s1, s2]
    assert subjects.set_index(subjects["subject_id"].astype(str)).at[s1, "classifications_count"] == 2
    assert read_export(files["workflows"], "workflows")["workflow_id"].astype(str).tolist()[-1] == zoo.workflow_id

    files, _ = run_job("export_download", f"job.workflow_id={zoo.workflow_id}", "job.exports=[classifications]",
                       "job.generate=true", run_dir="workflow")
    assert files["classifications"].name == f"workflow-{zoo.workflow_id}_classifications.csv"
    assert len(read_classification_export(files["classifications"])) == 3


def test_an_export_older_than_the_newest_classification_is_stale(seed_campaign, run_job, local_backend, tmp_path: Path,
                                                                  caplog):
    zoo = seed_campaign([{"candidate_id": "c1"}, {"candidate_id": "c2"}], live=True)
    with local_backend.connect() as connection:
        classify(connection, zoo, zoo.subject_ids[0], 0)
    run_job("export_request", "job.exports=[classifications]")
    with local_backend.connect() as connection:
        classify(connection, zoo, zoo.subject_ids[1], 1)

    with pytest.raises(StaleExportError, match="holds 1 classifications but Zooniverse has counted 2"):
        run_job("export_download", "job.exports=[classifications]", run_dir="stale")
    assert [p.name for p in (tmp_path / "stale" / "exports").iterdir()] == [f"project-{zoo.project_id}_classifications.stale.csv"]

    # inside the rate limit a new export is not asked for (it would stay 'creating'): the job says so, at once
    with pytest.raises(StaleExportError):
        run_job("export_download", "job.exports=[classifications]", "job.generate=true", run_dir="limited")
    assert "not requested: Zooniverse generates at most one classifications export" in caplog.text
    # with the limit shortened on both sides, a fresh export holds both classifications
    limit = ["backend.rules.export_interval=0", "backend.rules.export_min_delay=0", "job.export_interval=0"]
    files, _ = run_job("export_download", "job.exports=[classifications]", "job.generate=true", *limit, run_dir="fresh")
    assert len(read_classification_export(files["classifications"])) == 2


def test_a_malformed_export_is_set_aside_with_a_clear_message(seed_campaign, run_job, local_backend, monkeypatch, tmp_path: Path):
    zoo = seed_campaign([{"candidate_id": "c1"}])
    with local_backend.connect() as connection:
        classify(connection, zoo, zoo.subject_ids[0], 0)
    original = requests.get

    def corrupted(url: str, **kwargs) -> requests.Response:
        """The export as served, with its annotations cell no longer JSON (same length)."""
        response = original(url, **kwargs)
        body = response.content.replace(b'"[{""task""', b'"[[""task""', 1)
        response.iter_content = lambda chunk_size: iter([body])
        return response

    monkeypatch.setattr(requests, "get", corrupted)
    with pytest.raises(CsvError) as err:
        run_job("export_download", "job.exports=[classifications]", "job.generate=true", run_dir="bad")
    invalid = tmp_path / "bad" / "exports" / f"project-{zoo.project_id}_classifications.invalid.csv"
    assert f"kept as {invalid}" in str(err.value)
    assert "column 'annotations' fails is not a JSON array at line 2" in str(err.value)
    assert [p.name for p in invalid.parent.iterdir()] == [invalid.name]


def test_download_without_any_export_says_how_to_get_one(seed_campaign, run_job):
    seed_campaign([{"candidate_id": "c1"}])
    with pytest.raises(LookupError, match="no subjects export of project .* job=export_request"):
        run_job("export_download", "job.exports=[subjects]")
