"""Ingest: a classification export (Zooniverse's CSV format) becomes labels in the campaign state."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from glitchrun.campaign.ingest import REPORT_SCHEMA, SURVEY_SCHEMA, IngestError, ingest_export, tally
from glitchrun.campaign.state import CampaignState
from glitchrun.campaign.subjects import SubjectFields
from glitchrun.campaign.tasks import TaskSpec
from glitchrun.crowd.consensus import GravitySpyConsensus, MajorityVote
from glitchrun.zooniverse.exports import export_chunks

CONFIG = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "config.yaml")
GRAVITY_SPY_FIELDS = OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "subjects" /
                                                           "gravityspy.yaml"))

CLASSES = ["Blip", "Koi_Fish", "Tomte", "Whistle"]
HEADER = ["classification_id", "user_name", "user_id", "user_ip", "workflow_id", "workflow_name", "workflow_version",
          "created_at", "gold_standard", "expert", "metadata", "annotations", "subject_data", "subject_ids"]
QUESTION = "Which glitch class is this?"


def glitchrun_subject(subject: str) -> dict:
    """A subject as a glitchrun round uploads it: the learner's top class hidden (and the simulated truth)."""
    return {"#predicted_class": "Blip", "#probability": 0.4, "#truth": "Whistle"}


def export_csv(path: Path, votes: list[tuple], workflow_id: int = 2, version: str = "1.1",
               metadata_of: Callable[[str], dict] = glitchrun_subject, experts: tuple[str, ...] = ()) -> Path:
    """A workflow classification export as Zooniverse writes it (panoptes-api.md 9.2; panoptes
    lib/formatter/csv/classification.rb, lib/formatter/csv/annotation_for_csv.rb for the annotations).

    ``votes``: (user, subject id, answer[, workflow version[, workflow id]]); a user named ``anon...`` is not
    logged in: no user_id, ``user_name`` ``not-logged-in-<ip hash>``, only ``user_ip`` tells it apart. The
    answer is an answer label or index under ``T0``, or a whole annotations list (a list of dicts).
    ``metadata_of(subject)`` is the subject's metadata; ``experts`` classify in gold-standard mode
    (``gold_standard`` true, ``expert`` the project role, as panoptes lib/classification_lifecycle.rb marks them).
    """
    with open(path, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        for n, (user, subject, value, *where) in enumerate(votes, start=1):
            row_version = where[0] if where else version
            row_workflow = where[1] if len(where) > 1 else workflow_id
            anonymous = user.startswith("anon")
            raw = isinstance(value, list) and value and isinstance(value[0], dict)
            annotations = value if raw else [{"task": "T0", "task_label": QUESTION, "value": value}]
            subject_data = {subject: {"retired": None, **metadata_of(subject)}}
            metadata = {"source": "api", "session": f"s{n}", "started_at": "2024-05-01T12:00:00.000Z",
                        "finished_at": "2024-05-01T12:00:06.000Z", "user_language": "en", "utc_offset": "0",
                        "live_project": True, "user_agent": "Mozilla/5.0",
                        "subject_selection_state": {"retired": False}}
            ip_hash = f"{abs(hash(user)) % 10**8:08x}"
            expert = user in experts
            writer.writerow([
                n, f"not-logged-in-{ip_hash}" if anonymous else user, "" if anonymous else abs(hash(user)) % 1000,
                ip_hash, row_workflow, "Glitch classification", row_version, "2024-05-01 12:00:06 UTC",
                "true" if expert else "", "expert" if expert else "",
                json.dumps(metadata), json.dumps(annotations), json.dumps(subject_data), subject,
            ])
    return path


def chunks(path: Path, chunk_bytes: int | None = None):
    """The export's validated chunks, as job=ingest reads them."""
    return export_chunks(path, "classifications", **({"chunk_bytes": chunk_bytes} if chunk_bytes else {}))


def survey(*choices: str, task: str = "T0") -> list[dict]:
    """A survey annotation as Zooniverse exports it: unchanged from the API, no task_label."""
    return [{"task": task, "value": [{"choice": c, "answers": {}, "filters": {}} for c in choices]}]


def gravity_spy_workflow(**overrides) -> dict:
    """Config ``campaign.workflow`` of conf/config.yaml (the 22 classes and Gravity Spy's choice table)."""
    workflow = OmegaConf.to_container(CONFIG.campaign.workflow)
    return {**workflow, **overrides}


@pytest.fixture
def state(tmp_path: Path) -> CampaignState:
    state = CampaignState(tmp_path / "campaign")
    state.record_subjects(1, {"c1": "11", "c2": "12", "c3": "13"})
    state.add_labels([{"candidate_id": "seed1", "label": "Blip", "source": "seed", "round": 0}])
    yield state
    state.close()


def test_labels_are_added_for_accepted_subjects_only(tmp_path: Path, state: CampaignState):
    export = chunks(export_csv(tmp_path / "export.csv", [
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
            ("carol", "11", "Blip"), ("anon1", "12", "Koi_Fish"), ("anon1", "12", "Koi_Fish"), ("anon2", "12", "Tomte"),
            ("anon3", "12", "Tomte"), ("anon3", "12", "Koi_Fish")]
    export = chunks(export_csv(tmp_path / "export.csv", rows))
    result = tally(export, state, MajorityVote(min_votes=2, agreement=0.5), CLASSES)
    report = REPORT_SCHEMA.validate(result.report).set_index("subject_id")
    assert report.loc["11", ["data.blip", "data.tomte", "votes"]].tolist() == [2, 1, 3]
    assert report.loc["11", ["data.most_likely", "data.num_votes", "data.agreement"]].tolist() == ["blip", 2, 2 / 3]
    # anonymous volunteers are told apart by their IP hash: anon1's second Koi_Fish and anon3's Koi_Fish after
    # its Tomte do not count
    assert report.loc["12", ["data.koi-fish", "data.tomte", "votes", "status"]].tolist() == [1, 2, 3, "accepted"]
    assert pd.isna(report.loc["12", "data.blip"]) and pd.isna(report.loc["11", "data.koi-fish"])  # blank, as reducers
    assert (result.repeats, result.unanswered, result.skipped) == (4, 0, {})
    assert "4 repeats, 0 without an answer not counted" in result.summary()


def test_a_label_is_recorded_for_the_round_that_queried_its_candidate(tmp_path: Path, state: CampaignState):
    """The export of round 2 still holds round 1's classifications: c1 stays a round-1 label."""
    batch = pd.DataFrame({"candidate_id": ["c1"], "strategy": ["uncertainty"], "score": [0.5],
                          "predicted_class": ["Blip"], "probability": [0.5]})
    state.start_round(1, "round-1", "run", batch)
    export = chunks(export_csv(tmp_path / "export.csv", [("alice", "11", "Blip"), ("alice", "12", "Tomte")]))
    ingest_export(export, state, MajorityVote(min_votes=1), CLASSES, round=2)
    assert state.labels().loc[["c1", "c2"], "round"].tolist() == [1, 2]


def test_report_has_the_aggregation_columns_and_skips_unknown_subjects(tmp_path: Path, state: CampaignState):
    export = chunks(export_csv(tmp_path / "export.csv", [
        ("alice", "11", "Blip"), ("bob", "11", "Blip"), ("alice", "99", "Whistle"), ("bob", "99", "Whistle"),
        ("carol", "12", [{"task": "T0", "task_label": QUESTION, "value": None}]),  # no answer given
    ]))
    result = tally(export, state, MajorityVote(min_votes=2, agreement=0.5), CLASSES)
    report = result.report.set_index("subject_id")
    # panoptes_aggregation's reducer columns (only the answers seen, slugged) beside glitchrun's own
    assert list(result.report.columns) == ["subject_id", "candidate_id", "workflow_id", "task", "data.blip",
                                           "data.whistle", "data.most_likely", "data.num_votes", "data.agreement",
                                           "consensus_label", "agreement", "votes", "status"]
    assert report.loc["11", ["workflow_id", "task", "data.most_likely", "consensus_label"]].tolist() == [
        "2", "T0", "blip", "Blip"]
    assert report.loc["99", "status"] == "unknown_subject" and pd.isna(report.loc["99", "candidate_id"])
    assert result.unanswered == 1
    added = ingest_export(export, state, MajorityVote(min_votes=2, agreement=0.5), CLASSES)
    assert added["candidate_id"].tolist() == ["c1"]


def test_the_ml_prior_hidden_in_subject_metadata_reaches_the_consensus(tmp_path: Path, state: CampaignState):
    """Each subject says #predicted_class Blip at 0.4 (and #truth Whistle, which must not be used)."""
    export = chunks(export_csv(tmp_path / "export.csv", [("alice", "11", "Blip"), ("bob", "11", "Tomte")]))
    decided = tally(export, state, GravitySpyConsensus(min_votes=2, agreement=0.5), CLASSES).report.set_index("subject_id")
    assert decided.loc["11", "consensus_label"] == "Blip"


@pytest.mark.parametrize("bad,why", [
    ("Fast_Scattering", "answer 'Fast_Scattering' is not one of task T0's 4 answers"),
    (7, "answer 7 is not one of task T0's 4 answers"),
    ("Blip" * 500, r"answer '(Blip){9}\.\.\. is not one of"),  # a long value is cut short
])
def test_a_malformed_export_changes_nothing_and_says_why(tmp_path: Path, state: CampaignState, bad, why: str):
    before = state.labels()
    rows = [("alice", "11", "Blip"), ("bob", "11", "Blip"), ("carol", "12", bad)]
    export = chunks(export_csv(tmp_path / "export.csv", rows))
    with pytest.raises(IngestError, match=r"line 4, column .annotations. \(classification 3\): " + why) as err:
        ingest_export(export, state, MajorityVote(min_votes=1), CLASSES, round=1)
    assert len(str(err.value)) < 250
    pd.testing.assert_frame_equal(state.labels(), before)


def test_an_export_of_several_workflows_is_refused_unless_one_is_picked(tmp_path: Path, state: CampaignState):
    path = export_csv(tmp_path / "project.csv", [("alice", "11", "Blip", "1.1", 2), ("bob", "11", "Whistle", "1.1", 3),
                                                 ("carol", "11", "Whistle", "1.1", 3)])
    with pytest.raises(IngestError, match=r"mixes workflows 2 \(1\), 3 \(2\); pick one with job.workflows=\[2\]"):
        ingest_export(chunks(path), state, MajorityVote(min_votes=1), CLASSES)
    assert "c1" not in state.labels().index
    for task, workflows in ((TaskSpec.from_config({"classes": CLASSES}, workflow_id=2), None),  # the campaign's own
                            (TaskSpec.from_config({"classes": CLASSES}), [2])):  # job.workflows=[2]
        result = tally(chunks(path), state, MajorityVote(min_votes=1), CLASSES, task=task, workflows=workflows)
        assert result.skipped == {"other workflows": 2} and result.labels()["label"].tolist() == ["Blip"]
        assert "2 of other workflows not counted" in result.summary()


# -- real projects: versions, task keys, survey tasks, other task types (#14) ------------------------------
def test_classifications_of_an_older_version_where_t0_asked_another_question_are_skipped(tmp_path: Path,
                                                                                      state: CampaignState):
    """Versions 1.x asked "Is there a glitch?" (Yes/No) under T0; since 2.1 T0 asks for the class."""
    rows = [("alice", "11", "Yes", "1.1"), ("bob", "11", "No", "1.4"), ("carol", "12", "Yes", "1.4"),
            ("alice", "11", "Whistle", "2.1"), ("bob", "11", "Whistle", "2.3"), ("carol", "11", "Blip", "2.3"),
            ("alice", "12", "Tomte", "2.3"), ("bob", "12", "Tomte", "2.3")]
    export = chunks(export_csv(tmp_path / "export.csv", rows))
    # default: the latest major version of the export counts, every minor version of it
    result = tally(export, state, MajorityVote(min_votes=2, agreement=0.6), CLASSES)
    assert result.skipped == {"other versions": 3}
    assert result.labels().set_index("candidate_id")["label"].to_dict() == {"c1": "Whistle", "c2": "Tomte"}
    report = REPORT_SCHEMA.validate(result.report).set_index("subject_id")
    assert report.loc["11", ["data.whistle", "data.blip", "data.num_votes", "votes"]].tolist() == [2, 1, 2, 3]
    assert not any(c in report.columns for c in ("data.yes", "data.no"))
    # one exact version: 2.1 and the 1.x rows skipped
    only = TaskSpec.from_config({"classes": CLASSES, "versions": ["2.3"]})
    result = tally(export, state, MajorityVote(min_votes=1), CLASSES, task=only)
    assert result.skipped == {"other versions": 4} and result.report["votes"].tolist() == [2, 2]
    # counting the old version too is what glitchrun used to do: its answers are not classes
    with pytest.raises(IngestError, match="3 malformed classifications.*answer 'Yes' is not one of task T0's"):
        tally(export, state, MajorityVote(min_votes=1), CLASSES, task=TaskSpec.from_config({"classes": CLASSES,
                                                                                           "versions": [1, 2]}))


def test_a_class_question_under_t1_is_found_by_its_answers(tmp_path: Path, state: CampaignState):
    """T0 asks "Is this a glitch?", T1 (for glitches only) asks for the class: the task key comes from the export."""
    def classification(glitch: str, label: str | None = None) -> list[dict]:
        first = {"task": "T0", "task_label": "Is this a glitch?", "value": glitch}
        return [first] + ([{"task": "T1", "task_label": QUESTION, "value": label}] if label else [])

    rows = [("alice", "11", classification("Yes", "Koi_Fish")), ("bob", "11", classification("Yes", "Koi_Fish")),
            ("carol", "12", classification("No")), ("alice", "12", classification("Yes", "Blip"))]
    export = chunks(export_csv(tmp_path / "export.csv", rows))
    result = tally(export, state, MajorityVote(min_votes=1), CLASSES)
    report = REPORT_SCHEMA.validate(result.report).set_index("subject_id")
    assert report["task"].unique().tolist() == ["T1"]
    assert report.loc["11", ["data.koi-fish", "data.most_likely", "consensus_label"]].tolist() == [
        2, "koi-fish", "Koi_Fish"]
    assert result.unanswered == 1 and result.skipped == {}  # carol's "No" never reached T1
    assert result.labels().set_index("candidate_id")["label"].to_dict() == {"c1": "Koi_Fish", "c2": "Blip"}


def test_a_gravity_spy_survey_task_maps_choices_to_classes(tmp_path: Path, state: CampaignState):
    """Gravity Spy's survey choices (conf/config.yaml campaign.workflow.choices); ids of an older version skipped."""
    rows = [("alice", "11", survey("KOIFISH"), "3.1"), ("bob", "11", survey("KOIFISH"), "3.1"),
            ("anon1", "11", survey("BLIP"), "3.1"), ("carol", "11", survey("KFSH"), "2.5"),  # old id, old version
            ("alice", "12", survey("POWERLINE60HZ"), "3.1"), ("bob", "12", survey("1080LINE"), "3.1"),
            ("carol", "12", survey("POWERLINE60HZ"), "3.1"),
            ("anon2", "13", survey("BLIP", "WHISTLE"), "3.1"),  # two classes: no vote
            ("dave", "13", survey("NONEOFTHEABOVE"), "3.1"), ("erin", "13", survey(), "3.1")]  # nothing marked
    export = chunks(export_csv(tmp_path / "export.csv", rows))
    task = TaskSpec.from_config(gravity_spy_workflow(task_type="survey"))
    classes = list(CONFIG.campaign.workflow.classes)
    result = tally(export, state, MajorityVote(min_votes=2, agreement=0.6), classes, task=task)
    assert (result.skipped, result.unanswered) == ({"other versions": 1}, 2)
    assert result.labels().set_index("candidate_id")["label"].to_dict() == {"c1": "Koi_Fish", "c2": "Power_Line"}
    report = REPORT_SCHEMA.validate(result.report).set_index("subject_id")
    # survey choice ids slugged as panoptes_aggregation's extractors do, in the workflow's choice order
    assert [c for c in report.columns if c.startswith("data.")] == [
        "data.1080line", "data.blip", "data.koifish", "data.noneoftheabove", "data.powerline60hz",
        "data.most_likely", "data.num_votes", "data.agreement"]
    assert report.loc["12", ["data.most_likely", "data.num_votes", "data.agreement"]].tolist() == [
        "powerline60hz", 2, 2 / 3]
    assert report.loc["13", ["status", "votes"]].tolist() == ["too_few_votes", 1]


def test_a_survey_campaign_ingests_a_gravity_spy_export_through_the_job(tmp_path: Path, run_job):
    campaign_state(tmp_path).close()
    path = export_csv(tmp_path / "export.csv", [(u, "11", survey("SCATTEREDLIGHT")) for u in ("a", "b", "c")]
                      + [(u, "12", survey(c)) for u, c in (("a", "TOMTE"), ("b", "WHISTLE"), ("c", "CHIRP"))])
    added, run_dir = run_job("ingest", f"job.export={path}", "job.round=1", "crowd=perfect",
                             "campaign.workflow.task_type=survey")
    assert added.set_index("candidate_id")["label"].to_dict() == {"c1": "Scattered_Light"}
    report = pd.read_csv(run_dir / "agreement_report.csv", dtype={"subject_id": str, "workflow_id": str})
    assert report.set_index("subject_id").loc["11", ["workflow_id", "task", "data.scatteredlight", "data.most_likely",
                                                     "data.num_votes", "data.agreement", "status"]].tolist() == [
        "2", "T0", 3, "scatteredlight", 3, 1.0, "accepted"]


def test_a_drawing_task_is_refused_in_one_short_line(tmp_path: Path, state: CampaignState):
    """A freehand-line mark of 5000 points, as Zooniverse exports a drawing task: not a 100 kB message."""
    path = {"pathX": [float(i) for i in range(5000)], "pathY": [float(i) for i in range(5000)]}
    mark = {"frame": 0, **path, "details": [], "toolType": "freehandLine", "toolIndex": 0, "tool_label": None}
    drawing = [{"task": "T0", "task_label": "Trace the glitch", "value": [mark]}]
    export = chunks(export_csv(tmp_path / "export.csv", [("alice", "11", drawing)] * 3))
    before = state.labels()
    with pytest.raises(IngestError) as found:  # the task key is not known: no task answers with the classes
        ingest_export(export, state, MajorityVote(min_votes=1), CLASSES)
    assert "T0 (a drawing task)" in str(found.value) and len(str(found.value)) < 250
    with pytest.raises(IngestError) as named:  # the configured task is a drawing task
        ingest_export(export, state, MajorityVote(min_votes=1), CLASSES,
                      task=TaskSpec.from_config({"classes": CLASSES, "task": "T0"}))
    message = str(named.value)
    assert "line 2" in message and "task T0 is answered as a drawing task" in message and len(message) < 300
    assert "pathX" not in message and "\n" not in message
    pd.testing.assert_frame_equal(state.labels(), before)


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
    assert report.set_index("subject_id").loc["12", ["data.blip", "data.tomte", "data.num_votes"]].tolist() == [2, 1, 2]
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


def test_an_export_without_classifications_gives_an_empty_report(tmp_path: Path, state: CampaignState):
    export = chunks(export_csv(tmp_path / "export.csv", []))
    result = tally(export, state, MajorityVote(min_votes=1), CLASSES)
    assert result.report.empty and result.labels().empty and result.skipped == {}
    columns = list(REPORT_SCHEMA.validate(result.report).columns)
    assert columns[:4] == ["subject_id", "candidate_id", "workflow_id", "task"] and "data.most_likely" in columns
