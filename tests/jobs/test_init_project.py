"""job=init_project through the real config path: resources made once, a re-run makes nothing, bad input nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from panoptes_client import Panoptes
from PIL import Image

from glitchrun.backend import LocalBackend
from glitchrun.cli import run
from glitchrun.csvio import CsvError, write_csv

SUBJECTS = 6


def config(outputs: Path, *overrides: str):
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        return compose("config", overrides=[f"paths.outputs={outputs}", f"paths.run_dir={outputs / 'run'}",
                                            "job=init_project", "uploader.backoff=0.01", *overrides])


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


def count(endpoint_client: Panoptes, path: str, **params: str) -> int:
    body, _ = endpoint_client.get(path, params={**params, "page_size": 1})
    return body["meta"][path.strip("/")]["count"]


def server_state(outputs: Path) -> dict[str, int]:
    """How many projects, workflows, subject sets and subjects the owner has on the embedded server."""
    with LocalBackend(storage_dir=outputs / "embedded_panoptes").connect() as conn:
        client = conn.client
        projects, _ = client.get("/projects", params={"owner": conn.login, "page_size": 100})
        state = {"projects": len(projects["projects"]), "workflows": 0, "subject_sets": 0, "subjects": 0}
        for project in projects["projects"]:
            for kind in ("workflows", "subject_sets", "subjects"):
                state[kind] += count(client, f"/{kind}", project_id=project["id"])
        return state


def test_creates_project_workflow_and_set_once(tmp_path: Path):
    cfg = config(tmp_path, f"job.manifest={manifest(tmp_path / 'subjects')}", "campaign.workflow.retirement_count=5")
    ids = run(cfg)
    assert json.loads((tmp_path / "run" / "zooniverse_ids.json").read_text()) == ids
    assert server_state(tmp_path) == {"projects": 1, "workflows": 1, "subject_sets": 1, "subjects": SUBJECTS}
    with LocalBackend(storage_dir=tmp_path / "embedded_panoptes").connect() as conn:
        project, _ = conn.client.get(f"/projects/{ids['project_id']}")
        assert project["projects"][0]["display_name"] == cfg.campaign.project.display_name
        assert project["projects"][0]["private"] is True
        workflow = conn.client.get(f"/workflows/{ids['workflow_id']}")[0]["workflows"][0]
        assert [a["label"] for a in workflow["tasks"]["T0"]["answers"]] == list(cfg.campaign.workflow.classes)
        assert workflow["retirement"]["options"]["count"] == 5
        assert workflow["links"]["subject_sets"] == [ids["subject_set_id"]]
        members, _ = conn.client.get("/subjects", params={"subject_set_id": ids["subject_set_id"], "page_size": 100})
        assert sorted(s["metadata"]["candidate_id"] for s in members["subjects"]) == [f"c{i}" for i in range(SUBJECTS)]
        assert all(len(s["locations"]) == 2 for s in members["subjects"])

    again = run(config(tmp_path, f"job.manifest={tmp_path / 'subjects' / 'manifest.csv'}",
                       "campaign.workflow.retirement_count=5", f"paths.run_dir={tmp_path / 'run2'}"))
    assert again | {"endpoint": ""} == ids | {"endpoint": ""}  # the embedded server's port changes per run
    assert server_state(tmp_path) == {"projects": 1, "workflows": 1, "subject_sets": 1, "subjects": SUBJECTS}


def test_a_longer_manifest_only_adds_what_is_missing(tmp_path: Path):
    run(config(tmp_path, f"job.manifest={manifest(tmp_path / 'first', subjects=3)}"))
    run(config(tmp_path, f"job.manifest={manifest(tmp_path / 'second', subjects=SUBJECTS)}", f"paths.run_dir={tmp_path / 'run2'}"))
    assert server_state(tmp_path) == {"projects": 1, "workflows": 1, "subject_sets": 1, "subjects": SUBJECTS}
    report = pd.read_csv(tmp_path / "run2" / "upload_report.csv")
    assert list(report["status"]) == ["skipped"] * 3 + ["uploaded"] * (SUBJECTS - 3)


def test_without_manifest_only_project_and_workflow(tmp_path: Path):
    ids = run(config(tmp_path))
    assert set(ids) == {"endpoint", "project_id", "workflow_id"}
    assert server_state(tmp_path) == {"projects": 1, "workflows": 1, "subject_sets": 0, "subjects": 0}


@pytest.mark.parametrize("bad,error", [
    ("missing_image", CsvError),
    ("campaign.workflow.classes=[]", ValueError),
    ("campaign.project.description=''", ValueError),
    ("job.key_column=nope", CsvError),
])
def test_bad_input_creates_nothing(tmp_path: Path, bad: str, error: type):
    path = manifest(tmp_path / "subjects", missing=2 if bad == "missing_image" else None)
    overrides = [f"job.manifest={path}"] + ([] if bad == "missing_image" else [bad])
    with pytest.raises(error) as err:
        run(config(tmp_path, *overrides))
    if bad == "missing_image":
        assert "line 4" in str(err.value) and "image_a" in str(err.value) and "image_b" in str(err.value)
    assert server_state(tmp_path) == {"projects": 0, "workflows": 0, "subject_sets": 0, "subjects": 0}
    assert not (tmp_path / "run" / "zooniverse_ids.json").exists()


def test_changed_classes_are_refused_before_any_write(tmp_path: Path):
    run(config(tmp_path))
    with pytest.raises(ValueError, match="differ from"):
        run(config(tmp_path, f"job.manifest={manifest(tmp_path / 'subjects')}", "campaign.workflow.classes=[Blip,Whistle]",
                   f"paths.run_dir={tmp_path / 'run2'}"))
    assert server_state(tmp_path) == {"projects": 1, "workflows": 1, "subject_sets": 0, "subjects": 0}
