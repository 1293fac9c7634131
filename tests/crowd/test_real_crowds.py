"""The consensus on real crowds: published votes of real workers with expert labels (../shared/data/crowds).

Each data set's expert-labelled items are split, seeded, into 10 % gold (known answers the consensus may use)
and 90 % held out (the judge). The consensus is ``crowd=gravity_spy``'s, as the entrypoint composes it, with
no learner vote. It must match majority vote (within half a point) at a fixed vote count, with gold and
without, and with Gravity Spy's sequential rule its accepted labels must be right at least the threshold
less 3 points of the time, ending at least as accurate as majority vote's sequential rule. Figures for more
seeds and methods: ``benchmarks/bench_real_crowds.py`` (BENCHMARKS.md, "Consensus on real crowds").
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from glitchrun.crowd.consensus import ACCEPTED, GOLD, Consensus, MajorityVote, sequential_labels
from glitchrun.crowd.datasets import CrowdData, shared_crowds

CROWDS = ["rte", "temp", "AdultContent2", "BarzanMozafari"]
GOLD_SHARE, SEED = 0.1, 0


@cache
def read_crowds(folder: Path) -> dict[str, CrowdData]:
    return {data.name: data for data in shared_crowds(folder)}


@pytest.fixture
def crowds(shared_data: Path) -> dict[str, CrowdData]:
    """The real crowds of ../shared/data/crowds, read once per test process."""
    return read_crowds(shared_data / "crowds")


@cache
def configured() -> Consensus:
    """``crowd=gravity_spy``'s consensus, composed as the entrypoint composes it."""
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        return instantiate(compose("config", overrides=["crowd=gravity_spy"]).crowd).consensus


def consensus() -> Consensus:
    return copy.copy(configured())  # a fresh object: aggregate keeps its fitted state on the object


def accuracy(labels: pd.Series, truth: pd.Series) -> float:
    judged = truth.index.intersection(labels.index)
    return float((labels.loc[judged] == truth.loc[judged]).mean())


def test_the_four_crowds_are_read_with_their_expert_labels(crowds: dict[str, CrowdData]):
    read = crowds
    assert sorted(read) == sorted(CROWDS)
    sizes = {name: (len(data.votes), data.votes["subject_id"].nunique(), len(data.truth)) for name, data in read.items()}
    # AdultContent2: a worker's repeated vote on an item counts once; only 333 gold URLs name a voted item
    assert sizes == {"rte": (8000, 800, 800), "temp": (4620, 462, 462), "AdultContent2": (89799, 11040, 333),
                     "BarzanMozafari": (5000, 1000, 1000)}
    assert not read["AdultContent2"].votes.duplicated(["subject_id", "volunteer"]).any()


@pytest.mark.parametrize("name", CROWDS)
@pytest.mark.parametrize("with_gold", [True, False])
def test_the_consensus_matches_majority_vote_at_a_fixed_vote_count(crowds: dict[str, CrowdData], name: str,
                                                                    with_gold: bool):
    """With 10 % of the items as gold and without any, at 3 votes an item and with every vote (and without
    gold at 2 votes, where majority vote's ties fall to the first class), the held-out items' labels are at
    least as often right as majority vote's, within half a point."""
    data = crowds[name]
    gold, held_out = data.split_gold(GOLD_SHARE, SEED)
    for per_item in [3, 10**6] if with_gold else [2, 3, 10**6]:
        votes = data.first_votes(per_item)
        majority = MajorityVote().posterior(votes, data.classes).idxmax(axis=1)
        method = consensus()
        result = method.aggregate(votes, data.classes, gold=gold if with_gold else None)
        mine, theirs = accuracy(result["consensus_label"], held_out), accuracy(majority, held_out)
        assert mine >= theirs - 0.005, (name, per_item, with_gold, mine, theirs)
        if with_gold:
            assert (result.loc[result.index.intersection(gold.index), "status"] == GOLD).all()


@pytest.mark.parametrize("name", CROWDS)
def test_the_sequential_rule_keeps_its_promise_on_real_people(crowds: dict[str, CrowdData], name: str):
    """Gravity Spy's rule (votes one at a time, accepted at the threshold) with 10 % gold: the labels accepted
    on held-out items are right at least (threshold - 0.03) of the time, where uncalibrated they were right
    58-87 % on such crowds; every item's final label is at least as often right as with majority vote's
    sequential rule at the same threshold (votes per labelled item are benchmarks/bench_real_crowds.py's)."""
    data = crowds[name]
    gold, held_out = data.split_gold(GOLD_SHARE, SEED)
    max_votes = int(data.votes.groupby("subject_id").size().max())
    method = consensus()
    mine = sequential_labels(method, data.votes, data.classes, max_votes=min(max_votes, 10), gold=gold)
    theirs = sequential_labels(MajorityVote(min_votes=method.min_votes, agreement=method.agreement), data.votes,
                               data.classes, max_votes=min(max_votes, 10))
    mine, theirs = mine.drop(gold.index), theirs.drop(gold.index)
    accepted = mine[mine["status"] == ACCEPTED]
    judged_accepted = accepted.index.intersection(held_out.index)
    assert len(judged_accepted) >= 10, "the calibrated rule accepted (almost) nothing"
    assert accuracy(accepted["consensus_label"], held_out) >= method.agreement - 0.03
    assert accuracy(mine["consensus_label"], held_out) >= accuracy(theirs["consensus_label"], held_out)


def test_gold_measures_each_volunteer_and_is_never_a_label_to_infer(crowds: dict[str, CrowdData]):
    """The volunteers' record counts their gold answers and how many were right; a gold item keeps its known
    class whatever its votes say."""
    data = crowds["rte"]
    gold, _ = data.split_gold(GOLD_SHARE, SEED)
    method = consensus()
    result = method.aggregate(data.votes, data.classes, gold=gold)
    skill = method.volunteer_skill_
    on_gold = data.votes[data.votes["subject_id"].isin(gold.index)]
    right = on_gold["label"].to_numpy() == gold.reindex(on_gold["subject_id"]).to_numpy()
    expected = pd.DataFrame({"volunteer": on_gold["volunteer"], "right": right}).groupby("volunteer")["right"]
    assert skill["gold_answers"].reindex(expected.size().index).tolist() == expected.size().tolist()
    assert skill["gold_right"].reindex(expected.sum().index).tolist() == expected.sum().tolist()
    assert skill["votes"].sum() == len(data.votes)
    assert (result.loc[gold.index, "consensus_label"] == gold).all()
    assert method.calibrated_ and 0.5 < method.cutoff_ < 1.0
