"""The campaign page's answer times on a large campaign: 50 rounds of 100 subjects (simulated state).

    python benchmarks/bench_page.py [--rounds 50] [--subjects 100] [--repeats 5]

A campaign state is written through ``CampaignState``'s own methods, as rounds and retire passes write it:
each round's batch (strategy, score, the learner's distribution over the 22 Gravity Spy classes), its
subjects, three to six volunteer votes per subject, the retire pass's decisions (labelled or disputed, about
one in eight disputed) and some label changes; the last round is uploaded and half-voted. Each round has a
run directory with a manifest of four Q-scans per subject (hard links to one real-size 800 x 600 Q-scan PNG)
and a report's plots. The page is then served as the jobs serve it (``CampaignPage`` on 127.0.0.1) and every
page is requested over HTTP: the first request (nothing cached) and the median of ``--repeats`` more. A
campaign of 5 rounds is measured in the same run for scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from glitchrun.campaign.state import ACTIVE, DISPUTED, LABELLED, CampaignState
from glitchrun.page.app import CampaignPage
from glitchrun.report import markdown_table

CLASSES = ["1080Lines", "1400Ripples", "Air_Compressor", "Blip", "Chirp", "Extremely_Loud", "Helix", "Koi_Fish",
           "Light_Modulation", "Low_Frequency_Burst", "Low_Frequency_Lines", "No_Glitch", "None_of_the_Above",
           "Paired_Doves", "Power_Line", "Repeating_Blips", "Scattered_Light", "Scratchy", "Tomte", "Violin_Mode",
           "Wandering_Line", "Whistle"]
DURATIONS = ("0.5s", "1s", "2s", "4s")
PLOTS = ("quality", "volunteer_skill", "agreement", "class_balance", "query_scores_margin")


def png(path: Path, size: tuple[float, float], seed: int) -> Path:
    """A noisy image of ``size`` inches at 100 dpi: a Q-scan's or a plot's weight on disk."""
    fig = Figure(figsize=size)
    fig.add_axes((0.1, 0.1, 0.8, 0.8)).imshow(np.random.default_rng(seed).gamma(1.0, 2.0, (200, 300)), cmap="viridis")
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def build(root: Path, rounds: int, size: int, seed: int = 0) -> Path:
    """A campaign state of ``rounds`` rounds of ``size`` subjects, with run directories; its state directory."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    scan, plot = png(root / "qscan.png", (8, 6), 1), png(root / "plot.png", (6, 3.5), 2)
    state = CampaignState(root / "campaign")
    classification, volunteers = 0, [f"user:{i}" for i in range(40)]
    for number in range(1, rounds + 1):
        run_dir = root / "runs" / f"round-{number:03d}"
        (run_dir / "images").mkdir(parents=True)
        (run_dir / "plots").mkdir()
        candidates = [f"c{number:03d}-{i:03d}" for i in range(size)]
        distributions = [dict(zip(CLASSES, p.round(4))) for p in rng.dirichlet(np.full(len(CLASSES), 0.3), size)]
        predicted = [max(d, key=d.get) for d in distributions]
        batch = pd.DataFrame({"candidate_id": candidates, "strategy": ["margin"] * (size * 4 // 5)
                              + ["high_probability"] * (size - size * 4 // 5),
                              "score": rng.random(size), "predicted_class": predicted,
                              "probability": [d[c] for d, c in zip(distributions, predicted)],
                              "distribution": distributions})
        state.start_round(number, f"campaign-round-{number:03d}", str(run_dir), batch)
        manifest = {"candidate_id": candidates}
        for duration in DURATIONS:
            manifest[f"image_{duration}"] = [f"images/{c}_{duration}.png" for c in candidates]
            for c in candidates:
                os.link(scan, run_dir / "images" / f"{c}_{duration}.png")
        pd.DataFrame(manifest).to_csv(run_dir / "manifest.csv", index=False)
        for name in PLOTS:
            os.link(plot, run_dir / "plots" / f"{name}.png")
        subject_ids = {c: str(number * 1000 + i) for i, c in enumerate(candidates)}
        state.update_round(number, "uploading", str(number))
        state.record_subjects(number, subject_ids)
        state.update_round(number, "uploaded")
        last = number == rounds
        rows, decided = [], []
        for c, distribution in zip(candidates, distributions):
            votes = int(rng.integers(0, 3)) if last else int(rng.integers(3, 7))
            answers = rng.choice(CLASSES, size=votes, p=np.array(list(distribution.values())) / sum(distribution.values()))
            for volunteer, answer in zip(rng.choice(volunteers, size=votes, replace=False), answers):
                classification += 1
                rows.append((classification, subject_ids[c], str(volunteer), "1", "1.1", "2026-01-01T00:00:00Z",
                             str(answer), number))
            if not last:
                top, count = pd.Series(answers).value_counts().index[0], pd.Series(answers).value_counts().iloc[0]
                disputed = rng.random() < 0.125
                decided.append({"subject_id": subject_ids[c], "candidate_id": c, "round": number,
                                "status": DISPUTED if disputed else LABELLED,
                                "retirement_reason": "other" if disputed else "consensus", "votes": votes,
                                "label": None if disputed else str(top), "agreement": count / votes, "sent": True})
        state.add_classifications(rows, classification)
        if decided:
            changes = pd.DataFrame({"candidate_id": candidates[:2], "old_label": ["Blip", "Tomte"],
                                    "new_label": ["Koi_Fish", None], "round": number, "reason": "later votes"})
            state.record_pass(pd.DataFrame(decided).set_index("subject_id"), changes)
            state.update_round(number, "labelled")
        else:
            state.record_pass(pd.DataFrame([{"subject_id": s, "candidate_id": c, "round": number, "status": ACTIVE,
                                             "retirement_reason": None, "votes": 0, "label": None, "agreement": 0.0,
                                             "sent": False} for c, s in subject_ids.items()]).set_index("subject_id"),
                              pd.DataFrame(columns=["candidate_id", "old_label", "new_label", "round", "reason"]))
    state.close()
    return root / "campaign"


def timed(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    response = requests.get(url, timeout=120)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed, len(response.content)


def measure(state_dir: Path, rounds: int, size: int, repeats: int) -> list[dict]:
    with CampaignPage(state_dir, "bench", port=0) as page:
        first = f"images/c{rounds:03d}-000_1s.png"
        paths = {"overview /": "", "disputed /disputed": "disputed", f"round /round/{rounds}": f"round/{rounds}",
                 "round /round/1": "round/1", "thumbnail (JPEG, 400 px)": f"thumbnails/{rounds}/{first}",
                 "full-size Q-scan": f"files/{rounds}/{first}"}
        rows = []
        for what, path in paths.items():
            cold, size_bytes = timed(page.url + path)
            warm = [timed(page.url + path)[0] for _ in range(repeats)]
            rows.append({"campaign": f"{rounds} x {size}", "request": what, "bytes": size_bytes,
                         "first (s)": round(cold, 3), "median (s)": round(statistics.median(warm), 3),
                         "max (s)": round(max(warm), 3)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rounds in (5, args.rounds):
            started = time.perf_counter()
            state_dir = build(Path(tmp) / f"r{rounds}", rounds, args.subjects)
            with closing(CampaignState.read_only(state_dir)) as state:
                summary = state.summary()
            print(f"{rounds} rounds x {args.subjects} subjects built in {time.perf_counter() - started:.0f} s: "
                  f"{summary['classifications']} classifications, {summary['subjects_by_status']}, "
                  f"{summary['labels']} labels, {summary['label_changes']} label changes")
            rows += measure(state_dir, rounds, args.subjects, args.repeats)
    print("\n".join(markdown_table(pd.DataFrame(rows))))


if __name__ == "__main__":
    main()
