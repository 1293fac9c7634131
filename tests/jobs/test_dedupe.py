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
