"""The campaign page on a campaign made the way the loop test makes one (round, crowd, round, crowd on the embedded
Panoptes, a weak crowd that leaves subjects disputed): its content over HTTP checked against the campaign state and
the run directories, nothing it does changes the campaign, every image of it loads in headless Chromium with no
error logged, and ``job=serve`` / ``job=status job.serve=true`` serve it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import requests
from hydra import compose, initialize_config_module
from PIL import Image

from glitchrun.campaign.state import CampaignState
from glitchrun.cli import run
from glitchrun.images.qscan import QScanImages
from glitchrun.page.app import CampaignPage, create_app
from glitchrun.report import round_table

from ..jobs.test_loop import LOOP, ROUND
from . import chromium

#: the loop test's small rounds, with two Q-scan durations and one upload worker (subject ids in batch order, so
#: the crowd's answers, which they seed, are the same at every run)
PAGE_ROUND = [o for o in ROUND if not o.startswith("images.durations=")] + ["images.durations=[0.5,1.0]",
                                                                              "uploader.workers=1"]
NAME = "glitchrun-demo"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state directory of a campaign after two rounds, each classified by the simulated crowd."""
    tmp = tmp_path_factory.mktemp("page")
    for number in (1, 2):
        for job, overrides in (("al_round", PAGE_ROUND), ("crowd", LOOP)):
            with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
                cfg = compose("config", overrides=[f"paths.outputs={tmp}", f"paths.run_dir={tmp / f'{job}-{number}'}",
                                                   f"job={job}", *overrides])
            run(cfg)
    return tmp / "campaigns" / NAME


@pytest.fixture(scope="module")
def page(campaign: Path) -> Iterator[str]:
    """The page's address, served as the jobs serve it."""
    with CampaignPage(campaign, NAME, port=0) as served:
        yield served.url.rstrip("/")


@dataclass
class Card:
    text: str = ""
    images: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)  # its table of classes


class Html(HTMLParser):
    """What the tests read of a page: its text, images, links, tables (by class) and subject cards (by id)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text, self.images, self.links = "", [], []
        self.tables: dict[str, list[list[str]]] = {}
        self.cards: dict[str, Card] = {}
        self.card: Card | None = None
        self.rows: list[list[str]] | None = None
        self.cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "article":
            self.card = self.cards[str(named["id"])] = Card()
        elif tag in ("img", "a"):
            target = str(named["src" if tag == "img" else "href"])
            (self.images if tag == "img" else self.links).append(target)
            if self.card is not None:
                (self.card.images if tag == "img" else self.card.links).append(target)
        elif tag == "table":
            self.rows = self.card.rows if self.card is not None else self.tables.setdefault(str(named["class"]), [])
        elif tag == "tr" and self.rows is not None:
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.rows is not None and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "table":
            self.rows = None
        elif tag == "article":
            self.card = None

    def handle_data(self, data: str) -> None:
        self.text += data
        if self.cell is not None:
            self.cell.append(data)
        if self.card is not None:
            self.card.text += data


def get(page: str, path: str) -> requests.Response:
    response = requests.get(page + path, timeout=60)
    assert response.status_code == 200, (path, response.status_code)
    return response


def words(text: str) -> str:
    return " ".join(text.split())


def votes_by_subject(state: CampaignState) -> dict[str, dict[str, int]]:
    votes = state.votes()
    return {s: group["label"].value_counts().to_dict() for s, group in votes.groupby("subject_id")}


def distributions(state: CampaignState) -> dict[tuple[int, str], dict[str, float]]:
    rows = state.db.execute("SELECT round, candidate_id, distribution FROM batch")
    return {(n, c): json.loads(d) for n, c, d in rows}


def check_card(card: Card, subject: str | None, votes: dict[str, int], distribution: dict[str, float]) -> None:
    """A card says how many votes its subject has and, per voted class, the votes and the learner's probability."""
    text = words(card.text)
    assert f"subject {subject or '–'}" in text
    total = sum(votes.values())
    assert f"· {total} vote{'' if total == 1 else 's'}" in text
    rows = {row[0]: row[1:] for row in card.rows[1:]}
    for label, n in votes.items():
        assert rows[label] == [str(n), f"{distribution.get(label, 0.0):.2f}"], (label, rows)


@pytest.mark.slow
def test_the_overview_shows_the_rounds_the_current_batch_and_the_reports_plots(campaign: Path, page: str):
    html = Html(get(page, "/").text)
    with closing(CampaignState.read_only(campaign)) as state:
        table, rounds = round_table(state), state.rounds().set_index("number")
        batch, subjects = state.batch(2), state.subjects(round=2).reset_index().set_index("candidate_id")
        votes, distribution, labels = votes_by_subject(state), distributions(state), state.labels()
    # the rounds, as job=status counts them
    assert [row[:8] for row in html.tables["rounds"][1:]] == [[str(v) for v in row] for row in table.itertuples(index=False)]
    assert table["votes"].sum() > 0 and (table["status"] == "labelled").any()
    # the current batch: round 2's, in the order chosen, each with its prediction, why it was chosen, its votes
    assert list(html.cards) == [f"2-{c}" for c in batch["candidate_id"]]
    run_dir = Path(rounds.loc[2, "run_dir"])
    manifest = pd.read_csv(run_dir / "manifest.csv", dtype=str).set_index("candidate_id")
    for row in batch.itertuples():
        card, subject = html.cards[f"2-{row.candidate_id}"], subjects.loc[row.candidate_id, "subject_id"]
        text = words(card.text)
        assert f"learner: {row.predicted_class} {row.probability:.2f}" in text
        assert f"chosen by {row.strategy}, score {row.score:.3f}" in text
        check_card(card, subject, votes.get(subject, {}), distribution[(2, row.candidate_id)])
        # the thumbnail is the 1 s Q-scan scaled down; it opens at full size, and so does every other duration
        assert card.images == [f"/thumbnails/2/{manifest.loc[row.candidate_id, 'image_1s']}"]
        thumbnail = get(page, card.images[0])
        assert thumbnail.headers["Content-Type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumbnail.content)).size == (160, 120)  # never larger than the Q-scan
        for column in ("image_0.5s", "image_1s"):
            path = manifest.loc[row.candidate_id, column]
            assert f"/scans/2/{path}" in card.links
            assert get(page, f"/scans/2/{path}").content == (run_dir / path).read_bytes()
    # round 2's report's plots: the learner's quality, volunteer skill and every other PNG it wrote, but the
    # contact sheets (the cards are the batch); quality first
    plots = sorted(p.name for p in (run_dir / "plots").glob("*.png") if not p.name.startswith("contact_sheet"))
    assert {"quality.png", "volunteer_skill.png"} <= set(plots)
    shown = [src for src in html.images if src.startswith("/files/")]
    assert sorted(shown) == [f"/files/2/plots/{name}" for name in plots] and shown[0] == "/files/2/plots/quality.png"
    for src in shown:
        assert get(page, src).content.startswith(b"\x89PNG")
    # the labels by class and source
    crosstab = pd.crosstab(labels["label"], labels["source"], margins=True, margins_name="total")
    assert html.tables["labels"][0] == ["class", *crosstab.columns]
    assert html.tables["labels"][1:] == [[str(c), *map(str, row)] for c, row in crosstab.iterrows()]


@pytest.mark.slow
def test_the_disputed_subjects_show_their_votes_the_learners_distribution_and_every_qscan(campaign: Path,
                                                                                         page: str):
    html = Html(get(page, "/disputed").text)
    with closing(CampaignState.read_only(campaign)) as state:
        subjects, votes, distribution = state.subjects(), votes_by_subject(state), distributions(state)
        run_dirs = state.rounds().set_index("number")["run_dir"]
    disputed = subjects[subjects["status"] == "disputed"].sort_values("round", ascending=False, kind="stable")
    assert len(disputed) > 0  # the weak crowd left some: the page has something to show an expert
    assert f"Disputed subjects: {len(disputed)}" in words(html.text)
    assert set(html.cards) == {f"{r.round}-{r.candidate_id}" for r in disputed.itertuples()}
    for subject, row in disputed.iterrows():
        card = html.cards[f"{row['round']}-{row['candidate_id']}"]
        check_card(card, str(subject), votes.get(str(subject), {}), distribution[(row["round"], row["candidate_id"])])
        assert "no consensus within the vote cap" in card.text or "label was withdrawn" in card.text
        manifest = pd.read_csv(Path(run_dirs[row["round"]]) / "manifest.csv", dtype=str).set_index("candidate_id")
        scans = [manifest.loc[row["candidate_id"], c] for c in ("image_0.5s", "image_1s")]
        assert card.images == [f"/thumbnails/{row['round']}/{path}" for path in scans]  # every duration, for an expert


@pytest.mark.slow
def test_a_round_page_links_its_run_directory_files_and_nothing_else_is_served(campaign: Path, page: str):
    with closing(CampaignState.read_only(campaign)) as state:
        run_dir = Path(state.rounds().set_index("number").loc[1, "run_dir"])
    html = Html(get(page, "/round/1").text)
    for name in ("report.md", "manifest.csv", "upload_report.csv", "labelled_pool.csv", "plots/quality.png"):
        assert f"/files/1/{name}" in html.links
    report = get(page, "/files/1/report.md")
    assert report.headers["Content-Type"].startswith("text/plain") and report.text == (run_dir / "report.md").read_text()
    for path in ("/round/3", "/files/1/no-such-file", "/files/1/../../campaigns/glitchrun-demo/campaign.sqlite",
                 "/files/1/%2e%2e/%2e%2e/campaigns/glitchrun-demo/campaign.sqlite", "/thumbnails/1/../manifest.csv",
                 "/scans/1/../manifest.csv", "/scans/1/no-such-scan.png", "/files/9/report.md"):
        assert requests.get(page + path, timeout=30).status_code == 404, path


def campaign_fingerprint(campaign: Path) -> tuple[str, list[str]]:
    with closing(sqlite3.connect(campaign / "campaign.sqlite")) as db:
        return hashlib.sha256((campaign / "campaign.sqlite").read_bytes()).hexdigest(), list(db.iterdump())


@pytest.mark.slow
def test_nothing_on_the_page_changes_the_campaign(campaign: Path, page: str):
    before = campaign_fingerprint(campaign)
    for path in ("/", "/disputed", "/round/1", "/round/2"):
        html = Html(get(page, path).text)
        for target in html.links + html.images:
            if target.startswith("/"):
                requests.get(page + target, timeout=60)
        for method in ("post", "put", "delete", "patch"):
            assert getattr(requests, method)(page + path, timeout=30).status_code == 405
    assert campaign_fingerprint(campaign) == before
    with closing(CampaignState.read_only(campaign)) as state, pytest.raises(sqlite3.OperationalError, match="readonly"):
        state.db.execute("DELETE FROM labels")


@pytest.mark.slow
def test_a_plot_a_report_writes_later_shows_up_in_its_place(campaign: Path, page: str):
    """Where issue 21's plots (volunteer skill on gold standards, calibration) plug in: any PNG in the report's
    plots/ folder is shown, calibration right after volunteer skill."""
    with closing(CampaignState.read_only(campaign)) as state:
        plots = Path(state.rounds().set_index("number").loc[2, "run_dir"]) / "plots"
    shutil.copy(plots / "quality.png", plots / "calibration.png")
    try:
        shown = [src for src in Html(get(page, "/").text).images if src.startswith("/files/")]
    finally:
        (plots / "calibration.png").unlink()
    order = [src.rsplit("/", 1)[1] for src in shown]
    assert order.index("calibration.png") == order.index("volunteer_skill.png") + 1


@pytest.mark.slow
def test_every_image_loads_in_headless_chromium_and_no_error_is_logged(campaign: Path, page: str, tmp_path: Path):
    if chromium.executable() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium before the tests")
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    browser = chromium.Chromium(tmp_path / "profile")
    try:
        # the check itself sees a broken image and a script error
        control = browser.load(f"data:text/html,<img src='{page}/files/1/missing.png'><script>missing()</script>")
        assert [image["loaded"] for image in control.images] == [False]
        assert any("missing is not defined" in e for e in control.errors), control.errors
        for path in ("/", "/disputed", "/round/1", "/round/2"):
            loaded = browser.load(page + path)
            assert len(loaded.images) > 3, path
            assert [i["src"] for i in loaded.images if not i["loaded"]] == [], path
            assert loaded.errors == [], path
    finally:
        browser.close()


# -- the jobs that serve it ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("job", [["job=serve", "backend=zooniverse"], ["job=status", "job.serve=true"],
                                 ["job=serve", "job.port=0"]], ids=["serve-zooniverse", "status", "serve-local"])
def test_the_jobs_serve_the_page_until_stopped(campaign: Path, tmp_path: Path, job: list[str]):
    command = [sys.executable, "-m", "glitchrun", *job, "job.page_port=0", f"campaign.state_dir={campaign}",
               f"backend.storage_dir={campaign.parent.parent / 'embedded_panoptes'}", f"hydra.run.dir={tmp_path / 'run'}"]
    if "backend=zooniverse" in job:
        command.remove(f"backend.storage_dir={campaign.parent.parent / 'embedded_panoptes'}")
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watchdog = threading.Timer(120, process.kill)  # a hung start fails the test instead of blocking it
    watchdog.daemon = True
    watchdog.start()
    try:
        printed, found = [], None
        for line in process.stdout:  # type: ignore[union-attr]
            printed.append(line)
            if found := re.match(r"Campaign page \(read-only\) at (\S+) ", line):
                break
        assert found, "".join(printed)
        html = Html(get(found[1].rstrip("/"), "/").text)
        assert NAME in html.text and len(html.tables["rounds"]) == 3
        if "job=status" in job:
            assert re.search(r"^\s+2\s+loop-2 \(", "".join(printed), re.MULTILINE)  # the status came first
        assert ("Embedded Panoptes serving at" in "".join(printed)) == ("job.port=0" in job)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0, rest
        assert "stopped serving" in rest
    finally:  # a failed check leaves no server behind
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_a_resumed_round_shows_the_qscans_of_the_run_that_uploaded_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Round 1's first run is killed while rendering its Q-scans (so it never discards its round: nothing uploaded,
    no manifest); the next run resumes it, renders them and uploads: the page shows and serves that run's Q-scans,
    and says which run it was."""
    def config(run: str):
        with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
            return compose("config", overrides=[f"paths.outputs={tmp_path}", f"paths.run_dir={tmp_path / run}",
                                                "job=al_round", *PAGE_ROUND])

    def no_strain(self, rows, folder):
        raise ConnectionError("strain server unreachable")

    with monkeypatch.context() as killed:
        killed.setattr(QScanImages, "render", no_strain)
        killed.setattr(CampaignState, "discard_round", lambda self, number: None)  # a killed run cleans up nothing
        with pytest.raises(ConnectionError):
            run(config("chose"))
    assert not (tmp_path / "chose" / "manifest.csv").exists() and (tmp_path / "chose" / "report.md").exists()
    assert run(config("resumed")).status == "uploaded"
    campaign = tmp_path / "campaigns" / NAME
    with closing(CampaignState.read_only(campaign)) as state:
        dirs = state.rounds().set_index("number").loc[1, ["run_dir", "upload_run_dir"]].tolist()
    assert dirs == [str(tmp_path / "chose"), str(tmp_path / "resumed")]
    manifest = pd.read_csv(tmp_path / "resumed" / "manifest.csv", dtype=str).set_index("candidate_id")
    client = create_app(campaign, NAME).test_client()
    html = Html(client.get("/round/1").text)
    assert f"resumed, its Q-scans rendered, its manifest written and its batch uploaded by the run in " \
           f"{tmp_path / 'resumed'}" in words(html.text)
    assert set(html.cards) == {f"1-{candidate}" for candidate in manifest.index}
    for candidate, row in manifest.iterrows():
        card = html.cards[f"1-{candidate}"]
        assert card.images == [f"/thumbnails/1/{row['image_1s']}"] and f"/scans/1/{row['image_0.5s']}" in card.links
        assert client.get(card.images[0]).headers["Content-Type"] == "image/jpeg"
        scan = client.get(f"/scans/1/{row['image_0.5s']}")
        assert scan.status_code == 200 and scan.data == (tmp_path / "resumed" / row["image_0.5s"]).read_bytes()
    assert "/files/1/report.md" in html.links  # the report and plots stay those of the run that chose the batch
    assert client.get("/files/1/report.md").text == (tmp_path / "chose" / "report.md").read_text()


# -- without a campaign run here ----------------------------------------------------------------------------
def test_a_campaign_not_started_or_whose_run_directories_are_gone(tmp_path: Path):
    client = create_app(tmp_path / "none", "nothing-yet").test_client()
    assert "No campaign yet" in client.get("/").text
    assert client.get("/disputed").status_code == client.get("/round/1").status_code == 404
    state = CampaignState(tmp_path / "moved")
    state.start_round(1, "set-1", str(tmp_path / "gone"), pd.DataFrame({
        "candidate_id": ["a", "b"], "strategy": ["margin", "high_probability"], "score": [0.0, 0.9],
        "predicted_class": ["Blip", "Whistle"], "probability": [0.4, 0.9],
        "distribution": [{"Blip": 0.4, "Koi_Fish": 0.35, "Tomte": 0.25}, {"Whistle": 0.9, "Blip": 0.1}]}))
    state.close()
    client = create_app(tmp_path / "moved", "moved").test_client()
    html = Html(client.get("/").text)
    assert list(html.cards) == ["1-a", "1-b"]
    assert "no Q-scan in round 1's run directory" in html.cards["1-a"].text
    assert "not uploaded" in html.cards["1-a"].text
    assert html.cards["1-a"].rows[1:] == [["Blip", "0", "0.40"], ["Koi_Fish", "0", "0.35"], ["Tomte", "0", "0.25"]]
    assert "The run directory is not here" in client.get("/round/1").text
    assert client.get("/files/1/report.md").status_code == 404


def test_disputed_subjects_come_fifty_a_page_latest_round_first(tmp_path: Path):
    state = CampaignState(tmp_path / "campaign")
    for number, size in ((1, 30), (2, 30)):
        candidates = [f"r{number}-{i:02d}" for i in range(size)]
        state.start_round(number, f"set-{number}", str(tmp_path / "gone"), pd.DataFrame({
            "candidate_id": candidates, "strategy": "margin", "score": 0.0, "predicted_class": "Blip",
            "probability": 0.5, "distribution": [{"Blip": 0.5, "Tomte": 0.5}] * size}))
        subjects = {c: f"{number}{i:02d}" for i, c in enumerate(candidates)}
        state.record_subjects(number, subjects)
        state.record_pass(pd.DataFrame({"subject_id": list(subjects.values()), "candidate_id": candidates,
                                        "round": number, "status": "disputed", "retirement_reason": "other",
                                        "votes": 0, "label": None, "agreement": 0.0, "sent": True}).set_index("subject_id"),
                          pd.DataFrame(columns=["candidate_id", "old_label", "new_label", "round", "reason"]))
    state.close()
    client = create_app(tmp_path / "campaign", "many").test_client()
    first, second = Html(client.get("/disputed").text), Html(client.get("/disputed?page=2").text)
    assert "Disputed subjects: 60" in words(first.text) and "Page 1 of 2 (1–50)" in words(first.text)
    assert list(first.cards) == [f"2-r2-{i:02d}" for i in range(30)] + [f"1-r1-{i:02d}" for i in range(20)]
    assert list(second.cards) == [f"1-r1-{i:02d}" for i in range(20, 30)]
    assert client.get("/disputed?page=3").status_code == 404
