"""job=subjects: a Zooniverse subject export read from a file (Gravity Spy's subjects, gold and retirement)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from glitchrun.campaign.state import CampaignState
from glitchrun.campaign.tasks import IngestError

HEADER = ["subject_id", "project_id", "workflow_id", "subject_set_id", "metadata", "locations", "classifications_count",
          "retired_at", "retirement_reason", "created_at", "updated_at"]
V1 = ["1080Lines", "1400Ripples", "Air_Compressor", "Blip", "Chirp", "Extremely_Loud", "Helix", "Koi_Fish",
      "Light_Modulation", "Low_Frequency_Burst", "Low_Frequency_Lines", "No_Glitch", "None_of_the_Above",
      "Paired_Doves", "Power_Line", "Repeating_Blips", "Scattered_Light", "Scratchy", "Tomte", "Violin_Mode",
      "Wandering_Line", "Whistle"]


def subject_export(path: Path, rows: list[tuple]) -> Path:
    """A subject export as Zooniverse writes it (panoptes lib/formatter/csv/subject.rb): one row per subject and
    subject set-workflow link. ``rows``: (subject id, workflow id, subject set id, metadata, count, retirement)."""
    with open(path, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        for subject, workflow, subject_set, metadata, count, reason in rows:
            retired = "2019-06-02 10:00:00 UTC" if reason else ""
            writer.writerow([subject, 1104, workflow, subject_set, json.dumps(metadata),
                             json.dumps({"0": f"https://panoptes-uploads.zooniverse.org/{subject}.png"}), count,
                             retired, reason or "", "2019-06-01 10:00:00 UTC", "2019-06-02 10:00:00 UTC"])
    return path


def gravity_spy(glitch: str, **extra: str) -> dict:
    return {"subject_id": glitch, "date": "20180825", **{f"Filename{n}": f"H1_{glitch}_{n}.png" for n in range(1, 5)},
            **extra}


@pytest.fixture
def export(tmp_path: Path) -> Path:
    posterior = str([0.91 if c == "Whistle" else 0.09 / 21 for c in V1])
    return subject_export(tmp_path / "subjects.csv", [
        ("201", 7766, 112263, gravity_spy("gWhistle", **{"#ML_Posterior_20180825": posterior}), 12, "consensus"),
        ("201", 1610, 112243, gravity_spy("gWhistle", **{"#ML_Posterior_20180825": posterior}), 3, None),
        ("202", 7766, 112254, gravity_spy("gGold", **{"#Type": "Gold", "#Label": "power line (60 hz)"}), 40, None),
        ("203", 7766, 112246, gravity_spy("gBlip"), 0, None),
        ("204", 7766, 112246, {"note": "no glitch id"}, 2, "classification_count"),
    ])


def test_a_gravity_spy_subject_export_is_read_and_its_gold_recorded_on_request(tmp_path: Path, run_job, export):
    report, run_dir = run_job("subjects", "data=gravityspy", f"job.export={export}")
    assert report.columns.tolist() == ["subject_id", "candidate_id", "workflow_id", "subject_set_id",
                                       "classifications_count", "retired_at", "retirement_reason", "gold_label",
                                       "ml_label", "ml_probability"]
    first = report.drop_duplicates("subject_id").set_index("subject_id")
    assert first["candidate_id"].tolist()[:3] == ["gWhistle", "gGold", "gBlip"]
    assert pd.isna(first.at["204", "candidate_id"])
    assert first.loc["201", ["ml_label", "retirement_reason"]].tolist() == ["Whistle", "consensus"]
    assert first.loc["201", "ml_probability"] == pytest.approx(0.91)
    assert first.loc["202", "gold_label"] == "Power_Line"  # the choice's label, as Gravity Spy writes #Label
    assert (run_dir / "subjects_report.csv").is_file()
    state = CampaignState(tmp_path / "campaigns" / "glitchrun-demo")
    assert state.labels().empty  # a dry run by default
    state.close()
    run_job("subjects", "data=gravityspy", f"job.export={export}", "job.dry_run=false", "job.workflows=[7766]",
            run_dir="record")
    state = CampaignState(tmp_path / "campaigns" / "glitchrun-demo")
    recorded = state.labels()[["label", "source"]].to_dict("index")
    assert recorded == {"gGold": {"label": "Power_Line", "source": "expert"}}
    state.close()


def test_a_subject_filter_that_matches_nothing_names_what_the_export_has(run_job, export):
    with pytest.raises(IngestError, match=r"no subject of workflow 99 \(5 rows; it has workflows 1610, 7766\)"):
        run_job("subjects", "data=gravityspy", f"job.export={export}", "job.workflows=[99]")
    with pytest.raises(IngestError, match="no gold-standard subject is a candidate of the campaign"):
        run_job("subjects", f"job.export={export}", "job.dry_run=false")  # glitchrun's own fields: no gold
