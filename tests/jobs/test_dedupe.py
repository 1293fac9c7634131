"""job=dedupe: the plan from a subject listing, and the job against the embedded Panoptes."""

from __future__ import annotations

import pandas as pd
import pytest

from glitchrun.jobs.dedupe import REPORT, plan_dedupe


def listing(*rows: tuple[str, str, dict, list[str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["subject_id", "created_at", "metadata", "subject_sets"])


SUBJECTS = listing(
    ("12", "2024-05-01T12:00:02.000Z", {"candidate_id": "a"}, ["5"]),
    ("10", "2024-05-01T12:00:01.000Z", {"candidate_id": "a"}, ["5"]),
    ("11", "2024-05-01T12:00:01.000Z", {"candidate_id": "a"}, ["5", "6"]),
    ("13", "2024-05-01T12:00:03.000Z", {"candidate_id": "b"}, ["5"]),
    ("14", "2024-05-01T12:00:04.000Z", {"other": 1}, ["5"]),
    ("15", "2024-05-01T12:00:05.000Z", {"candidate_id": 7}, ["5"]),
    ("16", "2024-05-01T12:00:06.000Z", {"candidate_id": "7"}, ["5"]),
)


def actions(report: pd.DataFrame) -> dict[str, str]:
    return dict(zip(report["subject_id"], report["action"]))


def test_keep_oldest_unlinks_the_rest_and_skips_subjects_without_the_field():
    report = plan_dedupe(SUBJECTS, "candidate_id", "oldest", delete=False, subject_set_id="5")
    REPORT.validate(report)
    assert actions(report) == {"10": "keep", "11": "unlink", "12": "unlink", "13": "keep", "14": "skip-missing-field",
                               "15": "keep", "16": "keep"}  # 7 and "7" are different values
    assert not report["applied"].any()
    assert report.set_index("subject_id").at["10", "value"] == '"a"'
    assert pd.isna(report.set_index("subject_id").at["14", "value"])


def test_keep_newest_and_delete_spares_subjects_in_another_set():
    report = plan_dedupe(SUBJECTS, "candidate_id", "newest", delete=True, subject_set_id="5")
    assert actions(report)["12"] == "keep" and actions(report)["10"] == "delete"
    row = report.set_index("subject_id").loc["11"]
    assert row["action"] == "unlink" and "6" in row["note"]


def test_ties_in_created_at_fall_back_to_the_lowest_id():
    report = plan_dedupe(SUBJECTS.iloc[1:3], "candidate_id", "oldest", delete=False, subject_set_id="5")
    assert actions(report) == {"10": "keep", "11": "unlink"}


def test_an_empty_set_gives_an_empty_valid_plan():
    report = plan_dedupe(listing(), "candidate_id", "oldest", delete=False, subject_set_id="5")
    assert report.empty
    REPORT.validate(report)


# -- against the embedded Panoptes -------------------------------------------------------------------
DUPLICATED = [{"candidate_id": "c1", "n": 0}, {"candidate_id": "c2"}, {"candidate_id": "c1", "n": 1},
              {"snr": 3}, {"candidate_id": "c1", "n": 2}, {"candidate_id": "c2"}]


def test_dry_run_changes_nothing_then_apply_keeps_one_per_value(seed_campaign, run_job, server_state):
    zoo = seed_campaign(DUPLICATED)
    c1a, c2a, c1b, missing, c1c, c2b = zoo.subject_ids

    report, run_dir = run_job("dedupe", "job.subject_set_name=batch-1", run_dir="dry")
    members, _ = server_state([zoo.subject_set_id], zoo.subject_ids)
    assert members[zoo.subject_set_id] == set(zoo.subject_ids)
    plan = pd.read_csv(run_dir / "dedupe_plan.csv", dtype=str)
    assert dict(zip(plan["subject_id"], plan["action"])) == {
        c1a: "keep", c1b: "unlink", c1c: "unlink", c2a: "keep", c2b: "unlink", missing: "skip-missing-field"}
    assert not (run_dir / "dedupe_report.csv").exists()

    report, run_dir = run_job("dedupe", f"job.subject_set_id={zoo.subject_set_id}", "job.dry_run=false", run_dir="apply")
    members, metadata = server_state([zoo.subject_set_id], zoo.subject_ids)
    assert members[zoo.subject_set_id] == {c1a, c2a, missing}
    assert set(metadata) == set(zoo.subject_ids)  # unlinked, not deleted
    applied = pd.read_csv(run_dir / "dedupe_report.csv", dtype={"subject_id": str})
    assert applied.set_index("subject_id")["applied"].to_dict() == {
        c1a: False, c1b: True, c1c: True, c2a: False, c2b: True, missing: False}


def test_delete_deletes_duplicates_but_not_one_in_another_set(seed_campaign, run_job, server_state, local_backend):
    zoo = seed_campaign(DUPLICATED)
    c1a, c2a, c1b, missing, c1c, c2b = zoo.subject_ids
    other = seed_campaign([{"candidate_id": "x"}], set_name="batch-2")
    with local_backend.connect() as connection:
        connection.client.post(f"/subject_sets/{other.subject_set_id}/links/subjects", json={"subjects": [c1a]})

    report, _ = run_job("dedupe", "job.subject_set_name=batch-1", "job.keep=newest", "job.dry_run=false",
                        "job.delete=true")
    members, metadata = server_state([zoo.subject_set_id, other.subject_set_id], zoo.subject_ids)
    assert members[zoo.subject_set_id] == {c1c, c2b, missing}
    assert members[other.subject_set_id] == {c1a, *other.subject_ids}
    assert set(metadata) == {c1a, c1c, c2b, missing}  # c1b and c2a deleted; c1a only unlinked
    assert dict(zip(report["subject_id"], report["action"]))[c1a] == "unlink"
    assert report["applied"].sum() == 3


def test_an_unknown_set_fails_before_any_change(seed_campaign, run_job, server_state):
    zoo = seed_campaign(DUPLICATED)
    with pytest.raises(LookupError, match="no subject set named 'nope'"):
        run_job("dedupe", "job.subject_set_name=nope", "job.dry_run=false")
    members, _ = server_state([zoo.subject_set_id], zoo.subject_ids)
    assert members[zoo.subject_set_id] == set(zoo.subject_ids)
