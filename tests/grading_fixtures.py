"""One autograded class for the whole test suite, built once even across pytest-xdist workers.

The class (:func:`build_graded_class`) holds, for every chapter, the round trip's three
students (``perfect``, ``blank``, ``buggy``) and, for chapter 01, the sample class of
``tests/test_sample_class.py`` as well (one student per thing that goes wrong in a real class).
It is graded once, by ``python -m course_utils.course.grading all -j 2`` (what ``make grade
CHAPTER=all`` runs), and serves the round trip, the sample class and the equality test.

:func:`build_stock_class` grades chapter 01's submissions of that class again, in a course of
their own, with stock ``nbgrader autograde`` (one process, one submission after the other): the
equality test compares the two gradebooks.

pytest-xdist runs session fixtures once per worker; :func:`built_once` makes the second worker
wait for the first one's result instead of grading the class again. A whole-suite run does better:
:func:`start_in_background` (called by ``tests/conftest.py`` when the session starts) grades both
classes in threads of the main pytest process while the workers run every other test, and the
tests that need a class are collected last (:func:`class_tests_last`), so that nobody waits idle on
a grading that sleeps in a student's loop.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from course_utils.course.chapters import RELEASE_DIR, nbgrader_meta, release_notebook, source_notebook
from course_utils.course.grading import THREAD_VARIABLES
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
    """The environment of an instructor's shell: no COURSE_QUICK (nbgrader sets its own).

    One compute thread per kernel: the suite grades while its workers run other tests, and
    spinning OpenMP threads of several processes on 2 cores slow each other down many times over.
    """
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("COURSE_QUICK", None)
    for name in THREAD_VARIABLES:
        env.setdefault(name, "1")
    return env


#: The gradings still running (each in its own process group), stopped if the session ends first.
_RUNNING: list[subprocess.Popen] = []
_STARTING = threading.Lock()  # held while a grading starts, so that a stop cannot miss it
_STOPPED = threading.Event()


def _run(command: list[str], cwd: Path, timeout: int) -> tuple[str, int]:
    """Run ``command`` like ``subprocess.run``, in a process group that :func:`stop_background` can end."""
    with _STARTING:
        if _STOPPED.is_set():
            raise RuntimeError("the test session ended before this grading could start")
        process = subprocess.Popen(command, cwd=cwd, env=grading_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        _RUNNING.append(process)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        out, err = process.communicate()
        err += f"\n(killed after {timeout} s)"
    finally:
        _RUNNING.remove(process)
    return out + err, process.returncode


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str,
               build: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """``build(folder)`` once per test session, shared by every xdist worker; its JSON result.

    The first worker to get here (or the session's background thread) builds under an exclusive
    file lock; the others wait on the lock and read what it wrote. A build that raised leaves no
    result, so each test that needs it fails with the same error instead of passing on a
    half-built class.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # each worker has its own basetemp; their parent is shared
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _build_holding_the_lock(base, name, build)
    return base / name, json.loads((base / f"{name}.json").read_text())


def _build_holding_the_lock(base: Path, name: str, build: Callable[[Path], dict[str, Any]]) -> None:
    folder, result, failed = base / name, base / f"{name}.json", base / f"{name}.failed"
    if result.exists():
        return
    if failed.exists():
        pytest.fail(f"building {name} failed in another test:\n{failed.read_text()}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        result.write_text(json.dumps(build(folder)))
    except BaseException as error:
        failed.write_text(repr(error))
        raise


#: The modules whose tests use a graded class (collected last by :func:`class_tests_last`).
CLASS_FIXTURES = ("graded_class", "stock_class")
_THREADS: list[threading.Thread] = []


def start_in_background(base: Path) -> None:
    """Start building both classes now, in threads of this process, under their locks.

    The locks are taken before this returns (before pytest-xdist starts its workers), so a worker
    that needs a class waits for this build instead of starting its own.
    """
    for name, build in (("graded-class", build_graded_class), ("stock-class", build_stock_class)):
        lock = open(base / f"{name}.lock", "w")
        fcntl.flock(lock, fcntl.LOCK_EX)

        def run(name: str = name, build: Callable[[Path], dict[str, Any]] = build, lock: Any = lock) -> None:
            try:
                _build_holding_the_lock(base, name, build)
            except BaseException:  # noqa: BLE001 - recorded in <name>.failed for the tests that need it
                pass
            finally:
                lock.close()

        thread = threading.Thread(target=run, name=f"build {name}", daemon=True)
        thread.start()
        _THREADS.append(thread)


def stop_background() -> None:
    """End the gradings still running (a session cut short) and wait for their threads."""
    with _STARTING:
        _STOPPED.set()
        for process in list(_RUNNING):
            try:
                os.killpg(process.pid, 9)
            except ProcessLookupError:
                pass
    for thread in _THREADS:
        thread.join(timeout=60)


def class_tests_last(items: list[pytest.Item]) -> None:
    """Move every module with a test that needs a graded class to the end, in place (order kept).

    In one process (``-n 0``) the tests run in this order, so everything else runs while the classes
    are graded in the background. Under ``make test``'s pytest-xdist, ``--dist loadscope`` hands out
    the modules with the most tests first whatever this order (its ``--loadscope-reorder`` default);
    keeping the order with ``--no-loadscope-reorder`` was measured 25 s slower (the worker that waits
    early on the class leaves the cores to its grading), so the suite keeps xdist's default.
    """
    late = {item.module.__name__ for item in items
            if getattr(item, "module", None) is not None and set(CLASS_FIXTURES) & set(item.fixturenames)}
    items.sort(key=lambda item: getattr(getattr(item, "module", None), "__name__", None) in late)


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
    """``python -m course_utils.course.grading <args>`` in ``course``: its output, status and time."""
    start = time.monotonic()
    output, returncode = _run([sys.executable, "-m", "course_utils.course.grading", *args, "--no-progress"], course, timeout)
    return {"output": output, "returncode": returncode, "seconds": time.monotonic() - start}


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
    output, returncode = _run([sys.executable, "-m", "nbgrader", "autograde", SAMPLE_CHAPTER, *GRADE_OPTIONS],
                              course, 1500)
    return {"output": output, "returncode": returncode, "seconds": time.monotonic() - start}


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The course directory of the class graded by ``make grade CHAPTER=all -j 2``, and the runs."""
    return built_once(tmp_path_factory, "graded-class", build_graded_class)


@pytest.fixture(scope="session")
def stock_class(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Chapter 01 of the same class, graded by stock ``nbgrader autograde`` one by one."""
    return built_once(tmp_path_factory, "stock-class", build_stock_class)
