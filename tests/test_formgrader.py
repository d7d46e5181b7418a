"""The formgrader works in this layout: a Jupyter server started in a course directory (as
docs/instructors.md says, on loopback here) serves nbgrader's formgrader API, which lists every
chapter with ``solutions/`` as its source and ``notebooks/`` as its release."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from course_utils.course.chapters import RELEASE_DIR
from tests.support import CHAPTERS, copy_course, run_nbgrader
from tests.support import free_port

GRADED = "01_attention"  # the chapter recorded in the gradebook



def _request(url: str, token: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def test_formgrader_lists_the_chapters(tmp_path: Path) -> None:
    course = tmp_path / "course"
    course.mkdir()
    copy_course(course)
    shutil.copytree(RELEASE_DIR, course / "notebooks")
    run_nbgrader("generate_assignment", GRADED, "--force", cwd=course)
    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    # The formgrader reads nbgrader_config.py from the working directory, and the course
    # must sit inside the server's root: start the server in the course directory.
    with open(log_path, "w", encoding="utf-8") as log:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "jupyter"), "server", f"--ServerApp.root_dir={course}",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
             *(["--allow-root"] if os.geteuid() == 0 else [])],
            cwd=course, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
                 "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _request(f"{base}/api/status", token)
                break
            except OSError:
                assert server.poll() is None, f"jupyter server exited early:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, f"no answer within 60 s:\n{log_path.read_text()}"
                time.sleep(0.3)

        status, body = _request(f"{base}/formgrader/api/assignments", token)
        assignments: dict[str, dict[str, Any]] = {a["name"]: a for a in json.loads(body)}
        assert status == 200 and set(assignments) == set(CHAPTERS)
        for chapter, assignment in assignments.items():
            assert assignment["source_path"] == f"solutions/{chapter}"
            assert assignment["release_path"] == f"notebooks/{chapter}"
        # The chapter in the gradebook comes with its points (scores_check 2 + sdpa_check 3).
        assert assignments[GRADED]["id"] is not None and assignments[GRADED]["max_score"] == 5
        status, page = _request(f"{base}/formgrader", token)
        assert status == 200 and b"Manage Assignments" in page

        status, _ = _request(f"{base}/api/shutdown", token, method="POST")
        assert status == 200
        assert server.wait(timeout=30) == 0, log_path.read_text()
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
    log_text = log_path.read_text()
    assert "nbgrader will not work correctly" not in log_text, log_text
    assert "Traceback" not in log_text, log_text
