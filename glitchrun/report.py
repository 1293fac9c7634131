"""The round report: plots people would rather look at than read, and a short Markdown summary.

Figures are drawn with matplotlib's object API (``Figure`` + Agg canvas), not pyplot, so reports can be
written from worker threads and parallel sweeps without a global figure state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from glitchrun.learning.learner import Performance, cross_validated_performance


def save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def class_balance_plot(path: Path, labelled: np.ndarray, pool_predicted: np.ndarray, batch_predicted: np.ndarray) -> Path:
    """Class fractions: labelled pool (labels), unlabelled pool and batch (predicted classes)."""
    groups = {"labelled pool": labelled, "unlabelled pool (predicted)": pool_predicted, "batch (predicted)": batch_predicted}
    classes = sorted(set().union(*(set(map(str, v)) for v in groups.values())))
    fig = Figure(figsize=(8, 0.28 * len(classes) + 1.5))
    ax = fig.add_subplot()
    height = 0.8 / len(groups)
    for i, (name, values) in enumerate(groups.items()):
        counts = pd.Series(values, dtype=object).astype(str).value_counts(normalize=True)
        ax.barh(np.arange(len(classes)) + i * height, [counts.get(c, 0.0) for c in classes], height, label=name)
    ax.set_yticks(np.arange(len(classes)) + height, classes, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("fraction")
    ax.set_title("Class balance: batch vs pools")
    ax.legend(fontsize=8, loc="lower right")
    return save(fig, path)


def query_score_plot(path: Path, batch: pd.DataFrame, all_scores: dict[str, np.ndarray]) -> Path:
    """Each strategy's score over the whole pool, with the chosen candidates' scores marked."""
    fig = Figure(figsize=(6.5, 3.5))
    ax = fig.add_subplot()
    for name, scores in all_scores.items():
        ax.hist(np.asarray(scores, dtype=float), bins=50, alpha=0.5, label=f"{name} (pool)")
    for value in batch["score"].to_numpy(dtype=float):
        ax.axvline(value, color="k", alpha=0.3, lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("query score (vertical lines: chosen candidates)")
    ax.set_ylabel("pool candidates")
    ax.set_title("Query scores over the pool")
    if all_scores:
        ax.legend(fontsize=8)
    return save(fig, path)


def performance_plot(path: Path, performance: Performance) -> Path:
    scores = {"accuracy": performance.accuracy, "balanced accuracy": performance.balanced_accuracy,
              "macro-F1": performance.macro_f1}
    fig = Figure(figsize=(5, 2.5))
    ax = fig.add_subplot()
    ax.barh(list(scores), list(scores.values()), color="tab:green")
    for y, value in enumerate(scores.values()):
        ax.text(value + 0.01, y, f"{value:.2f}", va="center")
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_title(f"Current learner: {performance.n_folds}-fold CV on {performance.n_labelled} labels", fontsize=10)
    return save(fig, path)


def write_round_report(run_dir: Path, number: int, subject_set_name: str, batch: pd.DataFrame,
                       pool_predicted: np.ndarray, all_scores: dict[str, np.ndarray], labelled: np.ndarray,
                       estimator: Any, X_labelled: np.ndarray, seed: int = 0) -> Path:
    """Plots and ``report.md`` for a round's query; the upload section is appended after verification."""
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    class_balance_plot(plots / "class_balance.png", labelled, pool_predicted, batch["predicted_class"].to_numpy())
    query_score_plot(plots / "query_scores.png", batch, all_scores)
    try:
        performance = cross_validated_performance(estimator, X_labelled, labelled, seed=seed)
    except ValueError as err:  # too few labels early on
        performance, why = None, str(err)
    lines = [
        f"# glitchrun round {number}",
        "",
        f"- new subject set: **{subject_set_name}**",
        f"- labelled pool: {len(labelled)} candidates over {len(set(labelled))} classes",
        f"- unlabelled pool: {len(pool_predicted)} candidates",
        f"- batch: {len(batch)} candidates — "
        + ", ".join(f"{k}: {v}" for k, v in batch["strategy"].value_counts().items()),
        f"- batch mean predicted probability: {batch['probability'].mean():.3f}",
        "",
    ]
    if performance is not None:
        performance_plot(plots / "cv_performance.png", performance)
        lines += [f"Current learner ({performance.n_folds}-fold cross-validation on the labelled pool): "
                  f"macro-F1 **{performance.macro_f1:.3f}**, accuracy **{performance.accuracy:.3f}**, "
                  f"balanced accuracy **{performance.balanced_accuracy:.3f}**.", "",
                  "![cross-validated performance](plots/cv_performance.png)", ""]
    else:
        lines += [f"No cross-validation yet: {why}.", ""]
    lines += ["![class balance](plots/class_balance.png)", "", "![query scores](plots/query_scores.png)", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def append_upload_section(run_dir: Path, number: int, subject_set_id: str, outcome: Any,
                          query_run_dir: str | None = None) -> Path:
    """Add the verified upload's outcome to the round's report (a resumed round's report points back to
    the run that chose the batch)."""
    path = run_dir / "report.md"
    if not path.exists():
        path.write_text(f"# glitchrun round {number} (resumed)\n\nThe batch was chosen, and its report written, "
                        f"by the run in `{query_run_dir}`.\n\n")
    with path.open("a") as out:
        out.write(
            f"## Upload\n\nRound {number}: subject set {subject_set_id} verified — {len(outcome.uploaded)} uploaded, "
            f"{len(outcome.adopted)} adopted from an interrupted run, {len(outcome.skipped)} already there, "
            f"{len(outcome.failed)} failed. Details: `upload_report.csv`.\n"
        )
    return path
