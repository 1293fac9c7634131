"""Time and peak memory to generate synthetic candidates (``data=synthetic``) and their feature matrix.

    python benchmarks/bench_synthetic.py                  # 10^6 candidates, 3 runs
    python benchmarks/bench_synthetic.py --n 100000 --repeats 5

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
import time

MIB = 2**20


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
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
