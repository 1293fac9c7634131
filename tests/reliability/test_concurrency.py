"""Two rounds of one campaign at once: one proceeds, the other stops at once with a message naming the lock,
and the campaign's state and its Zooniverse project hold one round, one subject set, one batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from glitchrun.campaign.state import CampaignState

from .helpers import read_store

BATCH = 4
ROUND = ["data.n=600", f"al.batch_size={BATCH}", "images.size=[160,120]", "images.durations=[1.0]",
         "images.n_jobs=1", "images.progress=false",
         # every request slowed so that a round lasts seconds: the second process reaches the lock while the first holds it
         "backend.faults.latency_ms=300"]
BUSY = "another glitchrun round of this campaign is running (lock "


def start(outputs: Path, *overrides: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "glitchrun", f"paths.outputs={outputs}", *overrides],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=outputs.parent)


def state_dir(outputs: Path) -> Path:
    return outputs / "campaigns" / "glitchrun-demo"


@pytest.mark.parametrize("job", ["al_round", "ingest"])
def test_a_job_stops_while_another_holds_the_campaign(tmp_path: Path, job: str) -> None:
    outputs = tmp_path / "outputs"
    state = CampaignState(state_dir(outputs))
    with state.lock():
        busy = start(outputs, f"job={job}", *ROUND)
        output, _ = busy.communicate(timeout=300)
    assert busy.returncode != 0
    assert BUSY in output and str(state_dir(outputs) / "round.lock") in output
    assert state.rounds().empty and state.labels().empty
    assert not (outputs / "embedded_panoptes").exists(), "the job connected although the campaign was busy"
    state.close()


def test_two_rounds_started_together_make_one_round(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    rounds = [start(outputs, *ROUND) for _ in range(2)]
    outputs_and_codes = [(r.communicate(timeout=300)[0], r.returncode) for r in rounds]
    codes = sorted(code for _, code in outputs_and_codes)
    assert codes[0] == 0 and codes[1] != 0, [text[-1500:] for text, _ in outputs_and_codes]
    stopped = next(text for text, code in outputs_and_codes if code != 0)
    assert BUSY in stopped

    state = CampaignState(state_dir(outputs))
    recorded = state.rounds()
    assert recorded[["number", "status"]].values.tolist() == [[1, "uploaded"]]
    assert len(state.batch(1)) == BATCH
    state.close()
    stored = read_store(outputs / "embedded_panoptes")
    assert list(stored.set_names.values()) == [recorded.at[0, "subject_set_name"]]
    (members,) = stored.members.values()
    assert len(members) == len(set(members)) == len(stored.metadata) == BATCH
