"""Active learning on real glitches (issue #22): every query strategy against random, cold and warm start, on
the real O1 and O3a samples of the shared data; and the generator refit on real O1 rows, judged on O1 rows it
has not seen.

    python benchmarks/bench_real_glitches.py                        # both samples, 12 seeds, all strategies
    python benchmarks/bench_real_glitches.py --samples o1 --seeds 0 1 --strategies margin random
    python benchmarks/bench_real_glitches.py --transfer             # the refit generator on held-out O1 rows
    python benchmarks/bench_real_glitches.py --sample other_o1.csv  # any Gravity Spy file (v1.0 or O3 format)

Samples: ``--samples`` names the shared data's O1 and O3a samples, ``--sample PATH`` any other Gravity Spy
metadata file (the v1.0 format with ``event_time`` or ``peak_time``, or the O3 catalogue's), its labels the
truth. A sample's classes are those its labels hold (within the Gravity Spy classes, O3's two included), as
a campaign's workflow would have them: the learner and the synthetic candidates know no other.

Label efficiency. Per seed: the sample's rows (their labels the truth) are split into a stratified held-out
test set (``--test-fraction`` of each class, 0.3; a class too small to share stays in the pool) and a pool;
the learner (conf/learner/random_forest.yaml) starts from ``al.seed_per_class`` (2) labels of each class,
queries ``--batch`` (5) at a time with each conf/strategy/ config and is scored on the test set after every
batch, until the pool is used up (or ``--max-labels``: a file of thousands of rows need not be labelled
whole). "Labels to target": the fewest labels at which the held-out macro-F1
reaches 95 % of the cold learner trained on the whole pool (a run that never does counts with all its
labels: a lower bound, "≥"), the starting labels included; "chosen to target": those minus the starting
labels, the labels the strategy itself chose, beside random's. Cold start: the learner alone; warm start:
conf/warm_start/synthetic.yaml (200 synthetic candidates from the generator refit on the run's starting
labels, giving way one for one to real labels; off, so the same as cold, from the held-out check that finds
they do not help, at the start or as labels grow: the report counts the seeds where it is on at the start).
Both starts of a seed share its split, starting labels and target, so their curves are paired:
"warm - cold" is the mean over seeds of their difference at the same round (same label count).

Transfer (``--transfer``): stratified 5-fold cross-validation of the O1 sample, per seed; the generator is
refit on the four training folds (``glitchrun.data.calibrate.refit``, the v1.0 summary of the shared data),
a forest (conf/learner/random_forest.yaml, features as ``data=gravityspy`` computes them, detector
included) is trained on 20,000 of its candidates only and predicts the held-out fold; so is one trained on the
candidates of the kernel refit (``refit(..., kernel=True)``, ``calibrate --kernel``: each calibrated class a
smoothed bootstrap of its rows). Scored two ways: each fold on its own then averaged ("per fold"), and all
folds' predictions together ("pooled", macro-F1 over all 22 classes, the singletons included). Beside them,
the same forest trained on the real training folds. ``--transfer --sample PATH``: the generators refit on the
whole O1 sample, the forests scored on that file's rows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from sklearn.base import clone
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from bench_strategies import O3_CLASSES, config, curve, seed_rows, vs_random
from glitchrun.data.calibrate import refit
from glitchrun.data.loaders import Candidates, FeatureSpec, GravitySpyData, canonical
from glitchrun.data.synthetic import SUMMARY_FILE, generate
from glitchrun.jobs.compare import plot_bands, summarise
from glitchrun.jobs.simulate import held_out, held_out_scores, with_truth

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SAMPLES = {"o1": SHARED / "gravityspy_v1_o1_sample.csv", "o3a": SHARED / "gravityspy_o3a_h1_sample.csv"}
STRATEGIES = ["uncertainty", "margin", "entropy", "mixed", "high_probability", "batch_uncertainty", "committee",
              "random"]


def load_sample(path: Path) -> Candidates:
    """A Gravity Spy metadata file's rows, their labels the truth, its classes those the labels hold."""
    candidates = with_truth(GravitySpyData(path, classes=O3_CLASSES, labels_as="truth").load())
    held = set(candidates.frame["truth"])
    return Candidates(candidates.frame, candidates.feature_spec, [name for name in O3_CLASSES if name in held])


def label_efficiency(path: Path, seeds: list[int], strategies: list[str], batch: int,
                     test_fraction: float, warm_overrides: list[str] = (), overrides: list[str] = (),
                     starts: list[str] = ("cold", "warm"), max_labels: int | None = None) -> pd.DataFrame:
    """Every run's learning curve, with columns group (strategy), start (cold / warm) and run (seed); each run
    until the pool is used up or (``max_labels``) at that many labels."""
    candidates = load_sample(path)
    sample = path.stem
    truth = candidates.frame["truth"]
    curves = []
    for seed in seeds:
        cfg = config("random", seed, "warm_start=synthetic", *overrides, *warm_overrides)
        test = held_out(truth, test_fraction, seed)
        pool = candidates.frame.index.difference(test)
        pool = pool[np.random.default_rng(seed).permutation(len(pool))]  # a pool position says nothing of the class
        X_pool, y_pool = candidates.features(pool), truth[pool].to_numpy(dtype=object)
        X_test, y_test = candidates.features(test), truth[test].to_numpy(dtype=object)
        cold = instantiate(cfg.learner)
        full = held_out_scores(y_test, clone(cold).fit(X_pool, y_pool).predict(X_test))[0]
        start = pool[seed_rows(y_pool, int(cfg.al.seed_per_class), seed)]
        warm = instantiate(cfg.warm_start).around(cold, candidates, truth[start]) if "warm" in starts else None
        warm_on = warm is not None and warm.on
        for name in strategies:
            strategy = instantiate(config(name, seed).strategy)
            for start_name, estimator in ((start, {"cold": cold, "warm": warm}[start]) for start in starts):
                began = time.perf_counter()
                run = curve(estimator, strategy, X_pool, y_pool, X_test, y_test, int(cfg.al.seed_per_class), batch,
                            0.95, seed, full=full, to_end=True, max_labels=max_labels)
                curves.append(run.assign(group=name, start=start_name, run=f"seed{seed}", warm_on=warm_on))
                print(f"{sample} seed {seed} {name} {start_name}: final macro-F1 {run['macro_f1'].iloc[-1]:.3f} "
                      f"of {full:.3f} after {run['labels'].iloc[-1]} labels ({time.perf_counter() - began:.0f} s)",
                      flush=True)
    return pd.concat(curves, ignore_index=True)


def report(curves: pd.DataFrame, title: str, target: float) -> None:
    """Labels to target per strategy and start (vs random of the same start), and warm - cold per strategy."""
    print(f"\n{title}\n")
    starting = curves[curves["round"] == 0].groupby("run")["labels"].first()  # a seed's, the same for every strategy
    print(f"Chosen to target: labels to target minus the {starting.mean():.0f} starting labels (mean over seeds).\n")
    print("| strategy | start | runs reaching the target | labels to target (mean ± sd) | vs random | vs cold random | "
          "chosen to target | chosen vs random | final macro-F1 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    cold = curves[(curves["start"] == "cold") & (curves["group"] == "random")]
    cold_random = summarise(cold, target, "random")["labels_to_target"].iloc[0] if len(cold) else np.nan
    for start, runs in curves.groupby("start"):
        summary = summarise(runs, target, "random")
        chosen = runs.assign(labels=runs["labels"] - runs["run"].map(starting))
        chosen = summarise(chosen, target, "random").set_index("group")
        for row in summary.sort_values("labels_to_target").itertuples():
            bound = "" if row.reached == row.runs else "≥ "
            mine = chosen.loc[row.group]
            print(f"| {row.group} | {start} | {row.reached}/{row.runs} | {bound}{row.labels_to_target:,.0f} ± "
                  f"{row.labels_to_target_sd:,.0f} | {vs_random(row)} | "
                  f"{bound}{100 * row.labels_to_target / cold_random:.0f} % | {bound}{mine.labels_to_target:,.0f} | "
                  f"{vs_random(mine)} | {row.final_macro_f1:.3f} |")
    if set(curves["start"]) != {"cold", "warm"}:
        return
    on = curves.groupby("run")["warm_on"].first()
    print(f"\nwarm - cold, macro-F1 (mean over seeds of the paired difference at the same round; the warm start on "
          f"in {int(on.sum())} of {len(on)} seeds):\n")
    paired = curves.pivot_table(index=["group", "run", "round"], columns="start", values=["macro_f1", "labels"])
    gains_table(pd.DataFrame({"labels": paired["labels"]["cold"],
                              "gain": paired["macro_f1"]["warm"] - paired["macro_f1"]["cold"]}).reset_index())


def gains_table(gains: pd.DataFrame) -> None:
    """Per strategy (``group``): the mean over runs of ``gain`` (warm - cold) at each round, some rounds shown."""
    print("| strategy | labels (mean) at round 0 / 2 / 5 / 10 | warm - cold there | lowest (at labels) | "
          "rounds with warm below cold by > 0.01 |")
    print("|---|---|---|---:|---:|")
    for name, runs in gains.groupby("group"):
        by_round = runs.groupby("round")[["labels", "gain"]].mean()
        shown = by_round.loc[[r for r in (0, 2, 5, 10) if r in by_round.index]]
        worst = by_round.loc[by_round["gain"].idxmin()]
        labels = " / ".join(f"{value:.0f}" for value in shown["labels"])
        shown_gains = " / ".join(f"{value:+.3f}" for value in shown["gain"])
        print(f"| {name} | {labels} | {shown_gains} | {worst['gain']:+.3f} ({worst['labels']:.0f}) | "
              f"{int((by_round['gain'] < -0.01).sum())} of {len(by_round)} |")


def transfer(seeds: list[int], sample: Path | None = None, n: int = 20_000) -> None:
    """Accuracy and macro-F1 on real O1 rows the models did not see of a forest trained on the refit
    generator's candidates, and of one trained on the real rows the generator was refit on: 5-fold CV of the O1
    sample, or (``sample``) the whole O1 sample against another file's rows."""
    o1, table = GravitySpyData(SAMPLES["o1"]).load(), pd.read_csv(SAMPLES["o1"])
    y_o1 = o1.frame["label"].to_numpy(dtype=object)
    if sample is None:
        real, y = o1, y_o1
        title = f"{len(y)} real O1 rows, 5-fold CV x {len(seeds)} seeds"
    else:
        real = load_sample(sample)
        seen = real.frame.index.intersection(o1.frame.index)  # rows of the O1 sample itself are not held out
        real = Candidates(real.frame.drop(seen), real.feature_spec, real.classes)
        y = real.frame["truth"].to_numpy(dtype=object)
        if not len(y):
            raise SystemExit(f"{sample}: every row is in the O1 sample the models are trained on: nothing held out")
        title = (f"{len(y)} rows of {sample.name} ({len(seen)} of the O1 sample left out), the models trained on "
                 f"the {len(y_o1)} rows of the O1 sample")
    scores: dict[str, list] = {"synthetic": [], "kernel": [], "real": []}
    for seed in seeds:
        forest = instantiate(config("random", seed).learner)
        predicted = {kind: np.empty(len(y), dtype=object) for kind in scores}
        per_fold = {kind: [] for kind in scores}
        splits = (StratifiedKFold(5, shuffle=True, random_state=seed).split(y, y) if sample is None
                  else [(np.arange(len(y_o1)), np.arange(len(y)))])
        for train, test in splits:
            models = trained_on(o1, table, train, seed, forest, n)
            for kind, model in models.items():
                predicted[kind][test] = model.predict(real.features(real.frame.index[test]))
                per_fold[kind].append(((predicted[kind][test] == y[test]).mean(),
                                       f1_score(y[test], predicted[kind][test], average="macro", zero_division=0)))
        for kind in scores:
            pooled = ((predicted[kind] == y).mean(), f1_score(y, predicted[kind], labels=sorted(set(y)),
                                                              average="macro", zero_division=0))
            scores[kind].append((*np.mean(per_fold[kind], axis=0), *pooled))
            print(f"seed {seed} {kind}: per fold accuracy {scores[kind][-1][0]:.3f}, macro-F1 "
                  f"{scores[kind][-1][1]:.3f}; pooled accuracy {pooled[0]:.3f}, macro-F1 {pooled[1]:.3f}", flush=True)
    print(f"\n{title} (mean ± sd over seeds; macro-F1 pooled: over the classes the scored rows hold)\n")
    print("| trained on | accuracy (per fold) | macro-F1 (per fold) | accuracy (pooled) | macro-F1 (pooled) |")
    print("|---|---:|---:|---:|---:|")
    for kind, label in (("synthetic", "synthetic candidates of the generator refit on the training rows"),
                        ("kernel", "synthetic candidates of its kernel refit on the training rows (`--kernel`)"),
                        ("real", "the real training rows")):
        mean, sd = np.mean(scores[kind], axis=0), np.std(scores[kind], axis=0)
        print(f"| {label} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, sd, strict=True)) + " |")


def trained_on(o1: Candidates, table: pd.DataFrame, rows: np.ndarray, seed: int, forest: Any, n: int
               ) -> dict[str, Any]:
    """Clones of ``forest`` trained on ``n`` candidates of the generator refit on these rows (positions) of the O1
    sample (``o1``, as read from ``table``), log-normal (``synthetic``) and kernel (``kernel``), and on the rows
    themselves (``real``)."""
    models = {}
    with tempfile.TemporaryDirectory() as folder:
        table.iloc[rows].to_csv(Path(folder) / "train.csv", index=False)
        for kind, kernel in (("synthetic", False), ("kernel", True)):
            drawn = canonical(generate(n, seed, fit=refit(SHARED / SUMMARY_FILE, [Path(folder) / "train.csv"],
                                                          kernel=kernel).fit))
            models[kind] = clone(forest).fit(FeatureSpec().matrix(drawn), drawn["truth"].to_numpy(dtype=object))
    labels = o1.frame["label"].to_numpy(dtype=object)[rows]
    models["real"] = clone(forest).fit(o1.features(o1.frame.index[rows]), labels)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", nargs="+", choices=sorted(SAMPLES), default=None,
                        help="the shared data's samples (default: both, unless --sample is given)")
    parser.add_argument("--sample", type=Path, nargs="+", default=[],
                        help="other Gravity Spy metadata files (v1.0 format, event_time or peak_time; or O3's)")
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(12)))
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--warm", nargs="+", default=[], help="overrides of the warm start, e.g. warm_start.candidates=100")
    parser.add_argument("--overrides", nargs="+", default=[],
                        help="overrides of the learner and the start, e.g. learner.n_estimators=300 al.seed_per_class=1")
    parser.add_argument("--starts", nargs="+", choices=["cold", "warm"], default=["cold", "warm"])
    parser.add_argument("--max-labels", type=int, default=None,
                        help="stop each run at this many labels (default: when the pool is used up); for a file of "
                             "thousands of rows: a run short of the target by then counts as '≥'")
    parser.add_argument("--transfer", action="store_true",
                        help="the refit generator on held-out O1 rows instead (with --sample: on that file's rows, the "
                             "generator refit on the whole O1 sample)")
    parser.add_argument("--curves", type=Path, help="also write every learning curve to this CSV")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "real_glitches.png")
    args = parser.parse_args()
    if args.transfer:
        for path in args.sample or [None]:
            transfer(args.seeds, path)
        return
    names = args.samples if args.samples is not None else [] if args.sample else sorted(SAMPLES)
    for path in [SAMPLES[name] for name in names] + args.sample:
        sample = {value: key for key, value in SAMPLES.items()}.get(path, path.stem)
        curves = label_efficiency(path, args.seeds, args.strategies, args.batch, args.test_fraction,
                                  args.warm, args.overrides, args.starts, args.max_labels)
        if args.curves:
            curves.to_csv(args.curves.with_name(f"{args.curves.stem}_{sample}.csv"), index=False)
        report(curves, f"{sample}: {len(args.seeds)} seeds, batches of {args.batch}", args.target)
        shown = curves[curves["group"].isin(["mixed", "margin", "random"])]
        plot = args.plot.with_name(f"{args.plot.stem}_{sample}.png")
        plot.parent.mkdir(parents=True, exist_ok=True)
        plot_bands(shown.assign(group=shown["group"] + " " + shown["start"], run=shown["run"]), plot, args.target,
                   f"{sample}: macro-F1 vs labels, cold and warm start (mean ± sd over seeds)")
        print(f"plot: {plot}")


if __name__ == "__main__":
    main()
