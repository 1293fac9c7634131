"""Known answers (glitchrun/campaign/gold.py) and the retire pass's rule that labels change only on new evidence
(glitchrun/campaign/retire.py), as pure functions; the loop itself runs in tests/jobs/test_loop.py."""

from __future__ import annotations

import pandas as pd
import pytest

from glitchrun.campaign.gold import choose_known, gold_answers, known_count
from glitchrun.campaign.retire import new_evidence


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
