"""Consensus retirement: glitchrun decides when a subject has votes enough, and retires it on Zooniverse.

As Gravity Spy does, a subject is retired once the posterior of one class (the configured consensus
method, with the learner's whole class distribution as the machine-learning vote) passes the threshold
with enough volunteer votes: reason ``consensus``, and its candidate gets that label. A subject that
reaches ``max_votes`` without consensus retires with reason ``other`` and is **disputed**: no training
label, listed with its votes for an expert. So is one whose next vote has less than
``min_next_vote_chance`` of getting it accepted (the consensus's one-vote look-ahead): votes volunteers
would spend on a subject they keep splitting on go to subjects one vote can settle. Zooniverse's own
``classification_count`` retirement stays as a safety cap above ``max_votes``; a subject Zooniverse
retired first (that cap, or by hand) is settled with the votes it has.

One pass (``ConsensusRetirement.run``): resend retirements recorded but not confirmed, sync the new
classifications, recompute every campaign subject's posterior, record the decisions in the campaign state,
then ask Zooniverse (``Workflow.retire_subjects``). Labels follow the evidence: a labelled subject whose
consensus moves to another class gets the new label, one whose support falls below the threshold loses
it (disputed), a disputed one that reaches consensus gets one; each change is recorded and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from panoptes_client import Workflow

from glitchrun.campaign.ingest import prior_frame
from glitchrun.campaign.state import ACTIVE, DISPUTED, LABELLED, CampaignState
from glitchrun.campaign.sync import SyncResult, sync_classifications
from glitchrun.campaign.tasks import TaskSpec
from glitchrun.crowd import consensus as consensus_methods
from glitchrun.crowd.consensus import ACCEPTED, LOW_AGREEMENT, TIE
from glitchrun.learning.learner import cross_validated_proba
from glitchrun.zooniverse.resources import retired_on_server

log = logging.getLogger(__name__)

CONSENSUS, OTHER = "consensus", "other"
#: Workflow.retire_subjects sends at most this many ids per request (panoptes-client's @batchable)
RETIRE_BATCH = 100
CHANGE_COLUMNS = ["candidate_id", "old_label", "new_label", "round", "reason"]


def fitted_ml_weight(estimator: Any, X: np.ndarray, y: np.ndarray, classes: Sequence[str], seed: int = 0) -> float | None:
    """The weight of the learner's vote for a new round: the consensus module's ``fit_ml_weight`` on the
    labelled pool's out-of-fold probabilities, so an overconfident learner cannot outvote the volunteers.
    None (the consensus keeps its configured ``ml_weight``) while no class has two labels to cross-validate."""
    fit = getattr(consensus_methods, "fit_ml_weight", None)
    if fit is None or len(y) == 0 or np.unique(np.asarray(y), return_counts=True)[1].max() < 2:
        return None
    return float(fit(cross_validated_proba(estimator, X, y, classes, seed=seed), np.asarray(y), list(classes)))


def apply_ml_weight(consensus: Any, weight: float | None) -> None:
    """Give the consensus the learner vote's fitted weight, for methods that take one (``ml_weight``)."""
    if weight is not None and hasattr(consensus, "ml_weight"):
        consensus.ml_weight = float(weight)


def decide(subjects: pd.DataFrame, decided: pd.DataFrame, max_votes: int,
           retired_elsewhere: Mapping[str, str | None] | None = None, next_vote_chance: pd.Series | None = None,
           min_next_vote_chance: float = 0.0) -> pd.DataFrame:
    """Each subject's status after a pass (pure: the benchmark runs the same rule offline).

    ``subjects``: index subject_id, column ``status`` (before); ``decided``: ``Consensus.aggregate``'s frame;
    ``next_vote_chance``: the consensus's ``next_vote_chance_`` (an active subject with enough votes but no
    consensus is disputed when it is below ``min_next_vote_chance``; NaN never is).
    Returns index subject_id with status, retirement_reason (for subjects retired now), votes, label
    (the crowd label it now has, or None), agreement and sent (retired by Zooniverse already).
    """
    retired_elsewhere = retired_elsewhere or {}
    decided = decided.reindex(subjects.index)
    votes = decided["votes"].fillna(0).astype(int)
    accepted = decided["status"].eq(ACCEPTED)
    was_active = subjects["status"].eq(ACTIVE)
    elsewhere = subjects.index.isin(list(retired_elsewhere))
    chance = (pd.Series(np.nan, index=subjects.index) if next_vote_chance is None
              else next_vote_chance.reindex(subjects.index).astype(float))
    hopeless = decided["status"].isin([LOW_AGREEMENT, TIE]) & (chance < float(min_next_vote_chance))
    retire_now = was_active & (accepted | (votes >= max_votes) | elsewhere | hopeless)
    retired = ~was_active | retire_now
    status = np.where(retired, np.where(accepted, LABELLED, DISPUTED), ACTIVE)
    reason = np.where(accepted, CONSENSUS, OTHER).astype(object)
    reason = np.where(elsewhere & was_active, [retired_elsewhere.get(s) or OTHER for s in subjects.index], reason)
    return pd.DataFrame({
        "status": status,
        "retirement_reason": np.where(retire_now, reason, None),
        "votes": votes,
        "label": np.where(status == LABELLED, decided["consensus_label"], None),
        "agreement": decided["agreement"].astype(float),
        "sent": elsewhere,
    }, index=subjects.index)


def label_changes(before: pd.DataFrame, after: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """Label changes of subjects that were already retired (``CHANGE_COLUMNS``); ``labels`` are the crowd
    labels by candidate before the pass."""
    rows = []
    for subject in before.index[before["status"].ne(ACTIVE)]:
        candidate = before.at[subject, "candidate_id"]
        old, new = labels.get(candidate), after.at[subject, "label"]
        old, new = (None if pd.isna(value) else str(value) for value in (old, new))
        if old == new:
            continue
        if old is None:
            why = "consensus reached after the subject was disputed"
        elif new is None:
            why = "withdrawn: new votes took its support below the threshold"
        else:
            why = "replaced: new votes moved the consensus"
        rows.append((candidate, old, new, int(before.at[subject, "round"]), why))
    return pd.DataFrame(rows, columns=CHANGE_COLUMNS)


@dataclass
class PassResult:
    """What a retire pass did and where the campaign's subjects stand after it."""

    synced: SyncResult
    retired: dict[str, int]  # retirement reason -> subjects retired by this pass
    changes: pd.DataFrame  # label changes (CHANGE_COLUMNS)
    subjects: pd.DataFrame  # the campaign's subjects after the pass (CampaignState.subjects)

    def waiting(self, round: int, max_votes: int, min_votes: int) -> tuple[int, int, int]:
        """(subjects of the round still active, subjects in the round, about how many more votes they need).

        The estimate: each active subject needs the typical number of votes consensus took so far in this
        campaign (at least ``min_votes``) minus what it has, at least one, at most up to ``max_votes``.
        """
        mine = self.subjects[self.subjects["round"] == round]
        active = mine[mine["status"] == ACTIVE]
        done = self.subjects[(self.subjects["retirement_reason"] == CONSENSUS) & (self.subjects["votes"] > 0)]
        typical = max(float(done["votes"].median()) if len(done) else 0.0, float(min_votes))
        needed = (np.ceil(typical) - active["votes"]).clip(lower=1, upper=(max_votes - active["votes"]).clip(lower=1))
        return len(active), len(mine), int(needed.sum())


class ConsensusRetirement:
    """One retire pass over the campaign's subjects (see the module docstring); configured by
    ``campaign.retirement`` and the crowd's consensus method."""

    def __init__(self, consensus: Any, workflow_config: Mapping[str, Any], max_votes: int, safety_cap: int,
                 min_next_vote_chance: float = 0.0) -> None:
        if int(max_votes) < 1:
            raise ValueError(f"campaign.retirement.max_votes must be at least 1, got {max_votes}")
        if not 0.0 <= float(min_next_vote_chance) < 1.0:
            raise ValueError("campaign.retirement.min_next_vote_chance must be in [0, 1), got "
                             f"{min_next_vote_chance}")
        if int(safety_cap) <= int(max_votes):
            raise ValueError(f"campaign.workflow.retirement_count ({safety_cap}) must be above "
                             f"campaign.retirement.max_votes ({max_votes}): Zooniverse's own count is a safety cap "
                             "above glitchrun's consensus retirement")
        self.consensus = consensus
        self.workflow_config = workflow_config
        self.classes = list(workflow_config["classes"])
        self.max_votes = int(max_votes)
        self.safety_cap = int(safety_cap)
        self.min_next_vote_chance = float(min_next_vote_chance)

    @property
    def min_votes(self) -> int:
        return int(getattr(self.consensus, "min_votes", 1))

    def run(self, state: CampaignState, project_id: str, workflow: Workflow) -> PassResult:
        """Resend, sync, decide, record, retire; safe to stop anywhere and run again."""
        self.send(state, workflow)
        synced = sync_classifications(state, project_id, workflow, TaskSpec.from_workflow(workflow, self.workflow_config))
        before = state.subjects()
        active = before.index[before["status"] == ACTIVE]
        after = self.decisions(state, before, retired_on_server(workflow, list(active)))
        changes = label_changes(before, after, state.labels().query("source == 'crowd'")["label"])
        state.record_pass(after.join(before[["candidate_id", "round"]]), changes)
        newly = after[before["status"].eq(ACTIVE) & after["status"].ne(ACTIVE)]
        retired = newly["retirement_reason"].value_counts().to_dict()
        for change in changes.itertuples(index=False):
            old, new = ("(none)" if pd.isna(label) else label for label in (change.old_label, change.new_label))
            log.warning("label of candidate %s (round %d): %s -> %s (%s)", change.candidate_id, change.round, old, new,
                        change.reason)
        self.send(state, workflow)
        result = PassResult(synced, {str(k): int(v) for k, v in retired.items()}, changes, state.subjects())
        counts = result.subjects["status"].value_counts()
        log.info("retire pass: %s retired now; campaign subjects: %d labelled, %d disputed, %d active; "
                 "%d label changes", ", ".join(f"{n} for {r}" for r, n in result.retired.items()) or "none",
                 counts.get(LABELLED, 0), counts.get(DISPUTED, 0), counts.get(ACTIVE, 0), len(changes))
        return result

    def decisions(self, state: CampaignState, subjects: pd.DataFrame,
                  retired_elsewhere: Mapping[str, str | None]) -> pd.DataFrame:
        """The consensus of every campaign subject from the stored votes, turned into statuses."""
        apply_ml_weight(self.consensus, state.ml_weight())
        votes = state.votes()
        decided = self.consensus.aggregate(votes, self.classes, prior_frame(state.distributions(), self.classes))
        return decide(subjects, decided, self.max_votes, retired_elsewhere,
                      getattr(self.consensus, "next_vote_chance_", None), self.min_next_vote_chance)

    def send(self, state: CampaignState, workflow: Workflow) -> None:
        """Ask Zooniverse to retire what the state says is retired but not yet confirmed, one request per
        reason and hundred subjects, each marked sent once answered (a repeat retires nothing twice)."""
        pending = state.pending_retirements()
        for reason, group in pending.groupby("retirement_reason", sort=True):
            ids = group["subject_id"].tolist()
            for start in range(0, len(ids), RETIRE_BATCH):
                chunk = ids[start : start + RETIRE_BATCH]
                workflow.retire_subjects(chunk, reason=str(reason))
                state.mark_retirement_sent(chunk)
            log.info("asked Zooniverse to retire %d subjects for reason %r", len(ids), reason)
