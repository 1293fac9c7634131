"""The real-glitch benchmark runs on any Gravity Spy metadata file (``--sample PATH``), e.g. a hidden set of
other real O1 glitches, with one command (BENCHMARKS.md, "Active learning on real glitches")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_benchmark_runs_on_a_v1_file_with_peak_time_and_takes_its_classes_from_it(shared_data: Path,
                                                                                       tmp_path: Path):
    """6 of the O1 sample's classes, ``peak_time`` for ``event_time``, 1 seed, 2 strategies, both starts and the
    warm learner on the cold runs' rows: every table, the file's classes only, the plot."""
    rows = pd.read_csv(shared_data / "gravityspy_v1_o1_sample.csv")
    common = rows["label"].value_counts().index[:6]  # 6 of the 22 classes, 8 or more rows each
    subset = rows[rows["label"].isin(common)].rename(columns={"event_time": "peak_time"})
    subset.to_csv(tmp_path / "other_o1.csv", index=False)
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_real_glitches.py", "--sample", str(tmp_path / "other_o1.csv"),
         "--seeds", "0", "--strategies", "margin", "random", "--max-labels", "60", "--plot",
         str(tmp_path / "plot.png")],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=True)
    table = [line for line in done.stdout.splitlines() if line.startswith(("| margin | ", "| random | "))
             and line.split(" | ")[1] in ("cold", "warm")]
    assert len(table) == 4 and {line.split(" | ")[1] for line in table} == {"cold", "warm"}
    assert all(len(line.strip("|").split(" | ")) == 9 for line in table)  # labels and chosen labels to target
    assert "Chosen to target: labels to target minus the 12 starting labels" in done.stdout  # 2 of each of 6
    gains = done.stdout.split("warm - cold, macro-F1")[1].split("plot:")[0]
    assert gains.count(" of 11 |") == 2  # rounds at 12, 17, ..., 62 labels, the first past 60: 11 of the pool's 24
    assert [line.split(" | ")[0] for line in gains.splitlines() if line.startswith("| ")][1:] == ["| margin", "| random"]
    assert f"{len(subset)} with ground truth" in done.stderr
    assert "warm start: 200 synthetic candidates of 6 classes" in done.stderr  # only the file's classes
    assert (tmp_path / "plot_other_o1.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_the_generator_refit_on_the_o1_sample_is_judged_on_another_files_rows_it_has_not_seen(shared_data: Path,
                                                                                               tmp_path: Path):
    """``--transfer --sample PATH``: rows of the O1 sample itself are left out of the scored rows; a file of
    nothing else is one clear line; other rows (here O3a's) are scored by the three forests (log-normal and kernel
    refit, real rows)."""
    rows = pd.read_csv(shared_data / "gravityspy_v1_o1_sample.csv")
    rows.head(20).to_csv(tmp_path / "seen.csv", index=False)
    command = [sys.executable, "benchmarks/bench_real_glitches.py", "--transfer", "--seeds", "0", "--sample"]
    seen = subprocess.run([*command, str(tmp_path / "seen.csv")], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert seen.returncode == 1
    assert seen.stderr.splitlines()[-1].endswith("every row is in the O1 sample the models are trained on: "
                                                 "nothing held out")
    other = subprocess.run([*command, str(shared_data / "gravityspy_o3a_h1_sample.csv")], cwd=REPO,
                           capture_output=True, text=True, timeout=600, check=True)
    assert "170 rows of gravityspy_o3a_h1_sample.csv (0 of the O1 sample left out)" in other.stdout
    table = [line for line in other.stdout.splitlines() if line.startswith(("| synthetic", "| the real"))]
    assert len(table) == 3 and all(0 <= float(cell.split(" ± ")[0]) <= 1 for line in table
                                   for cell in line.strip("|").split(" | ")[1:])
