"""job=init_project through the real config path: resources made once, a re-run makes nothing, bad input nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf
from panoptes_client import Panoptes
from PIL import Image

from glitchrun.campaign.state import CampaignState
from glitchrun.csvio import CsvError, read_csv, write_csv
from glitchrun.zooniverse.exports import read_classification_export

SUBJECTS = 6
CONFIG = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "config.yaml")
NOTHING = {"projects": 0, "workflows": 0, "subject_sets": 0, "subjects": 0}


@pytest.fixture
def init(run_job):
    """``init(*overrides, run_dir="run")``: job=init_project through the composed config; its ids."""

    def run_(*overrides: str, run_dir: str = "run") -> dict[str, str]:
        return run_job("init_project", "uploader.backoff=0.01", *overrides, run_dir=run_dir)[0]

    return run_


def manifest(folder: Path, subjects: int = SUBJECTS, missing: int | None = None) -> Path:
    """Two PNGs per subject; the images of subject ``missing`` are not written."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(subjects):
        names = [f"s{i}_{j}.png" for j in range(2)]
        if i != missing:
            for j, name in enumerate(names):
                Image.new("RGB", (6, 6), (i * 20, j * 90, 7)).save(folder / name)
        rows.append({"candidate_id": f"c{i}", "image_a": names[0], "image_b": names[1], "#truth": "Blip"})
    return write_csv(pd.DataFrame(rows), folder / "manifest.csv")


def count(client: Panoptes, kind: str, **params: str) -> int:
    body, _ = client.get(f"/{kind}", params={**params, "page_size": 1})
    return body["meta"][kind]["count"]


def owner_counts(local_backend) -> dict[str, int]:
    """How many projects, workflows, subject sets and subjects the owner has on the embedded server."""
    with local_backend.connect() as conn:
        projects, _ = conn.client.get("/projects", params={"owner": conn.login, "page_size": 100})
        counts = {"projects": len(projects["projects"]), "workflows": 0, "subject_sets": 0, "subjects": 0}
        for project in projects["projects"]:
            for kind in ("workflows", "subject_sets", "subjects"):
                counts[kind] += count(conn.client, kind, project_id=project["id"])
        return counts


def test_creates_project_workflow_and_set_once(init, local_backend, tmp_path: Path):
    path = manifest(tmp_path / "subjects")
    ids = init(f"job.manifest={path}", "campaign.workflow.retirement_count=5")
    assert json.loads((tmp_path / "run" / "zooniverse_ids.json").read_text()) == ids
    assert owner_counts(local_backend) == {"projects": 1, "workflows": 1, "subject_sets": 1, "subjects": SUBJECTS}
    with local_backend.connect() as conn:
        project = conn.client.get(f"/projects/{ids['project_id']}")[0]["projects"][0]
        assert project["display_name"] == CONFIG.campaign.project.display_name and project["private"] is True
        workflow = conn.client.get(f"/workflows/{ids['workflow_id']}")[0]["workflows"][0]
        assert [a["label"] for a in workflow["tasks"]["T0"]["answers"]] == list(CONFIG.campaign.workflow.classes)
        assert workflow["retirement"]["options"]["count"] == 5
        assert workflow["links"]["subject_sets"] == [ids["subject_set_id"]]
        members, _ = conn.client.get("/subjects", params={"subject_set_id": ids["subject_set_id"], "page_size": 100})
        assert sorted(s["metadata"]["candidate_id"] for s in members["subjects"]) == [f"c{i}" for i in range(SUBJECTS)]
        assert all(len(s["locations"]) == 2 for s in members["subjects"])

    again = init(f"job.manifest={path}", "campaign.workflow.retirement_count=5", run_dir="run2")
    assert again | {"endpoint": ""} == ids | {"endpoint": ""}  # the embedded server's port changes per run
    assert owner_counts(local_backend) == {"projects": 1, "workflows": 1, "subject_sets": 1, "subjects": SUBJECTS}


def test_a_longer_manifest_only_adds_what_is_missing(init, local_backend, tmp_path: Path):
    init(f"job.manifest={manifest(tmp_path / 'first', subjects=3)}")
    init(f"job.manifest={manifest(tmp_path / 'second', subjects=SUBJECTS)}", run_dir="run2")
    assert owner_counts(local_backend) == {"projects": 1, "workflows": 1, "subject_sets": 1, "subjects": SUBJECTS}
    report = read_csv(tmp_path / "run2" / "upload_report.csv")
    assert list(report["status"]) == ["skipped"] * 3 + ["uploaded"] * (SUBJECTS - 3)


def test_without_manifest_only_project_and_workflow(init, local_backend):
    ids = init()
    assert set(ids) == {"endpoint", "project_id", "workflow_id"}
    assert owner_counts(local_backend) == {"projects": 1, "workflows": 1, "subject_sets": 0, "subjects": 0}


@pytest.mark.parametrize("bad,error", [
    ("missing_image", CsvError),
    ("campaign.workflow.classes=[]", ValueError),
    ("campaign.project.description=''", ValueError),
    ("job.key_column=nope", CsvError),
])
def test_bad_input_creates_nothing(init, local_backend, tmp_path: Path, bad: str, error: type):
    path = manifest(tmp_path / "subjects", missing=2 if bad == "missing_image" else None)
    overrides = [f"job.manifest={path}"] + ([] if bad == "missing_image" else [bad])
    with pytest.raises(error) as err:
        init(*overrides)
    if bad == "missing_image":
        assert "line 4" in str(err.value) and "image_a" in str(err.value) and "image_b" in str(err.value)
    assert owner_counts(local_backend) == NOTHING
    assert not (tmp_path / "run" / "zooniverse_ids.json").exists()


def test_changed_classes_are_refused_before_any_write(init, local_backend, tmp_path: Path):
    init()
    with pytest.raises(ValueError, match="differ from"):
        init(f"job.manifest={manifest(tmp_path / 'subjects')}", "campaign.workflow.classes=[Blip,Whistle]", run_dir="run2")
    assert owner_counts(local_backend) == {"projects": 1, "workflows": 1, "subject_sets": 0, "subjects": 0}


# -- a survey task (Gravity Spy's kind of workflow) ------------------------------------------------------------
SURVEY = "campaign.workflow.task_type=survey"


def test_a_survey_workflow_has_gravity_spy_choices_and_is_not_made_twice(init, local_backend):
    ids = init(SURVEY)
    with local_backend.connect() as conn:
        workflow = conn.client.get(f"/workflows/{ids['workflow_id']}")[0]["workflows"][0]
    t0 = workflow["tasks"]["T0"]
    assert workflow["first_task"] == "T0" and t0["type"] == "survey"
    # one choice per campaign class, the first of the table: Gravity Spy's O3 choices (classes the v1.0 campaign
    # does not have) are read in exports, not shown
    assert t0["choicesOrder"] == list(CONFIG.campaign.workflow.choices)[:22]
    assert {c: t0["choices"][c]["label"] for c in ("KOIFISH", "POWERLINE60HZ")} == {"KOIFISH": "Koi Fish",
                                                                                   "POWERLINE60HZ": "Power Line 60Hz"}
    assert all(choice["description"] and choice["noQuestions"] for choice in t0["choices"].values())
    assert init(SURVEY, run_dir="run2")["workflow_id"] == ids["workflow_id"]
    with pytest.raises(ValueError, match=r"survey task options \['1080LINE'.* differ from campaign.workflow.classes"):
        init(run_dir="run3")  # the same workflow name as a single question: refused, nothing changed
    assert owner_counts(local_backend) == {"projects": 1, "workflows": 1, "subject_sets": 0, "subjects": 0}


@pytest.mark.parametrize("bad,why", [
    ("campaign.workflow.task_type=dropdown", "task_type must be single or survey"),
    ("~campaign.workflow.choices", "choices is empty"),
    ("campaign.workflow.classes=[Blip,Whistle,Glitchy]", r"classes \['Glitchy'\] have no choice"),
])
def test_a_bad_survey_config_creates_nothing(init, local_backend, bad: str, why: str):
    with pytest.raises(ValueError, match=why):
        init(SURVEY, bad)
    assert owner_counts(local_backend) == NOTHING


def test_a_survey_campaign_runs_end_to_end(init, run_job, local_backend, tmp_path: Path):
    """init with a survey workflow, a round, simulated volunteers marking survey choices, labels back."""
    init(SURVEY)
    fast = ["data.n=600", "al.batch_size=4", "al.seed_per_class=1", "images.size=[160,120]", "images.durations=[1.0]",
            "images.n_jobs=1", "images.progress=false", "crowd=perfect", SURVEY]
    round_ = run_job("al_round", *fast, run_dir="round")[0]
    made, _ = run_job("crowd", *fast, run_dir="crowd")
    # the perfect crowd's consensus accepts one vote: glitchrun's retire pass between sweeps retires each subject
    assert made["subject_id"].nunique() == 4 and (made["answer"] == made["truth"]).all()
    truth = made.drop_duplicates("subject_id").set_index("subject_id")["truth"]
    state = CampaignState(tmp_path / "campaigns" / "glitchrun-demo")
    candidates = state.subject_candidates()
    crowd_labels = state.labels().query("source == 'crowd'")["label"].to_dict()
    state.close()
    assert crowd_labels == {candidates[s]: t for s, t in truth.items()}  # labels back through the API sync
    added, run_dir = run_job("ingest", *fast, "job.round=1", run_dir="ingest")  # the export agrees
    export = read_classification_export(next((run_dir / "exports").glob("*.csv")))
    choices = CONFIG.campaign.workflow.choices
    assert [[(a["task"], choices[a["value"][0]["choice"]]["class"]) for a in annotations]  # the real survey format
            for annotations in export["annotations"]] == [[("T0", t)] for t in made["truth"]]
    assert added.set_index("candidate_id")["label"].to_dict() == {candidates[s]: t for s, t in truth.items()}
    report = pd.read_csv(run_dir / "agreement_report.csv", dtype={"subject_id": str})
    slugs = {choice.lower() for choice in CONFIG.campaign.workflow.choices}
    votes = made.groupby("subject_id").size()
    assert set(report["data.most_likely"]) <= slugs
    assert (report.set_index("subject_id")["data.num_votes"] == votes.reindex(report["subject_id"]).to_numpy()).all()
    assert (report["task"] == "T0").all() and round_.subject_set_id
