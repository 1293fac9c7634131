"""What the metadata of a project's Zooniverse subjects says: which candidate a subject shows, what the learner
predicted for it, and whether its class is known (a gold-standard subject).

glitchrun's own subjects name their candidate in ``#glitchrun_key`` and carry the learner's top class in
``#predicted_class`` / ``#probability`` (``glitchrun.jobs.al_round``). An existing project has its own fields:
Gravity Spy's subjects (``Gravity-Spy/GravitySpy`` ``bin/upload``, ``gravityspy/table/events.py``) carry the glitch
id in ``subject_id`` (the ``gravityspy_id`` of its tables: the candidate id of ``data=gravityspy``), the image
files in ``Filename1``-``4``, the learner's whole class distribution in ``#ML_Posterior_<date>`` (the text of a
Python list, in a fixed class order), and gold-standard subjects ``#Type: Gold`` with their class in ``#Label``
(a choice's label in lower case, e.g. ``koi fish``: its ``API/API.py`` upper-cases it and drops spaces and
brackets to find the choice). Config group ``subjects`` says which fields to read (``conf/subjects/``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from glitchrun.zooniverse.exports import loads

#: glitchrun's own fields (``glitchrun.zooniverse.uploader.KEY_FIELD`` and the round's manifest columns)
PREDICTED, PROBABILITY = "#predicted_class", "#probability"
GOLD = "gold"


@dataclass(frozen=True)
class SubjectFields:
    """The subject metadata fields ingest reads (config group ``subjects``); None = the project has no such field.

    ``posterior_field`` is a field or the prefix of dated fields (``#ML_Posterior_20170215``: the latest date is
    read); its value is a list of probabilities, or its text, in the order of ``posterior_classes`` (None: the
    campaign's classes). A subject whose ``gold_type_field`` says ``Gold`` is a gold-standard subject of the class
    its ``gold_label_field`` names (a choice id or label in any case, or a class).
    """

    candidate_field: str | None = "#glitchrun_key"
    posterior_field: str | None = None
    posterior_classes: Sequence[str] | None = None
    gold_type_field: str | None = None
    gold_label_field: str | None = None

    def __post_init__(self) -> None:
        if self.posterior_classes is not None:  # a plain tuple: a config's list is slow to read row by row
            object.__setattr__(self, "posterior_classes", tuple(str(c) for c in self.posterior_classes))

    def candidate(self, metadata: Mapping[str, Any]) -> str | None:
        """The candidate a subject shows, by its metadata."""
        value = metadata.get(self.candidate_field) if self.candidate_field else None
        return None if value is None or str(value) == "" else str(value)

    def distribution(self, metadata: Mapping[str, Any], classes: Sequence[str]) -> np.ndarray | None:
        """The learner's class distribution stored with the subject, over ``classes`` (NaN for a class it does
        not give), or None: the posterior field, else glitchrun's top class and its probability."""
        stored = self.posterior(metadata)
        if stored is not None:
            source, target = self.placement(tuple(classes))
            if len(stored) != len(self.posterior_classes or classes):
                return None
            distribution = np.full(len(classes), np.nan)
            distribution[target] = stored[source]
            return distribution
        predicted = metadata.get(PREDICTED)
        try:
            probability = float(metadata.get(PROBABILITY))
        except (TypeError, ValueError):
            return None
        if predicted not in classes or not 0.0 <= probability <= 1.0:
            return None
        return np.array([probability if c == predicted else np.nan for c in classes], dtype=float)

    @functools.lru_cache(maxsize=8)  # noqa: B019 (a few campaigns' class lists, for the life of the fields)
    def placement(self, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Where each of the posterior's classes that is a campaign class goes: (its position in the stored list,
        its position in ``classes``)."""
        order = list(self.posterior_classes or classes)
        pairs = [(i, classes.index(c)) for i, c in enumerate(order) if c in classes]
        return np.array([i for i, _ in pairs], dtype=int), np.array([j for _, j in pairs], dtype=int)

    def posterior(self, metadata: Mapping[str, Any]) -> np.ndarray | None:
        """The probabilities of the posterior field (the latest dated one), if they read as numbers in [0, 1]."""
        if not self.posterior_field:
            return None
        dated = self.posterior_field + "_"
        fields = [k for k in metadata if k == self.posterior_field or k.startswith(dated)]
        if not fields:
            return None
        value = metadata[max(fields)]
        if isinstance(value, str):
            try:
                value = loads(value)
            except ValueError:
                return None
        try:
            numbers = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            return None
        inside = numbers.ndim == 1 and bool(((numbers >= 0.0) & (numbers <= 1.0)).all())
        return numbers if inside else None

    def gold_label(self, metadata: Mapping[str, Any]) -> str | None:
        """What a gold-standard subject's label field says (as written), or None for any other subject."""
        if not self.gold_type_field or not self.gold_label_field:
            return None
        if str(metadata.get(self.gold_type_field, "")).strip().lower() != GOLD:
            return None
        label = metadata.get(self.gold_label_field)
        return None if label is None or str(label).strip() == "" else str(label)


def squeezed(name: str) -> str:
    """A choice id, label or class in one spelling: upper case, letters and digits only (``Koi Fish``,
    ``koi_fish`` and ``KOIFISH`` alike), as Gravity Spy matches ``#Label`` to its choices."""
    return re.sub(r"[^0-9A-Z]", "", str(name).upper())


def label_classes(choices: Mapping[str, Mapping[str, Any]] | None, classes: Sequence[str]) -> dict[str, str]:
    """Every way a gold label may name a class (``squeezed``: a class, a survey choice's id or label) -> class."""
    names = {squeezed(c): str(c) for c in classes}
    for cid, choice in (choices or {}).items():
        names.setdefault(squeezed(cid), str(choice["class"]))
        if choice.get("label"):
            names.setdefault(squeezed(choice["label"]), str(choice["class"]))
    return names
