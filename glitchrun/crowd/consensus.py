"""Consensus: from volunteers' votes on a subject to one label, or to "not sure yet".

Every method computes a posterior over the classes for each subject; they differ only in how. A subject
gets a label when it has at least ``min_votes`` volunteer votes and the top class's support (``agreement``:
the vote share for majority vote, the posterior probability for the model-based methods) reaches the
method's threshold without a tie. A subject below either bar is reported, never labelled, so a wrong
crowd label cannot enter the training set just because the retirement count was reached.

Interface (used by the campaign loop, ``glitchrun.campaign``, and the round report):

- ``Consensus.aggregate(votes, classes, prior=None, gold=None) -> DataFrame``: one row per voted subject
  (index ``subject_id``) with ``consensus_label``, ``agreement``, ``votes`` (volunteer votes) and ``status``
  (``ACCEPTED``, ``TOO_FEW_VOTES``, ``LOW_AGREEMENT``, ``TIE``, or ``GOLD`` for a subject whose class is
  known). ``Consensus.posterior(votes, classes, prior=None, gold=None)`` gives the whole posterior (subjects
  x classes, rows summing to 1; a gold subject's row is its known class).
- ``votes``: columns ``subject_id``, ``volunteer``, ``label``; one vote per volunteer and subject
  (``glitchrun.campaign.ingest`` removes repeats), in the order they were cast.
- ``prior``: the learner's whole predicted class distribution per subject (index subject_id, columns the
  classes, rows summing to 1), recorded when the batch was chosen. It is the machine-learning vote: the
  model-based methods use it in place of the class prior, as ``p ** ml_weight`` renormalised (each
  probability floored at ``PRIOR_FLOOR`` first, so the learner never rules a class out). Majority vote
  counts volunteers only. ``fit_ml_weight(proba, y, classes)`` fits ``ml_weight`` by maximum likelihood on
  cross-validated probabilities of the labelled pool, so an overconfident learner is tempered before it
  can outvote the volunteers; set it on the consensus object (``consensus.ml_weight = w``) each round.
- ``gold``: known answers (Series subject_id -> class): gold-standard subjects, or subjects an expert
  classified. The volunteers are measured on them, and the model-based methods calibrate on them which
  posterior a label needs (``cutoff_``): cross-validated, a label accepted at threshold ``agreement`` is
  right at least that often on the gold subjects, or none is accepted and a warning says so.
- After ``aggregate``: ``cutoff_`` (the posterior a label needed), ``volunteer_skill_`` (per volunteer:
  votes, gold answers, gold answers right, estimated skill), ``next_vote_chance_`` (Series by subject: the
  chance that one more vote, from a volunteer typical of the crowd, gets the subject accepted; NaN for
  majority vote, which has no model of the volunteers; the retire pass disputes a subject early when it is
  too low, ``min_next_vote_chance``), and for the model-based methods ``calibration_`` and ``calibrated_``.
- After ``posterior``/``aggregate`` the model-based methods expose ``confusion_`` (volunteer ->
  DataFrame, true class rows x answer columns, P(answer | true class); ``confusion_matrices_`` the same as one
  array, volunteers in ``volunteer_votes_`` order), ``class_prior_`` (Series),
  ``n_iter_`` and ``converged_``.
- ``sequential_labels(consensus, votes, classes, prior=None, max_votes=..., gold=None)``: Gravity Spy's
  retirement rule offline: each subject takes its votes one at a time, in order, until it is accepted
  (posterior at the cutoff with at least ``min_votes`` volunteer votes) or reaches ``max_votes``.

The model-based methods (``DawidSkene`` and ``GravitySpyConsensus``, the same EM under Gravity Spy's name)
give each volunteer a confusion matrix with a Dirichlet prior worth ``prior_votes`` votes, centred on a
volunteer of ``volunteer_accuracy`` (so one seen a few times counts as such a volunteer, neither perfect nor
useless), learn it from gold answers where there are any and otherwise from the other votes on each subject
(``leave_one_out``, which keeps them calibrated with 2 or 3 votes), take a uniform class prior where the
learner gives no vote, and stop when no posterior moves by more than ``tol``. Figures: BENCHMARKS.md,
"Consensus" (simulated crowds) and "Consensus on real crowds".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, logsumexp

from glitchrun.crowd import em_kernels

log = logging.getLogger(__name__)

#: why a subject did or did not get a label (the ``status`` column of ``Consensus.aggregate``); a gold subject's
#: class is known, not voted
ACCEPTED, TOO_FEW_VOTES, LOW_AGREEMENT, TIE, GOLD = "accepted", "too_few_votes", "low_agreement", "tie", "gold"
#: a volunteer's record (``volunteer_skill_``, index volunteer)
SKILL_COLUMNS = ["votes", "gold_answers", "gold_right", "skill"]
#: the sequential rule replayed on gold subjects (``calibration_``): per posterior cutoff, gold subjects accepted and
#: right at their first crossing, of all replayed
CALIBRATION_COLUMNS = ["cutoff", "accepted", "right", "subjects"]
#: how the model-based methods set the class prior where the learner gives no vote
CLASS_PRIORS = ("uniform", "estimated")
#: weight of the ridge that keeps the calibration map near the identity (see ``platt_map``)
CALIBRATION_RIDGE = 1.0
#: bootstrap samples of the gold subjects behind ``DawidSkene.assured_cutoff``
BOOTSTRAP = 200
#: at most this many cutoffs are replayed (quantiles of the gold posteriors when there are more)
MAX_CUTOFFS = 400
#: the least probability the learner's vote gives a class (before ``ml_weight``): a random forest says 0 often
PRIOR_FLOOR = 1e-3
#: the accelerated EM jumps only once no posterior moves by more than this in a step: from the vote shares, early
#: jumps carried near-tied subjects into another fixed point of the EM (84 of 40,000 simulated subjects, 2 labels)
JUMP_FROM = 0.1
#: votes from which a calibration fold refits only its own gold subjects (``DawidSkene.replay_gold``)
FOLD_REFIT_VOTES = 1_000_000
#: votes from which an EM narrows to its moving subjects (``DawidSkene.narrowed``), and the share of subjects still
#: moving by more than ``tol`` at which it does: from the tenth step or so of a Gravity Spy export's fit, fewer than
#: 5 % of its subjects move, and the last 100 steps over every vote served a few thousand of them
NARROW_VOTES, NARROW_SHARE = 200_000, 0.05


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

    def posterior(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None = None,
                  gold: pd.Series | None = None) -> pd.DataFrame:
        """Probability of each class (columns, in ``classes`` order) for each voted subject (index); a gold
        subject's row is its known class."""
        raise NotImplementedError

    def aggregate(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None = None,
                  gold: pd.Series | None = None) -> pd.DataFrame:
        """One row per voted subject (index ``subject_id``): consensus_label, agreement, votes, status.

        ``gold`` (subject_id -> known class): subjects whose class is known; they get status ``gold`` and their
        known class, and their votes measure the volunteers who cast them (``volunteer_skill_``)."""
        classes = list(classes)
        unknown = sorted(set(votes["label"].unique()) - set(classes))
        if unknown:
            raise ValueError(f"votes for answers that are not classes of the workflow: {unknown}")
        gold = known_answers(gold, votes, classes)
        self.cutoff_ = self.agreement
        if votes.empty:
            self.next_vote_chance_ = pd.Series(dtype=float)
            self.volunteer_skill_ = pd.DataFrame(columns=SKILL_COLUMNS, index=pd.Index([], name="volunteer"))
            return pd.DataFrame(columns=["consensus_label", "agreement", "votes", "status"],
                                index=pd.Index([], name="subject_id", dtype=str))
        posterior = self.posterior(votes, classes, prior, gold).reindex(columns=classes, fill_value=0.0)
        self.cutoff_ = self.acceptance_cutoff(votes, classes, prior, gold)
        self._last = None  # the fit's working arrays (the calibration's): half a gigabyte at 10^6 subjects
        counts = votes.groupby("subject_id").size().reindex(posterior.index)
        top = posterior.max(axis=1)
        tied = posterior.eq(top, axis=0).sum(axis=1) > 1
        status = np.select(
            [posterior.index.isin(gold.index), counts < self.min_votes, tied, top < self.cutoff_],
            [GOLD, TOO_FEW_VOTES, TIE, LOW_AGREEMENT],
            default=ACCEPTED,
        )
        self.next_vote_chance_ = self.next_vote_chance(posterior, counts)
        self.volunteer_skill_ = self.skill(votes, posterior, gold)
        result = pd.DataFrame({
            "consensus_label": posterior.idxmax(axis=1).astype(str),
            "agreement": top.astype(float),
            "votes": counts.astype(int),
            "status": status,
        })
        result.index.name = "subject_id"
        return result

    def acceptance_cutoff(self, votes: pd.DataFrame, classes: list[str], prior: pd.DataFrame | None,
                          gold: pd.Series) -> float:
        """The posterior a label needs to be accepted: the configured ``agreement`` (a method that can
        calibrate it on gold answers does)."""
        return self.agreement

    def next_vote_chance(self, posterior: pd.DataFrame, counts: pd.Series) -> pd.Series:
        """Chance that one more vote gets each subject accepted; NaN: this method cannot tell."""
        return pd.Series(np.nan, index=posterior.index)

    def skill(self, votes: pd.DataFrame, posterior: pd.DataFrame, gold: pd.Series) -> pd.DataFrame:
        """Each volunteer's measured record (``SKILL_COLUMNS``): votes, gold answers and how many were right,
        and ``skill``, the share of their votes that agree with the consensus (gold subjects: the known class)."""
        label = posterior.idxmax(axis=1)
        label.loc[gold.index] = gold
        right = votes["label"].to_numpy() == label.reindex(votes["subject_id"]).to_numpy()
        on_gold = votes["subject_id"].isin(gold.index).to_numpy()
        frame = pd.DataFrame({"volunteer": votes["volunteer"].astype(str).to_numpy(), "right": right,
                              "gold": on_gold, "gold_right": on_gold & right})
        table = frame.groupby("volunteer").agg(votes=("right", "size"), gold_answers=("gold", "sum"),
                                               gold_right=("gold_right", "sum"), skill=("right", "mean"))
        return table[SKILL_COLUMNS]


class MajorityVote(Consensus):
    """The most-voted class; ``agreement`` is its share of the subject's votes (the learner does not vote)."""

    def posterior(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None = None,
                  gold: pd.Series | None = None) -> pd.DataFrame:
        encoded = EncodedVotes.of(votes, classes)  # counted with numpy: pd.crosstab takes minutes at 10^6 votes
        counts = sparse.csr_matrix((np.ones(len(encoded.answer)), (encoded.subject, encoded.answer)),
                                   shape=(len(encoded.subjects), len(classes))).toarray()
        shares = pd.DataFrame(counts / counts.sum(axis=1, keepdims=True),
                              index=pd.Index(encoded.subjects, name="subject_id"), columns=list(classes))
        if gold is not None and len(gold):
            shares.loc[gold.index] = np.eye(len(classes))[pd.Index(list(classes)).get_indexer(gold)]
        return shares


@dataclass(frozen=True)
class EncodedVotes:
    """Votes as index arrays, the form the EM works on."""

    subjects: np.ndarray  # subject ids (sorted); rows of the posterior
    volunteers: np.ndarray  # volunteer ids (sorted)
    subject: np.ndarray  # per vote: row of its subject
    volunteer: np.ndarray  # per vote: index of its volunteer
    answer: np.ndarray  # per vote: index of its class
    rank: np.ndarray  # per vote: 0 for a subject's first vote, 1 for its second, ...
    n_classes: int

    @classmethod
    def of(cls, votes: pd.DataFrame, classes: Sequence[str]) -> EncodedVotes:
        subjects, subject = sorted_codes(votes["subject_id"])
        volunteers, volunteer = sorted_codes(votes["volunteer"])
        answer = pd.Index(list(classes)).get_indexer(votes["label"])
        rank = pd.Series(subject).groupby(subject).cumcount().to_numpy()
        return cls(subjects, volunteers, subject, volunteer, answer, rank, len(classes))

    def restricted(self, rows: np.ndarray) -> tuple[EncodedVotes, np.ndarray]:
        """The votes on these subject rows only (the subjects in this order, the volunteers who cast them, the
        ranks unchanged), and those volunteers' indices here."""
        wanted = np.isin(self.subject, rows)
        position = np.full(len(self.subjects), -1)
        position[rows] = np.arange(len(rows))
        voters, volunteer = np.unique(self.volunteer[wanted], return_inverse=True)
        return EncodedVotes(self.subjects[rows], self.volunteers[voters], position[self.subject[wanted]],
                            volunteer, self.answer[wanted], self.rank[wanted], self.n_classes), voters

    def gold_rows(self, gold: pd.Series, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(rows of the gold subjects, index of their known class)."""
        rows = pd.Index(self.subjects).get_indexer(gold.index.astype(str))
        return rows[rows >= 0], pd.Index(list(classes)).get_indexer(gold.to_numpy())[rows >= 0]


def sorted_codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct values as str, sorted; each value's index among them), as ``np.unique(..., return_inverse=True)``
    gives them, by pandas' hashing factorize: 3-8x faster on millions of ids."""
    codes, distinct = pd.factorize(values.astype(str), sort=True)
    return distinct.to_numpy(dtype=object), codes.astype(np.int64)


@dataclass
class Fit:
    """One EM fit: the posterior per subject and what it was made of."""

    posterior: np.ndarray  # subjects x classes
    confusion: np.ndarray  # volunteers x true class x answer
    class_prior: np.ndarray
    log_start: np.ndarray  # per subject: the learner's weighted vote (or the class prior), in logs
    votes: VolunteerVotes  # the votes as the EM saw them
    n_iter: int
    converged: bool
    moved: float


@dataclass(frozen=True)
class Frozen:
    """The part of the M-step's counts that comes from subjects held at an earlier fit's posteriors (a calibration
    fold refits only its hidden gold subjects)."""

    counts: np.ndarray  # volunteers x true class x answer
    class_totals: np.ndarray  # those subjects' posteriors summed per class (the estimated class prior's counts)


class VolunteerVotes:
    """The votes as the EM sees them when a vote's likelihood depends only on its volunteer and answer: both sums
    of a step run over the votes once, in compiled loops (``glitchrun.crowd.em_kernels``), by subject for the
    posteriors and by (volunteer, answer) key for the matrices' counts, with no array of votes x classes. The
    posteriors are kept in single precision (summed in double): half the memory and a third less time at 10^6
    subjects; ``tol`` is 10^-5 and the labels, statuses and cutoffs came out the same (BENCHMARKS.md, "Ingest at
    scale")."""

    def __init__(self, encoded: EncodedVotes, gold_rows: np.ndarray, leave_one_out: bool) -> None:
        k, n_subjects = encoded.n_classes, len(encoded.subjects)
        self.encoded = encoded
        self.n_keys = len(encoded.volunteers) * k
        self.key = encoded.volunteer * k + encoded.answer  # per vote: row of the likelihood table
        self.subject_indptr, self.subject_keys = grouped(encoded.subject, n_subjects, self.key)
        # votes judged by the other votes on their subject (leave one out), and those counted against the whole
        # posterior (a gold subject's class is known: no vote is left out of it)
        judged = ~np.isin(encoded.subject, gold_rows) if leave_one_out else np.zeros(len(self.key), dtype=bool)
        self.key_indptr, self.key_subjects, self.key_judged = grouped(self.key, self.n_keys, encoded.subject, judged)

    def table(self, confusion: np.ndarray) -> np.ndarray:
        """Keys x true class: P(this answer | true class) for each (volunteer, answer)."""
        return np.ascontiguousarray(confusion.transpose(0, 2, 1).reshape(self.n_keys, -1))

    def shares(self) -> np.ndarray:
        """Each subject's vote shares (majority vote): the EM's start."""
        k = self.encoded.n_classes
        counts = sparse.csr_matrix((np.ones(len(self.key)), (self.encoded.subject, self.encoded.answer)),
                                   shape=(len(self.encoded.subjects), k)).toarray()
        return (counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)

    def posterior(self, confusion: np.ndarray, log_start: np.ndarray) -> np.ndarray:
        """Subjects x true class: ``log_start`` times the likelihood of the subject's votes, normalised."""
        post = np.empty(log_start.shape, dtype=np.float32)
        em_kernels.run(em_kernels.subject_posteriors, self.subject_indptr, self.subject_keys,
                       np.log(self.table(confusion)), log_start, post)
        return post

    def counts(self, post: np.ndarray, confusion: np.ndarray | None) -> np.ndarray:
        """Expected counts, volunteers x true class x answer: each vote adds its subject's posterior, or, where
        judged by the others (leave one out), the posterior without it: post / P(vote | class), renormalised.
        ``confusion`` None: every vote counted against the whole posterior (the EM's first step)."""
        k = self.encoded.n_classes
        inverse = np.ones((self.n_keys, k)) if confusion is None else 1.0 / self.table(confusion)
        by_key = np.empty((self.n_keys, k))
        em_kernels.run(em_kernels.left_out_counts, self.key_indptr, self.key_subjects, self.key_judged, post, inverse,
                       by_key)
        return by_key.reshape(-1, k, k).transpose(0, 2, 1)

    def vote_log_likelihood(self, confusion: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        """Per wanted vote (a mask of votes) and true class: log P(its answer | true class)."""
        return np.log(np.take(self.table(confusion), self.key[wanted], axis=0))


def grouped(groups: np.ndarray, n_groups: int, *members: np.ndarray) -> tuple[np.ndarray, ...]:
    """CSR layout of per-vote ``members`` arrays by ``groups`` (an int per vote): indptr, then each of the members
    in group order (a group's votes in the order cast)."""
    order = np.argsort(groups, kind="stable")
    indptr = np.zeros(n_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=n_groups), out=indptr[1:])
    return indptr, *(np.ascontiguousarray(member[order]) for member in members)


class DifficultVotes(VolunteerVotes):
    """The votes under the ``difficulty`` term: on a subject the learner finds ambiguous, a would-be-right answer
    may go to a look-alike, so a vote's likelihood depends on its subject too and the steps work vote by vote."""

    def __init__(self, encoded: EncodedVotes, gold_rows: np.ndarray, leave_one_out: bool, difficulty: float,
                 ml: np.ndarray) -> None:
        super().__init__(encoded, gold_rows, leave_one_out)
        s, c = encoded.subject, encoded.answer
        has_ml = ~np.isnan(ml[:, 0])
        self.each = np.arange(len(s))
        # the glitch's look-alikes as the learner sees them (its weighted vote), per vote; none without a learner
        looks = np.take(np.where(has_ml[:, None], np.exp(np.nan_to_num(ml)), 0.0), s, axis=0)[self.each, c]
        self.hard = difficulty * has_ml[s] * looks  # chance a would-be-right vote went to c
        self.ease = 1.0 - difficulty * has_ml[s] * (1.0 - looks)  # or stayed on c = truth
        self.on_gold = np.isin(s, gold_rows)
        self.leave_one_out = leave_one_out
        self.by_volunteer = sparse.csr_matrix((np.ones(len(s)), (encoded.volunteer, self.each)),
                                              shape=(len(encoded.volunteers), len(s)))
        self.vote_by_subject = sparse.csr_matrix((np.ones(len(s)), (s, self.each)),
                                                 shape=(len(encoded.subjects), len(s)))
        self.by_answer = sparse.csr_matrix((np.ones(len(s)), (self.key, self.each)), shape=(self.n_keys, len(s)))

    def likelihood(self, confusion: np.ndarray, wanted: np.ndarray | slice = slice(None)
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Per (wanted) vote and true class: P(its answer | true class), and the share of it due to the glitch's
        difficulty (a would-be-right answer turned to this one)."""
        k = self.encoded.n_classes
        u, c, each = self.encoded.volunteer[wanted], self.encoded.answer[wanted], np.arange(len(self.key[wanted]))
        diagonal = np.arange(k)
        right = confusion[:, diagonal, diagonal][u]
        likelihood = np.take(self.table(confusion), self.key[wanted], axis=0)
        turned = right * self.hard[wanted][:, None]
        turned[each, c] = 0.0
        likelihood = likelihood + turned
        likelihood[each, c] = right[each, c] * self.ease[wanted]
        return likelihood, turned / likelihood

    def posterior(self, confusion: np.ndarray, log_start: np.ndarray) -> np.ndarray:
        return softmax(log_start + self.vote_by_subject @ np.log(self.likelihood(confusion)[0]))

    def counts(self, post: np.ndarray, confusion: np.ndarray | None) -> np.ndarray:
        """As ``VolunteerVotes.counts``; a vote the glitch's difficulty turned away from the true class counts
        as a right one of its volunteer."""
        k = self.encoded.n_classes
        if confusion is None:
            return super().counts(post, None)
        likelihood, flipped = self.likelihood(confusion)
        per_vote = np.take(post, self.encoded.subject, axis=0)
        if self.leave_one_out:
            judged = ~self.on_gold
            per_vote[judged] /= likelihood[judged]
            per_vote[judged] /= per_vote[judged].sum(axis=1, keepdims=True)
        counts = (self.by_answer @ (per_vote * (1.0 - flipped))).reshape(-1, k, k).transpose(0, 2, 1)
        diagonal = np.arange(k)
        counts[:, diagonal, diagonal] += self.by_volunteer @ (per_vote * flipped)
        return counts

    def vote_log_likelihood(self, confusion: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        return np.log(self.likelihood(confusion, wanted)[0])


class DawidSkene(Consensus):
    """Dawid & Skene (1979): every volunteer has a confusion matrix P(answer | true class), learned from the
    votes by EM; a subject's posterior is the learner's vote (or the class prior) times the likelihood of
    each of its answers.

    Fitted as a MAP estimate, for few votes per volunteer and subject:

    - each row of a volunteer's matrix has a Dirichlet prior worth ``prior_votes`` votes, centred on a
      volunteer of ``volunteer_accuracy`` whose mistakes spread evenly: a volunteer seen a few times counts
      as such a volunteer, neither perfect nor useless (Gravity Spy promotes volunteers at 0.7 accuracy).
      20 votes: with 3 votes a subject on real crowds, a lighter prior lets a volunteer's skill, estimated
      from a handful of votes, overrule two others too often (temp: 0.7 points below majority vote at 10);
    - ``class_prior``: ``"uniform"`` (default) or ``"estimated"`` by EM (with ``class_prior_votes`` pseudo-votes
      per class); the learner's vote replaces it wherever there is one. Uniform is what majority vote assumes.
      An estimated prior helps only where the votes' spread reflects the classes' (glitchrun's simulated crowd);
      real workers who favour one answer inflate it, and it then pulls every close call their way: on the public
      crowds of BENCHMARKS.md ("Consensus on real crowds") it cost 4-14 points against majority vote at 2-3
      votes (AdultContent2, BarzanMozafari);
    - ``leave_one_out``: each vote is counted, for its volunteer's matrix, against the subject's posterior
      *without* that vote (the other votes judge it, as a gold standard would). Counted against the full
      posterior (the 1979 rule), a vote confirms itself: with 2 or 3 votes a subject the volunteers split
      on is accepted at a posterior near 1 and the method is overconfident;
    - **gold** (``gold``: subject_id -> known class): a gold subject's class is not inferred but known, so each
      vote on it counts fully, right or wrong, in its volunteer's matrix: volunteers are measured on known
      answers as well as by EM;
    - iterations stop when no posterior moves by more than ``tol`` (``n_iter_``, ``converged_``), reached in
      fewer of them with ``accelerate`` (SQUAREM, see ``fit``; off, the plain EM, step for step), and, from
      ``NARROW_VOTES`` votes, mostly at the cost of the still-moving subjects' votes (``narrowed``; ``n_iter_``
      counts its steps too).

    **Acceptance calibrated on gold.** The posterior of a real crowd is not calibrated: workers share
    mistakes on hard items, which the model reads as independent evidence (on public crowds with expert
    labels, labels accepted at 0.9 were right 58-87 % of the time). With at least ``min_gold`` voted gold
    subjects, ``aggregate`` therefore learns what a posterior is worth from the gold subjects themselves,
    cross-validated (``gold_folds`` folds: each fold's subjects are judged by a fit that does not know their
    class, never by one that does). Each gold subject's posterior is replayed after each of its votes, in the
    order cast, and a beta-calibration map P(right) = expit(a ln p - b ln(1 - p) + c) is fitted to whether its
    top class was right (``calibration_map_``, see ``beta_calibration``). A label is accepted where that chance
    reaches ``agreement`` with ``assurance`` (bootstrap over the gold subjects): ``cutoff_`` is the posterior
    at which it does, above ``agreement`` for an overconfident crowd, below it for a timid one. Where no
    posterior reaches it, nothing is accepted and a warning says so: the subjects wait for more votes, gold or an expert. ``calibration_`` holds the
    sequential rule replayed on the gold subjects at every cutoff (for the report's calibration plot).
    Without enough gold, ``agreement`` is the cutoff, as the posterior says.

    Two opt-in terms for a crowd that errs on ambiguous glitches (off by default; BENCHMARKS.md, "Campaign
    loop", for what they buy and cost):

    - ``difficulty`` (GLAD-like, Whitehill et al. 2009, with the difficulty read from the learner): on a
      subject the learner's weighted vote ``q`` finds ambiguous, a volunteer's would-be-right answer goes,
      with chance ``difficulty x (1 - q[true class])``, to a class drawn from ``q``: errors that the learner
      shares are then expected, not read as independent evidence;
    - ``pool_votes``: each volunteer's Dirichlet prior is centred on the crowd's pooled matrix (itself with
      ``pool_votes`` pseudo-votes per row of the even one) instead of on evenly spread mistakes, so the
      look-alike classes the whole crowd confuses are learned once, from every vote.

    ``prior_votes=0, class_prior="estimated", class_prior_votes=0, leave_one_out=False`` is the plain
    maximum-likelihood EM (crowd-kit's ``DawidSkene``, which a test compares it with).
    """

    def __init__(self, min_votes: int = 2, agreement: float = 0.9, ml_weight: float = 1.0,
                 volunteer_accuracy: float = 0.7, prior_votes: float = 20.0, class_prior: str = "uniform",
                 class_prior_votes: float = 1.0, leave_one_out: bool = True, max_iter: int = 300, tol: float = 1e-5,
                 difficulty: float = 0.0, pool_votes: float | None = None, min_gold: int = 10, gold_folds: int = 5,
                 assurance: float = 0.8, accelerate: bool = True) -> None:
        super().__init__(min_votes, agreement, ml_weight)
        if not 0.0 <= float(difficulty) <= 1.0:
            raise ValueError(f"consensus difficulty must be in [0, 1], got {difficulty}")
        if pool_votes is not None and float(pool_votes) < 0:
            raise ValueError(f"consensus pool_votes must be at least 0, got {pool_votes}")
        if not 0.0 < float(volunteer_accuracy) < 1.0:
            raise ValueError(f"volunteer_accuracy must be in (0, 1), got {volunteer_accuracy}")
        if class_prior not in CLASS_PRIORS:
            raise ValueError(f"consensus class_prior must be one of {CLASS_PRIORS}, got {class_prior!r}")
        if float(prior_votes) < 0 or float(class_prior_votes) < 0:
            raise ValueError(f"prior_votes and class_prior_votes must be at least 0, got {prior_votes}, "
                             f"{class_prior_votes}")
        if int(max_iter) < 1 or not float(tol) > 0:
            raise ValueError(f"max_iter must be at least 1 and tol positive, got {max_iter}, {tol}")
        if int(min_gold) < 2 or int(gold_folds) < 2:
            raise ValueError(f"consensus min_gold and gold_folds must be at least 2, got {min_gold}, {gold_folds}")
        self.volunteer_accuracy = float(volunteer_accuracy)
        self.prior_votes = float(prior_votes)
        self.class_prior = class_prior
        self.class_prior_votes = float(class_prior_votes)
        self.leave_one_out = bool(leave_one_out)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.difficulty = float(difficulty)
        self.pool_votes = None if pool_votes is None else float(pool_votes)
        self.min_gold = int(min_gold)
        self.gold_folds = int(gold_folds)
        if not 0.0 <= float(assurance) < 1.0:
            raise ValueError(f"consensus assurance must be in [0, 1), got {assurance}")
        self.assurance = float(assurance)
        self.accelerate = bool(accelerate)

    def posterior(self, votes: pd.DataFrame, classes: Sequence[str], prior: pd.DataFrame | None = None,
                  gold: pd.Series | None = None) -> pd.DataFrame:
        classes = list(classes)
        gold = known_answers(gold, votes, classes)
        encoded = EncodedVotes.of(votes, classes)
        ml = self.ml_log_prior(encoded.subjects, classes, prior)
        fit = self.fit(encoded, ml, *encoded.gold_rows(gold, classes))
        if not fit.converged:
            log.warning("%s: EM stopped after %d iterations with posteriors still moving by %.2g (tol %.2g)",
                        type(self).__name__, self.max_iter, fit.moved, self.tol)
        self._last = (encoded, ml, fit)
        self.n_iter_, self.converged_ = fit.n_iter, fit.converged
        self.class_prior_ = pd.Series(fit.class_prior, index=classes, name="class_prior")
        self.volunteer_votes_ = pd.Series(np.bincount(encoded.volunteer, minlength=len(encoded.volunteers)),
                                          index=encoded.volunteers)
        self.confusion_matrices_ = fit.confusion
        return pd.DataFrame(fit.posterior.astype(float), index=pd.Index(encoded.subjects, name="subject_id"),
                            columns=classes)

    def fit(self, encoded: EncodedVotes, ml: np.ndarray, gold_rows: np.ndarray, gold_classes: np.ndarray,
            frozen: Frozen | None = None, start: np.ndarray | None = None, watch: np.ndarray | None = None,
            judge: np.ndarray | None = None, tol: float | None = None) -> Fit:
        """The EM (see the class docstring); ``gold_rows`` of the posterior are held at ``gold_classes``. It starts
        from each subject's vote shares, or from ``start`` where that has a row (NaN rows: vote shares), its first
        step's votes judged by the matrices ``judge`` (None: each counted against the whole posterior), and has
        converged when one EM step moves no posterior by more than ``tol`` (the consensus's unless given), or only
        those of the ``watch`` rows (a calibration fold's fit serves its hidden gold subjects alone). ``frozen``:
        counts of other subjects' votes, held fixed, added to the M-step's (see ``replay_gold``, ``narrowed``).

        With ``accelerate``, SQUAREM (Varadhan and Roland 2008, Scand. J. Stat. 35 335, scheme S3, as their R
        package's ``squarem2``, which needs no likelihood): after two EM steps the log-posteriors jump along them,
        by a step length the two steps give, and one EM step from there steadies them. The fixed point is the
        EM's and ``tol`` still judges a plain EM step; it is reached in a third to a half of the steps (a few
        subjects whose volunteers judge one another converge slowly; the jump takes them there at once).
        Extrapolating the volunteers' matrices instead saved only a quarter."""
        k, tol = encoded.n_classes, self.tol if tol is None else tol
        votes = self.votes_of(encoded, gold_rows, ml)
        has_ml = ~np.isnan(ml[:, 0])
        known = np.eye(k)[gold_classes]
        steps, step_max, log_start = 0, 1.0, None

        def step(post: np.ndarray, confusion: np.ndarray | None) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
            """One EM step from a posterior (its votes judged by the others under ``confusion``; None: each vote
            counted against the whole posterior): the next posterior (gold rows clamped), and the volunteers'
            matrices, class prior and log-start that gave it."""
            nonlocal steps, log_start
            steps += 1
            confusion, class_prior = self.maximisation(votes, post, confusion, frozen)
            if has_ml.all():
                log_start = ml  # the learner voted on every subject: the class prior plays no part
            elif log_start is None or self.class_prior == "estimated":
                log_start = np.where(has_ml[:, None], ml, np.log(class_prior))
            following = votes.posterior(confusion, log_start)
            following[gold_rows] = known
            return following, (confusion, class_prior, log_start)

        post = votes.shares()
        if start is not None:
            post = np.where(np.isnan(start[:, :1]), post, start).astype(post.dtype)
        post[gold_rows] = known
        parameters: tuple[np.ndarray, ...] | None = None if judge is None else (judge,)  # what judges ``post``
        narrow = frozen is None and self.pool_votes is None and len(votes.key) >= NARROW_VOTES
        while True:
            cycle, narrowing = [post], False
            for _ in range(2):
                following, parameters = step(cycle[-1], parameters and parameters[0])
                moved = em_kernels.row_changes(following, cycle[-1])
                change = float(moved.max() if watch is None else moved[watch].max(initial=0.0))
                if change < tol or steps >= self.max_iter:
                    return Fit(following, *parameters, votes, steps, change < tol, change)
                cycle.append(following)
                narrowing = narrow and np.mean(moved >= tol) <= NARROW_SHARE
                if narrowing:
                    break
            if narrowing:
                del cycle, post
                post, confusion, narrowed_steps = self.narrowed(encoded, ml, votes, following, parameters[0],
                                                                np.flatnonzero(moved >= tol), tol)
                steps += narrowed_steps
                parameters = (confusion,)  # the next step, over every vote, checks the narrowed fit
                continue
            jumped, step_max = squarem_jump(*cycle, step_max) if self.accelerate and change < JUMP_FROM \
                else (None, step_max)
            if jumped is None:
                post = cycle[-1]
            else:
                del cycle, post, following  # three subjects x classes posteriors: a gigabyte at 10^6 subjects
                jumped[gold_rows] = known
                post, parameters = step(jumped, parameters[0])  # the steadying step
                del jumped

    def narrowed(self, encoded: EncodedVotes, ml: np.ndarray, votes: VolunteerVotes, post: np.ndarray,
                 confusion: np.ndarray, moving: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray, int]:
        """The EM on the ``moving`` subject rows alone, every other subject held at ``post`` (its votes' counts,
        judged by ``confusion``, ``Frozen``): (the posterior with those rows refitted, the matrices with their
        volunteers' refitted, the narrowed fit's steps). An EM step over a subset of the subjects is still an EM
        step (Neal and Hinton 1998, "A view of the EM algorithm that justifies incremental, sparse, and other
        variants"): the fixed point is the same, and ``fit`` checks it with a step over every vote. Once at most
        ``NARROW_SHARE`` of a large fit's subjects move by ``tol`` (from about its tenth step on a Gravity Spy
        export), this does the rest of the fit at the cost of their votes, not of all of them. The narrowed fit
        goes to a tenth of ``tol``: a slowly converging subject that a step moves by ``tol`` is still several times
        that from its fixed point (at ``tol`` itself the result was 3x10^-4 from it, the EM over every vote 4x10^-5;
        BENCHMARKS.md, "Ingest at scale")."""
        (moving_votes, voters), moving_ml = encoded.restricted(moving), ml[moving]
        no_gold = np.array([], dtype=int)  # a gold subject is held at its class: it never moves
        own = self.votes_of(moving_votes, no_gold, moving_ml).counts(post[moving], confusion[voters])
        class_totals = post.sum(axis=0, dtype=float)
        frozen = Frozen(votes.counts(post, confusion)[voters] - own, class_totals - post[moving].sum(axis=0))
        fit = self.fit(moving_votes, moving_ml, no_gold, no_gold, frozen, start=post[moving].astype(float),
                       judge=confusion[voters], tol=tol / 10)
        post = post.copy()
        post[moving] = fit.posterior
        confusion = confusion.copy()
        confusion[voters] = fit.confusion
        return post, confusion, fit.n_iter

    def votes_of(self, encoded: EncodedVotes, gold_rows: np.ndarray, ml: np.ndarray) -> VolunteerVotes:
        """The votes as this EM sees them (``gold_rows``: subjects whose class is known)."""
        if self.difficulty:
            return DifficultVotes(encoded, gold_rows, self.leave_one_out, self.difficulty, ml)
        return VolunteerVotes(encoded, gold_rows, self.leave_one_out)

    def maximisation(self, votes: VolunteerVotes, post: np.ndarray, confusion: np.ndarray | None,
                     frozen: Frozen | None) -> tuple[np.ndarray, np.ndarray]:
        """The M-step: each volunteer's matrix and the class prior (Dirichlet MAP estimates) from the expected
        counts of the votes under ``post`` (judged by the other votes under ``confusion``), and the ``frozen`` ones."""
        k = votes.encoded.n_classes
        floor = 1e-10  # only reached without pseudo-votes (the plain maximum-likelihood EM)
        off = (1.0 - self.volunteer_accuracy) / (k - 1) if k > 1 else 0.0
        centre = np.where(np.eye(k, dtype=bool), self.volunteer_accuracy, off)
        counts = votes.counts(post, confusion)
        class_totals = post.sum(axis=0)
        # volunteers x answer x true class: the layout of the votes' likelihood table, taken at every step
        by_answer = np.ascontiguousarray(counts.transpose(0, 2, 1))
        if frozen is not None:
            by_answer += frozen.counts.transpose(0, 2, 1)
            class_totals = class_totals + frozen.class_totals
        if self.pool_votes is not None:
            centre = by_answer.sum(axis=0).T + self.pool_votes * centre
            centre /= centre.sum(axis=1, keepdims=True)
        by_answer += self.prior_votes * centre.T
        np.clip(by_answer, floor, None, out=by_answer)
        by_answer /= by_answer.sum(axis=1, keepdims=True)
        confusion = by_answer.transpose(0, 2, 1)
        if self.class_prior == "estimated":
            class_prior = np.clip(class_totals + self.class_prior_votes, floor, None)
            return confusion, class_prior / class_prior.sum()
        return confusion, np.full(k, 1.0 / k)

    # -- acceptance calibrated on gold --------------------------------------------------------------------
    def acceptance_cutoff(self, votes: pd.DataFrame, classes: list[str], prior: pd.DataFrame | None,
                          gold: pd.Series) -> float:
        """The posterior a label needs so that, on gold subjects judged by a fit that did not know them, a label
        accepted there is right at least ``agreement`` of the time (see the class docstring); without
        ``min_gold`` voted gold subjects, ``agreement``. Sets ``calibration_``, ``calibration_map_``, ``calibrated_``."""
        self.calibration_ = pd.DataFrame(columns=CALIBRATION_COLUMNS)
        self.calibration_map_ = np.array([1.0, 1.0, 0.0])
        self.calibrated_ = False
        if len(gold) < self.min_gold:
            log.info("%s: %d gold subjects with votes, fewer than min_gold (%d): a label needs the posterior %.2f, "
                     "not calibrated on known answers", type(self).__name__, len(gold), self.min_gold, self.agreement)
            return self.agreement
        replay = self.replay_gold(classes, gold)
        replay = replay[(replay["votes"] >= self.min_votes) & ~replay["tied"]]
        self.calibration_ = first_crossings(replay, self.min_votes)
        self.calibration_map_ = beta_calibration(replay["confidence"].to_numpy(), replay["right"].to_numpy())
        self.calibrated_ = True
        cutoff = self.assured_cutoff(replay)
        if cutoff >= 1.0 - 1e-12:
            log.warning(
                "%s: on %d gold subjects (%d of %d posteriors right) the posterior does not single out labels "
                "that are right %.0f %% of the time; none is accepted: the crowd's subjects wait for more votes, "
                "gold or an expert", type(self).__name__, len(gold), int(replay["right"].sum()), len(replay),
                100 * self.agreement)
            return np.inf
        log.info("%s: calibrated on %d gold subjects, a label needs a posterior of %.4f to be right %.0f %% of the "
                 "time", type(self).__name__, len(gold), cutoff, 100 * self.agreement)
        return cutoff

    def assured_cutoff(self, replay: pd.DataFrame) -> float:
        """The cutoff of the beta-calibration map, made safe against a small gold set: the ``assurance`` quantile of the
        cutoffs of ``BOOTSTRAP`` maps fitted to gold subjects drawn with replacement (a subject's posteriors
        along its votes go together)."""
        subjects = replay["subject_id"].to_numpy()
        names, index = np.unique(subjects, return_inverse=True)
        members = [np.flatnonzero(index == i) for i in range(len(names))]
        confidence, right = replay["confidence"].to_numpy(), replay["right"].to_numpy()
        rng = np.random.default_rng(0)
        cutoffs = []
        for _ in range(BOOTSTRAP if self.assurance > 0 else 0):
            rows = np.concatenate([members[i] for i in rng.integers(len(names), size=len(names))])
            cutoffs.append(calibration_cutoff(beta_calibration(confidence[rows], right[rows]), self.agreement))
        if not cutoffs:
            return calibration_cutoff(self.calibration_map_, self.agreement)
        return float(np.quantile(cutoffs, self.assurance, method="higher"))

    def replay_gold(self, classes: list[str], gold: pd.Series) -> pd.DataFrame:
        """Each gold subject's posterior after each of its votes, in the order cast, from a fit that does not
        know its class (``gold_folds`` folds, the same for the same gold subjects): subject_id, votes, confidence, tied,
        right. The volunteers' matrices are those of the fold's fit, held fixed along the votes.

        Below ``FOLD_REFIT_VOTES`` votes a fold's fit is the whole EM again, without the fold's gold answers.
        From there on (five more whole fits would more than double a Gravity Spy export's ingest) it refits only
        the hidden gold subjects and their volunteers' matrices, every other subject held at the whole fit's
        posterior (its votes' counts ``Frozen``), the hidden subjects' votes judged by the others instead of by
        their known class. The hidden classes then still reach the fold through how the whole fit judged the
        other subjects: on the real crowds (BENCHMARKS.md, "Consensus on real crowds") labels accepted under the
        cutoff so calibrated were right 1-2 points less often than under the refit (still above 0.9)."""
        encoded, ml, whole = self._last
        rows, answers = encoded.gold_rows(gold, classes)
        folds = np.random.default_rng(0).permutation(len(rows)) % min(self.gold_folds, len(rows))
        refit = len(encoded.subject) < FOLD_REFIT_VOTES
        if not refit:
            counts = whole.votes.counts(whole.posterior, whole.confusion)
            class_totals = whole.posterior.sum(axis=0)
        parts = []
        for fold in range(folds.max() + 1):
            hidden = folds == fold
            if refit:  # from the whole fit (close: it knew every gold answer), until the hidden subjects settle
                start = whole.posterior.astype(float)
                start[rows[hidden]] = np.nan
                fit = self.fit(encoded, ml, rows[~hidden], answers[~hidden], start=start, watch=rows[hidden])
                parts.append(truncated_posteriors(encoded, fit, rows[hidden], answers[hidden]))
                continue
            (fold_votes, voters), fold_ml = encoded.restricted(rows[hidden]), ml[rows[hidden]]
            known = np.eye(len(classes))[answers[hidden]]
            as_gold = self.votes_of(fold_votes, np.arange(len(known)), fold_ml).counts(known, whole.confusion[voters])
            frozen = Frozen(counts[voters] - as_gold, class_totals - known.sum(axis=0))
            fit = self.fit(fold_votes, fold_ml, np.array([], dtype=int), np.array([], dtype=int), frozen)
            parts.append(truncated_posteriors(fold_votes, fit, np.arange(len(fold_votes.subjects)), answers[hidden]))
        return pd.concat(parts, ignore_index=True)

    @property
    def confusion_(self) -> dict[str, pd.DataFrame]:
        """Each volunteer's matrix as a table (true class rows x answer columns), made when asked for: at tens of
        thousands of volunteers the tables take seconds, and the consensus itself needs only the matrices."""
        classes = self.class_prior_.index
        return {volunteer: pd.DataFrame(matrix, index=classes.rename("true"), columns=list(classes))
                for volunteer, matrix in zip(self.volunteer_votes_.index, self.confusion_matrices_)}

    def next_vote_chance(self, posterior: pd.DataFrame, counts: pd.Series) -> pd.Series:
        """Chance that one more vote gets each subject accepted: the next answer is predicted with the
        crowd's typical confusion matrix (the volunteers' matrices weighted by their votes, since who comes
        next is unknown), and the subject is accepted after an answer that lifts its top class to the
        cutoff. A one-vote look-ahead with the matrices held fixed: a guide for when to stop asking."""
        typical = np.average(self.confusion_matrices_, axis=0, weights=self.volunteer_votes_.to_numpy())
        p = posterior.to_numpy()
        enough = (counts.to_numpy() + 1) >= self.min_votes
        chance = np.zeros(len(p))
        for answer in range(typical.shape[1]):
            after = p * typical[:, answer]
            total = after.sum(axis=1)
            accepted = enough & (after.max(axis=1) >= self.cutoff_ * total)
            chance += np.where(accepted, total, 0.0)  # total = P(this answer | the subject's posterior)
        return pd.Series(chance, index=posterior.index)

    def skill(self, votes: pd.DataFrame, posterior: pd.DataFrame, gold: pd.Series) -> pd.DataFrame:
        """As ``Consensus.skill``, with ``skill`` the model's estimate: the volunteer's chance of the right
        answer (their matrix's diagonal, weighted by how often each class occurs among the subjects)."""
        table = super().skill(votes, posterior, gold)
        weights = posterior.to_numpy().sum(axis=0)
        weights = weights / weights.sum()
        diagonal = np.diagonal(self.confusion_matrices_, axis1=1, axis2=2) @ weights
        table["skill"] = pd.Series(diagonal, index=self.volunteer_votes_.index).reindex(table.index).astype(float)
        return table

    def ml_log_prior(self, subjects: np.ndarray, classes: Sequence[str], prior: pd.DataFrame | None) -> np.ndarray:
        """``ml_weight`` x log of the learner's floored distribution per subject, normalised; NaN rows where
        the learner gave none."""
        if prior is None:
            return np.full((len(subjects), len(classes)), np.nan)
        # in place: at 10^6 subjects each array of subjects x classes is 0.2 GB
        weighted = prior.reindex(index=subjects, columns=list(classes)).to_numpy(dtype=float, copy=True)
        missing = np.isnan(weighted).any(axis=1)
        weighted[missing] = 1.0
        np.clip(weighted, PRIOR_FLOOR, None, out=weighted)  # floored, as ``floored``
        weighted /= weighted.sum(axis=1, keepdims=True)
        np.log(weighted, out=weighted)
        weighted *= self.ml_weight
        weighted -= logsumexp(weighted, axis=1, keepdims=True)
        weighted[missing] = np.nan
        return weighted


class GravitySpyConsensus(DawidSkene):
    """Gravity Spy's weighting (Zevin et al. 2017, CQG 34 064003, section 4): a subject's posterior is the
    machine-learning prior times the likelihood of each volunteer's vote under that volunteer's confusion
    matrix, accepted at 0.9. That is the Dawid–Skene posterior with the learner's vote; Gravity Spy
    estimates the matrices from gold-standard subjects, as this does when the campaign has them, and
    otherwise from the other votes on each subject (``leave_one_out``). Unlike Gravity Spy's reducer, which
    weights by the column-normalised P(class | vote), this uses the row-normalised P(vote | class), the
    Bayes-consistent likelihood.
    """


def known_answers(gold: pd.Series | None, votes: pd.DataFrame, classes: Sequence[str]) -> pd.Series:
    """The gold subjects that have votes (subject_id as str -> class); a class not in ``classes`` is refused."""
    if gold is None or not len(gold):
        return pd.Series(dtype=object, index=pd.Index([], name="subject_id", dtype=str))
    gold = pd.Series(gold.to_numpy(dtype=object), index=gold.index.astype(str)).dropna()
    unknown = sorted(set(gold) - set(classes))
    if unknown:
        raise ValueError(f"gold answers that are not classes of the workflow: {unknown}")
    gold = gold[~gold.index.duplicated()]
    voted = set(votes["subject_id"].astype(str).to_numpy(dtype=object))
    return gold[[subject in voted for subject in gold.index]].rename_axis("subject_id")


def truncated_posteriors(encoded: EncodedVotes, fit: Fit, rows: np.ndarray, answers: np.ndarray) -> pd.DataFrame:
    """For subjects ``rows`` (whose true classes are ``answers``): the posterior after each of their votes in the
    order cast, with the fit's matrices: subject_id, votes, confidence, tied, right."""
    wanted = np.isin(encoded.subject, rows)
    order = np.lexsort((encoded.rank[wanted], encoded.subject[wanted]))
    subject = encoded.subject[wanted][order]
    log_vote = fit.votes.vote_log_likelihood(fit.confusion, wanted)[order]
    # each subject's votes summed in order, subject by subject (a tie between two classes stays exact)
    runs = np.split(log_vote, np.flatnonzero(np.diff(subject)) + 1)
    cumulative = fit.log_start[subject] + np.concatenate([np.cumsum(run, axis=0) for run in runs])
    post = softmax(cumulative)
    top = post.max(axis=1)
    truth = pd.Series(answers, index=rows).reindex(subject).to_numpy()
    return pd.DataFrame({
        "subject_id": encoded.subjects[subject], "votes": pd.Series(subject).groupby(subject).cumcount().to_numpy() + 1,
        "confidence": top, "tied": (post == top[:, None]).sum(axis=1) > 1, "right": post.argmax(axis=1) == truth})


def first_crossings(replay: pd.DataFrame, min_votes: int) -> pd.DataFrame:
    """The sequential rule replayed at every cutoff the replay's posteriors suggest: for each ``cutoff``, how
    many subjects are ``accepted`` (their posterior reaches it, untied, with at least ``min_votes`` votes) and
    how many of those are ``right`` at the vote where it first does."""
    eligible = replay[(replay["votes"] >= min_votes) & ~replay["tied"]]
    cutoffs = np.unique(eligible["confidence"].to_numpy())
    if len(cutoffs) > MAX_CUTOFFS:
        cutoffs = np.unique(np.quantile(cutoffs, np.linspace(0, 1, MAX_CUTOFFS)))
    subjects = replay["subject_id"].unique()
    if not len(cutoffs) or not len(subjects):
        return pd.DataFrame(columns=CALIBRATION_COLUMNS)
    # subjects x votes matrices, padded where a subject has fewer votes
    row = pd.Index(subjects).get_indexer(eligible["subject_id"])
    width = int(replay["votes"].max())
    confidence = np.full((len(subjects), width), -np.inf)
    right = np.zeros((len(subjects), width), dtype=bool)
    confidence[row, eligible["votes"].to_numpy() - 1] = eligible["confidence"].to_numpy()
    right[row, eligible["votes"].to_numpy() - 1] = eligible["right"].to_numpy()
    crossed = confidence[None, :, :] >= cutoffs[:, None, None]  # cutoffs x subjects x votes
    any_crossed = crossed.any(axis=2)
    first = crossed.argmax(axis=2)
    right_first = right[np.arange(len(subjects))[None, :], first] & any_crossed
    return pd.DataFrame({"cutoff": cutoffs, "accepted": any_crossed.sum(axis=1), "right": right_first.sum(axis=1),
                         "subjects": len(subjects)})


def calibration_cutoff(weights: np.ndarray, target: float) -> float:
    """The least posterior at which the beta calibration map (``beta_calibration``) reaches ``target``
    (infinite where it never does; the map is non-decreasing, so a bisection finds it)."""
    if calibrated(weights, np.array([1.0 - 1e-12]))[0] < target:
        return np.inf
    low, high = 0.0, 1.0 - 1e-12
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if calibrated(weights, np.array([middle]))[0] < target else (low, middle)
    return high


def calibrated(weights: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """P(right) of labels at these top-class posteriors under the beta calibration map ``weights`` = (a, b, c):
    expit(a ln p - b ln(1 - p) + c)."""
    p = np.clip(np.asarray(confidence, dtype=float), 1e-12, 1 - 1e-12)
    return expit(weights[0] * np.log(p) - weights[1] * np.log1p(-p) + weights[2])


def beta_calibration(confidence: np.ndarray, right: np.ndarray) -> np.ndarray:
    """(a, b, c) of P(right) = expit(a ln p - b ln(1 - p) + c) for top-class posteriors p, fitted by maximum
    likelihood with a, b >= 0 (non-decreasing in p): beta calibration (Kull, Silva Filho and Flach 2017). Unlike
    a sigmoid in logit(p) it can level off below 1 (b = 0), as real crowds do: past some posterior, more
    certainty no longer buys more right labels. A ridge of ``CALIBRATION_RIDGE`` pulls towards the identity
    (1, 1, 0), the posterior taken at its word, so a small or all-right gold set cannot run away."""
    p = np.clip(np.asarray(confidence, dtype=float), 1e-12, 1 - 1e-12)
    features = np.column_stack([np.log(p), -np.log1p(-p), np.ones(len(p))])
    y = np.asarray(right, dtype=float)
    identity = np.array([1.0, 1.0, 0.0])

    def loss(weights: np.ndarray) -> tuple[float, np.ndarray]:
        z = features @ weights
        value = np.sum(np.logaddexp(0.0, z) - y * z) + CALIBRATION_RIDGE * np.sum((weights - identity) ** 2)
        return float(value), features.T @ (expit(z) - y) + 2 * CALIBRATION_RIDGE * (weights - identity)

    # SLSQP: scipy's L-BFGS-B runs its few steps on BLAS threads, 50x slower for 3 weights on a loaded machine
    return minimize(loss, identity, jac=True, method="SLSQP", bounds=[(0, None), (0, None), (None, None)]).x


def floored(proba: np.ndarray) -> np.ndarray:
    """Rows of probabilities with every entry at least ``PRIOR_FLOOR`` (renormalised)."""
    p = np.clip(np.asarray(proba, dtype=float), PRIOR_FLOOR, None)
    return p / p.sum(axis=1, keepdims=True)


def softmax(log_p: np.ndarray) -> np.ndarray:
    """Rows of log-probabilities (unnormalised) as probabilities."""
    p = log_p - log_p.max(axis=1, keepdims=True)
    np.exp(p, out=p)  # in place: at millions of votes x classes, each temporary array costs as much as the sum
    p /= p.sum(axis=1, keepdims=True)
    return p


def squarem_jump(start: np.ndarray, first: np.ndarray, second: np.ndarray, step_max: float
                 ) -> tuple[np.ndarray | None, float]:
    """SQUAREM's extrapolation (scheme S3) of posteriors (rows of probabilities) from ``start`` through two EM
    steps, in logs: ``log start + 2 a r + a^2 v`` with r the first step, v the change between the steps and a =
    |r| / |v| in [1, ``step_max``], each row renormalised. ``step_max`` grows fourfold each time the step reaches
    it. Returns the jumped posteriors (None where a = 1: the second step is as far) and the next ``step_max``."""
    rows = np.arange(len(start) + 1)
    sums = np.empty((len(start), 2))
    em_kernels.run(em_kernels.squarem_sums, rows, start, first, second, sums)
    rr, vv = sums.sum(axis=0)
    length = min(max(np.sqrt(rr / vv) if vv > 0 else np.inf, 1.0), step_max)
    next_max = step_max * 4 if length == step_max else step_max
    if length == 1.0:
        return None, next_max
    jumped = np.empty_like(start)
    em_kernels.run(em_kernels.squarem_rows, rows, start, first, second, length, jumped)
    return jumped, next_max


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
                      prior: pd.DataFrame | None = None, max_votes: int = 8, gold: pd.Series | None = None
                      ) -> pd.DataFrame:
    """Gravity Spy's retirement rule, offline: every subject takes its votes (``votes`` rows, in the order
    cast) one at a time until the consensus accepts it or it has ``max_votes`` (or no more votes).

    After each step the consensus is refitted on all the votes taken so far (a model-based method learns
    the volunteers from every subject, closed or not). A subject keeps the label and agreement it was
    accepted with; one that never is gets its consensus at its last vote. Gold subjects (``gold``) take all
    their votes up to ``max_votes``: they are there to measure the volunteers. Returns ``aggregate``'s columns.
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
        result = consensus.aggregate(votes[rank < taken.reindex(subject).to_numpy()], classes, prior, gold)
        done = result.loc[open_]
        done = done[(done["status"] == ACCEPTED) | (done["votes"] >= available.loc[done.index])]
        closed.append(done)
    return pd.concat(closed).reindex(available.index).rename_axis("subject_id")
