"""Each class of user mistake as a person meets it at the terminal (``python -m glitchrun ...``): exit code 2,
at most three lines on stderr naming the problem, no traceback, nothing printed twice, nothing changed on the
server; with ``GLITCHRUN_DEBUG=1`` the traceback is back. Bugs keep their traceback.

The commands run in parallel: each spends ~3 s starting Python, Hydra and the libraries.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from panoptes_client import Panoptes, Project
from panoptes_client.panoptes import PanoptesAPIException

from glitchrun.console import user_message
from glitchrun.embedded_panoptes import EmbeddedPanoptes

from .helpers import fingerprint, glitchrun

#: class of mistake -> (command-line arguments, what stderr must say); {dir} is the test's folder, {url} the server's
CASES = {
    "misspelt key": (["al.batch_sise=5"], "glitchrun: al.batch_sise is not a setting of al; did you mean al.batch_size?"),
    "wrong type": (["al.batch_size=abc"], "glitchrun: al.batch_size must be an integer, got 'abc'"),
    "bad value": (["al.batch_size=0"], "glitchrun: al.batch_size must be at least 1, got 0"),
    "ragged CSV": (["job=init_project", "job.manifest={dir}/ragged.csv"],
                   "ragged.csv: line 3 has more cells than the header's 2 columns"),
    "broken media": (["job=init_project", "job.manifest={dir}/media.csv"],
                     "column 'image' fails media file is not empty at line 2 (values: 'empty.png')"),
    "missing file": (["job=ingest", "job.export={dir}/nowhere.csv"], "nowhere.csv: no such file"),
    "no credentials": (["job=export_request", "backend=zooniverse"], "backend=zooniverse needs credentials"),
    "unreachable server": (["job=export_request", "backend=zooniverse", "backend.endpoint=http://127.0.0.1:9",
                            "backend.retries=0"], "cannot reach 127.0.0.1:9 (ConnectionError: Failed to establish a new connection: "),
    "Zooniverse refuses": (["job=export_request", "backend=zooniverse", "backend.endpoint={url}", "backend.retries=0"],
                           "Zooniverse refused the request"),
}
#: the environment of each case: no credentials at all, or a wrong password
NO_CREDENTIALS = {"misspelt key", "wrong type", "bad value", "ragged CSV", "broken media", "missing file",
                  "no credentials"}


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A manifest with a row of three cells under a header of two, and one whose image is an empty file."""
    (tmp_path / "ragged.csv").write_text("candidate_id,image\nc1,https://example.org/a.png\nc2,b.png,extra\n")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "media.csv").write_text("candidate_id,image\nc1,empty.png\n")
    return tmp_path


def test_each_class_of_user_error_is_one_line_without_a_traceback(inputs: Path) -> None:
    with EmbeddedPanoptes(inputs / "server") as server:  # the server a refused login talks to
        before = fingerprint(server.storage_dir)
        wrong_password = {"PANOPTES_USERNAME": "glitchrun", "PANOPTES_PASSWORD": "not-the-password"}

        def run(name: str) -> subprocess.CompletedProcess[str]:
            args = [a.format(dir=inputs, url=server.endpoint) for a in CASES[name][0]]
            folder = inputs / name.replace(" ", "_")
            folder.mkdir()
            return glitchrun(args, folder, **({} if name in NO_CREDENTIALS else wrong_password))

        with ThreadPoolExecutor(max_workers=3) as pool:
            done = dict(zip(CASES, pool.map(run, CASES)))
    assert fingerprint(server.storage_dir) == before
    for name, out in done.items():
        expected = CASES[name][1]
        lines = out.stderr.splitlines()
        assert out.returncode == 2, f"{name}: exit {out.returncode}\n{out.stderr}"
        assert expected in out.stderr and len(lines) <= 3, f"{name}: {out.stderr}"
        assert "Traceback" not in out.stderr + out.stdout, f"{name}: {out.stderr}"
        assert out.stderr.count(lines[0]) == 1 and lines[0] not in out.stdout, f"{name}: printed twice"
        assert not (inputs / name.replace(" ", "_") / "outputs" / "embedded_panoptes").exists(), name
    for name in ("misspelt key", "wrong type"):  # refused before Hydra makes a run directory
        assert not (inputs / name.replace(" ", "_") / "outputs").exists(), name
    # after the config was composed, the traceback is in the run's log, and the second line says where
    log = Path(done["bad value"].stderr.splitlines()[1].split("traceback in ")[1].split(";")[0])
    assert "Traceback" in log.read_text() and "al.batch_size must be at least 1" in log.read_text()


def test_the_debug_switch_brings_the_traceback_back(inputs: Path) -> None:
    out = glitchrun(["job=init_project", f"job.manifest={inputs}/media.csv"], inputs, GLITCHRUN_DEBUG="1")
    assert out.returncode == 2
    assert "Traceback (most recent call last)" in out.stderr and "CsvError" in out.stderr
    assert out.stderr.rstrip().splitlines()[-1].startswith("glitchrun: manifest ")


def test_a_refusal_from_zooniverse_is_a_user_error_and_a_bug_is_not(tmp_path: Path) -> None:
    """The real client's exception for a request the server refuses; a library's own failure stays a bug."""
    with EmbeddedPanoptes(tmp_path / "server") as server:
        _, password = server.ensure_user("alice")
        with Panoptes(endpoint=server.endpoint, username="alice", password=password), \
                pytest.raises(PanoptesAPIException) as refused:
            Project.find(999999)
    assert user_message(refused.value) == f"Zooniverse refused the request: {refused.value}"
    with pytest.raises(ValueError) as numpy_failure:
        np.zeros(-1)
    assert user_message(numpy_failure.value) is None
    with pytest.raises(KeyError) as key_error:
        {}["x"]
    assert user_message(key_error.value) is None
