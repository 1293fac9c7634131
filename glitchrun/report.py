"""The round report: plots people would rather look at than read, and a short Markdown summary.

Figures are drawn with matplotlib's object API (``Figure`` + Agg canvas), not pyplot, so reports can be
written from worker threads and parallel sweeps without a global figure state.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.base import clone
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

log = logging.getLogger(__name__)


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


def query_score_plot(path: Path, batch: pd.DataFrame) -> Path:
    """Histogram of the score each chosen candidate had under the strategy that chose it."""
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    for strategy, group in batch.groupby("strategy"):
        ax.hist(group["score"].to_numpy(dtype=float), bins=20, alpha=0.7, label=f"{strategy} ({len(group)})")
    ax.set_xlabel("query score")
    ax.set_ylabel("candidates")
    ax.set_title("Query scores of the batch")
    ax.legend(fontsize=8)
    return save(fig, path)


def cross_validated(estimator: Any, X: np.ndarray, y: np.ndarray, seed: int) -> dict | None:
    """Macro-F1, accuracy and per-class F1 of the estimator by stratified k-fold on the labelled pool."""
    counts = pd.Series(y).value_counts()
    folds = int(min(5, counts.max()))
    if folds < 2 or len(counts) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes with fewer members than folds are expected early on
        predicted = cross_val_predict(clone(estimator), X, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    classes = sorted(counts.index)
    return {
        "folds": folds,
        "macro_f1": float(f1_score(y, predicted, average="macro")),
        "accuracy": float(accuracy_score(y, predicted)),
        "per_class_f1": dict(zip(classes, f1_score(y, predicted, labels=classes, average=None, zero_division=0))),
    }


def performance_plot(path: Path, scores: dict) -> Path:
    per_class = scores["per_class_f1"]
    fig = Figure(figsize=(8, 0.25 * len(per_class) + 1.5))
    ax = fig.add_subplot()
    ax.barh(list(per_class), list(per_class.values()), color="tab:green")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (cross-validated)")
    ax.set_title(f"Current learner, {scores['folds']}-fold CV: macro-F1 {scores['macro_f1']:.2f}, "
                 f"accuracy {scores['accuracy']:.2f}", fontsize=10)
    ax.tick_params(axis="y", labelsize=8)
    return save(fig, path)


def write_round_report(run_dir: Path, number: int, subject_set_name: str, batch: pd.DataFrame,
                       pool_predicted: np.ndarray, labelled: np.ndarray, estimator: Any, X_labelled: np.ndarray,
                       seed: int = 0) -> Path:
    """Plots and ``report.md`` for a round's query; the upload section is appended after verification."""
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    class_balance_plot(plots / "class_balance.png", labelled, pool_predicted, batch["predicted_class"].to_numpy())
    query_score_plot(plots / "query_scores.png", batch)
    scores = cross_validated(estimator, X_labelled, labelled, seed)
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
    if scores is not None:
        performance_plot(plots / "cv_performance.png", scores)
        lines += [f"Current learner ({scores['folds']}-fold cross-validation on the labelled pool): "
                  f"macro-F1 **{scores['macro_f1']:.3f}**, accuracy **{scores['accuracy']:.3f}**.", "",
                  "![cross-validated performance](plots/cv_performance.png)", ""]
    else:
        lines += ["Too few labels per class for cross-validation yet.", ""]
    lines += ["![class balance](plots/class_balance.png)", "", "![query scores](plots/query_scores.png)", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def append_upload_section(run_dir: Path, number: int, subject_set_id: str, outcome: Any) -> Path:
    """Add the verified upload's outcome to the round's report."""
    path = run_dir / "report.md"
    with path.open("a") as out:
        out.write(
            f"## Upload\n\nRound {number}: subject set {subject_set_id} verified — {len(outcome.uploaded)} uploaded, "
            f"{len(outcome.skipped)} already there, {len(outcome.failed)} failed. Details: `upload_report.csv`.\n"
        )
    return path
