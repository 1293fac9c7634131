"""Strain for a batch of glitches from GWOSC: bytes downloaded and seconds per rendered candidate.

A local GWOSC stand-in (``glitchrun.images.gwosc_standin``, bandwidth-limited like a remote server) serves
a run of GWOSC-format files built from the real O3 strain examples (``../shared/data``), each file a run of
real 14 s segments end to end. A batch of glitches is spread over the run (uniform times, one glitch per
segment slot at most), and each way fetches strain for every glitch and Q-scans it (one 1 s image each):

- ``grouped``: ``GwoscStrain.fetch`` locates every candidate's file with gwosc and downloads each distinct
  file once, ``--workers`` at a time, then gwpy reads each candidate from the cache; with a cold cache,
  then again with the warm cache;
- ``separate``: gwpy's own ``TimeSeries.fetch_open_data`` per candidate (no cache), i.e. each
  candidate's file fetched separately.

Run from the repository root:

    python benchmarks/bench_strain.py                       # 100 glitches, 40 files of 256 s, 40 MB/s
    python benchmarks/bench_strain.py --files 100 --bandwidth 20e6
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from glitchrun.images.gwosc_standin import GwoscStandIn
from glitchrun.images.qscan import QScanImages
from glitchrun.images.strain import GwoscStrain, NpzStrain, StrainSegment

REPO = Path(__file__).resolve().parents[1]
NPZ = REPO.parent / "shared" / "data" / "o3_glitch_strain_examples.npz"
START = 1238200000
SLOT = 14  # seconds of each real segment; its glitch sits at 7 s
PAD = 7.0


def build_run(standin: GwoscStandIn, files: int, duration: int) -> None:
    """``files`` H1 files of ``duration`` s, each real 14 s segments end to end (float32 on disk, as small as
    GWOSC's compressed files per second of data)."""
    strain = NpzStrain(NPZ)._arrays()["strain"]
    slots = duration // SLOT
    for f in range(files):
        picks = [(f * slots + s) % len(strain) for s in range(slots)]
        data = np.concatenate([strain[p] for p in picks]).astype(np.float32)
        data = np.concatenate([data, np.zeros(duration * 4096 - data.size, dtype=np.float32)])
        standin.add("H1", START + f * duration, data, 4096)


def batch(n: int, files: int, duration: int, seed: int) -> pd.DataFrame:
    """``n`` glitches at distinct segment slots drawn uniformly over the run."""
    slots = duration // SLOT
    chosen = np.random.default_rng(seed).choice(files * slots, size=n, replace=False)
    times = START + (chosen // slots) * duration + (chosen % slots) * SLOT + 7.0
    return pd.DataFrame({"ifo": "H1", "event_time": times}, index=pd.Index([f"g{i}" for i in range(n)], name="id"))


def grouped(standin: GwoscStandIn, frame: pd.DataFrame, cache: Path, workers: int, out: Path) -> float:
    start = time.perf_counter()
    strain = GwoscStrain(host=standin.host, cache_dir=str(cache), pad=PAD, workers=workers, progress=False)
    QScanImages(strain=strain, durations=[1.0], size=(400, 300), n_jobs=1, progress=False).render(frame, out)
    return time.perf_counter() - start


class FetchOpenData:
    """The per-candidate way: gwpy's ``TimeSeries.fetch_open_data`` (no cache) for each candidate."""

    def __init__(self, host: str) -> None:
        self.host = host

    def fetch(self, frame: pd.DataFrame) -> pd.Index:
        return frame.index

    def segment(self, cid: str, row: dict) -> StrainSegment:
        from gwpy.timeseries import TimeSeries

        series = TimeSeries.fetch_open_data(row["ifo"], row["event_time"] - PAD, row["event_time"] + PAD,
                                            host=self.host, cache=False)
        return StrainSegment(np.asarray(series.value, dtype=np.float64), 4096.0, PAD, "gwosc", "gwosc")


def separate(standin: GwoscStandIn, frame: pd.DataFrame, out: Path) -> float:
    start = time.perf_counter()
    QScanImages(strain=FetchOpenData(standin.host), durations=[1.0], size=(400, 300), n_jobs=1,
                progress=False).render(frame, out)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glitches", type=int, default=100)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--duration", type=int, default=256, help="seconds per file")
    parser.add_argument("--bandwidth", type=float, default=40e6, help="bytes/s per transfer")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import gwosc.locate  # noqa: F401  (imports stay out of the timings)
    import gwpy.timeseries  # noqa: F401
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        standin = GwoscStandIn(root / "gwosc", bandwidth=args.bandwidth)
        build_run(standin, args.files, args.duration)
        frame = batch(args.glitches, args.files, args.duration, args.seed)
        size = standin.files[0].path.stat().st_size
        with standin:
            rows = []
            for name, run in (("grouped, cold cache", lambda: grouped(standin, frame, root / "cache", args.workers,
                                                                      root / "a")),
                              ("grouped, warm cache", lambda: grouped(standin, frame, root / "cache", args.workers,
                                                                      root / "b")),
                              ("separate (fetch_open_data each)", lambda: separate(standin, frame, root / "c"))):
                sent, transfers = standin.bytes_sent, sum(standin.downloads.values())
                seconds = run()
                rows.append((name, sum(standin.downloads.values()) - transfers, standin.bytes_sent - sent, seconds))
        touched = len({int((t - START) // args.duration) for t in frame["event_time"]})
        print(f"{args.glitches} glitches over {args.files} files of {args.duration} s ({size / 1e6:.1f} MB each), "
              f"{touched} files touched, {args.bandwidth / 1e6:g} MB/s per transfer, {args.workers} workers")
        print("| way | file downloads | MB downloaded | MB per candidate | s per candidate |")
        print("|---|---:|---:|---:|---:|")
        for name, transfers, sent, seconds in rows:
            print(f"| {name} | {transfers} | {sent / 1e6:.1f} | {sent / 1e6 / args.glitches:.2f} | "
                  f"{seconds / args.glitches:.3f} |")


if __name__ == "__main__":
    main()
