"""``glitchrun job=serve`` in a subprocess: it prints how to connect, serves panoptes-client, keeps the
generated password out of every file, and stops cleanly on SIGINT or SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from panoptes_client import Panoptes, Project

from .helpers import make_project


def start_serve(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start the job on a free port; return it and the ``export NAME=value`` lines it printed."""
    command = [sys.executable, "-m", "glitchrun", "job=serve", "job.port=0", "job.page_port=0",
               f"backend.storage_dir={tmp_path / 'panoptes'}", f"hydra.run.dir={tmp_path / 'run'}"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    watchdog = threading.Timer(60, process.kill)  # a hung start fails the test instead of blocking it
    watchdog.daemon = True
    watchdog.start()
    exports: dict[str, str] = {}
    lines = []
    for line in process.stdout:  # type: ignore[union-attr]
        lines.append(line)
        if found := re.match(r"\s*export (PANOPTES_\w+)=(\S+)", line):
            exports[found[1]] = found[2]
        if "project ls" in line:
            break
    assert "PANOPTES_ENDPOINT" in exports, "".join(lines)
    return process, exports


def stop(process: subprocess.Popen[str], signum: int) -> str:
    process.send_signal(signum)
    rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0, rest
    return rest


def test_serve_with_a_generated_password_stops_on_sigint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANOPTES_")}
    process, exports = start_serve(tmp_path, env)
    password = exports["PANOPTES_PASSWORD"]
    with Panoptes(endpoint=exports["PANOPTES_ENDPOINT"], username=exports["PANOPTES_USERNAME"], password=password):
        project = make_project("Served hunt")
        assert Project.find(project.id).slug == f"{exports['PANOPTES_USERNAME']}/served-hunt"
    assert "stopped" in stop(process, signal.SIGINT)
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert leaks == []


def test_serve_takes_the_password_from_the_environment_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PANOPTES_")},
           "PANOPTES_PASSWORD": "chosen-by-the-user"}
    process, exports = start_serve(tmp_path, env)
    assert "PANOPTES_PASSWORD" not in exports  # not echoed back
    with Panoptes(endpoint=exports["PANOPTES_ENDPOINT"], username="glitchrun", password="chosen-by-the-user"):
        assert list(Project.where()) == []
    stop(process, signal.SIGTERM)
