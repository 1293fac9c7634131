"""Query time and memory of every strategy config against the bare ``predict_proba`` of the same estimator.

    python benchmarks/bench_query.py                      # pools of 10^4, 10^5, 10^6 candidates
    python benchmarks/bench_query.py --sizes 10000 --strategies mixed random

The learner is conf/learner/random_forest.yaml (100 trees) fitted on --labels labelled candidates of
--classes Gaussian classes with --features float64 features; each query asks for --batch candidates through
``glitchrun.learning.learner.query`` (the strategy plus the probabilities of the chosen rows, as the round does).

Time: the minimum over --repeats runs, each query run next to a bare ``estimator.predict_proba(X_pool)`` run so
that both see the same machine load; CPU time of the process (the forest predicts in one thread) is the
measure, being steadier than wall time on a shared machine; the wall-time ratio is printed too. Memory: a separate run under tracemalloc (numpy reports its array
allocations to it), peak allocated during the call minus what was allocated before, over the size of X_pool.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

from glitchrun.learning.learner import make_learner, query

CONF = Path(__file__).resolve().parents[1] / "conf"


def load(group: str, name: str, seed: int):
    return instantiate(OmegaConf.merge({"seed": seed}, {"node": OmegaConf.load(CONF / group / f"{name}.yaml")}).node)


def gaussian_classes(n: int, centres: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, len(centres), size=n)
    return centres[y] + rng.normal(size=(n, centres.shape[1])), y.astype(str)


def seconds(call: Callable[[], object]) -> tuple[float, float]:
    """CPU and wall seconds of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    call()
    return time.process_time() - cpu, time.perf_counter() - wall


def peak_bytes(call: Callable[[], object]) -> int:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**5, 10**6])
    parser.add_argument("--strategies", nargs="+", default=sorted(p.stem for p in (CONF / "strategy").glob("*.yaml")))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--labels", type=int, default=400)
    parser.add_argument("--classes", type=int, default=22)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    centres = rng.normal(scale=2.0, size=(args.classes, args.features))
    estimator = load("learner", "random_forest", args.seed)
    learner = make_learner(estimator, *gaussian_classes(args.labels, centres, rng))
    strategies = {name: load("strategy", name, args.seed) for name in args.strategies}
    print(f"learner: {type(estimator).__name__}({estimator.n_estimators} trees) on {args.labels} labels, "
          f"{args.classes} classes, {args.features} float64 features; batch {args.batch}; "
          f"time = min of {args.repeats} (CPU s); memory = tracemalloc peak")

    for size in args.sizes:
        X_pool, _ = gaussian_classes(size, centres, rng)
        bare = lambda: learner.estimator.predict_proba(X_pool)  # noqa: E731
        bare_peak = peak_bytes(bare) / X_pool.nbytes
        print(f"\npool {size:,} candidates, X_pool {X_pool.nbytes / 2**20:.0f} MiB; "
              f"bare predict_proba peak = {bare_peak:.2f} x X_pool")
        print(f"| {'strategy':<17} | query s | bare s | ratio | wall ratio | peak MiB | peak / X_pool |")
        print(f"|{'-' * 19}|--------:|-------:|------:|-----------:|---------:|--------------:|")
        for name, strategy in strategies.items():
            run = lambda: query(learner, strategy, X_pool, args.batch)  # noqa: E731, B023
            runs = [(seconds(run), seconds(bare)) for _ in range(args.repeats)]
            query_cpu, query_wall = np.min([q for q, _ in runs], axis=0)
            bare_cpu, bare_wall = np.min([b for _, b in runs], axis=0)
            peak = peak_bytes(run)
            print(f"| {name:<17} | {query_cpu:7.3f} | {bare_cpu:6.3f} | {query_cpu / bare_cpu:5.2f} "
                  f"| {query_wall / bare_wall:10.2f} | {peak / 2**20:8.1f} | {peak / X_pool.nbytes:13.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
