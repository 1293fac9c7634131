"""Labels each query strategy needs to reach 95 % of the full-pool macro-F1, against random sampling.

    python benchmarks/bench_strategies.py                       # both parts, as in BENCHMARKS.md
    python benchmarks/bench_strategies.py --part synthetic --seeds 0
    python benchmarks/bench_strategies.py --part o3a --o3a-seeds 2
    python benchmarks/bench_strategies.py --part synthetic --crowd gravity_spy --n 10000 --seeds 0 1
    python benchmarks/bench_strategies.py --sweep /tmp/sweep    # a `glitchrun -m job=simulate` sweep's curves

``--sweep DIR`` reports a ``job=simulate`` multirun instead of running anything: the full loop through the
embedded Panoptes with the configured crowd and consensus retirement, whose learning curves count the
votes spent; the table gives labels (subjects labelled) and votes to the target, per ``strategy`` choice.

``--crowd NAME`` labels queried candidates by the votes of that conf/crowd/ option's simulated volunteers
(difficulty-aware: they see each candidate's features) combined by its consensus, a fixed ``--votes`` votes
a subject (3), instead of the truth; a subject without an accepted consensus costs its votes and teaches
nothing (consensus retirement, which spends votes where volunteers disagree, is ``job=simulate``'s). The
report then gives the votes to the target beside the labels (subjects).

To be fast it runs the learner and the strategies directly (``glitchrun.learning.learner``: the modAL learner of
conf/learner/random_forest.yaml, the strategies of conf/strategy/), with the truth as the labels, instead
of the full loop through the embedded Panoptes and a simulated crowd (``job=simulate``, which runs the
same learner and strategies, with crowd labels). Per run: a held-out test split; the learner starts from
``seed_per_class`` labels per class, queries ``batch`` candidates at a time and is scored on the test split
after each batch, until it reaches ``target`` x the macro-F1 of the same estimator trained on the whole
pool (or the pool runs out). Curves are summarised and drawn by ``glitchrun.jobs.compare``.

- synthetic: ``data=synthetic`` (Gravity Spy v1.0 class priors, 22 classes), 25,000 candidates: a
  stratified 20 % test split and a pool of 20,000; batches of 100 from 2 labels per class; one run per seed.
- o3a: the 170 labelled O3a Hanford rows of the shared data (17 classes, 10 each) through
  ``data=gravityspy``; stratified 5-fold cross-validation (test = 1 fold, pool = the other 136 rows),
  batches of 5 from 1 label per class; runs = folds x seeds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import DictConfig
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from glitchrun.data.loaders import O3_ADDED_CLASSES
from glitchrun.data.synthetic import GRAVITY_SPY_CLASSES, LOG_FEATURES
from glitchrun.jobs.compare import gather, plot_bands, summarise
from glitchrun.jobs.simulate import held_out, held_out_scores, with_truth
from glitchrun.learning.learner import make_learner, query, teach

REPO = Path(__file__).resolve().parents[1]
O3A = REPO.parent / "shared" / "data" / "gravityspy_o3a_h1_sample.csv"
O3_CLASSES = [*GRAVITY_SPY_CLASSES, *O3_ADDED_CLASSES]
STRATEGIES = ["uncertainty", "margin", "entropy", "mixed", "random"]


def config(strategy: str, seed: int, *overrides: str) -> DictConfig:
    """The composed config of ``glitchrun strategy=<strategy> seed=<seed> <overrides>``."""
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        return compose("config", overrides=[f"strategy={strategy}", f"seed={seed}", *overrides])


class CrowdLabels:
    """Labels of queried candidates from a simulated crowd's votes and its consensus (``--crowd``)."""

    def __init__(self, crowd: Any, classes: list[str], per_subject: int, features: pd.DataFrame) -> None:
        self.crowd = crowd
        self.classes = classes
        self.per_subject = per_subject
        self.features = features  # indexed by candidate id, the generator's LOG_FEATURES

    def __call__(self, ids: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, int]:
        """The accepted consensus label per candidate (None where there is none) and the votes cast."""
        cast = self.crowd.volunteers.votes(pd.Series(truth, index=ids), self.classes, self.per_subject,
                                           features=self.features)
        consensus = self.crowd.consensus.aggregate(cast, self.classes)
        accepted = consensus["consensus_label"].where(consensus["status"] == "accepted")
        return accepted.reindex(ids.astype(str)).to_numpy(dtype=object), len(cast)


def seed_rows(y_pool: np.ndarray, seed_per_class: int, seed: int) -> np.ndarray:
    """The rows a run starts with labelled: ``seed_per_class`` of each class (all of a smaller one), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    per_class = [np.flatnonzero(y_pool == c) for c in np.unique(y_pool)]
    return np.concatenate([rng.choice(rows, min(seed_per_class, len(rows)), replace=False) for rows in per_class])


def curve(estimator: Any, strategy: Callable, X_pool: np.ndarray, y_pool: np.ndarray, X_test: np.ndarray,
          y_test: np.ndarray, seed_per_class: int, batch: int, target: float, seed: int,
          crowd: CrowdLabels | None = None, ids: np.ndarray | None = None, full: float | None = None,
          to_end: bool = False, max_labels: int | None = None) -> pd.DataFrame:
    """One active-learning run: (round, labels, votes, label_accuracy, macro_f1, accuracy, full_pool_macro_f1)
    after every batch, until the target (``to_end``: until the pool is used up; ``max_labels``: at the latest
    there); ``crowd`` labels the queried candidates (``ids``) instead of the truth. ``full``: the full-pool
    macro-F1 to aim at (default: the estimator's own, fitted on the whole pool)."""
    if full is None:
        full = held_out_scores(y_test, clone(estimator).fit(X_pool, y_pool).predict(X_test))[0]
    labelled = seed_rows(y_pool, seed_per_class, seed)
    pool = np.setdiff1d(np.arange(len(y_pool)), labelled)
    learner = make_learner(estimator, X_pool[labelled], y_pool[labelled])
    rows, votes, taught, right = [], 0, 0, 0
    for number in range(len(y_pool)):
        macro_f1, accuracy = held_out_scores(y_test, learner.predict(X_test))
        used = len(y_pool) - len(pool)
        rows.append((number, used, votes, right / taught if taught else 1.0, macro_f1, accuracy, full))
        if (macro_f1 >= target * full and not to_end) or not len(pool) or used >= (max_labels or len(y_pool)):
            break
        chosen = pool[query(learner, strategy, X_pool[pool], batch).indices]
        labels = y_pool[chosen]
        if crowd is not None:
            labels, cast = crowd(ids[chosen], y_pool[chosen])
            votes += cast
            keep = pd.notna(labels)
            right += int((labels[keep] == y_pool[chosen][keep]).sum())
            taught += int(keep.sum())
            if keep.any():
                teach(learner, X_pool[chosen[keep]], labels[keep])
        else:
            teach(learner, X_pool[chosen], labels)
        pool = np.setdiff1d(pool, chosen)
    return pd.DataFrame(rows, columns=["round", "labels", "votes", "label_accuracy", "macro_f1", "accuracy",
                                       "full_pool_macro_f1"])


def synthetic(seeds: list[int], strategies: list[str], n: int, batch: int, target: float,
              crowd_name: str | None = None, votes: int = 3) -> pd.DataFrame:
    curves = []
    for seed in seeds:
        cfg = config("random", seed, f"data.n={n}", "learner.n_jobs=2", *([f"crowd={crowd_name}"] if crowd_name else []))
        candidates = with_truth(instantiate(cfg.data).load())
        test = held_out(candidates.frame["truth"], 0.2, seed)
        pool = candidates.frame.index.difference(test)
        X_pool, y_pool = candidates.features(pool), candidates.frame.loc[pool, "truth"].to_numpy(dtype=object)
        X_test, y_test = candidates.features(test), candidates.frame.loc[test, "truth"].to_numpy(dtype=object)
        crowd = None if crowd_name is None else CrowdLabels(
            instantiate(cfg.crowd), list(candidates.classes), votes,
            candidates.frame[list(LOG_FEATURES)])
        for name in strategies:
            cfg = config(name, seed, f"data.n={n}", "learner.n_jobs=2")
            start = time.perf_counter()
            run = curve(instantiate(cfg.learner), instantiate(cfg.strategy), X_pool, y_pool, X_test, y_test,
                        int(cfg.al.seed_per_class), batch, target, seed, crowd, pool.to_numpy(dtype=object))
            seconds = time.perf_counter() - start
            print(f"synthetic seed {seed} {name}: {run['labels'].iloc[-1]} labels, {run['votes'].iloc[-1]} votes, "
                  f"label accuracy {run['label_accuracy'].iloc[-1]:.3f}, macro-F1 "
                  f"{run['macro_f1'].iloc[-1]:.3f} of {run['full_pool_macro_f1'].iloc[0]:.3f} ({seconds:.0f} s)",
                  flush=True)
            curves.append(run.assign(group=name, run=f"seed{seed}"))
    return pd.concat(curves, ignore_index=True)


def o3a(seeds: list[int], strategies: list[str], batch: int, target: float, folds: int = 5) -> pd.DataFrame:
    curves = []
    for seed in seeds:
        cfg = config("random", seed, "data=gravityspy", f"data.path={O3A}", f"data.classes=[{','.join(O3_CLASSES)}]")
        candidates = with_truth(instantiate(cfg.data).load())
        # the file is sorted by label; shuffled, so that a pool position says nothing about the class (the
        # random strategy draws the same positions at every query of a run: see BENCHMARKS.md)
        order = np.random.default_rng(seed).permutation(len(candidates.frame))
        X, y = candidates.features()[order], candidates.frame["truth"].to_numpy(dtype=object)[order]
        chosen = {name: instantiate(config(name, seed).strategy) for name in strategies}
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y)
        for fold, (pool, test) in enumerate(splits):
            for name, strategy in chosen.items():
                run = curve(instantiate(cfg.learner), strategy, X[pool], y[pool], X[test], y[test], 1, batch, target,
                            seed)
                curves.append(run.assign(group=name, run=f"seed{seed}-fold{fold}"))
        print(f"o3a seed {seed}: {folds} folds done", flush=True)
    return pd.concat(curves, ignore_index=True)


def vs_random(row: Any) -> str:
    """A summary row's ratio to random as compare states it: exact, a bound, or none (both lower bounds)."""
    if row.vs_baseline_is == "none":
        return "n/a (neither reached)"
    bound = {"exact": "", "at least": "≥ ", "at most": "≤ "}[row.vs_baseline_is]
    return f"{bound}{100 * row.vs_baseline:.0f} %"


def report(curves: pd.DataFrame, title: str, target: float) -> None:
    """The summary as the Markdown table of BENCHMARKS.md (with votes when a crowd labelled)."""
    summary = summarise(curves, target, "random")
    crowd = bool(curves["votes"].max())
    votes = summarise(curves.assign(labels=curves["votes"]), target, "random").set_index("group") if crowd else None
    print(f"\n{title}\n")
    print("| strategy | runs reaching the target | labels to target (mean ± sd) | vs random |"
          + (" votes to target | vs random | label accuracy |" if crowd else ""))
    print("|---|---:|---:|---:|" + ("---:|---:|---:|" if crowd else ""))
    for row in summary.sort_values("labels_to_target").itertuples():
        bound = "" if row.reached == row.runs else "≥ "  # unreached runs count with every label they used
        line = (f"| {row.group} | {row.reached}/{row.runs} | {bound}{row.labels_to_target:,.0f} "
                f"± {row.labels_to_target_sd:,.0f} | {vs_random(row)} |")
        if votes is not None:
            quality = curves[curves["group"] == row.group].groupby("run")["label_accuracy"].last().mean()
            by_votes = votes.loc[row.group]
            line += (f" {bound}{by_votes['labels_to_target']:,.0f} | "
                     f"{vs_random(by_votes)} | {quality:.3f} |")
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["synthetic", "o3a", "both"], default="both")
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="synthetic: one run per seed")
    parser.add_argument("--n", type=int, default=25_000, help="synthetic candidates (20 %% held out)")
    parser.add_argument("--batch", type=int, default=100, help="synthetic batch size")
    parser.add_argument("--o3a-seeds", type=int, default=6, help="o3a: seeds, each a 5-fold cross-validation")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--crowd", help="synthetic: label by this conf/crowd/ option's votes (e.g. gravity_spy)")
    parser.add_argument("--votes", type=int, default=3, help="--crowd: votes each queried subject gets")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "strategy_comparison.png")
    parser.add_argument("--sweep", type=Path, help="report this job=simulate sweep directory instead of running")
    args = parser.parse_args()
    if args.sweep:
        curves = gather(args.sweep, "strategy")
        report(curves, f"job=simulate sweep {args.sweep}: {curves['run'].nunique()} runs", args.target)
        return
    panels = {}
    if args.part in ("synthetic", "both"):
        panels["synthetic"] = synthetic(args.seeds, args.strategies, args.n, args.batch, args.target, args.crowd,
                                        args.votes)
        report(panels["synthetic"], f"Synthetic pool of {int(args.n * 0.8):,} (22 classes), {len(args.seeds)} seeds",
               args.target)
    if args.part in ("o3a", "both"):
        panels["o3a"] = o3a(list(range(args.o3a_seeds)), args.strategies, 5, args.target)
        report(panels["o3a"], f"170 real O3a rows, 5-fold CV x {args.o3a_seeds} seeds", args.target)
    for name, curves in panels.items():
        path = args.plot.with_name(f"{args.plot.stem}_{name}{'_' + args.crowd if args.crowd else ''}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_bands(curves, path, args.target, f"{name}: macro-F1 vs labels (mean ± sd over runs)")
        print(f"plot: {path}")


if __name__ == "__main__":
    main()
