"""TaskSpec: the campaign's task read from real workflows on the embedded Panoptes (panoptes-client), and the
annotations volunteers post and exports carry (question: index / label; survey: choice objects)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from panoptes_client import Panoptes, Workflow

from glitchrun.campaign.tasks import AnswerError, IngestError, TaskSpec, annotation_type
from glitchrun.zooniverse.resources import ProjectSpec, WorkflowSpec, ensure_project, ensure_workflow

CONFIG = OmegaConf.to_container(OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "config.yaml"))
WORKFLOW = CONFIG["campaign"]["workflow"]  # the 22 Gravity Spy classes and their survey choices
SURVEY = {**WORKFLOW, "task_type": "survey"}
DRAWING = {"type": "drawing", "instruction": "Trace the glitch", "tools": [{"type": "line", "label": "glitch"}]}


def make_workflow(connection, config: dict, name: str = "Glitch classification") -> Workflow:
    project, _ = ensure_project(ProjectSpec(display_name="tasks", description="tests", private=False), connection.login)
    spec = {k: v for k, v in config.items() if k in WorkflowSpec.__dataclass_fields__}
    workflow, _ = ensure_workflow(project, WorkflowSpec(**{**spec, "display_name": name}))
    return workflow


def post(connection, workflow: Workflow, login: str, annotation: dict) -> None:
    """One classification as volunteer ``login``, as the simulated crowd posts it."""
    subject, _ = Panoptes.client().post("/subjects", json={"subjects": {
        "locations": [{"image/png": "https://example.org/g.png"}], "metadata": {},
        "links": {"project": str(workflow.raw["links"]["project"])}}})
    connection.as_user(login).post("/classifications", json={"classifications": {
        "completed": True, "annotations": [annotation],
        "metadata": {"started_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:05.000Z",
                     "user_agent": "test", "user_language": "en", "utc_offset": "0", "source": "api",
                     "workflow_version": workflow.raw["version"]},
        "links": {"project": str(workflow.raw["links"]["project"]), "workflow": str(workflow.id),
                  "subjects": [subject["subjects"][0]["id"]]}}})


def exported_annotations(workflow: Workflow) -> list[list[dict]]:
    """The annotations column of the workflow's classification export, as the server writes it."""
    text = workflow.get_export("classifications", generate=True, wait=True, wait_timeout=10).content.decode()
    return [json.loads(row["annotations"]) for row in csv.DictReader(io.StringIO(text))]


def test_a_question_workflow_gives_its_task_answers_and_current_version(connection):
    workflow = make_workflow(connection, WORKFLOW)
    task = TaskSpec.from_workflow(Workflow.find(workflow.id), WORKFLOW)
    assert (task.key, task.type, task.workflow_id, task.versions) == ("T0", "single", str(workflow.id), ("1",))
    assert task.classes == WORKFLOW["classes"]
    posted = task.annotation_for("Koi_Fish")
    assert posted == {"task": "T0", "value": WORKFLOW["classes"].index("Koi_Fish")}
    post(connection, workflow, "alice", posted)
    (exported,) = exported_annotations(workflow)
    assert exported[0]["value"] == "Koi_Fish"  # the export names the answer by its label
    assert task.answer([posted]) == task.answer(exported) == "Koi_Fish"
    assert task.value(exported) == "Koi_Fish"


def test_a_survey_workflow_round_trips_gravity_spy_choices(connection):
    """init_project's survey task: the crowd posts a choice, the export carries it unchanged, ingest reads it."""
    workflow = Workflow.find(make_workflow(connection, SURVEY).id)
    t0 = workflow.tasks["T0"]
    assert t0["type"] == "survey" and t0["choicesOrder"][:3] == ["1080LINE", "1400RIPPLE", "AIRCOMPRESSOR50HZ"]
    assert t0["choices"]["POWERLINE60HZ"]["label"] == "Power Line 60Hz" and t0["choices"]["BLIP"]["description"]
    task = TaskSpec.from_workflow(workflow, SURVEY)
    assert (task.type, len(task.options), task.table["VIOLINMODEHARMONIC"]) == ("survey", 22, "Violin_Mode")
    posted = task.annotation_for("Power_Line")
    assert posted == {"task": "T0", "value": [{"choice": "POWERLINE60HZ", "answers": {}, "filters": {}}]}
    post(connection, workflow, "alice", posted)
    (exported,) = exported_annotations(workflow)
    assert exported == [posted] and task.answer(exported) == "Power_Line" and task.value(exported) == "POWERLINE60HZ"


def test_an_edited_workflow_counts_its_new_major_version_only(connection):
    """An answer added is a structural change (a new major version); rewording is a minor one (Panoptes keeps
    task text in its string table: panoptes lib/tasks_visitors/extract_strings.rb, app/models/workflow.rb
    update_version)."""
    classes = ["Blip", "Whistle", "Tomte"]
    workflow = make_workflow(connection, {**WORKFLOW, "classes": classes[:2]})
    workflow.tasks = {"T0": {**workflow.tasks["T0"], "answers": [{"label": c} for c in reversed(classes)]}}
    workflow.save()
    edited = Workflow.find(workflow.id)
    assert edited.raw["version"] == "2.2"
    task = TaskSpec.from_workflow(edited, {**WORKFLOW, "classes": classes})
    assert task.versions == ("2",) and task.options == ("Tomte", "Whistle", "Blip")
    assert task.skip_reason(workflow.id, "1.1") == "other versions"
    assert task.skip_reason(workflow.id, "2.7") is None and task.skip_reason(999, "2.1") == "other workflows"
    assert task.answer([{"task": "T0", "value": 0}]) == "Tomte"  # raw indexes follow the current answers
    pinned = TaskSpec.from_workflow(edited, {**WORKFLOW, "classes": classes, "versions": ["2.1", "1"]})
    assert [pinned.skip_reason(workflow.id, v) for v in ("2.1", "2.2", "1.9")] == [None, "other versions", None]


def test_the_class_task_is_found_among_others_and_other_types_are_refused_briefly(connection):
    workflow = make_workflow(connection, WORKFLOW)
    workflow.tasks = {"T0": DRAWING, "T1": workflow.tasks["T0"]}
    workflow.first_task = "T0"
    workflow.save()
    workflow = Workflow.find(workflow.id)
    assert TaskSpec.from_workflow(workflow, WORKFLOW).key == "T1"
    with pytest.raises(IngestError, match=rf"^workflow {workflow.id} task T0 is a drawing task; glitchrun reads"):
        TaskSpec.from_workflow(workflow, {**WORKFLOW, "task": "T0"})
    with pytest.raises(IngestError, match="task T1 is a single-answer question, not a survey task"):
        TaskSpec.from_workflow(workflow, {**SURVEY, "task": "T1"})
    with pytest.raises(IngestError, match=r"none of its tasks is a survey task whose options all have a class \(tasks: "
                                          r"T0 \(a drawing task\), T1 \(a single-answer question\)\)"):
        TaskSpec.from_workflow(workflow, SURVEY)
    with pytest.raises(IngestError, match=r"task T1 has options \['1080Lines', '1400Ripples'"):
        TaskSpec.from_workflow(workflow, {**WORKFLOW, "task": "T1", "classes": ["Blip", "Whistle"]})


# -- annotations without a server ---------------------------------------------------------------------------
QUESTION = TaskSpec.from_config({"classes": ["Blip", "Whistle"], "task": "T0"})
GRAVITY_SPY = TaskSpec.from_config({**SURVEY, "task": "T0"})


@pytest.mark.parametrize("value,kind", [
    ("Blip", "single"), (1, "single"), (None, "single"), ([0, 2], "multiple"), (["Blip", "Whistle"], "multiple"),
    ([{"choice": "BLIP", "answers": {"HOWMANY": "1"}, "filters": {}}], "survey"), ([], "survey"),
    ([{"x": 1.0, "y": 2.0, "tool": 0, "frame": 0, "details": []}], "drawing"),
    ([{"task": "T1", "value": 0}], "combo"), ({"select": 1}, "other"),
])
def test_annotation_values_are_told_apart_by_shape(value, kind: str):
    assert annotation_type(value) == kind


def test_answers_in_both_formats_and_what_is_not_an_answer():
    raw, exported = [{"task": "T0", "value": 1}], [{"task": "T0", "value": "Whistle"}]
    assert QUESTION.answer(raw) == QUESTION.answer(exported) == "Whistle"
    assert QUESTION.answer([{"task": "T0", "value": None}]) is None  # no answer given
    assert QUESTION.answer([{"task": "T9", "value": 0}]) is None  # the task not reached
    with pytest.raises(AnswerError, match="answer 2 is not one of task T0's 2 answers"):
        QUESTION.answer([{"task": "T0", "value": 2}])
    with pytest.raises(AnswerError, match="answer True is not one of"):
        QUESTION.answer([{"task": "T0", "value": True}])
    with pytest.raises(IngestError, match="task T0 is answered as a multiple-answer question, not as a single-answer"):
        QUESTION.answer([{"task": "T0", "value": [0, 1]}])
    with pytest.raises(IngestError, match="task T0 is answered as a survey task"):
        QUESTION.answer([{"task": "T0", "value": [{"choice": "BLIP"}]}])


def test_survey_choices_map_to_classes():
    def marked(*choices: str) -> list[dict]:
        return [{"task": "T0", "value": [{"choice": c, "answers": {}, "filters": {}} for c in choices]}]

    assert [GRAVITY_SPY.answer(marked(c)) for c in ("1080LINE", "KOIFISH", "NONEOFTHEABOVE")] == [
        "1080Lines", "Koi_Fish", "None_of_the_Above"]
    assert GRAVITY_SPY.answer(marked()) is None  # nothing marked
    assert GRAVITY_SPY.answer(marked("BLIP", "WHISTLE")) is None  # two classes: no single answer
    with pytest.raises(AnswerError, match=r"choice 'BLP' is not one of task T0's 28 choices \(campaign.workflow.ch"):
        GRAVITY_SPY.answer(marked("BLP"))
    old_ids = TaskSpec.from_config({**SURVEY, "task": "T0", "choices": {**SURVEY["choices"], "BLP": {"class": "Blip"}}})
    assert old_ids.answer(marked("BLP", "BLIP")) == "Blip" and old_ids.value(marked("BLP", "BLIP")) == "BLP"
    assert old_ids.annotation_for("Blip")["value"][0]["choice"] == "BLIP"  # the first choice of the class
    # Gravity Spy's O3 choices are in the default table: Crown is the volunteers' name for Fast_Scattering
    assert GRAVITY_SPY.answer(marked("CROWN")) == "Fast_Scattering" == GRAVITY_SPY.answer(marked("FASTSCATTERING"))
    assert GRAVITY_SPY.annotation_for("Fast_Scattering")["value"][0]["choice"] == "CROWN"
    with pytest.raises(ValueError, match="class 'Glitchy' is not an option of task T0"):
        GRAVITY_SPY.annotation_for("Glitchy")


def test_bad_task_config_is_one_line():
    with pytest.raises(IngestError, match="task_type is 'dropdown'; use one of"):
        TaskSpec.from_config({**WORKFLOW, "task_type": "dropdown"})
    with pytest.raises(IngestError, match="choices is empty"):
        TaskSpec.from_config({**SURVEY, "choices": {}})
