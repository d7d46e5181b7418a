"""Two labs, two audiences: ``make lab`` shows a student what a student needs, and the instructor's
lab (``jupyter lab`` from the course directory, docs/instructors.md) keeps every nbgrader tool.

The student's settings live in ``lab/student/`` (read through ``JUPYTER_CONFIG_PATH``, which only
``make lab`` sets): nbgrader's formgrader, course list and "Create Assignment" are off, in the
page and on the server; the Validate button stays; JupyterLab does not ask about its news feed.
The instructor's lab is checked for the same things the other way round, which also shows that
each check here can fail.
"""

from __future__ import annotations

import time
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from tests.browser.lab import open_from_file_browser, open_lab
from tests.browser.servers import Server

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

#: The Nbgrader menu's items for instructors, as nbgrader 0.9 labels them.
INSTRUCTOR_ITEMS = {"Formgrader", "Create assignment", "Course List"}
NEWS = "official Jupyter news"
#: How long JupyterLab is given, once loaded, to raise its news question (it does so at start-up).
SETTLE_SECONDS = 3


def nbgrader_menu(page: Any) -> set[str]:
    """The items of the menu bar's Nbgrader menu (empty when there is no such menu)."""
    menu = page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader")
    if menu.count() == 0:
        return set()
    menu.click()
    items = set(page.locator(".lm-Menu:visible .lm-Menu-itemLabel").all_inner_texts())
    page.keyboard.press("Escape")
    return {item.strip() for item in items if item.strip()}


def sidebar_titles(page: Any) -> set[str]:
    """The titles of the tabs of the left and right sidebars."""
    return set(page.locator(".jp-SideBar .lm-TabBar-tab").evaluate_all(
        "tabs => tabs.map(t => t.getAttribute('title') || t.innerText)"))


def toasts(page: Any) -> list[str]:
    return page.locator(".Toastify__toast").all_inner_texts()


def status(server: Server, path: str) -> int:
    try:
        server.api(path)
        return 200
    except urllib.error.HTTPError as error:
        return error.code


def test_student_lab_shows_what_a_student_needs(student_lab: Server, page: Any, screenshots: Path) -> None:
    open_lab(page, student_lab)
    notebook = open_from_file_browser(page, "03_feed_forward", "03_feed_forward.ipynb")
    time.sleep(SETTLE_SECONDS)
    page.screenshot(path=str(screenshots / "student-0-lab.png"))
    items = nbgrader_menu(page)
    assert not items & INSTRUCTOR_ITEMS, f"instructor's tools in the student's Nbgrader menu: {items}"
    assert not [t for t in sidebar_titles(page) if "Create Assignment" in t], sidebar_titles(page)
    assert "Validate" in notebook.panel.locator(".jp-Toolbar").first.inner_text()
    assert not [t for t in toasts(page) if NEWS in t], toasts(page)
    # What the page was told: the student's defaults (a student's own settings may still change them).
    defaults = {plugin: student_lab.api(f"/lab/api/settings/{plugin}")["schema"]["properties"]
                for plugin in ("@jupyterlab/apputils-extension:notification", "@jupyterlab/notebook-extension:tracker")}
    assert defaults["@jupyterlab/apputils-extension:notification"]["fetchNews"]["default"] == "false"
    assert defaults["@jupyterlab/apputils-extension:notification"]["checkForUpdates"]["default"] is False
    assert defaults["@jupyterlab/notebook-extension:tracker"]["windowingMode"]["default"] == "none"
    # The server side of the formgrader is off too: its pages are not there.
    assert status(student_lab, "/formgrader/api/assignments") == 404


def test_instructor_lab_keeps_every_nbgrader_tool(instructor_lab: Server, page: Any, screenshots: Path) -> None:
    open_lab(page, instructor_lab)
    # Stock JupyterLab asks about its news feed soon after it starts: what the student's settings turn off.
    page.locator(".Toastify__toast", has_text=NEWS).wait_for(timeout=20_000)
    items = nbgrader_menu(page)
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    page.screenshot(path=str(screenshots / "instructor-1-nbgrader-menu.png"))
    page.keyboard.press("Escape")
    assert INSTRUCTOR_ITEMS | {"Assignment List"} <= items, items
    assert [t for t in sidebar_titles(page) if "Create Assignment" in t], sidebar_titles(page)
    assert status(instructor_lab, "/formgrader/api/assignments") == 200
