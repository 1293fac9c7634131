"""Every failure is one line wherever it happens (issue 23): in a Q-scan worker process (the default
``images.n_jobs``, not 1), while reading strain, data or a metadata CSV, while looking up the campaign, offline.
(Each strain defect a worker meets is in ``tests/images/test_worker_errors.py``, on real worker processes too.)

Each case runs as ``python -m glitchrun ...`` on its own copy of one campaign (its project and workflow on the
embedded Panoptes, its state begun, a subject set of glitchrun's subjects) and must exit 2 with at most three
lines on stderr, the first ``glitchrun: <what is wrong>``, no traceback, and leave the embedded server and the
campaign state exactly as they were. The cases run three at a time: each spends seconds starting Python.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from glitchrun.cli import run
from glitchrun.images.qscan import MissingStrainError
from glitchrun.images.strain import StrainUnreachable, write_gwosc_hdf5
from glitchrun.zooniverse.backend import LocalBackend
from glitchrun.zooniverse.resources import ProjectSpec, ensure_project, ensure_subject_set
from glitchrun.zooniverse.uploader import KEY_FIELD
from tests.jobs.conftest import PROJECT, create_subjects

from .helpers import campaign_rows, fingerprint, glitchrun

pytestmark = pytest.mark.slow

START = 1238200000
#: a host nothing listens on: GWOSC (or any server) as unreachable as offline
NOWHERE = "http://127.0.0.1:9"
SMALL = ["images.size=[160,120]", "images.durations=[1.0]", "al.batch_size=3"]


def glitches(path: Path, **changes: tuple[int, str, float]) -> Path:
    """Nine labelled and three unlabelled O3-catalogue rows at the times of glitches 1-4 of the strain file;
    ``changes`` sets ``column`` of row ``i`` (``name=(i, column, value)``)."""
    labels = ["Blip", "Tomte", "Whistle"]
    rows = [{"GPStime": START + 21.0 + 14 * (i % 4), "peakFreq": 100.0 + i, "snr": 20.0 + i, "amplitude": 1e-22,
             "centralFreq": 200.0 + i, "duration": 0.5, "bandwidth": 100.0 + i, "id": f"c{i}", "ifo": "H1",
             "label": labels[i % 3] if i not in (3, 4, 5) else ""} for i in range(12)]
    frame = pd.DataFrame(rows)
    for row, column, value in changes.values():
        frame.loc[row, column] = value
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """The inputs, and a campaign begun as a user begins one: a round that stopped for want of strain (the
    project and workflow made, nothing else kept), a round of the O3a sample that found GWOSC unreachable,
    and a subject set of three subjects glitchrun uploaded (``#glitchrun_key`` = candidate id)."""
    root = tmp_path_factory.mktemp("world")
    examples = np.load(shared_data / "o3_glitch_strain_examples.npz")
    strain = np.concatenate([examples["strain"][i] for i in range(6)]).astype(np.float64)  # 84 s of real H1 data
    name = f"H-H1_GWOSC_O3a_4KHZ_R1-{START}-84.hdf5"
    write_gwosc_hdf5(root / name, strain, "H1", START, 4096)
    (root / "truncated").mkdir()
    (root / "truncated" / name).write_bytes((root / name).read_bytes()[:1_000_000])
    (root / "folders").mkdir()  # a directory where a strain file should be
    shutil.copy(shared_data / "o3_glitch_strain_examples.npz", root / "examples.npz")
    (root / "truncated.npz").write_bytes((root / "examples.npz").read_bytes()[:200_000])
    glitches(root / "glitches.csv")
    glitches(root / "outside.csv", late=(5, "GPStime", START + 500.0))
    glitches(root / "inf_duration.csv", inf=(4, "duration", np.inf))
    glitches(root / "inf_time.csv", inf=(3, "GPStime", np.inf))
    npz_rows = pd.read_csv(root / "glitches.csv").assign(id=[f"o3strain-{i}" for i in range(12)])
    npz_rows.to_csv(root / "npz_glitches.csv", index=False)
    (root / "own_key.csv").write_text(f"subject_id,{KEY_FIELD}\nSUBJECT,c9\n")
    (root / "other_candidate.csv").write_text("subject_id,candidate_id\nSUBJECT,c2\n")
    (root / "repeated_header.csv").write_text("candidate_id,candidate_id,run\nc1,c1,O3a\n")

    outputs = root / "base" / "outputs"
    for overrides, stopped in (
            (["data=gravityspy", f"data.path={root / 'glitches.csv'}"], MissingStrainError),
            (["+experiment=o3a_sample", f"images.strain.host={NOWHERE}"], StrainUnreachable)):
        with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
            cfg = compose("config", overrides=[f"paths.outputs={outputs}", f"paths.run_dir={root / 'base' / 'run'}",
                                               "images.progress=false", *overrides])
        with pytest.raises(stopped):
            run(cfg)
    with LocalBackend(storage_dir=outputs / "embedded_panoptes").connect() as connection:
        project, _ = ensure_project(ProjectSpec(display_name=PROJECT, description="tests"), connection.login)
        subject_set, _ = ensure_subject_set(project, "batch-1")
        ids = create_subjects(str(project.id), str(subject_set.id),
                              [{"candidate_id": f"c{i}", KEY_FIELD: f"c{i}", "run": "O3a"} for i in (1, 2, 3)])
    for csv in ("own_key.csv", "other_candidate.csv"):
        (root / csv).write_text((root / csv).read_text().replace("SUBJECT", ids[0]))
    return root


def round_on(root: Path, data: str, *strain: str) -> list[str]:
    return ["data=gravityspy", f"data.path={root / data}", *SMALL, *strain]


def metadata(root: Path, csv: str, *key: str) -> list[str]:
    return ["job=update_metadata", f"job.csv={root / csv}", "job.subject_set_name=batch-1", "job.dry_run=false", *key]


#: case -> (arguments, given the inputs' folder; what the line says; environment)
CASES = {
    "truncated HDF5 (worker)": (
        lambda r: round_on(r, "glitches.csv", "images/strain=files", f"images.strain.pattern={r / 'truncated'}/*"),
        ["cannot read the strain at GPS", "truncated file", "while drawing the Q-scan of candidate"]),
    "GPS time outside the file (worker)": (
        lambda r: round_on(r, "outside.csv", "images/strain=files", f"images.strain.path={next(r.glob('*.hdf5'))}"),
        ["does not cover requested interval", "candidate 'c5'"]),
    "strain path is a directory (setting)": (
        lambda r: round_on(r, "glitches.csv", "images/strain=files", f"images.strain.path={r / 'folders'}"),
        ["images.strain.path", "is a directory, not a file"]),
    "truncated npz": (
        lambda r: round_on(r, "npz_glitches.csv", "images/strain=npz", f"images.strain.path={r / 'truncated.npz'}"),
        ["truncated.npz is not a readable npz"]),
    "GPS time inf": (lambda r: round_on(r, "inf_time.csv"),
                     ["column 'GPStime' fails is not a finite number at line 5 (values: inf)"]),
    "duration inf": (lambda r: round_on(r, "inf_duration.csv"),
                     ["column 'duration' fails is not a finite number at line 6 (values: inf)"]),
    "images.n_jobs 0": (lambda r: round_on(r, "glitches.csv", "images.n_jobs=0"), ["images.n_jobs must be"]),
    "offline real-data example": (lambda r: ["+experiment=o3a_sample"],
                                  ["cannot reach GWOSC at 127.0.0.1:9", "'~images/strain' images.allow_synthetic=true"],
                                  {"GWOSC_SERVER_URL": NOWHERE}),
    "missing project (ingest)": (lambda r: ["job=ingest", "campaign.project.display_name=nope"],
                                 ["no project 'nope'"]),
    "missing project (retire)": (lambda r: ["job=retire", "campaign.project.display_name=nope"],
                                 ["no project 'nope'"]),
    "glitchrun's key in a metadata CSV": (lambda r: metadata(r, "own_key.csv"),
                                          [f"column '{KEY_FIELD}' is glitchrun's record of each subject's key"]),
    "another subject's candidate id": (
        lambda r: metadata(r, "other_candidate.csv"),
        ["column 'candidate_id' fails is the key glitchrun finds the subject by", "at line 2", "'c2'"]),
    "repeated CSV header": (lambda r: metadata(r, "repeated_header.csv", "job.key_column=candidate_id"),
                            ["names a column twice ('candidate_id' in columns 1, 2)"]),
}


def test_every_failure_is_one_line_and_changes_nothing(world: Path) -> None:
    base = world / "base" / "outputs"
    server, campaigns = base / "embedded_panoptes", base / "campaigns"
    before = fingerprint(server), {c.name: campaign_rows(c) for c in campaigns.iterdir()}
    assert before[0] and set(before[1]) == {"glitchrun-demo", "o3a-sample"}

    def case(name: str) -> tuple[subprocess.CompletedProcess[str], tuple]:
        args, _, *env = CASES[name]
        folder = world / "cases" / re.sub(r"\W+", "_", name)  # a path Hydra's override grammar takes as it is
        shutil.copytree(base, folder / "outputs")
        out = glitchrun(args(world), folder, **(env[0] if env else {}))
        outputs = folder / "outputs"
        return out, (fingerprint(outputs / "embedded_panoptes"),
                     {c.name: campaign_rows(c) for c in (outputs / "campaigns").iterdir()})

    with ThreadPoolExecutor(max_workers=3) as pool:
        done = dict(zip(CASES, pool.map(case, CASES)))
    for name, (out, after) in done.items():
        lines = out.stderr.splitlines()
        assert out.returncode == 2, f"{name}: exit {out.returncode}\n{out.stderr[-3000:]}"
        assert len(lines) <= 3 and lines[0].startswith("glitchrun: "), f"{name}: {out.stderr}"
        assert "Traceback" not in out.stderr + out.stdout, f"{name}: {out.stderr}"
        for expected in CASES[name][1]:
            assert expected in lines[0], f"{name}: {expected!r} not in {lines[0]}"
        assert after[0] == before[0], f"{name}: the embedded server changed"
        assert after[1] == before[1], f"{name}: the campaign state changed"
