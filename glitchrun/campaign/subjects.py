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
        """The learner's class distribution stored with one subject (``distributions``), or None."""
        found, rows = self.distributions([metadata], classes)
        return rows[0] if len(found) else None

    def distributions(self, metadatas: Sequence[Mapping[str, Any]], classes: Sequence[str]
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The learner's class distributions stored with subjects: which of ``metadatas`` have one (positions)
        and those distributions over ``classes`` (rows; NaN for a class it does not give). The posterior field,
        its numbers in [0, 1] and as many as ``posterior_classes``; else glitchrun's top class and its
        probability. Read for many subjects at once: an export's million subjects cost one array, not a million."""
        classes = tuple(classes)
        width = len(self.posterior_classes or classes)
        stored = [self.posterior_values(m) for m in metadatas]
        listed = [at for at, values in enumerate(stored) if values is not None and len(values) == width]
        numbers = numeric([stored[at] for at in listed], width)
        inside = ((numbers >= 0.0) & (numbers <= 1.0)).all(axis=1)
        source, target = self.placement(classes)
        posterior_rows = np.full((int(inside.sum()), len(classes)), np.nan)
        posterior_rows[:, target] = numbers[inside][:, source]
        found = [at for at, ok in zip(listed, inside) if ok]
        taken = set(found)
        top = [(at, row) for at, metadata in enumerate(metadatas) if at not in taken
               for row in [self.top_class(metadata, classes)] if row is not None]
        rows = np.vstack([posterior_rows, *[row[None, :] for _, row in top]]) if top else posterior_rows
        positions = np.array(found + [at for at, _ in top], dtype=np.int64)
        order = np.argsort(positions, kind="stable")
        return positions[order], rows[order]

    @staticmethod
    def top_class(metadata: Mapping[str, Any], classes: Sequence[str]) -> np.ndarray | None:
        """glitchrun's own stored prediction (top class and its probability) as a distribution, or None."""
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

    def posterior_values(self, metadata: Mapping[str, Any]) -> list | None:
        """What the posterior field (the latest dated one) holds, as a list (its text parsed), or None."""
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
        return value if isinstance(value, list) else None

    def gold_label(self, metadata: Mapping[str, Any]) -> str | None:
        """What a gold-standard subject's label field says (as written), or None for any other subject."""
        if not self.gold_type_field or not self.gold_label_field:
            return None
        if str(metadata.get(self.gold_type_field, "")).strip().lower() != GOLD:
            return None
        label = metadata.get(self.gold_label_field)
        return None if label is None or str(label).strip() == "" else str(label)


def numeric(rows: Sequence[list], width: int) -> np.ndarray:
    """Lists of ``width`` values as a float array; a row with a value that is not a number becomes NaNs (and fails
    any range check)."""
    if not rows:
        return np.zeros((0, width))
    try:
        return np.array(rows, dtype=float)
    except (TypeError, ValueError):
        return np.array([row_numbers(row, width) for row in rows])


def row_numbers(row: list, width: int) -> np.ndarray:
    try:
        return np.array(row, dtype=float)
    except (TypeError, ValueError):
        return np.full(width, np.nan)


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
