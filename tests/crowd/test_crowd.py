"""Simulated volunteers: the skill model they are built from is the one they answer with, harder glitches
included."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from glitchrun.crowd.simulated import SimulatedCrowd, feature_values, hidden_features
from glitchrun.data.synthetic import FIT, GRAVITY_SPY_CLASSES, LOG_FEATURES, generate

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


# -- the difficulty-aware crowd -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def glitches() -> pd.DataFrame:
    """Synthetic candidates of all 22 classes, indexed by id, with how ambiguous each is to the generator."""
    frame = generate(6000, seed=5).set_index("id")
    overlap = FIT.posterior(frame[list(LOG_FEATURES)].to_numpy(), GRAVITY_SPY_CLASSES)
    frame["ambiguity"] = 1 - overlap[np.arange(len(frame)), [GRAVITY_SPY_CLASSES.index(t) for t in frame["truth"]]]
    frame["neighbour"] = [GRAVITY_SPY_CLASSES[int(np.argmax(np.where(np.arange(22) == GRAVITY_SPY_CLASSES.index(t),
                                                                        -1, row)))]
                          for t, row in zip(frame["truth"], overlap, strict=True)]
    return frame


def test_volunteers_err_more_on_ambiguous_glitches(glitches: pd.DataFrame):
    crowd = SimulatedCrowd(volunteers=15, accuracy=0.8, accuracy_sd=0.0, difficulty=1.0, seed=2)
    clear, ambiguous = glitches[glitches["ambiguity"] < 0.05], glitches[glitches["ambiguity"] > 0.5]
    assert len(clear) > 500 and len(ambiguous) > 200
    clear, ambiguous = clear.head(500), ambiguous.head(200)
    correct = {}
    for name, subset in (("clear", clear), ("ambiguous", ambiguous)):
        cast = crowd.votes(subset["truth"], GRAVITY_SPY_CLASSES, per_subject=15, features=subset)
        correct[name] = (cast["label"].to_numpy() == subset.loc[cast["subject_id"], "truth"].to_numpy()).mean()
        # expected: 0.8 x (1 - mean ambiguity), the skill model they answer with
        assert correct[name] == pytest.approx(0.8 * (1 - subset["ambiguity"].mean()), abs=0.02)
    assert correct["ambiguous"] < correct["clear"] - 0.3
    # without the features, or with difficulty off, every subject is as clear-cut as any other
    plain = crowd.votes(ambiguous["truth"], GRAVITY_SPY_CLASSES, per_subject=15)
    assert (plain["label"].to_numpy() == ambiguous.loc[plain["subject_id"], "truth"].to_numpy()).mean() == \
        pytest.approx(0.8, abs=0.02)


def test_mistakes_on_ambiguous_glitches_go_to_the_overlapping_class(glitches: pd.DataFrame):
    crowd = SimulatedCrowd(volunteers=15, accuracy=1.0, accuracy_sd=0.0, difficulty=1.0, seed=4)
    ambiguous = glitches[glitches["ambiguity"] > 0.4]
    cast = crowd.votes(ambiguous["truth"], GRAVITY_SPY_CLASSES, per_subject=15, features=ambiguous)
    wrong = cast[cast["label"].to_numpy() != ambiguous.loc[cast["subject_id"], "truth"].to_numpy()]
    to_neighbour = (wrong["label"].to_numpy() == ambiguous.loc[wrong["subject_id"], "neighbour"].to_numpy()).mean()
    # 21 other classes, yet most mistakes land on the one class the glitch overlaps most
    assert len(wrong) > 1000 and to_neighbour > 0.6
    # and a perfect volunteer's chance of the true class is exactly the posterior of the true class
    row = ambiguous.iloc[0]
    overlap = crowd.overlap(row[list(LOG_FEATURES)].to_numpy(dtype=float), GRAVITY_SPY_CLASSES)[0]
    p = crowd.probabilities(0, row["truth"], GRAVITY_SPY_CLASSES, overlap)
    assert p.sum() == pytest.approx(1) and p[GRAVITY_SPY_CLASSES.index(row["truth"])] == pytest.approx(1 - row["ambiguity"])


def test_the_round_hands_the_features_to_the_crowd_as_hidden_metadata(glitches: pd.DataFrame):
    crowd = SimulatedCrowd(volunteers=5, accuracy=0.7, accuracy_sd=0.0, difficulty=1.0, seed=1)
    rows = glitches[glitches["ambiguity"] > 0.5].head(40)
    metadata = hidden_features(rows)
    assert all(json.loads(m).keys() == set(LOG_FEATURES) for m in metadata)
    for (subject, row), hidden in zip(rows.iterrows(), metadata, strict=True):
        for volunteer in range(5):
            answer = crowd.answer(volunteer, subject, row["truth"], GRAVITY_SPY_CLASSES, features=hidden)
            assert answer == crowd.answer(volunteer, subject, row["truth"], GRAVITY_SPY_CLASSES, features=row.to_dict())
    offline = crowd.votes(rows["truth"], GRAVITY_SPY_CLASSES, per_subject=5, features=rows)
    online = [GRAVITY_SPY_CLASSES[crowd.answer(crowd.logins.index(v), s, rows.loc[s, "truth"], GRAVITY_SPY_CLASSES,
                                               features=hidden)]
              for s, v, hidden in zip(offline["subject_id"], offline["volunteer"],
                                      np.repeat(metadata, 5), strict=True)]
    assert offline["label"].tolist() == online
    # a subject without usable features (a real campaign's, or a feature table's) is answered as clear-cut
    for broken in (None, "{}", "not json", {"snr": 12.0}, {**rows.iloc[0][list(LOG_FEATURES)].to_dict(), "snr": -1}):
        assert feature_values(broken) is None


def test_difficulty_is_off_for_the_perfect_crowd_and_on_for_the_gravity_spy_one(glitches: pd.DataFrame):
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    crowds = {}
    for name in ("perfect", "gravity_spy", "uneven"):
        with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
            crowds[name] = instantiate(compose("config", overrides=[f"crowd={name}"]).crowd.volunteers)
    assert crowds["perfect"].difficulty == 0 and crowds["gravity_spy"].difficulty > 0 and crowds["uneven"].difficulty > 0
    ambiguous = glitches[glitches["ambiguity"] > 0.5]
    cast = crowds["perfect"].votes(ambiguous["truth"], GRAVITY_SPY_CLASSES, per_subject=5, features=ambiguous)
    assert (cast["label"].to_numpy() == ambiguous.loc[cast["subject_id"], "truth"].to_numpy()).all()
    with pytest.raises(ValueError, match="difficulty"):
        SimulatedCrowd(difficulty=1.5)
