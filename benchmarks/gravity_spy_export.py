"""Write a Gravity-Spy-shaped Zooniverse classification export of N rows (simulated, for the ingest benchmark).

    python benchmarks/gravity_spy_export.py export.csv --rows 1000000 [--per-subject 5] [--seed 0]

The shape is Gravity Spy's project export as Zooniverse writes it (panoptes ``lib/formatter/csv/classification.rb``):
the real 14 columns; survey-task annotations under ``T1`` with the real choice ids of Gravity Spy's workflows
(``Gravity-Spy/gravityspy-ligo-pipeline`` ``1104.yaml``, the project's cached workflows: level 5 "Binary Black
Hole Merger", workflow 7766, version 18.3, 26 choices, and levels 1-3 with 3, 7 and 10); one subject per
classification, with the metadata Gravity Spy uploads (``bin/upload``: ``subject_id``, ``Filename1``-``4``,
``#ML_Posterior_<date>`` as the text of a 22-number list in the v1.0 class order; gold subjects with ``#Type``
``Gold`` and a lowercase ``#Label`` instead, as its ``API/API.py`` reads them); the classification metadata the
front end sends (session, user agent, viewport, subject dimensions, selection state).

What is simulated: subjects enter a pool of active subjects and take ``--per-subject`` classifications on average
(geometric, at least 1), so a subject's classifications are spread over time as in a live project; one volunteer
per 235 classifications (Gravity Spy's ratio: 7,265,435 classifications by 30,942 volunteers in 1104.yaml) with a
heavy-tailed activity, rarely shown a subject twice; a fifth of the volunteers anonymous
(``not-logged-in-<ip hash>``); a volunteer picks the subject's class with probability 0.75, marks two choices 2 %
of the time and none 0.5 %; 1 % of subjects are gold, and project experts classify gold subjects in gold-standard
mode (``gold_standard`` true, ``expert`` ``expert``). ``--mix`` is the share of rows from the levels 1-3 workflows.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HEADER = ["classification_id", "user_name", "user_id", "user_ip", "workflow_id", "workflow_name", "workflow_version",
          "created_at", "gold_standard", "expert", "metadata", "annotations", "subject_data", "subject_ids"]
#: Gravity Spy's workflows (1104.yaml): id -> (display name, version, survey task key, choice ids in order)
LEVEL5 = ["1080LINE", "1400RIPPLE", "70HZLINE", "AIRCOMPRESSOR50HZ", "BLIP", "CHIRP", "CROWN", "EXTREMELYLOUD", "HELIX",
          "HIGHFREQUENCYBURST", "KOIFISH", "LIGHTMODULATION", "LOWFREQUENCYBURST", "LOWFREQUENCYLINE",
          "NONEOFTHEABOVE", "NOGLITCH", "PAIREDDOVES", "PIZZICATO", "POWERLINE60HZ", "REPEATINGBLIPS",
          "SCATTEREDLIGHT", "SCRATCHY", "TOMTE", "VIOLINMODEHARMONIC", "WANDERINGLINE", "WHISTLE"]
WORKFLOWS = {
    7766: ("level 5: Binary Black Hole Merger", "18.3", "T1", LEVEL5),
    1610: ("level 1: Neutron Star Mountain", "125.16", "T1", ["BLIP", "WHISTLE", "NONEOFTHEABOVE"]),
    1934: ("level 2: Galactic Supernova", "68.24", "T1",
           ["BLIP", "WHISTLE", "KOIFISH", "POWERLINE60HZ", "VIOLINMODEHARMONIC", "NONEOFTHEABOVE"]),
    1935: ("level 3: Binary Neutron Star Merger", "73.18", "T1",
           ["BLIP", "WHISTLE", "KOIFISH", "POWERLINE60HZ", "NOGLITCH", "CHIRP", "SCATTEREDLIGHT",
            "VIOLINMODEHARMONIC", "LOWFREQUENCYBURST", "NONEOFTHEABOVE"]),
}
MAIN_WORKFLOW = 7766
#: the class order of ``#ML_Posterior_<date>`` (``bin/upload``): the v1.0 classes
POSTERIOR_CLASSES = ["1080Lines", "1400Ripples", "Air_Compressor", "Blip", "Chirp", "Extremely_Loud", "Helix",
                     "Koi_Fish", "Light_Modulation", "Low_Frequency_Burst", "Low_Frequency_Lines", "No_Glitch",
                     "None_of_the_Above", "Paired_Doves", "Power_Line", "Repeating_Blips", "Scattered_Light",
                     "Scratchy", "Tomte", "Violin_Mode", "Wandering_Line", "Whistle"]
#: which posterior class a level-5 choice is (None: a class the v1.0 model does not have)
CHOICE_CLASS = dict(zip(LEVEL5, [
    "1080Lines", "1400Ripples", None, "Air_Compressor", "Blip", "Chirp", None, "Extremely_Loud", "Helix", None,
    "Koi_Fish", "Light_Modulation", "Low_Frequency_Burst", "Low_Frequency_Lines", "None_of_the_Above", "No_Glitch",
    "Paired_Doves", None, "Power_Line", "Repeating_Blips", "Scattered_Light", "Scratchy", "Tomte", "Violin_Mode",
    "Wandering_Line", "Whistle"]))
#: the choices' labels as Gravity Spy's field guide writes them (gold subjects' ``#Label`` is one, lowercase)
LABELS = {"1080LINE": "1080 Line", "1400RIPPLE": "1400 Ripple", "70HZLINE": "70 Hz Line",
          "AIRCOMPRESSOR50HZ": "Air Compressor (50 Hz)", "POWERLINE60HZ": "Power Line (60 Hz)",
          "VIOLINMODEHARMONIC": "Violin Mode Harmonic", "NONEOFTHEABOVE": "None of the Above", "NOGLITCH": "No Glitch"}
AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/75.0.3770.100 "
          "Safari/537.36", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.14; rv:67.0) Gecko/20100101 Firefox/67.0",
          "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/74.0.3729.169 Safari/537.36"]
START = datetime(2019, 6, 1, tzinfo=timezone.utc)
ACTIVE_SUBJECTS = 5000
#: Gravity Spy's project: 7,265,435 classifications by 30,942 volunteers (1104.yaml, project_info)
CLASSIFICATIONS_PER_VOLUNTEER = 235
EXPERTS = 5


def label_of(choice: str) -> str:
    return LABELS.get(choice, choice.title())


class Subjects:
    """The pool of subjects being classified: each takes a drawn number of classifications, then leaves."""

    def __init__(self, rng: np.random.Generator, per_subject: float, first_id: int = 30000000) -> None:
        self.rng = rng
        self.per_subject = per_subject
        self.next_id = first_id
        self.active: list[dict] = [self.new() for _ in range(ACTIVE_SUBJECTS)]

    def new(self) -> dict:
        rng = self.rng
        subject_id = self.next_id
        self.next_id += 1
        choice = LEVEL5[int(rng.integers(len(LEVEL5)))]
        gold = rng.random() < 0.01
        name = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), 10))
        metadata = {"date": "20180825", "subject_id": name}
        metadata.update({f"Filename{n}": f"H1_{name}_spectrogram_{d}.png"
                         for n, d in enumerate((0.5, 1.0, 2.0, 4.0), 1)})
        if gold:
            metadata.update({"#Type": "Gold", "#Label": label_of(choice).lower()})
        else:
            weights = np.full(len(POSTERIOR_CLASSES), 0.2)
            if CHOICE_CLASS[choice] is not None:
                weights[POSTERIOR_CLASSES.index(CHOICE_CLASS[choice])] = 8.0
            posterior = rng.dirichlet(weights)
            metadata["#ML_Posterior_20180825"] = str([round(float(p), 6) for p in posterior])
        # the rest of the subject_data cell after its "retired" status, quoted once for all its rows
        cell = quoted(json.dumps(metadata, separators=(",", ":"))[1:] + "}")[1:]
        return {"id": subject_id, "choice": choice, "gold": gold, "cell": cell,
                "left": int(rng.geometric(1.0 / self.per_subject)), "seen": 0, "by": set()}

    def pick(self, user: int) -> dict:
        """A subject for ``user``: one they have not classified, as Zooniverse's selection offers (after a few
        tries, any: exports do hold some repeat classifications)."""
        for _ in range(4):
            at = int(self.rng.integers(len(self.active)))
            subject = self.active[at]
            if user not in subject["by"]:
                break
        subject["seen"] += 1
        subject["by"].add(user)
        if subject["seen"] >= subject["left"]:
            self.active[at] = self.new()
        return subject


def quoted(text: str) -> str:
    """A CSV cell holding ``text`` (JSON): quoted, its quotes doubled, as Zooniverse's export writes it."""
    return '"' + text.replace('"', '""') + '"'


def subject_data(subject: dict, workflow_id: int, now: str) -> str:
    """The ``subject_data`` cell: ``{"<id>": {"retired": <the subject's workflow status>, <metadata>}}``."""
    status = (f'{{"id":{subject["id"] + 10**8},"subject_id":{subject["id"]},"workflow_id":{workflow_id},'
              f'"classifications_count":{subject["seen"]},"retired_at":null,"created_at":"{now}",'
              f'"updated_at":"{now}","retirement_reason":null}}')
    return quoted(f'{{"{subject["id"]}":{{"retired":{status},')[:-1] + subject["cell"]


#: the classification metadata the front end sends, as the export writes it (a quoted JSON cell)
METADATA = quoted('{"source":"api","session":"SESSION","viewport":{"width":1920,"height":969},'
                  '"started_at":"STARTED","user_agent":"AGENT","utc_offset":"14400","finished_at":"FINISHED",'
                  '"live_project":true,"interventions":{"opt_in":true,"messageShown":false},"user_language":"en",'
                  '"user_group_ids":[],"subject_dimensions":[{"clientWidth":800,"clientHeight":600,'
                  '"naturalWidth":800,"naturalHeight":600},null,null,null],"subject_selection_state":{"retired":false,'
                  '"selected_at":"STARTED","already_seen":false,"selection_state":"normal","finished_workflow":false,'
                  '"user_has_finished_workflow":false},"workflow_version":"VERSION","workflow_translation_id":"41263"}'
                  ).replace("SESSION", "%(session)s").replace("STARTED", "%(started)s").replace("AGENT", "%(agent)s") \
    .replace("FINISHED", "%(finished)s").replace("VERSION", "%(version)s")


@functools.lru_cache(maxsize=None)
def annotation(task: str, choices: tuple[str, ...]) -> str:
    """The annotations cell of a survey classification marking ``choices``."""
    value = [{"choice": c, "answers": {}, "filters": {}} for c in choices]
    return quoted(json.dumps([{"task": task, "value": value}], separators=(",", ":")))


def answer(draws: np.ndarray, true: str, options: list[str]) -> tuple[str, ...]:
    """What a volunteer marks (``draws``: 4 uniform numbers): the subject's choice at 0.75 (when the level offers
    it, else None of the Above), a random one otherwise; a second one 2 % of the time; nothing 0.5 %."""
    if draws[0] < 0.005:
        return ()
    right = true if true in options else "NONEOFTHEABOVE"
    first = right if draws[1] < 0.75 else options[int(draws[2] * len(options))]
    return (first, options[int(draws[3] * len(options))]) if draws[0] > 0.98 else (first,)


def stamps(seconds: np.ndarray, iso: bool) -> np.ndarray:
    """Times (s after START) as the export's ``created_at`` text, or as the front end's ISO stamps."""
    text = np.datetime_as_string(np.datetime64(START.replace(tzinfo=None), "s") + seconds.astype("timedelta64[s]"))
    return np.char.add(text, ".000Z") if iso else np.char.add(np.char.replace(text, "T", " "), " UTC")


def write_export(path: Path, rows: int, per_subject: float = 5.0, mix: float = 0.0, seed: int = 0,
                 progress: bool = False, block: int = 50_000) -> Path:
    """Write the export (``block`` rows at a time, random draws made for a block at once); returns its path."""
    rng = np.random.default_rng(seed)
    subjects = Subjects(rng, per_subject)
    volunteers = max(rows // CLASSIFICATIONS_PER_VOLUNTEER, 10)
    # who classifies next: heavy-tailed activity (the k-th busiest volunteer ~ k^-0.8: the busiest few do ~3 %)
    weights = 1.0 / np.arange(1, volunteers + 1) ** 0.8
    users = rng.permutation(volunteers)[rng.choice(volunteers, size=rows, p=weights / weights.sum())]
    others = [w for w in WORKFLOWS if w != MAIN_WORKFLOW]
    clock = 0.0
    with open(path, "w", newline="", encoding="utf-8") as out:
        out.write(",".join(HEADER) + "\n")
        for first in range(0, rows, block):
            n = min(block, rows - first)
            times = clock + np.cumsum(rng.exponential(2.0, n))
            clock = float(times[-1])
            created, finished, started = stamps(times, False), stamps(times, True), stamps(times - 20, True)
            other = rng.random(n) < mix
            which = rng.integers(len(others), size=n)
            draws = rng.random((n, 6))
            agents = rng.integers(len(AGENTS), size=n)
            lines = []
            for at in range(n):
                user = int(users[first + at])
                subject = subjects.pick(user)
                workflow = others[which[at]] if other[at] else MAIN_WORKFLOW
                name, version, task, options = WORKFLOWS[workflow]
                gold_standard = expert = ""
                if subject["gold"] and draws[at, 4] < 0.3:
                    user, gold_standard, expert = volunteers + int(draws[at, 5] * EXPERTS), "true", "expert"
                    chosen: tuple[str, ...] = (subject["choice"] if subject["choice"] in options else "NONEOFTHEABOVE",)
                else:
                    chosen = answer(draws[at], subject["choice"], options)
                ip_hash = f"{(user * 2654435761) % 16**20:020x}"
                anonymous = user % 5 == 0 and not expert
                metadata = METADATA % {"session": f"{user:064x}", "started": started[at], "finished": finished[at],
                                       "agent": AGENTS[agents[at]], "version": version}
                lines.append(",".join([
                    str(10**8 + first + at), f"not-logged-in-{ip_hash}" if anonymous else f"volunteer{user}",
                    "" if anonymous else str(1000 + user), ip_hash, str(workflow), name, version, created[at],
                    gold_standard, expert, metadata, annotation(task, chosen),
                    subject_data(subject, workflow, created[at]), str(subject["id"])]))
            out.write("\n".join(lines) + "\n")
            if progress:
                print(f"{first + n} rows", file=sys.stderr)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--per-subject", type=float, default=5.0, help="mean classifications per subject")
    parser.add_argument("--mix", type=float, default=0.0, help="share of rows from the levels 1-3 workflows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    write_export(args.path, args.rows, args.per_subject, args.mix, args.seed, progress=True)
    size = args.path.stat().st_size
    print(f"{args.path}: {args.rows} rows, {size / 1e6:.0f} MB in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
