"""The simulation: full rounds (round -> crowd with retire passes) on the embedded Panoptes, and its learning curve."""

from __future__ import annotations

import json
from contextlib import closing

import pandas as pd
import pytest
from panoptes_client import Workflow

from glitchrun.campaign.state import CampaignState
from glitchrun.data.loaders import Candidates
from glitchrun.jobs.simulate import held_out, with_truth
from glitchrun.learning.warm_start import CHECKS_KEY
from glitchrun.zooniverse.backend import LocalBackend

BATCH = 4
#: small and fast: a small pool, one small Q-scan per subject, a perfect crowd whose one vote is a consensus
FAST = ["data.n=600", f"al.batch_size={BATCH}", "al.seed_per_class=1", "images.size=[160,120]", "images.durations=[1.0]",
        "images.n_jobs=1", "images.progress=false", "crowd=perfect"]


def test_three_rounds_give_a_learning_curve_over_seed_plus_three_batches(run_job):
    curve, run_dir = run_job("simulate", "job.rounds=3", *FAST)
    assert curve["round"].tolist() == [0, 1, 2, 3]
    seeds = curve["labels"].iloc[0]
    assert seeds > 0 and curve["labels"].tolist() == [seeds + r * BATCH for r in range(4)]
    assert (curve["label_accuracy"] == 1.0).all()  # a perfect crowd's consensus is the truth
    assert curve["votes"].tolist() == [r * BATCH for r in range(4)]  # one vote per subject reaches consensus
    assert (curve["disputed"] == 0).all()
    assert curve["full_pool_macro_f1"].nunique() == 1 and curve["macro_f1"].between(0, 1).all()
    written = pd.read_csv(run_dir / "learning_curve.csv")
    pd.testing.assert_frame_equal(written, curve, check_dtype=False)
    assert (run_dir / "learning_curve.png").read_bytes().startswith(b"\x89PNG")
    # the server of the run directory holds three rounds of BATCH subjects, retired by glitchrun
    with LocalBackend(storage_dir=run_dir / "embedded_panoptes").connect():
        workflow = next(iter(Workflow.where()))
        assert len(workflow.raw["links"]["subject_sets"]) == 3
        assert workflow.raw["retired_set_member_subjects_count"] == 3 * BATCH


def candidates(label: list, truth: list) -> Candidates:
    """Candidates with these labels and truths and dull features."""
    frame = pd.DataFrame({"ifo": "H1", "event_time": 0.0, "peak_frequency": 1.0, "central_frequency": 1.0, "duration": 1.0,
                          "bandwidth": 1.0, "snr": 1.0, "amplitude": 1.0, "label": label, "truth": truth},
                         index=pd.Index([f"c{i}" for i in range(len(label))], name="id"))
    return Candidates(frame, classes=["Blip", "Whistle"])


def test_known_labels_become_the_hidden_truth_and_the_test_split_keeps_class_shares():
    labels = ["Blip"] * 10 + ["Whistle"] * 5
    simulated = with_truth(candidates(labels, [pd.NA] * 15))
    assert simulated.frame["label"].isna().all() and simulated.frame["truth"].tolist() == labels
    test = held_out(simulated.frame["truth"], 0.2, seed=0)
    assert simulated.frame.loc[test, "truth"].value_counts().to_dict() == {"Blip": 2, "Whistle": 1}


def test_a_simulation_needs_ground_truth_for_every_candidate():
    with pytest.raises(ValueError, match="1 candidates have no ground truth"):
        with_truth(candidates([pd.NA, pd.NA], ["Blip", pd.NA]))


@pytest.mark.slow
def test_a_warm_started_simulation_queries_and_scores_with_the_synthetic_candidates(run_job, shared_data, caplog):
    """warm_start=synthetic on the real O1 sample: the rounds and the scorer use the generator refit on the seed
    labels; the same run cold scores the seed labels alone, so round 0's score differs."""
    real = ["data=gravityspy", f"data.path={shared_data / 'gravityspy_v1_o1_sample.csv'}", "job.rounds=1",
            "images.allow_synthetic=true",
            *(override for override in FAST if not override.startswith(("data.n", "al.seed_per_class"))),
            "al.seed_per_class=2"]
    caplog.set_level("INFO", logger="glitchrun.learning.warm_start")
    warm, warm_dir = run_job("simulate", *real, "warm_start=synthetic", run_dir="warm")
    messages = [r.getMessage() for r in caplog.records if r.name == "glitchrun.learning.warm_start"]
    refits = [m for m in messages if m.startswith("warm start: ")]
    checks = [m for m in messages if m.startswith("warm start o")]
    assert len(refits) >= 2 and all(m.startswith("warm start: 200 synthetic candidates") for m in refits)  # round, scorer
    # the round's check on the seed labels; the scorer takes it from the campaign state and checks no more
    first = f"warm start on: held-out check on {warm['labels'].iloc[0]} real labels"
    assert len(checks) == 1 and checks[0].startswith(first)
    with closing(CampaignState(warm_dir / "campaign")) as state:
        kept = json.loads(state.get(CHECKS_KEY))["checks"]
    assert [(check["labels"], check["helped"]) for check in kept] == [(warm["labels"].iloc[0], True)]
    cold, _ = run_job("simulate", *real, run_dir="cold")
    assert warm["labels"].tolist() == cold["labels"].tolist() and warm["labels"].iloc[0] < 200
    assert warm["macro_f1"].iloc[0] != cold["macro_f1"].iloc[0]  # the seed labels plus synthetic candidates
    assert warm["full_pool_macro_f1"].iloc[0] == cold["full_pool_macro_f1"].iloc[0]  # the target stays the cold one
