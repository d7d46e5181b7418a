"""The instructor's path, in the browser: the formgrader (Nbgrader → Formgrader in the instructor's
lab) lists every chapter with its points, and, once a class is autograded, a submission's page shows
the message of the check it failed.

The class is the suite's graded class (``tests/grading_fixtures.py``: every chapter's perfect,
blank and buggy students, and chapter 1's sample class), copied so that browsing cannot change it.
Its student ``partial`` took the softmax over the queries; the page must show the check saying so.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from course_utils.course.chapters import chapters, grade_cells, source_notebook
from tests.browser.lab import open_lab
from tests.browser.servers import Server

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

CHAPTER, STUDENT = "01_attention", "partial"
MESSAGE = "the softmax ran over the wrong axis; use dim=-1"


def points(course: Path, chapter: str) -> float:
    """The chapter's total points: the sum over its grade cells in ``solutions/``."""
    notebook = json.loads(source_notebook(chapter, course / "solutions").read_text(encoding="utf-8"))
    return sum(float(c["metadata"]["nbgrader"]["points"]) for c in grade_cells(notebook))


def number(text: str) -> str:
    """How the formgrader writes a score: ``5``, ``2.5``."""
    return f"{float(text):g}"


def open_formgrader(page: Any, server: Server) -> Any:
    """Nbgrader → Formgrader in the lab; the formgrader's frame."""
    open_lab(page, server)
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    page.locator(".lm-Menu:visible .lm-Menu-itemLabel", has_text=re.compile(r"^Formgrader$")).click()
    frame = page.frame_locator("#jp-main-dock-panel iframe").first
    frame.locator("text=Manage Assignments").first.wait_for()
    return frame


def test_formgrader_lists_chapters_with_points_and_shows_a_failing_check(
        instructor_lab: Server, instructor_course: Path, page: Any, screenshots: Path) -> None:
    frame = open_formgrader(page, instructor_lab)
    frame.locator("a", has_text="Manual Grading").first.click()  # the gradebook: scores per chapter
    rows = frame.locator("table tbody tr")
    rows.filter(has_text=CHAPTER).first.wait_for()
    expected = {c: number(str(points(instructor_course, c))) for c in chapters(instructor_course / "solutions")}
    # The rows appear first and their scores a moment later (one run read every row without one).
    deadline = time.monotonic() + 30
    while True:
        shown = {}
        for text in rows.all_inner_texts():
            cells = [c.strip() for c in text.split("\t")]
            match = re.search(r"([\d.]+) / ([\d.]+)", text)
            if cells and match:
                shown[cells[0]] = number(match.group(2))
        if len(shown) >= len(expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    page.screenshot(path=str(screenshots / "instructor-2-formgrader-chapters.png"))

    frame.locator("a", has_text=re.compile(rf"^{CHAPTER}$")).first.click()  # the assignment
    frame.locator("th", has_text="Notebook ID").wait_for()
    frame.locator("a", has_text=re.compile(rf"^{CHAPTER}$")).first.click()  # its notebook
    frame.locator("th", has_text="Submission ID").wait_for()
    row = frame.locator("table tbody tr", has=frame.locator("a.name-shown", has_text=re.compile(rf"^{STUDENT}$")))
    row.locator("a.name-hidden").click()  # "Submission #n": names are hidden until revealed
    failure = frame.get_by_text(MESSAGE).first
    failure.wait_for()
    failure.scroll_into_view_if_needed()
    body = frame.locator("body")
    page.screenshot(path=str(screenshots / "instructor-3-submission.png"))
    assert MESSAGE in body.inner_text()
    assert re.search(r"(CheckFailure|AssertionError): .*do not sum to 1 over the keys", body.inner_text())
    assert shown == expected, f"the formgrader's chapters and points: {shown}, the course's: {expected}"
