"""What the campaign page shows, read from the campaign state (opened read-only) and the rounds' run directories.

A subject's card joins what the campaign knows of it: the learner's prediction and whole class distribution
and why its batch chose it (the ``batch`` table), its status and the votes counted so far (``subjects`` and
the classifications, one vote per volunteer as the consensus counts them), its crowd label, and its Q-scans
(the round's ``manifest.csv``). The round report's plots are taken as they are: any PNG a report writes to
its ``plots/`` folder is shown, so a new plot appears on the page once a report writes it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from glitchrun.campaign.state import ACTIVE, DISPUTED, LABELLED, CampaignState
from glitchrun.csvio import CsvError, read_csv
from glitchrun.report import PART_ENDS, round_table, thumbnail_column

KEY = "candidate_id"
#: a card lists the classes its subject got votes for and the learner's likeliest ones, at most this many rows
CLASS_ROWS = 5
#: the learner's classes below this probability are left off a card unless they got votes
SHOWN_PROBABILITY = 0.05
#: the report's plots in the order a reader wants them (file name prefixes); any other PNG follows by name
PLOT_ORDER = ("quality", "volunteer_skill", "calibration", "agreement", "class_balance", "query_scores")
#: report images the page shows its own way: the batch's Q-scans are its cards
CARD_IMAGES = ("contact_sheet",)
#: a subject shown before it was uploaded has no status of its own yet
NOT_UPLOADED = "not uploaded"


@dataclass(frozen=True)
class ClassRow:
    """One class on a card: the volunteers' votes for it and the learner's probability of it."""

    name: str
    votes: int
    probability: float


@dataclass(frozen=True)
class Card:
    """One subject of a batch, as a person deciding about it needs to see it."""

    round: int
    candidate_id: str
    subject_id: str | None
    status: str  # active (waiting for votes), labelled, disputed, or not uploaded
    votes: int  # votes counted so far (one per volunteer)
    label: str | None  # the crowd's label, once labelled
    strategy: str  # the strategy part that chose it
    score: float | None  # its score under that part
    why: str  # what that score measures and which end the part takes
    predicted_class: str
    probability: float
    classes: list[ClassRow]
    images: dict[str, str]  # Q-scan duration ("1s") -> path in the round's run directory
    thumbnail: str | None  # the duration most glitches read best at (report.thumbnail_column)
    note: str  # why a disputed subject has no label


@dataclass(frozen=True)
class Plot:
    path: str  # in the run directory
    title: str


@contextmanager
def campaign_view(state_dir: str | Path) -> Iterator[CampaignView]:
    """The campaign as one request reads it: the state opened read-only for the request's duration."""
    with closing(CampaignState.read_only(state_dir)) as state:
        yield CampaignView(state)


class CampaignView:
    """Read-only questions about one campaign, answered from its state and its rounds' run directories."""

    def __init__(self, state: CampaignState) -> None:
        self.state = state
        self.round_rows = state.rounds().set_index("number")

    # -- the campaign --------------------------------------------------------------------------------
    def facts(self) -> dict[str, str | None]:
        return {"project_id": self.state.get("project_id"), "workflow_id": self.state.get("workflow_id")}

    def rounds(self) -> pd.DataFrame:
        """report.round_table (what ``job=status`` prints), with each round's run directory and start (column names
        made identifiers, for the templates)."""
        table = round_table(self.state).rename(columns={"subject set": "subject_set"}).set_index("round")
        table["run_dir"] = self.round_rows["run_dir"]
        table["upload_run_dir"] = self.round_rows.get("upload_run_dir")
        table["created_at"] = self.round_rows["created_at"]
        return table.reset_index()

    def numbers(self) -> list[int]:
        return [int(n) for n in self.round_rows.index]

    def run_dir(self, number: int, column: str = "run_dir") -> Path | None:
        """The run directory of the run that chose round ``number``'s batch (its report and plots); with ``column``
        ``upload_run_dir``, of the run that rendered its Q-scans, wrote its manifest and uploaded it (recorded
        by the state since the page shows a resumed round's Q-scans; absent from an older state file)."""
        if number not in self.round_rows.index or column not in self.round_rows:
            return None
        value = self.round_rows.at[number, column]
        return Path(value) if isinstance(value, str) else None

    def scan_dir(self, number: int) -> Path | None:
        """Where round ``number``'s manifest and Q-scans are: the run that uploaded it (a resumed round's is not the
        run that chose it), else the run that chose it (a round not uploaded yet, or recorded before)."""
        return self.run_dir(number, "upload_run_dir") or self.run_dir(number)

    def subject_counts(self) -> dict[str, int]:
        by_status = self.state.summary()["subjects_by_status"]
        return {s: int(by_status.get(s, 0)) for s in (LABELLED, DISPUTED, ACTIVE)}

    def labels_by_class(self) -> pd.DataFrame:
        """Labels by class (rows) and source (columns), with totals, as ``job=status`` prints them."""
        labels = self.state.labels()
        return pd.crosstab(labels["label"], labels["source"], margins=True, margins_name="total")

    def label_changes(self, last: int) -> pd.DataFrame:
        """The ``last`` label changes later votes made, newest first."""
        return self.state.label_changes().iloc[::-1].head(last)

    # -- subjects --------------------------------------------------------------------------------------
    def batch_cards(self, number: int) -> list[Card]:
        """Round ``number``'s batch in the order it was chosen, uploaded or not."""
        return self.cards(self.subject_rows("LEFT JOIN", "b.round = ?", (number,)))

    def disputed_cards(self, first: int, count: int) -> tuple[list[Card], int]:
        """``count`` of the campaign's disputed subjects from the ``first`` (the latest round first, each batch in its
        order), and how many there are."""
        rows = self.subject_rows("JOIN", "s.status = ?", (DISPUTED,), order="b.round DESC, b.rowid",
                                 limit=(count, first))
        total = self.state.db.execute("SELECT COUNT(*) FROM subjects WHERE status = ?", (DISPUTED,)).fetchone()[0]
        return self.cards(rows), int(total)

    def subject_rows(self, join: str, where: str, params: tuple, order: str = "b.rowid",
                     limit: tuple[int, int] | None = None) -> pd.DataFrame:
        """Batch rows (the learner's prediction, distribution and why it chose the candidate) with their subjects
        (status, retirement reason): one query, so that a page of a large campaign reads only what it shows."""
        paging = " LIMIT ? OFFSET ?" if limit else ""
        return pd.read_sql_query(
            "SELECT b.round, b.candidate_id, b.strategy, b.score, b.predicted_class, b.probability, b.distribution, "
            f"s.subject_id, s.status, s.retirement_reason FROM batch b {join} subjects s "
            f"ON s.round = b.round AND s.candidate_id = b.candidate_id WHERE {where} ORDER BY {order}{paging}",
            self.state.db, params=(*params, *(limit or ())))

    def cards(self, rows: pd.DataFrame) -> list[Card]:
        """Cards of ``rows`` (``subject_rows``), with their votes and Q-scans."""
        classifications = [self.state.classifications(round=int(n)) for n in rows["round"].unique()]
        cast = pd.concat(classifications) if classifications else self.state.classifications(round=0)
        answered = cast[cast["answer"].notna()]
        votes = answered.drop_duplicates(["subject_id", "volunteer"])  # a volunteer's first answer, as counted
        per_subject: dict[str, dict[str, int]] = {}
        for (subject, answer), n in votes.groupby(["subject_id", "answer"]).size().items():
            per_subject.setdefault(subject, {})[answer] = int(n)
        labels = self.state.labels()
        crowd = labels.loc[labels["source"] == "crowd", "label"]
        withdrawn = set(self.state.label_changes().query("new_label.isna()", engine="python")[KEY])
        images = {n: manifest_images(self.scan_dir(n)) for n in rows["round"].unique()}
        cards = []
        for row in rows.itertuples(index=False):
            subject = None if pd.isna(row.subject_id) else str(row.subject_id)
            counts = per_subject.get(subject, {}) if subject is not None else {}
            distribution = json.loads(row.distribution) if isinstance(row.distribution, str) else {}
            status = row.status if subject is not None else NOT_UPLOADED
            shots = images[row.round].get(row.candidate_id, {})
            measure, end = PART_ENDS.get(row.strategy, ("score", "chosen by it"))
            cards.append(Card(
                round=int(row.round), candidate_id=row.candidate_id, subject_id=subject, status=status,
                votes=sum(counts.values()), label=crowd.get(row.candidate_id) if status == LABELLED else None,
                strategy=row.strategy, score=None if pd.isna(row.score) else float(row.score),
                why=f"{measure}; {end}", predicted_class=row.predicted_class, probability=float(row.probability),
                classes=class_rows(counts, distribution), images=shots,
                thumbnail=thumbnail(shots),
                note=dispute_note(row.retirement_reason, row.candidate_id in withdrawn) if status == DISPUTED else ""))
        return cards


def class_rows(votes: dict[str, int], distribution: dict[str, float]) -> list[ClassRow]:
    """The classes worth a look: voted ones, most voted first, then the learner's likeliest."""
    shown = {c for c, n in votes.items() if n} | {c for c, p in distribution.items() if p >= SHOWN_PROBABILITY}
    rows = [ClassRow(c, int(votes.get(c, 0)), float(distribution.get(c, 0.0))) for c in shown]
    return sorted(rows, key=lambda r: (-r.votes, -r.probability, r.name))[:CLASS_ROWS]


def thumbnail(images: dict[str, str]) -> str | None:
    """The Q-scan the report's contact sheet shows (report.thumbnail_column: the one closest to 1 s)."""
    if not images:
        return None
    return images[thumbnail_column([f"image_{duration}" for duration in images])[len("image_"):]]


def dispute_note(reason: str | None, withdrawn: bool) -> str:
    if withdrawn:
        return "its crowd label was withdrawn: later votes took the consensus below the threshold"
    if reason == "other":
        return "no consensus within the vote cap, or none in reach of one more vote"
    return f"retired by Zooniverse ({reason or 'no reason given'}) before a consensus"


def manifest_images(run_dir: Path | None) -> dict[str, dict[str, str]]:
    """Each candidate's Q-scans in a round's manifest (duration -> path in the run directory); none when the run
    directory or its manifest is gone or unreadable."""
    path = run_dir / "manifest.csv" if run_dir is not None else None
    if path is None or not path.is_file():
        return {}
    return _manifest_images(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=256)
def _manifest_images(path: str, mtime_ns: int) -> dict[str, dict[str, str]]:
    """(cached by file and modification time: a finished round's manifest does not change)"""
    try:
        manifest = read_csv(path, what="round manifest", dtype=str)
    except CsvError:
        return {}
    columns = [c for c in manifest.columns if c.startswith("image_")]
    if KEY not in manifest.columns or not columns:
        return {}
    return {row[KEY]: {c[len("image_"):]: row[c] for c in columns if isinstance(row[c], str)}
            for row in manifest[[KEY, *columns]].to_dict("records")}


def plots(run_dir: Path | None) -> list[Plot]:
    """The PNGs of a round report's ``plots/`` folder (but the contact sheets), in ``PLOT_ORDER`` then by name."""
    folder = run_dir / "plots" if run_dir is not None else None
    if folder is None or not folder.is_dir():
        return []
    found = [p for p in folder.glob("*.png") if not p.name.startswith(CARD_IMAGES)]

    def rank(path: Path) -> tuple[int, str]:
        first = [i for i, prefix in enumerate(PLOT_ORDER) if path.stem.startswith(prefix)]
        return (first[0] if first else len(PLOT_ORDER), path.stem)

    return [Plot(f"plots/{p.name}", p.stem.replace("_", " ")) for p in sorted(found, key=rank)]


def files(run_dir: Path | None) -> list[tuple[str, int]]:
    """The files of a run directory (path in it, bytes) but its Q-scans (the cards link those)."""
    if run_dir is None or not run_dir.is_dir():
        return []
    found = [p for p in run_dir.rglob("*") if p.is_file() and p.relative_to(run_dir).parts[0] != "images"]
    return [(p.relative_to(run_dir).as_posix(), p.stat().st_size)
            for p in sorted(found, key=lambda p: (len(p.relative_to(run_dir).parts), p.as_posix()))]


def size_text(size: int) -> str:
    """``812 B``, ``14 kB``, ``3.2 MB``."""
    if size < 1000:
        return f"{size} B"
    exponent = min(int(math.log10(size) // 3), 3)
    value = size / 1000 ** exponent
    return f"{value:.1f} {' kMG'[exponent]}B" if value < 10 else f"{value:.0f} {' kMG'[exponent]}B"
