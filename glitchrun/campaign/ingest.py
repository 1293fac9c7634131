"""From a Zooniverse classification export to crowd labels in the campaign state.

The export is parsed completely before anything is written. Which classifications count, and how an
annotation becomes a class, is the campaign task's (``glitchrun.campaign.tasks.TaskSpec``): classifications
of other workflows or of versions that do not count are skipped and counted; an answer that is not an
option of the task raises ``IngestError`` listing those classifications; another task type (drawing, …)
raises it in one short line. Then one vote per volunteer and subject: Zooniverse keeps a volunteer's repeat
classifications in the export and they count once, the first one (panoptes_aggregation's default
``filter='first'``); anonymous volunteers are told apart by the export's ``user_ip`` hash (their
``user_name`` is ``not-logged-in-<hash>``). Then a consensus per subject, and one transaction of labels for
the subjects the consensus accepts.

The agreement report has one row per subject: glitchrun's own columns (``candidate_id``,
``consensus_label``, ``agreement`` and ``votes`` of the consensus, ``status``) beside the columns
panoptes_aggregation's reducers write, with their names and meanings, so the two join on
(``subject_id``, ``workflow_id``, ``task``):

==================== ==================================================================================
``subject_id``       Zooniverse subject id
``workflow_id``      the campaign's workflow
``task``             the task key the class was read from (e.g. ``T0``)
``data.<slug>``      question reducer: classifications choosing that answer (label) or survey choice (id),
                     under python-slugify's rule (lower case, runs of other characters -> ``-``:
                     ``Koi_Fish`` -> ``koi-fish``, ``POWERLINE60HZ`` -> ``powerline60hz``); only answers seen,
                     blank for a subject without that answer, as in the reducer's CSV
``data.most_likely`` consensus reducer: the most chosen slug (ties: the first chosen)
``data.num_votes``   consensus reducer: the winner's votes (not the total; glitchrun's ``votes`` is the total)
``data.agreement``   consensus reducer: ``data.num_votes`` / all counted classifications of the subject
==================== ==================================================================================

The counts are panoptes_aggregation's question_extractor + question_reducer / question_consensus_reducer
run on the same export with its default first-classification filter, with two differences: a
classification without an answer, or marking survey choices of different classes, is not counted (the
extractor would count ``None`` or each choice).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from slugify import slugify

from glitchrun.campaign.state import CampaignState
from glitchrun.campaign.tasks import AnswerError, IngestError, TaskSpec
from glitchrun.crowd.consensus import ACCEPTED
from glitchrun.csvio import LINES, file_line

log = logging.getLogger(__name__)

UNKNOWN_SUBJECT = "unknown_subject"
#: the columns every classification export has that ingest reads
EXPORT_COLUMNS = ["classification_id", "user_name", "user_id", "user_ip", "workflow_id", "workflow_version",
                  "annotations", "subject_data", "subject_ids"]
LABEL_COLUMNS = ["candidate_id", "label", "votes", "agreement", "source"]
#: listed problems in an ``IngestError`` message before "and N more"
MAX_LISTED = 10

#: the agreement report (see the module docstring): panoptes_aggregation's reducer columns, the consensus,
#: and why a subject was or was not labelled
REPORT_SCHEMA = pa.DataFrameSchema(
    {
        "subject_id": pa.Column(str, unique=True),
        "candidate_id": pa.Column(str, nullable=True),
        "workflow_id": pa.Column(str),
        "task": pa.Column(str),
        r"^data\.(?!agreement$)[a-z0-9-]+$": pa.Column("Int64", pa.Check.ge(1), nullable=True, regex=True,
                                                       required=False),
        "data.most_likely": pa.Column(str),
        "data.num_votes": pa.Column(int, pa.Check.ge(1)),
        "data.agreement": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "votes": pa.Column(int, pa.Check.ge(1)),
        "consensus_label": pa.Column(str),
        "agreement": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "status": pa.Column(str),
    },
    strict=True,
    coerce=True,  # an export with no classifications yet gives an empty, untyped report
)


@dataclass
class Tally:
    """Votes and consensus of one export, before anything is written."""

    report: pd.DataFrame  # one row per subject, columns of ``REPORT_SCHEMA``
    classifications: int  # rows of the export
    repeats: int  # repeat classifications of a subject by the same volunteer (not counted)
    unanswered: int  # classifications without an answer
    skipped: dict[str, int] = field(default_factory=dict)  # classifications not counted, by reason

    def labels(self) -> pd.DataFrame:
        """The labels the consensus accepts (columns ``LABEL_COLUMNS``)."""
        accepted = self.report[self.report["status"] == ACCEPTED]
        return pd.DataFrame({
            "candidate_id": accepted["candidate_id"].astype(str),
            "label": accepted["consensus_label"].astype(str),
            "votes": accepted["votes"].astype(int),
            "agreement": accepted["agreement"].astype(float),
            "source": "crowd",
        }).reset_index(drop=True)

    def summary(self) -> str:
        by_status = self.report["status"].value_counts()
        statuses = ", ".join(f"{count} {status.replace('_', ' ')}" for status, count in by_status.items())
        skipped = "".join(f", {n} of {reason}" for reason, n in self.skipped.items())
        return (f"{self.classifications} classifications ({self.repeats} repeats, {self.unanswered} without an "
                f"answer{skipped} not counted) of {len(self.report)} subjects: {statuses or 'none'}")


def ingest_export(export: pd.DataFrame, state: CampaignState, consensus: Any, classes: list[str],
                  round: int | None = None, source: str = "classification export", task: TaskSpec | None = None
                  ) -> pd.DataFrame:
    """Add the crowd labels of a validated classification export to the campaign state.

    A label is recorded for the round that queried its candidate (an export holds every round's
    classifications so far); ``round`` is recorded for candidates no round queried (e.g. init_project's).
    ``task`` says which classifications count and how they answer (default: a question whose answers
    are ``classes``, read from the export). Returns the labels added (columns candidate_id, label, votes,
    agreement, source='crowd').
    """
    return record(tally(export, state, consensus, classes, source, task), state, round)


def record(result: Tally, state: CampaignState, round: int | None) -> pd.DataFrame:
    """Write a tally's accepted labels to the state in one transaction, and log what happened."""
    labels = result.labels()
    queried_in = batch_rounds(state)
    rounds = [queried_in.get(c, round) for c in labels["candidate_id"]]
    state.add_labels(labels.assign(round=pd.Series(rounds, dtype=object)).to_dict("records"))
    log.info("ingest: %s; %d labels added to the campaign", result.summary(), len(labels))
    unknown = result.report.loc[result.report["status"] == UNKNOWN_SUBJECT, "subject_id"]
    if not unknown.empty:
        log.warning("ingest: %d subjects are not subjects of this campaign and were skipped: %s", len(unknown),
                    ", ".join(unknown[:MAX_LISTED]) + (" ..." if len(unknown) > MAX_LISTED else ""))
    return labels[LABEL_COLUMNS]


def batch_rounds(state: CampaignState) -> dict[str, int]:
    """The round whose batch held each candidate."""
    return {c: int(n) for n in state.rounds()["number"] for c in state.batch(int(n))["candidate_id"]}


def tally(export: pd.DataFrame, state: CampaignState, consensus: Any, classes: Sequence[str],
          source: str = "classification export", task: TaskSpec | None = None) -> Tally:
    """Parse the export, count one vote per volunteer and subject, and run the consensus (no writes).

    ``source`` names the export (e.g. its file) in error messages.
    """
    parsed = parse_export(export, classes, source, task)
    votes = parsed.votes
    first = votes.sort_values("classification_id").drop_duplicates(["subject_id", "volunteer"])
    # the learner's whole distribution recorded when the batch was chosen; the export's top class elsewhere
    recorded = prior_frame(state.distributions(), classes)
    prior = parsed.prior if recorded is None else recorded.combine_first(parsed.prior) if parsed.prior is not None \
        else recorded
    decided = consensus.aggregate(first[["subject_id", "volunteer", "label"]], classes, prior)
    counts = aggregation_columns(first, parsed.task).reindex(decided.index)
    candidates = pd.Series(state.subject_candidates(), dtype=object).reindex(decided.index)
    status = decided["status"].where(candidates.notna(), UNKNOWN_SUBJECT)
    report = pd.concat([counts, decided.drop(columns="status")], axis=1).assign(status=status)
    report.insert(0, "candidate_id", candidates)
    report = report.reset_index()
    report["subject_id"] = report["subject_id"].astype(str)
    return Tally(report, len(export), len(votes) - len(first), parsed.unanswered, parsed.skipped)


def prior_frame(distributions: Mapping[str, Mapping[str, float]], classes: Sequence[str]) -> pd.DataFrame | None:
    """The learner's distributions as consensus priors (subjects x classes, rows summing to 1).

    Probability the learner gave no class (an older state file kept only the top class) is spread evenly
    over the classes it does not name.
    """
    if not distributions:
        return None
    classes = list(classes)
    frame = pd.DataFrame.from_dict(dict(distributions), orient="index").reindex(columns=classes)
    missing = frame.isna()
    rest = (1.0 - frame.sum(axis=1)).clip(lower=0.0) / missing.sum(axis=1).replace(0, 1)
    frame = frame.mask(missing, np.broadcast_to(rest.to_numpy()[:, None], frame.shape))
    return frame.div(frame.sum(axis=1), axis=0)


@dataclass
class Parsed:
    """An export's votes, before repeats are removed."""

    votes: pd.DataFrame  # classification_id, subject_id, volunteer, value (answer label / choice id), label (class)
    prior: pd.DataFrame | None  # the learner's class distribution per subject, where the subject carries it
    unanswered: int  # counted classifications without an answer
    skipped: dict[str, int]  # classifications not counted, by reason (other workflows, other versions)
    task: TaskSpec  # the task, with what the export filled in (workflow, versions, key)


def parse_export(export: pd.DataFrame, classes: Sequence[str], source: str = "classification export",
                 task: TaskSpec | None = None) -> Parsed:
    """The votes of an export's classifications that count for ``task`` (default: a question whose
    answers are ``classes``, its key, workflow and version read from the export).

    Raises ``IngestError`` listing every malformed classification by its file line (rows keep the
    default index of the CSV they were read from), or in one line for a task of another type.
    """
    missing = [c for c in EXPORT_COLUMNS if c not in export.columns]
    if missing:
        raise IngestError(f"{source}: not a classification export: columns {missing} are missing")
    try:
        task = (task or TaskSpec.from_config({"classes": list(classes)})).for_export(export)
    except IngestError as err:
        raise IngestError(f"{source}: {err}") from None
    rows, problems, priors, skipped = [], [], {}, Counter()
    unanswered = 0
    for index, record in zip(export.index, export[EXPORT_COLUMNS].itertuples(index=False)):
        reason = task.skip_reason(record.workflow_id, record.workflow_version)
        if reason is not None:
            skipped[reason] += 1
            continue
        line = file_line(index, export.attrs.get(LINES))
        where = f"{line}, column 'annotations' (classification {record.classification_id})"
        try:
            value = task.value(record.annotations)
        except AnswerError as err:
            problems.append(f"{where}: {err}")
            continue
        except IngestError as err:
            raise IngestError(f"{source}: {where}: {err}; nothing ingested") from None
        if value is None:
            unanswered += 1
            continue
        volunteer = volunteer_key(record.user_id, record.user_ip, record.user_name)
        for subject in str(record.subject_ids).split(";"):
            rows.append((int(record.classification_id), subject, volunteer, value, task.table[value]))
            priors.setdefault(subject, ml_prior(record.subject_data, subject, classes))
    if problems:
        more = f" and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise IngestError(f"{source}: {len(problems)} malformed classifications, nothing ingested: "
                          f"{'; '.join(problems[:MAX_LISTED])}{more}")
    votes = pd.DataFrame(rows, columns=["classification_id", "subject_id", "volunteer", "value", "label"])
    known = {s: p for s, p in priors.items() if p is not None}
    prior = pd.DataFrame.from_dict(known, orient="index", columns=list(classes)) if known else None
    return Parsed(votes, prior, unanswered, dict(skipped), task)


def aggregation_columns(votes: pd.DataFrame, task: TaskSpec) -> pd.DataFrame:
    """panoptes_aggregation's question-reducer and question-consensus-reducer columns per subject, from
    one vote per volunteer in classification order (see the module docstring)."""
    slugs = votes["value"].map(slug)
    counts = pd.crosstab(votes["subject_id"], slugs)
    counts = counts[[s for s in dict.fromkeys(map(slug, task.options)) if s in counts.columns]]
    counts = counts.where(counts > 0).astype("Int64").add_prefix("data.")
    consensus = {}
    for subject, chosen in slugs.groupby(votes["subject_id"], sort=False):
        (winner, n), = Counter(chosen).most_common(1)
        consensus[subject] = (winner, n, n / len(chosen))
    columns = ["data.most_likely", "data.num_votes", "data.agreement"]
    consensus_columns = pd.DataFrame.from_dict(consensus, orient="index", columns=columns).reindex(counts.index)
    return pd.concat([counts, consensus_columns], axis=1).assign(workflow_id=task.workflow_id, task=task.key)[
        ["workflow_id", "task", *counts.columns, *columns]]


def slug(value: str) -> str:
    """An answer as panoptes_aggregation's extractors name it (python-slugify, ``-`` separator)."""
    return slugify(value, separator="-")


def volunteer_key(user_id: Any, user_ip: Any, user_name: str) -> str:
    """Who classified: the account, or for anonymous volunteers the hashed IP the export gives."""
    if pd.notna(user_id):
        return f"user:{user_id}"
    return f"ip:{user_ip}" if pd.notna(user_ip) else f"name:{user_name}"


def ml_prior(subject_data: Any, subject: str, classes: Sequence[str]) -> list[float] | None:
    """The learner's prediction the round hid in the subject's metadata, as a class distribution.

    The round records only the top class and its probability (``#predicted_class``, ``#probability``);
    the rest of the probability is spread evenly over the other classes.
    """
    metadata = subject_data.get(subject, {}) if isinstance(subject_data, dict) else {}
    predicted = metadata.get("#predicted_class")
    try:
        p = float(metadata.get("#probability"))
    except (TypeError, ValueError):
        return None
    if predicted not in classes or not 0.0 <= p <= 1.0 or len(classes) < 2:
        return None
    return [p if c == predicted else (1.0 - p) / (len(classes) - 1) for c in classes]
