"""Ingest at scale: ``job=ingest`` on Gravity-Spy-shaped classification exports of 10^5 to 5x10^6 rows (rows/s,
peak memory), and panoptes_aggregation's extract + reduce on the same 10^5-row file (simulated exports).

    python benchmarks/bench_ingest.py --rows 100000 1000000 5000000 --dir /tmp/glitchrun-exports \\
        [--aggregation-python /path/to/venv/bin/python] [--mix 0.2] [--only-aggregation] [--crowd perfect]

Each size: an export written once by ``benchmarks/gravity_spy_export.py`` into ``--dir`` (kept there for the next
run, never in the repository), then ``glitchrun job=ingest`` in a fresh process, as a user runs it:
``data=gravityspy`` (Gravity Spy's subjects: the glitch id in ``subject_id``, the model's posterior as the
consensus prior, gold-standard subjects), the survey task, ``job.workflows=[7766]`` of a project export holding
the lower levels' workflows too (``--mix`` of the rows), the default consensus (``crowd=gravity_spy``; ``--crowd
perfect`` takes its majority vote instead, to see the reading apart from the consensus's EM), a fresh campaign
state. Reported: wall time from process start to exit (Hydra start-up included), rows/s, and the peak
resident memory of that process (``wait4``'s ``ru_maxrss``). The machine's load average is printed beside.

panoptes_aggregation (not a glitchrun dependency: it pins pandas < 3, so it runs from its own virtual environment,
``--aggregation-python``): ``panoptes_aggregation extract`` with the survey extractor of task T1 of workflow 7766
version 18, then ``panoptes_aggregation reduce`` with the survey reducer, on the first size's file; the same
process measures. The ratio is the two wall times of this run on this machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW, TASK, VERSION = 7766, "T1", "18"


def generator():
    spec = importlib.util.spec_from_file_location("gravity_spy_export", ROOT / "benchmarks" / "gravity_spy_export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export_file(directory: Path, rows: int, mix: float) -> Path:
    path = directory / f"gravity-spy-classifications-{rows}-mix{mix:g}.csv"
    if not path.is_file():
        start = time.perf_counter()
        part = path.with_suffix(".part")
        generator().write_export(part, rows, mix=mix)
        part.replace(path)
        print(f"  wrote {path.name} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s",
              flush=True)
    return path


def measured(command: list[str], cwd: Path, log: Path) -> tuple[float, float, int]:
    """Run ``command``; its wall time (s), peak resident memory (GB) and exit code."""
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss / 1e6, process.returncode


def ingest(path: Path, work: Path, crowd: str) -> tuple[float, float]:
    command = [sys.executable, "-m", "glitchrun", "job=ingest", "data=gravityspy", f"crowd={crowd}",
               f"job.export={path}", "campaign.workflow.task_type=survey", f"job.workflows=[{WORKFLOW}]",
               "job.progress=false", f"paths.outputs={work / 'outputs'}"]
    log = work / "ingest.log"
    seconds, peak, code = measured(command, work, log)
    if code != 0:
        raise SystemExit(f"job=ingest failed (exit {code}); see {log}:\n{log.read_text()[-2000:]}")
    lines = log.read_text().splitlines()
    for phase in ("classifications of", " votes of ", "labels added to the campaign"):  # reading, consensus, summary
        found = next((line for line in lines if phase in line and "ingest: " in line), "")
        print(f"    {found.split('ingest: ', 1)[-1][:300]}")
    return seconds, peak


def aggregation(python: str, path: Path, work: Path) -> tuple[float, float]:
    """panoptes_aggregation extract (survey extractor) + reduce (survey reducer) of the workflow; wall s, peak GB."""
    (work / "extractor.yaml").write_text(f"extractor_config:\n  survey_extractor:\n  - task: {TASK}\n"
                                         f"workflow_id: {WORKFLOW}\nworkflow_version: '{VERSION}'\n")
    (work / "reducer.yaml").write_text("reducer_config:\n  survey_reducer: {}\n")
    cli = str(Path(python).with_name("panoptes_aggregation"))
    extract = [cli, "extract", str(path), "extractor.yaml", "-d", str(work), "-o", "bench", "-hb"]
    reduce = [cli, "reduce", str(work / "survey_extractor_bench.csv"), "reducer.yaml", "-d", str(work), "-o", "bench",
              "-hb"]
    total, peak = 0.0, 0.0
    for step in (extract, reduce):
        seconds, used, code = measured(step, work, work / f"{step[1]}.log")
        if code != 0:
            raise SystemExit(f"panoptes_aggregation {step[1]} failed: {(work / f'{step[1]}.log').read_text()[-2000:]}")
        print(f"    panoptes_aggregation {step[1]}: {seconds:.1f} s, peak {used:.2f} GB", flush=True)
        total, peak = total + seconds, max(peak, used)
    return total, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "glitchrun-exports",
                        help="where the generated exports are kept between runs (not the repository)")
    parser.add_argument("--mix", type=float, default=0.2, help="share of rows from the level 1-3 workflows")
    parser.add_argument("--aggregation-python", help="the python of a venv with panoptes_aggregation installed")
    parser.add_argument("--crowd", default="gravity_spy", help="the crowd config whose consensus job=ingest uses")
    parser.add_argument("--only-aggregation", action="store_true", help="only the comparison on the first size")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start; crowd={args.crowd}", flush=True)
    results = []
    for rows in args.rows:
        path = export_file(args.dir, rows, args.mix)
        with tempfile.TemporaryDirectory() as work:
            if not args.only_aggregation:
                load = os.getloadavg()[0]
                seconds, peak = ingest(path, Path(work), args.crowd)
                results.append((rows, seconds, peak, load))
                print(f"  {rows:>9,} rows: job=ingest {seconds:7.1f} s, {rows / seconds:9,.0f} rows/s, peak "
                      f"{peak:.2f} GB (load {load:.1f})", flush=True)
            if args.aggregation_python and rows == args.rows[0]:
                glitchrun_seconds = results[0][1] if results else ingest(path, Path(work), args.crowd)[0]
                theirs, their_peak = aggregation(args.aggregation_python, path, Path(work))
                print(f"  {rows:>9,} rows: panoptes_aggregation extract + reduce {theirs:.1f} s, peak "
                      f"{their_peak:.2f} GB: glitchrun {theirs / glitchrun_seconds:.1f}x faster", flush=True)
    if len(results) > 1:
        (r0, s0, *_), (r1, s1, *_) = results[0], results[-1]
        print(f"time per row, largest over smallest size: {(s1 / r1) / (s0 / r0):.2f} (1.00 = linear)")


if __name__ == "__main__":
    main()
