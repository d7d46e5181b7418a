"""One autograded class for the whole test suite, built once even across pytest-xdist workers.

The class (:func:`build_graded_class`) holds, for every chapter, the round trip's three
students (``perfect``, ``blank``, ``buggy``) and, for chapter 01, the sample class of
``tests/test_sample_class.py`` as well (one student per thing that goes wrong in a real class).
It is graded once, by ``python -m course_utils.grading all -j 2`` (what ``make grade
CHAPTER=all`` runs), and serves the round trip, the sample class and the equality test.

:func:`build_stock_class` grades chapter 01's submissions of that class again, in a course of
their own, with stock ``nbgrader autograde`` (one process, one submission after the other): the
equality test compares the two gradebooks.

pytest-xdist runs session fixtures once per worker; :func:`built_once` makes the second worker
wait for the first one's result instead of grading the class again.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from course_utils.course import RELEASE_DIR, nbgrader_meta, release_notebook, source_notebook
from tests.support import CHAPTERS, copy_course, load_mutants, run_nbgrader

SAMPLE_CHAPTER = "01_attention"
ROUND_TRIP = ("perfect", "blank", "buggy")
#: Per-cell limit for the whole class (as an instructor would pass --Execute.timeout): the
#: slowest honest cell in quick mode takes 3 to 5 s on an idle 2-core machine (10 s and more
#: while other work runs, hence the margin), and the students whose code never returns cost
#: seconds instead of minutes.
TIMEOUT = 15
JOBS = 2
#: ``make grade``'s options for the class, and stock nbgrader's for the equality test.
GRADE_OPTIONS = (f"--Execute.timeout={TIMEOUT}", "--log-level=WARN")


def grading_env() -> dict[str, str]:
    """The environment of an instructor's shell: no COURSE_QUICK (nbgrader sets its own)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("COURSE_QUICK", None)
    return env


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str,
               build: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """``build(folder)`` once per test session, shared by every xdist worker; its JSON result.

    The first worker to get here builds under an exclusive file lock; the others wait on the
    lock and read what it wrote. A build that raised leaves no result, so each test that needs
    it fails with the same error instead of passing on a half-built class.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # each worker has its own basetemp; their parent is shared
    folder, result = base / name, base / f"{name}.json"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            failed = base / f"{name}.failed"
            if failed.exists():
                pytest.fail(f"building {name} failed in another test:\n{failed.read_text()}")
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                result.write_text(json.dumps(build(folder)))
            except BaseException as error:
                failed.write_text(repr(error))
                raise
    return folder, json.loads(result.read_text())


# --------------------------------------------------------------------------------------
# The submissions
# --------------------------------------------------------------------------------------


def solution_answers(course: Path, chapter: str) -> dict[str, str]:
    """Grade id -> the solution's source, for every exercise cell of ``chapter``."""
    return {nbgrader_meta(c)["grade_id"]: c.source
            for c in nbformat.read(source_notebook(chapter, course / "solutions"), as_version=4).cells
            if nbgrader_meta(c).get("solution")}


def round_trip_submission(course: Path, chapter: str, student: str) -> nbformat.NotebookNode:
    """The release with the exercise cells filled in: the solution, nothing, or one bug."""
    notebook = nbformat.read(release_notebook(chapter, RELEASE_DIR), as_version=4)
    if student == "blank":
        return notebook
    answers = solution_answers(course, chapter)
    bug = load_mutants(chapter).BUG if student == "buggy" else None
    for cell in notebook.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
            if bug and grade_id == bug.grade_id:
                assert bug.old in cell.source, f"{chapter}: BUG.old not found in {grade_id}"
                cell.source = cell.source.replace(bug.old, bug.new)
    return notebook


def write_submission(course: Path, student: str, chapter: str, content: nbformat.NotebookNode | str | None) -> None:
    """``submitted/<student>/<chapter>/<chapter>.ipynb`` (a string: written as is; None: no file)."""
    folder = course / "submitted" / student / chapter
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        (folder / f"{chapter}.ipynb").write_text(content)
    elif content is not None:
        nbformat.write(content, folder / f"{chapter}.ipynb")


def add_sample_class(course: Path) -> None:
    """Chapter 01's sample class (``tests/test_sample_class.py``) and its broken hand-ins."""
    from tests.test_sample_class import BROKEN, STUDENTS  # the expectations live with their tests

    release = nbformat.read(release_notebook(SAMPLE_CHAPTER, RELEASE_DIR), as_version=4)
    solution = solution_answers(course, SAMPLE_CHAPTER)
    for name, student in STUDENTS.items():
        notebook = nbformat.from_dict(release)  # a deep copy
        student.make(notebook, solution)
        write_submission(course, name, SAMPLE_CHAPTER, notebook)
    for name, make in BROKEN.items():
        write_submission(course, name, SAMPLE_CHAPTER, make(release, solution))


# --------------------------------------------------------------------------------------
# The two gradings
# --------------------------------------------------------------------------------------


def grade_command(course: Path, *args: str, timeout: int = 1500) -> dict[str, Any]:
    """``python -m course_utils.grading <args>`` in ``course``: its output, status and time."""
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "course_utils.grading", *args, "--no-progress"],
                            cwd=course, env=grading_env(), capture_output=True, text=True, timeout=timeout)
    return {"output": result.stdout + result.stderr, "returncode": result.returncode,
            "seconds": time.monotonic() - start}


def build_graded_class(course: Path) -> dict[str, Any]:
    copy_course(course)
    for chapter in CHAPTERS:
        for student in ROUND_TRIP:
            if not (chapter == SAMPLE_CHAPTER and student != "buggy"):  # the sample class has them
                write_submission(course, student, chapter, round_trip_submission(course, chapter, student))
    add_sample_class(course)
    run = grade_command(course, "all", "-j", str(JOBS), *GRADE_OPTIONS)
    again = grade_command(course, "all", "-j", str(JOBS), *GRADE_OPTIONS)  # nothing left to do
    return {"first": run, "again": again}


def build_stock_class(course: Path) -> dict[str, Any]:
    """Chapter 01's submissions of the graded class, graded by stock ``nbgrader autograde``."""
    copy_course(course)
    add_sample_class(course)
    write_submission(course, "buggy", SAMPLE_CHAPTER, round_trip_submission(course, SAMPLE_CHAPTER, "buggy"))
    run_nbgrader("generate_assignment", SAMPLE_CHAPTER, "--force", cwd=course)
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", SAMPLE_CHAPTER, *GRADE_OPTIONS],
                            cwd=course, env=grading_env(), capture_output=True, text=True, timeout=1500)
    return {"output": result.stdout + result.stderr, "returncode": result.returncode,
            "seconds": time.monotonic() - start}


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The course directory of the class graded by ``make grade CHAPTER=all -j 2``, and the runs."""
    return built_once(tmp_path_factory, "graded-class", build_graded_class)


@pytest.fixture(scope="session")
def stock_class(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Chapter 01 of the same class, graded by stock ``nbgrader autograde`` one by one."""
    return built_once(tmp_path_factory, "stock-class", build_stock_class)
