"""``job=status``: the campaign at a glance, read from its state without changing anything.

Project and workflow, every round (subject set, size, labelled, disputed, waiting, votes spent), the labels
by class and by source, and the command to run next; printed as tables and written to ``status.md`` with a
plot of the labels over rounds. Nothing is sent to Zooniverse: the counts are the campaign state's. With
``serve``, the campaign page (``job=serve``'s, alone) follows, until Ctrl-C.
"""

from __future__ import annotations

import logging
import os
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra.core.hydra_config import HydraConfig
from matplotlib.figure import Figure

from glitchrun.campaign.state import CampaignState
from glitchrun.jobs.serve import Serve
from glitchrun.report import markdown_table, round_table, save
from glitchrun.zooniverse.backend import LocalBackend

log = logging.getLogger(__name__)


@dataclass
class Status:
    """What ``job=status`` printed: the tables and the advice."""

    rounds: pd.DataFrame  # report.round_table
    labels: pd.DataFrame  # labels by class (rows) and source (columns), with totals
    over_rounds: pd.DataFrame  # labels_over_rounds
    next_command: str
    why: str


class StatusJob:
    """Print the campaign's state and write ``status.md``."""

    def __init__(self, backend: Any, campaign: dict[str, Any], run_dir: str | os.PathLike[str], serve: bool = False,
                 host: str = "127.0.0.1", page_port: int = 8766) -> None:
        self.simulated = isinstance(backend, LocalBackend)
        self.campaign = campaign
        self.state_dir = Path(campaign["state_dir"])
        self.run_dir = Path(run_dir)
        self.serve = serve
        self.host = host
        self.page_port = page_port

    def run(self) -> Status | None:
        if not (self.state_dir / "campaign.sqlite").is_file():
            print(f"no campaign {self.campaign['name']!r} yet (no state in {self.state_dir}); "
                  f"start it with: {command()}")
            return None
        with closing(CampaignState(self.state_dir)) as state:
            status = self.read(state)
            header = self.header(state)
        print("\n".join([*header, "", status.rounds.to_string(index=False), "",
                         "labels by class and source:", status.labels.to_string(), "",
                         f"next: {status.next_command}", f"      ({status.why})"]))
        path = self.write(status, header)
        log.info("status written to %s", path)
        if self.serve:  # the page alone: no embedded Panoptes (backend None)
            Serve(None, self.campaign, host=self.host, page_port=self.page_port).run()
        return status

    def header(self, state: CampaignState) -> list[str]:
        project, workflow = self.campaign["project"], self.campaign["workflow"]
        return [f"campaign {self.campaign['name']} (state {self.state_dir})",
                (f"project {project['display_name']!r} (id {state.get('project_id') or 'not made yet'}), "
                f"workflow {workflow['display_name']!r} (id {state.get('workflow_id') or 'not made yet'})")]

    def read(self, state: CampaignState) -> Status:
        rounds = round_table(state)
        labels = state.labels()
        by_class = pd.crosstab(labels["label"], labels["source"], margins=True, margins_name="total")
        return Status(rounds, by_class, labels_over_rounds(labels), *self.advice(rounds))

    def advice(self, rounds: pd.DataFrame) -> tuple[str, str]:
        """The next command and why, from the last round's state."""
        if rounds.empty:
            return command(), "round 1: seed the labels, choose a first batch and upload it"
        last = rounds.iloc[-1]
        number, status = int(last["round"]), last["status"]
        if status in ("selected", "uploading"):
            rechoose = "; job.rechoose=true chooses its batch again" if status == "selected" else ""
            return command(), f"round {number} stopped while {status}; running again resumes its upload{rechoose}"
        if status == "uploaded" and last["waiting"] > 0:
            volunteers = (f"; on the embedded Panoptes, `{command('job=crowd')}` simulates them" if self.simulated
                          else "")
            return command(), (f"{last['waiting']} subjects of round {number} are still with volunteers{volunteers}; "
                               f"a round run before they retire only says so")
        return command(), f"round {number} is done; this starts round {number + 1}"

    def write(self, status: Status, header: list[str]) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        labels_plot(self.run_dir / "labels_over_rounds.png", status.over_rounds)
        lines = ["# glitchrun campaign status", "", *(f"- {h}" for h in header), "", "## Rounds", "",
                 *markdown_table(status.rounds), "", "## Labels", "",
                 *markdown_table(status.labels.reset_index().rename(columns={"label": "class"})), "",
                 "![labels over rounds](labels_over_rounds.png)", "", "## Next", "",
                 f"`{status.next_command}`: {status.why}.", ""]
        path = self.run_dir / "status.md"
        path.write_text("\n".join(lines))
        return path


def command(*extra: str) -> str:
    """``glitchrun`` with this run's overrides (the campaign, backend, data...) but its job, plus ``extra``."""
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    kept = [o for o in task if not o.lstrip("+~").startswith(("job=", "job."))]
    return " ".join(["glitchrun", *extra, *kept])


def labels_over_rounds(labels: pd.DataFrame) -> pd.DataFrame:
    """Labels held after each round's labels came in (rows: round, 0 = seeds; columns: source), cumulative."""
    known_since = labels["round"].fillna(0).astype(int)
    per_round = pd.crosstab(known_since, labels["source"])
    rounds = np.arange(0, int(known_since.max()) + 1 if len(labels) else 1)
    return per_round.reindex(rounds, fill_value=0).cumsum()


def labels_plot(path: Path, cumulative: pd.DataFrame) -> Path:
    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot()
    bottom = np.zeros(len(cumulative))
    for source in cumulative.columns:
        ax.bar(cumulative.index, cumulative[source], bottom=bottom, label=source)
        bottom += cumulative[source].to_numpy()
    ax.set_xticks(cumulative.index)
    ax.set_xlabel("after the labels of round (0 = seed labels)")
    ax.set_ylabel("labels")
    ax.set_title("Labels over rounds, by source", fontsize=10)
    if len(cumulative.columns):
        ax.legend(fontsize=8)
    return save(fig, path)
