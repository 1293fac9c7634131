"""Consensus retirement: glitchrun decides when a subject has votes enough, and retires it on Zooniverse.

As Gravity Spy does, a subject is retired once the posterior of one class (the configured consensus
method, with the learner's whole class distribution as the machine-learning vote) passes the threshold
with enough volunteer votes: reason ``consensus``, and its candidate gets that label. A subject that
reaches ``max_votes`` without consensus retires with reason ``other`` and is **disputed**: no training
label, listed with its votes for an expert. So is one whose next vote has less than
``min_next_vote_chance`` of getting it accepted (the consensus's one-vote look-ahead): votes volunteers
would spend on a subject they keep splitting on go to subjects one vote can settle, but never a subject
whose votes all agree unless the learner strongly disagrees. Zooniverse's own ``classification_count``
retirement stays as a safety cap above ``max_votes``; a subject Zooniverse retired first (that cap, or by
hand) is settled with the votes it has. Subjects of known class measure the volunteers (gold.py): a
known-answer subject retires with its round and gives no label; an expert's answer is its subject's label.

One pass (``ConsensusRetirement.run``): resend retirements recorded but not confirmed, sync the new
classifications, recompute every campaign subject's posterior with the gold answers, record the decisions
in the campaign state, then ask Zooniverse (``Workflow.retire_subjects``). Labels change only on new
evidence (``hold``): a retired subject is decided again only when it has new votes, a new gold answer, or
its volunteers' estimated skill moved by more than ``skill_tolerance`` since its decision; then a label
whose consensus moves to another class is replaced, one whose support falls below the cutoff is withdrawn
(disputed), a disputed subject that reaches consensus gets one; each change is recorded and logged with
its cause.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from panoptes_client import Workflow

from glitchrun.campaign.ingest import prior_frame
from glitchrun.campaign.gold import gold_answers
from glitchrun.campaign.state import ACTIVE, CROWD, DISPUTED, EXPERT, GOLD, LABELLED, CampaignState
from glitchrun.campaign.sync import SyncResult, sync_classifications
from glitchrun.campaign.tasks import TaskSpec
from glitchrun.crowd import consensus as consensus_methods
from glitchrun.crowd.consensus import ACCEPTED, LOW_AGREEMENT, TIE
from glitchrun.learning.learner import cross_validated_proba
from glitchrun.zooniverse.resources import WorkflowSpec, retired_on_server

log = logging.getLogger(__name__)

#: Zooniverse retirement reasons: by consensus, by a person (an expert's answer), or anything else
CONSENSUS, HUMAN, OTHER = "consensus", "human", "other"
#: Workflow.retire_subjects sends at most this many ids per request (panoptes-client's @batchable)
RETIRE_BATCH = 100
CHANGE_COLUMNS = ["candidate_id", "old_label", "new_label", "round", "reason"]


def out_of_fold(estimator: Any, X: np.ndarray, y: np.ndarray, classes: Sequence[str],
                seed: int = 0) -> np.ndarray | None:
    """The learner's cross-validated class distributions of the labelled pool (rows of ``y``, columns ``classes``):
    each from a model that never saw that label. None while no class has two labels to cross-validate."""
    if len(y) == 0 or np.unique(np.asarray(y), return_counts=True)[1].max() < 2:
        return None
    return cross_validated_proba(estimator, X, y, classes, seed=seed)


def fitted_ml_weight(estimator: Any, X: np.ndarray, y: np.ndarray, classes: Sequence[str], seed: int = 0,
                     proba: np.ndarray | None = None) -> float | None:
    """The weight of the learner's vote for a new round: the consensus module's ``fit_ml_weight`` on the
    labelled pool's out-of-fold probabilities (``proba``, or ``out_of_fold``), so an overconfident learner
    cannot outvote the volunteers. None (the consensus keeps its configured ``ml_weight``) while no class has
    two labels to cross-validate."""
    fit = getattr(consensus_methods, "fit_ml_weight", None)
    proba = out_of_fold(estimator, X, y, classes, seed) if proba is None else proba
    if fit is None or proba is None:
        return None
    return float(fit(proba, np.asarray(y), list(classes)))


def apply_ml_weight(consensus: Any, weight: float | None) -> None:
    """Give the consensus the learner vote's fitted weight, for methods that take one (``ml_weight``)."""
    if weight is not None and hasattr(consensus, "ml_weight"):
        consensus.ml_weight = float(weight)


def decide(subjects: pd.DataFrame, decided: pd.DataFrame, max_votes: int,
           retired_elsewhere: Mapping[str, str | None] | None = None, next_vote_chance: pd.Series | None = None,
           min_next_vote_chance: float = 0.0, gold: pd.Series | None = None, unanimous: pd.Series | None = None,
           learner_support: pd.Series | None = None, strong_disagreement: float = 0.0) -> pd.DataFrame:
    """Each subject's status if it were decided now (pure: the benchmark runs the same rule offline).

    ``subjects``: index subject_id, column ``status`` (before), and for known-answer subjects ``gold_label`` and
    ``round``; ``decided``: ``Consensus.aggregate``'s frame; ``next_vote_chance``: the consensus's
    ``next_vote_chance_`` (an active subject with enough votes but no consensus is disputed when it is below
    ``min_next_vote_chance``; NaN never is), except a subject whose votes all agree (``unanimous``: the class
    they agree on) unless the learner strongly disagrees: it gives that class less than ``strong_disagreement``
    (``learner_support``), or it outweighs every vote (the consensus would accept another class: such a subject
    is disputed, never labelled against all its votes); ``gold``: the known class of subjects (known-answer
    ones, and those an expert classified: an expert's answer is the label).
    Returns index subject_id with status, retirement_reason (for subjects retired now), votes, label (the
    label it now has, or None), source (crowd or expert), agreement, sent (retired by Zooniverse already) and
    why (for subjects retired now: the cause).
    """
    retired_elsewhere = retired_elsewhere or {}
    index = subjects.index
    decided = decided.reindex(index)
    votes = decided["votes"].fillna(0).astype(int)
    known = subjects["gold_label"].notna() if "gold_label" in subjects else pd.Series(False, index=index)
    gold = (pd.Series(np.nan, index=index, dtype=object) if gold is None else gold.reindex(index)).astype(object)
    expert = gold.notna() & ~known
    agreed = pd.Series(np.nan, index=index, dtype=object) if unanimous is None else unanimous.reindex(index)
    overruled = agreed.notna() & decided["status"].eq(ACCEPTED) & decided["consensus_label"].ne(agreed)
    accepted = decided["status"].eq(ACCEPTED) & ~expert & ~overruled
    labelled = accepted | expert
    was_active = subjects["status"].eq(ACTIVE)
    elsewhere = pd.Series(index.isin(list(retired_elsewhere)), index=index)
    chance = (pd.Series(np.nan, index=index) if next_vote_chance is None
              else next_vote_chance.reindex(index).astype(float))
    support = (pd.Series(np.nan, index=index) if learner_support is None
               else learner_support.reindex(index).astype(float))
    vetoed = agreed.notna() & ((support < float(strong_disagreement)) | overruled)
    hopeless = (decided["status"].isin([LOW_AGREEMENT, TIE]) & (chance < float(min_next_vote_chance))
                & (agreed.isna() | vetoed))
    retire_now = was_active & ~known & (labelled | (votes >= max_votes) | elsewhere | hopeless | overruled)
    retired = ~was_active | retire_now
    status = pd.Series(np.where(retired, np.where(labelled, LABELLED, DISPUTED), ACTIVE), index=index)
    # a known-answer subject retires once every other subject of its round is settled
    open_rounds = set(subjects.loc[~known & status.eq(ACTIVE), "round"]) if known.any() else set()
    settled = known & was_active & ~subjects.get("round", pd.Series(0, index=index)).isin(open_rounds)
    status[known] = np.where(settled | ~was_active, GOLD, ACTIVE)[known.to_numpy()]
    retire_now |= settled
    reason = pd.Series(np.where(accepted, CONSENSUS, np.where(expert, HUMAN, OTHER)), index=index, dtype=object)
    reason[elsewhere & was_active] = [retired_elsewhere.get(s) or OTHER for s in index[elsewhere & was_active]]
    label = np.where(status == LABELLED, np.where(expert, gold, decided["consensus_label"]), None)
    why = pd.Series(None, index=index, dtype=object)
    for subject in index[retire_now]:
        why[subject] = retirement_cause(status[subject], votes[subject], decided.loc[subject], gold[subject],
                                        bool(elsewhere[subject]), bool(vetoed[subject]), agreed[subject],
                                        support[subject], chance[subject], max_votes, min_next_vote_chance)
    return pd.DataFrame({
        "status": status,
        "retirement_reason": reason.where(retire_now, None),
        "votes": votes,
        "label": label,
        "source": np.where(status == LABELLED, np.where(expert, EXPERT, CROWD), None),
        "agreement": decided["agreement"].astype(float),
        "sent": elsewhere,
        "why": why,
    }, index=index)


def retirement_cause(status: str, votes: int, decided: pd.Series, gold: Any, elsewhere: bool,
                     vetoed: bool, agreed: Any, support: float, chance: float, max_votes: int,
                     min_next_vote_chance: float) -> str:
    """Why ``decide`` retires a subject now, in words for the log."""
    if status == GOLD:
        return "known-answer subject: every other subject of its round is settled"
    if status == LABELLED and pd.notna(gold):
        return f"an expert classified it {gold}"
    if status == LABELLED:
        return f"consensus {decided['consensus_label']} at {decided['agreement']:.2f} with {votes} votes"
    if elsewhere:
        return "Zooniverse retired it"
    if votes >= max_votes:
        return f"no consensus within the cap of {max_votes} votes"
    if vetoed:
        return (f"all {votes} votes say {agreed}, but the learner strongly disagrees (it gives {agreed} "
                f"{support:.3f}; the consensus says {decided['consensus_label']} at {decided['agreement']:.2f})")
    return f"one more vote would settle it with chance {chance:.2f} only (below {min_next_vote_chance})"


def unanimity(votes: pd.DataFrame, prior: pd.DataFrame | None) -> tuple[pd.Series, pd.Series]:
    """Per voted subject: the class all its votes agree on (NaN when they differ), and the learner's probability of
    that class (NaN without a learner's distribution)."""
    per_subject = votes.groupby("subject_id")["label"]
    agreed = per_subject.first().where(per_subject.nunique() == 1)
    support = pd.Series(np.nan, index=agreed.index)
    if prior is not None:
        rows = prior.reindex(index=agreed.index)
        for subject, cls in agreed.dropna().items():
            if cls in rows.columns:
                support[subject] = rows.at[subject, cls]
    return agreed, support


def evidence_of(subjects: pd.Index, votes: pd.DataFrame, gold: pd.Series, skill: pd.Series | None) -> dict[str, dict]:
    """What each subject's decision rests on now: its volunteer votes, its gold answer and its volunteers'
    estimated skill (the consensus's ``volunteer_skill_``)."""
    voters = votes.groupby("subject_id")["volunteer"].agg(list)
    skill = pd.Series(dtype=float) if skill is None else skill.astype(float).dropna()
    out = {}
    for subject in subjects:
        who = voters.get(subject, [])
        out[subject] = {"votes": len(who), "gold": None if pd.isna(gold.get(subject)) else str(gold[subject]),
                        "skill": {v: round(float(skill[v]), 4) for v in who if v in skill.index}}
    return out


def new_evidence(basis: dict, now: dict, tolerance: float) -> str:
    """What changed since a decision (``evidence_of`` then and now), in words; empty when nothing did beyond
    ``tolerance`` of skill."""
    causes = []
    added = now["votes"] - basis.get("votes", 0)
    if added > 0:
        causes.append(f"{added} new vote{'s' if added > 1 else ''}")
    if now["gold"] != basis.get("gold"):
        causes.append(f"an expert's answer ({now['gold']})" if now["gold"] else "its expert's answer is gone")
    then = basis.get("skill", {})
    moved = max((abs(now["skill"][v] - then[v]) for v in then if v in now["skill"]), default=0.0)
    if moved > tolerance:
        causes.append(f"its volunteers' estimated skill moved by up to {moved:.2f} (tolerance {tolerance:g})")
    return "; ".join(causes)


def hold(before: pd.DataFrame, fresh: pd.DataFrame, evidence: dict[str, dict], tolerance: float,
         labels: pd.DataFrame) -> pd.DataFrame:
    """The pass's decisions: ``fresh`` (``decide``) for subjects still active or retired now; a subject retired
    before keeps its status and label unless it has new evidence (new votes, a new gold answer, or its
    volunteers' skill moved by more than ``tolerance``), so a pass never changes a label on no evidence, nor
    back and forth. Adds ``decided`` (whether the pass decided the subject), ``cause`` (the new evidence) and
    ``evidence`` (JSON, for subjects decided retired now). ``labels``: the crowd and expert labels before the
    pass (index candidate_id; label, source)."""
    after = fresh.copy()
    after["decided"] = True
    after["cause"] = None
    after["evidence"] = None
    retired_before = before["status"].isin([LABELLED, DISPUTED])
    for subject in before.index:
        if not retired_before[subject]:
            if after.at[subject, "status"] in (LABELLED, DISPUTED):
                after.at[subject, "evidence"] = json.dumps(evidence[subject])
            continue
        stored = before.at[subject, "evidence"] if "evidence" in before else None
        cause = new_evidence(json.loads(stored), evidence[subject], tolerance) if isinstance(stored, str) else ""
        if cause:
            after.at[subject, "cause"] = cause
            after.at[subject, "evidence"] = json.dumps(evidence[subject])
            continue
        candidate = before.at[subject, "candidate_id"]
        old = labels["label"].get(candidate)
        after.loc[subject, ["status", "label", "source", "decided"]] = [
            before.at[subject, "status"], None if pd.isna(old) else old,
            None if pd.isna(old) else labels.at[candidate, "source"], False]
        if not isinstance(stored, str):  # a state from before evidence was kept: today's is its basis
            after.at[subject, "evidence"] = json.dumps(evidence[subject])
    return after


def label_changes(before: pd.DataFrame, after: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """Label changes of subjects that were already retired (``CHANGE_COLUMNS``), each with the new evidence that
    made it (``after``'s ``cause``); ``labels`` are the crowd and expert labels by candidate before the pass."""
    rows = []
    for subject in before.index[before["status"].isin([LABELLED, DISPUTED])]:
        candidate = before.at[subject, "candidate_id"]
        old, new = labels.get(candidate), after.at[subject, "label"]
        old, new = (None if pd.isna(value) else str(value) for value in (old, new))
        if old == new:
            continue
        cause = after.at[subject, "cause"] if "cause" in after else None
        if after.at[subject, "source"] == EXPERT:
            why = "labelled by an expert"
        elif old is None:
            why = "consensus reached after the subject was disputed"
        elif new is None:
            why = "withdrawn: its support fell below the cutoff"
        else:
            why = "replaced: the consensus moved"
        rows.append((candidate, old, new, int(before.at[subject, "round"]), f"{why} ({cause})" if cause else why))
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
        mine = self.subjects[(self.subjects["round"] == round) & self.subjects["gold_label"].isna()]
        active = mine[mine["status"] == ACTIVE]
        done = self.subjects[(self.subjects["retirement_reason"] == CONSENSUS) & (self.subjects["votes"] > 0)]
        typical = max(float(done["votes"].median()) if len(done) else 0.0, float(min_votes))
        needed = (np.ceil(typical) - active["votes"]).clip(lower=1, upper=(max_votes - active["votes"]).clip(lower=1))
        return len(active), len(mine), int(needed.sum())


class ConsensusRetirement:
    """One retire pass over the campaign's subjects (see the module docstring); configured by
    ``campaign.retirement`` and the crowd's consensus method."""

    def __init__(self, consensus: Any, workflow_config: Mapping[str, Any], max_votes: int, safety_cap: int,
                 min_next_vote_chance: float = 0.0, skill_tolerance: float = 0.05,
                 strong_disagreement: float = 0.0) -> None:
        if not float(skill_tolerance) >= 0.0 or not 0.0 <= float(strong_disagreement) < 1.0:
            raise ValueError("campaign.retirement.skill_tolerance must be at least 0 and strong_disagreement in "
                             f"[0, 1), got {skill_tolerance} and {strong_disagreement}")
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
        self.skill_tolerance = float(skill_tolerance)
        self.strong_disagreement = float(strong_disagreement)

    @classmethod
    def from_campaign(cls, consensus: Any, campaign: Mapping[str, Any]) -> ConsensusRetirement:
        """The pass as ``campaign.retirement`` and ``campaign.workflow`` configure it."""
        rules = campaign["retirement"]
        safety_cap = WorkflowSpec(**campaign["workflow"]).retirement_count
        return cls(consensus, campaign["workflow"], rules["max_votes"], safety_cap,
                   rules.get("min_next_vote_chance", 0.0), rules.get("skill_tolerance", 0.05),
                   rules.get("strong_disagreement", 0.0))

    @property
    def min_votes(self) -> int:
        return int(getattr(self.consensus, "min_votes", 1))

    def run(self, state: CampaignState, project_id: str, workflow: Workflow) -> PassResult:
        """Resend, sync, decide, record, retire; safe to stop anywhere and run again."""
        self.send(state, workflow)
        synced = sync_classifications(state, project_id, workflow, TaskSpec.from_workflow(workflow, self.workflow_config))
        before = state.subjects()
        active = before.index[before["status"] == ACTIVE]
        labels = state.labels()
        labels = labels[labels["source"].isin([CROWD, EXPERT])]
        after = self.decisions(state, before, retired_on_server(workflow, list(active)), labels)
        changes = label_changes(before, after, labels["label"])
        state.record_pass(after.join(before[["candidate_id", "round"]]), changes)
        newly = after[before["status"].eq(ACTIVE) & after["status"].ne(ACTIVE)]
        retired = newly["retirement_reason"].value_counts().to_dict()
        for subject, row in newly[newly["status"] != LABELLED].iterrows():
            log.info("subject %s (candidate %s) retired %s: %s", subject, before.at[subject, "candidate_id"],
                     row["status"], row["why"])
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

    def decisions(self, state: CampaignState, subjects: pd.DataFrame, retired_elsewhere: Mapping[str, str | None],
                  labels: pd.DataFrame) -> pd.DataFrame:
        """The consensus of every campaign subject from the stored votes and gold answers, turned into statuses;
        a subject retired before changes only on new evidence (``hold``)."""
        apply_ml_weight(self.consensus, state.ml_weight())
        votes = state.votes()
        gold = gold_answers(state.known_answers(), state.votes(expert=True))
        prior = prior_frame(state.distributions(), self.classes)
        decided = self.consensus.aggregate(votes, self.classes, prior, gold=gold)
        agreed, support = unanimity(votes, prior)
        fresh = decide(subjects, decided, self.max_votes, retired_elsewhere,
                       getattr(self.consensus, "next_vote_chance_", None), self.min_next_vote_chance, gold, agreed,
                       support, self.strong_disagreement)
        skill = getattr(self.consensus, "volunteer_skill_", None)
        evidence = evidence_of(subjects.index, votes, gold, None if skill is None else skill["skill"])
        return hold(subjects, fresh, evidence, self.skill_tolerance, labels)

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
