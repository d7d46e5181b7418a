"""The equality test: ``make grade -j 2`` writes what stock ``nbgrader autograde`` writes.

Chapter 01's sample class (correct, partial, blank, loops, crash, tampered, answer-key imports,
warnings, broken hand-ins) graded by stock ``nbgrader autograde`` one submission after the other
(``stock_class``) and by ``make grade CHAPTER=all -j 2`` with the rest of the suite's class
(``graded_class``): the same scores, comments and cell results.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
from nbgrader.api import Gradebook

from course_utils.course.chapters import grade_cells, nbgrader_meta
from tests.grading_fixtures import SAMPLE_CHAPTER

COURSE_ID = "build-the-transformer"


def _gradebook_snapshot(course: Path, chapter: str) -> dict[str, Any]:
    """Everything grading wrote for ``chapter``: per student, the scores, grades and comments."""
    snapshot: dict[str, Any] = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gradebook:
        for submission in gradebook.find_assignment(chapter).submissions:
            student = submission.student
            snapshot[student.id] = {
                "student": (student.first_name, student.last_name, student.email, student.lms_user_id),
                "submission": (submission.score, submission.max_score, submission.timestamp,
                               submission.needs_manual_grade),
                "notebooks": {nb.name: {
                    "flagged": nb.flagged, "late_penalty": nb.late_submission_penalty,
                    "grades": sorted((g.name, g.auto_score, g.manual_score, g.extra_credit, g.needs_manual_grade)
                                     for g in nb.grades),
                    "comments": sorted((c.name, c.auto_comment, c.manual_comment) for c in nb.comments),
                } for nb in submission.notebooks},
            }
    return snapshot


def _outputs(cell: Any) -> list[tuple[Any, ...]]:
    """A cell's outputs; consecutive chunks of one stream joined (the kernel's flushes vary)."""
    outputs: list[tuple[Any, ...]] = []
    for o in cell.outputs:
        if o.output_type == "stream" and outputs and outputs[-1][:2] == ("stream", o.name):
            outputs[-1] = ("stream", o.name, outputs[-1][2] + o.text, None, None)
        else:
            outputs.append((o.output_type, o.get("name"), o.get("text"), o.get("ename"), o.get("evalue")))
    return outputs


def _cell_results(course: Path, chapter: str) -> dict[str, Any]:
    """Per autograded notebook, what each grade cell showed: output kinds, streams, errors."""
    results = {}
    for path in sorted((course / "autograded").glob(f"*/{chapter}/{chapter}.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        results[path.parts[-3]] = {nbgrader_meta(cell)["grade_id"]: _outputs(cell) for cell in grade_cells(notebook)}
    return results


# --------------------------------------------------------------------------------------
# Interruptions
# --------------------------------------------------------------------------------------


def test_parallel_grading_writes_what_stock_nbgrader_writes(
        graded_class: tuple[Path, dict[str, Any]], stock_class: tuple[Path, dict[str, Any]]) -> None:
    parallel, stock = graded_class[0], stock_class[0]
    expected = _gradebook_snapshot(stock, SAMPLE_CHAPTER)
    assert len(expected) >= 15, stock_class[1]["output"]  # the whole sample class is in it
    assert _gradebook_snapshot(parallel, SAMPLE_CHAPTER) == expected
    stock_cells = _cell_results(stock, SAMPLE_CHAPTER)
    assert _cell_results(parallel, SAMPLE_CHAPTER) == stock_cells
    # nbgrader's log reports a changed grade cell once: the one that was changed (edited_test's),
    # not every grade cell with hidden tests (course_utils.course.grading.MissingCellsOverwriteCells).
    changed = re.findall(r"Attribute 'checksum' for cell (\w+) has changed", stock_class[1]["output"])
    assert changed == ["scores_check"], stock_class[1]["output"]
    # Both failed on exactly the same hand-ins, and graded the others.
    assert sorted(stock_cells) == sorted(set(expected) - {"no_notebook", "not_json"})
    print(f"\nchapter 01 sample class ({len(expected)} submissions): stock nbgrader "
          f"{stock_class[1]['seconds']:.0f} s; make grade CHAPTER=all -j 2 graded the whole class in "
          f"{graded_class[1]['first']['seconds']:.0f} s")
