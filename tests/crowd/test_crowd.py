"""Simulated volunteers: the skill model they are built from is the one they answer with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from glitchrun.crowd.simulated import SimulatedCrowd

CLASSES = ["Blip", "Koi_Fish", "Tomte", "Whistle", "Chirp", "No_Glitch"]
SIMILAR = [["Blip", "Koi_Fish", "Tomte"], ["Whistle", "Chirp"], ["Not_A_Workflow_Class", "No_Glitch"]]


def test_confusion_matrix_has_the_volunteers_accuracy_and_sends_mistakes_to_look_alikes():
    crowd = SimulatedCrowd(volunteers=3, accuracy=0.6, accuracy_sd=0.0, confusion=0.8, similar=SIMILAR)
    matrix = crowd.confusion_matrix(0, CLASSES)
    assert np.allclose(matrix.sum(axis=1), 1.0)
    assert np.allclose(np.diag(matrix), 0.6)
    blip = matrix[CLASSES.index("Blip")]
    # 80 % of the 40 % mistakes go to Koi_Fish and Tomte, the rest spread over all 5 other classes
    assert blip[CLASSES.index("Koi_Fish")] == pytest.approx(0.4 * 0.8 / 2 + 0.4 * 0.2 / 5)
    assert blip[CLASSES.index("Whistle")] == pytest.approx(0.4 * 0.2 / 5)
    # a class whose look-alikes are not answers of the workflow errs uniformly
    assert np.allclose(np.delete(matrix[CLASSES.index("No_Glitch")], CLASSES.index("No_Glitch")), 0.4 / 5)


def test_answers_follow_the_skill_model():
    crowd = SimulatedCrowd(volunteers=2, experts=1, expert_accuracy=0.9, accuracy=0.5, accuracy_sd=0.0, seed=3)
    for volunteer, expected in ((0, 0.9), (1, 0.5)):
        answers = [crowd.answer(volunteer, f"s{i}", "Whistle", CLASSES) for i in range(3000)]
        assert np.mean(np.array(answers) == CLASSES.index("Whistle")) == pytest.approx(expected, abs=0.03)


def test_answers_and_orders_do_not_depend_on_call_order_and_change_with_the_seed():
    crowd = SimulatedCrowd(volunteers=10, accuracy=0.5, seed=1)
    forward = [crowd.answer(v, s, "Blip", CLASSES) for v in range(10) for s in ("a", "b", "c")]
    backward = [crowd.answer(v, s, "Blip", CLASSES) for v in reversed(range(10)) for s in ("c", "b", "a")]
    assert forward == list(reversed(backward))
    assert sorted(crowd.order("a")) == list(range(10))
    other = SimulatedCrowd(volunteers=10, accuracy=0.5, seed=2)
    assert [crowd.order(s) for s in "abc"] != [other.order(s) for s in "abc"]


def test_accuracies_come_from_the_configured_distribution():
    crowd = SimulatedCrowd(volunteers=2000, experts=5, expert_accuracy=0.97, accuracy=0.7, accuracy_sd=0.1)
    assert crowd.logins[:2] == ["volunteer000", "volunteer001"] and len(set(crowd.logins)) == 2000
    assert np.all(crowd.accuracies[:5] == 0.97)
    rest = crowd.accuracies[5:]
    assert rest.mean() == pytest.approx(0.7, abs=0.01) and rest.std() == pytest.approx(0.1, abs=0.01)


def test_offline_votes_give_each_subject_distinct_volunteers():
    crowd = SimulatedCrowd(volunteers=4, seed=0)
    truth = pd.Series(["Blip", "Chirp"], index=["s1", "s2"])
    cast = crowd.votes(truth, CLASSES, per_subject=3)
    assert cast.groupby("subject_id")["volunteer"].nunique().tolist() == [3, 3]
    assert set(cast["label"]) <= set(CLASSES)


@pytest.mark.parametrize("kwargs", [{"volunteers": 0}, {"experts": 5, "volunteers": 3}, {"accuracy": 1.2},
                                    {"accuracy": 0.5, "accuracy_sd": 0.6}])
def test_impossible_crowds_are_refused(kwargs: dict):
    with pytest.raises(ValueError):
        SimulatedCrowd(**kwargs)


def test_a_true_class_outside_the_workflow_is_an_error():
    with pytest.raises(ValueError, match="Fast_Scattering"):
        SimulatedCrowd().answer(0, "s1", "Fast_Scattering", CLASSES)
