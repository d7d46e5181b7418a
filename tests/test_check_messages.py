"""What a student sees when a check fails, in a real kernel and in nbgrader's feedback HTML.

A failing grade cell must still end in an error (nbgrader scores it 0), but show the check's
message first and none of the checker's own frames: only the student's, when their code raised.
"""

from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from course_utils.checks import CheckFailure
from course_utils.checks.harness import failure_report

ANSI = re.compile(r"\x1b\[[0-9;]*m")

UNSCALED = '''
def attention_scores(query, key):
    return query @ key.transpose(-2, -1)  # forgot / sqrt(d_k)
'''

RAISES = '''
def attention_scores(query, key):
    scores = query @ key  # forgot to transpose the key
    return scores
'''


def _run(cells: list[str]) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True)
    client.execute()
    return notebook


@pytest.fixture(scope="module")
def executed() -> nbformat.NotebookNode:
    check = "from course_utils import checks\nchecks.check_attention_scores(attention_scores)"
    return _run([UNSCALED, check, RAISES, check])


def _error(cell: nbformat.NotebookNode) -> dict:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert len(errors) == 1, f"expected the cell to end in one error, got outputs {cell.outputs}"
    return errors[0]


def test_a_failed_check_shows_its_message_first_and_no_checker_frames(executed) -> None:
    error = _error(executed.cells[1])
    assert error.ename == "CheckFailure"
    lines = ANSI.sub("", "\n".join(error.traceback)).splitlines()
    assert lines[0].startswith("CheckFailure: attention_scores(query, key) on cpu in torch.float32 has the "
                               "right shape")
    assert any("Likely mistake: the scores were not divided by sqrt(d_k)" in line for line in lines[:4])
    text = "\n".join(lines)
    for checker in ("harness.py", "attention.py", "fail(", "course_utils/checks"):
        assert checker not in text, f"the checker's own frames are shown:\n{text}"
    assert len(lines) <= 8, f"{len(lines)} lines:\n{text}"


def test_when_the_students_code_raised_its_own_frame_is_kept(executed) -> None:
    error = _error(executed.cells[3])
    text = ANSI.sub("", "\n".join(error.traceback))
    lines = text.splitlines()
    assert lines[0].startswith("CheckFailure: attention_scores(query, key) raised RuntimeError")
    assert "Hint: query @ key needs the key's last two axes swapped" in text
    assert "Where your code raised RuntimeError" in text
    assert "scores = query @ key  # forgot to transpose the key" in text, text
    assert "harness.py" not in text and "torch/nn" not in text
    assert len(lines) <= 14, text


def test_nbgrader_feedback_html_shows_the_same_lines(executed) -> None:
    from nbconvert import HTMLExporter
    from nbgrader.converters.generate_feedback import GenerateFeedback

    # The exporter configured as nbgrader's `generate_feedback` configures it (its feedback template).
    config = GenerateFeedback().config
    resources = {"nbgrader": {"notebook": "chapter", "score": 0.0, "max_score": 2.0,
                              "late_penalty": 0.0}}
    html, _ = HTMLExporter(config=config).from_notebook_node(executed, resources=resources)
    assert "the scores were not divided by sqrt(d_k)" in html
    assert "scores = query @ key  # forgot to transpose the key" in html
    assert "harness.py" not in html and "def fail(" not in html


def test_the_report_outside_a_notebook_is_the_message() -> None:
    """Plain Python (pytest, the quiet runs of the student's pieces) sees str(): the message, whose
    first line is the whole statement; the rendering adds only the name and the note."""
    try:
        try:
            raise ValueError("inner")
        except ValueError:
            raise CheckFailure("x is wrong.\nHint: fix x.")
    except CheckFailure as failure:
        lines = [ANSI.sub("", line) for line in failure_report(failure)]
    assert lines[0] == "CheckFailure: x is wrong." and lines[1] == "Hint: fix x."
    # ValueError raised here, in the test: this file is "student code" to the filter.
    assert any('raise ValueError("inner")' in line for line in lines)


def test_a_failing_cell_still_fails_when_errors_are_not_allowed() -> None:
    """What nbgrader relies on: the cell's error stops execution like any exception."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(
        UNSCALED + "\nfrom course_utils import checks\nchecks.check_attention_scores(attention_scores)")]
    with pytest.raises(CellExecutionError, match="CheckFailure"):
        NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
