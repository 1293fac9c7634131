"""Query strategies: which pool candidates the volunteers should label next.

A strategy is a plain function ``(classifier, X_pool, n_instances, **params) -> Selection``; Hydra binds the
params with ``_partial_: true``. A ``Selection`` unpacks as ``(indices, scores)``, so every strategy is also a
modAL ``query_strategy``. As in modAL, utility measures (``MEASURES``, functions of the class probabilities)
are separate from selectors (``top_k``, round-robin, random).

Pools reach 10^6 candidates, so the class probabilities are computed once per query, a chunk of rows at a
time, and each chunk is reduced at once to the few per-candidate measures the strategy needs: the
(n_pool, n_classes) probability matrix is never held whole, and the parts of a mix share the one pass.

``chosen_by`` names the part that chose a candidate: a key of ``PARTS`` for the probability-based strategies
and their mixes, ``"batch_uncertainty"`` or ``"committee"`` for the others. Each is also the name of the
strategy's file in conf/strategy/.

Ties: a random forest fitted on a few labels gives probabilities that are fractions of its trees' votes, so a
measure alone ties whole blocks of candidates (on 20,000 synthetic candidates and 44 labels, ~500-700 share
the smallest margin, 0: two classes with equal votes). Yet their probability rows almost all differ (19,700 of
20,000 distinct), so each part ranks its ties by a second measure of the same probabilities (``TIE_BREAKS``:
margin and least confidence by entropy, entropy by margin, high probability by low entropy), the rows still
equal (mostly unanimous votes) by their distance to the nearest labelled candidate (``novelty``), and draws at
random only among candidates equal in all; ``Selection.drawn`` says which picks were such draws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from scipy import special
from sklearn.base import clone
from sklearn.metrics import pairwise_distances, pairwise_distances_argmin_min
from sklearn.metrics.pairwise import nan_euclidean_distances
from sklearn.utils import resample

# Rows per predict_proba call. Small enough that a chunk's probabilities (n_classes floats a row, held twice
# inside a forest) stay in the CPU cache and small beside X_pool; large enough to amortise the per-call
# overhead (~2 ms for a 100-tree forest). Measured with a 100-tree forest and 22 classes: as fast as one call on
# 10^4 and 10^5 rows, a third faster on 10^6 (6.1 s against 9.1 s CPU); 8192 to 16384 rows were slower.
CHUNK_ROWS = 2048

Measures = dict[str, np.ndarray]  # measure name -> one value per pool candidate


@dataclass(frozen=True, eq=False)  # array fields: == would be ambiguous
class Selection:
    """What a strategy chose, in the order it chose them."""

    indices: np.ndarray  # int, rows of X_pool, distinct
    scores: np.ndarray  # float, each chosen candidate's score under the part that chose it (NaN: random)
    chosen_by: np.ndarray  # str, the name of that part
    all_scores: dict[str, np.ndarray]  # part name -> its score for every pool candidate (random has none)
    drawn: np.ndarray  # bool, chosen by a random draw among candidates its part ranks equal (a random tie-break)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Unpack as ``(indices, scores)``, the pair a modAL query strategy returns."""
        return iter((self.indices, self.scores))


# --- utility measures: one value per candidate, from its row of class probabilities -----------------------


def confidence(proba: np.ndarray) -> np.ndarray:
    """Probability of the predicted class (1 - confidence is modAL's classifier uncertainty)."""
    return proba.max(axis=1)


def predicted_class(proba: np.ndarray) -> np.ndarray:
    """Column of the predicted class."""
    return proba.argmax(axis=1)


def margin(proba: np.ndarray) -> np.ndarray:
    """Difference between the two most probable classes; small = torn between two classes."""
    if proba.shape[1] == 1:
        return proba[:, 0].copy()
    top_two = np.partition(proba, -2, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of the class probabilities; large = spread over many classes."""
    return special.entr(proba).sum(axis=1)


MEASURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "confidence": confidence,
    "predicted_class": predicted_class,
    "margin": margin,
    "entropy": entropy,
}


def _reduce_rows(X_pool: np.ndarray, reduce: Callable[[np.ndarray], Measures]) -> Measures:
    """Apply ``reduce`` (rows -> per-row arrays) to X_pool a chunk at a time and join the results.

    Chunks are views of X_pool (no copy); only the per-row results are kept.
    """
    n = len(X_pool)
    out: Measures = {}
    for start in range(0, n, CHUNK_ROWS):
        for name, values in reduce(X_pool[start : start + CHUNK_ROWS]).items():
            if name not in out:
                out[name] = np.empty(n, dtype=values.dtype)
            out[name][start : start + len(values)] = values
    return out


def pool_measures(classifier: Any, X_pool: np.ndarray, names: set[str]) -> Measures:
    """The named ``MEASURES`` of every pool candidate, from one chunked pass of ``predict_proba`` (none
    when no measure is named)."""
    if not names:
        return {}

    def measure(rows: np.ndarray) -> Measures:
        proba = classifier.predict_proba(rows)
        return {name: MEASURES[name](proba) for name in names}

    return _reduce_rows(X_pool, measure)


# --- selectors -------------------------------------------------------------------------------------------


class Ranked(NamedTuple):
    """What a selector chose, best first, and which of those it drew at random among equals."""

    indices: np.ndarray  # int
    drawn: np.ndarray  # bool, one per index


#: a key of ``top_k``: a value per candidate, or a function giving the values of the candidates asked for
#: (computed only for candidates still tied, where a whole-pool array would be costly)
Key = np.ndarray | Callable[[np.ndarray], np.ndarray]


def top_k(keys: Key | Sequence[Key], k: int, rng: np.random.Generator, n: int | None = None) -> Ranked:
    """The ``k`` largest of ``n`` candidates by ``keys[0]``, ties broken by ``keys[1]``, ..., best first, in
    O(n) (a partition per key, each on the candidates still tied, not a sort).

    Candidates tied on every key at the cut are drawn at random (seeded): cutting such a block by pool order
    would bias the batch to the start of the pool. ``drawn`` marks them.
    """
    keys = [keys] if isinstance(keys, np.ndarray) or callable(keys) else list(keys)
    n = len(keys[0]) if n is None else n
    k = min(k, n)
    if k == 0:
        return Ranked(np.empty(0, dtype=np.intp), np.empty(0, dtype=bool))

    def values_of(key: Key, rows: np.ndarray) -> np.ndarray:
        return key(rows) if callable(key) else key[rows]

    decided, tied = [], np.arange(n)  # chosen outright; still competing for the slots left
    for key in keys:
        left = k - sum(map(len, decided))
        values = values_of(key, tied)
        cut = np.partition(values, len(values) - left)[len(values) - left]
        decided.append(tied[values > cut])
        tied = tied[values == cut]
        if len(tied) == left - len(decided[-1]):  # the whole tied block fits: nothing to draw
            decided.append(tied)
            tied = tied[:0]
            break
    chosen = np.concatenate(decided).astype(np.intp)
    chosen = chosen[np.lexsort([-values_of(key, chosen) for key in reversed(keys)])]
    drawn = rng.choice(tied, size=k - len(chosen), replace=False).astype(np.intp)
    return Ranked(np.concatenate([chosen, drawn]), np.arange(k) >= len(chosen))


def novelty(classifier: Any, X_pool: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Each pool candidate's distance to the nearest labelled one (NaN features skipped, as scikit-learn's
    ``nan_euclidean_distances``), for the candidates asked for: the last tie-break of every part.

    Candidates a forest scores exactly alike have identical probability rows; among them the one farthest from
    what the learner was taught adds most to it (the diversity term of batch-mode active learning). Zero for
    all when the classifier keeps no labelled data: its ties are then drawn at random.
    """
    labelled = getattr(classifier, "X_training", None)
    if labelled is None or len(labelled) == 0:
        return lambda rows: np.zeros(len(rows))

    def distance(rows: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows))
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = X_pool[rows[start : start + CHUNK_ROWS]]
            out[start : start + len(chunk)] = nan_euclidean_distances(chunk, labelled).min(axis=1)
        return np.nan_to_num(out, nan=0.0)

    return distance


# --- parts: a measure and a selector; strategies are mixes of parts ---------------------------------------
# A pick function gets the pool's measures, how many to choose (1 <= k <= number available), which candidates
# are still available, the random generator and each candidate's novelty (for the last tie-break); it returns
# the chosen candidates (which of them drawn at random among ties) and the part's score for every pool
# candidate (None when it has none).

Picked = tuple[Ranked, np.ndarray | None]
Pick = Callable[[Measures, int, np.ndarray, np.random.Generator, Callable[[np.ndarray], np.ndarray]], Picked]


def _largest_available(keys: Sequence[np.ndarray], k: int, available: np.ndarray, rng: np.random.Generator,
                       novel: Callable[[np.ndarray], np.ndarray]) -> Ranked:
    return top_k([*(np.where(available, key, -np.inf) for key in keys), novel], k, rng)


def _pick_uncertainty(m: Measures, k: int, available: np.ndarray, rng: np.random.Generator, novel: Callable) -> Picked:
    uncertainty = 1.0 - m["confidence"]
    return _largest_available([uncertainty, m["entropy"]], k, available, rng, novel), uncertainty


def _pick_margin(m: Measures, k: int, available: np.ndarray, rng: np.random.Generator, novel: Callable) -> Picked:
    return _largest_available([-m["margin"], m["entropy"]], k, available, rng, novel), m["margin"]


def _pick_entropy(m: Measures, k: int, available: np.ndarray, rng: np.random.Generator, novel: Callable) -> Picked:
    return _largest_available([m["entropy"], -m["margin"]], k, available, rng, novel), m["entropy"]


def _pick_high_probability(m: Measures, k: int, available: np.ndarray, rng: np.random.Generator,
                           novel: Callable) -> Picked:
    """The most confident candidate of each predicted class, then the second of each, ... (within a turn the
    most confident first; ties by lower entropy, then novelty, then at random).

    Round-robin so that a batch confirms the model across its classes, not only on its easiest class.
    """
    conf, low_entropy, predicted = m["confidence"], -m["entropy"], m["predicted_class"]
    pool = np.flatnonzero(available)
    by_class = pool[np.argsort(predicted[pool], kind="stable")]
    groups = np.split(by_class, np.flatnonzero(np.diff(predicted[by_class])) + 1)
    picks, turn_drawn, class_drawn, left = [], [], [], k
    while left:
        best = [top_k([conf[group], low_entropy[group], lambda rows, g=group: novel(g[rows])], 1, rng)
                for group in groups]
        winners = np.array([group[b.indices[0]] for group, b in zip(groups, best)])
        turn = top_k([conf[winners], low_entropy[winners], lambda rows: novel(winners[rows])], left, rng)
        picks.append(winners[turn.indices])
        turn_drawn.append(turn.drawn)
        class_drawn.append(np.array([b.drawn[0] for b in best])[turn.indices])
        left -= len(turn.indices)
        # every winner was picked, or this was the last turn
        groups = [rest for rest in (group[group != winner] for group, winner in zip(groups, winners)) if len(rest)]
    chosen = np.concatenate(picks)
    # a draw inside a class chose nothing if a later turn took the candidates it passed over as well
    left_out = available.copy()
    left_out[chosen] = False
    class_drawn = np.concatenate(class_drawn)
    for i in np.flatnonzero(class_drawn):
        pick = chosen[i]
        equal = np.flatnonzero(left_out & (predicted == predicted[pick]) & (conf == conf[pick])
                               & (low_entropy == low_entropy[pick]))
        class_drawn[i] = bool(np.any(novel(equal) == novel(np.array([pick]))[0]))
    return Ranked(chosen, np.concatenate(turn_drawn) | class_drawn), conf


def _pick_random(m: Measures, k: int, available: np.ndarray, rng: np.random.Generator, novel: Callable) -> Picked:
    return Ranked(rng.choice(np.flatnonzero(available), size=k, replace=False), np.zeros(k, dtype=bool)), None


class Part(NamedTuple):
    """One way of choosing candidates: the measures it needs (its score's and its tie-break's) and how it picks."""

    measures: frozenset[str]  # the MEASURES its pick needs
    pick: Pick


PARTS: dict[str, Part] = {
    "uncertainty": Part(frozenset({"confidence", "entropy"}), _pick_uncertainty),
    "margin": Part(frozenset({"margin", "entropy"}), _pick_margin),
    "entropy": Part(frozenset({"entropy", "margin"}), _pick_entropy),
    "high_probability": Part(frozenset({"confidence", "entropy", "predicted_class"}), _pick_high_probability),
    "random": Part(frozenset(), _pick_random),
}
#: how each part ranks the candidates its own score ties, before drawing at random (the report says so)
TIE_BREAKS = {part: f"{first}, then by the larger distance to the nearest labelled candidate" for part, first in {
    "uncertainty": "the larger entropy", "margin": "the larger entropy", "entropy": "the smaller margin",
    "high_probability": "the smaller entropy"}.items()}


# --- validation ------------------------------------------------------------------------------------------


def check_n_instances(n_instances: int) -> None:
    """Raise unless ``n_instances`` is an integer >= 1."""
    if isinstance(n_instances, bool) or not isinstance(n_instances, (int, np.integer)) or n_instances < 1:
        raise ValueError(f"n_instances must be an integer >= 1, got {n_instances!r}")


def part_counts(fractions: Mapping[str, float], n_instances: int) -> dict[str, int]:
    """How many of ``n_instances`` each part chooses: the fractions rounded by largest remainder, so the
    counts sum to ``n_instances`` exactly. Raises on unknown part names or fractions not summing to 1."""
    check_n_instances(n_instances)
    unknown = sorted(set(fractions) - set(PARTS))
    if not fractions or unknown:
        raise ValueError(f"unknown strategy part(s) {unknown or '(none given)'}; known parts: {sorted(PARTS)}")
    values = {name: float(f) for name, f in fractions.items()}
    if any(not np.isfinite(f) or f < 0 for f in values.values()) or not np.isclose(sum(values.values()), 1.0):
        raise ValueError(f"strategy fractions must be >= 0 and sum to 1, got {dict(values)}")
    exact = {name: f * n_instances for name, f in values.items()}
    counts = {name: int(x) for name, x in exact.items()}
    by_remainder = sorted(exact, key=lambda name: counts[name] - exact[name])  # stable: ties by given order
    for name in by_remainder[: n_instances - sum(counts.values())]:
        counts[name] += 1
    return counts


# --- strategies ------------------------------------------------------------------------------------------


def query_rng(seed: int, classifier: Any, X_pool: np.ndarray) -> np.random.Generator:
    """The random generator of one query, from the seed and the sizes of the pool and of the labelled set.

    Seeded with ``seed`` alone it would draw the same pool positions at every round of a campaign (biased
    wherever the pool order follows the class); the sizes change from round to round, while a re-run of the
    same round (after a crash, say) draws the same batch.
    """
    labelled = getattr(classifier, "X_training", None)
    return np.random.default_rng([seed, len(X_pool), 0 if labelled is None else len(labelled)])


def mixed_sampling(
    classifier: Any, X_pool: np.ndarray, n_instances: int = 1, *, fractions: Mapping[str, float], seed: int = 0
) -> Selection:
    """Each part of ``fractions`` ({part name: fraction}) chooses its share of the batch, in the given order,
    among the candidates not chosen yet; all parts share one pass of ``predict_proba`` over the pool."""
    counts = part_counts(fractions, n_instances)
    measures = pool_measures(classifier, X_pool, set().union(*(PARTS[name].measures for name in counts)))
    rng = query_rng(seed, classifier, X_pool)
    novel = novelty(classifier, X_pool)
    available = np.ones(len(X_pool), dtype=bool)
    indices, scores, chosen_by, all_scores, drawn = [], [], [], {}, []
    for name, count in counts.items():
        k = min(count, int(available.sum()))
        if k == 0:
            continue
        (chosen, part_drawn), part_scores = PARTS[name].pick(measures, k, available, rng, novel)
        available[chosen] = False
        indices.append(chosen)
        scores.append(np.full(k, np.nan) if part_scores is None else part_scores[chosen])
        chosen_by.append(np.full(k, name))
        drawn.append(part_drawn)
        if part_scores is not None:
            all_scores[name] = part_scores
    return _selection(indices, scores, chosen_by, all_scores, drawn)


def _selection(
    indices: list[np.ndarray], scores: list[np.ndarray], chosen_by: list[np.ndarray], all_scores: dict,
    drawn: list[np.ndarray],
) -> Selection:
    return Selection(
        indices=np.concatenate(indices, dtype=np.intp) if indices else np.empty(0, dtype=np.intp),
        scores=np.concatenate(scores, dtype=float) if scores else np.empty(0),
        chosen_by=np.concatenate(chosen_by) if chosen_by else np.empty(0, dtype=str),
        all_scores=all_scores,
        drawn=np.concatenate(drawn, dtype=bool) if drawn else np.empty(0, dtype=bool),
    )


EMPTY = _selection([], [], [], {}, [])  # what every strategy chooses from an empty pool


def uncertainty_sampling(classifier: Any, X_pool: np.ndarray, n_instances: int = 1, *, seed: int = 0) -> Selection:
    """Least confidence: the candidates whose predicted class is least probable (score 1 - max p)."""
    return mixed_sampling(classifier, X_pool, n_instances, fractions={"uncertainty": 1.0}, seed=seed)


def margin_sampling(classifier: Any, X_pool: np.ndarray, n_instances: int = 1, *, seed: int = 0) -> Selection:
    """Smallest margin between the two most probable classes (score = the margin)."""
    return mixed_sampling(classifier, X_pool, n_instances, fractions={"margin": 1.0}, seed=seed)


def entropy_sampling(classifier: Any, X_pool: np.ndarray, n_instances: int = 1, *, seed: int = 0) -> Selection:
    """Largest entropy of the class probabilities (score = the entropy, nats)."""
    return mixed_sampling(classifier, X_pool, n_instances, fractions={"entropy": 1.0}, seed=seed)


def high_probability_sampling(
    classifier: Any, X_pool: np.ndarray, n_instances: int = 1, *, seed: int = 0
) -> Selection:
    """Most confident candidates, round-robin over predicted classes, to confirm the model (score = max p)."""
    return mixed_sampling(classifier, X_pool, n_instances, fractions={"high_probability": 1.0}, seed=seed)


def random_sampling(classifier: Any, X_pool: np.ndarray, n_instances: int = 1, *, seed: int = 0) -> Selection:
    """Uniformly random candidates (seeded): the baseline. No predict_proba; scores are NaN."""
    return mixed_sampling(classifier, X_pool, n_instances, fractions={"random": 1.0}, seed=seed)


def _labelled(classifier: Any, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """The learner's labelled data, which ``strategy`` needs beyond predict_proba."""
    if getattr(classifier, "X_training", None) is None:
        raise TypeError(f"{strategy} needs a modAL ActiveLearner with labelled data, got {type(classifier).__name__}")
    return classifier.X_training, classifier.y_training


def uncertainty_batch_sampling(
    classifier: Any, X_pool: np.ndarray, n_instances: int = 1, *, metric: str = "euclidean"
) -> Selection:
    """Ranked batch-mode uncertainty sampling (Cardoso et al. 2017), the algorithm of modAL's
    ``uncertainty_batch_sampling``: each next candidate maximises
    ``alpha * (1 - 1 / (1 + d)) + (1 - alpha) * uncertainty``, with d its distance to the nearest labelled or
    already chosen candidate and alpha = unlabelled / (unlabelled + labelled), so a batch is uncertain *and*
    spread out.

    Same choices as modAL's, but modAL recomputes the distances to all labelled rows and copies the pool at
    every step; here the nearest distance is computed once and updated with the one new row per step.
    Scores are the uncertainty (1 - max p), as modAL reports.
    """
    check_n_instances(n_instances)
    X_labelled, _ = _labelled(classifier, "batch_uncertainty")
    if len(X_pool) == 0:
        return EMPTY
    uncertainty = 1.0 - pool_measures(classifier, X_pool, {"confidence"})["confidence"]
    n_pool, n_labelled = len(X_pool), len(X_labelled)
    _, distance = pairwise_distances_argmin_min(X_pool, X_labelled, metric=metric)
    available = np.ones(n_pool, dtype=bool)
    chosen = []
    for step in range(min(n_instances, n_pool)):
        alpha = (n_pool - step) / (n_pool + n_labelled)
        score = alpha * (1.0 - 1.0 / (1.0 + distance)) + (1.0 - alpha) * uncertainty
        best = int(np.argmax(np.where(available, score, -np.inf)))
        chosen.append(best)
        available[best] = False
        np.minimum(distance, pairwise_distances(X_pool, X_pool[best : best + 1], metric=metric)[:, 0], out=distance)
    indices = np.array(chosen, dtype=np.intp)
    return _selection(
        [indices], [uncertainty[indices]], [np.full(len(indices), "batch_uncertainty")],
        {"batch_uncertainty": uncertainty}, [np.zeros(len(indices), dtype=bool)],  # argmax of a continuous score
    )


def vote_entropy(probas: np.ndarray) -> np.ndarray:
    """Entropy of the committee's votes (each member votes its predicted class); probas: (member, row, class)."""
    votes = probas.argmax(axis=2)
    shares = (votes[:, :, None] == np.arange(probas.shape[2])).mean(axis=0)
    return special.entr(shares).sum(axis=1)


def kl_divergence(probas: np.ndarray) -> np.ndarray:
    """Mean KL divergence of each member's probabilities from the committee's mean (McCallum & Nigam 1998)."""
    return special.rel_entr(probas, probas.mean(axis=0)).sum(axis=2).mean(axis=0)


DISAGREEMENTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "vote_entropy": vote_entropy,
    "kl_divergence": kl_divergence,
}


def bagged_committee(classifier: Any, n_members: int, rng: np.random.Generator) -> list[Any]:
    """``n_members`` clones of the learner's estimator, each fitted on a stratified bootstrap of its labelled
    data (every member sees every class, so their probability columns line up) with its own random_state."""
    X, y = _labelled(classifier, "committee")
    members = []
    for member_seed in rng.integers(2**31, size=n_members):
        member = clone(classifier.estimator)
        member.set_params(**{p: int(member_seed) for p in member.get_params() if p.split("__")[-1] == "random_state"})
        X_boot, y_boot = resample(X, y, stratify=y, random_state=int(member_seed))
        members.append(member.fit(X_boot, y_boot))
    return members


def committee_sampling(
    classifier: Any,
    X_pool: np.ndarray,
    n_instances: int = 1,
    *,
    n_members: int = 5,
    disagreement: Literal["vote_entropy", "kl_divergence"] = "kl_divergence",
    seed: int = 0,
) -> Selection:
    """Query by committee: the candidates a bagged committee of the learner's estimator disagrees on most.

    The committee is rebuilt from the learner's labelled data at each query (see ``bagged_committee``) rather
    than kept as a modAL ``Committee`` taught alongside the learner: a round rebuilds the learner from the
    campaign's labels, so there is no committee state to carry, and the pool is scored in chunks here.
    Costs ``n_members`` fits and ``n_members`` predict_proba passes. Score = the disagreement.
    """
    check_n_instances(n_instances)
    if disagreement not in DISAGREEMENTS or n_members < 2:
        raise ValueError(
            f"committee needs n_members >= 2 and disagreement in {sorted(DISAGREEMENTS)}, "
            f"got n_members={n_members!r}, disagreement={disagreement!r}"
        )
    rng = query_rng(seed, classifier, X_pool)
    members = bagged_committee(classifier, n_members, rng)
    measure = DISAGREEMENTS[disagreement]
    if len(X_pool) == 0:
        return EMPTY
    scores = _reduce_rows(
        X_pool, lambda rows: {"committee": measure(np.stack([m.predict_proba(rows) for m in members]))}
    )["committee"]
    indices, drawn = top_k([scores, novelty(classifier, X_pool)], n_instances, rng, n=len(X_pool))
    return _selection([indices], [scores[indices]], [np.full(len(indices), "committee")], {"committee": scores},
                      [drawn])
