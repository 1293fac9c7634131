"""Simulated volunteers: a crowd of known skill that answers like Gravity Spy volunteers do.

Each volunteer has one accuracy (the chance of giving the true class on a clear-cut glitch); a wrong
answer goes, with probability ``confusion``, to a class that looks alike (a hand table of the confusions
Gravity Spy reports, e.g. Blip / Tomte / Koi_Fish), otherwise to any other class. Knowing every
volunteer's skill is what lets the tests check that a consensus method recovers the truth better than
majority vote.

Glitches are not equally clear: the ones a model finds ambiguous are often hard for people too, which is
what makes active learning cost votes. With ``difficulty`` > 0 a volunteer's chance of the true class on a
subject is ``accuracy x (1 - difficulty x ambiguity)``, where ``ambiguity = 1 - P(true class | features)``
under the synthetic generator's class densities (``glitchrun.data.synthetic.FIT``, equal priors over the
workflow's classes: how alike the glitch looks to each class, not how common each is), and the extra
mistakes go to the other classes in proportion to that posterior: where the overlap is. A simulated
campaign hands the features to the crowd in each subject's hidden ``#features`` metadata
(``hidden_features``); a subject without them is answered as a clear-cut one.

Every answer is drawn from a generator seeded by (seed, volunteer, subject), so a volunteer answers a
subject the same way whatever the order, the thread or the re-run.

``reviewers`` are project experts on top of the volunteers (accounts ``<expert_prefix>000``, ...): of
``expert_accuracy``, they do not classify the queue but review the campaign's disputed subjects in
Zooniverse's gold-standard mode (``job=crowd``).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from glitchrun.data.synthetic import FIT, LOG_FEATURES, Fit

#: the hidden subject metadata key holding a candidate's features (JSON), for the difficulty-aware crowd
FEATURES_KEY = "#features"


class SimulatedCrowd:
    """``volunteers`` accounts (``experts`` of them with ``expert_accuracy``, the rest with accuracies drawn
    from a Beta distribution of mean ``accuracy`` and standard deviation ``accuracy_sd``), and ``reviewers``
    project experts of ``expert_accuracy`` (``reviewer_logins``; their index follows the volunteers')."""

    def __init__(
        self,
        volunteers: int = 30,
        accuracy: float = 0.75,
        accuracy_sd: float = 0.1,
        experts: int = 0,
        expert_accuracy: float = 0.97,
        confusion: float = 0.7,
        similar: Sequence[Sequence[str]] = (),
        difficulty: float = 0.0,
        login_prefix: str = "volunteer",
        seed: int = 0,
        fit: Fit = FIT,
        reviewers: int = 0,
        expert_prefix: str = "expert",
    ) -> None:
        if int(volunteers) < 1 or not 0 <= int(experts) <= int(volunteers) or int(reviewers) < 0:
            raise ValueError(f"need volunteers >= 1, 0 <= experts <= volunteers and reviewers >= 0, got {volunteers}, "
                             f"{experts} and {reviewers}")
        for name, value in (("accuracy", accuracy), ("expert_accuracy", expert_accuracy), ("confusion", confusion),
                            ("difficulty", difficulty)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"crowd {name} must be in [0, 1], got {value}")
        self.seed = int(seed)
        self.confusion = float(confusion)
        self.difficulty = float(difficulty)
        self.fit = fit
        self.similar = [list(group) for group in similar]
        self.logins = [f"{login_prefix}{i:03d}" for i in range(int(volunteers))]
        self.reviewer_logins = [f"{expert_prefix}{i:03d}" for i in range(int(reviewers))]
        drawn = beta_draws(float(accuracy), float(accuracy_sd), int(volunteers) - int(experts), self.seed)
        self.accuracies = np.concatenate([np.full(int(experts), float(expert_accuracy)), drawn,
                                          np.full(int(reviewers), float(expert_accuracy))])
        self._matrices: dict[tuple[int, tuple[str, ...]], np.ndarray] = {}  # confusion_matrix, per workflow

    def confusion_matrix(self, volunteer: int, classes: Sequence[str]) -> np.ndarray:
        """P(answer = column | true class = row) for one volunteer."""
        n = len(classes)
        accuracy = self.accuracies[volunteer]
        matrix = np.zeros((n, n))
        if n == 1:
            return np.ones((1, 1))
        for i, name in enumerate(classes):
            alike = sorted({classes.index(other) for group in self.similar if name in group
                            for other in group if other != name and other in classes})
            share = self.confusion if alike else 0.0
            matrix[i] = (1.0 - accuracy) * (1.0 - share) / (n - 1)
            matrix[i, alike] += (1.0 - accuracy) * share / max(len(alike), 1)
            matrix[i, i] = accuracy
        return matrix

    def overlap(self, features: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """P(class | features) per row of ``features`` (``LOG_FEATURES`` in natural units) under the generator's
        class densities, equal priors over ``classes``; NaN rows where features are missing."""
        return self.fit.posterior(features, list(classes))

    def probabilities(self, volunteer: int, truth: str, classes: Sequence[str],
                      overlap: np.ndarray | None = None) -> np.ndarray:
        """P(answer) over ``classes`` for this volunteer on a subject of class ``truth`` whose row of
        ``overlap`` is given (``None``, a NaN row or ``difficulty`` 0: a clear-cut subject)."""
        classes = list(classes)
        if truth not in classes:
            raise ValueError(f"true class {truth!r} is not an answer of the workflow")
        t = classes.index(truth)
        key = (volunteer, tuple(classes))
        if key not in self._matrices:
            self._matrices[key] = self.confusion_matrix(volunteer, classes)
        row = self._matrices[key][t]
        if not self.difficulty or overlap is None or not np.all(np.isfinite(overlap)) or overlap[t] >= 1.0:
            return row
        elsewhere = np.where(np.arange(len(classes)) == t, 0.0, overlap)
        extra = row[t] * self.difficulty * (1.0 - overlap[t])
        row = row + extra * elsewhere / elsewhere.sum()
        row[t] -= extra
        return row

    def answer(self, volunteer: int, subject: str, truth: str, classes: Sequence[str],
               features: Mapping[str, Any] | str | None = None) -> int:
        """The index (in ``classes``) of the answer this volunteer gives for this subject; ``features`` (the
        subject's ``#features`` metadata, JSON or a mapping) make an ambiguous glitch harder."""
        values = feature_values(features)
        overlap = None if values is None or not self.difficulty else self.overlap(values, classes)[0]
        return self.draw(volunteer, subject, self.probabilities(volunteer, truth, classes, overlap))

    def draw(self, volunteer: int, subject: str, probabilities: np.ndarray) -> int:
        """An answer index drawn from the generator of (seed, volunteer, subject): order-independent."""
        return int(self.rng(volunteer, subject).choice(len(probabilities), p=probabilities))

    def order(self, subject: str) -> list[int]:
        """The volunteers in the order they come to this subject (a fixed shuffle per subject)."""
        return [int(i) for i in self.rng(-1, subject).permutation(len(self.logins))]

    def votes(self, truth: pd.Series, classes: Sequence[str], per_subject: int,
              features: pd.DataFrame | None = None) -> pd.DataFrame:
        """Offline: ``per_subject`` volunteers classify each subject (``truth``: subject id -> class);
        ``features`` (indexed by subject id, the ``LOG_FEATURES`` columns) make ambiguous subjects harder."""
        classes = list(classes)
        overlap = None
        if features is not None and self.difficulty:
            values = features.reindex(truth.index)[list(LOG_FEATURES)].to_numpy(dtype=np.float64)
            overlap = self.overlap(values, classes)
        rows = []
        for i, (subject, label) in enumerate(truth.items()):
            for v in self.order(str(subject))[:per_subject]:
                p = self.probabilities(v, label, classes, None if overlap is None else overlap[i])
                rows.append((str(subject), self.logins[v], classes[self.draw(v, str(subject), p)]))
        return pd.DataFrame(rows, columns=["subject_id", "volunteer", "label"])

    def rng(self, volunteer: int, subject: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, volunteer + 1, zlib.crc32(subject.encode())])


@dataclass(frozen=True)
class Crowd:
    """A ``crowd`` config option: who the volunteers are and how their votes become labels, chosen together
    because a consensus method is only as good as its fit to the crowd's skills."""

    volunteers: SimulatedCrowd
    consensus: Any  # a ``glitchrun.crowd.consensus.Consensus``


def hidden_features(rows: pd.DataFrame) -> list[str]:
    """Each row's ``LOG_FEATURES`` as JSON, the ``#features`` metadata a simulated campaign's round gives its
    subjects so the simulated crowd can tell ambiguous glitches (``"{}"`` for a row lacking them)."""
    present = [c for c in LOG_FEATURES if c in rows.columns]
    return [json.dumps({c: float(v) for c, v in record.items() if pd.notna(v)})
            for record in rows[present].to_dict("records")]


def feature_values(features: Mapping[str, Any] | str | None) -> np.ndarray | None:
    """``LOG_FEATURES`` of one subject from its ``#features`` metadata (JSON or a mapping), or ``None`` when
    any is missing or not a positive number (the subject then counts as clear-cut)."""
    if isinstance(features, str):
        try:
            features = json.loads(features)
        except json.JSONDecodeError:
            return None
    if not isinstance(features, Mapping):
        return None
    try:
        values = np.array([float(features[c]) for c in LOG_FEATURES])
    except (KeyError, TypeError, ValueError):
        return None
    return values if np.all(np.isfinite(values) & (values > 0)) else None


def beta_draws(mean: float, sd: float, n: int, seed: int) -> np.ndarray:
    """``n`` accuracies from a Beta of this mean and sd (all equal to ``mean`` when sd is 0 or mean is 0/1)."""
    if sd <= 0 or mean in (0.0, 1.0):
        return np.full(n, mean)
    if sd**2 >= mean * (1 - mean):
        raise ValueError(f"crowd accuracy_sd {sd} is too large for mean accuracy {mean}")
    concentration = mean * (1 - mean) / sd**2 - 1
    return np.random.default_rng([seed, 0]).beta(mean * concentration, (1 - mean) * concentration, size=n)
