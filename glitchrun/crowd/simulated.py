"""Simulated volunteers: a crowd of known skill that answers like Gravity Spy volunteers do.

Each volunteer has one accuracy (the chance of giving the true class); a wrong answer goes, with
probability ``confusion``, to a class that looks alike (a hand table of the confusions Gravity Spy
reports, e.g. Blip / Tomte / Koi_Fish), otherwise to any other class. Knowing every volunteer's skill is
what lets the tests check that a consensus method recovers the truth better than majority vote.

Every answer is drawn from a generator seeded by (seed, volunteer, subject), so a volunteer answers a
subject the same way whatever the order, the thread or the re-run.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


class SimulatedCrowd:
    """``volunteers`` accounts (``experts`` of them with ``expert_accuracy``, the rest with accuracies drawn
    from a Beta distribution of mean ``accuracy`` and standard deviation ``accuracy_sd``)."""

    def __init__(
        self,
        volunteers: int = 30,
        accuracy: float = 0.75,
        accuracy_sd: float = 0.1,
        experts: int = 0,
        expert_accuracy: float = 0.97,
        confusion: float = 0.7,
        similar: Sequence[Sequence[str]] = (),
        login_prefix: str = "volunteer",
        seed: int = 0,
    ) -> None:
        if int(volunteers) < 1 or not 0 <= int(experts) <= int(volunteers):
            raise ValueError(f"need volunteers >= 1 and 0 <= experts <= volunteers, got {volunteers} and {experts}")
        for name, value in (("accuracy", accuracy), ("expert_accuracy", expert_accuracy), ("confusion", confusion)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"crowd {name} must be in [0, 1], got {value}")
        self.seed = int(seed)
        self.confusion = float(confusion)
        self.similar = [list(group) for group in similar]
        self.logins = [f"{login_prefix}{i:03d}" for i in range(int(volunteers))]
        drawn = beta_draws(float(accuracy), float(accuracy_sd), int(volunteers) - int(experts), self.seed)
        self.accuracies = np.concatenate([np.full(int(experts), float(expert_accuracy)), drawn])

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

    def answer(self, volunteer: int, subject: str, truth: str, classes: Sequence[str]) -> int:
        """The index (in ``classes``) of the answer this volunteer gives for this subject."""
        classes = list(classes)
        if truth not in classes:
            raise ValueError(f"true class {truth!r} of subject {subject} is not an answer of the workflow")
        probabilities = self.confusion_matrix(volunteer, classes)[classes.index(truth)]
        return int(self.rng(volunteer, subject).choice(len(classes), p=probabilities))

    def order(self, subject: str) -> list[int]:
        """The volunteers in the order they come to this subject (a fixed shuffle per subject)."""
        return [int(i) for i in self.rng(-1, subject).permutation(len(self.logins))]

    def votes(self, truth: pd.Series, classes: Sequence[str], per_subject: int) -> pd.DataFrame:
        """Offline: ``per_subject`` volunteers classify each subject (``truth``: subject id -> class)."""
        rows = [
            (str(subject), self.logins[v], classes[self.answer(v, str(subject), label, classes)])
            for subject, label in truth.items()
            for v in self.order(str(subject))[:per_subject]
        ]
        return pd.DataFrame(rows, columns=["subject_id", "volunteer", "label"])

    def rng(self, volunteer: int, subject: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, volunteer + 1, zlib.crc32(subject.encode())])


@dataclass(frozen=True)
class Crowd:
    """A ``crowd`` config option: who the volunteers are and how their votes become labels, chosen together
    because a consensus method is only as good as its fit to the crowd's skills."""

    volunteers: SimulatedCrowd
    consensus: Any  # a ``glitchrun.crowd.consensus.Consensus``


def beta_draws(mean: float, sd: float, n: int, seed: int) -> np.ndarray:
    """``n`` accuracies from a Beta of this mean and sd (all equal to ``mean`` when sd is 0 or mean is 0/1)."""
    if sd <= 0 or mean in (0.0, 1.0):
        return np.full(n, mean)
    if sd**2 >= mean * (1 - mean):
        raise ValueError(f"crowd accuracy_sd {sd} is too large for mean accuracy {mean}")
    concentration = mean * (1 - mean) / sd**2 - 1
    return np.random.default_rng([seed, 0]).beta(mean * concentration, (1 - mean) * concentration, size=n)
