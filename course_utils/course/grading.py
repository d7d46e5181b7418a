"""``make grade CHAPTER=<id>|all``: autograde a class over several worker processes, print the scores.

Run from the course root (where ``nbgrader_config.py`` is)::

    python -m course_utils.course.grading 01_attention            # grade new submissions, print the table
    python -m course_utils.course.grading all -j 4                # every chapter, 4 submissions at a time
    python -m course_utils.course.grading 01_attention --force    # regrade everyone (e.g. after fixing a test)
    python -m course_utils.course.grading 01_attention --force --student=alice,bob
    python -m course_utils.course.grading 01_attention --Execute.timeout=300   # any other nbgrader option

It finds every student with a submission in ``submitted/<student>/<chapter>/``, records each
chapter in the gradebook if ``nbgrader generate_assignment`` has not done so yet, grades the
submissions that have no autograded copy yet (all of them with ``--force``) with nbgrader's
own autograder over ``-j`` worker processes (:mod:`course_utils.course.grading_parallel`: each
result is merged into ``gradebook.db`` as it arrives, so an interrupted run resumes where it
stopped), then prints one row per student: the score, the maximum, the points of each grade
cell, and notes that call for a look in the formgrader (a cell that hit the time limit, a
grade cell that had to be put back, two ids that look like one student, a submission that could
not be graded and why). It exits with status 1 when a submission was left ungraded, 130 when
interrupted.

This module also holds the preprocessors that ``nbgrader_config.py`` puts into nbgrader's
pipeline: :class:`BoundedExecute` (a submission stuck in compiled code cannot stop the batch),
:class:`MissingCellsOverwriteCells` (a deleted exercise and grade cell do not fail the whole
submission, and only a grade cell the student changed is reported as changed) and the
:data:`HARMLESS_STDERR` pattern (warnings on stderr do not cost points).
See ``docs/instructors.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbformat.notebooknode import NotebookNode
from nbgrader.converters.autograde import Autograde
from nbgrader.api import MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, Execute, OverwriteCells

# What OverwriteCells (add_missing_cells=True) writes at the top of a grade cell it puts back.
MISSING_CELL_MARK = "was missing from the submission"
#: Cell metadata that MissingCellsOverwriteCells sets on a locked cell the student had changed.
RESTORED_KEY = "course_utils_restored"


# --------------------------------------------------------------------------------------
# Execution that stays bounded when a submission ignores the interrupt
# --------------------------------------------------------------------------------------


def _error_output(ename: str, evalue: str) -> NotebookNode:
    """An ``error`` output: nbgrader scores a grade cell holding one as 0, and shows it as feedback."""
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


class BoundedExecute(Execute):
    """nbgrader's ``Execute``, bounded even when student code ignores the interrupt.

    nbgrader interrupts a cell that runs past ``Execute.timeout``. A Python loop stops
    (KeyboardInterrupt) and grading goes on. A loop inside compiled code (one huge tensor
    operation, a built-in like ``sum`` over a huge range, a C extension) never sees the
    interrupt: nbclient then raises ``CellTimeoutError`` out of the whole notebook, nbgrader
    drops that student's autograded notebook, and the student has no score and no feedback.
    A kernel that dies (a crash, ``exit()``, out of memory) ends the same way.

    Here, when the kernel is still busy ``iopub_timeout`` seconds after the interrupt, it is
    stopped; the cell gets a ``CellTimeoutError`` output that says why, and every code cell
    after it gets a ``CellNotRun`` error instead of being run. An error, not nothing: nbgrader
    gives full points to a grade cell without output, so a cell that never ran must say so.
    """

    def reset_execution_trackers(self) -> None:
        super().reset_execution_trackers()
        self._timed_out = False  # the current cell passed the time limit and was interrupted
        self._stopped: str | None = None  # why the kernel is gone; later cells are not run

    async def _async_handle_timeout(self, timeout: int, cell: NotebookNode | None = None
                                    ) -> None | dict[str, Any]:
        self._timed_out = True
        reply = await super()._async_handle_timeout(timeout, cell)
        if reply is not None:
            # nbgrader's default says "No reply from kernel before timeout": say which limit.
            message = (f"this cell ran longer than the time limit of {timeout} s per cell and was "
                       f"interrupted: look for an infinite loop or a very slow computation.")
            reply["content"].update(evalue=message, traceback=[f"CellTimeoutError: {message}"])
        return reply

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> tuple[NotebookNode, Any]:
        if self._stopped is not None:
            if cell.cell_type == "code" and cell.source.strip():
                cell.outputs = [_error_output("CellNotRun", f"not run: {self._stopped}")]
            return cell, resources
        self._timed_out = False
        try:
            return super().preprocess_cell(cell, resources, index)
        except CellTimeoutError:
            if not self._timed_out:
                raise  # late output from a cell that finished in time: nbgrader's own handling
            # The interrupt did not stop the cell: stop the kernel, so that the batch goes on.
            run_sync(self._async_stop_kernel)()
            message = (f"this cell ran longer than the time limit of {self.timeout} s per cell and "
                       f"ignored the interrupt (a long computation inside compiled code, such as one "
                       f"huge tensor operation), so the grader stopped the kernel; the cells below it "
                       f"did not run.")
            cell.outputs.append(_error_output("CellTimeoutError", message))
            self._stopped = f"the grader stopped the kernel at {_describe(cell, index)}, which ran past the time limit."
        except DeadKernelError:
            message = ("the kernel died while running this cell (the code crashed the process, "
                       "called exit(), or ran out of memory); the cells below it did not run.")
            cell.outputs.append(_error_output("DeadKernelError", message))
            self._stopped = f"the kernel died at {_describe(cell, index)}."
        self.log.error("%s: %s", _describe(cell, index), self._stopped)
        return cell, resources

    async def _async_stop_kernel(self) -> None:
        """Kill the kernel process (it does not answer any more, so no polite shutdown)."""
        assert self.km is not None
        await ensure_async(self.km.shutdown_kernel(now=True))


def _describe(cell: NotebookNode, index: int) -> str:
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return f"cell {grade_id!r}" if grade_id else f"code cell {index}"


def autograde_preprocessors() -> list[Any]:
    """nbgrader's autograde pipeline with :class:`BoundedExecute` in place of ``Execute``."""
    default = list(Autograde.class_traits()["autograde_preprocessors"].default())
    assert Execute in default, "nbgrader's autograde pipeline changed: check BoundedExecute"
    return [BoundedExecute if step is Execute else step for step in default]


#: One line of a warning on stderr: Python's ``warnings`` format (``file.py:12: UserWarning:
#: message``) or a line that starts with the word "warning" (``warning: ...``, ``WARNING:root:``).
WARNING_LINE = r"(?:[^\n]*:\d+: \w*Warning: [^\n]*|(?i:warning)\b[^\n]*)"
#: stderr text made only of warnings, each with its indented source lines. nbgrader scores a
#: grade cell that wrote anything to stderr as 0; IgnorePattern (``nbgrader_config.py``) drops
#: a stderr output that matches this, so a right answer that warns keeps its points. Anchored
#: at both ends: stderr that holds anything else as well (a traceback, an error message) is
#: kept and still scores 0, as does every raised error.
HARMLESS_STDERR = rf"\A(?:{WARNING_LINE}\n?(?:[ \t]+[^\n]*\n?)*)+\Z"


class MissingCellsOverwriteCells(OverwriteCells):
    """nbgrader's ``OverwriteCells``, which also survives a deleted exercise *and* grade cell.

    With ``add_missing_cells`` nbgrader puts a deleted grade cell back right after the cell
    that precedes it in the source. When that cell was deleted too (the exercise cell, or a
    whole section), nbgrader 0.9 raises ``KeyError: 'scores_solution'`` and the student gets no
    grade at all. Here the grade cell goes after the nearest earlier source cell the submission
    still has (or first, if none), and is run and scored like any other: 0, since its exercise
    is gone.

    It also keeps nbgrader's "Attribute 'checksum' for cell ... has changed!" warning for grade
    cells a student changed. nbgrader 0.9 warns for every grade cell with hidden tests in every
    submission (its issue #1961: the gradebook's checksum is taken before the hidden tests are
    cleared from the release), which buries a real edit among false alarms. A locked cell that
    is exactly the release's version (the source with its hidden tests cleared) gets the
    source back here, as nbgrader would do after its warning; anything else goes on to
    nbgrader's own comparison and warning.
    """

    def preprocess_cell(self, cell: NotebookNode, resources: Any, cell_index: int) -> tuple[NotebookNode, Any]:
        source_cell = self._source_cell(cell)
        if source_cell is not None and source_cell.locked and cell.source != source_cell.source:
            if self._as_released(source_cell) == cell.source:
                cell.source = source_cell.source
            else:  # the student changed it: nbgrader restores it, and the table says so
                cell.metadata[RESTORED_KEY] = True
        return super().preprocess_cell(cell, resources, cell_index)

    def _source_cell(self, cell: NotebookNode) -> Any:
        grade_id = nbgrader_id(cell)
        if grade_id is None:
            return None
        try:
            return self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
        except MissingEntry:
            return None  # nbgrader's own step reports it

    def _as_released(self, source_cell: Any) -> str:
        """The source cell's text as the release has it: hidden tests cleared."""
        released = nbformat.from_dict({"cell_type": source_cell.cell_type, "source": source_cell.source,
                                       "metadata": {}})
        ClearHiddenTests(parent=self)._remove_hidden_test_region(released)
        return released.source

    def add_missing_grade_cells(self, nb: NotebookNode, resources: Any) -> tuple[NotebookNode, Any]:
        source_nb = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        source_ids = [cell.name for cell in source_nb.source_cells]
        solution_ids = {cell.name for cell in source_nb.solution_cells}
        for grade_cell in sorted(source_nb.grade_cells, key=lambda c: source_ids.index(c.name)
                                 if c.name in source_ids else len(source_ids)):
            present = {nbgrader_id(cell): i for i, cell in enumerate(nb.cells) if nbgrader_id(cell)}
            if grade_cell.name in present or grade_cell.name not in source_ids:
                continue
            self.log.warning("Missing grade cell %s encountered, adding to notebook", grade_cell.name)
            position = source_ids.index(grade_cell.name)
            earlier = [present[i] for i in source_ids[:position] if i in present]
            cell = self.missing_cell_transform(source_nb.source_cells[position], grade_cell.max_score,
                                               is_solution=grade_cell.name in solution_ids)
            nb.cells.insert(max(earlier) + 1 if earlier else 0, cell)
        return nb, resources


def nbgrader_id(cell: Any) -> str | None:
    """A cell's nbgrader ``grade_id`` (set on every locked, exercise or grade cell)."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def sanitize_preprocessors() -> list[Any]:
    """nbgrader's sanitizing pipeline with :class:`MissingCellsOverwriteCells`."""
    default = list(Autograde.class_traits()["sanitize_preprocessors"].default())
    assert OverwriteCells in default, "nbgrader's sanitize pipeline changed: check MissingCellsOverwriteCells"
    return [MissingCellsOverwriteCells if step is OverwriteCells else step for step in default]


# --------------------------------------------------------------------------------------
# The score table
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    """One student's result for one chapter, as the table shows it."""

    student: str
    score: float | None = None  # None: no grades in the gradebook
    max_score: float | None = None
    cells: dict[str, float | None] = field(default_factory=dict)  # grade id -> points
    notes: list[str] = field(default_factory=list)


def course_directory(root: Path) -> Any:
    """nbgrader's ``CourseDirectory`` for ``root``, configured by its ``nbgrader_config.py``."""
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    if (root / "nbgrader_config.py").is_file():
        config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    return CourseDirectory(config=config, root=str(root))


def submitted_students(coursedir: Any, chapter: str) -> list[str]:
    """Students with a folder ``submitted/<student>/<chapter>/``, sorted."""
    pattern = Path(coursedir.format_path(coursedir.submitted_directory, "*", chapter))
    return sorted(p.parent.name for p in pattern.parent.parent.glob(f"*/{pattern.name}") if p.is_dir())


def _grade_ids_in_order(coursedir: Any, chapter: str, notebook: str, known: list[str]) -> list[str]:
    """Grade ids in the order of the source notebook (the gradebook keeps no order)."""
    path = Path(coursedir.format_path(coursedir.source_directory, ".", chapter)) / f"{notebook}.ipynb"
    order: list[str] = []
    if path.is_file():
        for cell in nbformat.read(path, as_version=4).cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if grade_id in known and grade_id not in order:
                order.append(grade_id)
    return order + sorted(set(known) - set(order))


def _notes(autograded: Path) -> list[str]:
    """What an instructor should look at in an autograded notebook, e.g. ``time limit: sdpa_check``."""
    found: dict[str, list[str]] = {"time limit": [], "kernel died": [], "grade cell put back": [],
                                   "edited cell restored": []}
    notebook = nbformat.read(autograded, as_version=4)
    for index, cell in enumerate(notebook.cells):
        name = _describe(cell, index).removeprefix("cell ").strip("'")
        if cell.get("metadata", {}).get(RESTORED_KEY):
            found["edited cell restored"].append(name)
        if cell.cell_type != "code":
            continue
        enames = {o.get("ename") for o in cell.get("outputs", []) if o.get("output_type") == "error"}
        if "CellTimeoutError" in enames:
            found["time limit"].append(name)
        if "DeadKernelError" in enames:
            found["kernel died"].append(name)
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade") and MISSING_CELL_MARK in cell.source:
            found["grade cell put back"].append(name)
    return [f"{what}: {', '.join(names)}" for what, names in found.items() if names]


def _why_not_graded(coursedir: Any, chapter: str, student: str, notebooks: list[str]) -> str:
    """The note for a submission without an autograded notebook."""
    folder = Path(coursedir.format_path(coursedir.submitted_directory, student, chapter))
    missing = [f"{name}.ipynb" for name in notebooks if not (folder / f"{name}.ipynb").is_file()]
    if missing:
        # nbgrader's own message here ("did you forget to run generate_assignment?") misleads.
        found = ", ".join(sorted(p.name for p in folder.glob("*.ipynb"))) or "no notebook"
        return f"NOT GRADED: no {', '.join(missing)} in its folder (found: {found}); rename it"
    return "NOT GRADED: see nbgrader's log above"


def score_table(root: Path, chapter: str) -> tuple[list[str], list[tuple[str, float]], list[Row]]:
    """Read the gradebook: notebook names, grade cells with their points, one row per student."""
    from nbgrader.api import Gradebook, MissingEntry

    coursedir = course_directory(root)
    students = submitted_students(coursedir, chapter)
    rows = [Row(student) for student in students]
    columns: list[tuple[str, float]] = []
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        assignment = gradebook.find_assignment(chapter)
        notebooks = sorted(nb.name for nb in assignment.notebooks)
        for notebook in notebooks:
            cells = {c.name: c.max_score for c in gradebook.find_notebook(notebook, chapter).grade_cells}
            columns += [(g, cells[g]) for g in _grade_ids_in_order(coursedir, chapter, notebook, list(cells))]
        for row in rows:
            try:
                submission = gradebook.find_submission(chapter, row.student)
            except MissingEntry:
                # nbgrader records nothing for a folder without any notebook in it.
                row.notes.append(_why_not_graded(coursedir, chapter, row.student, notebooks))
                continue
            row.max_score = submission.max_score
            graded = True
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    ran = grade.auto_score is not None or grade.manual_score is not None
                    row.cells[grade.name] = grade.score if ran else None
                path = Path(coursedir.format_path(coursedir.autograded_directory, row.student, chapter))
                autograded = path / f"{notebook.name}.ipynb"
                if autograded.is_file():
                    row.notes += _notes(autograded)
                else:
                    graded = False
            if graded:
                row.score = submission.score
            else:
                row.notes.append(_why_not_graded(coursedir, chapter, row.student, notebooks))
    return notebooks, columns, rows


def format_table(columns: list[tuple[str, float]], rows: list[Row]) -> str:
    """A plain-text table: student, score, max, the points of each grade cell, notes."""

    def number(x: float | None) -> str:
        return "-" if x is None else f"{x:g}"

    header = ["student", "score", "max", *[f"{name} ({number(points)})" for name, points in columns], "notes"]
    body = [[row.student, number(row.score), number(row.max_score),
             *[number(row.cells.get(name)) for name, _ in columns], "; ".join(row.notes)] for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for line in [header, *body]:
        # Text columns flush left, numbers flush right, notes unpadded at the end.
        cells = [line[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(line[1:-1], widths[1:])]
        lines.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


def default_jobs() -> int:
    """The cores this process may use (a container's CPU limit counts, where it shows)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


#: The thread-count variables torch (OpenMP, MKL) reads when a kernel imports it.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def share_cores(jobs: int, environ: dict[str, str] | None = None) -> int:
    """Give each of ``jobs`` concurrent kernels its share of the cores; the threads each gets.

    torch starts one compute thread per core in every kernel, and OpenMP threads spin while they
    wait: ``-j 2`` on 2 cores would run 4 spinning threads on 2 cores, and a small model's step
    took 3 to 20 times as long (measured on 2 cores; a 40-step training cell of chapter 6 went from
    0.5 s to 12 s). A thread count the instructor set in the environment is kept.
    """
    environ = os.environ if environ is None else environ
    if environ.get("OMP_NUM_THREADS"):
        return int(environ["OMP_NUM_THREADS"])
    threads = max(1, default_jobs() // max(1, jobs))
    for name in THREAD_VARIABLES:
        environ.setdefault(name, str(threads))
    return threads


def _in_gradebook(root: Path, chapter: str) -> bool:
    from nbgrader.api import Gradebook, MissingEntry

    coursedir = course_directory(root)
    if coursedir.db_url.startswith("sqlite:///") and not Path(coursedir.db_url.removeprefix("sqlite:///")).is_file():
        return False
    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        try:
            return bool(gradebook.find_assignment(chapter).notebooks)
        except MissingEntry:
            return False


def record_chapters(root: Path, chapters: list[str], nbgrader_argv: list[str]) -> bool:
    """``nbgrader generate_assignment --force`` for each chapter, in this process, into a
    throwaway release folder: the gradebook learns the grade cells, notebooks/ is untouched."""
    import tempfile

    from nbgrader.apps.generateassignmentapp import GenerateAssignmentApp
    from nbgrader.converters.generate_assignment import GenerateAssignment
    from nbgrader.utils import temp_attrs

    ok = True
    # nbgrader's own SQLAlchemy warnings on recording an assignment are noise to an instructor.
    with tempfile.TemporaryDirectory(prefix="release-") as release, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = GenerateAssignmentApp()
        app.initialize([*nbgrader_argv, f"--CourseDirectory.release_directory={release}"])
        for chapter in chapters:
            print(f"{chapter} is not in the gradebook yet: recording it (nbgrader generate_assignment).",
                  flush=True)
            with temp_attrs(app.coursedir, assignment_id=chapter):
                converter = GenerateAssignment(coursedir=app.coursedir, parent=app)
                converter.force = True
                try:
                    converter.start()
                except Exception as error:  # noqa: BLE001 - reported; the other chapters go on
                    print(f"could not record {chapter}: {error}", file=sys.stderr)
                    ok = False
    return ok


def _unreadable(folder: Path, notebooks: list[str]) -> list[str]:
    """Notes for submitted notebooks that nbformat cannot read (not JSON, say)."""
    notes = []
    for name in notebooks:
        path = folder / f"{name}.ipynb"
        if path.is_file():
            try:
                nbformat.read(path, as_version=4)
            except Exception as error:  # noqa: BLE001 - whatever the reason, it cannot be graded
                text = str(error).strip().splitlines()
                notes.append(f"NOT GRADED: {path.name} is not a readable notebook "
                             f"({(text[0] if text else type(error).__name__)[:80]}); ask for the file again")
    return notes


def duplicate_ids(students: list[str]) -> dict[str, list[str]]:
    """Students whose ids differ only in case or surrounding spaces: most likely one person."""
    groups: dict[str, list[str]] = {}
    for student in students:
        groups.setdefault(student.strip().casefold(), []).append(student)
    return {s: [o for o in group if o != s] for group in groups.values() if len(group) > 1 for s in group}


def _chapter_notebooks(coursedir: Any, chapter: str) -> list[str]:
    from nbgrader.api import Gradebook

    with Gradebook(coursedir.db_url, coursedir.course_id) as gradebook:
        return sorted(nb.name for nb in gradebook.find_assignment(chapter).notebooks)


def main(argv: list[str] | None = None) -> int:
    from course_utils.course import grading_parallel as parallel
    from course_utils.course.chapters import chapters as course_chapters

    parser = argparse.ArgumentParser(
        prog="python -m course_utils.course.grading",
        description="Autograde a chapter (or all of them) for every student in submitted/, over "
                    "several worker processes, and print the score table. Other options (e.g. "
                    "--Execute.timeout=300, --log-level=WARN) are passed on to nbgrader's autograder.")
    parser.add_argument("chapter", help="the assignment id, e.g. 01_attention, or 'all'")
    parser.add_argument("-j", "--jobs", type=int, default=default_jobs(),
                        help="worker processes (default: the number of cores, here %(default)s)")
    parser.add_argument("--force", action="store_true", help="regrade submissions already autograded")
    parser.add_argument("--student", default=None, help="grade only these students (comma-separated ids)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args, nbgrader_options = parser.parse_known_args(argv)
    if args.jobs < 1:
        parser.error("-j must be at least 1")
    os.environ.pop("COURSE_QUICK", None)  # nbgrader's NBGRADER_EXECUTION alone selects quick mode
    root = Path.cwd()
    coursedir = course_directory(root)
    source_root = Path(coursedir.format_path(coursedir.source_directory, ".", "x")).parent
    if args.chapter == "all":
        chapter_ids = course_chapters(source_root) if source_root.is_dir() else []
    else:
        chapter_ids = [args.chapter]
    for chapter in chapter_ids:
        if not Path(coursedir.format_path(coursedir.source_directory, ".", chapter)).is_dir():
            parser.error(f"no chapter {chapter!r}: {source_root / chapter} does not exist "
                         f"(run from the course root).")
    wanted = set(args.student.split(",")) if args.student else None
    students = {c: [s for s in submitted_students(coursedir, c) if wanted is None or s in wanted]
                for c in chapter_ids}
    chapters = [c for c in chapter_ids if students[c]]
    if not chapters:
        where = Path(coursedir.format_path(coursedir.submitted_directory, "<student>", "<chapter>"))
        print(f"No submissions for {args.chapter}: put each one at {where.relative_to(root)}/<chapter>.ipynb "
              f"(see docs/instructors.md).", file=sys.stderr)
        return 1

    missing = [c for c in chapters if not _in_gradebook(root, c)]
    if missing and not record_chapters(root, missing, nbgrader_options):
        return 1

    tasks, skipped = [], 0
    for chapter in chapters:
        notebooks = _chapter_notebooks(coursedir, chapter)
        for student in students[chapter]:
            if args.force or not parallel.is_done(coursedir, chapter, student, notebooks):
                tasks.append(parallel.Task(chapter, student))
            else:
                skipped += 1
    jobs = max(1, min(args.jobs, len(tasks)))
    print(f"Autograding {len(tasks)} submission(s) of {', '.join(chapters)} with {jobs} worker process(es)"
          + (f"; {skipped} already graded, skipped (--force regrades them)" if skipped else "") + ".",
          flush=True)
    share_cores(jobs)  # the workers' kernels inherit it
    start = time.monotonic()
    batch = parallel.grade_parallel(root, coursedir, tasks, jobs, nbgrader_options,
                                    progress=not args.no_progress)
    seconds = time.monotonic() - start
    for outcome in batch.outcomes:
        if not outcome.success:  # nbgrader's own account of why, as `nbgrader autograde` prints it
            print(f"\n--- nbgrader's log for {outcome.task.student}/{outcome.task.chapter} (not graded) ---\n"
                  f"{outcome.log.rstrip()}\n{outcome.error.rstrip()}", file=sys.stderr)
    if tasks:
        print(f"Graded {len(batch.outcomes)} of {len(tasks)} submission(s) in {seconds:.0f} s with {jobs} "
              f"worker(s).", flush=True)

    ungraded: list[str] = []
    not_run = {(t.chapter, t.student) for t in batch.not_run}
    for chapter in chapters:
        _, columns, rows = score_table(root, chapter)
        duplicates = duplicate_ids([row.student for row in rows])
        notebooks = _chapter_notebooks(coursedir, chapter)
        for row in rows:
            if row.student in duplicates:
                row.notes.append(f"same student as {', '.join(map(repr, duplicates[row.student]))}? "
                                 f"(the ids differ only in case or spaces; each was graded)")
            folder = Path(coursedir.format_path(coursedir.submitted_directory, row.student, chapter))
            unreadable = _unreadable(folder, notebooks) if row.score is None else []
            if unreadable:
                row.notes = [n for n in row.notes if not n.startswith("NOT GRADED")] + unreadable
            if (chapter, row.student) in not_run:
                row.notes = [n for n in row.notes if not n.startswith("NOT GRADED")]
                row.notes.append("NOT GRADED: not reached before the run stopped; run again")
        print()
        print(f"Scores for {chapter} ({len(rows)} student(s)):")
        print(format_table(columns, rows))
        ungraded += [f"{row.student}/{chapter}" for row in rows if row.score is None and row.student in students[chapter]]
    if batch.interrupted:
        print(f"\nInterrupted: {len(batch.outcomes)} submission(s) graded and saved, {len(batch.not_run)} "
              f"left. Run the same command again to grade only those.", file=sys.stderr)
        return 130
    if ungraded:
        print(f"\n{len(ungraded)} submission(s) not graded: {', '.join(ungraded)}. The notes (and nbgrader's "
              f"log above) say why; fix the cause, then run this command again.", file=sys.stderr)
        return 1
    chapter_word = chapters[0] if len(chapters) == 1 else "<chapter>"
    print(f"\nNext: nbgrader generate_feedback {chapter_word}; nbgrader export (grades.csv).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
