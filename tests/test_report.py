"""The round report closes the loop, and job=status shows the campaign: three rounds on the embedded Panoptes with
a simulated, fallible crowd, then the round-3 report and the status are checked against the campaign state."""

from __future__ import annotations

import re
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from PIL import Image

from glitchrun.campaign.state import CampaignState
from glitchrun.cli import run
from glitchrun.crowd.datasets import shared_crowds
from glitchrun.report import CELL, SHEET_COLUMNS, SHEET_DPI, calibration_plot, tie_note

BATCH = 6
#: small and fast: a small pool, one small Q-scan per subject; eight weak volunteers (accuracy 0.6), at most two
#: (three before glitchrun's own retirement) votes per subject, so some subjects end disputed; one upload worker,
#: so subject ids (which seed the crowd's answers) follow the batch order and the outcome is reproducible
FAST = ["data.n=600", f"al.batch_size={BATCH}", "al.seed_per_class=2", "images.size=[160,120]",
        "images.durations=[1.0]", "images.n_jobs=1", "images.progress=false", "crowd.volunteers.volunteers=8",
        "crowd.volunteers.accuracy=0.6", "campaign.workflow.retirement_count=3", "campaign.retirement.max_votes=2",
        "uploader.workers=1"]


def run_glitchrun(tmp: Path, run_dir: Path, *overrides: str):
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        cfg = compose("config", overrides=[f"paths.outputs={tmp}", f"paths.run_dir={run_dir}", *overrides])
    return run(cfg)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state directory of a campaign after three simulated rounds: two full rounds (round, crowd, consensus),
    then a third round run as a user would on the same server (its report in ``<state>/../round3``)."""
    tmp = tmp_path_factory.mktemp("report")
    run_glitchrun(tmp, tmp / "sim", "job=simulate", "job.rounds=2", *FAST)
    run_glitchrun(tmp, tmp / "round3", "job=al_round", f"backend.storage_dir={tmp / 'sim' / 'embedded_panoptes'}",
                  f"campaign.state_dir={tmp / 'sim' / 'campaign'}", *FAST)
    return tmp / "sim" / "campaign"


def state_counts(campaign: Path, number: int) -> dict[str, int]:
    """A round's subjects by outcome, as the campaign state holds them (its known-answer subjects apart)."""
    with closing(CampaignState(campaign)) as state:
        size, subjects = len(state.batch(number)), state.subjects(round=number)
    status = subjects.loc[subjects["gold_label"].isna(), "status"].value_counts()
    return {"size": size, "known": int(subjects["gold_label"].notna().sum()),
            **{s: int(status.get(s, 0)) for s in ("labelled", "disputed", "active")}}


def test_round_3_report_holds_round_2_outcome_the_batch_and_a_comparable_quality_curve(campaign: Path):
    round_dir = campaign.parent.parent / "round3"
    report = (round_dir / "report.md").read_text()
    # the previous round's outcome, counted as the state counts it
    counts = state_counts(campaign, 2)
    assert counts["disputed"] > 0  # the fallible crowd left something to dispute
    with closing(CampaignState(campaign)) as state:
        labels, batch3, subjects = state.labels(), state.batch(3), state.subjects(round=2)
        cast, all_votes = state.classifications(round=2), state.votes()
    assert (f"Round 2 showed {counts['size']} subjects: **{counts['labelled']} labelled**, "
            f"**{counts['disputed']} disputed** (no consensus within the vote cap, or out of reach of one more vote: no label), 0 still active, "
            f"{counts['known']} known-answer subjects; "
            f"{subjects['votes'].sum()} votes.") in report
    for subject, row in subjects[subjects["status"] == "disputed"].iterrows():  # each with its votes
        answers = cast.loc[cast["subject_id"] == subject, "answer"].value_counts()
        assert f"| {subject} | {row['candidate_id']} | {', '.join(f'{c} {n}' for c, n in answers.items())} |" in report
    truth = re.search(r"In this simulation, \*\*(\d+) of (\d+)\*\* new labels", report)
    assert truth and int(truth[2]) == counts["labelled"]
    assert (round_dir / "plots" / "agreement.png").read_bytes().startswith(b"\x89PNG")
    assert f"Each volunteer's skill as GravitySpyConsensus estimates it from all {len(all_votes)} votes so far" in report
    assert counts["known"] == 1 and "**1 known-answer subjects**" in report  # a tenth of the batch of 6, rounded
    assert (round_dir / "plots" / "volunteer_skill.png").read_bytes().startswith(b"\x89PNG")

    # the contact sheet: one captioned thumbnail per batch subject, in batch order
    sheet = Image.open(round_dir / "plots" / "contact_sheet_1.png")
    assert sheet.text["Description"].split() == list(batch3["candidate_id"])
    cell = (round(CELL[0] * SHEET_DPI), round(CELL[1] * SHEET_DPI))
    assert sheet.size == (SHEET_COLUMNS * cell[0], 2 * cell[1])  # 6 thumbnails: a row of SHEET_COLUMNS (4), then 2
    pixels = np.asarray(sheet.convert("L"), dtype=float)
    for i in range(BATCH):  # every cell shows an image, not blank paper
        row, column = divmod(i, SHEET_COLUMNS)
        assert pixels[row * cell[1] : (row + 1) * cell[1], column * cell[0] : (column + 1) * cell[0]].std() > 20
    assert cell[0] >= 0.55 * 800  # a default Q-scan (800 px wide) at more than half its size: its labels legible
    assert "![contact sheet 1](plots/contact_sheet_1.png)" in report
    assert all(f"| {c} |" in report for c in batch3["candidate_id"])

    # the quality curve: every round's learner scored on the same labels, those the campaign held at round 3
    curve = pd.read_csv(round_dir / "quality_over_rounds.csv")
    known_since = labels["round"].fillna(0)
    assert curve["round"].tolist() == [1, 2, 3]
    assert curve["evaluated"].tolist() == [int((known_since < 3).sum())] * 3
    assert curve["training_labels"].tolist() == [int((known_since < k).sum()) for k in (1, 2, 3)]
    assert curve["macro_f1"].between(0, 1).all()
    assert "![quality over rounds](plots/quality.png)" in report and (round_dir / "plots" / "quality.png").exists()
    # one query-score plot per scored strategy part, saying which end is chosen
    for part in set(batch3["strategy"]) - {"known_answer"}:
        assert (round_dir / "plots" / f"query_scores_{part}.png").exists()
    assert "**margin** (gap between the two most probable classes): the lowest are chosen." in report


def test_status_prints_the_counts_the_campaign_state_holds(campaign: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]):
    status = run_glitchrun(tmp_path, tmp_path / "status", "job=status", f"campaign.state_dir={campaign}")
    printed = capsys.readouterr().out
    with closing(CampaignState(campaign)) as state:
        labels, rounds = state.labels(), state.rounds().set_index("number")
    for number in (1, 2, 3):
        c = state_counts(campaign, number)
        row = (rf"^\s*{number}\s+glitchrun-demo-round-00{number} \({rounds.loc[number, 'subject_set_id']}\)\s+"
               rf"{rounds.loc[number, 'status']}\s+{c['size']}\s+{c['labelled']}\s+{c['disputed']}\s+{c['active']}\s")
        assert re.search(row, printed, re.MULTILINE), printed
    by_source = labels["source"].value_counts()
    total = re.search(r"^total\s+(\d+)\s+(\d+)\s+(\d+)$", printed, re.MULTILINE)
    assert total and [int(n) for n in total.groups()] == [by_source["crowd"], by_source["seed"], len(labels)]
    assert status.labels.loc["Blip", "total"] == int((labels["label"] == "Blip").sum())
    waiting = state_counts(campaign, 3)["active"]
    assert f"{waiting} subjects of round 3 are still with volunteers; on the embedded Panoptes, `glitchrun job=crowd`" in (
        printed)
    written = (tmp_path / "status" / "status.md").read_text()
    assert "## Rounds" in written and (tmp_path / "status" / "labels_over_rounds.png").exists()


def test_status_of_a_campaign_that_does_not_exist_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert run_glitchrun(tmp_path, tmp_path / "status", "job=status", f"campaign.state_dir={tmp_path / 'none'}") is None
    assert "no campaign 'glitchrun-demo' yet" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()


def test_tied_picks_are_explained_and_random_tie_breaks_counted():
    pool = np.array([0.0] * 30 + [0.2, 0.5])
    note = tie_note("margin", np.zeros(3), pool, np.array([False, False, True]))
    assert note.startswith(" Random tie-breaks: 1 of its 3 picks. 3 of them tie at 0.000 (the two most probable "
                           "classes exactly tied)")
    assert note.endswith("; 30 pool candidates share it, ranked by the larger entropy, then by the larger distance to "
                         "the nearest labelled candidate.")
    assert tie_note("margin", np.array([0.0, 0.2]), pool, np.zeros(2, dtype=bool)) == (
        " Random tie-breaks: 0 of its 2 picks.")
    assert tie_note("uncertainty", np.array([0.5, 0.5]), pool, np.zeros(2, dtype=bool)).endswith(
        "; no other pool candidate has it.")


def test_the_calibration_plot_shows_the_acceptance_on_a_real_crowds_gold(shared_data: Path, tmp_path: Path):
    """The report's calibration plot on gold: the consensus of crowd=gravity_spy on real votes (RTE, an expert label
    per item) with a seeded tenth of the items as known answers; the replay it plots is the one the cutoff came
    from, and at the cutoff used the accepted gold labels are right at least as often as asked."""
    data = next(d for d in shared_crowds(shared_data / "crowds") if d.name == "rte")
    gold, _ = data.split_gold(0.1, seed=0)
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        consensus = instantiate(compose("config", overrides=["crowd=gravity_spy"]).crowd.consensus)
    consensus.aggregate(data.votes, data.classes, None, gold=gold)
    assert consensus.calibrated_ and len(consensus.calibration_)
    frame = consensus.calibration_
    at_cutoff = frame[frame["cutoff"] >= consensus.cutoff_].sort_values("cutoff").iloc[0]
    assert at_cutoff["right"] >= consensus.agreement * at_cutoff["accepted"] - 1e-9
    path = calibration_plot(tmp_path / "gold_calibration.png", frame, float(consensus.cutoff_), consensus.agreement,
                            True)
    assert path.read_bytes().startswith(b"\x89PNG")
