"""The whole nbgrader round trip in a throwaway course directory, for every chapter:
generate the release, collect three students' submissions (the solution, the untouched
release, the solution with one bug), autograde, and read the gradebook."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from course_utils.course import grade_cells, nbgrader_meta, release_notebook, source_notebook
from tests.support import CHAPTERS, copy_course, load_mutants, run_nbgrader

STUDENTS = ("perfect", "blank", "buggy")


def _submission(course: Path, chapter: str, student: str) -> nbformat.NotebookNode:
    """What a student hands in: the release with the exercise cells filled in (or not)."""
    notebook = nbformat.read(release_notebook(chapter, course / "notebooks"), as_version=4)
    if student == "blank":
        return notebook
    answers = {nbgrader_meta(c)["grade_id"]: c.source
               for c in nbformat.read(source_notebook(chapter, course / "solutions"), as_version=4).cells
               if nbgrader_meta(c).get("solution")}
    bug = load_mutants(chapter).BUG if student == "buggy" else None
    for cell in notebook.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
            if bug and grade_id == bug.grade_id:
                assert bug.old in cell.source, f"{chapter}: BUG.old not found in {grade_id}"
                cell.source = cell.source.replace(bug.old, bug.new)
    return notebook


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    course = copy_course(tmp_path_factory.mktemp("roundtrip"))
    for chapter in CHAPTERS:
        run_nbgrader("generate_assignment", chapter, "--force", cwd=course)
        for student in STUDENTS:
            target = course / "submitted" / student / chapter / f"{chapter}.ipynb"
            target.parent.mkdir(parents=True)
            nbformat.write(_submission(course, chapter, student), target)
        run_nbgrader("autograde", chapter, "--force", cwd=course)
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
