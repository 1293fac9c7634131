"""Q-scan PNGs per second: glitchrun's renderer against gwpy ``q_transform`` + pyplot, one image at a time.

Both render the same real O3 segments (``../shared/data/o3_glitch_strain_examples.npz``) at Gravity Spy's
four durations with the same Q and frequency ranges, the same pixel size and the same output grid (one
value per plot-area pixel), over the same joblib workers. The baseline is what Gravity Spy's own code
does per image: whiten and Q-transform with gwpy, draw a new pyplot figure, save, close. It draws with
``imshow`` on a log2(frequency) axis, about twice as fast as the ``pcolormesh`` gwpy suggests for
log-sampled spectrograms, so the speed-up is not flattered by a slow baseline.

Each renderer first renders two other candidates untimed, so worker start-up and imports stay out of the
rates; then both run ``--repeat`` times, alternately, and the fastest run of each counts (on a shared
machine, other load only ever slows a run down). CPU seconds (this process and its live joblib workers,
read from /proc on Linux) are printed too: unlike wall time they barely change with other load.
``--fidelity`` compares instead what the two draw: for every segment and duration, glitchrun's normalised
energy on gwpy's own output grid (``q_transform(..., outseg, tres, fres, logf=True)`` with the plot area's
pixel counts) against gwpy's; it prints per example and window the correlation, the ratio of the peaks
(glitchrun / gwpy) and whether both picked the same Q plane, then a summary per class.
Run from the repository root:

    python benchmarks/bench_qscan.py                 # 12 candidates x 4 images, n_jobs=2
    python benchmarks/bench_qscan.py --candidates 24 --n-jobs 1
    python benchmarks/bench_qscan.py --fidelity      # all 60 segments x 4 durations, one process
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from glitchrun.images.qscan import QScanImages, file_stem, image_title
from glitchrun.images.strain import NpzStrain, StrainSegment

if TYPE_CHECKING:
    from gwpy.spectrogram import Spectrogram

REPO = Path(__file__).resolve().parents[1]
NPZ = REPO.parent / "shared" / "data" / "o3_glitch_strain_examples.npz"


def baseline_image(images: QScanImages, source: NpzStrain, cid: str, row: dict, window: float,
                   out_dir: Path) -> str:
    """One PNG the straightforward way: gwpy ``q_transform`` of the segment, pyplot figure, save."""
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    spec = reference_energy(images, source.segment(cid, row), window)
    width, height = images.size
    fig, ax = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
    flim = np.log2(spec.frequencies.value[[0, -1]])
    image = ax.imshow(spec.value.T, origin="lower", aspect="auto", extent=(-window / 2, window / 2, *flim),
                      vmin=0, vmax=images.vmax, cmap=images.cmap)
    powers = np.arange(np.ceil(flim[0]), np.floor(flim[1]) + 1)
    ax.set_yticks(powers, [f"{2 ** p:g}" for p in powers])
    ax.set_xlabel("Time (s)")
    ax.set_ylabel("Frequency (Hz)")
    ax.set_title(image_title(row))
    fig.colorbar(image, label="Normalized energy")
    name = f"{file_stem(cid)}_{window:g}s.png"
    fig.savefig(out_dir / name)
    plt.close(fig)
    return name


def run_baseline(images: QScanImages, source: NpzStrain, frame: pd.DataFrame, out_dir: Path, n_jobs: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    Parallel(n_jobs=n_jobs)(delayed(baseline_image)(images, source, cid, row, window, out_dir)
                            for cid, row in zip(frame.index, frame.to_dict("records"), strict=True)
                            for window in images.durations)


def reference_energy(images: QScanImages, segment: StrainSegment, window: float) -> Spectrogram:
    """gwpy's ``q_transform`` of the segment over ``window`` on the plot area's pixel grid (as the baseline)."""
    from gwpy.timeseries import TimeSeries

    rows, columns = images.plot_area
    series = TimeSeries(segment.data, sample_rate=segment.sample_rate, t0=-segment.centre)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2048 Hz is capped for 4096 Hz data
        return series.q_transform(qrange=images.qrange, frange=images.frange, gps=0, search=images.search,
                                  outseg=(-window / 2, window / 2), tres=window / (columns.stop - columns.start),
                                  fres=rows.stop - rows.start, logf=True)


def fidelity(images: QScanImages, source: NpzStrain, frame: pd.DataFrame) -> pd.DataFrame:
    """Per candidate and duration: correlation and peak ratio of glitchrun's energy grid against gwpy's on
    the same times and frequencies, and the Q of both planes."""
    records = []
    for cid, row in zip(frame.index, frame.to_dict("records"), strict=True):
        segment = source.segment(cid, row)
        plane = images.transform(cid, row, segment)
        for window in images.durations:
            reference = reference_energy(images, segment, window)
            theirs = reference.value.T  # frequency x time, as ours
            ours = plane.grid(reference.times.value, reference.frequencies.value)
            records.append({"id": cid, "label": row["label"], "window": window,
                            "correlation": np.corrcoef(ours.ravel(), theirs.ravel())[0, 1],
                            "peak ratio": ours.max() / theirs.max(),
                            "max |difference|": np.abs(ours - theirs).max(), "Q": plane.q, "gwpy Q": reference.q})
    return pd.DataFrame(records)


def print_fidelity(table: pd.DataFrame) -> None:
    with pd.option_context("display.max_rows", None, "display.width", 120):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    table = table.assign(within=(table["peak ratio"] - 1).abs() <= 0.05, same_q=np.isclose(table["Q"], table["gwpy Q"]))
    summary = table.groupby("label").agg(images=("id", "size"), min_correlation=("correlation", "min"),
                                         median_correlation=("correlation", "median"),
                                         min_peak=("peak ratio", "min"), max_peak=("peak ratio", "max"),
                                         max_difference=("max |difference|", "max"),
                                         peak_within_5pct=("within", "sum"), same_q=("same_q", "sum"))
    summary.loc["all"] = [len(table), table["correlation"].min(), table["correlation"].median(),
                          table["peak ratio"].min(), table["peak ratio"].max(), table["max |difference|"].max(),
                          table["within"].sum(), table["same_q"].sum()]
    print(summary.to_string(float_format=lambda v: f"{v:.6g}"))
    good = (table["correlation"] >= 0.99) & table["within"]
    print(f"{good.sum()} of {len(table)} images at correlation >= 0.99 with a peak within 5 % of gwpy's")


def cpu_seconds() -> float:
    """CPU time used so far by this process and its live children (the joblib workers persist between
    runs, so differences count a run's work); children are read from /proc, so 0 for them elsewhere."""
    own = os.times()
    total = own.user + own.system
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == os.getpid():  # ppid, then utime and stime in clock ticks
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def timed(run, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``run(*args)``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    run(*args)
    return time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npz", type=Path, default=NPZ)
    parser.add_argument("--candidates", type=int, default=12)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--size", type=int, nargs=2, default=(800, 600), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--fidelity", action="store_true", help="compare the energies with gwpy's, not the speed")
    args = parser.parse_args()

    source = NpzStrain(args.npz)
    frame = source.candidates()
    if args.fidelity:
        print_fidelity(fidelity(QScanImages(size=args.size, strain=source), source, frame))
        return
    step = max(1, len(frame) // args.candidates)  # every step-th segment: all five classes, both detectors
    timed_rows = frame.iloc[::step].iloc[:args.candidates]
    warm_rows = frame.drop(timed_rows.index).iloc[:2]
    images = QScanImages(size=args.size, n_jobs=args.n_jobs, progress=False, strain=source)
    n_images = len(timed_rows) * len(images.durations)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        images.render(warm_rows, out / "warm")
        run_baseline(images, source, warm_rows, out / "warm", args.n_jobs)
        runs = [(timed(images.render, timed_rows, out / "ours"),
                 timed(run_baseline, images, source, timed_rows, out / "baseline", args.n_jobs))
                for _ in range(args.repeat)]
    (ours, ours_cpu), (theirs, theirs_cpu) = (
        (min(wall for wall, _ in times), min(cpu for _, cpu in times)) for times in zip(*runs, strict=True))

    table = pd.DataFrame({
        "images": [n_images, n_images],
        "seconds": [ours, theirs],
        "images/s": [n_images / ours, n_images / theirs],
        "CPU s/image": [ours_cpu / n_images, theirs_cpu / n_images],
    }, index=pd.Index(["glitchrun QScanImages", "gwpy q_transform + pyplot"], name="renderer"))
    print(f"{len(timed_rows)} real O3 candidates x {len(images.durations)} durations, {args.size[0]}x{args.size[1]} px, "
          f"n_jobs={args.n_jobs} ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}), "
          f"best of {args.repeat}")
    print(table.to_string(float_format=lambda v: f"{v:.2f}", formatters={"CPU s/image": lambda v: f"{v:.3f}"}))
    print(f"speed-up: {theirs / ours:.1f}x in wall time, {theirs_cpu / ours_cpu:.1f}x in CPU time")


if __name__ == "__main__":
    main()
