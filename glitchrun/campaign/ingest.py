"""From a Zooniverse classification export of any size to labels in the campaign state.

**Reading.** The export streams in chunks (``glitchrun.zooniverse.exports.export_chunks``: each validated by the
pandera schema, memory bounded by the chunk, a progress bar by rows) and each row becomes a few integers: codes
of its workflow, version, volunteer, subject and answer. A chunk's columns are factorized; each distinct
annotations text is parsed once into plain objects and reduced to what a task reads (``tasks.answers_of``); a
subject's ``subject_data`` is parsed at its first classification only, for what its metadata says
(``glitchrun.campaign.subjects.SubjectFields``: its candidate, the learner's stored distribution, gold). The
classification ``metadata`` column, which ingest does not use, is checked to be JSON object text, not parsed.
Time and memory grow with rows and subjects, never with rows x subjects. Nothing is decided or written before
the whole export is read.

**Which classifications count.** Per workflow, the campaign task (``glitchrun.campaign.tasks.TaskSpec``): its
versions (configured, else the workflow's latest major version in the export) and its task key (configured,
else the task answered with the campaign's options). ``workflows`` picks the workflows of a project export:
the campaign's own (when the state knows it) or the export's only one by default, a list of ids, or ``all``
(each with its own task key and versions; a workflow without such a task is skipped and said). Skipped
classifications are counted by reason. An answer that is not an option of the task raises ``IngestError``
listing those classifications by line; another task type (drawing, ...) raises it in one short line. A vote for
a choice whose class is not a campaign class (a Gravity Spy O3 choice in a v1.0-class campaign) is counted apart.

**Volunteers and experts.** One vote per volunteer and subject, over the workflows read: Zooniverse keeps a
volunteer's repeat classifications and they count once, the first one (panoptes_aggregation's default
``filter='first'``); anonymous volunteers are told apart by the export's ``user_ip`` hash (``volunteer_key``).
A gold-standard classification (``gold_standard`` true; only project experts may make one, and panoptes
``lib/classification_lifecycle.rb`` marks it ``expert`` or ``owner`` in the ``expert`` column) is a known answer,
not a vote: the experts' class is the subject's gold when they agree, and so is the class a gold-standard subject
names in its metadata (Gravity Spy's ``#Type``/``#Label``); a subject whose sources disagree has no gold. A subject
with gold (of a campaign class) is labelled by it (source ``expert``) and the gold goes to the consensus
(``Consensus.aggregate(..., gold=)``: volunteers measured on known answers, acceptance calibrated on them); the
other subjects get the consensus of their volunteers' votes (the learner's stored distribution as prior), and the
subjects it accepts are labelled (source ``crowd``), in one transaction.

**Reports.** The agreement report has one row per subject and workflow: glitchrun's own columns
(``candidate_id``; ``consensus_label``, ``agreement`` and ``votes`` of the subject's consensus over the workflows
read; ``status``) beside the columns panoptes_aggregation's question reducers write, with their names and
meanings, so the two join on (``subject_id``, ``workflow_id``, ``task``):

==================== ==================================================================================
``subject_id``       Zooniverse subject id
``workflow_id``      the workflow the classifications are of
``task``             the task key the class was read from (e.g. ``T0``)
``data.<slug>``      question reducer: classifications choosing that answer (label) or survey choice (id),
                     under python-slugify's rule (lower case, runs of other characters -> ``-``:
                     ``Koi_Fish`` -> ``koi-fish``, ``POWERLINE60HZ`` -> ``powerline60hz``); only answers seen,
                     blank for a subject without that answer, as in the reducer's CSV
``data.most_likely`` consensus reducer: the most chosen slug (ties: the first chosen)
``data.num_votes``   consensus reducer: the winner's votes (not the total; glitchrun's ``votes`` is the total)
``data.agreement``   consensus reducer: ``data.num_votes`` / all counted classifications of the subject
==================== ==================================================================================

For survey tasks a second report has panoptes_aggregation's ``survey_reducer`` layout: one row per subject,
workflow and choice marked, in the order first marked, with ``reducer`` (``survey_reducer``), ``data.choice``
(the choice id slugged), ``data.total_vote_count`` (the subject's counted classifications in the workflow) and
``data.choice_count``; it joins on (``subject_id``, ``workflow_id``, ``task``, ``data.choice``).

The counts are panoptes_aggregation's question or survey extractor and reducers run on the same export with its
default first-classification filter, with three differences: a classification without an answer, or marking
survey choices of different classes, is not counted (the extractors would count ``None`` or each choice), and
gold-standard (expert) classifications are not volunteers' votes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from slugify import slugify
from tqdm import tqdm

from glitchrun.campaign.state import CampaignState
from glitchrun.campaign.subjects import SubjectFields, label_classes, squeezed
from glitchrun.campaign.tasks import OTHER_VERSIONS, OTHER_WORKFLOWS, SURVEY, AnswerError, Answers, IngestError, \
    TaskSpec, answers_of
from glitchrun.crowd.consensus import ACCEPTED, GOLD
from glitchrun.csvio import LINES, CsvError, listed
from glitchrun.zooniverse.exports import parse_json_codes

log = logging.getLogger(__name__)

UNKNOWN_SUBJECT = "unknown_subject"
#: classifications not counted as votes, besides other workflows and versions
EXPERT_ROWS, OTHER_CLASSES = "experts (gold standard)", "classes outside the campaign"
LABEL_COLUMNS = ["candidate_id", "label", "votes", "agreement", "source"]
#: ``job.workflows``: every workflow of the export
ALL = "all"
#: listed problems in an ``IngestError`` message before "and N more"
MAX_LISTED = 10

#: the agreement report (see the module docstring): panoptes_aggregation's reducer columns, the consensus,
#: and why a subject was or was not labelled
REPORT_SCHEMA = pa.DataFrameSchema(
    {
        "subject_id": pa.Column(str),
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
    unique=["subject_id", "workflow_id"],
)

#: the survey report: panoptes_aggregation's survey_reducer CSV (module docstring)
SURVEY_SCHEMA = pa.DataFrameSchema(
    {
        "subject_id": pa.Column(str),
        "candidate_id": pa.Column(str, nullable=True),
        "workflow_id": pa.Column(str),
        "task": pa.Column(str),
        "reducer": pa.Column(str, pa.Check.eq("survey_reducer")),
        "data.choice": pa.Column(str),
        "data.total_vote_count": pa.Column(int, pa.Check.ge(1)),
        "data.choice_count": pa.Column(int, pa.Check.ge(1)),
    },
    strict=True,
    coerce=True,
    unique=["subject_id", "workflow_id", "data.choice"],
)


# -- reading --------------------------------------------------------------------------------------------------
@dataclass
class Codes:
    """Values seen in the export, each given a small integer code in the order first seen."""

    values: list[Any] = field(default_factory=list)
    index: dict[Any, int] = field(default_factory=dict)

    def code(self, value: Any) -> int:
        found = self.index.get(value)
        if found is None:
            found = self.index[value] = len(self.values)
            self.values.append(value)
        return found

    def encode(self, cells: pd.Series) -> np.ndarray:
        """The code of each cell (a chunk's distinct values looked up once)."""
        local, uniques = pd.factorize(cells)
        return np.array([self.code(u) for u in uniques.tolist()], dtype=np.int64)[local] if len(cells) else \
            np.zeros(0, dtype=np.int64)


@dataclass
class Subjects:
    """What each subject's metadata says, read at its first classification (by subject code)."""

    ids: Codes = field(default_factory=Codes)
    candidates: list[str | None] = field(default_factory=list)
    gold_labels: dict[int, str] = field(default_factory=dict)  # code -> a gold-standard subject's label as written
    prior_codes: list[int] = field(default_factory=list)
    prior_rows: list[np.ndarray] = field(default_factory=list)  # blocks of distributions, rows in prior_codes' order


class ExportReader:
    """Reduces a classification export, chunk by chunk, to integer codes per vote (a classification of several
    subjects gives one per subject); nothing is decided before ``finish``."""

    COLUMNS = ("classification_id", "workflow", "version", "volunteer", "subject", "answer", "expert", "line")
    #: the export's columns it reads
    READ = ("classification_id", "user_name", "user_id", "user_ip", "workflow_id", "workflow_version", "gold_standard",
            "expert", "annotations", "subject_data", "subject_ids")

    def __init__(self, fields: SubjectFields, classes: Sequence[str], known: Mapping[str, str],
                 workflows: Sequence[str] | None, source: str) -> None:
        self.fields = fields
        self.classes = list(classes)
        self.known = known  # subject id -> candidate, for subjects glitchrun uploaded
        self.wanted = None if workflows is None else {str(w) for w in workflows}
        self.source = source
        self.workflows, self.versions, self.volunteers, self.answers = Codes(), Codes(), Codes(), Codes()
        self.subjects = Subjects()
        self.parts: list[dict[str, np.ndarray]] = []
        self.rows = 0  # classifications read
        self.other_workflows: Counter[str] = Counter()  # classifications of workflows not read, by workflow

    def add(self, chunk: pd.DataFrame) -> None:
        """One validated chunk of text cells (``export_chunks``)."""
        self.rows += len(chunk)
        lines = chunk.attrs.get(LINES)
        lines = np.arange(len(chunk)) + 2 if lines is None else np.asarray(lines)
        chunk = chunk[list(self.READ)]  # what ingest reads: rows are filtered without copying the rest
        workflow = chunk["workflow_id"].astype("str")
        if self.wanted is not None:
            kept = workflow.isin(self.wanted).to_numpy()
            if not kept.all():
                self.other_workflows.update(workflow[~kept].value_counts().to_dict())
                chunk, workflow = chunk[kept], workflow[kept]
        if chunk["subject_ids"].str.contains(";", regex=False).any():  # one vote per subject of a classification
            chunk = chunk.assign(subject_ids=chunk["subject_ids"].str.split(";")).explode("subject_ids")
            workflow = workflow.loc[chunk.index]
        answer_codes, parsed = parse_json_codes(chunk["annotations"], list, "annotations", self.source, lines)
        by_text = np.array([self.answers.code(answers_of(p)) for p in parsed[:-1]] + [-1], dtype=np.int64)
        self.parts.append({
            "classification_id": chunk["classification_id"].to_numpy(dtype=np.int64),
            "workflow": self.workflows.encode(workflow),
            "version": self.versions.encode(chunk["workflow_version"]),
            "volunteer": self.encode_volunteers(chunk),
            "subject": self.encode_subjects(chunk, lines),
            "answer": by_text[answer_codes],
            "expert": ((chunk["gold_standard"] == "true").fillna(False) | chunk["expert"].notna()).to_numpy(bool),
            "line": lines[chunk.index.to_numpy()],
        })

    def encode_volunteers(self, chunk: pd.DataFrame) -> np.ndarray:
        """Each row's volunteer, by ``volunteer_key`` of each distinct (user_id, user_ip, user_name)."""
        who = (chunk["user_id"].astype("str").fillna("") + "\t" + chunk["user_ip"].fillna("") + "\t"
               + chunk["user_name"].fillna(""))
        local, distinct = pd.factorize(who)
        codes = []
        for text in distinct.tolist():
            user_id, ip, name = (cell or None for cell in text.split("\t", 2))
            codes.append(self.volunteers.code(volunteer_key(user_id, ip, name)))
        return np.array(codes, dtype=np.int64)[local]

    def encode_subjects(self, chunk: pd.DataFrame, lines: np.ndarray) -> np.ndarray:
        """Each row's subject; the subjects seen for the first time have their ``subject_data`` read."""
        ids = self.subjects.ids
        before = len(ids.values)
        codes = ids.encode(chunk["subject_ids"])
        new = codes >= before
        if new.any():
            _, first = np.unique(codes[new], return_index=True)  # new codes follow the order first seen
            rows = chunk.iloc[np.flatnonzero(new)[first]]
            data_codes, data = parse_json_codes(rows["subject_data"], dict, "subject_data", self.source, lines)
            self.read_subjects(rows["subject_ids"].astype("str").tolist(), data[data_codes])
        return codes

    def read_subjects(self, subject_ids: list[str], subject_data: np.ndarray) -> None:
        """What new subjects' metadata says (``SubjectFields``), by subject code."""
        subjects = self.subjects
        first = len(subjects.candidates)
        metadatas = [found if isinstance(found, dict) else {} for found in
                     (data.get(s) if isinstance(data, dict) else None for s, data in zip(subject_ids, subject_data))]
        subjects.candidates.extend(self.known.get(s) or self.fields.candidate(m)
                                   for s, m in zip(subject_ids, metadatas))
        for at, metadata in enumerate(metadatas):
            label = self.fields.gold_label(metadata)
            if label is not None:
                subjects.gold_labels[first + at] = label
        found, rows = self.fields.distributions(metadatas, self.classes)
        if len(found):
            subjects.prior_codes.extend((found + first).tolist())
            subjects.prior_rows.append(rows)

    def finish(self) -> dict[str, np.ndarray]:
        """Every vote's codes (columns ``COLUMNS``). Raises ``CsvError`` for a classification id on two lines
        (each chunk's schema checks its own rows; this, the whole file's)."""
        if not self.parts:
            return {c: np.zeros(0, dtype=bool if c == "expert" else np.int64) for c in self.COLUMNS}
        votes = {c: np.concatenate([p[c] for p in self.parts]) for c in self.COLUMNS}
        self.parts = []  # consumed: at millions of rows the codes take hundreds of MB, kept once, not twice
        rows = np.unique(np.stack([votes["classification_id"], votes["line"]], axis=1), axis=0)
        ids, counts = np.unique(rows[:, 0], return_counts=True)
        if (counts > 1).any():
            twice = rows[np.isin(rows[:, 0], ids[counts > 1]), 1]
            raise CsvError(f"{self.source}: column 'classification_id' holds an id twice, at "
                           f"{listed([f'line {line}' for line in np.sort(twice)])}")
        return votes


def volunteer_key(user_id: Any, user_ip: Any, user_name: str) -> str:
    """Who classified: the account, or for anonymous volunteers the hashed IP the export gives."""
    if pd.notna(user_id):
        return f"user:{user_id}"
    return f"ip:{user_ip}" if pd.notna(user_ip) else f"name:{user_name}"


def read_export(chunks: Iterable[pd.DataFrame], fields: SubjectFields, classes: Sequence[str],
                known: Mapping[str, str], workflows: Sequence[str] | None, source: str,
                progress: bool = False) -> ExportReader:
    """Read every chunk (a bar by rows on stderr with ``progress``)."""
    reader = ExportReader(fields, classes, known, workflows, source)
    with tqdm(desc="reading the export", unit=" rows", unit_scale=True, disable=None if progress else True,
              leave=False) as bar:
        for chunk in chunks:
            reader.add(chunk)
            bar.update(len(chunk))
    return reader


# -- deciding -------------------------------------------------------------------------------------------------
@dataclass
class Tally:
    """Votes, gold and consensus of one export, before anything is written."""

    report: pd.DataFrame  # one row per subject and workflow, columns of ``REPORT_SCHEMA``
    survey: pd.DataFrame | None  # the survey_reducer layout, for survey tasks (``SURVEY_SCHEMA``)
    gold: pd.DataFrame  # one row per subject with gold: subject_id, candidate_id, label
    classifications: int  # rows of the export
    repeats: int  # repeat classifications of a subject by the same volunteer (not counted)
    unanswered: int  # classifications without an answer
    skipped: dict[str, int] = field(default_factory=dict)  # classifications not counted as votes, by reason
    tasks: dict[str, TaskSpec] = field(default_factory=dict)  # workflow id -> its task, for the workflows read
    notes: list[str] = field(default_factory=list)  # what else the user should know (workflows skipped, gold ...)

    def labels(self) -> pd.DataFrame:
        """The labels to record (columns ``LABEL_COLUMNS``): gold, and the consensus's accepted ones."""
        subjects = self.report.drop_duplicates("subject_id")
        accepted = subjects[(subjects["status"] == ACCEPTED) & subjects["candidate_id"].notna()]
        crowd = pd.DataFrame({
            "candidate_id": accepted["candidate_id"].astype(str),
            "label": accepted["consensus_label"].astype(str),
            "votes": accepted["votes"].astype(int),
            "agreement": accepted["agreement"].astype(float),
            "source": "crowd",
        })
        known = self.gold[self.gold["candidate_id"].notna()]
        expert = pd.DataFrame({"candidate_id": known["candidate_id"].astype(str), "label": known["label"].astype(str),
                               "votes": pd.NA, "agreement": pd.NA, "source": "expert"})
        frames = [f for f in (crowd, expert) if len(f)]
        if not frames:
            return pd.DataFrame(columns=LABEL_COLUMNS)
        return pd.concat(frames, ignore_index=True).drop_duplicates("candidate_id", keep="last")[LABEL_COLUMNS]

    def summary(self) -> str:
        subjects = self.report.drop_duplicates("subject_id")
        by_status = subjects["status"].value_counts()
        statuses = ", ".join(f"{count} {status.replace('_', ' ')}" for status, count in by_status.items())
        skipped = "".join(f", {n} of {reason}" for reason, n in self.skipped.items())
        workflows = ", ".join(f"{w} ({t.key}, versions {'/'.join(t.versions or ())})" for w, t in self.tasks.items())
        return (f"{self.classifications} classifications ({self.repeats} repeats, {self.unanswered} without an "
                f"answer{skipped} not counted) of {len(subjects)} subjects in workflow{'s' * (len(self.tasks) > 1)} "
                f"{workflows or 'none'}: {statuses or 'none'}; {len(self.gold)} subjects with gold")


def workflow_choice(workflows: Any, task: TaskSpec) -> Sequence[str] | str | None:
    """Config ``job.workflows`` as the reader takes it: a list of ids, ``ALL``, or None (the campaign's own
    workflow when the state knows it, else the export's only one)."""
    if workflows is None:
        return None if task.workflow_id is None else [task.workflow_id]
    if isinstance(workflows, str) and workflows.strip().lower() == ALL:
        return ALL
    items = [workflows] if isinstance(workflows, (str, int)) else list(workflows)
    return [str(w).strip() for w in items]


def tally(chunks: Iterable[pd.DataFrame], state: CampaignState, consensus: Any, classes: Sequence[str], *,
          source: str = "classification export", task: TaskSpec | None = None, workflows: Any = None,
          fields: SubjectFields | None = None, choices: Mapping[str, Mapping[str, Any]] | None = None,
          progress: bool = False) -> Tally:
    """Read the export's validated chunks (``export_chunks``), count one vote per volunteer and subject, gold per
    subject, and run the consensus (no writes).

    ``task``: the campaign task (default: a question whose answers are ``classes``); ``workflows``: which
    workflows (``workflow_choice``); ``fields``: what subject metadata says (default: glitchrun's own fields);
    ``choices``: the survey choice table, whose labels gold labels may use. ``source`` names the export in errors.
    """
    classes = list(classes)
    task = task or TaskSpec.from_config({"classes": classes})
    chosen = workflow_choice(workflows, task)
    start = time.perf_counter()
    reader = read_export(chunks, fields or SubjectFields(), classes, state.subject_candidates(),
                         None if chosen in (None, ALL) else chosen, source, progress)
    votes = reader.finish()
    took = time.perf_counter() - start
    log.info("ingest: read %d classifications of %d subjects in %.1f s (%.0f rows/s)", reader.rows,
             len(reader.subjects.candidates), took, reader.rows / max(took, 1e-9))
    tasks, notes = workflow_tasks(reader, votes, task, chosen, source)
    counted, skipped, unanswered = count(reader, votes, tasks, classes, source)
    skipped = {**({OTHER_WORKFLOWS: sum(reader.other_workflows.values())} if reader.other_workflows else {}),
               **skipped}
    names = label_classes(choices, classes)
    for option, table in ((o, t.table) for t in tasks.values() for o in t.options):
        names.setdefault(squeezed(option), table[option])
    gold, gold_notes = gold_labels(reader, counted, names, classes)
    volunteer = counted[~counted["expert"]].sort_values("classification_id", kind="stable")
    first = volunteer.drop_duplicates(["subject", "volunteer"])
    repeats = len(volunteer) - len(first)
    del votes, counted, volunteer  # every row's codes (a few hundred MB at 5x10^6 rows): freed for the consensus
    subject_ids = np.array(reader.subjects.ids.values, dtype=object)
    report, survey = decide(first, reader, tasks, state, consensus, classes, gold, subject_ids)
    gold_frame = pd.DataFrame({"subject_id": gold.index, "label": gold.to_numpy(dtype=object)})
    gold_frame.insert(1, "candidate_id", [reader.subjects.candidates[reader.subjects.ids.index[s]]
                                          for s in gold_frame["subject_id"]])
    return Tally(report, survey, gold_frame, reader.rows, repeats, unanswered, skipped, tasks,
                 notes + gold_notes)


def workflow_tasks(reader: ExportReader, votes: Mapping[str, np.ndarray], task: TaskSpec, chosen: Any,
                   source: str) -> tuple[dict[str, TaskSpec], list[str]]:
    """The task of each workflow read: its versions and key (configured, or found in its classifications)."""
    present = reader.workflows.values
    if chosen is None:
        if len(present) > 1:
            counts = np.bincount(votes["workflow"], minlength=len(present))
            mixed = ", ".join(f"{w} ({n})" for w, n in zip(present, counts))
            raise IngestError(f"{source}: the export mixes workflows {mixed}; pick one with "
                              f"job.workflows=[{present[0]}], or read each with job.workflows=all")
        chosen = list(present)
    elif chosen == ALL:
        chosen = list(present)
    else:
        missing = [w for w in chosen if w not in present]
        if missing:
            found = ", ".join(f"{w} ({n})" for w, n in reader.other_workflows.items()) or "none, it is empty"
            raise IngestError(f"{source}: no classification of workflow {', '.join(missing)}; the export's workflows "
                              f"(classifications): {found}")
    tasks: dict[str, TaskSpec] = {}
    notes: list[str] = []
    versions = np.asarray(reader.versions.values, dtype=object)
    for workflow in chosen:
        rows = votes["workflow"] == reader.workflows.index[workflow]
        spec = task.for_workflow(workflow, set(versions[np.unique(votes["version"][rows])]))
        counted = rows & counted_versions(spec, reader, votes)
        if rows.any() and not counted.any():
            per_version = np.bincount(votes["version"][rows], minlength=len(versions))
            found = sorted(((v, int(n)) for v, n in zip(versions, per_version) if n),
                           key=lambda version_count: -version_count[1])[:MAX_LISTED]
            raise IngestError(f"{source}: no classification of workflow {workflow} is of version "
                              f"{' or '.join(spec.versions or ())} (campaign.workflow.versions); its versions "
                              f"(classifications): {', '.join(f'{v} ({n})' for v, n in found)}")
        answers = np.bincount(votes["answer"][counted], minlength=len(reader.answers.values))
        try:
            tasks[workflow] = spec.with_key((reader.answers.values[a], int(n)) for a, n in enumerate(answers) if n)
        except IngestError as err:
            if len(chosen) > 1 and task.key is None:
                notes.append(f"workflow {workflow} skipped: {err}")
                continue
            raise IngestError(f"{source}: workflow {workflow}: {err}") from None
    return tasks, notes


def counted_versions(spec: TaskSpec, reader: ExportReader, votes: Mapping[str, np.ndarray]) -> np.ndarray:
    """Whether each vote's version counts for the spec (its workflow aside)."""
    ok = np.array([spec.skip_reason(spec.workflow_id, v) is None for v in reader.versions.values] or [True], bool)
    return ok[votes["version"]] if len(votes["version"]) else np.zeros(0, dtype=bool)


def count(reader: ExportReader, votes: Mapping[str, np.ndarray], tasks: Mapping[str, TaskSpec],
          classes: Sequence[str], source: str) -> tuple[pd.DataFrame, dict[str, int], int]:
    """The votes that count, with their option and class; classifications skipped by reason; unanswered ones.

    Raises ``IngestError`` listing every classification whose answer is not an option of its workflow's task.
    """
    parts, problems = [], []
    malformed = 0
    skipped: Counter[str] = Counter()
    unanswered = 0
    workflow_codes = reader.workflows.index
    for workflow, spec in tasks.items():
        rows = votes["workflow"] == workflow_codes[workflow]
        in_version = rows & counted_versions(spec, reader, votes)
        skipped[OTHER_VERSIONS] += int(rows.sum() - in_version.sum())
        options, classes_of, errors, other_type = read_answers(spec, reader.answers.values)
        answer = votes["answer"][in_version]
        for at in np.flatnonzero(np.isin(answer, list(other_type)))[:1]:
            line, cid = votes["line"][in_version][at], votes["classification_id"][in_version][at]
            raise IngestError(f"{source}: line {line}, column 'annotations' (classification {cid}): "
                              f"{other_type[answer[at]]}; nothing ingested")
        wrong = np.flatnonzero(np.isin(answer, list(errors)))
        malformed += len(wrong)
        for at in wrong[: MAX_LISTED - len(problems)]:
            line, cid = votes["line"][in_version][at], votes["classification_id"][in_version][at]
            problems.append(f"line {line}, column 'annotations' (classification {cid}): {errors[answer[at]]}")
        option = options[answer]
        answered = ~pd.isna(option)
        unanswered += int((~answered).sum())
        parts.append(pd.DataFrame({c: votes[c][in_version][answered] for c in
                                   ("classification_id", "subject", "volunteer", "expert", "workflow")})
                     .assign(option=option[answered], label=classes_of[answer][answered], task=spec.key))
    if malformed:
        more = f" and {malformed - len(problems)} more" if malformed > len(problems) else ""
        raise IngestError(f"{source}: {malformed} malformed classifications, nothing ingested: "
                          f"{'; '.join(problems)}{more}")
    none = pd.DataFrame({**{c: np.zeros(0, np.int64) for c in ("classification_id", "subject", "volunteer")},
                         "expert": np.zeros(0, bool), "workflow": np.zeros(0, np.int64),
                         **{c: np.zeros(0, object) for c in ("option", "label", "task")}})
    counted = pd.concat(parts, ignore_index=True) if parts else none
    outside = ~counted["label"].isin(classes)
    if outside.any():
        skipped[OTHER_CLASSES] += int(outside.sum())
        log.info("ingest: %d votes for choices whose class is not a campaign class (campaign.workflow.classes): %s",
                 int(outside.sum()), dict(Counter(counted.loc[outside, "option"]).most_common(5)))
        counted = counted[~outside]
    skipped[EXPERT_ROWS] += int(counted["expert"].sum())
    return counted.reset_index(drop=True), {k: v for k, v in skipped.items() if v}, unanswered


def read_answers(spec: TaskSpec, answers: Sequence[Answers]
                 ) -> tuple[np.ndarray, np.ndarray, dict[int, str], dict[int, str]]:
    """For each distinct answers (by code): the option chosen (None: no answer) and its class; the problem of
    each that is not an option of the task, and of each that answers it as another task type."""
    options = np.empty(len(answers) + 1, dtype=object)  # the last slot: never used (code -1)
    labels = np.empty(len(answers) + 1, dtype=object)
    errors: dict[int, str] = {}
    other_type: dict[int, str] = {}
    for code, found in enumerate(answers):
        try:
            options[code] = spec.value_of(found)
        except AnswerError as err:
            errors[code] = str(err)
            continue
        except IngestError as err:
            other_type[code] = str(err)
            continue
        labels[code] = None if options[code] is None else spec.table[options[code]]
    return options, labels, errors, other_type


def gold_labels(reader: ExportReader, counted: pd.DataFrame, names: Mapping[str, str], classes: Sequence[str]
                ) -> tuple[pd.Series, list[str]]:
    """Each subject's gold (index subject id): its experts' class and its metadata's, when they agree and are a
    campaign class."""
    subject_ids = reader.subjects.ids.values
    sources: dict[int, set[str]] = {}
    experts = counted[counted["expert"]]
    for subject, label in zip(experts["subject"], experts["label"]):
        sources.setdefault(int(subject), set()).add(str(label))
    unnamed = []
    for subject, label in reader.subjects.gold_labels.items():
        named = names.get(squeezed(label))
        if named is None:
            unnamed.append(label)
        else:
            sources.setdefault(subject, set()).add(named)
    notes = []
    if unnamed:
        notes.append(f"{len(unnamed)} gold-standard subjects name no class or choice of the campaign "
                     f"(e.g. {', '.join(sorted(set(unnamed))[:5])}): not gold")
    disputed = [subject_ids[s] for s, found in sources.items() if len(found) > 1]
    if disputed:
        notes.append(f"{len(disputed)} subjects have gold answers that disagree (experts, or experts and the "
                     f"subject's metadata): not gold: {', '.join(disputed[:MAX_LISTED])}")
    agreed = {subject_ids[s]: next(iter(found)) for s, found in sources.items() if len(found) == 1}
    outside = {s: c for s, c in agreed.items() if c not in classes}
    if outside:
        notes.append(f"{len(outside)} gold-standard subjects are of classes outside the campaign "
                     f"({', '.join(sorted(set(outside.values()))[:5])}): not gold")
    return pd.Series({s: c for s, c in agreed.items() if s not in outside}, dtype=object, name="gold"), notes


def decide(first: pd.DataFrame, reader: ExportReader, tasks: Mapping[str, TaskSpec], state: CampaignState,
           consensus: Any, classes: Sequence[str], gold: pd.Series, subject_ids: np.ndarray
           ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The consensus per subject over the workflows read, and the reports (question and survey layouts)."""
    volunteers = np.asarray(reader.volunteers.values, dtype=object)
    votes = pd.DataFrame({"subject_id": subject_ids[first["subject"].to_numpy(int)],
                          "volunteer": volunteers[first["volunteer"].to_numpy(int)],
                          "label": first["label"].to_numpy(dtype=object)})
    recorded = prior_frame(state.distributions(), classes)
    stored = stored_priors(reader, classes, subject_ids)
    prior = stored if recorded is None else recorded.combine_first(stored) if stored is not None else recorded
    start = time.perf_counter()
    decided = consensus.aggregate(votes, classes, prior, gold=gold)
    log.info("ingest: %s on %d votes of %d subjects in %.1f s", type(consensus).__name__, len(votes),
             votes["subject_id"].nunique(), time.perf_counter() - start)
    tally = VoteCounts(first, tasks, reader)
    candidates = np.asarray(reader.subjects.candidates, dtype=object)
    subject_candidates = pd.Series(candidates[pd.Index(subject_ids).get_indexer(decided.index)],
                                   index=decided.index, dtype=object, name="candidate_id")
    status = decided["status"].where(subject_candidates.notna(), UNKNOWN_SUBJECT)
    status = status.where(~status.index.isin(gold.index), GOLD)
    subject_columns = decided.drop(columns="status").assign(status=status, candidate_id=subject_candidates)
    counts = tally.question()
    report = counts.join(subject_columns, on="subject_id")
    report = report[["subject_id", "candidate_id", *[c for c in counts.columns if c != "subject_id"],
                     *[c for c in subject_columns.columns if c not in ("status", "candidate_id")], "status"]]
    survey = None
    if any(t.type == SURVEY for t in tasks.values()):
        survey = tally.survey().join(subject_candidates, on="subject_id")[list(SURVEY_SCHEMA.columns)]
    return report.reset_index(drop=True), survey


class VoteCounts:
    """Counts of one vote per volunteer, per subject, workflow and option, in classification order: what
    panoptes_aggregation's reducers count (module docstring). Counted on integer codes, named at the end."""

    KEYS = ["subject_id", "workflow_id"]

    def __init__(self, first: pd.DataFrame, tasks: Mapping[str, TaskSpec], reader: ExportReader) -> None:
        self.tasks = tasks
        option_codes, options = pd.factorize(first["option"].to_numpy(dtype=object))
        slug_codes, slugs = pd.factorize(np.array([slug(o) for o in options] + [""], dtype=object)[:-1])
        option_codes = slug_codes[option_codes] if len(option_codes) else option_codes
        self.slugs = np.asarray(slugs, dtype=object)  # by code: options of one slug are counted together
        self.subject_ids = np.asarray(reader.subjects.ids.values, dtype=object)
        self.workflow_ids = np.asarray(reader.workflows.values, dtype=object)
        codes = pd.DataFrame({"subject": first["subject"].to_numpy(np.int64),
                              "workflow": first["workflow"].to_numpy(np.int64),
                              "option": option_codes.astype(np.int64), "at": np.arange(len(first))})
        grouped = codes.groupby(["subject", "workflow", "option"], sort=False)["at"]
        self.per_option = pd.DataFrame({"n": grouped.size(), "first": grouped.min()}).reset_index()
        self.totals = codes.groupby(["subject", "workflow"], sort=True)["at"].size()

    def named(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Integer subject and workflow codes as ids, with the workflow's task key."""
        workflow_ids = self.workflow_ids[frame["workflow"].to_numpy(int)]
        return frame.assign(subject_id=self.subject_ids[frame["subject"].to_numpy(int)], workflow_id=workflow_ids,
                            task=pd.Series(workflow_ids, index=frame.index).map({w: t.key for w, t in
                                                                                 self.tasks.items()}))

    def question(self) -> pd.DataFrame:
        """The question reducer's ``data.<slug>`` counts and the consensus reducer's columns."""
        columns = [*self.KEYS, "task", "data.most_likely", "data.num_votes", "data.agreement"]
        if self.per_option.empty:
            return pd.DataFrame(columns=columns)
        wide = self.per_option.pivot(index=["subject", "workflow"], columns="option", values="n")
        order = dict.fromkeys(slug(o) for t in self.tasks.values() for o in t.options)
        wide.columns = self.slugs[wide.columns.to_numpy(int)]
        wide = wide[[s for s in order if s in wide.columns]].astype("Int64").add_prefix("data.")
        ranked = self.per_option.sort_values(["subject", "workflow", "n", "first"], ascending=[True, True, False, True])
        winners = ranked.drop_duplicates(["subject", "workflow"]).set_index(["subject", "workflow"])
        consensus = pd.DataFrame({"data.most_likely": self.slugs[winners["option"].to_numpy(int)],
                                  "data.num_votes": winners["n"].to_numpy(),
                                  "data.agreement": winners["n"].to_numpy() / self.totals.reindex(winners.index)
                                  .to_numpy()}, index=winners.index)
        frame = self.named(wide.join(consensus).reset_index())
        return frame[[*self.KEYS, "task", *wide.columns, "data.most_likely", "data.num_votes", "data.agreement"]]

    def survey(self) -> pd.DataFrame:
        """The survey reducer's rows: per subject, workflow and choice marked, in the order first marked."""
        surveys = [w for w, t in self.tasks.items() if t.type == SURVEY]
        codes = [i for i, w in enumerate(self.workflow_ids) if w in surveys]
        rows = self.per_option[self.per_option["workflow"].isin(codes)].sort_values(["subject", "workflow", "first"])
        totals = self.totals.reindex(pd.MultiIndex.from_frame(rows[["subject", "workflow"]])).to_numpy()
        frame = self.named(rows).assign(**{"reducer": "survey_reducer",
                                           "data.choice": self.slugs[rows["option"].to_numpy(int)],
                                           "data.total_vote_count": totals, "data.choice_count": rows["n"]})
        return frame.reset_index(drop=True)


def stored_priors(reader: ExportReader, classes: Sequence[str], subject_ids: np.ndarray) -> pd.DataFrame | None:
    """The learner's distributions the subjects' metadata stores, as consensus priors (rows summing to 1)."""
    subjects = reader.subjects
    if not subjects.prior_rows:
        return None
    frame = pd.DataFrame(np.vstack(subjects.prior_rows), index=subject_ids[subjects.prior_codes],
                         columns=list(classes))
    return spread_missing(frame)


def prior_frame(distributions: Mapping[str, Mapping[str, float]], classes: Sequence[str]) -> pd.DataFrame | None:
    """The learner's distributions as consensus priors (subjects x classes, rows summing to 1).

    Probability the learner gave no class (an older state file kept only the top class) is spread evenly
    over the classes it does not name.
    """
    if not distributions:
        return None
    return spread_missing(pd.DataFrame.from_dict(dict(distributions), orient="index").reindex(columns=list(classes)))


def spread_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """Distributions with missing classes (NaN) given the probability the others leave, evenly; rows sum to 1."""
    values = frame.to_numpy(dtype=float, copy=True)
    missing = np.isnan(values)
    rest = np.clip(1.0 - np.nansum(values, axis=1), 0.0, None) / np.maximum(missing.sum(axis=1), 1)
    values[missing] = np.broadcast_to(rest[:, None], values.shape)[missing]
    values /= values.sum(axis=1, keepdims=True)
    return pd.DataFrame(values, index=frame.index, columns=frame.columns)


def slug(value: str) -> str:
    """An answer as panoptes_aggregation's extractors name it (python-slugify, ``-`` separator)."""
    return slugify(value, separator="-")


# -- writing --------------------------------------------------------------------------------------------------
def record(result: Tally, state: CampaignState, round: int | None) -> pd.DataFrame:
    """Write a tally's labels to the state in one transaction, and log what happened."""
    labels = result.labels()
    queried_in = batch_rounds(state)
    rounds = [queried_in.get(c, round) for c in labels["candidate_id"]]
    rows = labels.assign(round=pd.Series(rounds, dtype=object)).astype(object)
    state.add_labels(rows.where(rows.notna(), None).to_dict("records"))
    log.info("ingest: %s; %d labels added to the campaign", result.summary(), len(labels))
    for note in result.notes:
        log.warning("ingest: %s", note)
    unknown = result.report.loc[result.report["status"] == UNKNOWN_SUBJECT, "subject_id"].unique()
    if len(unknown):
        log.warning("ingest: %d subjects are not subjects of this campaign and were skipped: %s", len(unknown),
                    ", ".join(unknown[:MAX_LISTED]) + (" ..." if len(unknown) > MAX_LISTED else ""))
    return labels[LABEL_COLUMNS].reset_index(drop=True)


def batch_rounds(state: CampaignState) -> dict[str, int]:
    """The round whose batch held each candidate."""
    return {c: int(n) for n in state.rounds()["number"] for c in state.batch(int(n))["candidate_id"]}


def ingest_export(chunks: Iterable[pd.DataFrame], state: CampaignState, consensus: Any, classes: Sequence[str],
                  round: int | None = None, **options: Any) -> pd.DataFrame:
    """Add the labels of a classification export's validated chunks to the campaign state (``tally`` then
    ``record``; ``options`` are ``tally``'s).

    A label is recorded for the round that queried its candidate (an export holds every round's
    classifications so far); ``round`` is recorded for candidates no round queried (e.g. init_project's).
    Returns the labels added (columns candidate_id, label, votes, agreement, source).
    """
    return record(tally(chunks, state, consensus, classes, **options), state, round)

