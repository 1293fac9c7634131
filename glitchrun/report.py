"""The round report (``report.md`` with its plots) and the campaign views it shares with ``job=status``.

A round's report closes the loop: what volunteers said about the previous round, the learner's quality
over rounds on one fixed footing, why each candidate of the batch was chosen, and the batch itself as a
contact sheet of its Q-scans and a table. Everything is read from the campaign state (plan.md interface 1),
so a report says what the state holds.

Figures are drawn with matplotlib's object API (``Figure`` + Agg canvas), not pyplot, so reports can be
written from worker threads and parallel sweeps without a global figure state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from glitchrun.campaign.gold import STRATEGY as KNOWN_ANSWER
from glitchrun.campaign.gold import gold_answers
from glitchrun.campaign.ingest import prior_frame
from glitchrun.campaign.retire import apply_ml_weight
from glitchrun.campaign.state import ACTIVE, DISPUTED, GOLD, LABELLED, CampaignState
from glitchrun.csvio import read_csv, write_csv
from glitchrun.data.loaders import Candidates
from glitchrun.learning.learner import fixed_fold_performance
from glitchrun.learning.strategies import TIE_BREAKS

KEY = "candidate_id"
FOLDS = 5
#: which end of each strategy part's score is chosen (the part names of glitchrun.learning.strategies)
PART_ENDS = {
    "uncertainty": ("1 - probability of the predicted class", "the highest are chosen"),
    "margin": ("gap between the two most probable classes", "the lowest are chosen"),
    "entropy": ("entropy of the class probabilities (nats)", "the highest are chosen"),
    "high_probability": ("probability of the predicted class",
                         "the highest are chosen, one predicted class after another"),
    "batch_uncertainty": ("1 - probability of the predicted class",
                          "the highest are chosen, spread out by distance to labelled and chosen candidates"),
    "committee": ("disagreement of a bagged committee", "the highest are chosen"),
}
#: thumbnails per contact sheet image, in rows of SHEET_COLUMNS; cell size in inches; sheet resolution; the
#: caption's height above each thumbnail (inches). A cell 480 px wide shows a Gravity Spy Q-scan (800 x 600) at
#: about 0.57 of its size, its axis labels about 9 px high: legible at the sheet's own size
SHEET_SIZE, SHEET_COLUMNS, CELL, SHEET_DPI, CAPTION = 16, 4, (4.8, 4.3), 100, 0.62
QUALITY = "quality_over_rounds.csv"
KNOWN = "known_answer_accuracy.csv"
KNOWN_SCHEMA = pa.DataFrameSchema(
    {
        "round": pa.Column(int, pa.Check.ge(1)),
        "subjects": pa.Column(int, pa.Check.ge(1)),  # the round's subjects of known class with volunteer votes
        "answers": pa.Column(int, pa.Check.ge(1)),  # volunteers' votes on them
        "right": pa.Column(int, pa.Check.ge(0)),  # of those, the known class
        "accuracy": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
    },
    strict=True,
)
QUALITY_SCHEMA = pa.DataFrameSchema(
    {
        "round": pa.Column(int, pa.Check.ge(1)),
        "training_labels": pa.Column(int, pa.Check.ge(0)),  # labels known at that round's query
        "evaluated": pa.Column(int, pa.Check.ge(0)),  # labels scored (the same for every round)
        "macro_f1": pa.Column(float, nullable=True),
        "accuracy": pa.Column(float, nullable=True),
        "balanced_accuracy": pa.Column(float, nullable=True),
    },
    strict=True,
)


def save(fig: Figure, path: Path, **kwargs: Any) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, **{"dpi": 110, "bbox_inches": "tight", **kwargs})
    return path


def markdown_table(frame: pd.DataFrame) -> list[str]:
    """A GitHub Markdown table of ``frame`` (values as they print)."""
    rows = [[str(v) for v in row] for row in frame.itertuples(index=False)]
    return ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns),
            *("| " + " | ".join(row) + " |" for row in rows)]


# -- the campaign state, as plan.md interface 1 reads it ---------------------------------------------------
def round_subjects(state: CampaignState, number: int) -> pd.DataFrame:
    """The round's subjects (subject_id, candidate_id, status: labelled / disputed / active, votes)."""
    return state.subjects(round=number).reset_index()[["subject_id", KEY, "status", "votes", "gold_label"]]


def votes_cast(state: CampaignState, number: int) -> pd.DataFrame:
    """The round's votes (subject_id, volunteer, answer): a volunteer's first answer to a subject, as the
    consensus counts them."""
    cast = state.classifications(round=number)
    answered = cast.loc[cast["answer"].notna(), ["subject_id", "volunteer", "answer"]]
    return answered.drop_duplicates(["subject_id", "volunteer"]).reset_index(drop=True)


def round_table(state: CampaignState) -> pd.DataFrame:
    """Every round: subject set, status, size, labelled / disputed / waiting subjects, votes spent."""
    subjects, sizes = state.subjects(), state.batch_sizes()  # every round's at once: a campaign may have many
    counts = subjects.groupby(["round", "status"]).size()
    votes = subjects["votes"].fillna(0).groupby(subjects["round"]).sum()
    waiting = (subjects["status"].eq(ACTIVE) & subjects["gold_label"].isna()).groupby(subjects["round"]).sum()
    rows = []
    for r in state.rounds().itertuples():
        number = int(r.number)
        rows.append({"round": number, "subject set": f"{r.subject_set_name} ({r.subject_set_id or '-'})",
                     "status": r.status, "size": sizes.get(number, 0),
                     LABELLED: int(counts.get((number, LABELLED), 0)), DISPUTED: int(counts.get((number, DISPUTED), 0)),
                     "waiting": int(waiting.get(number, 0)), "votes": int(votes.get(number, 0))})
    columns = ["round", "subject set", "status", "size", LABELLED, DISPUTED, "waiting", "votes"]
    return pd.DataFrame(rows, columns=columns)


# -- the previous round's outcome -------------------------------------------------------------------------
@dataclass
class Outcome:
    """What volunteers made of one round's subjects."""

    number: int
    subjects: pd.DataFrame  # round_subjects
    votes: pd.DataFrame  # votes_cast of the round
    labels: pd.DataFrame  # the labels of its labelled subjects (index candidate_id; label, agreement, votes)

    def counts(self) -> dict[str, int]:
        counts = self.subjects["status"].value_counts()
        return {s: int(counts.get(s, 0)) for s in (LABELLED, DISPUTED, ACTIVE, GOLD)}

    def vote_counts(self) -> pd.Series:
        """Per subject, its votes as text, most voted first: ``Blip 2, Tomte 1``."""
        return self.votes.groupby("subject_id")["answer"].agg(
            lambda a: ", ".join(f"{c} {n}" for c, n in a.value_counts().items()))

    def top_share(self) -> pd.Series:
        """Per subject, the share of its votes that went to its most voted answer."""
        return self.votes.groupby("subject_id")["answer"].agg(lambda a: a.value_counts(normalize=True).iloc[0])


def round_outcome(state: CampaignState, number: int) -> Outcome:
    subjects = round_subjects(state, number)
    labels = state.labels()
    labelled = subjects.loc[subjects["status"] == LABELLED, KEY]
    return Outcome(number, subjects, votes_cast(state, number), labels.loc[labels.index.intersection(labelled)])


def agreement_plot(path: Path, outcome: Outcome) -> Path:
    """How far volunteers agreed: the top answer's share of each subject's votes, stacked by the subject's status."""
    fig = Figure(figsize=(5.5, 2.6))
    ax = fig.add_subplot()
    share = outcome.top_share()
    status = outcome.subjects.set_index("subject_id")["status"].reindex(share.index)
    # stacked bars of np.histogram counts: once gwpy is imported its Axes.hist refuses ragged lists of samples
    bins, bottom = np.linspace(0, 1, 21), np.zeros(20)
    for kind, colour in ((LABELLED, "tab:green"), (DISPUTED, "tab:red"), (ACTIVE, "tab:grey"), (GOLD, "tab:orange")):
        counts = np.histogram(share[status == kind].to_numpy(dtype=float), bins)[0]
        ax.bar(bins[:-1], counts, width=np.diff(bins), bottom=bottom, align="edge", color=colour, label=kind)
        bottom += counts
    ax.set_xlabel("share of a subject's votes for its most voted answer")
    ax.set_ylabel("subjects")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"Round {outcome.number}: agreement", fontsize=10)
    return save(fig, path)


def skill_plot(path: Path, skill: pd.DataFrame, confusion: dict[str, pd.DataFrame] | None, classes: Sequence[str],
               votes: pd.DataFrame) -> Path:
    """The crowd as measured: each volunteer's skill (the consensus's ``volunteer_skill_``) with the gold answers
    and votes behind it, their share of gold answers right where they have any; beside it, when the method has
    confusion matrices, the crowd's P(answer | true class) pooled over volunteers by their votes."""
    skill = skill.sort_values("skill")
    names = [str(v) for v in skill.index]
    fig = Figure(figsize=(11 if confusion else 6, max(3.0, 0.16 * len(names) + 1.2)))
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.2]) if confusion else (fig.add_subplot(), None)
    rows = np.arange(len(names))
    left.barh(rows, skill["skill"].to_numpy(dtype=float), color="tab:blue", label="estimated skill")
    on_gold = skill["gold_answers"].to_numpy(dtype=float) > 0
    gold_share = skill["gold_right"].to_numpy(dtype=float) / np.maximum(skill["gold_answers"].to_numpy(dtype=float), 1)
    left.plot(gold_share[on_gold], rows[on_gold], "D", color="tab:orange", markersize=4,
              label="share of gold answers right")
    left.set_yticks(rows, [f"{n} ({int(g)} gold / {int(v)} votes)" for n, g, v in
                           zip(names, skill["gold_answers"], skill["votes"])], fontsize=6)
    left.set_xlim(0, 1)
    left.set_xlabel("skill, from the data")
    left.set_title("Volunteers (gold answers / votes)", fontsize=10)
    left.legend(fontsize=7, loc="lower right")
    if right is not None and confusion:
        volunteers = sorted(confusion)
        n_votes = votes["volunteer"].value_counts().reindex(volunteers, fill_value=0).to_numpy(dtype=float)
        matrices = np.stack([confusion[v].reindex(index=classes, columns=classes, fill_value=0.0).to_numpy(dtype=float)
                             for v in volunteers])
        pooled = np.tensordot(n_votes / max(n_votes.sum(), 1), matrices, axes=1)
        seen = np.flatnonzero(np.isin(classes, votes["label"].unique()))
        image = right.imshow(pooled[np.ix_(seen, seen)], vmin=0, vmax=1, cmap="viridis")
        shown = [classes[i] for i in seen]
        right.set_xticks(range(len(seen)), shown, rotation=90, fontsize=6)
        right.set_yticks(range(len(seen)), shown, fontsize=6)
        right.set_xlabel("answer")
        right.set_ylabel("true class")
        right.set_title("P(answer | true class), pooled over volunteers", fontsize=10)
        fig.colorbar(image, ax=right, fraction=0.046)
    return save(fig, path)


def calibration_plot(path: Path, calibration: pd.DataFrame, cutoff: float, agreement: float,
                     calibrated: bool) -> Path:
    """Gravity Spy's sequential rule replayed on the gold subjects at each posterior cutoff t (the consensus's
    ``calibration_``): the share of the labels accepted at t that are right, against t, and the share accepted."""
    frame = calibration.sort_values("cutoff")
    t = frame["cutoff"].to_numpy(dtype=float)
    accepted = frame["accepted"].to_numpy(dtype=float)
    fig = Figure(figsize=(6, 3.6))
    ax = fig.add_subplot()
    marker = 3 if len(frame) <= 60 else 0  # a long replay reads better as lines
    ax.plot(t, frame["right"].to_numpy(dtype=float) / np.maximum(accepted, 1), "o-", markersize=marker,
            label="accepted labels right")
    ax.plot(t, accepted / np.maximum(frame["subjects"].to_numpy(dtype=float), 1), "s--", markersize=marker,
            color="tab:grey", label="gold subjects accepted")
    ax.plot([0, 1], [0, 1], ":", color="black", lw=0.8, label="right = cutoff")
    ax.axhline(agreement, color="tab:red", lw=0.8, ls="--", label=f"asked for: {agreement:g}")
    if np.isfinite(cutoff):
        ax.axvline(cutoff, color="tab:green", lw=1, label=f"cutoff used: {cutoff:.3f}")
    ax.set_xlabel("posterior a label needs (cutoff)")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Acceptance on {int(frame['subjects'].max()) if len(frame) else 0} gold subjects "
                 f"({'calibrated' if calibrated else 'not calibrated: too few gold subjects'})", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return save(fig, path)


def known_answer_accuracy(state: CampaignState, gold: pd.Series) -> pd.DataFrame:
    """Per round: how often volunteers gave the known class of the round's subjects whose class is known
    (known-answer subjects, and those an expert classified) (``KNOWN_SCHEMA``)."""
    votes = state.votes()
    rounds = state.subjects()["round"]
    votes = votes[votes["subject_id"].isin(gold.index)].assign(
        round=lambda v: v["subject_id"].map(rounds), right=lambda v: v["label"] == v["subject_id"].map(gold))
    table = votes.groupby("round").agg(subjects=("subject_id", "nunique"), answers=("right", "size"),
                                       right=("right", "sum")).reset_index()
    table["accuracy"] = table["right"] / table["answers"]
    return table.astype({"round": int, "subjects": int, "answers": int, "right": int, "accuracy": float})


def known_answer_plot(path: Path, table: pd.DataFrame) -> Path:
    fig = Figure(figsize=(6, 2.8))
    ax = fig.add_subplot()
    ax.bar(table["round"], table["accuracy"], color="tab:orange")
    for r, acc, n, m in zip(table["round"], table["accuracy"], table["answers"], table["subjects"]):
        ax.annotate(f"{acc:.0%}\n{n} answers\n{m} subjects", (r, acc), textcoords="offset points", xytext=(0, 3),
                    ha="center", fontsize=7)
    ax.set_xticks(table["round"])
    ax.set_ylim(0, 1.25)
    ax.set_yticks(np.linspace(0, 1, 5))
    ax.set_xlabel("round")
    ax.set_ylabel("volunteers' answers right")
    ax.set_title("Known-answer accuracy per round (known-answer and expert-reviewed subjects)", fontsize=9)
    return save(fig, path)


def outcome_section(plots: Path, state: CampaignState, number: int, consensus: Any, classes: Sequence[str],
                    truth: pd.Series) -> list[str]:
    """The previous round's outcome; for round 1, the seed labels."""
    if number == 1:
        labels = state.labels()
        by_source = labels["source"].value_counts()
        return ["## The seed labels", "", f"Round 1 starts from {len(labels)} labels ("
                + ", ".join(f"{n} {s}" for s, n in by_source.items()) + f") over {labels['label'].nunique()} classes.",
                ""]
    outcome = round_outcome(state, number - 1)
    counts = outcome.counts()
    lines = [f"## What volunteers said about round {number - 1}", "",
             (f"Round {number - 1} showed {len(outcome.subjects)} subjects: **{counts[LABELLED]} labelled**, "
             f"**{counts[DISPUTED]} disputed** (no consensus within the vote cap, or out of reach of one more "
             "vote: no label), "
             f"{counts[ACTIVE]} still active, {counts[GOLD]} known-answer subjects; "
             f"{int(outcome.subjects['votes'].fillna(0).sum())} votes."), ""]
    if len(outcome.labels):
        by_class = outcome.labels["label"].value_counts()
        lines += ["New labels by class: " + ", ".join(f"{c} {n}" for c, n in by_class.items()) + ".", ""]
        known = truth.reindex(outcome.labels.index).dropna()
        if len(known):
            correct = int((outcome.labels.loc[known.index, "label"] == known).sum())
            lines += [(f"In this simulation, **{correct} of {len(known)}** new labels "
                      f"({100 * correct / len(known):.0f}%) are the true class."), ""]
    if len(outcome.votes):
        agreement_plot(plots / "agreement.png", outcome)
        lines += ["![agreement](plots/agreement.png)", ""]
    disputed = outcome.subjects[outcome.subjects["status"] == DISPUTED]
    if len(disputed):
        votes = outcome.vote_counts()
        table = pd.DataFrame({"subject": disputed["subject_id"], "candidate": disputed[KEY],
                              "votes": disputed["subject_id"].map(votes).fillna("not recorded")})
        lines += [f"Disputed subjects of round {number - 1}:", "", *markdown_table(table), ""]
    lines += skill_lines(plots, state, consensus, classes)
    return lines


def skill_lines(plots: Path, state: CampaignState, consensus: Any, classes: Sequence[str]) -> list[str]:
    """The crowd as measured, from every vote and gold answer so far, with the learner's prior and vote weight as
    the retire pass runs it: each volunteer's skill, the acceptance calibrated on gold, and known-answer accuracy
    per round (``known_answer_accuracy.csv`` beside the report)."""
    votes = state.votes()  # every round's, as the consensus counts them
    if votes.empty:
        return ["Volunteer skill: the campaign state holds no votes yet.", ""]
    apply_ml_weight(consensus, state.ml_weight())  # as the retire pass runs it
    gold = gold_answers(state.known_answers(), state.votes(expert=True))
    consensus.aggregate(votes, list(classes), prior_frame(state.distributions(), classes), gold=gold)
    skill = consensus.volunteer_skill_
    skill_plot(plots / "volunteer_skill.png", skill, getattr(consensus, "confusion_", None), list(classes), votes)
    lines = ["## The crowd as measured", "",
             (f"Each volunteer's skill as {type(consensus).__name__} estimates it from all {len(votes)} votes so far, "
              f"{int(skill['gold_answers'].sum())} of them on {len(gold)} subjects of known class (known-answer "
              "subjects and experts' answers); the diamonds are the share of a volunteer's gold answers that were "
              "right:"), "", "![volunteer skill](plots/volunteer_skill.png)", ""]
    calibration = getattr(consensus, "calibration_", None)
    if calibration is not None and len(calibration):
        calibration_plot(plots / "gold_calibration.png", calibration, float(consensus.cutoff_), consensus.agreement,
                         bool(consensus.calibrated_))
        how = ("calibrated on gold" if consensus.calibrated_
               else "the configured agreement: too few gold subjects to calibrate")
        lines += [(f"Acceptance on the gold subjects: a label is accepted at posterior {consensus.cutoff_:.3f} "
                   f"({how}; asked for: right at least {consensus.agreement:g} of the time)."), "",
                  "![calibration on gold](plots/gold_calibration.png)", ""]
    table = known_answer_accuracy(state, gold)
    if len(table):
        write_csv(table, plots.parent / KNOWN, KNOWN_SCHEMA, what="known-answer accuracy")
        known_answer_plot(plots / "known_answer_accuracy.png", table)
        lines += [f"Known-answer accuracy per round (figures: `{KNOWN}`):", "",
                  "![known-answer accuracy](plots/known_answer_accuracy.png)", ""]
    return lines


# -- the learner's quality over rounds ---------------------------------------------------------------------
def quality_over_rounds(estimator: Any, X: np.ndarray, labels: pd.DataFrame, number: int) -> pd.DataFrame:
    """The learner of each round 1..number (trained on the labels known at its query: those of earlier rounds)
    scored on one fixed footing: every label the campaign holds now, out of fold, folds fixed by candidate id.

    Recomputed from the stored labels at every round (rounds x ``FOLDS`` fits), so a changed label changes
    every point alike and the points stay comparable.
    """
    known_since = labels["round"].fillna(0).to_numpy(dtype=float)  # seeds: round 0
    y = labels["label"].to_numpy(dtype=object)
    rows = []
    for k in range(1, number + 1):
        trainable = known_since < k
        try:
            p = fixed_fold_performance(estimator, X, y, list(labels.index), FOLDS, trainable)
            scores = (p.macro_f1, p.accuracy, p.balanced_accuracy)
        except ValueError:  # too few labels then to train in every fold
            scores = (np.nan, np.nan, np.nan)
        rows.append((k, int(trainable.sum()), len(y), *scores))
    return pd.DataFrame(rows, columns=list(QUALITY_SCHEMA.columns))


def quality_plot(path: Path, curve: pd.DataFrame) -> Path:
    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot()
    for column, name in (("macro_f1", "macro-F1"), ("balanced_accuracy", "balanced accuracy"),
                         ("accuracy", "accuracy")):
        ax.plot(curve["round"], curve[column], marker="o", label=name)
    ax.set_xticks(curve["round"], [f"{r}\n{n}" for r, n in zip(curve["round"], curve["training_labels"])], fontsize=8)
    ax.set_xlabel("round (labels the learner had)")
    ax.set_ylim(0, 1)
    ax.set_title(f"Learner of each round, scored on the same {curve['evaluated'].iloc[-1]} labels "
                 f"({FOLDS} folds fixed by candidate id)", fontsize=9)
    ax.legend(fontsize=8)
    return save(fig, path)


def quality_section(run_dir: Path, state: CampaignState, candidates: Candidates, estimator: Any,
                    number: int) -> list[str]:
    labels = state.labels()
    labels = labels.loc[labels.index.intersection(candidates.frame.index)]
    curve = quality_over_rounds(estimator, candidates.features(labels.index), labels, number)
    write_csv(curve, run_dir / QUALITY, QUALITY_SCHEMA, what="quality over rounds")
    quality_plot(run_dir / "plots" / "quality.png", curve)
    now = curve.iloc[-1].to_dict() | {"evaluated": int(curve["evaluated"].iloc[-1]),
                                       "training_labels": int(curve["training_labels"].iloc[-1])}
    lines = ["## The learner's quality over rounds", "",
             (f"Each round's learner is scored on the same footing: all {now['evaluated']} labels the campaign holds "
             f"now, out of fold, with {FOLDS} folds fixed by candidate id (a candidate is never scored by a model "
             "that saw it, and earlier rounds' learners are re-scored on today's labels). Beyond the seeds, these are "
             "the candidates active learning chose, harder than the pool at large: compare rounds, not campaigns."), "",
             (f"This round's learner: macro-F1 **{now['macro_f1']:.3f}**, balanced accuracy "
             f"**{now['balanced_accuracy']:.3f}**, accuracy **{now['accuracy']:.3f}** "
             f"({now['training_labels']} labels)."), ""]
    if number > 1:
        lines += ["Since the last round:", "", *changes(state, labels, curve, number), ""]
    return lines + ["![quality over rounds](plots/quality.png)", f"(figures: `{QUALITY}`)", ""]


def changes(state: CampaignState, labels: pd.DataFrame, curve: pd.DataFrame, number: int) -> list[str]:
    """What changed between the previous round's query and this one's."""
    before, now = curve.iloc[-2].to_dict(), curve.iloc[-1].to_dict()
    new = labels[labels["round"] == number - 1]
    lines = [(f"- labels: {before['training_labels']:.0f} -> {now['training_labels']:.0f} "
             f"(+{len(new)} from round {number - 1})"),
             (f"- macro-F1 on the fixed evaluation: {before['macro_f1']:.3f} -> {now['macro_f1']:.3f} "
             f"({now['macro_f1'] - before['macro_f1']:+.3f})")]
    rounds = state.rounds().set_index("number")
    changed = state.label_changes()  # recorded since the previous round chose its batch
    changed = changed[changed["old_label"].notna() & (changed["at"] >= rounds.loc[number - 1, "created_at"])]
    withdrawn = int(changed["new_label"].isna().sum())
    lines.append(f"- crowd labels changed by later votes: {len(changed) - withdrawn} relabelled, {withdrawn} withdrawn")
    if pd.notna(rounds.loc[number - 1, "ml_weight"]):
        was = rounds["ml_weight"].get(number - 2)
        lines.append(f"- weight of the learner's vote in the consensus of round {number - 1}: "
                     f"{rounds.loc[number - 1, 'ml_weight']:.2f}" + (f" (round {number - 2}: {was:.2f})"
                                                                     if pd.notna(was) else ""))
    return lines


# -- why each candidate was chosen -------------------------------------------------------------------------
def tie_note(part: str, chosen: np.ndarray, pool: np.ndarray, drawn: np.ndarray) -> str:
    """How many picks were random tie-breaks, and why picks share a score: a forest's probabilities are
    fractions of its trees' votes, so candidates often score alike; each part then ranks them by a second
    measure (``TIE_BREAKS``) and draws at random (seeded) only among candidates equal on both."""
    drawn_note = f" Random tie-breaks: {int(np.sum(drawn))} of its {len(chosen)} picks"
    values, counts = np.unique(chosen[~np.isnan(chosen)], return_counts=True)
    if not len(values) or counts.max() < 2:
        return drawn_note + "."
    value = values[counts.argmax()]
    in_pool = int((pool == value).sum())
    why = " (the two most probable classes exactly tied)" if part == "margin" and value == 0 else ""
    then = f"ranked by {TIE_BREAKS[part]}" if part in TIE_BREAKS else "drawn at random (seeded)"
    shared = (f"{in_pool} pool candidates share it, {then}" if in_pool > counts.max()
              else "no other pool candidate has it")
    return (f"{drawn_note}. {counts.max()} of them tie at {value:.3f}{why} (a forest's probabilities are "
            f"fractions of its trees' votes, so candidates often score alike); {shared}.")


def query_score_plot(path: Path, part: str, pool: np.ndarray, chosen: np.ndarray) -> Path:
    """One strategy part's score over the pool (log counts), its picks marked."""
    measure, end = PART_ENDS.get(part, ("score", "chosen ones marked"))
    fig = Figure(figsize=(6, 2.6))
    ax = fig.add_subplot()
    ax.hist(pool, bins=50, color="tab:blue", alpha=0.6, label="pool")
    ax.plot(chosen, np.full(len(chosen), 0.8), "|", color="tab:red", markersize=18, mew=1.5,
            label=f"chosen ({len(chosen)})")
    ax.set_yscale("log")
    ax.set_ylim(0.5, None)
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(measure)
    ax.set_ylabel("pool candidates")
    ax.set_title(f"{part}: {end}", fontsize=10)
    ax.legend(fontsize=8)
    return save(fig, path)


def query_section(plots: Path, batch: pd.DataFrame, all_scores: dict[str, np.ndarray]) -> list[str]:
    lines = ["## How the batch was chosen", "",
             "Each strategy part chose its share of the batch among the candidates not chosen yet: "
             + ", ".join(f"{part} {n}" for part, n in batch["strategy"].value_counts().items()) + ".", ""]
    for part, scores in all_scores.items():
        pool = np.asarray(scores, dtype=float)
        chosen = batch.loc[batch["strategy"] == part, "score"].to_numpy(dtype=float)
        drawn = batch.loc[batch["strategy"] == part, "tie_break"].to_numpy(dtype=bool)
        query_score_plot(plots / f"query_scores_{part}.png", part, pool, chosen)
        measure, end = PART_ENDS.get(part, ("score", "chosen ones marked"))
        lines += [f"**{part}** ({measure}): {end}.{tie_note(part, chosen, pool, drawn)}", "",
                  f"![{part} scores](plots/query_scores_{part}.png)", ""]
    known = batch[batch["strategy"] == KNOWN_ANSWER]
    if len(known):
        predicted = ", ".join(f"{c} {n}" for c, n in known["predicted_class"].value_counts().items())
        lines += [(f"**{len(known)} known-answer subjects** (candidates whose class is known, in a training set of "
                   "the workflow, marked `#Type: Gold` and `#Label`) measure the volunteers; their learner's vote is "
                   f"out of fold. Predicted classes: {predicted}."), ""]
    unscored = sorted(set(batch["strategy"]) - set(all_scores) - {KNOWN_ANSWER})
    if unscored:
        lines += [f"{', '.join(unscored)}: chosen without a score.", ""]
    return lines


def class_balance_plot(path: Path, labelled: np.ndarray, pool_predicted: np.ndarray,
                       batch_predicted: np.ndarray) -> Path:
    """Class fractions: labelled pool (labels), unlabelled pool and batch (predicted classes)."""
    groups = {"labelled pool": labelled, "unlabelled pool (predicted)": pool_predicted,
              "batch (predicted)": batch_predicted}
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


def write_round_report(run_dir: Path, state: CampaignState, candidates: Candidates, number: int,
                       subject_set_name: str, batch: pd.DataFrame, pool_predicted: np.ndarray,
                       all_scores: dict[str, np.ndarray], estimator: Any, consensus: Any,
                       classes: Sequence[str]) -> Path:
    """``report.md`` and its plots for a round whose batch was just chosen (before any upload): the previous
    round's outcome, the learner's quality over rounds, why each candidate was chosen. The batch's contact
    sheet and table follow with the upload (``append_upload_section``)."""
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    labels = state.labels()
    lines = [f"# glitchrun round {number}", "",
             (f"New subject set **{subject_set_name}**: {len(batch)} candidates chosen from {len(pool_predicted)} "
             f"unlabelled by a learner trained on {len(labels)} labels over {labels['label'].nunique()} classes."), "",
             *outcome_section(plots, state, number, consensus, classes, candidates.frame["truth"]),
             *quality_section(run_dir, state, candidates, estimator, number),
             *query_section(plots, batch, all_scores)]
    class_balance_plot(plots / "class_balance.png", labels["label"].to_numpy(dtype=object), pool_predicted,
                       batch["predicted_class"].to_numpy())
    lines += ["![class balance](plots/class_balance.png)", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the batch: contact sheet and table --------------------------------------------------------------------
def thumbnail_column(columns: Sequence[str]) -> str:
    """The manifest's image column closest to 1 s (``image_1s``), the duration most glitches read best at."""
    images = [c for c in columns if c.startswith("image_")]
    return min(images, key=lambda c: abs(math.log(float(c[len("image_"):].rstrip("s")))))


def contact_sheet(path: Path, images: Sequence[Path], captions: Sequence[str], ids: Sequence[str]) -> Path:
    """Thumbnails in rows of ``SHEET_COLUMNS``, each captioned; the candidate ids go in the PNG's description."""
    n = len(images)
    columns, rows = min(n, SHEET_COLUMNS), math.ceil(n / SHEET_COLUMNS)
    fig = Figure(figsize=(columns * CELL[0], rows * CELL[1]))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - CAPTION / (rows * CELL[1]),
                        hspace=CAPTION / (CELL[1] - CAPTION), wspace=0.04)
    for ax, image, caption in zip(axes, images, captions):
        ax.imshow(imread(image))
        ax.set_title(caption, fontsize=10)
    for ax in axes:
        ax.set_axis_off()
    return save(fig, path, dpi=SHEET_DPI, bbox_inches=None, metadata={"Description": " ".join(ids)})


def batch_section(run_dir: Path, subject_ids: dict[str, str]) -> list[str]:
    """Contact sheet(s) of the batch's Q-scans and the batch as a table, from the round's manifest."""
    manifest = read_csv(run_dir / "manifest.csv", what="round manifest", dtype={KEY: str})
    thumb = thumbnail_column(manifest.columns)
    captions = [f"{r[KEY]}\n{r['#predicted_class']} p={r['#probability']:.2f}\n{r['#strategy']}"
                for _, r in manifest.iterrows()]
    lines = ["## The batch", "", (f"Q-scans of {thumb[len('image_'):-1]} s (caption: candidate, predicted class and "
             "its probability, the strategy part that chose it):"), ""]
    for page, start in enumerate(range(0, len(manifest), SHEET_SIZE), start=1):
        rows = slice(start, start + SHEET_SIZE)
        name = f"plots/contact_sheet_{page}.png"
        contact_sheet(run_dir / name, [run_dir / p for p in manifest[thumb][rows]], captions[rows],
                      list(manifest[KEY][rows]))
        lines += [f"![contact sheet {page}]({name})", ""]
    images = [c for c in manifest.columns if c.startswith("image_")]
    table = pd.DataFrame({
        "candidate": manifest[KEY], "subject": manifest[KEY].map(subject_ids).fillna("-"),
        "chosen by": manifest["#strategy"], "score": manifest["#score"].map("{:.3f}".format),
        "predicted": manifest["#predicted_class"], "p": manifest["#probability"].map("{:.2f}".format),
        "Q-scans": [" ".join(f"[{c[len('image_'):]}]({r[c]})" for c in images) for _, r in manifest.iterrows()],
    })
    return lines + markdown_table(table) + [""]


def append_upload_section(run_dir: Path, number: int, subject_set_id: str, outcome: Any,
                          query_run_dir: str | None = None) -> Path:
    """Add the batch (contact sheet, table) and the verified upload's outcome to the round's report (a resumed
    round's report points back to the run that chose the batch)."""
    path = run_dir / "report.md"
    if not path.exists():
        path.write_text(f"# glitchrun round {number} (resumed)\n\nThe batch was chosen, and its report written, "
                        f"by the run in `{query_run_dir}`.\n\n")
    (run_dir / "plots").mkdir(exist_ok=True)
    lines = batch_section(run_dir, dict(outcome.subject_ids))
    with path.open("a") as out:
        out.write("\n".join(lines) + "\n")
        out.write(
            f"## Upload\n\nRound {number}: subject set {subject_set_id} verified — {len(outcome.uploaded)} uploaded, "
            f"{len(outcome.adopted)} adopted from an interrupted run, {len(outcome.skipped)} already there, "
            f"{len(outcome.failed)} failed. Details: `upload_report.csv`.\n"
        )
    return path
