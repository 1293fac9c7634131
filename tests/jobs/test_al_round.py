"""The active-learning round end to end on the embedded Panoptes, asserting the server's and the campaign's state."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import requests
from hydra import compose, initialize_config_module
from hydra.errors import InstantiationException
from panoptes_client import Project, Subject, SubjectSet, Workflow

from glitchrun.campaign.state import CampaignState
from glitchrun.cli import run
from glitchrun.jobs.al_round import MANIFEST_SCHEMA, RoundFailed
from glitchrun.zooniverse.backend import LocalBackend
from glitchrun.zooniverse.resources import add_testers
from glitchrun.zooniverse.uploader import SubjectUploader

BATCH = 6
CLASSES_KEY = "campaign.workflow.classes"


def round_config(tmp_path: Path, run_name: str, *overrides: str):
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        return compose("config", overrides=[
            f"paths.outputs={tmp_path}", f"paths.run_dir={tmp_path / run_name}", "job=al_round",
            # the learner's picks only: known-answer subjects (a second set) are tested in test_loop.py
            "data.n=3000", f"al.batch_size={BATCH}", "campaign.gold.share=0",
            "images.size=[320,240]", "images.n_jobs=1", "images.progress=false", *overrides,
        ])


def server_state(tmp_path: Path) -> dict:
    """Counts of everything the campaign has on the embedded server."""
    with LocalBackend(storage_dir=tmp_path / "embedded_panoptes").connect():
        project = next(iter(Project.where()))
        sets = list(SubjectSet.where(project_id=project.id))
        subjects = list(Subject.where(project_id=project.id, page_size=100))
        members = {s.id: s.set_member_subjects_count for s in sets}
    return {"sets": len(sets), "subjects": len(subjects), "members": members}


def classify_all(tmp_path: Path, subject_set_id: str, classes: list[str], votes: int = 2) -> None:
    """Volunteers (testers of the private project) who always give the hidden truth classify every subject of the set."""
    with LocalBackend(storage_dir=tmp_path / "embedded_panoptes").connect() as conn:
        subjects = list(Subject.where(subject_set_id=subject_set_id, page_size=100))
        workflow = next(iter(Workflow.where()))
        logins = [f"volunteer{volunteer}" for volunteer in range(votes)]
        add_testers(workflow.links.project, [conn.as_user(login).get("/me")[0]["users"][0]["id"] for login in logins])
        for login in logins:
            client = conn.as_user(login)
            for subject in subjects:
                answer = classes.index(subject.metadata["#truth"])
                client.post("/classifications", json={"classifications": {
                    "completed": True,
                    "annotations": [{"task": "T0", "value": answer}],
                    "metadata": {"started_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:05.000Z",
                                 "user_agent": "glitchrun-test", "user_language": "en",
                                 "workflow_version": workflow.version},
                    "links": {"project": str(workflow.links.project.id), "workflow": str(workflow.id),
                              "subjects": [str(subject.id)]}}})


def test_first_round_uploads_a_verified_batch_with_images(tmp_path: Path):
    cfg = round_config(tmp_path, "run1")
    result = run(cfg)
    assert result.status == "uploaded" and result.round == 1
    with LocalBackend(storage_dir=tmp_path / "embedded_panoptes").connect():
        subject_set = SubjectSet.find(result.subject_set_id)
        assert subject_set.set_member_subjects_count == BATCH
        subjects = list(Subject.where(subject_set_id=subject_set.id, page_size=100))
        workflow = next(iter(Workflow.where()))
        assert str(subject_set.id) in [str(s) for s in workflow.raw["links"]["subject_sets"]]
        for subject in subjects:
            assert len(subject.locations) == 4
            for location in subject.locations:
                body = requests.get(next(iter(location.values())), timeout=10).content
                assert body.startswith(b"\x89PNG")
    assert len({s.metadata["candidate_id"] for s in subjects}) == BATCH
    for subject in subjects:
        assert subject.metadata["#truth"] in cfg.campaign.workflow.classes
        assert 0 <= float(subject.metadata["#probability"]) <= 1
    run_dir = tmp_path / "run1"
    MANIFEST_SCHEMA.validate(pd.read_csv(run_dir / "manifest.csv"))
    for name in ("report.md", "labelled_pool.csv", "unlabelled_pool.csv", "upload_report.csv",
                 "plots/class_balance.png", "plots/query_scores_margin.png", "plots/contact_sheet_1.png"):
        assert (run_dir / name).is_file(), name
    labels = CampaignState(tmp_path / "campaigns" / "glitchrun-demo").labels()
    assert (labels["source"] == "seed").sum() == 2 * labels["label"].nunique()


def test_next_round_waits_for_labels_then_learns_from_the_crowd(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    first = run(round_config(tmp_path, "run1"))
    before = server_state(tmp_path)

    caplog.set_level(logging.INFO)
    waiting = run(round_config(tmp_path, "run2"))
    assert waiting.status == "waiting"
    assert f"{BATCH} of {BATCH} subjects" in caplog.text and "still need votes" in caplog.text
    assert server_state(tmp_path) == before

    cfg = round_config(tmp_path, "run3", "crowd=perfect")  # unanimous majority vote: two right votes make a label
    classify_all(tmp_path, first.subject_set_id, list(cfg.campaign.workflow.classes))
    second = run(cfg)
    assert second.status == "uploaded" and second.round == 2 and second.subject_set_id != first.subject_set_id
    state = CampaignState(tmp_path / "campaigns" / "glitchrun-demo")
    crowd = state.labels().query("source == 'crowd'")
    assert len(crowd) == BATCH
    assert set(crowd.index) == set(first.subject_ids)
    assert set(first.subject_ids).isdisjoint(second.subject_ids)
    after = server_state(tmp_path)
    assert after["sets"] == 2 and after["subjects"] == 2 * BATCH


def test_round_interrupted_during_upload_resumes_without_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real_upload = SubjectUploader.upload

    def crash_half_way(self, manifest, project_id, subject_set_id, report_dir):
        half = type(manifest).from_frame(manifest.frame.iloc[: BATCH // 2], manifest.key_column, manifest.base_dir,
                                         manifest.media_columns)
        real_upload(self, half, project_id, subject_set_id, report_dir)
        raise KeyboardInterrupt("simulated crash during the upload")

    monkeypatch.setattr(SubjectUploader, "upload", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        run(round_config(tmp_path, "run1"))
    assert CampaignState(tmp_path / "campaigns" / "glitchrun-demo").last_round().status == "uploading"
    monkeypatch.setattr(SubjectUploader, "upload", real_upload)

    resumed = run(round_config(tmp_path, "run2"))
    assert resumed.status == "uploaded" and resumed.round == 1
    state = server_state(tmp_path)
    assert state["subjects"] == BATCH and list(state["members"].values()) == [BATCH]
    report = resumed.report.read_text()
    assert "(resumed)" in report and str(tmp_path / "run1") in report and f"{BATCH // 2} already there" in report


def test_lost_media_fails_verification_and_a_rerun_repairs_it(tmp_path: Path):
    with pytest.raises(RoundFailed, match="did not verify"):
        run(round_config(tmp_path, "run1", "backend.faults.lost_upload_rate=1.0", "uploader.retries=1",
                         "uploader.backoff=0.01"))
    resumed = run(round_config(tmp_path, "run2"))
    assert resumed.status == "uploaded"
    state = server_state(tmp_path)
    assert state["subjects"] == BATCH and list(state["members"].values()) == [BATCH]


def test_bad_batch_size_fails_before_any_work(tmp_path: Path):
    with pytest.raises(InstantiationException, match="al.batch_size must be at least 1"):
        run(round_config(tmp_path, "run1", "al.batch_size=0"))
    assert not (tmp_path / "embedded_panoptes").exists()


def test_glitchrun_with_no_arguments_runs_a_round_and_says_where_the_report_is(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANOPTES_")} | {"MPLBACKEND": "Agg"}
    out = subprocess.run([sys.executable, "-m", "glitchrun"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=900, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-3000:]
    reports = list((tmp_path / "outputs" / "runs").glob("*/*/report.md"))
    assert len(reports) == 1
    assert "report: " in out.stdout + out.stderr and str(reports[0].relative_to(tmp_path)) in out.stdout + out.stderr
    assert random_tie_breaks(reports[0]) <= 0.1 * 20  # at most a tenth of the default batch of 20 drawn among ties


def random_tie_breaks(report: Path) -> int:
    """How many picks the report says were random tie-breaks, over the strategy parts that ranked by a score."""
    counts = re.findall(r"Random tie-breaks: (\d+) of its (\d+) picks", report.read_text())
    assert counts, "the report does not say how many picks were random tie-breaks"
    return sum(int(drawn) for drawn, _ in counts)


def test_a_default_round_on_the_real_o1_sample_chooses_by_information_not_ties(tmp_path: Path, shared_data: Path):
    """The 279 real O1 glitches (their labels the hidden truth), default learner, strategy, seeding and batch."""
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        cfg = compose("config", overrides=[
            f"paths.outputs={tmp_path}", f"paths.run_dir={tmp_path / 'run1'}", "data=gravityspy",
            f"data.path={shared_data / 'gravityspy_v1_o1_sample.csv'}", "data.labels_as=truth",
            "images.allow_synthetic=true", "images.durations=[1.0]", "images.size=[160,120]", "images.n_jobs=1",
            "images.progress=false"])
    result = run(cfg)
    assert result.status == "uploaded" and len(result.subject_ids) == cfg.al.batch_size == 20
    assert random_tie_breaks(tmp_path / "run1" / "report.md") <= 0.1 * 20
