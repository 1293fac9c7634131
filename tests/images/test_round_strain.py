"""A round on real glitches takes its Q-scans from real strain (a GWOSC stand-in here), records where each
subject's strain came from, and stops before any upload when a chosen glitch has none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from panoptes_client import Project, Subject, SubjectSet

from glitchrun.cli import run
from glitchrun.images.gwosc_standin import GwoscStandIn
from glitchrun.images.qscan import MissingStrainError
from glitchrun.images.strain import NpzStrain
from glitchrun.zooniverse.backend import LocalBackend

START = 1238200000
SAMPLE = Path(__file__).resolve().parents[2] / "glitchrun" / "data" / "samples" / "gravityspy_o3a_h1_sample.csv"
CLASSES = ("Blip", "Tomte", "Whistle")


def o3_rows(npz: NpzStrain, tmp_path: Path) -> tuple[Path, np.ndarray]:
    """9 rows of the shipped O3a sample (3 of each class), moved to the times of 9 real H1 strain examples
    of the same classes laid end to end from ``START``; and that strain."""
    sample = pd.read_csv(SAMPLE)
    rows = pd.concat([sample[sample["label"] == label].head(3) for label in CLASSES])
    examples = npz.candidates().query("ifo == 'H1' and label in @CLASSES").groupby("label").head(3)
    examples = examples.loc[[cid for label in CLASSES for cid in examples.index[examples["label"] == label]]]
    rows["GPStime"] = START + 14 * np.arange(len(rows)) + 7.0
    path = tmp_path / "o3_glitches.csv"
    rows.to_csv(path, index=False)
    return path, np.concatenate([npz.segment(cid, {}).data for cid in examples.index])


def round_config(tmp_path: Path, data: Path, host: str):
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        return compose("config", overrides=[
            "+experiment=o3a_sample", f"data.path={data}", f"paths.outputs={tmp_path}",
            f"paths.run_dir={tmp_path / 'run'}", "job=al_round", "al.batch_size=3", "al.seed_per_class=2",
            f"images.strain.host={host}", f"images.strain.cache_dir={tmp_path / 'cache'}", "images.strain.pad=7",
            "images.size=[160,120]", "images.durations=[1.0]", "images.n_jobs=1", "images.progress=false",
        ])


def server_counts(tmp_path: Path) -> tuple[int, int]:
    with LocalBackend(storage_dir=tmp_path / "embedded_panoptes").connect():
        projects = list(Project.where())
        if not projects:
            return 0, 0
        project = projects[0]
        return (len(list(SubjectSet.where(project_id=project.id))),
                len(list(Subject.where(project_id=project.id, page_size=100))))


@pytest.fixture(scope="module")
def npz(shared_data: Path) -> NpzStrain:
    return NpzStrain(shared_data / "o3_glitch_strain_examples.npz")


def test_a_round_on_real_glitches_uploads_q_scans_of_their_real_strain(npz, tmp_path: Path):
    data, strain = o3_rows(npz, tmp_path)
    with GwoscStandIn(tmp_path / "gwosc") as standin:
        served = standin.add("H1", START, strain, 4096)
        result = run(round_config(tmp_path, data, standin.host))
    assert result.status == "uploaded"
    assert standin.downloads == {served.path.name: 1}  # the batch's three glitches share one file
    manifest = pd.read_csv(tmp_path / "run" / "manifest.csv")
    assert list(manifest["#strain_source"]) == ["gwosc"] * 3
    assert list(manifest["#strain_file"]) == [served.path.name] * 3 and list(manifest["#sample_rate"]) == [4096] * 3
    with LocalBackend(storage_dir=tmp_path / "embedded_panoptes").connect():
        subjects = list(Subject.where(subject_set_id=result.subject_set_id, page_size=100))
    assert len(subjects) == 3
    for subject in subjects:
        assert subject.metadata["#strain_source"] == "gwosc"
        assert subject.metadata["#strain_file"] == served.path.name


def test_a_real_glitch_without_strain_stops_the_round_before_any_upload(npz, tmp_path: Path):
    data, strain = o3_rows(npz, tmp_path)
    with GwoscStandIn(tmp_path / "gwosc") as standin:
        standin.add("H1", START, strain[: strain.size // 3], 4096)  # only the Blips' strain is there
        with pytest.raises(MissingStrainError) as caught:
            run(round_config(tmp_path, data, standin.host))
    assert "2 of 3 candidates" in str(caught.value) and "images/strain=gwosc" in str(caught.value)
    rows = pd.read_csv(data)
    assert set(caught.value.ids) <= set(rows.loc[rows["label"] != "Blip", "id"])
    assert server_counts(tmp_path) == (0, 0)  # no subject set, no subject
    assert not (tmp_path / "run" / "images").exists() or not any((tmp_path / "run" / "images").iterdir())


def test_the_o3a_experiment_reads_its_shipped_sample_from_any_directory(tmp_path: Path, monkeypatch):
    from hydra.utils import instantiate

    monkeypatch.chdir(tmp_path)
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        cfg = compose("config", overrides=["+experiment=o3a_sample"])
    candidates = instantiate(cfg.data).load()
    assert len(candidates.frame) == 170 and candidates.frame["event_time"].notna().all()
    missing = instantiate(cfg.data, path="no_such.csv")
    with pytest.raises(FileNotFoundError, match=f"data.path .*no_such.csv not found .*{tmp_path}"):
        missing.load()
