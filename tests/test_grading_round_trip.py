"""The whole nbgrader round trip for every chapter, on the suite's one graded class
(``tests/grading_fixtures.py``): three students per chapter (the solution, the untouched
release, the solution with one bug), autograded by ``make grade CHAPTER=all -j 2``, read back
from the gradebook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbgrader.api import Gradebook

from course_utils.course.chapters import grade_cells, nbgrader_meta, source_notebook
from tests.support import CHAPTERS


@pytest.fixture(scope="module")
def graded(graded_class: tuple[Path, dict[str, Any]]) -> Path:
    course, runs = graded_class
    # Not graded: only the sample class's broken hand-ins (tests/test_sample_class.py).
    assert "Traceback (most recent call last)" not in runs["first"]["output"].split("--- nbgrader's log")[0], \
        runs["first"]["output"]
    return course


def _scores(course: Path, chapter: str, student: str) -> tuple[float, float, dict[str, float]]:
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission(chapter, student)
        notebook = submission.notebooks[0]
        per_cell = {grade.name: grade.score for grade in notebook.grades}
        return submission.score, submission.max_score, per_cell


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_scores_full_marks(graded: Path, chapter: str) -> None:
    score, max_score, per_cell = _scores(graded, chapter, "perfect")
    assert max_score > 0 and score == max_score, per_cell


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_grade_cell_fails_when_left_blank(graded: Path, chapter: str) -> None:
    score, _, per_cell = _scores(graded, chapter, "blank")
    expected = {nbgrader_meta(c)["grade_id"] for c in grade_cells(
        nbformat.read(source_notebook(chapter), as_version=4))}
    assert set(per_cell) == expected
    assert score == 0 and all(v == 0 for v in per_cell.values()), per_cell
    autograded = nbformat.read(graded / "autograded" / "blank" / chapter / f"{chapter}.ipynb", as_version=4)
    for cell in grade_cells(autograded):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert errors and "not implemented yet" in errors[0].evalue, (
            f"{chapter}/{cell.id}: a blank exercise should fail its check with 'not implemented yet'")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_one_bug_scores_in_between(graded: Path, chapter: str) -> None:
    score, max_score, per_cell = _scores(graded, chapter, "buggy")
    assert 0 < score < max_score, per_cell
