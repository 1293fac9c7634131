"""job=compare: says where it wrote, and never gives a ratio of two lower bounds as a figure."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from glitchrun.csvio import write_csv
from glitchrun.jobs.compare import CompareJob
from glitchrun.jobs.simulate import CURVE, CURVE_SCHEMA


def sweep_run(sweep: Path, name: str, strategy: str, macro_f1: list[float]) -> None:
    """A run directory as a `-m job=simulate` sweep leaves it: its learning curve and Hydra's record of choices."""
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save({"hydra": {"runtime": {"choices": {"strategy": strategy}}}}, run / ".hydra" / "hydra.yaml")
    curve = pd.DataFrame({"round": range(len(macro_f1)), "labels": [10 * (r + 1) for r in range(len(macro_f1))],
                          "macro_f1": macro_f1, "accuracy": macro_f1, "label_accuracy": 1.0, "votes": 0, "disputed": 0,
                          "full_pool_macro_f1": 1.0})
    write_csv(curve, run / CURVE, CURVE_SCHEMA)


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """random reaches 95 % of the full-pool macro-F1 at 40 labels; margin at 20; uncertainty and entropy never
    (they stop at 30 and 20 labels: lower bounds)."""
    sweep = tmp_path / "sweep"
    sweep_run(sweep, "0_random", "random", [0.5, 0.6, 0.7, 0.96])
    sweep_run(sweep, "1_margin", "margin", [0.5, 0.96, 0.97])
    sweep_run(sweep, "2_uncertainty", "uncertainty", [0.5, 0.6, 0.7])
    sweep_run(sweep, "3_entropy", "entropy", [0.5, 0.6])
    return sweep


def test_a_lower_bound_over_a_figure_is_a_bound_and_the_job_says_where_it_wrote(sweep: Path, tmp_path: Path,
                                                                                  caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="glitchrun.jobs.compare"):
        summary = CompareJob(sweep, tmp_path / "out").run().set_index("group")
    assert summary.loc["margin", ["vs_baseline", "vs_baseline_is"]].tolist() == [0.5, "exact"]
    assert summary.loc["uncertainty", ["vs_baseline", "vs_baseline_is"]].tolist() == [0.75, "at least"]
    assert f"comparison.csv and comparison.png written to {tmp_path / 'out'}" in caplog.text
    assert "labels to target at least 30 (at least 0.75 x random)" in caplog.text
    assert (tmp_path / "out" / "comparison.csv").exists()


def test_two_lower_bounds_give_no_ratio(sweep: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="glitchrun.jobs.compare"):
        summary = CompareJob(sweep, tmp_path / "out", baseline="uncertainty").run().set_index("group")
    assert pd.isna(summary.loc["entropy", "vs_baseline"]) and summary.loc["entropy", "vs_baseline_is"] == "none"
    assert "(neither it nor uncertainty reached the target in every run: no ratio of two lower bounds)" in caplog.text
    # margin reached, its baseline did not: the ratio is an upper bound
    assert summary.loc["margin", "vs_baseline_is"] == "at most" and "(at most 0.67 x uncertainty)" in caplog.text
    written = pd.read_csv(tmp_path / "out" / "comparison.csv").set_index("group")
    assert written.loc["uncertainty", "vs_baseline_is"] == "exact"  # the baseline against itself
