"""A failed round can be put right (issue 23): a round refused before its first write to Zooniverse leaves no
trace, so the next run chooses again; one stopped after its batch was recorded but before any subject was
uploaded is resumed, or chosen again when asked (``job.rechoose=true``) or when the settings that chose it
changed; one that began uploading can only be resumed. Nothing is ever uploaded twice."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import requests
from hydra import compose, initialize_config_module
from panoptes_client import Subject, SubjectSet

from glitchrun.campaign.state import CampaignState
from glitchrun.cli import run
from glitchrun.console import user_message
from glitchrun.jobs import al_round
from glitchrun.jobs.al_round import RoundFailed
from glitchrun.zooniverse.backend import LocalBackend
from glitchrun.zooniverse.resources import UploadLimitError

pytestmark = pytest.mark.slow


def config(tmp_path: Path, run_name: str, *overrides: str):
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        return compose("config", overrides=[
            f"paths.outputs={tmp_path}", f"paths.run_dir={tmp_path / run_name}", "data.n=3000", "al.batch_size=6",
            "images.size=[160,120]", "images.durations=[1.0]", "images.n_jobs=1", "images.progress=false",
            *overrides])


def state(tmp_path: Path) -> CampaignState:
    return CampaignState(tmp_path / "campaigns" / "glitchrun-demo")


def uploaded(tmp_path: Path) -> tuple[int, int]:
    """Subject sets and subjects on the embedded server."""
    with LocalBackend(storage_dir=tmp_path / "embedded_panoptes").connect():
        return len(list(SubjectSet.where())), len(list(Subject.where(page_size=100)))


def test_a_batch_refused_before_any_write_leaves_no_round_and_a_smaller_one_is_chosen(tmp_path: Path) -> None:
    """The issue's case: a batch the account's upload limit cannot take, then a smaller al.batch_size."""
    with pytest.raises(UploadLimitError) as refused:
        run(config(tmp_path, "run1", "al.batch_size=20", "backend.rules.subject_limit=10"))
    assert "nothing was uploaded" in user_message(refused.value) and "al.batch_size" in user_message(refused.value)
    campaign = state(tmp_path)
    assert campaign.rounds().empty and campaign.labels().empty and campaign.summary()["queried"] == 0
    assert uploaded(tmp_path) == (0, 0)

    result = run(config(tmp_path, "run2", "al.batch_size=5", "backend.rules.subject_limit=10"))
    assert result.status == "uploaded" and result.round == 1 and len(result.subject_ids) == 5
    # two sets: the batch's and its known-answer subjects' (campaign.gold.share 0.1 of 5: one)
    assert len(state(tmp_path).batch(1)) == 5 and uploaded(tmp_path) == (2, 5)


def test_a_round_stopped_before_its_upload_is_resumed_or_chosen_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    real = al_round.ensure_subject_set

    def unreachable(project, name):
        raise requests.ConnectionError("the network went away while the subject set was being made")

    monkeypatch.setattr(al_round, "ensure_subject_set", unreachable)
    with pytest.raises(requests.ConnectionError):
        run(config(tmp_path, "run1"))
    stopped = state(tmp_path).last_round()
    assert stopped.status == "selected" and len(state(tmp_path).batch(1)) == 6

    # the settings that chose it changed: chosen again (and stopped again at the same place)
    with pytest.raises(requests.ConnectionError):
        run(config(tmp_path, "run2", "al.batch_size=4"))
    assert "al.batch_size changed since it was chosen, so its batch is chosen again" in caplog.text
    assert len(state(tmp_path).batch(1)) == 4 and state(tmp_path).last_round().run_dir == str(tmp_path / "run2")

    # asked for: chosen again with the same settings
    caplog.clear()
    with pytest.raises(requests.ConnectionError):
        run(config(tmp_path, "run3", "al.batch_size=4", "job.rechoose=true"))
    assert "job.rechoose=true, so its batch is chosen again" in caplog.text
    assert state(tmp_path).last_round().run_dir == str(tmp_path / "run3")

    # a refusal while resuming says how to choose again
    monkeypatch.setattr(al_round, "ensure_subject_set", real)
    with pytest.raises(UploadLimitError) as refused:
        run(config(tmp_path, "run4", "al.batch_size=4", "backend.rules.subject_limit=2"))
    assert "job.rechoose=true chooses a new one" in user_message(refused.value)

    # the same settings, the network back: the recorded batch is resumed and uploaded once
    caplog.clear()
    batch = set(state(tmp_path).batch(1)["candidate_id"])
    result = run(config(tmp_path, "run5", "al.batch_size=4"))
    assert "round 1 stopped while selected; resuming it" in caplog.text
    assert result.status == "uploaded" and set(result.subject_ids) == batch and uploaded(tmp_path) == (1, 4)


def test_a_round_that_began_uploading_can_only_be_resumed(tmp_path: Path) -> None:
    with pytest.raises(RoundFailed, match="did not verify"):  # the media store loses every file
        run(config(tmp_path, "run1", "backend.faults.lost_upload_rate=1.0", "uploader.retries=1",
                   "uploader.backoff=0.01"))
    # the batch's set and its known-answer subjects' (campaign.gold.share 0.1 of 6: one)
    assert state(tmp_path).last_round().status == "uploading" and uploaded(tmp_path)[0] == 2

    with pytest.raises(ValueError, match="began uploading to subject set 1 .* can only be resumed"):
        run(config(tmp_path, "run2", "job.rechoose=true"))
    result = run(config(tmp_path, "run3", "al.batch_size=4"))  # a changed setting does not re-choose it either
    assert result.status == "uploaded" and len(result.subject_ids) == 6 and uploaded(tmp_path) == (2, 6)
