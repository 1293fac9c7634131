"""The campaign loop's retirement: a fixed number of votes against glitchrun's consensus retirement.

    python benchmarks/bench_loop.py                 # both parts, as in BENCHMARKS.md
    python benchmarks/bench_loop.py --part votes --subjects 500
    python benchmarks/bench_loop.py --part server
    python benchmarks/bench_loop.py --part votes --override crowd.volunteers.difficulty=0   # any crowd override

votes (offline, the rule the loop runs): ``data=synthetic`` candidates (Gravity Spy v1.0 class priors); the
learner of conf/learner/random_forest.yaml fitted on ``labelled`` of them predicts the class distribution
of ``subjects`` others, its machine-learning vote, weighted by the ``ml_weight`` fitted on its out-of-fold
probabilities (``retire.fitted_ml_weight``, as a round does). The volunteers of conf/crowd/gravity_spy.yaml and
uneven.yaml vote (``SimulatedCrowd``, each subject's volunteers in its fixed order, seeing each subject's
features as the loop's crowd job does, so ambiguous glitches are harder), and the crowd's own consensus
method (conf/crowd/*.yaml) aggregates, with that distribution as the prior:

- fixed k: every subject gets k votes and retires (Zooniverse's classification_count retirement); a subject
  whose consensus is not accepted leaves the pool without a label (lost);
- consensus: sweeps of one vote per active subject, each followed by ``glitchrun.campaign.retire.decide``
  (the retire pass's rule): retired as labelled once accepted, as disputed at ``max_votes``.

Per rule: votes per labelled subject (all votes spent / labelled subjects), the share of subjects labelled,
disputed and lost, and the accuracy of the labels against the truth.

server: on the embedded Panoptes under the real rules (project not live, real export limit), init_project,
round 1, the simulated crowd; then the time from the crowd's last vote to round 2's verified upload, and the
export requests the client sent (none: the round reads classifications through the API).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import requests
from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from glitchrun.campaign.ingest import prior_frame
from glitchrun.campaign.retire import apply_ml_weight, decide, fitted_ml_weight, unanimity
from glitchrun.campaign.state import ACTIVE, DISPUTED, LABELLED
from glitchrun.cli import run
from glitchrun.crowd.consensus import ACCEPTED
from glitchrun.data.synthetic import LOG_FEATURES
from glitchrun.learning.learner import make_learner

CROWDS = ("gravity_spy", "gravity_spy_strict", "uneven")


def config(*overrides: str) -> Any:
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        return compose("config", overrides=list(overrides))


@dataclass
class Subjects:
    """The queried subjects as a round hands them to the crowd and the retire pass."""

    truth: pd.Series  # subject id -> true class
    features: pd.DataFrame  # subject id -> LOG_FEATURES (what the difficulty-aware crowd sees)
    prior: pd.DataFrame  # the learner's whole class distribution per subject (its ML vote)
    ml_weight: float | None  # fitted on the labelled pool's out-of-fold probabilities, as a round does
    classes: list[str]


def learner_votes(n_labelled: int, n_subjects: int, seed: int) -> Subjects:
    """The learner fitted on ``n_labelled`` candidates votes on ``n_subjects`` others, with its ``ml_weight``
    fitted as ``al_round`` does (``glitchrun.campaign.retire.fitted_ml_weight``)."""
    cfg = config(f"data.n={n_labelled + n_subjects}", f"seed={seed}")
    candidates = instantiate(cfg.data).load()
    classes = list(cfg.campaign.workflow.classes)
    truth = candidates.frame["truth"].astype(str)
    ids = truth.sample(frac=1.0, random_state=seed).index
    known, subjects = ids[:n_labelled], ids[n_labelled:]
    estimator = instantiate(cfg.learner)
    X, y = candidates.features(known), truth[known].to_numpy(dtype=object)
    learner = make_learner(estimator, X, y)
    proba = learner.predict_proba(candidates.features(subjects))
    names = list(map(str, learner.estimator.classes_))
    distributions = {s: dict(zip(names, map(float, row))) for s, row in zip(subjects, proba)}
    features = candidates.frame.loc[subjects, list(LOG_FEATURES)]
    return Subjects(truth[subjects], features, prior_frame(distributions, classes),
                    fitted_ml_weight(estimator, X, y, classes, seed), classes)


def scores(name: str, crowd: str, votes: int, labels: pd.Series, disputed: int, truth: pd.Series) -> dict[str, Any]:
    n = len(truth)
    return {"crowd": crowd, "rule": name, "votes per labelled": votes / len(labels) if len(labels) else float("nan"),
            "labelled": len(labels) / n, "disputed": disputed / n, "lost": (n - len(labels) - disputed) / n,
            "accuracy": float((labels == truth[labels.index]).mean()) if len(labels) else float("nan")}


def fixed(crowd: Any, queried: Subjects, k: int, name: str) -> dict[str, Any]:
    truth, classes = queried.truth, queried.classes
    votes = crowd.volunteers.votes(truth, classes, k, queried.features)
    decided = crowd.consensus.aggregate(votes, classes, queried.prior)
    accepted = decided[decided["status"] == ACCEPTED]["consensus_label"]
    return scores(f"fixed {k}", name, len(votes), accepted, 0, truth)


def sequential(crowd: Any, queried: Subjects, max_votes: int, name: str, min_chance: float = 0.0,
               strong: float | None = None) -> dict[str, Any]:
    """Sweeps of one more vote per active subject, each followed by the retire pass's ``decide`` (with the
    campaign's ``min_next_vote_chance`` and ``strong_disagreement``: votes that all agree wait for more votes
    unless the learner strongly disagrees, and are never labelled against; ``strong`` None: the rule before issue
    #21, which disputed them early like any other subject and let the learner's vote outweigh them all)."""
    volunteers, truth, classes = crowd.volunteers, queried.truth, queried.classes
    features = dict(zip(truth.index, queried.features.to_dict("records")))
    subjects = pd.DataFrame({"status": ACTIVE}, index=truth.index.astype(str))
    rows: list[tuple[str, str, str]] = []
    for sweep in range(max_votes):
        for subject in subjects.index[subjects["status"] == ACTIVE]:
            volunteer = volunteers.order(subject)[sweep]
            answer = volunteers.answer(volunteer, subject, truth[subject], classes, features[subject])
            rows.append((subject, volunteers.logins[volunteer], classes[answer]))
        votes = pd.DataFrame(rows, columns=["subject_id", "volunteer", "label"])
        decided = crowd.consensus.aggregate(votes, classes, queried.prior)
        agreed, support = unanimity(votes, queried.prior) if strong is not None else (None, None)
        after = decide(subjects, decided, max_votes, None, crowd.consensus.next_vote_chance_, min_chance, None,
                       agreed, support, strong or 0.0)
        subjects = after[["status"]]
        if not (subjects["status"] == ACTIVE).any():
            break
    labels = after.loc[after["status"] == LABELLED, "label"].astype(str)
    rule = (f"consensus, cap {max_votes}" + (f", next-vote chance {min_chance:g}" if min_chance else "")
            + ("" if strong is not None else ", before #21 (unanimous votes disputable early, labelled against them)"))
    return scores(rule, name, len(rows), labels, int((after["status"] == DISPUTED).sum()), truth)


def votes_part(n_subjects: int, n_labelled: int, seed: int, max_votes: list[int], crowds: list[str],
               fixed_max: int = 8, overrides: tuple[str, ...] = ()) -> pd.DataFrame:
    queried = learner_votes(n_labelled, n_subjects, seed)
    print(f"fitted ml_weight {queried.ml_weight:.2f}", flush=True)
    rows = []
    for name in crowds:
        cfg = config(f"crowd={name}", f"seed={seed}", *overrides)
        crowd = instantiate(cfg.crowd)
        min_chance = float(cfg.campaign.retirement.min_next_vote_chance)
        strong = float(cfg.campaign.retirement.strong_disagreement)
        apply_ml_weight(crowd.consensus, queried.ml_weight)
        if len(crowd.volunteers.logins) < max(fixed_max, *max_votes):
            raise ValueError(f"crowd {name} has too few volunteers for {max(fixed_max, *max_votes)} votes per subject")
        for k in range(1, fixed_max + 1):
            rows.append(fixed(crowd, queried, k, name))
        for cap in max_votes:
            rows.append(sequential(crowd, queried, cap, name, min_chance, strong))
            if min_chance:  # the rule before unanimous votes were exempt from early dispute (issue #21), same run
                rows.append(sequential(crowd, queried, cap, name, min_chance))
        print(f"{name}: done", flush=True)
    return pd.DataFrame(rows)


def server_part() -> dict[str, Any]:
    """Round 2's delay after the last vote on the embedded server under the real rules, and export requests."""
    calls: list[tuple[str, str]] = []
    original = requests.Session.request

    def counted(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        calls.append((method.upper(), urlparse(url).path))
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = counted
    small = ["data.n=2000", "al.batch_size=20", "images.n_jobs=1", "images.progress=false",
             "al.subject_set_name='b-{round}'"]
    with tempfile.TemporaryDirectory() as tmp:
        def job(name: str, *overrides: str) -> Any:
            return run(config(f"paths.outputs={tmp}", f"paths.run_dir={tmp}/{name}-{len(calls)}", f"job={name}",
                              *small, *overrides))

        job("init_project")
        job("al_round")
        made = job("crowd", "job.progress=false")
        start = time.perf_counter()
        result = job("al_round")
        elapsed = time.perf_counter() - start
    requests.Session.request = original
    exports = [c for c in calls if c[1].endswith("_export")]
    return {"round 2": result.status, "crowd votes": len(made), "seconds from last vote to round 2 uploaded": elapsed,
            "export requests": len(exports)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["votes", "server", "both"], default="both")
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--labelled", type=int, default=2000)
    parser.add_argument("--max-votes", type=int, nargs="+", default=[6, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="the table is the mean over these seeds")
    parser.add_argument("--crowds", nargs="+", choices=CROWDS, default=list(CROWDS))
    parser.add_argument("--fixed-max", type=int, default=8, help="fixed counts from 1 to this many votes")
    parser.add_argument("--override", nargs="+", default=[], metavar="KEY=VALUE",
                        help="Hydra overrides of the crowds' config, e.g. crowd.consensus.agreement=0.99")
    args = parser.parse_args()
    pd.set_option("display.width", 160)
    if args.part in ("votes", "both"):
        start = time.perf_counter()
        table = pd.concat([votes_part(args.subjects, args.labelled, seed, args.max_votes, args.crowds,
                                      args.fixed_max, tuple(args.override)) for seed in args.seeds])
        table = table.groupby(["crowd", "rule"], sort=False).mean().reset_index()
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        print(f"({time.perf_counter() - start:.0f} s)")
    if args.part in ("server", "both"):
        for key, value in server_part().items():
            print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
