"""notebooks/ is generated from solutions/ by nbgrader and must never drift from it; the
sources follow the nbgrader conventions that the checks and the grading rely on."""

from __future__ import annotations

import json

import nbformat
import pytest

from course_utils.course.chapters import RELEASE_DIR, grade_cells, nbgrader_meta, release_notebook, solution_cells
from course_utils.course.release import generate_release
from tests.support import CHAPTERS, copy_course, load_notebook


def _normalised(path) -> dict:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    notebook["metadata"].pop("language_info", None)  # written by whichever kernel ran last
    return notebook


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    course = copy_course(tmp_path_factory.mktemp("course"))
    generate_release(course)
    return course / "notebooks"


def test_release_has_exactly_the_chapters_of_solutions() -> None:
    released = sorted(p.name for p in RELEASE_DIR.iterdir() if p.is_dir())
    assert released == CHAPTERS, "run `make release` to regenerate notebooks/ from solutions/"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_release_in_sync_with_solutions(chapter: str, regenerated) -> None:
    fresh = _normalised(release_notebook(chapter, regenerated))
    committed = _normalised(release_notebook(chapter))
    assert committed == fresh, (
        f"notebooks/{chapter} differs from what nbgrader generates from solutions/{chapter}: "
        f"never edit notebooks/ by hand; run `make release` and commit the result")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_release_has_no_outputs_solutions_or_hidden_tests(chapter: str) -> None:
    notebook = nbformat.read(release_notebook(chapter), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs, f"{chapter}: release cell {cell.id} has outputs"
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS"):
            assert marker not in cell.source, f"{chapter}: {marker} leaked into the release"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_source_notebook_conventions(chapter: str) -> None:
    notebook = load_notebook(chapter)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    ids = [nbgrader_meta(c).get("grade_id") for c in notebook.cells if nbgrader_meta(c)]
    assert len(ids) == len(set(ids)), f"{chapter}: duplicate nbgrader grade_id"
    solutions, grades = solution_cells(notebook), grade_cells(notebook)
    assert solutions and grades, f"{chapter}: needs exercise cells and grade cells"
    for cell in solutions:
        assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source, cell.id
    for cell in grades:
        meta = nbgrader_meta(cell)
        assert meta["locked"] and meta["points"] > 0, f"{chapter}/{cell.id}: grade cells are locked, with points"
        assert "checks.check_" in cell.source, f"{chapter}/{cell.id}: grade cells call course_utils.checks"
        assert "### BEGIN HIDDEN TESTS" in cell.source, f"{chapter}/{cell.id}: needs hidden tests"
    for cell in notebook.cells:  # committed with outputs: every code cell has been run
        if cell.cell_type == "code":
            assert cell.execution_count is not None, f"{chapter}/{cell.id} was not executed (`make solutions`)"
            errors = [o for o in cell.outputs if o.output_type == "error"
                      or (o.output_type == "stream" and o.name == "stderr")]
            assert not errors, f"{chapter}/{cell.id}: committed output has an error or stderr"


def test_progress_bars_are_saved_as_a_terminal_shows_them() -> None:
    """`make solutions` keeps the last state of a tqdm bar, not its thousands of redraws."""
    from course_utils.course.release import collapse_progress_bars

    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="start\n"),
                    *(nbformat.v4.new_output("stream", name="stdout", text=f"\repoch 1: {i}/3")
                      for i in range(4)),
                    nbformat.v4.new_output("stream", name="stdout", text="\n\ndone\n"),
                    nbformat.v4.new_output("stream", name="stderr", text="a warning\n")]
    notebook.cells.append(cell)
    collapse_progress_bars(notebook)
    assert [(o.name, o.text) for o in cell.outputs] == [
        ("stdout", "start\nepoch 1: 3/3\n\ndone\n"), ("stderr", "a warning\n")]
