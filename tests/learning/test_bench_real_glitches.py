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
         "--seeds", "0", "--strategies", "margin", "random", "--same-rows", "--plot", str(tmp_path / "plot.png")],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=True)
    table = [line for line in done.stdout.splitlines() if line.startswith(("| margin | ", "| random | "))
             and line.split(" | ")[1] in ("cold", "warm")]
    assert len(table) == 4 and {line.split(" | ")[1] for line in table} == {"cold", "warm"}
    assert all(len(line.strip("|").split(" | ")) == 9 for line in table)  # labels and chosen labels to target
    assert "Chosen to target: labels to target minus the 12 starting labels" in done.stdout  # 2 of each of 6
    gains = done.stdout.split("warm - cold on the same labelled rows")[1].split("warm - cold, macro-F1")[0]
    assert [line.split(" | ")[0] for line in gains.splitlines() if line.startswith("| ")][1:] == ["| margin", "| random"]
    assert f"{len(subset)} with ground truth" in done.stderr
    assert "warm start: 200 synthetic candidates of 6 classes" in done.stderr  # only the file's classes
    assert (tmp_path / "plot_other_o1.png").read_bytes().startswith(b"\x89PNG")
