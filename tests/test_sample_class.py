"""A sample class for chapter 01_attention, graded the way an instructor grades a real one.

The suite's graded class (``tests/grading_fixtures.py``) holds one chapter-01 submission per
thing that goes wrong in a real class (``STUDENTS``), plus hand-ins nbgrader cannot grade at
all (``BROKEN``), all graded with the rest of the class by ``make grade CHAPTER=all -j 2``. The
tests check every student's score per grade cell, the message the autograded notebook shows
them, the table, that nobody is lost from the gradebook, and that a regrade with ``--force``
after an instructor's manual adjustment keeps the adjustment and changes nothing else.

The per-cell limit is cut from 120 s to ``TIMEOUT`` on the command line (as an instructor
would, ``--Execute.timeout``) so that the two students whose code never returns cost seconds.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.notebooknode import NotebookNode
from nbgrader.api import Gradebook

from course_utils.course.chapters import grade_cells, nbgrader_meta
from tests.grading_fixtures import GRADE_OPTIONS, TIMEOUT, grade_command

CHAPTER = "01_attention"
COURSE_ID = "build-the-transformer"  # nbgrader_config.py
SCORES, SDPA = "scores_solution", "sdpa_solution"  # the two exercise cells
SCORES_CHECK, SDPA_CHECK = "scores_check", "sdpa_check"  # their grade cells (2 and 3 points)


@dataclass(frozen=True)
class Student:
    """One submission: how it is made from the solution, and what grading must make of it."""

    make: Callable[[NotebookNode, dict[str, str]], None]  # edits the release copy in place
    points: dict[str, float]  # grade id -> expected points
    feedback: dict[str, str]  # grade id -> regular expression expected in that cell's output


def _answer(notebook: NotebookNode, grade_id: str, source: str) -> None:
    """Put ``source`` into the exercise cell ``grade_id``."""
    [cell] = [c for c in notebook.cells if nbgrader_meta(c).get("grade_id") == grade_id]
    cell.source = source


def _edited(source: str, old: str, new: str) -> str:
    assert old in source, f"the solution changed: {old!r} is no longer in it"
    return source.replace(old, new, 1)


def _first_line_of_solution(source: str, line: str) -> str:
    """The solution with ``line`` (indented like a function body) run first."""
    return _edited(source, "### BEGIN SOLUTION\n", f"### BEGIN SOLUTION\n    {line}\n")


def perfect(nb: NotebookNode, solution: dict[str, str]) -> None:
    _answer(nb, SCORES, solution[SCORES])
    _answer(nb, SDPA, solution[SDPA])


def partial(nb: NotebookNode, solution: dict[str, str]) -> None:
    """The scores are right; the softmax runs over the queries instead of the keys."""
    _answer(nb, SCORES, solution[SCORES])
    _answer(nb, SDPA, _edited(solution[SDPA], "dim=-1", "dim=-2"))


def blank(nb: NotebookNode, solution: dict[str, str]) -> None:
    """Handed in untouched."""


def exception(nb: NotebookNode, solution: dict[str, str]) -> None:
    """A typo that raises NameError when the function runs."""
    _answer(nb, SCORES, solution[SCORES])
    _answer(nb, SDPA, _edited(solution[SDPA], "weights @ value", "weights @ values"))


# The two students whose code never returns wait rather than spin: to the grader a cell that
# sleeps past the limit is the same as one that computes past it (the same interrupt, the same
# kernel stopped), and the suite's two cores stay free for the other tests meanwhile.

def python_loop(nb: NotebookNode, solution: dict[str, str]) -> None:
    """A loop that never ends, in Python: the interrupt stops it."""
    _answer(nb, SCORES, solution[SCORES])
    _answer(nb, SDPA, "import time\n\n" + _first_line_of_solution(
        solution[SDPA], "while True:\n        time.sleep(0.05)"))


def c_loop(nb: NotebookNode, solution: dict[str, str]) -> None:
    """Code that never sees the interrupt, as a long loop inside compiled code does (Python's
    built-in ``sum(range(10**10))`` adds in C without checking for signals): here the signal is
    blocked and the code waits, which looks the same to the grader and costs no CPU."""
    _answer(nb, SCORES, "import signal\nimport time\n\n" + _first_line_of_solution(
        solution[SCORES], "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})\n"
                          "    time.sleep(10**6)"))
    _answer(nb, SDPA, solution[SDPA])


def crash(nb: NotebookNode, solution: dict[str, str]) -> None:
    """Code that kills the kernel process."""
    _answer(nb, SCORES, solution[SCORES])
    _answer(nb, SDPA, "import os\n\n" + _first_line_of_solution(solution[SDPA], "os._exit(1)"))


def edited_test(nb: NotebookNode, solution: dict[str, str]) -> None:
    """A wrong attention_scores, and its grade cell replaced by `pass` to hide it."""
    _answer(nb, SCORES, _edited(solution[SCORES], "/ math.sqrt(d_k)", "/ d_k"))
    # The attention itself is written without attention_scores, so it stays right.
    _answer(nb, SDPA, _edited(solution[SDPA], "attention_scores(query, key)",
                              "query @ key.transpose(-2, -1) / math.sqrt(query.size(-1))"))
    [cell] = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") == SCORES_CHECK]
    cell.source = "pass"


def deleted_test(nb: NotebookNode, solution: dict[str, str]) -> None:
    """Right answers, but the first grade cell deleted."""
    perfect(nb, solution)
    nb.cells = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") != SCORES_CHECK]


def reference(nb: NotebookNode, solution: dict[str, str]) -> None:
    """The answer key instead of an answer: imported as is, and called from a wrapper."""
    _answer(nb, SCORES, "from course_utils.reference import attention_scores\n")
    _answer(nb, SDPA, "from course_utils import reference\n\n\n"
                      "def scaled_dot_product_attention(query, key, value, mask=None):\n"
                      "    return reference.scaled_dot_product_attention(query, key, value, mask)\n")


def warnings_(nb: NotebookNode, solution: dict[str, str]) -> None:
    """Right answers that warn: warnings.warn, and torch's UserWarning on copying a tensor."""
    _answer(nb, SCORES, "import warnings\n\n" + _first_line_of_solution(
        solution[SCORES], 'warnings.warn("attention_scores: my own reminder to check the shapes")'))
    _answer(nb, SDPA, _first_line_of_solution(solution[SDPA], "torch.tensor(query)"))


def deleted_exercise(nb: NotebookNode, solution: dict[str, str]) -> None:
    """The first exercise answered; the second one deleted together with its grade cell."""
    _answer(nb, SCORES, solution[SCORES])
    nb.cells = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") not in (SDPA, SDPA_CHECK)]


def stderr_warning(nb: NotebookNode, solution: dict[str, str]) -> None:
    """Right answers; the second prints a warning of its own to stderr on every call."""
    _answer(nb, SCORES, solution[SCORES])
    _answer(nb, SDPA, "import sys\n\n" + _first_line_of_solution(
        solution[SDPA], 'print("warning: no mask given, every key is attended to", file=sys.stderr)'))


NOT_IMPLEMENTED = r"is not implemented yet\b[^\n]*replace `raise NotImplementedError\(\)`"
PASSED_SCORES = r"✓ attention_scores: shapes, values"
PASSED_SDPA = r"✓ scaled_dot_product_attention: shapes, values"
TIMED_OUT = rf"CellTimeoutError: this cell ran longer than the time limit of {TIMEOUT} s per cell"

STUDENTS: dict[str, Student] = {
    "perfect": Student(perfect, {SCORES_CHECK: 2, SDPA_CHECK: 3},
                       {SCORES_CHECK: PASSED_SCORES, SDPA_CHECK: PASSED_SDPA}),
    "partial": Student(partial, {SCORES_CHECK: 2, SDPA_CHECK: 0}, {
        SCORES_CHECK: PASSED_SCORES,
        SDPA_CHECK: r"do not sum to 1 over the keys.*\n.*the softmax ran over the wrong axis; use dim=-1"}),
    "blank": Student(blank, {SCORES_CHECK: 0, SDPA_CHECK: 0},
                     {SCORES_CHECK: "attention_scores.* " + NOT_IMPLEMENTED,
                      SDPA_CHECK: "scaled_dot_product_attention.* " + NOT_IMPLEMENTED}),
    "exception": Student(exception, {SCORES_CHECK: 2, SDPA_CHECK: 0}, {
        SCORES_CHECK: PASSED_SCORES,
        SDPA_CHECK: r"scaled_dot_product_attention\(query, key, value\) raised NameError: "
                    r"name 'values' is not defined\nIt was called with: tensor of shape \(2, 3, 4, 8\)"}),
    "python_loop": Student(python_loop, {SCORES_CHECK: 2, SDPA_CHECK: 0}, {
        SCORES_CHECK: PASSED_SCORES,
        SDPA_CHECK: r"KeyboardInterrupt(.|\n)*" + TIMED_OUT + " and was interrupted: look for an infinite loop"}),
    "c_loop": Student(c_loop, {SCORES_CHECK: 0, SDPA_CHECK: 0}, {
        SCORES_CHECK: TIMED_OUT + r" and ignored the interrupt .* so the grader stopped the kernel",
        SDPA_CHECK: r"CellNotRun: not run: the grader stopped the kernel at cell 'scores_check', "
                    r"which ran past the time limit"}),
    "crash": Student(crash, {SCORES_CHECK: 2, SDPA_CHECK: 0}, {
        SCORES_CHECK: PASSED_SCORES,
        SDPA_CHECK: r"DeadKernelError: the kernel died while running this cell"}),
    "edited_test": Student(edited_test, {SCORES_CHECK: 0, SDPA_CHECK: 3}, {
        SCORES_CHECK: r"wrong values(.|\n)*Likely mistake: the scores were divided by d_k instead of sqrt\(d_k\)",
        SDPA_CHECK: PASSED_SDPA}),
    "deleted_test": Student(deleted_test, {SCORES_CHECK: 2, SDPA_CHECK: 3},
                            {SCORES_CHECK: PASSED_SCORES, SDPA_CHECK: PASSED_SDPA}),
    "reference": Student(reference, {SCORES_CHECK: 0, SDPA_CHECK: 0}, {
        SCORES_CHECK: r"this is course_utils' own implementation of attention_scores \(imported from "
                      r"course_utils.reference\); write yours in the exercise cell",
        SDPA_CHECK: r"your code calls course_utils.reference's own scaled_dot_product_attention\. "
                    r"This exercise asks you to write scaled_dot_product_attention yourself"}),
    "warnings": Student(warnings_, {SCORES_CHECK: 2, SDPA_CHECK: 3}, {
        SCORES_CHECK: PASSED_SCORES + r".*\n  note: your code raised a warning \(not an error, no points "
                      r"lost\): UserWarning: attention_scores: my own reminder",
        SDPA_CHECK: PASSED_SDPA + r"(.|\n)*note: your code raised a warning .*UserWarning: To copy "
                    r"construct from a tensor"}),
    "deleted_exercise": Student(deleted_exercise, {SCORES_CHECK: 2, SDPA_CHECK: 0}, {
        SCORES_CHECK: PASSED_SCORES,
        SDPA_CHECK: r"NameError: name 'scaled_dot_product_attention' is not defined"}),
    "stderr_warning": Student(stderr_warning, {SCORES_CHECK: 2, SDPA_CHECK: 3},
                              {SCORES_CHECK: PASSED_SCORES, SDPA_CHECK: PASSED_SDPA}),
}


def _renamed_perfect(release: NotebookNode, solution: dict[str, str]) -> NotebookNode:
    notebook = nbformat.from_dict(release)
    perfect(notebook, solution)
    return notebook


#: Hand-ins that nbgrader cannot grade, or should not without a look: student id -> the
#: content of ``submitted/<id>/01_attention/01_attention.ipynb`` (None: the folder is empty).
BROKEN: dict[str, Callable[[NotebookNode, dict[str, str]], NotebookNode | str | None]] = {
    "Perfect": _renamed_perfect,  # the same student as `perfect`, as an LMS export may spell it
    "no_notebook": lambda release, solution: None,
    "not_json": lambda release, solution: "{ this is not JSON, the upload was cut off",
}
#: What the table says about each of them.
BROKEN_NOTES = {
    "Perfect": r"same student as 'perfect'\?",
    "no_notebook": r"NOT GRADED: no 01_attention.ipynb in its folder \(found: no notebook\)",
    "not_json": r"NOT GRADED: 01_attention.ipynb is not a readable notebook",
}

# The instructor's manual review before a regrade: partial credit for the softmax's axis.
MANUAL = ("partial", SDPA_CHECK, 1.0, "Only the softmax's axis is wrong: 1 point by hand.")


@dataclass
class Run:
    """One grading of the whole class: what the command printed and what the gradebook holds."""

    output: str
    seconds: float
    scores: dict[str, dict[str, float | None]]  # student -> grade id -> auto score
    totals: dict[str, float]  # student -> submission score (manual scores included)
    students: set[str]  # every student the gradebook knows
    submissions: set[str]  # every student with a submission for CHAPTER


@dataclass
class SampleClass:
    course: Path
    first: Run  # make grade CHAPTER=all -j 2, the chapters not yet in the gradebook


def _read_gradebook(course: Path, output: str, seconds: float) -> Run:
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gradebook:
        submissions = gradebook.find_assignment(CHAPTER).submissions
        return Run(
            output=output, seconds=seconds,
            scores={s.student.id: {g.name: g.auto_score for nb in s.notebooks for g in nb.grades}
                    for s in submissions},
            totals={s.student.id: s.score for s in submissions},
            students={s.id for s in gradebook.students},
            submissions={s.student.id for s in submissions})


def _add_manual_review(course: Path) -> None:
    student, grade_id, points, comment = MANUAL
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gradebook:
        gradebook.find_grade(grade_id, CHAPTER, CHAPTER, student).manual_score = points
        gradebook.find_comment(SDPA, CHAPTER, CHAPTER, student).manual_comment = comment
        gradebook.db.commit()


@pytest.fixture(scope="module")
def sample_class(graded_class: tuple[Path, dict[str, Any]]) -> SampleClass:
    course, runs = graded_class
    return SampleClass(course, _read_gradebook(course, runs["first"]["output"], runs["first"]["seconds"]))


def _autograded(course: Path, student: str) -> NotebookNode:
    return nbformat.read(course / "autograded" / student / CHAPTER / f"{CHAPTER}.ipynb", as_version=4)


def _output_text(cell: NotebookNode) -> str:
    """What the student and the instructor read below a cell: streams and errors."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type == "error":
            parts.append("\n".join([*output.traceback, f"{output.ename}: {output.evalue}"]))
    return "\n".join(parts)


def _grade_cell(notebook: NotebookNode, grade_id: str) -> NotebookNode:
    [cell] = [c for c in grade_cells(notebook) if nbgrader_meta(c)["grade_id"] == grade_id]
    return cell


def test_the_whole_class_is_graded_in_one_run(sample_class: SampleClass,
                                              graded_class: tuple[Path, dict[str, Any]]) -> None:
    first = sample_class.first
    # nbgrader records nothing for a folder without a notebook; everyone else is in the gradebook.
    assert set(STUDENTS) | set(BROKEN) | {"buggy"} == first.submissions | {"no_notebook"}, first.output
    # One command for every chapter, over two workers, which first recorded the chapters.
    assert re.search(r"Autograding \d+ submission\(s\) of 01_attention, .* with 2 worker process\(es\)\.",
                     first.output), first.output
    assert "not in the gradebook yet" in first.output
    for student in [*STUDENTS, "Perfect"]:
        assert (sample_class.course / "autograded" / student / CHAPTER / f"{CHAPTER}.ipynb").is_file(), student
    # The two hand-ins nbgrader cannot grade fail alone, and say so in the exit status.
    assert graded_class[1]["first"]["returncode"] == 1
    assert "2 submission(s) not graded: no_notebook/01_attention, not_json/01_attention" in first.output


def test_a_rerun_grades_only_what_is_missing(graded_class: tuple[Path, dict[str, Any]]) -> None:
    again = graded_class[1]["again"]["output"]
    # Only the two that could not be graded are tried again; everyone else is kept as graded.
    assert re.search(r"Autograding 2 submission\(s\) of .*; \d+ already graded, skipped", again), again
    graded = sum(1 for _ in (graded_class[0] / "autograded").glob("*/*/*.ipynb"))
    assert f"; {graded} already graded, skipped" in again, again


@pytest.mark.parametrize("student", STUDENTS)
def test_score_and_feedback(sample_class: SampleClass, student: str) -> None:
    expected = STUDENTS[student]
    assert sample_class.first.scores[student] == expected.points
    assert sample_class.first.totals[student] == sum(expected.points.values())
    notebook = _autograded(sample_class.course, student)
    for grade_id, pattern in expected.feedback.items():
        text = _output_text(_grade_cell(notebook, grade_id))
        assert re.search(pattern, text), f"{student}/{grade_id}: expected /{pattern}/ in:\n{text}"


def test_no_grade_cell_is_scored_without_running(sample_class: SampleClass) -> None:
    """nbgrader gives full points to a grade cell without output: every one must have some."""
    for student in STUDENTS:
        for cell in grade_cells(_autograded(sample_class.course, student)):
            assert cell.outputs, f"{student}/{nbgrader_meta(cell)['grade_id']} has no output"


def test_grade_cells_are_put_back_from_the_gradebook(sample_class: SampleClass) -> None:
    hidden = "### BEGIN HIDDEN TESTS"
    edited = _grade_cell(_autograded(sample_class.course, "edited_test"), SCORES_CHECK)
    assert "checks.check_attention_scores(attention_scores)" in edited.source and hidden in edited.source
    deleted = _grade_cell(_autograded(sample_class.course, "deleted_test"), SCORES_CHECK)
    assert "was missing from the submission" in deleted.source and hidden in deleted.source
    # ... in its place, right after its exercise, so that it ran on the student's answer.
    cells = _autograded(sample_class.course, "deleted_test").cells
    ids = [nbgrader_meta(c).get("grade_id") for c in cells]
    assert ids.index(SCORES_CHECK) == ids.index(SCORES) + 1
    # The hidden tests ran too: three success lines, one per check call.
    assert _output_text(deleted).count("✓ attention_scores") == 3


def test_warnings_stay_off_stderr(sample_class: SampleClass) -> None:
    """nbgrader scores a grade cell that writes to stderr as 0."""
    for cell in grade_cells(_autograded(sample_class.course, "warnings")):
        assert not [o for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]


def _table_rows(output: str) -> dict[str, str]:
    lines = output.splitlines()
    title = lines.index(next(line for line in lines if line.startswith(f"Scores for {CHAPTER} ")))
    assert lines[title + 1].split()[:7] == ["student", "score", "max", "scores_check", "(2)", "sdpa_check", "(3)"]
    body = lines[title + 2: lines.index("", title + 2) if "" in lines[title + 2:] else None]
    return {line.split()[0]: line for line in body}


def test_the_table_shows_every_student_and_what_to_review(sample_class: SampleClass) -> None:
    rows = _table_rows(sample_class.first.output)
    assert set(rows) == set(STUDENTS) | set(BROKEN) | {"buggy"}
    for student, expected in STUDENTS.items():
        score, max_score, *cells = rows[student].split()[1:5]
        assert (float(score), float(max_score)) == (sum(expected.points.values()), 5), rows[student]
        assert [float(c) for c in cells] == [expected.points[SCORES_CHECK], expected.points[SDPA_CHECK]]
    # The Python loop also stopped the picture below the exercise, which calls it again.
    assert rows["python_loop"].endswith("time limit: sdpa_check, picture")
    assert rows["c_loop"].endswith("time limit: scores_check")
    assert rows["crash"].endswith("kernel died: sdpa_check")
    assert rows["deleted_test"].endswith("grade cell put back: scores_check")
    assert rows["deleted_exercise"].endswith("grade cell put back: sdpa_check")
    assert rows["partial"].split()[-1] == "0"  # no notes
    # The grade cell replaced by `pass`: restored, and said so; nobody else's cell counts as edited
    # (nbgrader's own warning fires for every grade cell with hidden tests: its issue #1961).
    assert rows["edited_test"].endswith("edited cell restored: scores_check"), rows["edited_test"]
    assert [s for s, row in rows.items() if "edited cell restored" in row] == ["edited_test"]
    for student, pattern in BROKEN_NOTES.items():
        assert re.search(pattern, rows[student]), rows[student]
    assert re.search(r"same student as 'Perfect'\?", rows["perfect"]), rows["perfect"]


def test_regrading_keeps_manual_scores_and_changes_nothing_else(
        stock_class: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """An instructor's review, then ``make grade ... --force`` over the same gradebook."""
    course = tmp_path / "course"
    shutil.copytree(stock_class[0], course)
    before = _read_gradebook(course, "", 0)
    _add_manual_review(course)
    student, grade_id, points, comment = MANUAL
    again = grade_command(course, CHAPTER, "--force", "-j", "2", f"--student={student},perfect", *GRADE_OPTIONS)
    assert again["returncode"] == 0, again["output"]
    assert "Autograding 2 submission(s) of 01_attention with 2 worker process(es)." in again["output"]
    after = _read_gradebook(course, again["output"], again["seconds"])
    assert after.students == before.students and after.submissions == before.submissions
    assert after.scores == before.scores
    expected_totals = dict(before.totals)
    expected_totals[student] += points - before.scores[student][grade_id]
    assert after.totals == expected_totals  # the manual score counts, and was not overwritten
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gradebook:
        grade = gradebook.find_grade(grade_id, CHAPTER, CHAPTER, student)
        assert (grade.manual_score, grade.needs_manual_grade) == (points, True)
        assert gradebook.find_comment(SDPA, CHAPTER, CHAPTER, student).manual_comment == comment
