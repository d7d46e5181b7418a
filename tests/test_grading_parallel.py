"""``make grade -j N`` survives interruptions, and nbgrader's rough edges are fixed.

(The equality test, ``make grade -j 2`` against stock ``nbgrader autograde``, is
``tests/test_grading_equality.py``: it needs the suite's graded class, and this file does not.)

- Ctrl-C, then a killed worker: nothing graded is lost, the gradebook stays whole, and the next
  run grades only what is left.
- nbgrader's rough edges: ``.venv/bin/nbgrader`` without an activated environment, warnings
  on stderr.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from nbgrader.api import Gradebook

from course_utils.course.grading import HARMLESS_STDERR, duplicate_ids
from tests.grading_fixtures import GRADE_OPTIONS, grading_env, round_trip_submission, write_submission
from tests.support import copy_course

COURSE_ID = "build-the-transformer"


def _children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` whose command line is a multiprocessing worker."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_interrupted_runs_lose_nothing_and_resume(tmp_path: Path) -> None:
    course = copy_course(tmp_path)
    chapter, students = "03_feed_forward", ("perfect", "blank", "buggy")
    for student in students:
        write_submission(course, student, chapter, round_trip_submission(course, chapter, student))
    command = [sys.executable, "-m", "course_utils.course.grading", chapter, "--no-progress", *GRADE_OPTIONS]
    graded = lambda: sorted(p.parts[-3] for p in (course / "autograded").glob(f"*/{chapter}/{chapter}.ipynb"))  # noqa: E731

    # 1. Ctrl-C once the first submission is in: it stays, the rest is left for later. (A
    # pytest-xdist worker ignores SIGINT, and a child inherits that: give it back its default.)
    run = subprocess.Popen([*command, "-j", "1"], cwd=course, env=grading_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for(lambda: graded() or run.poll() is not None, 300, "the first graded submission")
    run.send_signal(signal.SIGINT)
    output = run.communicate(timeout=120)[0]
    assert run.returncode == 130, output
    kept = graded()
    assert 1 <= len(kept) < len(students), output
    assert re.search(rf"Interrupted: {len(kept)} submission\(s\) graded and saved, {3 - len(kept)} left", output)
    with sqlite3.connect(course / "gradebook.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    assert not list(course.glob(".autograde-*")), "staging folders left behind"

    # 2. A worker killed halfway: a new pool takes over; only what was missing is graded.
    run = subprocess.Popen([*command, "-j", "2"], cwd=course, env=grading_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: _children(run.pid) or run.poll() is not None, 120, "a worker process")
    time.sleep(3)  # let it start on a submission
    for pid in _children(run.pid)[:1]:
        os.kill(pid, signal.SIGKILL)
    output = run.communicate(timeout=600)[0]
    assert run.returncode == 0, output
    assert "A worker process died; starting new workers for the" in output, output
    assert f"Autograding {3 - len(kept)} submission(s) of {chapter} with 2 worker process(es); " \
           f"{len(kept)} already graded, skipped" in output, output
    assert graded() == sorted(students)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gradebook:
        scores = {s.student.id: (s.score, s.max_score) for s in gradebook.find_assignment(chapter).submissions}
    assert scores["perfect"][0] == scores["perfect"][1] > 0 and scores["blank"][0] == 0
    assert 0 < scores["buggy"][0] < scores["buggy"][1]


# --------------------------------------------------------------------------------------
# nbgrader's rough edges
# --------------------------------------------------------------------------------------


def test_nbgrader_runs_without_an_activated_environment(tmp_path: Path) -> None:
    """nbgrader calls `alembic` by name; nbgrader_config.py puts the environment's bin/ on PATH."""
    course = copy_course(tmp_path)
    env = {**grading_env(), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "db", "student", "add", "alice"],
                            cwd=course, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gradebook:
        assert [s.id for s in gradebook.students] == ["alice"]


@pytest.mark.parametrize("text", [
    "/work/student.py:3: UserWarning: check the shapes\n  warnings.warn('check the shapes')\n",
    "warning: no mask given\n",
    "WARNING:root:careful\nmodule.py:9: DeprecationWarning: old\n  old()\n",
])
def test_warnings_on_stderr_are_dropped(text: str) -> None:
    assert re.search(HARMLESS_STDERR, text)


@pytest.mark.parametrize("text", [
    "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad\n",
    "wrong shape\n",
    "a.py:1: UserWarning: fine\n  f()\nbut then an error\n",
    "  indented, with no warning above it\n",
    "warnings are for later\n",
])
def test_anything_else_on_stderr_still_scores_zero(text: str) -> None:
    assert not re.search(HARMLESS_STDERR, text)


def test_duplicate_student_ids_are_flagged() -> None:
    assert duplicate_ids(["alice", "Alice", "bob", "carol ", "Carol"]) == {
        "alice": ["Alice"], "Alice": ["alice"], "carol ": ["Carol"], "Carol": ["carol "]}


def test_each_kernel_gets_its_share_of_the_cores() -> None:
    from course_utils.course.grading import default_jobs, share_cores

    environ: dict[str, str] = {}
    assert share_cores(default_jobs(), environ) == 1  # one worker per core: one thread each
    assert environ == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    environ = {}
    assert share_cores(1, environ) == default_jobs() == int(environ["OMP_NUM_THREADS"])
    environ = {"OMP_NUM_THREADS": "3"}
    assert share_cores(2, environ) == 3 and environ == {"OMP_NUM_THREADS": "3"}  # the instructor's choice is kept
