"""Query strategies: valid distinct batches, the right candidates on constructed probabilities, one
predict_proba pass, validation before any work, and every config working inside a real modAL learner."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from modAL.batch import uncertainty_batch_sampling as modal_batch_sampling
from modAL.uncertainty import classifier_entropy, classifier_margin
from omegaconf import OmegaConf
from sklearn.ensemble import RandomForestClassifier

from glitchrun.learning import strategies
from glitchrun.learning.learner import make_learner
from glitchrun.learning.strategies import (
    PARTS,
    entropy_sampling,
    high_probability_sampling,
    kl_divergence,
    margin_sampling,
    mixed_sampling,
    part_counts,
    random_sampling,
    uncertainty_sampling,
    vote_entropy,
)

STRATEGY_FILES = sorted((Path(__file__).resolve().parents[2] / "conf" / "strategy").glob("*.yaml"))


def load_strategy(path: Path, seed: int = 0):
    """The strategy config instantiated as Hydra would, with the root's ``seed``."""
    return instantiate(OmegaConf.merge({"seed": seed}, {"strategy": OmegaConf.load(path)}).strategy)


class GivenProba:
    """A stand-in classifier with given probabilities: pool row i is candidate ``X[i, 0]``. Counts calls."""

    def __init__(self, proba: np.ndarray) -> None:
        self.proba = proba
        self.calls = 0

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self.calls += 1
        return self.proba[X[:, 0].astype(int)]


def pool_of(n: int) -> np.ndarray:
    return np.arange(n, dtype=float)[:, None]


def random_proba(n: int, n_classes: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(n_classes), size=n)


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Chunks of 7 rows, so that small pools cross chunk boundaries."""
    monkeypatch.setattr(strategies, "CHUNK_ROWS", 7)
    return 7


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labelled features, their labels and a pool of 200, from four overlapping Gaussian classes."""
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=2.0, size=(4, 3))
    y = rng.integers(0, 4, size=260)
    X = centres[y] + rng.normal(size=(260, 3))
    labels = np.array(["Blip", "Koi_Fish", "Tomte", "Whistle"])[y]
    return X[:60], labels[:60], X[60:]


@pytest.fixture
def learner(blobs):
    X, y, _ = blobs
    return make_learner(RandomForestClassifier(n_estimators=20, random_state=0), X, y)


@pytest.mark.parametrize("path", STRATEGY_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("n", [1, 7, 500])
def test_every_strategy_returns_distinct_valid_indices_deterministically(path, n, learner, blobs):
    pool = blobs[2]
    strategy = load_strategy(path)
    first, again = strategy(learner, pool, n_instances=n), strategy(learner, pool, n_instances=n)
    expected = min(n, len(pool))  # all of the pool when it is smaller than the batch
    assert len(first.indices) == len(np.unique(first.indices)) == expected
    assert first.indices.min() >= 0 and first.indices.max() < len(pool)
    assert len(first.scores) == len(first.chosen_by) == expected
    assert set(first.chosen_by) <= set(PARTS) | {"batch_uncertainty", "committee"}
    np.testing.assert_array_equal(first.indices, again.indices)


@pytest.mark.parametrize("path", STRATEGY_FILES, ids=lambda p: p.stem)
def test_every_strategy_chooses_nothing_from_an_empty_pool(path, learner):
    assert len(load_strategy(path)(learner, np.empty((0, 3)), n_instances=5).indices) == 0


def test_random_is_reproducible_per_round_and_differs_between_rounds(learner, blobs):
    X, y, pool = blobs
    a, b, c = (random_sampling(learner, pool, 10, seed=s).indices for s in (0, 0, 1))
    np.testing.assert_array_equal(a, b)
    assert set(a) != set(c)
    # a later round (more labels) does not draw the same positions again, even from a pool of the same size
    later = make_learner(RandomForestClassifier(n_estimators=5), np.vstack([X, X[:10]]), np.r_[y, y[:10]])
    assert set(random_sampling(later, pool, 10, seed=0).indices) != set(a)


def test_uncertainty_picks_the_least_confident_across_chunks(small_chunks):
    proba = random_proba(50)
    classifier = GivenProba(proba)
    chosen = uncertainty_sampling(classifier, pool_of(50), 6)
    least_confident_first = np.argsort(proba.max(axis=1))[:6]
    np.testing.assert_array_equal(chosen.indices, least_confident_first)
    np.testing.assert_allclose(chosen.scores, 1 - proba.max(axis=1)[least_confident_first])
    np.testing.assert_allclose(chosen.all_scores["uncertainty"], 1 - proba.max(axis=1))
    assert classifier.calls == math.ceil(50 / small_chunks)


@pytest.mark.parametrize(
    ("strategy", "modal_measure", "smallest_first"),
    [(margin_sampling, classifier_margin, True), (entropy_sampling, classifier_entropy, False)],
)
def test_margin_and_entropy_agree_with_modal_measures(strategy, modal_measure, smallest_first, small_chunks):
    proba, pool = random_proba(60, n_classes=5), pool_of(60)
    measure = modal_measure(GivenProba(proba), pool)
    order = np.argsort(measure if smallest_first else -measure)
    chosen = strategy(GivenProba(proba), pool, 8)
    np.testing.assert_array_equal(chosen.indices, order[:8])
    np.testing.assert_allclose(chosen.scores, measure[order[:8]])


def test_ties_are_broken_at_random_not_by_pool_order():
    proba = np.full((1000, 4), 0.25)  # every candidate equally uncertain
    picks = [set(uncertainty_sampling(GivenProba(proba), pool_of(1000), 10, seed=s).indices) for s in (0, 0, 1)]
    assert picks[0] == picks[1] != picks[2]
    assert picks[0] != set(range(10))


def confident_rows(predicted: list[int], confidence: list[float], n_classes: int = 3) -> np.ndarray:
    """Probability rows with the given predicted class and probability, the rest spread evenly."""
    proba = np.empty((len(predicted), n_classes))
    proba[:] = ((1 - np.array(confidence)) / (n_classes - 1))[:, None]
    proba[np.arange(len(predicted)), predicted] = confidence
    return proba


def test_high_probability_takes_the_most_confident_of_each_predicted_class_in_turn(small_chunks):
    predicted = [0, 0, 0, 1, 1, 1, 2, 2, 0, 1]
    confidence = [0.99, 0.97, 0.5, 0.9, 0.88, 0.4, 0.8, 0.79, 0.96, 0.87]
    chosen = high_probability_sampling(GivenProba(confident_rows(predicted, confidence)), pool_of(10), 5)
    # round 1: best of class 0, 1, 2 (most confident class first); round 2: second best of class 0, then 1
    np.testing.assert_array_equal(chosen.indices, [0, 3, 6, 1, 4])
    np.testing.assert_allclose(chosen.scores, [0.99, 0.9, 0.8, 0.97, 0.88])


def test_high_probability_spreads_over_the_predicted_classes(learner, blobs):
    pool = blobs[2]
    chosen = high_probability_sampling(learner, pool, 8)
    predicted = learner.predict(pool)
    assert len(set(predicted[chosen.indices])) == len(set(predicted))  # every predicted class, twice
    for index in chosen.indices:
        same_class = predicted == predicted[index]
        assert learner.predict_proba(pool[[index]]).max() >= np.sort(learner.predict_proba(pool[same_class]).max(axis=1))[-2]


def test_mixed_respects_fractions_without_duplicates(small_chunks):
    proba, pool = random_proba(80), pool_of(80)
    classifier = GivenProba(proba)
    chosen = mixed_sampling(classifier, pool, 10, fractions={"uncertainty": 0.5, "margin": 0.5})
    assert len(np.unique(chosen.indices)) == 10
    assert list(chosen.chosen_by) == ["uncertainty"] * 5 + ["margin"] * 5
    # margin would want many of the least confident too: it gets the smallest margins among the rest
    least_confident = np.argsort(proba.max(axis=1))[:5]
    np.testing.assert_array_equal(chosen.indices[:5], least_confident)
    top_two = np.sort(proba, axis=1)[:, -2:]
    margins = np.where(np.isin(np.arange(80), least_confident), np.inf, top_two[:, 1] - top_two[:, 0])
    np.testing.assert_array_equal(chosen.indices[5:], np.argsort(margins)[:5])
    assert classifier.calls == math.ceil(80 / small_chunks)  # one predict_proba pass shared by both parts


def test_mixed_config_is_80_20_margin_uncertainty_and_high_probability(learner, blobs):
    chosen = load_strategy(STRATEGY_FILES[[p.stem for p in STRATEGY_FILES].index("mixed")])(learner, blobs[2], n_instances=20)
    assert list(chosen.chosen_by) == ["margin"] * 16 + ["high_probability"] * 4


@pytest.mark.parametrize(
    ("fractions", "n", "counts"),
    [
        ({"uncertainty": 0.8, "high_probability": 0.2}, 7, {"uncertainty": 6, "high_probability": 1}),
        ({"uncertainty": 1 / 3, "margin": 1 / 3, "random": 1 / 3}, 10, {"uncertainty": 4, "margin": 3, "random": 3}),
        ({"uncertainty": 0.29, "random": 0.71}, 100, {"uncertainty": 29, "random": 71}),
    ],
)
def test_part_counts_round_to_exactly_the_batch(fractions, n, counts):
    assert part_counts(fractions, n) == counts


def test_part_counts_reject_an_empty_mix():
    with pytest.raises(ValueError, match="none given"):
        part_counts({}, 5)


class Untouchable:
    """A classifier that fails the test if a strategy does any work before validating its parameters."""

    estimator = None
    X_training = np.zeros((2, 1))
    y_training = np.array(["a", "b"])

    def predict_proba(self, X):
        raise AssertionError("predict_proba called before the parameters were validated")


@pytest.mark.parametrize(
    ("path", "overrides", "n", "message"),
    [
        ("mixed", {"fractions": {"uncertainty": 0.8, "high_probability": 0.1}}, 5, "sum to 1"),
        ("mixed", {"fractions": {"uncertainty": 1.2, "random": -0.2}}, 5, ">= 0"),
        ("mixed", {"fractions": {"uncertainty": 0.5, "confusion": 0.5}}, 5, r"unknown strategy part\(s\) \['confusion'\]"),
        ("uncertainty", {}, 0, "n_instances must be an integer >= 1"),
        ("margin", {}, 2.5, "n_instances must be an integer >= 1"),
        ("batch_uncertainty", {}, -1, "n_instances must be an integer >= 1"),
        ("committee", {"n_members": 1}, 5, "n_members >= 2"),
        ("committee", {"disagreement": "shouting"}, 5, "disagreement in"),
    ],
)
def test_invalid_parameters_raise_clearly_before_any_work(path, overrides, n, message):
    config = OmegaConf.merge(OmegaConf.load(STRATEGY_FILES[0].with_name(f"{path}.yaml")), overrides)
    strategy = instantiate(OmegaConf.merge({"seed": 0}, {"strategy": config}).strategy)
    with pytest.raises(ValueError, match=message):
        strategy(Untouchable(), pool_of(10), n_instances=n)


def test_batch_uncertainty_chooses_what_modal_chooses(learner, blobs):
    pool = blobs[2]
    expected, _ = modal_batch_sampling(learner, pool, n_instances=12)
    np.testing.assert_array_equal(strategies.uncertainty_batch_sampling(learner, pool, 12).indices, expected)


def test_batch_uncertainty_and_committee_need_labelled_data():
    for strategy in (strategies.uncertainty_batch_sampling, strategies.committee_sampling):
        with pytest.raises(TypeError, match="needs a modAL ActiveLearner"):
            strategy(GivenProba(random_proba(5)), pool_of(5), 2)


def test_disagreement_measures_are_zero_on_agreement_and_positive_on_dispute():
    # two members, two candidates: they agree on the first, oppose each other on the second
    probas = np.array([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])
    for measure in (vote_entropy, kl_divergence):
        np.testing.assert_allclose(measure(probas), [0.0, np.log(2)])


def test_committee_asks_where_its_members_disagree(learner, blobs):
    pool = blobs[2]
    chosen = strategies.committee_sampling(learner, pool, 10)
    members = strategies.bagged_committee(learner, 5, strategies.query_rng(0, learner, pool))
    disagreement = kl_divergence(np.stack([m.predict_proba(pool) for m in members]))
    np.testing.assert_allclose(chosen.scores, np.sort(disagreement)[::-1][:10])


@pytest.mark.parametrize("path", STRATEGY_FILES, ids=lambda p: p.stem)
def test_every_strategy_config_works_inside_a_modal_active_learner(path, blobs):
    X, y, pool = blobs
    learner = make_learner(RandomForestClassifier(n_estimators=10, random_state=0), X, y, query_strategy=load_strategy(path))
    indices, instances = learner.query(pool, n_instances=4)
    assert len(np.unique(indices)) == 4
    np.testing.assert_array_equal(instances, pool[indices])
    with pytest.warns(FutureWarning, match="force_all_finite"):  # modAL 0.4.2.1 on scikit-learn 1.7
        learner.teach(instances, learner.predict(instances))
    assert len(learner.X_training) == len(X) + 4


def test_top_k_breaks_ties_by_the_next_key_and_draws_only_among_full_ties():
    first = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 0.5])
    second = np.array([9.0, 0.2, 0.7, 0.7, 0.1, 9.0])
    ranked = strategies.top_k([first, second], 2, np.random.default_rng(0))
    np.testing.assert_array_equal(ranked.indices, [2, 3])  # the tied block of two fits: nothing drawn
    assert not ranked.drawn.any()
    ranked = strategies.top_k([first, second], 1, np.random.default_rng(0))
    assert ranked.indices[0] in (2, 3) and ranked.drawn.tolist() == [True]
    picks = {int(strategies.top_k([first, second], 1, np.random.default_rng(s)).indices[0]) for s in range(20)}
    assert picks == {2, 3}
    ranked = strategies.top_k([first, second], 4, np.random.default_rng(0))
    np.testing.assert_array_equal(ranked.indices, [2, 3, 1, 4])
    assert not ranked.drawn.any()


def test_margin_ties_go_to_the_larger_entropy():
    # all four are torn exactly between two classes (margin 0); the last two spread over more classes
    proba = np.array([[0.5, 0.5, 0.0, 0.0], [0.45, 0.45, 0.1, 0.0], [0.3, 0.3, 0.2, 0.2], [0.4, 0.4, 0.1, 0.1],
                      [0.9, 0.1, 0.0, 0.0]])
    chosen = margin_sampling(GivenProba(proba), pool_of(5), 2)
    np.testing.assert_array_equal(chosen.indices, [2, 3])
    np.testing.assert_array_equal(chosen.scores, [0.0, 0.0])
    assert not chosen.drawn.any()


def test_high_probability_marks_a_pick_drawn_among_equals_of_its_class():
    # class 0: two candidates equally sure; class 1: one. Two picks: class 0's draw, and class 1's best
    proba = np.array([[1.0, 0.0], [1.0, 0.0], [0.2, 0.8], [0.6, 0.4]])
    chosen = high_probability_sampling(GivenProba(proba), pool_of(4), 2)
    assert set(chosen.indices) - {0, 1} == {2} and len(set(chosen.indices) & {0, 1}) == 1
    assert chosen.drawn[list(chosen.indices).index(2)] == False  # noqa: E712 (numpy bool)
    assert chosen.drawn[[i in (0, 1) for i in chosen.indices]].all()
    # with three picks class 0's two are both taken: no draw
    assert not high_probability_sampling(GivenProba(proba), pool_of(4), 3).drawn.any()


def test_random_tie_breaks_are_counted_where_they_happen():
    proba = np.full((100, 4), 0.25)  # all alike: every pick of every part is a draw
    for strategy in (uncertainty_sampling, margin_sampling, entropy_sampling, high_probability_sampling):
        assert strategy(GivenProba(proba), pool_of(100), 5).drawn.all()
    assert not random_sampling(GivenProba(proba), pool_of(100), 5).drawn.any()  # random by design, not a tie-break


REPO = Path(__file__).resolve().parents[2]
O1_SAMPLE = REPO.parent / "shared" / "data" / "gravityspy_v1_o1_sample.csv"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("data", ["synthetic", "o1"])
def test_a_default_round_chooses_at_most_a_tenth_of_its_batch_by_random_tie_break(data: str, seed: int):
    """The default learner and strategy, seeded as round 1 seeds them (al.seed_per_class labels per class), on the
    default synthetic pool and on the 279 real O1 glitches: picks come from the probabilities, not from draws."""
    from hydra import compose, initialize_config_module

    from glitchrun.data.loaders import GravitySpyData
    from glitchrun.jobs.simulate import with_truth
    from glitchrun.learning.learner import query

    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        cfg = compose("config", overrides=[f"seed={seed}"])
    candidates = with_truth(instantiate(cfg.data).load() if data == "synthetic"
                            else GravitySpyData(O1_SAMPLE, labels_as="truth").load())
    truth = candidates.frame["truth"]
    seeded = truth.groupby(truth).sample(frac=1.0, random_state=seed).groupby(truth).head(cfg.al.seed_per_class).index
    pool = candidates.frame.index.difference(seeded)
    learner = make_learner(instantiate(cfg.learner), candidates.features(seeded), truth[seeded].to_numpy(dtype=object))
    chosen = query(learner, instantiate(cfg.strategy), candidates.features(pool), cfg.al.batch_size)
    assert len(chosen.indices) == cfg.al.batch_size == 20
    assert chosen.drawn.sum() <= 0.1 * cfg.al.batch_size, (list(chosen.chosen_by), list(chosen.scores))


class GivenProbaAndLabels(GivenProba):
    """``GivenProba`` that also keeps labelled data, as a modAL learner does (for the novelty tie-break)."""

    def __init__(self, proba: np.ndarray, X_training: np.ndarray) -> None:
        super().__init__(proba)
        self.X_training = X_training


@pytest.mark.parametrize("strategy", [uncertainty_sampling, margin_sampling, entropy_sampling,
                                      high_probability_sampling])
def test_identical_probabilities_go_to_the_candidate_farthest_from_the_labels(strategy):
    proba = np.tile([[0.5, 0.5, 0.0]], (6, 1))  # a forest's identical vote fractions: every measure ties
    classifier = GivenProbaAndLabels(proba, X_training=np.array([[0.5]]))  # pool row i sits at i
    chosen = strategy(classifier, pool_of(6), 2)
    np.testing.assert_array_equal(chosen.indices, [5, 4])
    assert not chosen.drawn.any()
