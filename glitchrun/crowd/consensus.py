"""Consensus: from volunteers' votes on a subject to one label, or to "not sure yet".

Every method computes a posterior over the classes for each subject; they differ only in how. A subject
gets a label when it has at least ``min_votes`` votes and the top class's support (``agreement``: the
vote share for majority vote, the posterior probability for the model-based methods) reaches the
method's threshold without a tie. A subject below either bar is reported, never labelled, so a wrong
crowd label cannot enter the training set just because the retirement count was reached.

Votes are a frame with columns ``subject_id``, ``volunteer`` and ``label`` (one vote per volunteer and
subject; ``glitchrun.campaign.ingest`` removes repeats). An optional ``prior`` (subjects x classes, rows summing
to 1) carries the machine-learning prediction shown to nobody but the consensus.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from crowdkit.aggregation import DawidSkene as CrowdKitDawidSkene

#: why a subject did or did not get a label (the ``status`` column of ``Consensus.aggregate``)
ACCEPTED, TOO_FEW_VOTES, LOW_AGREEMENT, TIE = "accepted", "too_few_votes", "low_agreement", "tie"


class Consensus:
    """Turns each subject's posterior into a label, or a reason why not (subclasses give the posterior)."""

    def __init__(self, min_votes: int = 3, agreement: float = 0.5) -> None:
        if int(min_votes) < 1:
            raise ValueError(f"consensus min_votes must be at least 1, got {min_votes}")
        if not 0.0 < float(agreement) <= 1.0:
            raise ValueError(f"consensus agreement threshold must be in (0, 1], got {agreement}")
        self.min_votes = int(min_votes)
        self.agreement = float(agreement)

    def posterior(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None) -> pd.DataFrame:
        """Probability of each class (columns, in ``classes`` order) for each voted subject (index)."""
        raise NotImplementedError

    def aggregate(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None = None) -> pd.DataFrame:
        """One row per voted subject (index ``subject_id``): consensus_label, agreement, votes, status."""
        classes = list(classes)
        unknown = sorted(set(votes["label"]) - set(classes))
        if unknown:
            raise ValueError(f"votes for answers that are not classes of the workflow: {unknown}")
        if votes.empty:
            return pd.DataFrame(columns=["consensus_label", "agreement", "votes", "status"],
                                index=pd.Index([], name="subject_id", dtype=str))
        posterior = self.posterior(votes, classes, prior).reindex(columns=classes, fill_value=0.0)
        counts = votes.groupby("subject_id").size().reindex(posterior.index)
        top = posterior.max(axis=1)
        tied = posterior.eq(top, axis=0).sum(axis=1) > 1
        status = np.select(
            [counts < self.min_votes, tied, top < self.agreement],
            [TOO_FEW_VOTES, TIE, LOW_AGREEMENT],
            default=ACCEPTED,
        )
        result = pd.DataFrame({
            "consensus_label": posterior.idxmax(axis=1).astype(str),
            "agreement": top.astype(float),
            "votes": counts.astype(int),
            "status": status,
        })
        result.index.name = "subject_id"
        return result


class MajorityVote(Consensus):
    """The most-voted class; ``agreement`` is its share of the subject's votes."""

    def posterior(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None) -> pd.DataFrame:
        counts = pd.crosstab(votes["subject_id"], votes["label"])
        return counts.div(counts.sum(axis=1), axis=0)


class DawidSkene(Consensus):
    """Dawid & Skene (1979) EM via crowd-kit: each volunteer's full confusion matrix is learned from the
    votes alone, so a few reliable volunteers can outvote many unreliable ones."""

    def __init__(self, min_votes: int = 2, agreement: float = 0.9, n_iter: int = 100, tol: float = 1e-5) -> None:
        super().__init__(min_votes, agreement)
        self.n_iter = int(n_iter)
        self.tol = float(tol)

    def posterior(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None) -> pd.DataFrame:
        data = votes.rename(columns={"subject_id": "task", "volunteer": "worker"})[["task", "worker", "label"]]
        with warnings.catch_warnings():  # crowd-kit 1.4 uses pandas keywords pandas 3 deprecates
            warnings.simplefilter("ignore", DeprecationWarning)
            model = CrowdKitDawidSkene(n_iter=self.n_iter, tol=self.tol).fit(data)
        probas = model.probas_.rename_axis(index="subject_id", columns=None)
        return probas.div(probas.sum(axis=1), axis=0)


class GravitySpyConsensus(Consensus):
    """Gravity Spy's weighting (Zevin et al. 2017, CQG 34 064003, section 4): a subject's posterior is the
    machine-learning prior times the likelihood of each volunteer's vote under that volunteer's
    confusion matrix; the label is accepted when the posterior reaches ``agreement`` (0.9 there).

    Gravity Spy estimates the confusion matrices from gold-standard subjects; a campaign here has none,
    so they are estimated from the votes by EM, started from and smoothed towards a volunteer of
    ``volunteer_accuracy`` (Dirichlet pseudo-counts worth ``prior_votes`` votes per class), which keeps
    a 22 x 22 matrix sensible for a volunteer with a handful of votes; each vote is counted against the
    subject's posterior without that vote, so volunteers cannot earn skill by agreeing with themselves
    (plain EM does, and then accepts split votes at a posterior near 1). Unlike Gravity Spy's reducer,
    which weights by the column-normalised matrix P(class | vote), this uses the row-normalised
    P(vote | class), the Bayes-consistent likelihood.
    """

    def __init__(self, min_votes: int = 2, agreement: float = 0.9, volunteer_accuracy: float = 0.7,
                 prior_votes: float = 2.0, n_iter: int = 50, tol: float = 1e-6) -> None:
        super().__init__(min_votes, agreement)
        if not 0.0 < float(volunteer_accuracy) < 1.0:
            raise ValueError(f"volunteer_accuracy must be in (0, 1), got {volunteer_accuracy}")
        if float(prior_votes) <= 0:
            raise ValueError(f"prior_votes must be positive, got {prior_votes}")
        self.volunteer_accuracy = float(volunteer_accuracy)
        self.prior_votes = float(prior_votes)
        self.n_iter = int(n_iter)
        self.tol = float(tol)

    def posterior(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None) -> pd.DataFrame:
        n_classes = len(classes)
        subjects, s = np.unique(votes["subject_id"].astype(str).to_numpy(), return_inverse=True)
        _, u = np.unique(votes["volunteer"].astype(str).to_numpy(), return_inverse=True)
        c = pd.Index(classes).get_indexer(votes["label"])
        log_prior = np.log(self.prior_matrix(subjects, classes, prior))
        off = (1.0 - self.volunteer_accuracy) / (n_classes - 1) if n_classes > 1 else 0.0
        pseudo = self.prior_votes * np.where(np.eye(n_classes, dtype=bool), self.volunteer_accuracy, off)
        confusion = np.broadcast_to(pseudo / pseudo.sum(axis=1, keepdims=True), (u.max() + 1, n_classes, n_classes))
        posterior = np.zeros_like(log_prior)
        for _ in range(self.n_iter):
            log_vote = np.log(confusion[u, :, c])  # P(vote c | true class) under each vote's volunteer
            log_post = log_prior.copy()
            np.add.at(log_post, s, log_vote)
            new = softmax(log_post)
            converged = np.abs(new - posterior).max() < self.tol
            posterior = new
            if converged:
                break
            # soft counts, true class (row) x vote (column), from each subject's posterior *without* the vote
            # being counted: otherwise a lone vote confirms itself and the posteriors grow overconfident
            counts = np.broadcast_to(pseudo, confusion.shape).copy()
            np.add.at(counts, (u, slice(None), c), softmax(log_post[s] - log_vote))
            confusion = counts / counts.sum(axis=2, keepdims=True)
        return pd.DataFrame(posterior, index=pd.Index(subjects, name="subject_id"), columns=list(classes))

    @staticmethod
    def prior_matrix(subjects: np.ndarray, classes: Sequence[str], prior: pd.DataFrame | None) -> np.ndarray:
        """The ML prior of each subject (uniform where there is none), floored so no class is impossible."""
        uniform = np.full((len(subjects), len(classes)), 1.0 / len(classes))
        if prior is None:
            return uniform
        known = prior.reindex(index=subjects, columns=list(classes)).to_numpy(dtype=float)
        matrix = np.where(np.isnan(known).any(axis=1, keepdims=True), uniform, known)
        matrix = np.clip(matrix, 1e-6, None)
        return matrix / matrix.sum(axis=1, keepdims=True)


def softmax(log_p: np.ndarray) -> np.ndarray:
    """Rows of log-probabilities (unnormalised) as probabilities."""
    p = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)
