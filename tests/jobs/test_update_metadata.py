"""job=update_metadata: CSV checks and the plan without a server, then the job against the embedded Panoptes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from panoptes_client import Panoptes

from glitchrun.csvio import CsvError, read_csv, validate
from glitchrun.jobs import update_metadata
from glitchrun.jobs.update_metadata import (
    DIFF,
    infer_dtype,
    plan_updates,
    same_value,
    subjects_by_key,
    updates_schema,
)
from glitchrun.zooniverse.uploader import KEY_FIELD

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


# -- against the embedded Panoptes -------------------------------------------------------------------
SUBJECTS = [
    {"candidate_id": "c1", "snr": 8, "ifo": "H1", "#truth": "Blip"},
    {"candidate_id": "c2", "snr": 9.5, "ifo": "L1"},
    {"candidate_id": "c3", "snr": 10, "ifo": "H1"},
    {"candidate_id": "c4", "snr": 11, "ifo": "V1"},
]


def puts(calls: list[tuple[str, str]]) -> list[str]:
    return sorted(path.rsplit("/", 1)[1] for method, path in calls if method == "PUT" and "/api/subjects/" in path)


def test_a_bad_row_changes_nothing_and_is_named(seed_campaign, run_job, server_state, http_calls, tmp_path: Path):
    zoo = seed_campaign(SUBJECTS)
    s1, s2 = zoo.subject_ids[:2]
    cases = {
        "unknown": (f"subject_id,ifo\n{s1},V1\n99999,H1\n", f"is not a subject of subject set {zoo.subject_set_id}"),
        "duplicate": (f"subject_id,ifo\n{s1},V1\n{s1},H1\n", "field_uniqueness at line 2, line 3"),
        "type": (f"subject_id,snr\n{s1},8.5\n{s2},high\n", "column 'snr' fails is not a finite number (the field's current"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        with pytest.raises(CsvError) as err:
            run_job("update_metadata", f"job.csv={path}", f"job.subject_set_id={zoo.subject_set_id}", "job.dry_run=false",
                    run_dir=name)
        assert message in str(err.value) and str(path) in str(err.value)
        assert "line 3" in str(err.value)
        assert not (tmp_path / name / "metadata_backup.json").exists()
    assert puts(http_calls) == []
    _, metadata = server_state([], zoo.subject_ids)
    assert [metadata[sid] for sid in zoo.subject_ids] == SUBJECTS


def test_merge_dry_run_then_apply_writes_only_changed_subjects(seed_campaign, run_job, server_state, http_calls, tmp_path: Path):
    zoo = seed_campaign(SUBJECTS)
    s1, s2, s3, s4 = zoo.subject_ids
    path = tmp_path / "updates.csv"
    path.write_text(f"subject_id,snr,ifo,quality\n{s1},8,V1,\n{s2},9.5,L1,\n{s3},,H1,good\n{s4},11,V1,\n")

    _, run_dir = run_job("update_metadata", f"job.csv={path}", "job.subject_set_name=batch-1", run_dir="dry")
    diff = pd.read_csv(run_dir / "metadata_diff.csv", dtype=str, keep_default_na=False)
    assert diff.values.tolist() == [[s1, "ifo", '"H1"', '"V1"'], [s3, "quality", "", '"good"']]
    assert puts(http_calls) == []

    http_calls.clear()
    report, run_dir = run_job("update_metadata", f"job.csv={path}", "job.subject_set_name=batch-1", "job.dry_run=false",
                              run_dir="apply")
    assert puts(http_calls) == sorted([s1, s3])
    assert dict(zip(report["subject_id"], report["status"])) == {s1: "written", s2: "unchanged", s3: "written",
                                                                 s4: "unchanged"}
    backup = json.loads((run_dir / "metadata_backup.json").read_text())
    assert backup["metadata"] == {s1: SUBJECTS[0], s3: SUBJECTS[2]}
    _, metadata = server_state([], zoo.subject_ids)
    assert metadata[s1] == {**SUBJECTS[0], "ifo": "V1"}
    assert metadata[s3] == {**SUBJECTS[2], "quality": "good"}
    assert metadata[s2] == SUBJECTS[1] and metadata[s4] == SUBJECTS[3]
    assert isinstance(metadata[s4]["snr"], int)  # "11" equals 11: not rewritten as 11.0


def test_replace_by_candidate_id_makes_metadata_exactly_the_row(seed_campaign, run_job, server_state, tmp_path: Path):
    zoo = seed_campaign(SUBJECTS)
    s1, s2, s3, s4 = zoo.subject_ids
    path = tmp_path / "updates.csv"
    path.write_text("candidate_id,snr,ifo,round\nc1,8,H1,2\nc2,9.5,,\n")
    report, _ = run_job("update_metadata", f"job.csv={path}", "job.subject_set_name=batch-1", "job.key_column=candidate_id",
                        "job.mode=replace", "job.dtypes={round:int}", "job.dry_run=false")
    _, metadata = server_state([], zoo.subject_ids)
    assert metadata[s1] == {"candidate_id": "c1", "snr": 8, "ifo": "H1", "round": 2}
    assert metadata[s2] == {"candidate_id": "c2", "snr": 9.5}
    assert metadata[s3] == SUBJECTS[2] and metadata[s4] == SUBJECTS[3]
    assert report["status"].tolist() == ["written", "written"]


def test_writes_answered_503_after_commit_count_once(seed_campaign, run_job, server_state, tmp_path: Path):
    """Every write is committed and then answered 503: the re-read shows it landed, nothing is written twice."""
    zoo = seed_campaign(SUBJECTS)
    path = tmp_path / "updates.csv"
    path.write_text("subject_id,ifo\n" + "".join(f"{sid},G1\n" for sid in zoo.subject_ids))
    report, _ = run_job("update_metadata", f"job.csv={path}", f"job.subject_set_id={zoo.subject_set_id}", "job.dry_run=false",
                        "job.backoff=0.01", "backend.faults.error_after_commit_rate=1.0")
    assert report["status"].tolist() == ["written"] * 4
    _, metadata = server_state([], zoo.subject_ids)
    assert [m["ifo"] for m in metadata.values()] == ["G1"] * 4


def test_a_subject_edited_after_the_plan_is_a_conflict_not_overwritten(seed_campaign, run_job, server_state, monkeypatch,
                                                                      tmp_path: Path):
    zoo = seed_campaign(SUBJECTS)
    s1, s2 = zoo.subject_ids[:2]
    path = tmp_path / "updates.csv"
    path.write_text(f"subject_id,ifo\n{s1},G1\n{s2},G1\n")
    listed = update_metadata.set_subjects

    def listed_then_edited(subject_set_id: str) -> list:
        subjects = listed(subject_set_id)
        _, etag = Panoptes.client().get(f"/subjects/{s1}")  # the real server refuses a stale If-Match (412)
        Panoptes.client().put(f"/subjects/{s1}", json={"subjects": {"metadata": {"edited": True}}}, etag=etag)
        return subjects

    monkeypatch.setattr(update_metadata, "set_subjects", listed_then_edited)
    with pytest.raises(RuntimeError, match="1 subjects were not updated"):
        run_job("update_metadata", f"job.csv={path}", f"job.subject_set_id={zoo.subject_set_id}", "job.dry_run=false")
    report = pd.read_csv(tmp_path / "run" / "metadata_report.csv", dtype=str)
    assert dict(zip(report["subject_id"], report["status"])) == {s1: "conflict", s2: "written"}
    _, metadata = server_state([], [s1, s2])
    assert metadata[s1] == {"edited": True} and metadata[s2]["ifo"] == "G1"


# -- glitchrun's own fields ------------------------------------------------------------------------------
UPLOADED = [{"candidate_id": f"c{i}", KEY_FIELD: f"c{i}", "ifo": "H1"} for i in (1, 2, 3)]


def test_glitchruns_own_fields_cannot_be_changed_and_replace_keeps_them(seed_campaign, run_job, server_state,
                                                                         http_calls, tmp_path: Path):
    """Changing a subject's key would make init_project upload a duplicate and verification never pass; giving it
    another subject's candidate id would make two subjects one candidate."""
    zoo = seed_campaign(UPLOADED)
    s1, s2, s3 = zoo.subject_ids
    cases = {
        "own_key": (f"subject_id,{KEY_FIELD}\n{s1},c9\n",
                    f"column '{KEY_FIELD}' is glitchrun's record of each subject's key"),
        "other_candidate": (f"subject_id,candidate_id,ifo\n{s1},c1,L1\n{s2},c1,L1\n",
                            "column 'candidate_id' fails is the key glitchrun finds the subject by, which must not "
                            "change at line 3 (values: 'c1')"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        with pytest.raises(CsvError) as err:
            run_job("update_metadata", f"job.csv={path}", "job.subject_set_name=batch-1", "job.dry_run=false",
                    run_dir=name)
        assert message in str(err.value) and str(path) in str(err.value)
    assert puts(http_calls) == []

    # an unchanged key is fine, and replace keeps the fields the row leaves out only for glitchrun's own
    path = tmp_path / "replace.csv"
    path.write_text(f"subject_id,candidate_id,run\n{s1},c1,O3a\n{s2},,O3b\n")
    run_job("update_metadata", f"job.csv={path}", "job.subject_set_name=batch-1", "job.mode=replace",
            "job.dry_run=false", run_dir="replace")
    _, metadata = server_state([], zoo.subject_ids)
    assert metadata[s1] == {"candidate_id": "c1", KEY_FIELD: "c1", "run": "O3a"}
    assert metadata[s2] == {"candidate_id": "c2", KEY_FIELD: "c2", "run": "O3b"}
    assert metadata[s3] == UPLOADED[2]


def test_a_repeated_column_name_is_refused(tmp_path: Path):
    with pytest.raises(CsvError, match="line 1 names a column twice \\('candidate_id' in columns 1, 2\\)"):
        csv_frame(tmp_path, "candidate_id,candidate_id,run\nc1,c1,O3a\n")
