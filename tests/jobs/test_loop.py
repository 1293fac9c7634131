"""The campaign loop on the embedded Panoptes under the real rules: classification sync, consensus retirement,
labels that follow the evidence, the round gate, the simulated crowd as testers, the upload limit."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from panoptes_client import Panoptes, ProjectRole, Subject, SubjectWorkflowStatus, Workflow
from panoptes_client.panoptes import PanoptesAPIException

from glitchrun.campaign import sync
from glitchrun.campaign.gold import gold_answers
from glitchrun.campaign.ingest import prior_frame
from glitchrun.campaign.retire import apply_ml_weight, evidence_of, new_evidence
from glitchrun.campaign.state import CampaignState
from glitchrun.crowd.consensus import ACCEPTED, MajorityVote
from glitchrun.crowd.simulated import Crowd, SimulatedCrowd
from glitchrun.jobs.crowd import CrowdJob
from glitchrun.zooniverse.backend import LocalBackend, ZooniverseBackend
from glitchrun.zooniverse.manifest import Manifest
from glitchrun.zooniverse.resources import ProjectSpec, UploadLimitError, ensure_project, ensure_subject_set
from glitchrun.zooniverse.uploader import SubjectLimitReached, SubjectUploader

CLASSES = ["Blip", "Whistle"]
#: the workflow's answers by default: the Gravity Spy v1.0 classes
with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
    CLASSES_ALL = list(compose("config").campaign.workflow.classes)
#: majority vote over two votes at least, decided at 60 % of the votes; a subject retires disputed at 4 votes
RULES = ["campaign.workflow.classes=[Blip,Whistle]", "crowd=perfect", "crowd.consensus.min_votes=2", "crowd.consensus.agreement=0.6",
         "campaign.retirement.max_votes=4", "campaign.workflow.retirement_count=5"]


def vote(conn, workflow_id: str, subject_id: str, volunteer: str, label: str) -> None:
    """One classification of one subject by one volunteer account (a tester of the private project)."""
    workflow = Workflow.find(workflow_id)
    conn.as_user(volunteer).post("/classifications", json={"classifications": {
        "completed": True, "annotations": [{"task": "T0", "value": CLASSES.index(label)}],
        "metadata": {"started_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:05.000Z",
                     "user_agent": "glitchrun-test", "user_language": "en", "workflow_version": workflow.version},
        "links": {"project": str(workflow.links.project.id), "workflow": str(workflow.id), "subjects": [subject_id]}}})


def first_round(tmp_path: Path, seed_campaign, blip: list[float]):
    """Subjects of round 1 (candidates c0, c1, ...) known to the campaign state, with the learner's probability of
    Blip for each (the rest Whistle)."""
    seeded = seed_campaign([{"candidate_id": f"c{i}"} for i in range(len(blip))])
    state = CampaignState(tmp_path / "campaigns" / "glitchrun-demo")
    state.start_round(1, "batch-1", "run", pd.DataFrame({
        "candidate_id": [f"c{i}" for i in range(len(blip))], "strategy": "margin", "score": 0.5,
        "predicted_class": "Blip", "probability": 0.5, "distribution": [{"Blip": p, "Whistle": 1 - p} for p in blip]}))
    state.update_round(1, "uploaded", seeded.subject_set_id)
    state.record_subjects(1, {f"c{i}": s for i, s in enumerate(seeded.subject_ids)})
    state.close()
    return seeded


@pytest.fixture
def campaign(tmp_path: Path, seed_campaign, local_backend):
    """Five subjects of round 1 (candidates c0..c4) the learner finds 50/50, volunteers v0..v9 made testers."""
    return first_round(tmp_path, seed_campaign, [0.5] * 5)


def cast(local_backend, seeded, votes: dict[int, list[str]], first_volunteer: int = 0) -> None:
    """``votes``: subject index -> labels, each by the next volunteer account."""
    with local_backend.connect() as conn:
        for index, labels in votes.items():
            for n, label in enumerate(labels):
                vote(conn, seeded.workflow_id, seeded.subject_ids[index], f"v{first_volunteer + n}", label)


def state_of(tmp_path: Path) -> CampaignState:
    return CampaignState(tmp_path / "campaigns" / "glitchrun-demo")


def server_retirement(local_backend, seeded) -> dict[str, tuple[str | None, str | None]]:
    """(reason, retired_at) of each retired subject of the seeded workflow, as Zooniverse has it."""
    with local_backend.connect():
        statuses = SubjectWorkflowStatus.where(subject_ids=",".join(seeded.subject_ids), workflow_id=seeded.workflow_id)
        return {str(s.raw["links"]["subject"]): (s.raw["retirement_reason"], s.raw["retired_at"])
                for s in statuses if s.raw["retired_at"]}


def test_a_pass_retires_by_consensus_caps_disputes_and_repeats_idempotently(tmp_path, campaign, local_backend,
                                                                             run_job, http_calls):
    s = campaign.subject_ids
    cast(local_backend, campaign, {0: ["Blip", "Blip"], 1: ["Blip", "Whistle", "Blip", "Whistle"], 2: ["Whistle"]})
    result, run_dir = run_job("retire", *RULES)

    assert result.synced.stored == 7 and result.retired == {"consensus": 1, "other": 1}
    assert server_retirement(local_backend, campaign).keys() == {s[0], s[1]}
    assert {k: v[0] for k, v in server_retirement(local_backend, campaign).items()} == {s[0]: "consensus", s[1]: "other"}
    state = state_of(tmp_path)
    subjects = state.subjects()
    assert subjects.loc[s, "status"].tolist() == ["labelled", "disputed", "active", "active", "active"]
    assert subjects.loc[s, "votes"].tolist() == [2, 4, 1, 0, 0]
    assert state.labels().query("source == 'crowd'")["label"].to_dict() == {"c0": "Blip"}
    disputed = pd.read_csv(run_dir / "disputed.csv", dtype={"subject_id": str})
    assert disputed[["subject_id", "votes", "votes.Blip", "votes.Whistle"]].values.tolist() == [[s[1], 4, 2, 2]]

    http_calls.clear()
    again, _ = run_job("retire", *RULES, run_dir="again")
    assert again.synced.stored == 0 and again.retired == {}
    assert not [c for c in http_calls if c[1].endswith("/retired_subjects")]
    assert len(state.classifications()) == 7
    state.close()


def test_a_subject_one_more_vote_cannot_settle_is_disputed_early(tmp_path, campaign, local_backend, run_job):
    """Gravity Spy's weighting at 0.8: two agreeing votes settle a subject; after a 2-2 split one more vote
    cannot (a volunteer of 0.7 lifts the posterior to about 0.7), so with min_next_vote_chance (0.5 by
    default) it is disputed at 4 votes instead of taking 2 more up to the cap (as it does with 0); a subject
    with one vote waits either way."""
    s = campaign.subject_ids
    cast(local_backend, campaign, {0: ["Blip", "Blip"], 1: ["Blip", "Whistle", "Blip", "Whistle"], 2: ["Whistle"]})
    model = [*RULES, "crowd.consensus._target_=glitchrun.crowd.consensus.GravitySpyConsensus",
             "crowd.consensus.agreement=0.8", "campaign.retirement.max_votes=6", "campaign.workflow.retirement_count=7"]
    plain, _ = run_job("retire", *model, "campaign.retirement.min_next_vote_chance=0", run_dir="plain")
    assert plain.retired == {"consensus": 1}  # the split subject waits for votes 5 and 6
    result, run_dir = run_job("retire", *model)
    assert result.retired == {"other": 1}
    assert {k: v[0] for k, v in server_retirement(local_backend, campaign).items()} == {s[0]: "consensus", s[1]: "other"}
    state = state_of(tmp_path)
    assert state.subjects().loc[s[:3], "status"].tolist() == ["labelled", "disputed", "active"]
    state.close()
    assert pd.read_csv(run_dir / "disputed.csv", dtype={"subject_id": str})["subject_id"].tolist() == [s[1]]


def test_labels_follow_the_evidence_replaced_or_withdrawn_and_reported(tmp_path, campaign, local_backend, run_job,
                                                                       caplog):
    cast(local_backend, campaign, {0: ["Blip", "Blip"], 1: ["Blip", "Blip"]})
    run_job("retire", *RULES)
    # late votes on subjects already retired: three Whistles overturn c0, two make c1 a tie
    cast(local_backend, campaign, {0: ["Whistle"] * 3, 1: ["Whistle"] * 2}, first_volunteer=2)
    with caplog.at_level(logging.WARNING, logger="glitchrun.campaign.retire"):
        result, _ = run_job("retire", *RULES, run_dir="again")

    changes = result.changes.set_index("candidate_id")
    assert changes.loc["c0", ["old_label", "new_label"]].tolist() == ["Blip", "Whistle"]
    assert changes.loc["c1", "old_label"] == "Blip" and pd.isna(changes.loc["c1", "new_label"])
    assert "withdrawn" in changes.loc["c1", "reason"] and "replaced" in changes.loc["c0", "reason"]
    state = state_of(tmp_path)
    assert state.labels().query("source == 'crowd'")["label"].to_dict() == {"c0": "Whistle"}
    assert state.subjects().loc[campaign.subject_ids[:2], "status"].tolist() == ["labelled", "disputed"]
    assert len(state.label_changes()) == 2
    assert "label of candidate c1 (round 1): Blip -> (none)" in caplog.text
    state.close()


#: Gravity Spy's weighting, accepting at 0.8 with at least 2 votes; a cap of 6 votes
MODEL = [*RULES, "crowd.consensus._target_=glitchrun.crowd.consensus.GravitySpyConsensus",
         "crowd.consensus.agreement=0.8", "campaign.retirement.max_votes=6", "campaign.workflow.retirement_count=7"]


def test_a_label_changes_only_on_new_evidence_and_says_which(tmp_path, campaign, local_backend, run_job, caplog):
    """c0's two Blips make it a label; then v0 and v1, who gave them, vote Blip where three others say Whistle on
    four other subjects. c0 has no new vote, but its volunteers now look worse (estimated skill 0.71 -> 0.64):
    within the tolerance (0.1) the label stays; with 0.05 it is re-decided and withdrawn, the log naming the
    cause; a pass after that, with nothing new, changes nothing (no flip back)."""
    cast(local_backend, campaign, {0: ["Blip", "Blip"]})
    run_job("retire", *MODEL, run_dir="first")
    cast(local_backend, campaign, {i: ["Blip", "Blip"] for i in range(1, 5)})
    cast(local_backend, campaign, {i: ["Whistle"] * 3 for i in range(1, 5)}, first_volunteer=2)
    held, _ = run_job("retire", *MODEL, "campaign.retirement.skill_tolerance=0.1", run_dir="held")
    assert held.synced.stored == 20 and held.changes.empty
    state = state_of(tmp_path)
    assert state.labels().loc["c0", "label"] == "Blip" and state.subjects().iloc[0]["status"] == "labelled"
    state.close()

    with caplog.at_level(logging.WARNING, logger="glitchrun.campaign.retire"):
        moved, _ = run_job("retire", *MODEL, run_dir="moved")
    assert moved.synced.stored == 0
    assert moved.changes[["candidate_id", "old_label"]].values.tolist() == [["c0", "Blip"]]
    reason = moved.changes.loc[0, "reason"]
    assert reason.startswith("withdrawn") and "estimated skill moved by up to 0.07 (tolerance 0.05)" in reason
    assert "new vote" not in reason and reason in caplog.text

    again, _ = run_job("retire", *MODEL, run_dir="again")
    assert again.changes.empty
    state = state_of(tmp_path)
    assert "c0" not in state.labels().index and len(state.label_changes()) == 1
    state.close()


def test_unanimous_votes_are_not_disputed_early_unless_the_learner_strongly_disagrees(tmp_path, seed_campaign,
                                                                                      local_backend, run_job, caplog):
    """Two of two votes say Blip on c0 (the learner: Blip 0.3) and on c1 (Blip 0.01). c0's posterior (0.68) is
    short of 0.8 and one more vote would settle it with chance 0.58 only, below min_next_vote_chance (0.6): it
    waits for that vote instead of being disputed, and is labelled Blip by it. On c1 the learner outweighs both
    votes (the consensus would accept Whistle): disputed, never labelled against every vote, and the log says so."""
    seeded = first_round(tmp_path, seed_campaign, [0.3, 0.01])
    cast(local_backend, seeded, {0: ["Blip", "Blip"], 1: ["Blip", "Blip"]})
    early = [*MODEL, "campaign.retirement.min_next_vote_chance=0.6"]
    with caplog.at_level(logging.INFO, logger="glitchrun.campaign.retire"):
        run_job("retire", *early)
    state = state_of(tmp_path)
    assert state.subjects()["status"].tolist() == ["active", "disputed"]
    assert f"subject {seeded.subject_ids[1]} (candidate c1) retired disputed: all 2 votes say Blip, but the " \
           "learner strongly disagrees (it gives Blip 0.010; the consensus says Whistle" in caplog.text
    state.close()

    cast(local_backend, seeded, {0: ["Blip"]}, first_volunteer=2)
    run_job("retire", *early, run_dir="third-vote")
    state = state_of(tmp_path)
    assert state.subjects()["status"].tolist() == ["labelled", "disputed"]
    assert state.labels().query("source == 'crowd'")["label"].to_dict() == {"c0": "Blip"}
    state.close()


class Killed(BaseException):
    """The process dies here (not an Exception: nothing may catch it)."""


@pytest.mark.parametrize("where", ["sync", "retire"])
def test_a_pass_killed_between_requests_resumes_without_counting_or_retiring_twice(tmp_path, campaign, local_backend,
                                                                                  run_job, monkeypatch, where):
    s = campaign.subject_ids
    cast(local_backend, campaign, {0: ["Blip", "Blip"], 1: ["Whistle", "Whistle"],
                                   2: ["Blip", "Whistle", "Blip", "Whistle"]})
    if where == "sync":  # killed after the first stored chunk of the sync, before the next page
        monkeypatch.setattr(sync, "CHUNK", 3)
        monkeypatch.setattr(sync, "PAGE_SIZE", 3)
        original = CampaignState.add_classifications

        def add_then_die(self, rows, cursor):
            original(self, rows, cursor)
            raise Killed()

        monkeypatch.setattr(CampaignState, "add_classifications", add_then_die)
    else:  # killed after Zooniverse answered the first retirement request, before the state marked it sent
        original = Workflow.retire_subjects

        def retire_then_die(self, subjects, reason="other"):
            original(self, subjects, reason=reason)
            raise Killed()

        monkeypatch.setattr(Workflow, "retire_subjects", retire_then_die)
    with pytest.raises(Killed):
        run_job("retire", *RULES)
    first = server_retirement(local_backend, campaign)
    monkeypatch.undo()

    result, _ = run_job("retire", *RULES, run_dir="again")
    state = state_of(tmp_path)
    stored = state.classifications()
    assert len(stored) == 8 and stored["classification_id"].is_unique  # every vote once
    retired = server_retirement(local_backend, campaign)
    assert {k: v[0] for k, v in retired.items()} == {s[0]: "consensus", s[1]: "consensus", s[2]: "other"}
    assert all(retired[k][1] == when for k, (_, when) in first.items())  # nothing retired a second time
    assert state.pending_retirements().empty
    assert state.subjects().loc[s[:3], "status"].tolist() == ["labelled", "labelled", "disputed"]
    state.close()


def test_the_safety_cap_must_sit_above_glitchruns_own(tmp_path, run_job):
    with pytest.raises(Exception, match=r"retirement_count \(4\) must be above campaign.retirement.max_votes \(4\)"):
        run_job("retire", *RULES, "campaign.workflow.retirement_count=4")


# -- the whole loop ----------------------------------------------------------------------------------
#: small and fast: a small pool, small batches, one small Q-scan per subject; a weak crowd so that some
#: subjects reach the cap of 2 votes without consensus
LOOP = ["data.n=600", "al.batch_size=4", "al.seed_per_class=1", "images.size=[160,120]", "images.durations=[1.0]",
        "images.n_jobs=1", "images.progress=false", "al.subject_set_name='loop-{round}'",
        "campaign.retirement.max_votes=2", "campaign.workflow.retirement_count=3",
        "crowd.volunteers.volunteers=8", "crowd.volunteers.accuracy=0.6", "job.progress=false"]
ROUND = [o for o in LOOP if o != "job.progress=false"]


#: a busy server: classifications visible up to 0.3 s late (so out of id order), counting and retirement
#: 0.2 s after the request; BUSY_QUIET seconds after its last request such a server has caught up
BUSY = ["backend.rules.visibility_lag=0.3", "backend.rules.worker_delay=0.2", "backend.rules.seed=7"]
BUSY_QUIET = 0.6


@pytest.mark.parametrize("server", [
    pytest.param([], id="quiet server"),
    pytest.param(BUSY, id="busy server", marks=pytest.mark.slow),
])
def test_init_round_crowd_three_times_under_the_real_rules_without_any_export(tmp_path, run_job, local_backend,
                                                                             http_calls, caplog, monkeypatch, server):
    """On a busy server too (votes that become visible out of id order, counting and retirement done later by a
    worker) the loop loses no vote, retires nothing twice and never stalls: every crowd ends, every round
    after the first starts once the crowd is done and the server has caught up."""
    caplog.set_level(logging.INFO)
    asked: list[str] = []  # every subject glitchrun asked Zooniverse to retire, each time it asked
    original = Workflow.retire_subjects

    def retire_subjects(self, subjects, reason="other"):
        asked.extend(str(s) for s in subjects)
        return original(self, subjects, reason=reason)

    monkeypatch.setattr(Workflow, "retire_subjects", retire_subjects)
    rounds, crowd = [*ROUND, *server], [*LOOP, *server]
    run_job("init_project", *rounds, run_dir="init")
    run_job("al_round", *rounds, run_dir="round-1")
    waiting, _ = run_job("al_round", *rounds, run_dir="round-1-again")
    assert waiting.status == "waiting" and "4 of 4 subjects of loop-1" in waiting.message
    assert "still need votes, about 8 more classifications" in waiting.message
    for number in (2, 3):
        made, _ = run_job("crowd", *crowd, run_dir=f"crowd-{number - 1}")
        # a quiet server retires each subject at its 2nd vote; on a busy one votes show late, so how many sweeps
        # pass before the retire pass sees them depends on the machine's speed: the crowd still ends, at the
        # latest once each of the 8 volunteers has seen every subject
        assert len(made) and made["sweep"].max() <= (2 if not server else 8)
        time.sleep(BUSY_QUIET if server else 0)  # a cron job later: the server has caught up (all visible, all due)
        result, _ = run_job("al_round", *rounds, run_dir=f"round-{number}")
        assert result.status == "uploaded" and result.round == number
    assert len(asked) == len(set(asked))  # nothing asked to retire twice
    with sqlite3.connect(local_backend.storage_dir / "panoptes.sqlite3") as server_db:  # every vote, read once
        made_ids = {row[0] for row in server_db.execute("SELECT id FROM classifications")}
    stored = state_of(tmp_path).classifications()["classification_id"]
    assert stored.is_unique and set(stored) == made_ids

    assert not [call for call in http_calls if call[1].endswith("_export")]  # no export asked or read
    assert caplog.text.count("is not live: Zooniverse stores its classifications") == 1
    with local_backend.connect():
        workflow = next(iter(Workflow.where()))
        for resource in (workflow, workflow.links.project):  # the server never made an export medium
            with pytest.raises(PanoptesAPIException):
                resource.describe_export("classifications")
        reasons = {s.raw["retirement_reason"] for s in SubjectWorkflowStatus.where(workflow_id=workflow.id, page_size=100)
                   if s.raw["retired_at"]}
    state = state_of(tmp_path)
    subjects = state.subjects()
    settled = set(subjects.loc[subjects["round"] < 3, "status"])
    assert reasons <= {"consensus", "other"} and settled <= {"labelled", "disputed"}
    if not server:  # a quiet server's seeded crowd reaches both; on a busy one who votes on what depends on
        assert reasons == {"consensus", "other"} and settled == {"labelled", "disputed"}  # when votes show
    # disputed: retired at the vote cap without consensus, or retired by consensus whose label later votes withdrew
    disputed = subjects[subjects["status"] == "disputed"]
    withdrawn = set(state.label_changes().query("new_label.isna()", engine="python")["candidate_id"])
    assert ((disputed["retirement_reason"] == "other") | disputed["candidate_id"].isin(withdrawn)).all()
    # the labels are what the consensus computes from the stored classifications, with the learner's distributions,
    # but where a subject retired earlier kept its decision for want of new evidence (retire.hold: no new vote, no
    # expert answer, its volunteers' skill moved by less than the tolerance), as the last pass found it
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        cfg = compose("config", overrides=ROUND)
    consensus, classes = instantiate(cfg.crowd.consensus), list(cfg.campaign.workflow.classes)
    apply_ml_weight(consensus, state.ml_weight())
    votes, gold = state.votes(), gold_answers(state.known_answers(), state.votes(expert=True))
    decided = consensus.aggregate(votes, classes, prior_frame(state.distributions(), classes), gold=gold)
    accepted = decided[decided["status"] == ACCEPTED]
    expected = {subjects.at[s, "candidate_id"]: label for s, label in accepted["consensus_label"].items()}
    stored = state.labels().query("source == 'crowd'")["label"].to_dict()
    labelled = set(subjects.index[subjects["status"] == "labelled"])
    differs = {s for s, candidate in subjects["candidate_id"].items() if expected.get(candidate) != stored.get(candidate)}
    held = differs | (labelled ^ set(accepted.index))
    now = evidence_of(subjects.index, votes, gold, consensus.volunteer_skill_["skill"])
    tolerance = cfg.campaign.retirement.skill_tolerance
    for subject in held:
        assert not new_evidence(json.loads(subjects.at[subject, "evidence"]), now[subject], tolerance), subject
    state.close()


def test_a_batch_the_upload_limit_cannot_take_is_refused_before_any_write(tmp_path, run_job, local_backend):
    with pytest.raises(UploadLimitError, match="needs 4 new subjects but the account has uploaded 0 of the 3"):
        run_job("al_round", "backend.rules.subject_limit=3", *ROUND, run_dir="round-1")
    with local_backend.connect():
        assert not Panoptes.client().get("/subject_sets")[0]["subject_sets"]


def test_the_uploader_stops_at_the_limits_403_without_retrying(tmp_path, http_calls):
    manifest = Manifest.from_frame(pd.DataFrame({"key": [f"k{i}" for i in range(4)],
                                                 "image": ["https://example.org/g.png"] * 4}), "key", tmp_path)
    with LocalBackend(storage_dir=tmp_path / "server", rules={"subject_limit": 2}).connect():
        project, _ = ensure_project(ProjectSpec("limit", "test"), None)
        subject_set, _ = ensure_subject_set(project, "set")
        http_calls.clear()
        with pytest.raises(SubjectLimitReached, match="User has uploaded 2 subjects of 2 maximum"):
            SubjectUploader(workers=1, retries=3, backoff=0).upload(manifest, project.id, subject_set.id, tmp_path)
    creates = sum(1 for method, path in http_calls if (method, path) == ("POST", "/api/subjects"))
    assert 3 <= creates <= 4  # two made, the third refused (a fourth may have been in flight): none tried twice


# -- the simulated crowd ---------------------------------------------------------------------------
def test_the_crowd_joins_as_testers_asks_the_queue_and_stops_once_glitchrun_retired_everything(
        tmp_path, seed_campaign, run_job, local_backend):
    truth = ["Blip", "Whistle", "Blip", "Whistle", "Blip"]
    seeded = seed_campaign([{"#truth": t, "candidate_id": f"c{i}"} for i, t in enumerate(truth)])
    state = state_of(tmp_path)
    state.record_subjects(1, {f"c{i}": s for i, s in enumerate(seeded.subject_ids)})
    state.close()

    made, _ = run_job("crowd", *RULES, run_dir="crowd")
    # two sweeps: a perfect crowd's two votes are a consensus, and glitchrun retires every subject after the second
    assert made.groupby("subject_id").size().tolist() == [2] * len(truth) and made["sweep"].max() == 2
    assert (made["answer"] == made["truth"]).all()
    with local_backend.connect():
        roles = {str(r.raw["links"]["owner"]["id"]): r.raw["roles"] for r in ProjectRole.where(project_id=seeded.project_id)}
        assert sum(r == ["tester"] for r in roles.values()) == 5  # crowd=perfect has five volunteers
        assert Workflow.find(seeded.workflow_id).raw["classifications_count"] == 0  # not live: Zooniverse counts nothing
    assert set(server_retirement(local_backend, seeded).values()) and \
        {reason for reason, _ in server_retirement(local_backend, seeded).values()} == {"consensus"}
    state = state_of(tmp_path)
    assert state.labels().query("source == 'crowd'")["label"].to_dict() == {f"c{i}": t for i, t in enumerate(truth)}
    state.close()

    again, _ = run_job("crowd", *RULES, run_dir="crowd-again")
    assert again.empty  # nothing offered: every subject is retired


def test_the_crowd_needs_the_hidden_truth(seed_campaign, run_job):
    seed_campaign([{"#truth": "Blip"}, {"candidate_id": "no-truth"}])
    with pytest.raises(ValueError, match="1 subjects have no #truth metadata"):
        run_job("crowd", *RULES)


def test_the_crowd_runs_on_the_embedded_backend_only(tmp_path):
    campaign = {"project": {"display_name": "p", "description": "d"}, "state_dir": str(tmp_path),
                "workflow": {"display_name": "w", "classes": CLASSES, "retirement_count": 5},
                "retirement": {"max_votes": 4}}
    job = CrowdJob(ZooniverseBackend(), Crowd(SimulatedCrowd(), MajorityVote()), campaign, tmp_path)
    with pytest.raises(RuntimeError, match="backend=local"):
        job.run()


# -- known answers and expert review -----------------------------------------------------------------------
#: a weak crowd with one project expert, and a consensus that asks for 0.99 (no gold subjects enough to calibrate
#: it yet), so that subjects end disputed at the cap of 2 votes; a quarter of each batch of 8 is known-answer
#: subjects (two seed labels a class, so each gets an out-of-fold learner's vote)
KNOWN = [o for o in LOOP if not o.startswith(("al.batch_size", "al.seed_per_class", "crowd.volunteers.accuracy"))] + [
    "al.batch_size=8", "al.seed_per_class=2", "campaign.gold.share=0.25", "crowd.volunteers.accuracy=0.4",
    "crowd.consensus.agreement=0.99", "crowd.volunteers.reviewers=1"]
KNOWN_ROUND = [o for o in KNOWN if o != "job.progress=false"]


@pytest.mark.slow
def test_known_answers_and_expert_review_measure_the_crowd(tmp_path, run_job, local_backend):
    first, _ = run_job("al_round", *KNOWN_ROUND, run_dir="round-1")
    state = state_of(tmp_path)
    known = state.known_answers()
    labels = state.labels()
    assert len(known) == 2 and (labels.loc[state.subjects().loc[known.index, "candidate_id"], "label"].to_numpy()
                                == known.to_numpy()).all()
    state.close()
    with local_backend.connect() as conn:
        workflow = next(iter(Workflow.where()))
        sets = [str(s) for s in workflow.raw["links"]["subject_sets"]]
        training = workflow.configuration["training_set_ids"]
        assert training == [int(s) for s in sets if s != first.subject_set_id] and len(sets) == 2
        assert workflow.configuration["training_default_chance"] == 0.25
        assert workflow.raw["subjects_count"] == 6  # app/counters/workflow_counter.rb: training sets left out
        for subject in Subject.where(subject_set_id=training[0]):
            assert subject.metadata["#Type"] == "Gold" and subject.metadata["#Label"] == known[str(subject.id)]

    made, _ = run_job("crowd", *KNOWN, run_dir="crowd-1")
    reviews = made[made["expert"]]
    state = state_of(tmp_path)
    subjects, labels = state.subjects(), state.labels()
    assert len(reviews) and set(reviews["volunteer"]) == {"expert000"}
    reviewed = subjects.loc[reviews["subject_id"]]
    assert (reviewed["status"] == "labelled").all() and (reviewed["retirement_reason"] == "other").all()
    by_expert = labels.loc[reviewed["candidate_id"]]
    assert (by_expert["source"] == "expert").all() and (by_expert["label"].to_numpy() == reviews["answer"].to_numpy()).all()
    assert set(subjects.loc[known.index, "status"]) == {"gold"}
    assert not len(subjects[(subjects["status"] == "disputed") & ~subjects.index.isin(reviews["subject_id"])])

    # volunteer skill from gold: every volunteer vote on a subject of known class is a gold answer
    gold = gold_answers(state.known_answers(), state.votes(expert=True))
    votes = state.votes()
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        consensus = instantiate(compose("config", overrides=KNOWN_ROUND).crowd.consensus)
    consensus.aggregate(votes, CLASSES_ALL, prior_frame(state.distributions(), CLASSES_ALL), gold=gold)
    on_gold = votes["subject_id"].isin(gold.index)
    assert consensus.volunteer_skill_["gold_answers"].sum() == on_gold.sum() > 0
    assert not set(votes["volunteer"]) & set(state.votes(expert=True)["volunteer"])  # an expert's answer is no vote
    state.close()

    with local_backend.connect() as conn:  # a volunteer is no project expert: the real server's refusal
        workflow = next(iter(Workflow.where()))
        roles = {tuple(r.raw["roles"]) for r in ProjectRole.where(project_id=workflow.links.project.id)}
        assert ("expert", "tester") in roles
        with pytest.raises(PanoptesAPIException, match="Gold standard classifier is not a project expert"):
            conn.as_user("volunteer000").post("/classifications", json={"classifications": {
                "gold_standard": True, "annotations": [{"task": "T0", "value": 0}],
                "metadata": {"started_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:05.000Z",
                             "user_agent": "glitchrun-test", "user_language": "en",
                             "workflow_version": workflow.version},
                "links": {"project": str(workflow.links.project.id), "workflow": str(workflow.id),
                          "subjects": [reviews["subject_id"].iloc[0]]}}})

    second, run_dir = run_job("al_round", *KNOWN_ROUND, run_dir="round-2")
    assert second.status == "uploaded" and second.round == 2
    report = (run_dir / "report.md").read_text()
    assert "## The crowd as measured" in report and "known-answer subjects" in report
    for plot in ("volunteer_skill.png", "known_answer_accuracy.png"):
        assert (run_dir / "plots" / plot).stat().st_size > 0
    accuracy = pd.read_csv(run_dir / "known_answer_accuracy.csv")
    assert accuracy["round"].tolist() == [1] and accuracy["answers"].iloc[0] == on_gold.sum()
