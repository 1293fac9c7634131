"""Public crowdsourcing data sets with expert labels: real people's votes to judge a consensus method on.

A consensus tuned on glitchrun's own simulated crowd proves only that it inverts that simulator. Real crowds
have what the simulator lacks (skill that varies by item, mistakes that several workers share, spammers), so
the tests and ``benchmarks/bench_real_crowds.py`` judge the consensus on published votes with expert labels.
Two standard layouts are read:

- Snow et al. (EMNLP 2008), "standardized" TSV: a header ``!amt_annotation_ids !amt_worker_ids orig_id
  response gold``, one vote a row, the item's expert label repeated on each row;
- Get-Another-Label (Ipeirotis et al.): ``labels.txt`` with ``worker<TAB>item<TAB>label`` rows and a file of
  ``item<TAB>label`` expert labels (``gold.txt`` or ``evaluation.txt``).

Each becomes a ``CrowdData``: votes in the consensus module's layout (``subject_id``, ``volunteer``, ``label``,
in the order of the file, one vote per worker and item: a repeat is dropped) and the expert labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class CrowdData:
    """Real votes and expert labels of one published data set."""

    name: str
    votes: pd.DataFrame  # subject_id, volunteer, label (str), in the order cast
    truth: pd.Series  # subject_id -> expert label, for the items that have one
    classes: list[str]

    def first_votes(self, per_subject: int) -> pd.DataFrame:
        """Each subject's first ``per_subject`` votes (all of them for a subject with fewer)."""
        rank = self.votes.groupby("subject_id", sort=False).cumcount()
        return self.votes[rank < int(per_subject)].reset_index(drop=True)

    def split_gold(self, share: float, seed: int) -> tuple[pd.Series, pd.Series]:
        """(gold, held out): a seeded ``share`` of the expert-labelled items as known answers, the rest to judge."""
        rng = np.random.default_rng(seed)
        items = self.truth.index.to_numpy()
        chosen = rng.permutation(len(items))[: int(round(share * len(items)))]
        gold = self.truth.iloc[np.sort(chosen)]
        return gold, self.truth.drop(gold.index)


def one_vote_each(votes: pd.DataFrame) -> pd.DataFrame:
    """Keep a worker's first vote on an item (the consensus counts one vote per volunteer and subject)."""
    return votes.drop_duplicates(["subject_id", "volunteer"]).reset_index(drop=True)


def read_snow2008(path: str | Path) -> CrowdData:
    """A Snow et al. (2008) standardized TSV (``rte.standardized.tsv``, ``temp.standardized.tsv``)."""
    path = Path(path)
    frame = pd.read_csv(path, sep="\t", dtype=str)
    votes = one_vote_each(frame.rename(columns={"!amt_worker_ids": "volunteer", "orig_id": "subject_id",
                                                "response": "label"})[["subject_id", "volunteer", "label"]])
    truth = frame.drop_duplicates("orig_id").set_index("orig_id")["gold"].rename_axis("subject_id")
    classes = sorted(set(votes["label"]) | set(truth))
    return CrowdData(path.stem.split(".")[0], votes, truth, classes)


def read_get_another_label(folder: str | Path, truth_file: str) -> CrowdData:
    """A Get-Another-Label folder: ``labels.txt`` votes and ``truth_file`` expert labels; the classes are those
    of ``categories.txt`` (its first column) and any label seen. Expert labels for items no one voted on are
    left out (in AdultContent2 most of ``gold.txt`` names no voted item)."""
    folder = Path(folder)
    names = ["volunteer", "subject_id", "label"]
    votes = one_vote_each(pd.read_csv(folder / "labels.txt", sep="\t", header=None, names=names, dtype=str)
                          [["subject_id", "volunteer", "label"]])
    truth = pd.read_csv(folder / truth_file, sep="\t", header=None, names=["subject_id", "label"], dtype=str)
    truth = truth.drop_duplicates("subject_id").set_index("subject_id")["label"]
    truth = truth[truth.index.isin(votes["subject_id"])]
    listed = pd.read_csv(folder / "categories.txt", sep="\t", header=None, dtype=str)[0].tolist()
    classes = sorted(set(listed) | set(votes["label"]) | set(truth))
    return CrowdData(folder.name.removeprefix("gal_"), votes, truth, classes)


def shared_crowds(root: str | Path) -> list[CrowdData]:
    """The four real crowds of ``../shared/data/crowds`` (see its README)."""
    root = Path(root)
    return [
        read_snow2008(root / "snow2008" / "rte.standardized.tsv"),
        read_snow2008(root / "snow2008" / "temp.standardized.tsv"),
        read_get_another_label(root / "gal_AdultContent2", "gold.txt"),
        read_get_another_label(root / "gal_BarzanMozafari", "evaluation.txt"),
    ]
