"""Known answers (glitchrun/campaign/gold.py) and the retire pass's rule that labels change only on new evidence
(glitchrun/campaign/retire.py), as pure functions; the loop itself runs in tests/jobs/test_loop.py."""

from __future__ import annotations

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from glitchrun.campaign.gold import choose_known, gold_answers, known_count
from glitchrun.campaign.retire import decide, new_evidence, unanimity
from glitchrun.campaign.state import ACTIVE, DISPUTED, LABELLED


@pytest.mark.parametrize(("share", "batch", "known"), [(0.1, 20, 2), (0.1, 4, 0), (0.25, 8, 2), (0.9, 2, 1), (0, 5, 0)])
def test_a_share_of_the_batch_rounded_leaving_the_learner_a_pick(share: float, batch: int, known: int):
    assert known_count(share, batch) == known


def test_a_share_of_one_or_more_is_refused():
    with pytest.raises(ValueError, match=r"campaign.gold.share must be in \[0, 1\)"):
        known_count(1.0, 10)


def test_known_answers_come_from_known_classes_one_class_after_another_least_shown_first():
    labels = pd.DataFrame({"label": ["Blip", "Blip", "Blip", "Whistle", "Whistle", "Tomte"],
                           "source": ["seed", "data", "expert", "seed", "seed", "crowd"]},
                          index=["b1", "b2", "b3", "w1", "w2", "t1"])
    uses = pd.Series({"b1": 2, "b2": 1, "w1": 1})
    chosen = choose_known(labels, labels.index.drop("b3"), uses, 3, seed=0)
    assert sorted(chosen.index[:2]) == ["b2", "w2"]  # one of each class first, the least shown of each
    assert set(chosen.index) <= {"b1", "b2", "w1", "w2"}  # never the crowd's own labels, only candidates given
    assert (chosen == labels.loc[chosen.index, "label"]).all()
    assert choose_known(labels, labels.index, uses, 0, seed=0).empty


def test_a_known_answer_stands_and_experts_settle_by_majority_then_by_who_came_first():
    known = pd.Series({"s1": "Blip"})
    experts = pd.DataFrame({"subject_id": ["s1", "s2", "s2", "s2", "s3", "s3"],
                            "volunteer": ["e1", "e1", "e2", "e3", "e2", "e1"],
                            "label": ["Whistle", "Tomte", "Blip", "Blip", "Whistle", "Tomte"]})
    assert gold_answers(known, experts).to_dict() == {"s1": "Blip", "s2": "Blip", "s3": "Whistle"}
    assert gold_answers(pd.Series(dtype=object), experts.iloc[:0]).empty


def test_new_evidence_is_new_votes_a_new_gold_answer_or_skill_moved_beyond_the_tolerance():
    basis = {"votes": 2, "gold": None, "skill": {"v0": 0.70, "v1": 0.65}}
    assert new_evidence(basis, {**basis, "skill": {"v0": 0.73, "v1": 0.62}}, 0.05) == ""
    assert new_evidence(basis, {**basis, "votes": 3, "skill": {**basis["skill"], "v2": 0.9}}, 0.05) == "1 new vote"
    assert new_evidence(basis, {**basis, "gold": "Blip"}, 0.05) == "an expert's answer (Blip)"
    moved = new_evidence(basis, {**basis, "skill": {"v0": 0.58, "v1": 0.65}}, 0.05)
    assert moved == "its volunteers' estimated skill moved by up to 0.12 (tolerance 0.05)"


def shipped_pass(votes: list[tuple[str, str, str]], gold: dict[str, str] | None = None) -> pd.DataFrame:
    """The retire pass's decision on subjects s1 and s2 with the shipped consensus and retirement settings
    (conf/config.yaml, crowd=gravity_spy) over the Gravity Spy classes, without a learner's vote."""
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        cfg = compose("config")
    classes, rules = list(cfg.campaign.workflow.classes), cfg.campaign.retirement
    consensus = instantiate(cfg.crowd.consensus)
    frame = pd.DataFrame(votes, columns=["subject_id", "volunteer", "label"])
    decided = consensus.aggregate(frame, classes, None, gold=None if gold is None else pd.Series(gold))
    agreed, support = unanimity(frame, None)
    subjects = pd.DataFrame({"status": ACTIVE}, index=["s1", "s2"])
    return decide(subjects, decided, int(rules.max_votes), None, consensus.next_vote_chance_,
                  float(rules.min_next_vote_chance), None, agreed, support, float(rules.strong_disagreement))


SPLIT_AND_UNANIMOUS = [("s1", "a", "Blip"), ("s1", "b", "Blip"), ("s2", "c", "Koi_Fish"), ("s2", "d", "Repeating_Blips")]


def test_two_of_two_unanimous_votes_make_a_label_and_one_each_of_two_classes_does_not():
    """The cases of issue #21: 2 of 2 for Blip was disputed, "Koi_Fish 1, Repeating_Blips 1" became a label."""
    after = shipped_pass(SPLIT_AND_UNANIMOUS)
    assert after.loc["s1", ["status", "label"]].tolist() == [LABELLED, "Blip"]
    assert after.loc["s2", "status"] != LABELLED and pd.isna(after.loc["s2", "label"])


def test_two_of_two_from_volunteers_measured_poor_wait_for_a_vote_instead_of_a_dispute():
    """a and b said Blip on twelve known Tomte answers: their 2 of 2 falls short of the cutoff and one more vote
    looks hopeless to the look-ahead, yet votes that all agree are not disputed early (the split s2 is); a third
    Blip, by a volunteer right on every known answer, makes the label."""
    known = [(f"g{i}", who, "Blip" if who in "ab" else "Tomte") for i in range(12) for who in "abcd"]
    gold = {f"g{i}": "Tomte" for i in range(12)}
    waiting = shipped_pass(SPLIT_AND_UNANIMOUS + known, gold)
    assert waiting.loc[["s1", "s2"], "status"].tolist() == [ACTIVE, DISPUTED]
    third = shipped_pass(SPLIT_AND_UNANIMOUS + known + [("s1", "c", "Blip")], gold)
    assert third.loc["s1", ["status", "label"]].tolist() == [LABELLED, "Blip"]
