"""Grading a class: stock ``nbgrader autograde`` against ``make grade -j N``, and where one
submission's time goes.

    python -m benchmarks.grading                         # 2 chapters x 20 students, -j 2, profile of every chapter
    python -m benchmarks.grading --students 10 --chapters 01_attention,03_feed_forward --jobs 2
    python -m benchmarks.grading --tiny                  # the plumbing only (2 x 2 submissions), for tests

1. **Class.** A synthetic class (``--students`` per chapter: the solution, the untouched
   release and the solution with the chapter's known bug, in turn) is written twice, into two
   course directories. One is graded as nbgrader's documentation says, ``nbgrader autograde
   <chapter>`` once per chapter (one process, one submission after the other); the other by
   ``python -m course_utils.course.grading all -j N`` (what ``make grade CHAPTER=all`` runs). Both use
   this course's ``nbgrader_config.py``. Same machine, same run, one after the other; the
   ratio is stock wall time over parallel wall time.
2. **Profile.** For every chapter, the solution's submission as autograding runs it (after
   nbgrader's sanitizing step, in quick mode: ``NBGRADER_EXECUTION=autograde``) is executed by
   nbclient once with per-cell timing: kernel start, the first code cell (imports and setup),
   grade cells (the checks), cells that train or decode (``pick(`` / ``train`` in the source,
   quick mode), every other code cell, and nbgrader's own share (one stock ``nbgrader autograde
   --student`` run's wall time minus the execution; that run follows an untimed one, so files are
   read from a warm cache as in the rest of a class).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/grading.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import footer, header, markdown_table

KINDS = ("perfect", "blank", "buggy")
TRAINING = re.compile(r"\bpick\(|\btrain")


def _env() -> dict[str, str]:
    """An instructor's shell: stock nbgrader's kernels take every core, as they do by default, and
    ``make grade -j N`` shares the cores out itself (``course_utils.course.grading.share_cores``)."""
    from course_utils.course.grading import THREAD_VARIABLES
    from tests.grading_fixtures import grading_env

    env = grading_env()
    for name in THREAD_VARIABLES:
        if name not in os.environ:
            env.pop(name, None)
    return env


def make_class(course: Path, chapters: Sequence[str], students: int) -> int:
    """A course directory with ``students`` submissions per chapter; returns how many."""
    from tests.grading_fixtures import round_trip_submission, write_submission
    from tests.support import copy_course

    course.mkdir(parents=True)
    copy_course(course)
    count = 0
    for chapter in chapters:
        for i in range(students):
            kind = KINDS[i % len(KINDS)]
            write_submission(course, f"s{i:03d}_{kind}", chapter, round_trip_submission(course, chapter, kind))
            count += 1
    return count


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds


def stock(course: Path, chapters: Sequence[str]) -> float:
    """nbgrader as documented: generate_assignment, then autograde, chapter by chapter."""
    nbgrader = [sys.executable, "-m", "nbgrader"]
    total = 0.0
    for chapter in chapters:
        total += timed([*nbgrader, "generate_assignment", chapter, "--force", "--log-level=WARN"], course)
        total += timed([*nbgrader, "autograde", chapter, "--log-level=WARN"], course)
    return total


def parallel(course: Path, jobs: int) -> float:
    return timed([sys.executable, "-m", "course_utils.course.grading", "all", "-j", str(jobs), "--no-progress",
                  "--log-level=WARN"], course)


def _scores(course: Path) -> dict[tuple[str, str], float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {(a.name, s.student.id): s.score for a in gradebook.assignments for s in a.submissions}


def profile(chapter: str, scratch: Path) -> dict[str, float]:
    """Seconds per part of one solution submission of ``chapter`` (see the module docstring)."""
    import nbformat
    from nbclient import NotebookClient

    from course_utils.course.chapters import grade_cells
    from tests.grading_fixtures import round_trip_submission, write_submission
    from tests.support import copy_course

    course = scratch / f"profile-{chapter}"
    course.mkdir()
    copy_course(course)
    write_submission(course, "perfect", chapter, round_trip_submission(course, chapter, "perfect"))
    nbgrader = [sys.executable, "-m", "nbgrader"]
    timed([*nbgrader, "generate_assignment", chapter, "--force", "--log-level=WARN"], course)
    # Once untimed first: the first submission of a chapter reads every module and data file from disk
    # (measured: chapter 9's setup cell 10.7 s cold, 1.8 s warm); a class pays that once, not per student.
    timed([*nbgrader, "autograde", chapter, "--student=perfect", "--log-level=WARN"], course)
    whole = timed([*nbgrader, "autograde", chapter, "--student=perfect", "--force", "--log-level=WARN"], course)
    # Run the notebook autograding ran (sanitized, grade cells restored) once more, timed per cell.
    path = course / "autograded" / "perfect" / chapter / f"{chapter}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    grade_ids = {id(c) for c in grade_cells(notebook)}
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    os.environ.pop("COURSE_QUICK", None)
    client = NotebookClient(notebook, timeout=600, allow_errors=True, record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    parts = dict.fromkeys(["kernel start", "imports (first cell)", "checks (grade cells)",
                           "training / decoding (quick)", "other cells"], 0.0)
    start = time.perf_counter()
    with client.setup_kernel():
        parts["kernel start"] = time.perf_counter() - start
        first = True
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            t = time.perf_counter()
            client.execute_cell(cell, index)
            seconds = time.perf_counter() - t
            if first:
                key, first = "imports (first cell)", False
            elif id(cell) in grade_ids:
                key = "checks (grade cells)"
            elif TRAINING.search(cell.source):
                key = "training / decoding (quick)"
            else:
                key = "other cells"
            parts[key] += seconds
        # Before the context's polite kernel shutdown: nbgrader's own is immediate (nbgrader_config.py).
        executed = time.perf_counter() - start
    del os.environ["NBGRADER_EXECUTION"]
    parts["nbgrader's own work"] = max(0.0, whole - executed)
    parts["total (stock, one submission)"] = whole
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    from course_utils.course.chapters import chapters as all_chapters

    parser = argparse.ArgumentParser(prog="python -m benchmarks.grading", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapters", default="01_attention,05_encoder", help="comma-separated chapter ids")
    parser.add_argument("--students", type=int, default=20, help="submissions per chapter")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for make grade")
    parser.add_argument("--profile", default="all", help="chapters to profile: 'all', 'none' or a list")
    parser.add_argument("--tiny", action="store_true", help="2 submissions of 2 chapters, one profile")
    parser.add_argument("--profile-only", action="store_true", help="skip the class: only the per-chapter profile")
    args = parser.parse_args(argv)
    header("grading", "grading", argv)
    chapters = args.chapters.split(",")
    students = 2 if args.tiny else args.students
    profiled = ([] if args.profile == "none" else all_chapters() if args.profile == "all"
                else args.profile.split(","))
    if args.tiny:
        profiled = profiled[:1]
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as scratch:
        root = Path(scratch)
        same = True
        if not args.profile_only:
            count = make_class(root / "stock", chapters, students)
            shutil.copytree(root / "stock", root / "parallel")
            seconds_stock = stock(root / "stock", chapters)
            seconds_parallel = parallel(root / "parallel", args.jobs)
            same = _scores(root / "stock") == _scores(root / "parallel")
            print(markdown_table(
                ["class", "stock nbgrader (s)", f"make grade -j {args.jobs} (s)", "ratio", "per submission (s)",
                 "same scores"],
                [[f"{count} submissions of {', '.join(chapters)}", f"{seconds_stock:.1f}", f"{seconds_parallel:.1f}",
                  f"{seconds_stock / seconds_parallel:.2f}x",
                  f"{seconds_stock / count:.1f} / {seconds_parallel / count:.1f}", "yes" if same else "NO"]]))
        if profiled:
            print("\none solution submission per chapter, seconds (stock nbgrader, one process, after one "
                  "untimed run of the same submission):\n")
            rows = []
            for chapter in profiled:
                parts = profile(chapter, root)
                rows.append([chapter, *[f"{v:.1f}" for v in parts.values()]])
            print(markdown_table(["chapter", *parts], rows))
    footer()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
