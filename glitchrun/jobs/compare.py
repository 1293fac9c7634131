"""``job=compare``: gather the learning curves of a ``-m job=simulate`` sweep and compare the strategies.

The gather step of the sweep pattern: every run directory of the sweep holds its ``learning_curve.csv``
and Hydra's record of the choices it ran with (``.hydra/hydra.yaml``) and its seed (``.hydra/config.yaml``).
Runs are grouped by a config group's choice (``strategy`` by default); the plot shows each group's mean
macro-F1 with a band of one standard deviation across seeds, and the summary gives the labels each group
needed to reach ``target`` of the full-pool macro-F1, against the ``baseline`` group (random sampling).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from glitchrun.csvio import read_csv, write_csv
from glitchrun.jobs.simulate import CURVE, CURVE_SCHEMA
from glitchrun.report import save

log = logging.getLogger(__name__)

SUMMARY = "comparison.csv"
SUMMARY_SCHEMA = pa.DataFrameSchema(
    {
        "group": pa.Column(str, unique=True),
        "runs": pa.Column(int, pa.Check.ge(1)),
        "reached": pa.Column(int, pa.Check.ge(0)),  # runs that reached the target
        # mean over runs; a run that never reached the target counts with every label it used (a lower bound)
        "labels_to_target": pa.Column(float, nullable=True),
        "labels_to_target_sd": pa.Column(float, nullable=True),
        # labels_to_target / the baseline's; a bound when one of the two is, none (NaN) when both are lower bounds
        "vs_baseline": pa.Column(float, nullable=True),
        "vs_baseline_is": pa.Column(str, pa.Check.isin(["exact", "at least", "at most", "none"])),
        "final_labels": pa.Column(float),
        "final_macro_f1": pa.Column(float),
        "full_pool_macro_f1": pa.Column(float),
    },
    strict=True,
)


class CompareJob:
    """Plot the sweep's learning curves per group with bands across seeds, and summarise labels-to-target."""

    def __init__(self, sweep_dir: str | os.PathLike[str] | None, run_dir: str | os.PathLike[str],
                 group_by: str = "strategy", baseline: str = "random", target: float = 0.95) -> None:
        if not 0.0 < float(target) <= 1.0:
            raise ValueError(f"job.target must be in (0, 1], got {target}")
        self.sweep_dir = Path(sweep_dir) if sweep_dir else None
        self.run_dir = Path(run_dir)
        self.group_by = group_by
        self.baseline = baseline
        self.target = float(target)

    def run(self) -> pd.DataFrame:
        """The summary (one row per group), also written as ``comparison.csv`` beside ``comparison.png``."""
        if self.sweep_dir is None:
            raise ValueError("set job.sweep_dir to the directory of a `glitchrun -m job=simulate ...` sweep")
        curves = gather(self.sweep_dir, self.group_by)
        summary = summarise(curves, self.target, self.baseline)
        write_csv(summary, self.run_dir / SUMMARY, SUMMARY_SCHEMA, what="comparison summary")
        plot_bands(curves, self.run_dir / "comparison.png", self.target, f"{self.sweep_dir.name}: {self.group_by}")
        log.info("compared %d runs in %d groups: %s and %s written to %s", curves["run"].nunique(), len(summary),
                 SUMMARY, "comparison.png", self.run_dir)
        for row in summary.itertuples():
            bound = "" if row.reached == row.runs else "at least "
            log.info("%s: %d of %d runs reached %.0f%% of the full-pool macro-F1; labels to target %s%.0f (%s); "
                     "final macro-F1 %.3f after %.0f labels", row.group, row.reached, row.runs, 100 * self.target,
                     bound, row.labels_to_target, self.versus(row), row.final_macro_f1, row.final_labels)
        return summary

    def versus(self, row: Any) -> str:
        """The comparison with the baseline in words: a figure, a bound, or none when both are lower bounds."""
        if row.group == self.baseline:
            return "the baseline"
        if row.vs_baseline_is == "none":
            return f"neither it nor {self.baseline} reached the target in every run: no ratio of two lower bounds"
        bound = "" if row.vs_baseline_is == "exact" else f"{row.vs_baseline_is} "
        return f"{bound}{row.vs_baseline:.2f} x {self.baseline}"


def gather(sweep_dir: Path, group_by: str) -> pd.DataFrame:
    """Every run's learning curve, with columns ``group`` (its ``group_by`` choice) and ``run`` (directory)."""
    frames = []
    for path in sorted(sweep_dir.glob(f"*/{CURVE}")):
        choices = OmegaConf.load(path.parent / ".hydra" / "hydra.yaml").hydra.runtime.choices
        if group_by not in choices:
            raise ValueError(f"{path.parent} ran without a {group_by!r} choice; group by one of {sorted(choices)}")
        curve = read_csv(path, CURVE_SCHEMA, what="learning curve")
        frames.append(curve.assign(group=str(choices[group_by]), run=path.parent.name))
    if not frames:
        raise FileNotFoundError(f"no {CURVE} in the run directories of {sweep_dir}; is it a multirun of job=simulate?")
    return pd.concat(frames, ignore_index=True)


def labels_to_reach(curve: pd.DataFrame, target: float) -> float:
    """The fewest labels at which a run's macro-F1 reached ``target`` x its full-pool macro-F1 (NaN: never)."""
    reached = curve[curve["macro_f1"] >= target * curve["full_pool_macro_f1"]]
    return float(reached["labels"].min()) if len(reached) else np.nan


def summarise(curves: pd.DataFrame, target: float, baseline: str) -> pd.DataFrame:
    """One row per group: runs, how many reached the target and after how many labels, compared with ``baseline``.

    A run that never reached the target counts with all the labels it used, so a group's figure is a lower
    bound whenever ``reached < runs``; ``vs_baseline_is`` says what the ratio to the baseline's figure is.
    """
    per_run = curves.groupby(["group", "run"]).apply(
        lambda c: pd.Series({"needed": labels_to_reach(c, target),
                             "final_labels": float(c["labels"].iloc[c["round"].argmax()]),
                             "final_macro_f1": float(c["macro_f1"].iloc[c["round"].argmax()]),
                             "full_pool_macro_f1": float(c["full_pool_macro_f1"].iloc[0])})
    ).reset_index()
    per_run["at_least"] = per_run["needed"].fillna(per_run["final_labels"])
    summary = per_run.groupby("group").agg(
        runs=("run", "size"), reached=("needed", "count"), labels_to_target=("at_least", "mean"),
        labels_to_target_sd=("at_least", "std"), final_labels=("final_labels", "mean"),
        final_macro_f1=("final_macro_f1", "mean"), full_pool_macro_f1=("full_pool_macro_f1", "mean"),
    ).reset_index()
    base = summary[summary["group"] == baseline]
    if base.empty:
        summary.insert(5, "vs_baseline", np.nan)
        summary.insert(6, "vs_baseline_is", "none")
        return summary.astype({"runs": int, "reached": int})
    complete = summary["reached"] == summary["runs"]
    base_complete = bool(base["reached"].iloc[0] == base["runs"].iloc[0])
    # a lower bound over an exact figure is a lower bound of the ratio, an exact figure over a lower bound an
    # upper bound; two lower bounds bound nothing
    is_ = np.select([summary["group"] == baseline, complete & base_complete, ~complete & base_complete,
                     complete & ~base_complete], ["exact", "exact", "at least", "at most"], "none")
    ratio = summary["labels_to_target"] / base["labels_to_target"].iloc[0]
    summary.insert(5, "vs_baseline", ratio.where(is_ != "none"))
    summary.insert(6, "vs_baseline_is", is_)
    return summary.astype({"runs": int, "reached": int})


def plot_bands(curves: pd.DataFrame, path: Path, target: float, title: str) -> Path:
    """Mean macro-F1 per round against the mean labels used, with a band of one sd across the group's runs."""
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    for group, runs in curves.groupby("group"):
        by_round = runs.groupby("round").agg(labels=("labels", "mean"), mean=("macro_f1", "mean"),
                                             sd=("macro_f1", "std")).fillna({"sd": 0.0})
        line, = ax.plot(by_round["labels"], by_round["mean"], label=f"{group} ({runs['run'].nunique()} runs)")
        ax.fill_between(by_round["labels"], by_round["mean"] - by_round["sd"], by_round["mean"] + by_round["sd"],
                        color=line.get_color(), alpha=0.2)
    ax.axhline(target * curves["full_pool_macro_f1"].mean(), color="grey", ls="--",
               label=f"{100 * target:.0f}% of the full-pool macro-F1")
    ax.set_xlabel("labels used")
    ax.set_ylabel("held-out macro-F1")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return save(fig, path)
