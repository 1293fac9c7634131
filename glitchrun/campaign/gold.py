"""Known answers: the subjects whose class glitchrun knows, which measure the volunteers.

Gravity Spy does not trust an unmeasured crowd, and Zooniverse has two mechanisms for it; glitchrun uses both.

- **Known-answer subjects in every batch** (``campaign.gold.share`` of it). Candidates of known class (labels
  of the data, the seed labels of a simulated campaign, or experts' answers from earlier rounds) go to a
  second subject set of the round, a *training set* of the workflow (its ``configuration.training_set_ids``):
  Zooniverse leaves those out of the workflow's counts (``app/counters/workflow_counter.rb``) and its
  selector serves them with chance ``training_default_chance`` (Designator's
  ``lib/designator/streams/training.ex``; glitchrun sets it to the share). They carry Gravity Spy's marks for
  gold images, ``#Type: Gold`` and ``#Label: <class>`` (``bin/modify_subject``, ``gravityspy/api/project.py``
  of Gravity-Spy/GravitySpy), hidden from volunteers by the ``#`` prefix. Their votes measure each volunteer;
  their candidate keeps the label it had (it never becomes a training label twice), and they retire, with
  reason ``other``, once every other subject of their round is settled.
- **Expert review.** Accounts holding the ``expert`` role of the project classify disputed subjects in
  Zooniverse's gold-standard mode (``gold_standard: true``, which the server takes only from the project's
  owners and experts, ``app/models/concerns/classification_validator.rb``, and never counts towards
  retirement, ``app/counters/subject_workflow_counter.rb``). The API does not show that flag (the
  classification serializer has no ``gold_standard``; ``GET /classifications/gold_standard`` lists only a
  historical snapshot), so the sync tells an expert's classification by its author's role. Their answer is
  the subject's label (source ``expert``) and a gold answer for measuring the volunteers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from panoptes_client import Workflow

from glitchrun.zooniverse.resources import project_roles

log = logging.getLogger(__name__)

#: the project role whose classifications are expert answers (Zooniverse's gold-standard mode)
EXPERT_ROLE = "expert"
#: label sources whose candidates may be shown as known answers (never the crowd's own labels)
KNOWN_SOURCES = ("data", "seed", "expert")
#: Gravity Spy's hidden metadata marks of a gold image, and the batch's strategy name for them
TYPE_KEY, LABEL_KEY, GOLD_TYPE = "#Type", "#Label", "Gold"
STRATEGY = "known_answer"


def known_count(share: float, batch_size: int) -> int:
    """Known-answer subjects in a batch of ``batch_size``: ``share`` of it, rounded half up, leaving at least
    one subject for the learner to choose."""
    if not 0.0 <= float(share) < 1.0:
        raise ValueError(f"campaign.gold.share must be in [0, 1), got {share}")
    return min(int(float(share) * batch_size + 0.5), max(batch_size - 1, 0))


def choose_known(labels: pd.DataFrame, candidates: pd.Index, uses: pd.Series, n: int, seed: int) -> pd.Series:
    """``n`` candidates of known class (``KNOWN_SOURCES`` labels of ``candidates``) as known answers (candidate id
    -> class): one class after another in a random order, within a class the least shown first (``uses``),
    ties drawn at random (seeded)."""
    known = labels[labels["source"].isin(KNOWN_SOURCES)]
    known = known.loc[known.index.intersection(candidates)]
    if n <= 0 or known.empty:
        return pd.Series(dtype=object)
    rng = np.random.default_rng([seed, 21])
    order = {c: i for i, c in enumerate(rng.permutation(sorted(known["label"].unique())))}
    frame = pd.DataFrame({"label": known["label"], "uses": uses.reindex(known.index).fillna(0).to_numpy(),
                          "draw": rng.random(len(known))}, index=known.index)
    frame = frame.sort_values(["uses", "draw"])
    frame["turn"] = frame.groupby("label").cumcount()
    frame["class_order"] = frame["label"].map(order)
    return frame.sort_values(["turn", "class_order"])["label"].head(n)


def gold_answers(known: pd.Series, expert_votes: pd.DataFrame) -> pd.Series:
    """Every subject's known class (subject_id -> class): a known-answer subject's, else its experts' answer
    (the one most of them gave; on a tie, the first given)."""
    if expert_votes.empty:
        experts = pd.Series(dtype=object)
    else:
        votes = expert_votes.reset_index(drop=True)
        votes["given"] = votes.groupby(["subject_id", "label"])["label"].transform("size")
        first = votes.sort_values("given", ascending=False, kind="stable").drop_duplicates("subject_id")
        experts = first.set_index("subject_id")["label"]
    answers = pd.concat([known, experts[~experts.index.isin(known.index)]])
    return answers.astype(object).rename_axis("subject_id")


def expert_accounts(project_id: str | int) -> set[str]:
    """Ids of the accounts holding the project's expert role."""
    return {user for user, roles in project_roles(project_id).items() if EXPERT_ROLE in roles}


def known_set_name(batch_set_name: str) -> str:
    """The round's training subject set, named after its batch's set."""
    return f"{batch_set_name}-known-answers"


def use_training_sets(workflow: Workflow, set_ids: Sequence[str], chance: float) -> bool:
    """Make the subject sets training sets of the workflow (``configuration.training_set_ids``, keeping those it
    has) shown with chance ``chance`` (``training_default_chance``); the rest of the configuration is kept.
    Returns whether the workflow changed."""
    fresh = Workflow.find(workflow.id)  # the record's own ETag: one read from a list is stale for an update
    configuration: dict[str, Any] = dict(fresh.configuration or {})
    have = configuration.get("training_set_ids") or []
    have = [int(i) for i in (have if isinstance(have, list) else [have])]
    wanted = sorted(set(have) | {int(i) for i in set_ids})
    if wanted == sorted(have) and configuration.get("training_default_chance") == chance:
        return False
    fresh.configuration = {**configuration, "training_set_ids": wanted, "training_default_chance": chance}
    fresh.save()
    log.info("workflow %s: training sets %s, shown with chance %.2g", workflow.id, wanted, chance)
    return True
