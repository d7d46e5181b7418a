"""Autograding a whole class over several worker processes, merged into one gradebook.

``python -m course_utils.course.grading <chapter|all> -j N`` uses this module. Stock ``nbgrader
autograde`` grades one submission after the other in one process; here the submissions are
handed out to ``N`` worker processes as they become free (a student stuck in a loop holds one
worker, not the batch). SQLite takes one writer at a time, so each worker grades into its own
copy of ``gradebook.db`` and into its own staging folder, and only the main process writes the
course's gradebook:

1. a worker runs nbgrader's own ``Autograde`` converter (configured exactly like ``nbgrader
   autograde``: ``nbgrader_config.py`` plus the command-line options) for one submission, with
   ``CourseDirectory.db_url`` pointing at its copy and ``CourseDirectory.autograded_directory``
   at ``.autograde-<pid>/``;
2. it reads back the rows that run wrote for that student (``student``,
   ``submitted_assignment``, ``submitted_notebook``, ``grade``, ``comment``) and returns them;
3. the main process writes them into ``gradebook.db`` in one transaction (an upsert keyed on
   nbgrader's row ids, so the rows end up exactly as the worker's run left them), then moves the
   staging folder to ``autograded/<student>/<chapter>/``.

A submission is *done* when its autograded folder holds every notebook of the chapter (what
``nbgrader autograde`` itself checks before skipping one), so an interrupted run (Ctrl-C, a
killed worker, a power cut) loses nothing already merged, never leaves a half-written
gradebook (one transaction per submission), and a re-run grades only what is missing.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Gradebook tables that hold one student's grading of one assignment, parents first.
SUBMISSION_TABLES = ("student", "submitted_assignment", "submitted_notebook", "grade", "comment")
STAGING_PREFIX = ".autograde-"


@dataclass
class Task:
    """One submission to grade."""

    chapter: str
    student: str


@dataclass
class Outcome:
    """What a worker made of one submission."""

    task: Task
    success: bool
    rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = field(default_factory=dict)  # table -> (columns, rows)
    staging: str | None = None  # the autograded folder the worker wrote, to move into place
    log: str = ""
    error: str = ""
    seconds: float = 0.0


# --------------------------------------------------------------------------------------
# The gradebook file
# --------------------------------------------------------------------------------------


def sqlite_path(db_url: str) -> Path:
    """The file behind an ``sqlite:///`` URL (the only kind this module can copy and merge)."""
    if not db_url.startswith("sqlite:///"):
        raise ValueError(f"parallel grading needs an SQLite gradebook, not {db_url!r}; use -j 1")
    return Path(db_url.removeprefix("sqlite:///"))


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite file, even while another process writes it."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


def submission_rows(db: Path, chapter: str, student: str) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Every row of :data:`SUBMISSION_TABLES` that belongs to ``student``'s ``chapter``."""
    queries = {
        "student": "SELECT * FROM student WHERE id = :student",
        "submitted_assignment": "SELECT * FROM submitted_assignment WHERE student_id = :student AND "
                                "assignment_id IN (SELECT id FROM assignment WHERE name = :chapter)",
    }
    sub = ("SELECT id FROM submitted_assignment WHERE student_id = :student AND assignment_id IN "
           "(SELECT id FROM assignment WHERE name = :chapter)")
    queries["submitted_notebook"] = f"SELECT * FROM submitted_notebook WHERE assignment_id IN ({sub})"
    notebooks = f"SELECT id FROM submitted_notebook WHERE assignment_id IN ({sub})"
    queries["grade"] = f"SELECT * FROM grade WHERE notebook_id IN ({notebooks})"
    queries["comment"] = f"SELECT * FROM comment WHERE notebook_id IN ({notebooks})"
    rows = {}
    with sqlite3.connect(db) as connection:
        for table in SUBMISSION_TABLES:
            cursor = connection.execute(queries[table], {"student": student, "chapter": chapter})
            rows[table] = ([d[0] for d in cursor.description], cursor.fetchall())
    connection.close()
    return rows


def merge_rows(db: Path, rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]]) -> None:
    """Write one submission's rows into the gradebook, all or nothing."""
    connection = sqlite3.connect(db, timeout=60, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")  # take the write lock now, not halfway through
        for table in SUBMISSION_TABLES:
            columns, values = rows.get(table, ([], []))
            if not values:
                continue
            names = ", ".join(f'"{c}"' for c in columns)
            updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c != "id")
            connection.executemany(
                f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))}) '
                f"ON CONFLICT(id) DO UPDATE SET {updates}", values)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    finally:
        connection.close()


# --------------------------------------------------------------------------------------
# The worker side
# --------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(root: str, main_db: str, nbgrader_argv: list[str], scratch: str) -> None:
    """Start a worker: its own gradebook copy, its own staging folder, nbgrader configured."""
    import signal

    # Ctrl-C is the main process's business: it stops the pool; a worker must not die
    # halfway through writing its (throwaway) gradebook copy and leave a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from nbgrader.apps.autogradeapp import AutogradeApp

    os.chdir(root)
    # Kernels write their own start-up chatter to the worker's stderr: keep it off the terminal
    # (and the progress bar); nbgrader's log is captured per submission instead.
    sink = os.open(Path(scratch) / f"worker-{os.getpid()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    db = Path(scratch) / f"gradebook-{os.getpid()}.db"
    copy_database(Path(main_db), db)
    staging = f"{STAGING_PREFIX}{os.getpid()}"
    shutil.rmtree(Path(root) / staging, ignore_errors=True)
    app = AutogradeApp()
    app.initialize([*nbgrader_argv, f"--CourseDirectory.db_url=sqlite:///{db}",
                    f"--CourseDirectory.autograded_directory={staging}"])
    # The log is captured per submission and shown by the main process when it matters:
    # two workers writing to one terminal would bury the progress bar.
    for handler in list(app.log.handlers):
        app.log.removeHandler(handler)
    app.log.propagate = False
    _WORKER.update(app=app, db=db, staging=staging, root=Path(root))


def _grade_one(task: Task) -> Outcome:
    """Grade one submission in this worker (nbgrader's own Autograde converter)."""
    from nbgrader.converters.autograde import Autograde
    from nbgrader.utils import temp_attrs

    app, db, staging = _WORKER["app"], _WORKER["db"], _WORKER["staging"]
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    app.log.addHandler(handler)
    start = time.monotonic()
    error = ""
    try:
        with temp_attrs(app.coursedir, assignment_id=task.chapter, student_id=task.student):
            converter = Autograde(coursedir=app.coursedir, parent=app)
            converter.force = True  # the main process decided this one needs grading
            converter.start()
        success = True
    except BaseException:  # noqa: BLE001 - nbgrader raises bare Exceptions; the batch goes on
        success = False
        error = traceback.format_exc()
    finally:
        app.log.removeHandler(handler)
    folder = _WORKER["root"] / staging / task.student / task.chapter
    return Outcome(task, success and folder.is_dir(), submission_rows(db, task.chapter, task.student),
                   str(folder) if folder.is_dir() else None, buffer.getvalue(), error,
                   time.monotonic() - start)


# --------------------------------------------------------------------------------------
# The main side
# --------------------------------------------------------------------------------------


def autograded_folder(coursedir: Any, chapter: str, student: str) -> Path:
    return Path(coursedir.format_path(coursedir.autograded_directory, student, chapter))


def is_done(coursedir: Any, chapter: str, student: str, notebooks: Sequence[str]) -> bool:
    """nbgrader's own test for skipping a submission: every notebook autograded, and the
    submission not newer (``timestamp.txt``) than the autograded copy."""
    dest = autograded_folder(coursedir, chapter, student)
    if not all((dest / f"{name}.ipynb").is_file() for name in notebooks):
        return False
    source = Path(coursedir.format_path(coursedir.submitted_directory, student, chapter))
    new, old = coursedir.get_existing_timestamp(str(source)), coursedir.get_existing_timestamp(str(dest))
    return not (new is not None and old is not None and new > old)


def install(outcome: Outcome, coursedir: Any) -> None:
    """Make one worker's result part of the course: gradebook first, then the folder.

    In this order, a crash in between leaves a graded submission without its autograded
    folder, which the next run simply grades again; never a folder without its grades.
    """
    merge_rows(sqlite_path(coursedir.db_url), outcome.rows)
    dest = autograded_folder(coursedir, outcome.task.chapter, outcome.task.student)
    if not outcome.success:
        # As stock nbgrader does: a submission it failed on has no autograded copy left.
        shutil.rmtree(dest, ignore_errors=True)
    elif outcome.staging:
        dest.parent.mkdir(parents=True, exist_ok=True)
        old = dest.with_name(f"{dest.name}.old-{os.getpid()}")
        if dest.exists():
            dest.rename(old)
        shutil.move(outcome.staging, dest)
        shutil.rmtree(old, ignore_errors=True)


def clean_staging(root: Path) -> None:
    """Remove staging folders left behind by an interrupted run."""
    for path in root.glob(f"{STAGING_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


@dataclass
class Batch:
    """The result of :func:`grade_parallel`."""

    outcomes: list[Outcome] = field(default_factory=list)
    not_run: list[Task] = field(default_factory=list)  # left ungraded by an interrupt or dead workers
    interrupted: bool = False


def grade_parallel(root: Path, coursedir: Any, tasks: Iterable[Task], jobs: int,
                   nbgrader_argv: Sequence[str], progress: bool = True) -> Batch:
    """Grade ``tasks`` over ``jobs`` worker processes; merge each result as it arrives."""
    from tqdm import tqdm

    pending = list(tasks)
    batch = Batch()
    main_db = sqlite_path(coursedir.db_url)
    clean_staging(root)
    bar = tqdm(total=len(pending), unit="submission", disable=not progress or not pending,
               file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
    attempts = 0
    with tempfile.TemporaryDirectory(prefix="grading-") as scratch:
        try:
            # A worker that dies (killed, out of memory) breaks the whole pool: start a new one
            # for what is left, once; nothing merged so far is affected.
            while pending and attempts < 2:
                if attempts:
                    bar.write(f"A worker process died; starting new workers for the {len(pending)} "
                              f"submission(s) left.", file=sys.stderr)
                attempts += 1
                pending = _run_pool(root, main_db, pending, jobs, list(nbgrader_argv), scratch, coursedir,
                                    batch, bar)
        except KeyboardInterrupt:
            batch.interrupted = True
        finally:
            bar.close()
            clean_staging(root)
    done = {(o.task.chapter, o.task.student) for o in batch.outcomes}
    batch.not_run = [t for t in pending if (t.chapter, t.student) not in done]
    return batch


def _run_pool(root: Path, main_db: Path, tasks: list[Task], jobs: int, argv: list[str], scratch: str,
              coursedir: Any, batch: Batch, bar: Any) -> list[Task]:
    """One pool's life; returns the tasks it did not finish (its workers died)."""
    import multiprocessing

    left = list(tasks)
    # spawn, not fork: the main process holds SQLite connections and tqdm's thread.
    context = multiprocessing.get_context("spawn")
    executor = ProcessPoolExecutor(max_workers=max(1, min(jobs, len(tasks))), mp_context=context,
                                   initializer=_worker_init, initargs=(str(root), str(main_db), argv, scratch))
    futures: dict[Future[Outcome], Task] = {executor.submit(_grade_one, t): t for t in tasks}
    try:
        while futures:
            finished, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in finished:
                task = futures.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    continue
                install(outcome, coursedir)
                batch.outcomes.append(outcome)
                left.remove(task)
                bar.set_postfix_str(f"{task.student}/{task.chapter}", refresh=False)
                bar.update()
    except BaseException:
        # Interrupted: drop what has not started, stop the workers (their kernels notice that
        # their parent is gone and exit); what was merged so far stays.
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        raise
    executor.shutdown(wait=True)
    return left
