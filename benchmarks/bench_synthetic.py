"""Synthetic candidates: generation speed and memory, realism (transfer to real glitches), the class grid.

    python benchmarks/bench_synthetic.py                  # 10^6 candidates, 3 runs
    python benchmarks/bench_synthetic.py --n 100000 --repeats 5
    python benchmarks/bench_synthetic.py --transfer       # train on synthetic, test on the real O3a rows
    python benchmarks/bench_synthetic.py --grid           # docs/images/synthetic_classes.png

Transfer: a random forest (100 trees, min_samples_leaf=5) trained on 20,000 synthetic candidates predicts
the 150 real O3a rows of the 15 classes v1.0 and O3a share (10 each; chance 1/15). "in-sample": the stored
``FIT``, itself calibrated on these rows; "held out": stratified 5-fold, each fold predicted by a forest
trained on a fit calibrated on the other four folds only. Pools at the v1.0 priors or at equal priors (the
test rows' own class frequencies), and at the v1.0 priors with the forest's ``class_weight=
"balanced_subsample"`` (each class weighted as if equally common in each tree's sample: the learner
config's remedy for rare classes, ``conf/learner/random_forest.yaml``).

Each run is a fresh Python process (so its high-water mark is its own): after the imports it records
``ru_maxrss``, times ``SyntheticData(n).load()`` (generation and the canonical frame) and then
``Candidates.features()`` (the float64 matrix), and reports how far ``ru_maxrss`` rose: the peak resident
memory the two calls added. Times are wall clock with the process's CPU time beside it (steadier on a busy
machine), each the minimum over the runs; the memory is the maximum.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 2**20
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def measure(n: int) -> dict[str, float]:
    """One run in this process: seconds and bytes (ru_maxrss is in KiB on Linux)."""
    from glitchrun.data.loaders import SyntheticData

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start, start_cpu = time.perf_counter(), time.process_time()
    candidates = SyntheticData(n=n, seed=0).load()
    loaded, loaded_cpu = time.perf_counter(), time.process_time()
    X = candidates.features()
    done, done_cpu = time.perf_counter(), time.process_time()
    return {"load_s": loaded - start, "features_s": done - loaded,
            "load_cpu_s": loaded_cpu - start_cpu, "features_cpu_s": done_cpu - loaded_cpu,
            "peak_rise": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline,
            "frame_bytes": float(candidates.frame.memory_usage(deep=True).sum()), "matrix_bytes": float(X.nbytes)}


def transfer(seeds: list[int]) -> None:
    """Accuracy, macro-F1 and the classes at zero recall on the real rows, per setting, mean over ``seeds``."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import f1_score, recall_score
    from sklearn.model_selection import StratifiedKFold

    from glitchrun.data.calibrate import refit
    from glitchrun.data.loaders import O3_ADDED_CLASSES, FeatureSpec, GravitySpyData, canonical
    from glitchrun.data.synthetic import FIT, GRAVITY_SPY_CLASSES, O3A_FILE, SUMMARY_FILE, generate

    real = GravitySpyData(SHARED / O3A_FILE, classes=[*GRAVITY_SPY_CLASSES, *O3_ADDED_CLASSES]).load()
    known = real.frame.index[real.frame["label"].isin(GRAVITY_SPY_CLASSES)]
    truth = real.frame.loc[known, "label"].to_numpy(dtype=object)
    labels = sorted(set(truth))
    table = pd.read_csv(SHARED / O3A_FILE).set_index("id").loc[known].reset_index()

    # the real rows are all H1 and a synthetic glitch's features do not depend on its detector: a detector
    # column would only carry the v1.0 detector split (Scratchy 73 % L1), which these test rows do not share
    spec = FeatureSpec(one_hot_ifo=[])

    def predict(fit, priors, class_weight, rows, seed):
        pool = canonical(generate(20_000, seed, fit=fit, priors=priors))
        forest = RandomForestClassifier(n_estimators=100, min_samples_leaf=5, class_weight=class_weight,
                                        random_state=seed, n_jobs=2)
        forest.fit(spec.matrix(pool), pool["truth"].to_numpy(dtype=object))
        return forest.predict(spec.matrix(real.frame.loc[known[rows]]))

    print("| calibration | pool priors | accuracy | macro-F1 | classes at zero recall |")
    print("|---|---|---:|---:|---|")
    for held_out in (False, True):
        for name, priors, class_weight in (("v1.0 counts", None, None),
                                           ("equal", dict.fromkeys(GRAVITY_SPY_CLASSES, 1.0), None),
                                           ("v1.0 counts, balanced_subsample", None, "balanced_subsample")):
            scores, zero, recalls = [], set(), []
            for seed in seeds:
                predicted = np.empty(len(known), dtype=object)
                if not held_out:
                    predicted[:] = predict(FIT, priors, class_weight, np.arange(len(known)), seed)
                folds = StratifiedKFold(5, shuffle=True, random_state=seed).split(truth, truth) if held_out else []
                for train, test in folds:
                    with tempfile.TemporaryDirectory() as folder:
                        table.iloc[train].to_csv(Path(folder) / "train.csv", index=False)
                        fit = refit(SHARED / SUMMARY_FILE, [Path(folder) / "train.csv"]).fit
                    predicted[test] = predict(fit, priors, class_weight, test, seed)
                recall = recall_score(truth, predicted, labels=labels, average=None)
                zero |= {label for label, r in zip(labels, recall, strict=True) if r == 0}
                recalls.append(recall)
                scores.append(((predicted == truth).mean(), f1_score(truth, predicted, labels=labels, average="macro")))
            accuracy, macro_f1 = np.mean(scores, axis=0)
            print(f"| {'held out (5-fold)' if held_out else 'in-sample'} | {name} | {accuracy:.3f} | {macro_f1:.3f} | "
                  f"{', '.join(sorted(zero)) or 'none'} |", flush=True)
            lowest = sorted(zip(np.min(recalls, axis=0), labels))[:4]
            print("    lowest recall (worst seed): " + ", ".join(f"{label} {r:.1f}" for r, label in lowest), flush=True)


def grid(path: Path) -> None:
    """One synthetic Q-scan per class (its median candidate) and the real O3 examples of the shared npz."""
    import pandas as pd
    from PIL import Image, ImageDraw

    from glitchrun.data.synthetic import FIT, LOG_FEATURES
    from glitchrun.images.qscan import QScanImages
    from glitchrun.images.strain import NpzStrain

    npz = NpzStrain(SHARED / "o3_glitch_strain_examples.npz")
    examples = npz.candidates()
    real = examples.groupby("label", sort=False).head(1)
    synthetic = pd.DataFrame([{**dict(zip(LOG_FEATURES, shape.median, strict=True)), "truth": label, "ifo": "H1"}
                              for label, shape in FIT.shapes.items()],
                             index=pd.Index([f"synthetic-{label}" for label in FIT.shapes], name="id"))
    with tempfile.TemporaryDirectory() as folder:
        images = QScanImages(durations=[2.0], size=(400, 300), n_jobs=2, progress=False, strain=npz)
        names = pd.concat([images.render(synthetic, Path(folder)), images.render(real, Path(folder))]).iloc[:, 0]
        titles = [f"synthetic {label}" for label in FIT.shapes] + [f"real {label} ({row.ifo} {row.run})"
                                                                  for label, row in zip(real["label"], real.itertuples())]
        tiles = [Image.open(Path(folder) / name).convert("RGB") for name in names]
    columns, (width, height) = 6, tiles[0].size
    rows = -(-len(FIT.shapes) // columns) + -(-len(real) // columns)
    sheet = Image.new("RGB", (columns * width, rows * (height + 24)), "white")
    draw = ImageDraw.Draw(sheet)
    real_start = -(-len(FIT.shapes) // columns) * columns  # real examples start on a new row
    for i, (tile, title) in enumerate(zip(tiles, titles, strict=True)):
        slot = i if i < len(FIT.shapes) else real_start + i - len(FIT.shapes)
        x, y = (slot % columns) * width, (slot // columns) * (height + 24)
        sheet.paste(tile, (x, y + 24))
        draw.text((x + 8, y + 4), title, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    print(f"grid of {len(FIT.shapes)} synthetic and {len(real)} real Q-scans (2 s): {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--transfer", action="store_true", help="transfer to the real O3a rows instead of speed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="transfer: seeds averaged")
    parser.add_argument("--grid", type=Path, nargs="?", const=REPO / "docs" / "images" / "synthetic_classes.png",
                        help="draw the class grid (default docs/images/synthetic_classes.png)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.transfer:
        transfer(args.seeds)
        return
    if args.grid:
        grid(args.grid)
        return
    if args.child:
        print(json.dumps(measure(args.n)))
        return
    runs = [json.loads(subprocess.run([sys.executable, __file__, "--child", "--n", str(args.n)], check=True,
                                      capture_output=True, text=True).stdout) for _ in range(args.repeats)]
    best = {key: min(run[key] for run in runs) for key in ("load_s", "features_s", "load_cpu_s", "features_cpu_s")}
    print(f"{args.n:,} synthetic candidates, best of {args.repeats} runs:")
    print(f"  generate + frame (SyntheticData.load)  {best['load_s']:.2f} s  (CPU {best['load_cpu_s']:.2f} s)")
    print(f"  feature matrix (Candidates.features)   {best['features_s']:.2f} s  (CPU {best['features_cpu_s']:.2f} s)")
    print(f"  peak RSS added by both                 {max(r['peak_rise'] for r in runs) / MIB:.0f} MiB")
    print(f"  frame held {runs[0]['frame_bytes'] / MIB:.0f} MiB, matrix {runs[0]['matrix_bytes'] / MIB:.0f} MiB")


if __name__ == "__main__":
    main()
