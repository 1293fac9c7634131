"""Training (known-answer) subject sets of a workflow, and how the server treats them.

A workflow's ``configuration.training_set_ids`` names its training sets (``app/models/workflow.rb``
``#training_set_ids``: the configured ids as integers, zeros dropped, kept only if linked to the workflow;
a single id counts as a one-element list, Ruby's ``Array.wrap``). Their subjects are left out of the
workflow's counts (``app/counters/workflow_counter.rb``: subjects, retired subjects and classifications are
summed over ``non_training_subject_sets``), so a workflow is finished once its other subjects are retired.

Who is shown them: zooniverse.org's subject selector is Designator (the workflow's default
``subject_selection_strategy``, ``Workflow#subject_selector``), whose ``lib/designator/streams/training.ex``
(zooniverse/designator) splits a logged-in volunteer's queue into a training stream and the rest: each
subject of the queue comes from the training sets with chance ``training_chances[n]`` (n = subjects the
volunteer has seen in the workflow) or, past the end of that list, ``training_default_chance`` (0 when
unset), and from the other stream when one of the two runs dry. Anonymous volunteers get no training
directives. When nothing is left (``lib/subjects/fallback_selection.rb``) a tenth of the fallback queue
(rounded) comes from the training sets.
"""

from __future__ import annotations

import json
import random
import sqlite3
from typing import Any

#: the workflow's training set ids as the model reads them (CAST is Ruby's ``to_i``: "12" -> 12, "x" -> 0)
TRAINING_SETS = ("SELECT CAST(j.value AS INTEGER) FROM workflows w, "
                 "json_each(w.attrs, '$.configuration.training_set_ids') j WHERE w.id = ?")
#: ``FallbackSelection.num_training_subjects_denominator``: the fallback queue holds 1/10 training subjects
FALLBACK_TRAINING_DENOMINATOR = 10


def training_subjects(db: sqlite3.Connection, workflow_id: int) -> set[int]:
    """The subjects of the workflow's training sets (linked to it), as ``Workflow#training_set_ids`` reads them."""
    return {r[0] for r in db.execute(
        "SELECT sms.subject_id FROM set_member_subjects sms JOIN workflow_subject_sets wss "
        f"ON wss.subject_set_id = sms.subject_set_id WHERE wss.workflow_id = ? AND wss.subject_set_id IN "
        f"({TRAINING_SETS})", (workflow_id, workflow_id))}


def training_chance(configuration: dict[str, Any], seen: int) -> float:
    """Designator's chance that the next subject of a volunteer who has seen ``seen`` subjects is a training one."""
    chances = configuration.get("training_chances") or []
    chance = chances[seen] if isinstance(chances, list) and seen < len(chances) else \
        configuration.get("training_default_chance") or 0
    return min(max(float(chance), 0.0), 1.0)


def designator_queue(training: list[int], other: list[int], size: int, chance: float) -> list[int]:
    """``size`` subjects drawn as Designator interleaves two shuffled streams: each pick from ``training`` with
    ``chance`` (from the other stream when one is empty), without repeats."""
    training, other = random.sample(training, len(training)), random.sample(other, len(other))
    queue: list[int] = []
    while len(queue) < size and (training or other):
        stream = training if training and (not other or random.random() < chance) else other
        queue.append(stream.pop())
    return queue


def fallback_queue(members: list[int], training: set[int], limit: int) -> list[int]:
    """``FallbackSelection#fallback_selection``: up to ``limit`` subjects of the workflow, seen or retired alike;
    when it has training subjects, a tenth of ``limit`` (rounded) of them and the rest others, shuffled."""
    others = [s for s in members if s not in training]
    trainers = [s for s in members if s in training]
    training_limit = int(limit / FALLBACK_TRAINING_DENOMINATOR + 0.5) if trainers else 0
    chosen = (random.sample(others, min(limit - training_limit, len(others)))
              + random.sample(trainers, min(training_limit, len(trainers))))
    return random.sample(chosen, len(chosen))


def configuration_of(workflow: sqlite3.Row) -> dict[str, Any]:
    configuration = json.loads(workflow["attrs"]).get("configuration") or {}
    return configuration if isinstance(configuration, dict) else {}
