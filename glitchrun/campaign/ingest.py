"""From a Zooniverse classification export to crowd labels in the campaign state.

The export is parsed completely before anything is written: a malformed export (an annotation without
the question, an answer that is not a class, rows of another workflow) raises ``IngestError`` saying
which classifications and why, and the state is left as it was. Then one vote per volunteer and subject
(Zooniverse keeps a volunteer's repeat classifications in the export; they count once, the first one),
a consensus per subject, and one transaction of labels for the subjects the consensus accepts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pandera.pandas as pa

from glitchrun.campaign.state import CampaignState
from glitchrun.crowd.consensus import ACCEPTED
from glitchrun.csvio import file_line
from glitchrun.zooniverse.resources import TASK_KEY

log = logging.getLogger(__name__)

UNKNOWN_SUBJECT = "unknown_subject"
#: the columns every classification export has that ingest reads
EXPORT_COLUMNS = ["classification_id", "user_name", "user_id", "user_ip", "workflow_id", "annotations",
                  "subject_data", "subject_ids"]
LABEL_COLUMNS = ["candidate_id", "label", "votes", "agreement", "source"]
#: listed problems in an ``IngestError`` message before "and N more"
MAX_LISTED = 10

#: the agreement report: panoptes_aggregation's question-reducer columns (``data.<answer>`` vote counts)
#: plus the consensus and why a subject was or was not labelled
REPORT_SCHEMA = pa.DataFrameSchema(
    {
        "subject_id": pa.Column(str, unique=True),
        "candidate_id": pa.Column(str, nullable=True),
        r"data\..+": pa.Column(int, pa.Check.ge(0), regex=True),
        "votes": pa.Column(int, pa.Check.ge(1)),
        "consensus_label": pa.Column(str),
        "agreement": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "status": pa.Column(str),
    },
    strict=True,
    coerce=True,  # an export with no classifications yet gives an empty, untyped report
)


class IngestError(ValueError):
    """A classification export that cannot be turned into labels; nothing was written."""


@dataclass
class Tally:
    """Votes and consensus of one export, before anything is written."""

    report: pd.DataFrame  # one row per subject, columns of ``REPORT_SCHEMA``
    classifications: int  # rows of the export
    repeats: int  # repeat classifications of a subject by the same volunteer (not counted)
    unanswered: int  # classifications without an answer

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
        return (f"{self.classifications} classifications ({self.repeats} repeats and {self.unanswered} without an "
                f"answer not counted) of {len(self.report)} subjects: {statuses or 'none'}")


def ingest_export(export: pd.DataFrame, state: CampaignState, consensus: Any, classes: list[str],
                  round: int | None = None, source: str = "classification export") -> pd.DataFrame:
    """Add the crowd labels of a validated classification export to the campaign state.

    A label is recorded for the round that queried its candidate (an export holds every round's
    classifications so far); ``round`` is recorded for candidates no round queried (e.g. init_project's).
    Returns the labels added (columns candidate_id, label, votes, agreement, source='crowd').
    """
    return record(tally(export, state, consensus, classes, source), state, round)


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
          source: str = "classification export") -> Tally:
    """Parse the export, count one vote per volunteer and subject, and run the consensus (no writes).

    ``source`` names the export (e.g. its file) in error messages.
    """
    votes, prior, unanswered = parse_export(export, classes, source)
    first = votes.sort_values("classification_id").drop_duplicates(["subject_id", "volunteer"])
    decided = consensus.aggregate(first[["subject_id", "volunteer", "label"]], classes, prior)
    counts = (pd.crosstab(first["subject_id"], first["label"]).reindex(index=decided.index, columns=list(classes),
                                                                       fill_value=0))
    counts.columns = [f"data.{c}" for c in counts.columns]
    candidates = pd.Series(state.subject_candidates(), dtype=object).reindex(decided.index)
    status = decided["status"].where(candidates.notna(), UNKNOWN_SUBJECT)
    report = pd.concat([counts.astype(int), decided.drop(columns="status")], axis=1).assign(status=status)
    report.insert(0, "candidate_id", candidates)
    report = report.reset_index()
    report["subject_id"] = report["subject_id"].astype(str)
    return Tally(report, len(export), len(votes) - len(first), unanswered)


def parse_export(export: pd.DataFrame, classes: Sequence[str], source: str = "classification export"
                 ) -> tuple[pd.DataFrame, pd.DataFrame | None, int]:
    """(votes: classification_id, subject_id, volunteer, label; the ML prior per subject; unanswered count).

    Raises ``IngestError`` listing every malformed classification by its file line (rows keep the
    default index of the CSV they were read from).
    """
    missing = [c for c in EXPORT_COLUMNS if c not in export.columns]
    if missing:
        raise IngestError(f"{source}: not a classification export: columns {missing} are missing")
    workflows = sorted({str(w) for w in export["workflow_id"]})
    if len(workflows) > 1:
        raise IngestError(f"{source}: the export mixes workflows {workflows}; ingest one workflow's "
                          "classifications (its classification export) so that answers mean the same classes")
    rows, problems, priors = [], [], {}
    unanswered = 0
    for index, record in zip(export.index, export[EXPORT_COLUMNS].itertuples(index=False)):
        try:
            label = answer(record.annotations, classes)
        except ValueError as err:
            problems.append(f"{file_line(index)}, column 'annotations' (classification {record.classification_id}): {err}")
            continue
        if label is None:
            unanswered += 1
            continue
        volunteer = volunteer_key(record.user_id, record.user_ip, record.user_name)
        for subject in str(record.subject_ids).split(";"):
            rows.append((int(record.classification_id), subject, volunteer, label))
            priors.setdefault(subject, ml_prior(record.subject_data, subject, classes))
    if problems:
        more = f" and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise IngestError(f"{source}: {len(problems)} malformed classifications, nothing ingested: "
                          f"{'; '.join(problems[:MAX_LISTED])}{more}")
    votes = pd.DataFrame(rows, columns=["classification_id", "subject_id", "volunteer", "label"])
    known = {s: p for s, p in priors.items() if p is not None}
    prior = pd.DataFrame.from_dict(known, orient="index", columns=list(classes)) if known else None
    return votes, prior, unanswered


def volunteer_key(user_id: Any, user_ip: Any, user_name: str) -> str:
    """Who classified: the account, or for anonymous volunteers the hashed IP the export gives."""
    if pd.notna(user_id):
        return f"user:{user_id}"
    return f"ip:{user_ip}" if pd.notna(user_ip) else f"name:{user_name}"


def answer(annotations: Any, classes: Sequence[str]) -> str | None:
    """The class a classification chose for question ``T0``: the answer label (exports) or its index (raw)."""
    if not isinstance(annotations, list):
        raise ValueError(f"annotations are not a parsed JSON array ({type(annotations).__name__})")
    tasks = [a for a in annotations if isinstance(a, dict) and a.get("task") == TASK_KEY]
    if not tasks:
        raise ValueError(f"no annotation for task {TASK_KEY}")
    value = tasks[0].get("value")
    if value is None:
        return None
    if isinstance(value, str) and value in classes:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(classes):
        return classes[value]
    raise ValueError(f"answer {value!r} is not one of the workflow's {len(classes)} classes")


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
