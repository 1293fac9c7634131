"""A synthetic warm start: synthetic candidates drawn from a generator refit on the campaign's own first labels
stand in for the real labels a young campaign lacks, and give way to them one for one.

The generator (``glitchrun.data.synthetic``) is refit at campaign start (``glitchrun.data.calibrate.refit_rows``)
on the labels the campaign started with (round 0: the data's known labels or, in a simulation, the seed
labels): their classes' feature centres and spreads where a class has enough of them, the v1.0 class means
otherwise, and only the detectors they come from. Later labels are left out: active learning chooses them
for being ambiguous, so they are not a fair picture of a class. The same labels give the same refit, so every
round of a campaign draws the same synthetic candidates.

How much the synthetic candidates count (``synthetic_kept``): with ``n`` real labels, the first
``max(0, N - g n)`` of the ``N`` synthetic candidates (a fixed, shuffled order) join the training set: each
real label takes the place of ``g`` (``give_way``) synthetic ones, and from ``N / g`` real labels on the
learner is exactly the cold one.

The synthetic candidates shape predictions, never the batch: a query chooses with the same estimator fitted on
the real labels alone (``glitchrun.learning.learner.chooser``), so a campaign labels the same glitches with or
without a warm start, and its learner differs from the cold one by the synthetic candidates alone.

Dropping candidates rather than lowering a sample weight, because a fully grown forest (the default learner,
``min_samples_leaf: 1``) isolates every training candidate in a leaf of its own whatever its weight: a small
weight still decides every leaf only synthetic candidates reach.

Whether they help at all is checked on the user's own rows (``helps``), at campaign start and again as real
labels grow (``WarmStarted.recheck``: each time the real labels have grown by that factor since the last check,
so a campaign pays for it a handful of times, not at every refit): the real labels are split in two halves of
each class, and each half is predicted by a learner trained on the other half with and without the synthetic
candidates (macro-F1 of both halves' predictions, the mean of ``repeats`` splits), and all of them by a learner
trained on the synthetic candidates alone. The synthetic candidates stay on while they score higher than
without (by more than ``margin``) and, alone, at least as high as half the real labels do. The second test
is the one few labels can pass or fail fairly: on 1-2 labels a class, adding any candidates of the right
classes lifts the halves' score whether or not they look like the user's glitches (on the O3a sample, whose
classes too few starting labels calibrate, so that they are drawn around the v1.0 (O1) means, the halves
gained +0.03 to +0.21 where the held-out test set lost up to 0.10), whereas a generator that does not describe
the user's run does not, alone, recognise the user's rows. Once a check fails they stay off for good: the
learner is the cold one from then on. The checks made so far (``Check``) are part of the learner's parameters,
so a campaign keeps them in its state and every later round, or the same round run again, decides as they did.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import f1_score

from glitchrun.data.calibrate import refit_rows
from glitchrun.data.loaders import Candidates, canonical
from glitchrun.data.synthetic import LOG_FEATURES, generate

log = logging.getLogger(__name__)

CHECKS_KEY = "warm_start_checks"  # the campaign state's record of the held-out checks (``checks_to_json``)


def synthetic_kept(real_labels: int, synthetic: int, give_way: int = 1) -> int:
    """How many of ``synthetic`` candidates train the learner beside ``real_labels`` real ones, each of which
    takes the place of ``give_way`` synthetic ones. Never increases as labels grow; 0 from
    ``synthetic / give_way`` real labels on."""
    return max(0, int(synthetic) - int(give_way) * int(real_labels))


@dataclass(frozen=True)
class Check:
    """One held-out check (``helps``): on how many real labels, macro-F1 without, with and from the synthetic
    candidates alone, and whether they helped (``warm > cold + margin`` and ``synthetic >= cold``)."""

    labels: int
    cold: float
    warm: float
    synthetic: float
    helped: bool


def checks_to_json(checks: tuple[Check, ...], settings: dict[str, Any]) -> str:
    """The checks as a campaign state keeps them (``CHECKS_KEY``), with the settings they were made under
    (``SyntheticWarmStart.settings``)."""
    return json.dumps({"settings": settings, "checks": [asdict(check) for check in checks]})


def checks_from_json(text: str | None, settings: dict[str, Any]) -> tuple[Check, ...]:
    """The checks a campaign state kept (``checks_to_json``); none when it kept none, or kept them under other
    ``settings``: they judged other synthetic candidates or another learner, so they are made again. A state of
    the version before settings were kept holds a bare list: its checks stand (once off, off for good)."""
    kept = json.loads(text) if text else None
    if kept is None:
        return ()
    if isinstance(kept, list):
        return tuple(Check(**check) for check in kept)
    if kept["settings"] != settings:
        log.info("warm start: the campaign's held-out checks were made with other warm_start or learner settings; "
                 "they are made again")
        return ()
    return tuple(Check(**check) for check in kept["checks"])


class WarmStarted(ClassifierMixin, BaseEstimator):
    """``estimator`` fitted on the real labels it is given plus the first ``synthetic_kept`` synthetic candidates
    (``X_synthetic``, ``y_synthetic``, in their order). A scikit-learn classifier, so modAL's learner, the
    committee strategy and cross-validation clone and refit it like the estimator it wraps.

    ``checks``: the held-out checks made so far (``Check``); once one found that the synthetic candidates do not
    help, none train the learner again. With ``recheck`` (a factor > 1), a fit on at least ``recheck`` times the
    real labels of the last check checks again first (``helps`` with ``repeats`` and ``margin``) and keeps the
    result for the fits that follow (``checks_``): a learner taught batch after batch, as modAL's is, re-checks
    itself as a campaign's rounds do."""

    def __init__(self, estimator: Any, X_synthetic: np.ndarray, y_synthetic: np.ndarray, give_way: int = 1,
                 checks: tuple[Check, ...] = (), recheck: float | None = None, repeats: int = 3,
                 margin: float = 0.0, seed: int = 0) -> None:
        self.estimator = estimator
        self.X_synthetic = X_synthetic
        self.y_synthetic = y_synthetic
        self.give_way = give_way
        self.checks = checks
        self.recheck = recheck
        self.repeats = repeats
        self.margin = margin
        self.seed = seed

    @property
    def on(self) -> bool:
        """Whether the synthetic candidates still train the learner: no check so far found they do not help."""
        return all(check.helped for check in getattr(self, "checks_", self.checks))

    def due(self, real_labels: int) -> bool:
        """Whether a fit on ``real_labels`` checks first: while on, with no check yet or ``recheck`` times
        the real labels of the last one."""
        checks = getattr(self, "checks_", self.checks)
        if not self.on:
            return False
        if not checks:
            return True
        return self.recheck is not None and real_labels >= float(self.recheck) * checks[-1].labels

    def check(self, X: np.ndarray, y: np.ndarray) -> Check:
        """The held-out check (``helps``) on these real labels, kept in ``checks_``."""
        cold, warm, synthetic = helps(self, X, y, self.seed + len(y), self.repeats)
        made = Check(len(y), round(cold, 6), round(warm, 6), round(synthetic, 6),
                     warm > cold + float(self.margin) and synthetic >= cold)
        self.checks_ = (*getattr(self, "checks_", self.checks), made)
        log.info("warm start %s: held-out check on %d real labels, half trained on the other half: macro-F1 %.3f "
                 "with the synthetic candidates, %.3f without; %.3f trained on the synthetic candidates alone%s",
                 "on" if made.helped else "off for good", made.labels, made.warm, made.cold, made.synthetic,
                 "" if made.helped else "; the learner is the cold one from now on")
        return made

    def fit(self, X: np.ndarray, y: np.ndarray) -> WarmStarted:
        if self.recheck is not None and getattr(self, "checks_", self.checks) and self.due(len(y)):
            self.check(X, y)  # a re-check: the first check is the campaign's (``SyntheticWarmStart.around``)
        kept = synthetic_kept(len(y), len(self.y_synthetic), self.give_way) if self.on else 0
        X_all = np.concatenate([np.asarray(X, dtype=np.float64), self.X_synthetic[:kept]])
        y_all = np.concatenate([np.asarray(y, dtype=object), np.asarray(self.y_synthetic[:kept], dtype=object)])
        self.estimator_ = clone(self.estimator).fit(X_all, y_all)
        self.classes_ = self.estimator_.classes_
        self.n_synthetic_ = kept
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.estimator_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.estimator_.predict(X)


def halves(labels: np.ndarray, seed: int) -> np.ndarray:
    """0 or 1 for each row, alternating within each class in a shuffled order: two halves with (to one row)
    half of each class's rows; a class of one row is all in half 0."""
    labels = np.asarray(labels, dtype=object)
    order = np.random.default_rng(seed).permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # by class, shuffled within it
    half = np.empty(len(labels), dtype=int)
    for name in np.unique(labels):
        rows = order[labels[order] == name]
        half[rows] = np.arange(len(rows)) % 2
    return half


def helps(warm: WarmStarted, X_real: np.ndarray, y_real: np.ndarray, seed: int = 0, repeats: int = 3
          ) -> tuple[float, float, float]:
    """Macro-F1 on real rows each learner did not see: cold (``warm.estimator`` alone) and warm (with as many
    synthetic candidates as ``warm`` keeps beside all of ``y_real``), each the mean of ``repeats`` splits in
    halves (``halves``: each half trains on the other, the predictions of both halves scored together); and
    synthetic alone (trained on all of ``warm``'s synthetic candidates, none of the real rows)."""
    X_real, y_real = np.asarray(X_real, dtype=np.float64), np.asarray(y_real, dtype=object)
    kept = synthetic_kept(len(y_real), len(warm.y_synthetic), warm.give_way)
    X_synthetic, y_synthetic = warm.X_synthetic[:kept], np.asarray(warm.y_synthetic[:kept], dtype=object)

    def macro_f1(predicted: np.ndarray) -> float:
        return float(f1_score(y_real.astype(str), predicted.astype(str), average="macro", zero_division=0))

    scores = np.zeros(2)
    for repeat in range(repeats):
        half = halves(y_real, seed + repeat)
        predicted = np.empty((2, len(y_real)), dtype=object)
        for test in (0, 1):
            train = half != test
            predicted[0, ~train] = clone(warm.estimator).fit(X_real[train], y_real[train]).predict(X_real[~train])
            predicted[1, ~train] = clone(warm.estimator).fit(
                np.concatenate([X_real[train], X_synthetic]), np.concatenate([y_real[train], y_synthetic])
            ).predict(X_real[~train])
        scores += [macro_f1(row) for row in predicted]
    cold, warmed = scores / repeats
    alone = clone(warm.estimator).fit(warm.X_synthetic, np.asarray(warm.y_synthetic, dtype=object)).predict(X_real)
    return float(cold), float(warmed), macro_f1(alone)


@dataclass
class SyntheticWarmStart:
    """conf/warm_start/synthetic.yaml: ``candidates`` synthetic candidates of the classes the refit generator
    knows, drawn with ``seed``, the classes in turn: however many real labels have replaced some, those left
    hold every class equally (to one candidate; see the module docstring). ``check``: the held-out check at
    start and, with ``recheck``, again each time the real labels have grown by that factor (``WarmStarted``)."""

    candidates: int = 200
    give_way: int = 1
    check: bool = True
    recheck: float | None = 1.5
    repeats: int = 3
    margin: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.candidates) < 1:
            raise ValueError(f"warm_start.candidates must be at least 1, got {self.candidates}")
        if int(self.give_way) < 1:
            raise ValueError(f"warm_start.give_way must be at least 1, got {self.give_way}")
        if self.recheck is not None and not float(self.recheck) > 1:
            raise ValueError(f"warm_start.recheck must be above 1 (or null: no re-check), got {self.recheck}")
        if int(self.repeats) < 1:
            raise ValueError(f"warm_start.repeats must be at least 1, got {self.repeats}")

    def settings(self, estimator: Any) -> dict[str, Any]:
        """What a held-out check's verdict depends on besides the real labels: the synthetic candidates (their
        number, seed, how they give way) and how they are judged (repeats, margin, the learner)."""
        return {"candidates": int(self.candidates), "give_way": int(self.give_way), "seed": int(self.seed),
                "repeats": int(self.repeats), "margin": float(self.margin), "learner": repr(estimator)}

    def synthetic(self, candidates: Candidates, start_labels: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """The synthetic candidates' features (as ``candidates`` computes its own) and classes, in the order
        they give way to real labels, from a generator refit on ``start_labels`` (candidate id -> label)."""
        rows = candidates.frame.loc[start_labels.index, ["ifo", *LOG_FEATURES]].assign(label=start_labels)
        rows = rows.dropna(subset=list(LOG_FEATURES))
        try:
            calibration = refit_rows(rows, own_detectors=True, source=f"the campaign's {len(rows)} starting labels")
        except ValueError as err:
            raise ValueError(f"warm_start: {err}; start with al.seed_per_class >= 2, or without warm_start") from err
        classes = [name for name in candidates.classes if name in calibration.fit.shapes]
        drawn = canonical(generate(int(self.candidates), self.seed, classes, calibration.fit, interleaved=True))
        log.info("warm start: %d synthetic candidates of %d classes from a generator refit on %d starting labels "
                 "(%d classes calibrated on them); each real label replaces %d of them", len(drawn), len(classes),
                 len(rows), sum(1 for name in classes if calibration.fit.shapes[name].rows), int(self.give_way))
        return candidates.feature_spec.matrix(drawn), drawn["truth"].to_numpy(dtype=object)

    def around(self, estimator: Any, candidates: Candidates, start_labels: pd.Series, labels: pd.Series | None = None,
               checks: tuple[Check, ...] = ()) -> WarmStarted:
        """``estimator`` warm-started for a campaign that began with ``start_labels``, with the held-out checks
        made so far (``checks``, e.g. kept in the campaign's state) and, when one is due on the real ``labels``
        known now (default: ``start_labels``), a new one (``WarmStarted.checks`` then holds it). Off (the cold
        learner) once a check found the synthetic candidates do not help."""
        warm = WarmStarted(estimator, *self.synthetic(candidates, start_labels), give_way=int(self.give_way),
                           checks=tuple(checks), recheck=None if self.recheck is None else float(self.recheck),
                           repeats=int(self.repeats), margin=float(self.margin), seed=int(self.seed))
        if not self.check:
            return warm.set_params(checks=(), recheck=None)
        labels = start_labels if labels is None else labels
        if warm.due(len(labels)):
            warm.check(candidates.features(labels.index), labels.to_numpy(dtype=object))
            warm.set_params(checks=warm.checks_)
            del warm.checks_
        elif not warm.on:
            log.info("warm start off: a held-out check on %d real labels found the synthetic candidates do not help",
                     next(check.labels for check in warm.checks if not check.helped))
        return warm
