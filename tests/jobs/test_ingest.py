"""Ingest: a classification export (Zooniverse's CSV format) becomes crowd labels in the campaign state."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from glitchrun.campaign.ingest import IngestError, ingest_export, tally
from glitchrun.campaign.state import CampaignState
from glitchrun.crowd.consensus import GravitySpyConsensus, MajorityVote
from glitchrun.zooniverse.exports import read_classification_export

CLASSES = ["Blip", "Koi_Fish", "Tomte", "Whistle"]
HEADER = ["classification_id", "user_name", "user_id", "user_ip", "workflow_id", "workflow_name", "workflow_version",
          "created_at", "gold_standard", "expert", "metadata", "annotations", "subject_data", "subject_ids"]


def export_csv(path: Path, votes: list[tuple], workflow_id: int = 2) -> Path:
    """A workflow classification export as Zooniverse writes it (panoptes-api.md 9.2).

    ``votes``: (user, subject id, answer); a user named ``anon...`` is not logged in (only its IP hash
    tells it apart); the answer is a label, an index, or a whole annotations list (a list of dicts).
    """
    with open(path, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        for n, (user, subject, value) in enumerate(votes, start=1):
            anonymous = user.startswith("anon")
            raw = isinstance(value, list) and value and isinstance(value[0], dict)
            annotations = value if raw else [{"task": "T0", "task_label": "Which glitch class is this?", "value": value}]
            subject_data = {subject: {"retired": None, "#predicted_class": "Blip", "#probability": 0.4, "#truth": "Whistle"}}
            writer.writerow([
                n, f"not-logged-in-{user}" if anonymous else user, "" if anonymous else abs(hash(user)) % 1000,
                f"hash-{user}", workflow_id, "Glitch classification", "1.1", "2024-05-01 12:00:06 UTC", "", "",
                json.dumps({"source": "api"}), json.dumps(annotations), json.dumps(subject_data), subject,
            ])
    return path


@pytest.fixture
def state(tmp_path: Path) -> CampaignState:
    state = CampaignState(tmp_path / "campaign")
    state.record_subjects(1, {"c1": "11", "c2": "12", "c3": "13"})
    state.add_labels([{"candidate_id": "seed1", "label": "Blip", "source": "seed", "round": 0}])
    yield state
    state.close()


def test_labels_are_added_for_accepted_subjects_only(tmp_path: Path, state: CampaignState):
    export = read_classification_export(export_csv(tmp_path / "export.csv", [
        ("alice", "11", "Blip"), ("bob", "11", "Blip"), ("carol", "11", "Tomte"),  # 2 of 3: accepted
        ("alice", "12", "Whistle"), ("bob", "12", 3), ("carol", "12", "Whistle"),  # index form counts too
        ("alice", "13", "Blip"), ("bob", "13", "Tomte"), ("carol", "13", "Whistle"),  # no majority
    ]))
    added = ingest_export(export, state, MajorityVote(min_votes=3, agreement=0.6), CLASSES, round=1)
    assert list(added.columns) == ["candidate_id", "label", "votes", "agreement", "source"]
    assert added.set_index("candidate_id")["label"].to_dict() == {"c1": "Blip", "c2": "Whistle"}
    labels = state.labels()
    assert labels.loc["c1", ["label", "source", "round", "votes"]].tolist() == ["Blip", "crowd", 1, 3]
    assert labels.loc["c1", "agreement"] == pytest.approx(2 / 3)
    assert "c3" not in labels.index and labels.loc["seed1", "source"] == "seed"


def test_a_volunteers_repeat_classifications_count_once(tmp_path: Path, state: CampaignState):
    """alice classifies subject 11 three times (Tomte first): one vote, against bob's and carol's Blip."""
    rows = [("alice", "11", "Tomte"), ("alice", "11", "Blip"), ("alice", "11", "Blip"), ("bob", "11", "Blip"),
            ("carol", "11", "Blip"), ("anon1", "12", "Koi_Fish"), ("anon1", "12", "Koi_Fish"), ("anon2", "12", "Tomte")]
    export = read_classification_export(export_csv(tmp_path / "export.csv", rows))
    result = tally(export, state, MajorityVote(min_votes=2, agreement=0.5), CLASSES)
    report = result.report.set_index("subject_id")
    assert report.loc["11", ["data.Blip", "data.Tomte", "votes"]].tolist() == [2, 1, 3]
    # anonymous volunteers are told apart by their IP hash: anon1's second Koi_Fish does not count
    assert report.loc["12", ["data.Koi_Fish", "data.Tomte", "votes", "status"]].tolist() == [1, 1, 2, "tie"]
    assert result.repeats == 3


def test_a_label_is_recorded_for_the_round_that_queried_its_candidate(tmp_path: Path, state: CampaignState):
    """The export of round 2 still holds round 1's classifications: c1 stays a round-1 label."""
    batch = pd.DataFrame({"candidate_id": ["c1"], "strategy": ["uncertainty"], "score": [0.5],
                          "predicted_class": ["Blip"], "probability": [0.5]})
    state.start_round(1, "round-1", "run", batch)
    export = read_classification_export(export_csv(tmp_path / "export.csv", [("alice", "11", "Blip"), ("alice", "12", "Tomte")]))
    ingest_export(export, state, MajorityVote(min_votes=1), CLASSES, round=2)
    assert state.labels().loc[["c1", "c2"], "round"].tolist() == [1, 2]


def test_report_has_the_question_reducer_columns_and_skips_unknown_subjects(tmp_path: Path, state: CampaignState):
    export = read_classification_export(export_csv(tmp_path / "export.csv", [
        ("alice", "11", "Blip"), ("bob", "11", "Blip"), ("alice", "99", "Whistle"), ("bob", "99", "Whistle"),
        ("carol", "12", [{"task": "T0", "value": None}]),  # no answer given
    ]))
    result = tally(export, state, MajorityVote(min_votes=2, agreement=0.5), CLASSES)
    report = result.report.set_index("subject_id")
    assert list(result.report.columns) == (["subject_id", "candidate_id"] + [f"data.{c}" for c in CLASSES]
                                           + ["consensus_label", "agreement", "votes", "status"])
    assert report.loc["99", "status"] == "unknown_subject" and pd.isna(report.loc["99", "candidate_id"])
    assert result.unanswered == 1
    added = ingest_export(export, state, MajorityVote(min_votes=2, agreement=0.5), CLASSES)
    assert added["candidate_id"].tolist() == ["c1"]


def test_the_ml_prior_hidden_in_subject_metadata_reaches_the_consensus(tmp_path: Path, state: CampaignState):
    """Each subject says #predicted_class Blip at 0.4 (and #truth Whistle, which must not be used)."""
    export = read_classification_export(export_csv(tmp_path / "export.csv", [("alice", "11", "Blip"), ("bob", "11", "Tomte")]))
    decided = tally(export, state, GravitySpyConsensus(min_votes=2, agreement=0.5), CLASSES).report.set_index("subject_id")
    assert decided.loc["11", "consensus_label"] == "Blip"


@pytest.mark.parametrize("bad,why", [
    ([{"task": "T1", "value": 0}], "no annotation for task T0"),
    ("Fast_Scattering", "'Fast_Scattering' is not one of the workflow's 4 classes"),
    (7, "answer 7 is not one of"),
    (["Blip", "Tomte"], "is not one of"),
])
def test_a_malformed_export_changes_nothing_and_says_why(tmp_path: Path, state: CampaignState, bad, why: str):
    before = state.labels()
    rows = [("alice", "11", "Blip"), ("bob", "11", "Blip"), ("carol", "12", bad)]
    export = read_classification_export(export_csv(tmp_path / "export.csv", rows))
    with pytest.raises(IngestError, match=r"line 4, column .annotations. \(classification 3\): .*" + why.replace("'", ".").replace("(", ".")):
        ingest_export(export, state, MajorityVote(min_votes=1), CLASSES, round=1)
    pd.testing.assert_frame_equal(state.labels(), before)


def test_an_export_of_several_workflows_is_refused(tmp_path: Path, state: CampaignState):
    first = read_classification_export(export_csv(tmp_path / "a.csv", [("alice", "11", "Blip")], workflow_id=2))
    second = read_classification_export(export_csv(tmp_path / "b.csv", [("bob", "11", "Blip")], workflow_id=3))
    with pytest.raises(IngestError, match=r"mixes workflows \['2', '3'\]"):
        ingest_export(pd.concat([first, second], ignore_index=True), state, MajorityVote(min_votes=1), CLASSES)
    assert "c1" not in state.labels().index


def campaign_state(tmp_path: Path) -> CampaignState:
    """The state of the default campaign (conf: paths.outputs=tmp_path) with three recorded subjects."""
    state = CampaignState(tmp_path / "campaigns" / "glitchrun-demo")
    state.record_subjects(1, {"c1": "11", "c2": "12", "c3": "13"})
    return state


def test_ingest_job_writes_labels_and_the_agreement_report(tmp_path: Path, run_job):
    campaign_state(tmp_path).close()
    path = export_csv(tmp_path / "export.csv", [("alice", "11", "Blip"), ("bob", "11", "Blip"), ("carol", "11", "Blip"),
                                                ("alice", "12", "Blip"), ("bob", "12", "Blip"), ("carol", "12", "Tomte")])
    added, run_dir = run_job("ingest", f"job.export={path}", "job.round=1", "crowd=perfect")
    assert added["candidate_id"].tolist() == ["c1"]
    report = pd.read_csv(run_dir / "agreement_report.csv", dtype={"subject_id": str})
    assert report.set_index("subject_id")["status"].to_dict() == {"11": "accepted", "12": "low_agreement"}
    state = campaign_state(tmp_path)
    assert state.labels().loc["c1", ["label", "source", "round"]].tolist() == ["Blip", "crowd", 1]
    state.close()


def test_ingest_job_refuses_a_malformed_csv_and_changes_nothing(tmp_path: Path, run_job):
    campaign_state(tmp_path).close()
    path = export_csv(tmp_path / "export.csv", [("alice", "11", "Blip")])
    path.write_text(path.read_text().replace("2024-05-01 12:00:06 UTC", "yesterday"))
    with pytest.raises(ValueError, match="created_at.*line 2"):
        run_job("ingest", f"job.export={path}")
    state = campaign_state(tmp_path)
    assert state.labels().empty
    state.close()
