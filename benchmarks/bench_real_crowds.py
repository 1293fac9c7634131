"""The consensus methods on real crowds: published votes of real workers with expert labels.

    python benchmarks/bench_real_crowds.py                        # as in BENCHMARKS.md (4 crowds, 3 gold seeds)
    python benchmarks/bench_real_crowds.py --crowds rte temp --seeds 0

The crowds are those of ``../shared/data/crowds`` (textual entailment and temporal ordering, Snow et al. 2008;
AdultContent2 and BarzanMozafari, Get-Another-Label): real people, not glitchrun's simulator. With gold, a
seeded 10 % of each crowd's expert-labelled items are known answers and the other 90 % judge; without, every
expert-labelled item judges. No learner votes. Methods: majority vote, and the consensus of each shipped
``crowd=`` option (composed as the entrypoint composes it), plus the ``crowd=gravity_spy`` consensus as it
was before this wave (class prior estimated by EM, ``prior_votes`` 10, never calibrated) for reference.

Per crowd, method and gold: accuracy with each item's first 3 votes and with all of them, and Gravity Spy's
sequential rule (votes one at a time, up to 10, until the label is accepted at the method's threshold):
votes per labelled item, share of items accepted, accuracy of the accepted labels, and accuracy of every
item's final label (the accepted one, or the consensus at its last vote), all over the judged items (every
vote of every item counts in the fits). Means over the gold seeds.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from glitchrun.crowd.consensus import ACCEPTED, Consensus, GravitySpyConsensus, MajorityVote, sequential_labels
from glitchrun.crowd.datasets import CrowdData, shared_crowds

CROWDS = Path(__file__).resolve().parents[2] / "shared" / "data" / "crowds"
OPTIONS = ["gravity_spy", "gravity_spy_strict", "uneven"]
MAX_VOTES = 10


def methods() -> dict[str, Consensus]:
    """name -> a fresh consensus: majority vote at Gravity Spy's threshold, each crowd option's, and the old default."""
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        shipped = {f"crowd={name}": instantiate(compose("config", overrides=[f"crowd={name}"]).crowd).consensus
                   for name in OPTIONS}
    before = GravitySpyConsensus(min_votes=2, agreement=0.9, prior_votes=10.0, class_prior="estimated",
                                 min_gold=10**9)
    return {"majority vote": MajorityVote(min_votes=2, agreement=0.9), **shipped, "gravity_spy before": before}


def accuracy(labels: pd.Series, truth: pd.Series) -> float:
    judged = truth.index.intersection(labels.index)
    return float((labels.loc[judged] == truth.loc[judged]).mean()) if len(judged) else float("nan")


def measure(data: CrowdData, method: Consensus, gold: pd.Series | None, judge: pd.Series) -> dict[str, float]:
    """Fixed-count accuracies and the sequential rule's figures of one method on one crowd."""
    row = {}
    for per_item, column in ((3, "acc@3"), (10**6, "acc@all")):
        result = method.aggregate(data.first_votes(per_item), data.classes, gold=gold)
        row[column] = accuracy(result["consensus_label"], judge)
    result = sequential_labels(method, data.votes, data.classes, max_votes=MAX_VOTES, gold=gold)
    result = result.loc[result.index.intersection(judge.index)]  # AdultContent2: most items have no expert label
    accepted = result["status"] == ACCEPTED
    row |= {"votes/item": float(result["votes"].mean()), "accepted": float(accepted.mean()),
            "acc accepted": accuracy(result.loc[accepted, "consensus_label"], judge),
            "acc overall": accuracy(result["consensus_label"], judge)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crowds", nargs="*", help="names of crowds to run (default: all four)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="seeds of the 10 %% gold split")
    parser.add_argument("--gold", type=float, default=0.1, help="share of expert-labelled items used as gold")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    rows = []
    for data in shared_crowds(CROWDS):
        if args.crowds and data.name not in args.crowds:
            continue
        for name, method in methods().items():
            start = time.time()
            rows.append({"crowd": data.name, "method": name, "gold": "none",
                         **measure(data, method, None, data.truth)})
            seeded = []
            for seed in args.seeds:
                gold, held_out = data.split_gold(args.gold, seed)
                seeded.append(measure(data, method, gold, held_out))
            rows.append({"crowd": data.name, "method": name, "gold": f"{args.gold:.0%}",
                         **pd.DataFrame(seeded).mean().to_dict()})
            print(f"# {data.name}: {name} done in {time.time() - start:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    # every vote an item took, per accepted label (of the seeds' means: a seed that accepts almost nothing
    # must not swamp the others)
    table.insert(5, "votes/label", table["votes/item"] / table["accepted"])
    print(table.to_markdown(index=False, floatfmt=".3f"))
    print()
    mine, majority = table[table["method"] == "crowd=gravity_spy"], table[table["method"] == "majority vote"]
    joined = mine.merge(majority, on=["crowd", "gold"], suffixes=("", " (majority)"))
    print("crowd=gravity_spy minus majority vote, in points:")
    for column in ("acc@3", "acc@all", "acc overall"):
        difference = 100 * (joined[column] - joined[f"{column} (majority)"])
        print(f"  {column}: min {difference.min():+.1f}, mean {difference.mean():+.1f}")
    calibrated = mine[mine["gold"] != "none"]
    print(f"  accepted labels right (with gold): min {calibrated['acc accepted'].min():.3f} at threshold 0.9; "
          f"votes per label {np.round(calibrated['votes/label'].to_numpy(), 2).tolist()} against majority's "
          f"{np.round(majority[majority['gold'] != 'none']['votes/label'].to_numpy(), 2).tolist()}")


if __name__ == "__main__":
    main()
