"""The runner: every config option composes and instantiates; the installed command behaves as Hydra users expect."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf

import glitchrun
from glitchrun import config, console
from glitchrun.data.loaders import resolve_path

REPO = Path(__file__).resolve().parents[1]
GROUPS = ["job", "backend", "data", "learner", "strategy", "images", "crowd"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))


def compose_config(tmp_path: Path, overrides: list[str] = ()):
    with initialize_config_module(version_base="1.3", config_module="glitchrun.conf"):
        return compose("config", overrides=[f"paths.outputs={tmp_path}", f"paths.run_dir={tmp_path / 'run'}", *overrides])


def target_name(obj: object) -> str:
    """The class or function an instantiated config node stands for (partials unwrapped)."""
    func = obj.func if isinstance(obj, functools.partial) else obj
    if not (isinstance(func, type) or inspect.isfunction(func)):
        func = type(func)
    return func.__qualname__


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), f"config group {group} has no options"


#: the values an option requires of its user (``???`` in its yaml): the config check refuses it without them
REQUIRED = {("job", "subjects"): ["job.export=subjects.csv"]}


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_instantiates(group: str, option: str, tmp_path: Path):
    cfg = compose_config(tmp_path, [f"{group}={option}", *REQUIRED.get((group, option), [])])
    config.check(cfg)  # the typed config takes every shipped option
    OmegaConf.resolve(cfg)  # every interpolation resolves
    node = cfg[group]
    obj = instantiate(node)
    assert target_name(obj) == node._target_.rsplit(".", 1)[-1]


def test_defaults_are_the_main_job_on_the_embedded_backend(tmp_path: Path):
    cfg = compose_config(tmp_path)
    choices = {g: cfg[g]._target_ for g in ("job", "backend", "data")}
    assert choices["job"].endswith("ActiveLearningRound")
    assert choices["backend"] == "glitchrun.zooniverse.backend.LocalBackend"
    assert choices["data"].endswith("SyntheticData")


def run_glitchrun(args: list[str], cwd: Path, env: dict | None = None, exe: str | None = None) -> subprocess.CompletedProcess:
    command = [exe] if exe else [sys.executable, "-m", "glitchrun"]
    return subprocess.run(command + args, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=600)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PANOPTES_")}


def test_help_lists_jobs_groups_overlays_and_where_the_configs_are(tmp_path: Path):
    out = run_glitchrun(["--help"], tmp_path)
    assert out.returncode == 0, out.stderr
    for word in ("al_round", "init_project", "dedupe", "update_metadata", "PANOPTES_USERNAME", "GLITCHRUN_DEBUG",
                 "strategy=    mixed (default), ", "backend=     local (default), zooniverse",
                 "+experiment= o3a_sample", "warm_start=  null (default: none), synthetic", f"are in {REPO / 'conf'}", "--copy-config", "--config-dir", "--config-path"):
        assert word in out.stdout, word


def test_version_names_glitchrun_and_hydra(tmp_path: Path):
    out = run_glitchrun(["--version"], tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"glitchrun {glitchrun.__version__} (Hydra {hydra.__version__})"


def test_copy_config_makes_a_copy_that_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """In-process (the copy is plain files); the copy composes with --config-path as the help says."""
    mine = tmp_path / "my_conf"
    console.command(lambda: None, ["--copy-config", str(mine)])
    assert f"glitchrun --config-path {mine}" in capsys.readouterr().out
    assert (mine / "config.yaml").read_text() == (REPO / "conf" / "config.yaml").read_text()
    assert sorted(p.name for p in mine.glob("strategy/*.yaml")) == sorted(p.name for p in (REPO / "conf/strategy").glob("*.yaml"))
    with pytest.raises(SystemExit) as again:
        console.command(lambda: None, ["--copy-config", str(mine)])
    assert again.value.code == console.USER_ERROR and "already exists" in capsys.readouterr().err


def test_cfg_job_prints_the_composed_job(tmp_path: Path):
    out = run_glitchrun(["--cfg", "job", "job=dedupe"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "glitchrun.jobs.dedupe" in out.stdout


def test_failure_is_logged_with_traceback_in_the_run_dir(tmp_path: Path):
    out = run_glitchrun(["backend=zooniverse", "job=export_request", "hydra.run.dir=run"], tmp_path)
    assert out.returncode == console.USER_ERROR
    log = (tmp_path / "run" / "glitchrun.log").read_text()
    assert "Traceback" in log and "CredentialsError" in log and "PANOPTES_USERNAME" in log


def test_third_party_warnings_go_to_the_log_file_not_the_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    root = logging.getLogger()
    handler = logging.FileHandler(tmp_path / "glitchrun.log")
    root.addHandler(handler)
    try:
        with console.job_console():
            warnings.warn("a library's deprecation notice", FutureWarning)
    finally:
        root.removeHandler(handler)
        handler.close()
        logging.captureWarnings(False)
    assert "a library's deprecation notice" in (tmp_path / "glitchrun.log").read_text()
    seen = capsys.readouterr()
    assert "deprecation notice" not in seen.err + seen.out


def test_a_repeated_warning_is_logged_once_with_its_count(tmp_path: Path):
    root = logging.getLogger()
    handler = logging.FileHandler(tmp_path / "glitchrun.log")
    root.addHandler(handler)
    try:
        with console.job_console():
            for _ in range(500):
                warnings.warn_explicit("y could represent a regression problem", UserWarning, "multiclass.py", 213)
            warnings.warn("another one", UserWarning)
    finally:
        root.removeHandler(handler)
        handler.close()
        logging.captureWarnings(False)
    log = (tmp_path / "glitchrun.log").read_text()
    assert log.count("y could represent a regression problem") == 2  # the warning, then its count
    assert "'multiclass.py:213: UserWarning: y could represent a regression problem' was given 500 times" in log
    assert log.count("UserWarning: another one") == 1


@pytest.mark.slow
def test_the_terminal_shows_one_short_line_per_event_and_the_log_keeps_the_times(tmp_path: Path):
    out = run_glitchrun(["data.n=3000", "al.batch_size=4", "images.size=[160,120]", "images.durations=[1.0]"],
                        tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    terminal = (out.stdout + out.stderr).splitlines()
    assert any(line.startswith("round 1 uploaded: subject set 1") for line in terminal), terminal
    assert not [line for line in terminal if line.startswith("[")], "a Hydra prefix on the terminal"
    assert not [line for line in terminal if "Q-scans:" in line or "upload:" in line], "a progress bar off a terminal"
    log = next((tmp_path / "outputs" / "runs").glob("*/*/glitchrun.log")).read_text().splitlines()
    assert all(line.startswith("[20") for line in log if "][" in line[:40])
    assert [line for line in log if "][glitchrun.jobs.al_round][INFO] - round 1 uploaded" in line]
    repeated = [line for line in log if "number of unique classes is greater than 50%" in line]
    assert len(repeated) == 2 and "times (logged once)" in repeated[1], repeated  # scikit-learn's, hundreds of times


def test_console_script_from_a_wheel_outside_the_source_tree(tmp_path: Path):
    """A non-editable install (a wheel) still finds conf/, from any working directory."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("glitchrun-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "glitchrun/conf/config.yaml" in names and "glitchrun/conf/job/al_round.yaml" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = clean_env() | {"PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import glitchrun; print(glitchrun.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(target)), where.stdout
    out = run_glitchrun(["--cfg", "job"], tmp_path, env=env, exe=str(target / "bin" / "glitchrun"))
    assert out.returncode == 0, out.stderr
    assert "ActiveLearningRound" in out.stdout


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_overlays_compose_and_name_existing_data(experiment: str, tmp_path: Path):
    cfg = compose_config(tmp_path, [f"+experiment={experiment}"])
    OmegaConf.resolve(cfg)
    instantiate(cfg.job)  # the whole job graph builds
    path = cfg.data.get("path")
    assert path is None or resolve_path(path).is_file(), f"{path} (from the checkout's root, or pkg://)"
