"""A real multirun sweep of simulations (joblib launcher, in a subprocess) and its comparison."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from glitchrun.jobs.compare import labels_to_reach
from tests.jobs.test_simulate import FAST


def glitchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glitchrun", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_a_strategy_sweep_runs_in_parallel_and_compares(tmp_path: Path):
    sweep = glitchrun("-m", "job=simulate", "strategy=uncertainty,random", "seed=0", "job.rounds=1", *FAST,
                      "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                      cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    runs = sorted(p.parent.name for p in (tmp_path / "sweep").glob("*/learning_curve.csv"))
    assert len(runs) == 2 and runs[0].endswith("strategy=uncertainty") and runs[1].endswith("strategy=random")

    compare = glitchrun("job=compare", f"job.sweep_dir={tmp_path / 'sweep'}", "hydra.run.dir=compare", cwd=tmp_path)
    assert compare.returncode == 0, compare.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "compare" / "comparison.csv").set_index("group")
    assert sorted(summary.index) == ["random", "uncertainty"] and (summary["runs"] == 1).all()
    assert summary.loc["random", "vs_baseline"] == 1.0
    assert (tmp_path / "compare" / "comparison.png").read_bytes().startswith(b"\x89PNG")


def test_labels_to_reach_is_the_first_point_at_the_target():
    curve = pd.DataFrame({"labels": [10, 20, 30], "macro_f1": [0.5, 0.96, 0.9], "full_pool_macro_f1": 1.0})
    assert labels_to_reach(curve, 0.95) == 20
    assert pd.isna(labels_to_reach(curve, 0.99))
