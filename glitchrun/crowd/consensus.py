"""Consensus: from volunteers' votes on a subject to one label, or to "not sure yet".

Every method computes a posterior over the classes for each subject; they differ only in how. A subject
gets a label when it has at least ``min_votes`` volunteer votes and the top class's support (``agreement``:
the vote share for majority vote, the posterior probability for the model-based methods) reaches the
method's threshold without a tie. A subject below either bar is reported, never labelled, so a wrong
crowd label cannot enter the training set just because the retirement count was reached.

Interface (used by the campaign loop, ``glitchrun.campaign``, and the round report):

- ``Consensus.aggregate(votes, classes, prior=None) -> DataFrame``: one row per voted subject (index
  ``subject_id``) with ``consensus_label``, ``agreement``, ``votes`` (volunteer votes) and ``status``
  (``ACCEPTED``, ``TOO_FEW_VOTES``, ``LOW_AGREEMENT``, ``TIE``). ``Consensus.posterior(votes, classes,
  prior=None)`` gives the whole posterior (subjects x classes, rows summing to 1).
- ``votes``: columns ``subject_id``, ``volunteer``, ``label``; one vote per volunteer and subject
  (``glitchrun.campaign.ingest`` removes repeats), in the order they were cast.
- ``prior``: the learner's whole predicted class distribution per subject (index subject_id, columns the
  classes, rows summing to 1), recorded when the batch was chosen. It is the machine-learning vote: the
  model-based methods use it in place of the class prior, as ``p ** ml_weight`` renormalised (each
  probability floored at ``PRIOR_FLOOR`` first, so the learner never rules a class out). Majority vote
  counts volunteers only. ``fit_ml_weight(proba, y, classes)`` fits ``ml_weight`` by maximum likelihood on
  cross-validated probabilities of the labelled pool, so an overconfident learner is tempered before it
  can outvote the volunteers; set it on the consensus object (``consensus.ml_weight = w``) each round.
- After ``posterior``/``aggregate`` the model-based methods expose ``confusion_`` (volunteer ->
  DataFrame, true class rows x answer columns, P(answer | true class)), ``class_prior_`` (Series),
  ``n_iter_`` and ``converged_``.
- After ``aggregate``, ``next_vote_chance_`` (Series by subject): the chance that one more vote, from a
  volunteer typical of the crowd, gets the subject accepted (NaN for majority vote, which has no model of
  the volunteers); the retire pass disputes a subject early when it is too low (``min_next_vote_chance``).
- ``sequential_labels(consensus, votes, classes, prior=None, max_votes=...)``: Gravity Spy's retirement
  rule offline: each subject takes its votes one at a time, in order, until it is accepted (posterior at
  the threshold with at least ``min_votes`` volunteer votes) or reaches ``max_votes``.

The model-based methods (``DawidSkene`` and ``GravitySpyConsensus``, the same EM under Gravity Spy's name)
give each volunteer a confusion matrix with a Dirichlet prior worth ``prior_votes`` votes, centred on a
volunteer of ``volunteer_accuracy`` (so one seen a few times counts as such a volunteer, neither perfect nor
useless), estimate the class prior with ``class_prior_votes`` pseudo-votes per class, judge each vote by the
other votes on its subject (``leave_one_out``, which keeps them calibrated with 2 or 3 votes), and stop when
no posterior moves by more than ``tol``. Figures: BENCHMARKS.md, "Consensus".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

log = logging.getLogger(__name__)

#: why a subject did or did not get a label (the ``status`` column of ``Consensus.aggregate``)
ACCEPTED, TOO_FEW_VOTES, LOW_AGREEMENT, TIE = "accepted", "too_few_votes", "low_agreement", "tie"
#: the least probability the learner's vote gives a class (before ``ml_weight``): a random forest says 0 often
PRIOR_FLOOR = 1e-3


class Consensus:
    """Turns each subject's posterior into a label, or a reason why not (subclasses give the posterior)."""

    def __init__(self, min_votes: int = 3, agreement: float = 0.5, ml_weight: float = 1.0) -> None:
        if int(min_votes) < 1:
            raise ValueError(f"consensus min_votes must be at least 1, got {min_votes}")
        if not 0.0 < float(agreement) <= 1.0:
            raise ValueError(f"consensus agreement threshold must be in (0, 1], got {agreement}")
        if float(ml_weight) < 0:
            raise ValueError(f"consensus ml_weight must be at least 0, got {ml_weight}")
        self.min_votes = int(min_votes)
        self.agreement = float(agreement)
        self.ml_weight = float(ml_weight)

    def posterior(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None = None
                  ) -> pd.DataFrame:
        """Probability of each class (columns, in ``classes`` order) for each voted subject (index)."""
        raise NotImplementedError

    def aggregate(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None = None) -> pd.DataFrame:
        """One row per voted subject (index ``subject_id``): consensus_label, agreement, votes, status."""
        classes = list(classes)
        unknown = sorted(set(votes["label"]) - set(classes))
        if unknown:
            raise ValueError(f"votes for answers that are not classes of the workflow: {unknown}")
        if votes.empty:
            self.next_vote_chance_ = pd.Series(dtype=float)
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
        self.next_vote_chance_ = self.next_vote_chance(posterior, counts)
        result = pd.DataFrame({
            "consensus_label": posterior.idxmax(axis=1).astype(str),
            "agreement": top.astype(float),
            "votes": counts.astype(int),
            "status": status,
        })
        result.index.name = "subject_id"
        return result

    def next_vote_chance(self, posterior: pd.DataFrame, counts: pd.Series) -> pd.Series:
        """Chance that one more vote gets each subject accepted; NaN: this method cannot tell."""
        return pd.Series(np.nan, index=posterior.index)


class MajorityVote(Consensus):
    """The most-voted class; ``agreement`` is its share of the subject's votes (the learner does not vote)."""

    def posterior(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None = None
                  ) -> pd.DataFrame:
        counts = pd.crosstab(votes["subject_id"], votes["label"])
        return counts.div(counts.sum(axis=1), axis=0)


class DawidSkene(Consensus):
    """Dawid & Skene (1979): every volunteer has a confusion matrix P(answer | true class), learned with the
    class prior from the votes by EM; a subject's posterior is the class prior (or the learner's vote) times
    the likelihood of each of its answers.

    Fitted as a MAP estimate, for few votes per volunteer and subject:

    - each row of a volunteer's matrix has a Dirichlet prior worth ``prior_votes`` votes, centred on a
      volunteer of ``volunteer_accuracy`` whose mistakes spread evenly: a volunteer seen a few times counts
      as such a volunteer, neither perfect nor useless (Gravity Spy promotes volunteers at 0.7 accuracy);
    - the class prior has ``class_prior_votes`` pseudo-votes per class;
    - ``leave_one_out``: each vote is counted, for its volunteer's matrix, against the subject's posterior
      *without* that vote (the other votes judge it, as a gold standard would). Counted against the full
      posterior (the 1979 rule), a vote confirms itself: with 2 or 3 votes a subject the volunteers split
      on is accepted at a posterior near 1 and the method is overconfident;
    - iterations stop when no posterior moves by more than ``tol`` (``n_iter_``, ``converged_``).

    Two opt-in terms for a crowd that errs on ambiguous glitches (off by default; BENCHMARKS.md, "Campaign
    loop", for what they buy and cost):

    - ``difficulty`` (GLAD-like, Whitehill et al. 2009, with the difficulty read from the learner): on a
      subject the learner's weighted vote ``q`` finds ambiguous, a volunteer's would-be-right answer goes,
      with chance ``difficulty x (1 - q[true class])``, to a class drawn from ``q``: errors that the learner
      shares are then expected, not read as independent evidence;
    - ``pool_votes``: each volunteer's Dirichlet prior is centred on the crowd's pooled matrix (itself with
      ``pool_votes`` pseudo-votes per row of the even one) instead of on evenly spread mistakes, so the
      look-alike classes the whole crowd confuses are learned once, from every vote.

    ``prior_votes=0, class_prior_votes=0, leave_one_out=False`` is the plain maximum-likelihood EM
    (crowd-kit's ``DawidSkene``, which a test compares it with).
    """

    def __init__(self, min_votes: int = 2, agreement: float = 0.9, ml_weight: float = 1.0,
                 volunteer_accuracy: float = 0.7, prior_votes: float = 10.0, class_prior_votes: float = 1.0,
                 leave_one_out: bool = True, max_iter: int = 300, tol: float = 1e-5, difficulty: float = 0.0,
                 pool_votes: float | None = None) -> None:
        super().__init__(min_votes, agreement, ml_weight)
        if not 0.0 <= float(difficulty) <= 1.0:
            raise ValueError(f"consensus difficulty must be in [0, 1], got {difficulty}")
        if pool_votes is not None and float(pool_votes) < 0:
            raise ValueError(f"consensus pool_votes must be at least 0, got {pool_votes}")
        if not 0.0 < float(volunteer_accuracy) < 1.0:
            raise ValueError(f"volunteer_accuracy must be in (0, 1), got {volunteer_accuracy}")
        if float(prior_votes) < 0 or float(class_prior_votes) < 0:
            raise ValueError(f"prior_votes and class_prior_votes must be at least 0, got {prior_votes}, "
                             f"{class_prior_votes}")
        if int(max_iter) < 1 or not float(tol) > 0:
            raise ValueError(f"max_iter must be at least 1 and tol positive, got {max_iter}, {tol}")
        self.volunteer_accuracy = float(volunteer_accuracy)
        self.prior_votes = float(prior_votes)
        self.class_prior_votes = float(class_prior_votes)
        self.leave_one_out = bool(leave_one_out)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.difficulty = float(difficulty)
        self.pool_votes = None if pool_votes is None else float(pool_votes)

    def posterior(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None = None
                  ) -> pd.DataFrame:
        classes = list(classes)
        k = len(classes)
        subjects, s = np.unique(votes["subject_id"].astype(str).to_numpy(), return_inverse=True)
        volunteers, u = np.unique(votes["volunteer"].astype(str).to_numpy(), return_inverse=True)
        c = pd.Index(classes).get_indexer(votes["label"])
        by_subject = sparse.csr_matrix((np.ones(len(s)), (s, np.arange(len(s)))), shape=(len(subjects), len(s)))
        ml = self.ml_log_prior(subjects, classes, prior)
        has_ml = ~np.isnan(ml[:, 0])
        floor = 1e-10  # only reached without pseudo-votes (the plain maximum-likelihood EM)
        off = (1.0 - self.volunteer_accuracy) / (k - 1) if k > 1 else 0.0
        base = np.where(np.eye(k, dtype=bool), self.volunteer_accuracy, off)

        # the glitch's look-alikes as the learner sees them (its weighted vote), per vote; none without a learner
        each = np.arange(len(s))
        looks = np.where(has_ml[:, None], np.exp(np.nan_to_num(ml)), 0.0)[s]
        hard = self.difficulty * has_ml[s] * looks[each, c]  # chance a would-be-right vote went to c
        ease = 1.0 - self.difficulty * has_ml[s] * (1.0 - looks[each, c])  # or stayed on c = truth
        diagonal = np.arange(k)
        flipped = np.zeros((len(s), k))  # per vote and true class: share of the vote due to the glitch's difficulty

        shares = by_subject @ np.eye(k)[c]  # start from each subject's vote shares (majority vote)
        post = shares / shares.sum(axis=1, keepdims=True)
        per_vote = post[s]
        self.converged_ = False
        for self.n_iter_ in range(1, self.max_iter + 1):
            # M-step: class prior and each volunteer's matrix (Dirichlet MAP estimates); a vote the glitch's
            # difficulty turned away from the true class counts as a right one of its volunteer
            class_prior = np.clip(post.sum(axis=0) + self.class_prior_votes, floor, None)
            class_prior /= class_prior.sum()
            cells = np.concatenate([((u[:, None] * k + diagonal) * k + c[:, None]).ravel(),
                                    ((u[:, None] * k + diagonal) * k + diagonal).ravel()])
            weights = np.concatenate([(per_vote * (1.0 - flipped)).ravel(), (per_vote * flipped).ravel()])
            counts = np.bincount(cells, weights=weights, minlength=len(volunteers) * k * k).reshape(
                len(volunteers), k, k)
            centre = base
            if self.pool_votes is not None:
                centre = counts.sum(axis=0) + self.pool_votes * base
                centre /= centre.sum(axis=1, keepdims=True)
            confusion = np.clip(counts + self.prior_votes * centre, floor, None)
            confusion /= confusion.sum(axis=2, keepdims=True)
            # E-step: the ML vote (or the class prior) times each volunteer's likelihood of their answer
            likelihood = confusion[u, :, c]
            if self.difficulty:
                right = confusion[:, diagonal, diagonal][u]
                turned = right * hard[:, None]
                turned[each, c] = 0.0
                likelihood = likelihood + turned
                likelihood[each, c] = right[each, c] * ease
                flipped = turned / likelihood
            log_vote = np.log(likelihood)
            log_post = np.where(has_ml[:, None], ml, np.log(class_prior)) + by_subject @ log_vote
            new = softmax(log_post)
            moved = np.abs(new - post).max()
            post = new
            per_vote = softmax(log_post[s] - log_vote) if self.leave_one_out else post[s]
            if moved < self.tol:
                self.converged_ = True
                break
        if not self.converged_:
            log.warning("%s: EM stopped after %d iterations with posteriors still moving by %.2g (tol %.2g)",
                        type(self).__name__, self.max_iter, moved, self.tol)
        self.class_prior_ = pd.Series(class_prior, index=classes, name="class_prior")
        self.volunteer_votes_ = pd.Series(np.bincount(u, minlength=len(volunteers)), index=volunteers)
        self.confusion_ = {v: pd.DataFrame(m, index=pd.Index(classes, name="true"), columns=classes)
                           for v, m in zip(volunteers, confusion)}
        return pd.DataFrame(post, index=pd.Index(subjects, name="subject_id"), columns=classes)

    def next_vote_chance(self, posterior: pd.DataFrame, counts: pd.Series) -> pd.Series:
        """Chance that one more vote gets each subject accepted: the next answer is predicted with the
        crowd's typical confusion matrix (the volunteers' matrices weighted by their votes, since who comes
        next is unknown), and the subject is accepted after an answer that lifts its top class to the
        threshold. A one-vote look-ahead with the matrices held fixed: a guide for when to stop asking."""
        matrices = np.stack([m.to_numpy() for m in self.confusion_.values()])
        typical = np.average(matrices, axis=0, weights=self.volunteer_votes_.to_numpy())
        p = posterior.to_numpy()
        enough = (counts.to_numpy() + 1) >= self.min_votes
        chance = np.zeros(len(p))
        for answer in range(typical.shape[1]):
            after = p * typical[:, answer]
            total = after.sum(axis=1)
            accepted = enough & (after.max(axis=1) >= self.agreement * total)
            chance += np.where(accepted, total, 0.0)  # total = P(this answer | the subject's posterior)
        return pd.Series(chance, index=posterior.index)

    def ml_log_prior(self, subjects: np.ndarray, classes: Sequence[str], prior: pd.DataFrame | None) -> np.ndarray:
        """``ml_weight`` x log of the learner's floored distribution per subject, normalised; NaN rows where
        the learner gave none."""
        if prior is None:
            return np.full((len(subjects), len(classes)), np.nan)
        known = prior.reindex(index=subjects, columns=list(classes)).to_numpy(dtype=float)
        weighted = self.ml_weight * np.log(floored(np.nan_to_num(known, nan=1.0)))
        weighted -= logsumexp(weighted, axis=1, keepdims=True)
        return np.where(np.isnan(known).any(axis=1, keepdims=True), np.nan, weighted)


class GravitySpyConsensus(DawidSkene):
    """Gravity Spy's weighting (Zevin et al. 2017, CQG 34 064003, section 4): a subject's posterior is the
    machine-learning prior times the likelihood of each volunteer's vote under that volunteer's confusion
    matrix, accepted at 0.9. That is the Dawid–Skene posterior with the learner's vote; Gravity Spy
    estimates the matrices from gold-standard subjects, a campaign here from the other votes on each
    subject (``leave_one_out``). Unlike Gravity Spy's reducer, which weights by the column-normalised
    P(class | vote), this uses the row-normalised P(vote | class), the Bayes-consistent likelihood.
    """


def floored(proba: np.ndarray) -> np.ndarray:
    """Rows of probabilities with every entry at least ``PRIOR_FLOOR`` (renormalised)."""
    p = np.clip(np.asarray(proba, dtype=float), PRIOR_FLOOR, None)
    return p / p.sum(axis=1, keepdims=True)


def softmax(log_p: np.ndarray) -> np.ndarray:
    """Rows of log-probabilities (unnormalised) as probabilities."""
    p = np.exp(log_p - log_p.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def fit_ml_weight(proba: np.ndarray, y: np.ndarray, classes: Sequence[str], max_weight: float = 5.0) -> float:
    """The ``ml_weight`` w that makes the learner's ``p ** w`` (renormalised) most likely to give the true
    classes ``y``: temperature scaling, fitted on cross-validated probabilities of the labelled pool
    (``proba``: rows x ``classes``). w < 1 tempers an overconfident learner, w > 1 sharpens a timid one."""
    proba = np.asarray(proba, dtype=float)
    truth = pd.Index(list(classes)).get_indexer(np.asarray(y))
    if proba.ndim != 2 or proba.shape != (len(truth), len(classes)) or not len(truth):
        raise ValueError(f"fit_ml_weight needs one row of {len(classes)} class probabilities per label, "
                         f"got {proba.shape} for {len(truth)} labels")
    if (truth < 0).any():
        raise ValueError(f"labels that are not classes: {sorted(set(np.asarray(y)[truth < 0]))}")
    log_p = np.log(floored(proba))

    def loss(w: float) -> float:
        z = w * log_p
        return float(-(z[np.arange(len(truth)), truth] - logsumexp(z, axis=1)).mean())

    return float(minimize_scalar(loss, bounds=(0.0, max_weight), method="bounded").x)


def sequential_labels(consensus: Consensus, votes: pd.DataFrame, classes: Sequence[str],
                      prior: pd.DataFrame | None = None, max_votes: int = 8) -> pd.DataFrame:
    """Gravity Spy's retirement rule, offline: every subject takes its votes (``votes`` rows, in the order
    cast) one at a time until the consensus accepts it or it has ``max_votes`` (or no more votes).

    After each step the consensus is refitted on all the votes taken so far (a model-based method learns
    the volunteers from every subject, closed or not). A subject keeps the label and agreement it was
    accepted with; one that never is gets its consensus at its last vote. Returns ``aggregate``'s columns.
    """
    if int(max_votes) < 1:
        raise ValueError(f"max_votes must be at least 1, got {max_votes}")
    rank = votes.groupby("subject_id", sort=False).cumcount().to_numpy()
    subject = votes["subject_id"].to_numpy()
    available = votes.groupby("subject_id", sort=False).size().clip(upper=int(max_votes))
    taken = pd.Series(0, index=available.index)
    closed: list[pd.DataFrame] = []
    for k in range(min(consensus.min_votes, int(max_votes)), int(max_votes) + 1):
        open_ = available.index.difference(pd.Index(pd.concat(closed).index) if closed else [])
        taken.loc[open_] = np.minimum(k, available.loc[open_])
        result = consensus.aggregate(votes[rank < taken.reindex(subject).to_numpy()], classes, prior)
        done = result.loc[open_]
        done = done[(done["status"] == ACCEPTED) | (done["votes"] >= available.loc[done.index])]
        closed.append(done)
    return pd.concat(closed).reindex(available.index).rename_axis("subject_id")
