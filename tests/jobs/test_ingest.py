"""Ingest: a classification export (Zooniverse's CSV format) becomes labels in the campaign state."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
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
from glitchrun.csvio import CsvError
from glitchrun.zooniverse.exports import export_chunks, read_export

CONFIG = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "config.yaml")
GRAVITY_SPY_FIELDS = {k: v for k, v in OmegaConf.to_container(OmegaConf.load(
    Path(__file__).resolve().parents[2] / "conf" / "subjects" / "gravityspy.yaml")).items() if k != "_target_"}

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


# -- existing projects at their real size: Gravity Spy's exports, subjects and gold (#24) ------------------------
V1_CLASSES = GRAVITY_SPY_FIELDS["posterior_classes"]  # bin/upload's order of #ML_Posterior


def posterior(top: str, p: float = 0.9) -> str:
    """``#ML_Posterior_<date>`` as Gravity Spy's bin/upload writes it: str() of a Python list, v1.0 class order."""
    rest = (1 - p) / (len(V1_CLASSES) - 1)
    return str([p if c == top else rest for c in V1_CLASSES])


def gravity_spy_subject(glitch: str | None = None, top: str | None = None, gold: str | None = None) -> dict:
    """A subject's metadata as Gravity Spy uploads it (bin/upload, gravityspy/table/events.py; gold as API/API.py
    reads it): the glitch id, the four image files, the model's posterior or, for a gold subject, its label."""
    metadata = {"date": "20170215", **({"subject_id": glitch} if glitch else {})}
    metadata.update({f"Filename{n}": f"H1_{glitch}_spectrogram_{d}.png" for n, d in enumerate((0.5, 1.0, 2.0, 4.0), 1)})
    if top:
        metadata["#ML_Posterior_20170215"] = posterior(top, 0.2)  # an older date: the latest one is read
        metadata["#ML_Posterior_20170315"] = posterior(top)
    if gold:
        metadata.update({"#Type": "Gold", "#Label": gold})
    return metadata


def survey_t1(*choices: str) -> list[dict]:
    return survey(*choices, task="T1")


def test_a_gravity_spy_project_export_becomes_labels_of_its_glitches(tmp_path: Path, run_job):
    """Gravity Spy's level-5 workflow (7766, survey under T1) in a project export with a level-1 workflow; its
    subjects name their glitch in metadata (subject_id) and carry the model's posterior; an expert classified one
    in gold-standard mode and another is a gold-standard subject (#Type Gold, #Label)."""
    subjects = {"101": gravity_spy_subject("gBlip", top="Blip"), "102": gravity_spy_subject("gKoi", top="Whistle"),
                "103": gravity_spy_subject("gGold", gold="koi fish"), "104": gravity_spy_subject(None, top="Blip")}
    rows = [("alice", "101", survey_t1("BLIP"), "18.3", 7766), ("bob", "101", survey_t1("TOMTE"), "18.3", 7766),
            ("alice", "102", survey_t1("WHISTLE"), "18.3", 7766), ("bob", "102", survey_t1("WHISTLE"), "18.2", 7766),
            ("erin", "102", survey_t1("KOIFISH"), "18.3", 7766),  # the expert's known answer, not a vote
            ("alice", "103", survey_t1("BLIP"), "18.3", 7766), ("bob", "103", survey_t1("BLIP"), "18.3", 7766),
            ("alice", "104", survey_t1("BLIP"), "18.3", 7766), ("bob", "104", survey_t1("BLIP"), "18.3", 7766),
            ("carol", "101", survey_t1("WHISTLE"), "125.16", 1610)]  # level 1: another workflow
    path = export_csv(tmp_path / "gravity-spy-classifications.csv", rows, metadata_of=subjects.get, experts=("erin",))
    campaign_state(tmp_path).close()
    added, run_dir = run_job("ingest", "data=gravityspy", f"job.export={path}", "campaign.workflow.task_type=survey",
                             "job.workflows=[7766]", "job.round=1")
    labels = added.set_index("candidate_id")[["label", "source"]].to_dict("index")
    # gBlip: one Blip, one Tomte, and the model's posterior (0.9 Blip) settles it; gKoi: the expert's Koi_Fish
    # over two volunteers' Whistle; gGold: the gold subject's label; 104 names no glitch: not a candidate
    assert labels == {"gBlip": {"label": "Blip", "source": "crowd"}, "gKoi": {"label": "Koi_Fish", "source": "expert"},
                      "gGold": {"label": "Koi_Fish", "source": "expert"}}
    report = pd.read_csv(run_dir / "agreement_report.csv", dtype={"subject_id": str, "workflow_id": str})
    REPORT_SCHEMA.validate(report)
    by_subject = report.set_index("subject_id")
    assert by_subject.loc["102", ["votes", "data.whistle", "status"]].tolist() == [2, 2, "gold"]  # expert not a vote
    assert by_subject.loc["104", "status"] == "unknown_subject" and set(report["workflow_id"]) == {"7766"}
    assert by_subject.loc["101", ["data.blip", "data.tomte", "task"]].tolist() == [1, 1, "T1"]
    survey_report = pd.read_csv(run_dir / "survey_report.csv", dtype={"subject_id": str, "workflow_id": str})
    SURVEY_SCHEMA.validate(survey_report)
    assert survey_report[survey_report["subject_id"] == "101"][
        ["reducer", "data.choice", "data.total_vote_count", "data.choice_count"]].values.tolist() == [
        ["survey_reducer", "blip", 2, 1], ["survey_reducer", "tomte", 2, 1]]
    state = campaign_state(tmp_path)
    assert state.labels().loc["gKoi", ["label", "source", "round"]].tolist() == ["Koi_Fish", "expert", 1]
    state.close()


def test_what_a_gravity_spy_subject_says_is_read_from_its_metadata():
    fields = SubjectFields(**GRAVITY_SPY_FIELDS)
    metadata = gravity_spy_subject("gBlip", top="Blip")
    assert fields.candidate(metadata) == "gBlip"
    classes = ["Blip", "Fast_Scattering", "Whistle"]  # O3 classes: the v1.0 posterior has no Fast_Scattering
    distribution = fields.distribution(metadata, classes)
    assert distribution[0] == pytest.approx(0.9) and pd.isna(distribution[1])  # the latest date's, in its order
    assert fields.gold_label(gravity_spy_subject("gGold", gold="power line (60 hz)")) == "power line (60 hz)"
    assert fields.gold_label({**gravity_spy_subject("g"), "#Label": "Blip"}) is None  # not #Type Gold
    assert fields.distribution({"#ML_Posterior_20170215": "[0.5, 0.5]"}, classes) is None  # another model's length
    assert SubjectFields().candidate({"#glitchrun_key": "c7"}) == "c7"  # glitchrun's own subjects


def test_each_workflow_of_a_project_export_is_read_with_its_own_task(tmp_path: Path, state: CampaignState):
    """job.workflows=all: workflow 2 asks for the class under T0; workflow 3 under T1 since version 4 (3.x asked
    "Is this a glitch?"); workflow 5 is a drawing workflow, which is skipped and said."""
    def t1(label: str) -> list[dict]:
        return [{"task": "T0", "task_label": "Is this a glitch?", "value": "Yes"},
                {"task": "T1", "task_label": QUESTION, "value": label}]

    drawing = [{"task": "T0", "value": [{"tool": 0, "x": 1.0, "y": 2.0, "details": []}]}]
    rows = [("alice", "11", "Blip", "1.1", 2), ("bob", "11", "Blip", "1.1", 2),
            ("carol", "11", t1("Blip"), "4.2", 3), ("dave", "12", t1("Whistle"), "4.1", 3),
            ("erin", "12", t1("Whistle"), "4.2", 3), ("frank", "12", "Yes", "3.9", 3),
            ("alice", "13", drawing, "7.1", 5)]
    path = export_csv(tmp_path / "project.csv", rows)
    result = tally(chunks(path), state, MajorityVote(min_votes=2, agreement=0.6), CLASSES, workflows="all")
    assert {w: (t.key, t.versions) for w, t in result.tasks.items()} == {"2": ("T0", ("1",)), "3": ("T1", ("4",))}
    assert result.skipped == {"other versions": 1} and any("workflow 5 skipped" in n for n in result.notes)
    report = REPORT_SCHEMA.validate(result.report).set_index(["subject_id", "workflow_id"])
    # subject 11's votes are pooled over both workflows (3 volunteers) and reported per workflow
    assert report.loc[("11", "2"), ["data.blip", "task", "votes", "consensus_label"]].tolist() == [2, "T0", 3, "Blip"]
    assert report.loc[("11", "3"), ["data.blip", "task", "votes"]].tolist() == [1, "T1", 3]
    assert result.labels().set_index("candidate_id")["label"].to_dict() == {"c1": "Blip", "c2": "Whistle"}


def test_a_filter_that_matches_nothing_says_what_did_not_match(tmp_path: Path, state: CampaignState):
    path = export_csv(tmp_path / "export.csv", [("alice", "11", "Blip", "13.1"), ("bob", "11", "Blip", "13.1")])
    task = TaskSpec.from_config({"classes": CLASSES, "versions": ["13.10"]})
    with pytest.raises(IngestError, match=r"no classification of workflow 2 is of version 13.10 \(campaign.workflow"
                                          r".versions\); its versions \(classifications\): 13.1 \(2\)"):
        tally(chunks(path), state, MajorityVote(min_votes=1), CLASSES, task=task)
    with pytest.raises(IngestError, match=r"no classification of workflow 99; the export's workflows "
                                          r"\(classifications\): 2 \(2\)"):
        tally(chunks(path), state, MajorityVote(min_votes=1), CLASSES, workflows=[99])
    with pytest.raises(ValueError, match=r"has the number 13.1, but a workflow version is text .* quote it"):
        TaskSpec.from_config({"classes": CLASSES, "versions": 13.10})


def test_an_ingest_that_adds_no_label_is_an_error_naming_why(tmp_path: Path, run_job):
    campaign_state(tmp_path).close()  # subjects 11, 12, 13
    strangers = export_csv(tmp_path / "other-project.csv", [("alice", "91", "Blip"), ("bob", "92", "Blip")],
                           metadata_of=lambda subject: {})
    with pytest.raises(IngestError, match=r"adds no label to the campaign: none of its 2 subjects is a subject of the "
                                          r"campaign, neither uploaded by it nor named by their metadata field "
                                          r"'#glitchrun_key' \(choose the project's fields with subjects=gravityspy"):
        run_job("ingest", f"job.export={strangers}")
    undecided = export_csv(tmp_path / "split.csv", [("alice", "11", "Blip"), ("bob", "11", "Tomte")])
    with pytest.raises(IngestError, match=r"the consensus accepts none of its 1 subjects \(1 (tie|low agreement)\)"):
        run_job("ingest", f"job.export={undecided}", "crowd=perfect")
    with pytest.raises(Exception, match="quote it as written"):  # the command line prints this line alone
        run_job("ingest", f"job.export={undecided}", "campaign.workflow.versions=13.10")
    state = campaign_state(tmp_path)
    assert state.labels().empty
    state.close()


def test_gravity_spy_o3_choices_count_for_o3_classes_and_apart_otherwise(tmp_path: Path, state: CampaignState):
    rows = [("alice", "11", survey("CROWN")), ("bob", "11", survey("FASTSCATTERING")), ("carol", "12", survey("BLIP")),
            ("dave", "12", survey("BLIP"))]
    path = export_csv(tmp_path / "o3.csv", rows)
    o3_classes = list(CONFIG.campaign.workflow.classes) + ["Blip_Low_Frequency", "Fast_Scattering"]
    task = TaskSpec.from_config(gravity_spy_workflow(task_type="survey", classes=o3_classes))
    result = tally(chunks(path), state, MajorityVote(min_votes=2, agreement=0.6), o3_classes, task=task)
    assert result.labels().set_index("candidate_id")["label"].to_dict() == {"c1": "Fast_Scattering", "c2": "Blip"}
    v1 = TaskSpec.from_config(gravity_spy_workflow(task_type="survey"))
    v1_classes = list(CONFIG.campaign.workflow.classes)
    result = tally(chunks(path), state, MajorityVote(min_votes=2, agreement=0.6), v1_classes, task=v1)
    assert result.skipped == {"classes outside the campaign": 2}
    assert result.labels()["candidate_id"].tolist() == ["c2"]


def test_a_choice_is_added_to_the_table_with_an_ordinary_override(tmp_path: Path):
    from glitchrun.console import open_tables

    assert open_tables(["job=ingest", "campaign.workflow.choices.BLP={class: Blip}", "+x.y=1"]) == [
        "job=ingest", "++campaign.workflow.choices.BLP={class: Blip}", "+x.y=1"]
    assert open_tables(["campaign.workflow.choices={BLIP: {class: Blip}}"]) == [
        "~campaign.workflow.choices", "+campaign.workflow.choices={BLIP: {class: Blip}}"]
    shown = subprocess.run([sys.executable, "-m", "glitchrun", "--cfg", "job", "--package", "campaign.workflow.choices",
                            "campaign.workflow.choices.BLP={class: Blip, label: Blip}",
                            "campaign.workflow.choices.CROWN.label='Crown (fast scattering)'"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120)
    choices = OmegaConf.create(shown.stdout.split("\n", 1)[1])
    assert shown.returncode == 0 and choices.BLP == {"class": "Blip", "label": "Blip"}
    assert choices.CROWN.label == "Crown (fast scattering)" and "WHISTLE" in choices


def test_a_large_export_read_in_many_chunks_gives_what_one_chunk_gives(tmp_path: Path, state: CampaignState):
    """About 150 KB read in 16 KB chunks: the tally and the lines errors name are those of one read."""
    rows = [(f"user{n % 37}", str(11 + n % 3), CLASSES[(n * 7) % 4]) for n in range(300)]
    path = export_csv(tmp_path / "large.csv", rows)
    consensus = MajorityVote(min_votes=2, agreement=0.3)
    whole = tally(chunks(path), state, consensus, CLASSES)
    split = tally(chunks(path, chunk_bytes=16_000), state, consensus, CLASSES)
    assert len(list(chunks(path, chunk_bytes=16_000))) > 5
    pd.testing.assert_frame_equal(split.report, whole.report)
    pd.testing.assert_frame_equal(read_export(path, "classifications", chunk_bytes=16_000),
                                  read_export(path, "classifications"))
    assert (split.repeats, split.unanswered, split.skipped) == (whole.repeats, whole.unanswered, whole.skipped)
    # a cell spanning two lines in the first chunk moves every later line by one
    text = path.read_text().replace('""session"": ""s1"",', '""session"": ""s1"",\n', 1)
    broken = tmp_path / "broken.csv"
    broken.write_text(text.replace('""value"": ""Tomte""}', '""value"": ""Tomtee""}', 1))
    first_tomte = next(n for n, row in enumerate(rows) if row[2] == "Tomte")
    with pytest.raises(IngestError, match=rf"line {first_tomte + 3}, column 'annotations' \(classification "
                                          rf"{first_tomte + 1}\): answer 'Tomtee'"):
        tally(chunks(broken, chunk_bytes=16_000), state, consensus, CLASSES)


def test_the_benchmark_generator_writes_an_export_that_ingests(tmp_path: Path, run_job):
    """benchmarks/gravity_spy_export.py: the real format, read by job=ingest as a Gravity Spy export."""
    spec = importlib.util.spec_from_file_location("gravity_spy_export", Path(__file__).resolve().parents[2] /
                                                  "benchmarks" / "gravity_spy_export.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    path = generator.write_export(tmp_path / "generated.csv", rows=3000, mix=0.2)
    campaign_state(tmp_path).close()
    added, run_dir = run_job("ingest", "data=gravityspy", f"job.export={path}", "campaign.workflow.task_type=survey",
                             "job.workflows=[7766]", "crowd=perfect", "job.round=1")
    report = REPORT_SCHEMA.validate(pd.read_csv(run_dir / "agreement_report.csv", dtype={"subject_id": str}))
    assert set(added["source"]) == {"crowd", "expert"} and len(added) > 50
    assert report["candidate_id"].notna().all() and (report["task"] == "T1").all()


def test_a_classification_id_repeated_in_another_chunk_is_refused(tmp_path: Path, state: CampaignState):
    rows = [(f"user{n}", "11", "Blip") for n in range(200)]
    path = export_csv(tmp_path / "export.csv", rows)
    lines = path.read_text().splitlines()
    lines[150] = "3," + lines[150].split(",", 1)[1]  # the id of line 4, in a later chunk
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CsvError, match=r"column 'classification_id' holds an id twice, at line 4, line 151"):
        tally(chunks(path, chunk_bytes=16_000), state, MajorityVote(min_votes=1), CLASSES)


def test_an_export_naming_a_column_twice_is_refused_before_any_chunk(tmp_path: Path, state: CampaignState):
    path = export_csv(tmp_path / "export.csv", [("alice", "11", "Blip"), ("bob", "11", "Blip")])
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0].replace("user_ip", "user_name")] + lines[1:]) + "\n")
    with pytest.raises(CsvError, match=r"line 1 names a column twice \('user_name' in columns 2, 4\)"):
        tally(chunks(path), state, MajorityVote(min_votes=1), CLASSES)
