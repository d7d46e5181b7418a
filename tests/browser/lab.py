"""What a person does in JupyterLab, as Playwright calls: open a notebook from the file browser,
put code into a cell, run it, read its output, save, take a screenshot.

Selectors are JupyterLab 4's own CSS classes (``jp-DirListing-item``, ``jp-Cell``, ...). The
student's lab draws every cell (``windowingMode: none`` in ``lab/student/settings``), so a cell
far down a notebook is in the page and its text can be read.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.browser.servers import Server

#: Playwright's per-action limit, in ms: the machine may be busy with the rest of the suite.
TIMEOUT_MS = 60_000
#: The main area's current tab.
CURRENT_TAB = "#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current"
#: A cell's prompt once it has run: ``[3]:``.
_DONE = re.compile(r"^\[(\d+)\]:$")


def new_tab(browser: Any) -> Any:
    """A fresh browser tab with its own cookies, 1400x1000."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def open_lab(page: Any, server: Server) -> None:
    """Load JupyterLab with a fresh layout (``?reset``: no tabs restored from an earlier visit) and
    wait until its file browser lists the workspace."""
    page.goto(server.url("/lab?reset"))
    page.locator(".jp-DirListing-item").first.wait_for()


def open_from_file_browser(page: Any, *path: str) -> "Notebook":
    """Double-click each part of ``path`` in the file browser, from the workspace's top folder."""
    page.locator(".jp-FileBrowser .jp-BreadCrumbs-home").click()
    for part in path:
        page.locator(".jp-DirListing-item", has=page.locator(".jp-DirListing-itemText", has_text=re.compile(
            rf"^{re.escape(part)}$"))).dblclick()
    notebook = Notebook(page, path[-1])
    page.locator(CURRENT_TAB, has_text=path[-1]).wait_for()  # not the notebook shown before
    notebook.cells.first.wait_for()
    # A student waits for the kernel before running a cell: the toolbar's indicator says "idle".
    notebook.panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for()
    return notebook


class Notebook:
    """The notebook open in the main area, as a student sees it."""

    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.name = name
        self.panel = page.locator(".jp-NotebookPanel:visible")
        self.cells = self.panel.locator(".jp-Notebook .jp-Cell")

    def cell(self, index: int) -> Any:
        return self.cells.nth(index)

    def prompt(self, index: int) -> str:
        return self.cell(index).locator(".jp-InputPrompt").inner_text().strip()

    def set_source(self, index: int, code: str) -> None:
        """Replace a code cell's text, as a student pasting their answer does."""
        editor = self.cell(index).locator(".cm-content")
        editor.click()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.press("Delete")
        # insert_text sends the text as one input event, like a paste: no auto-indent on each newline.
        self.page.keyboard.insert_text(code)
        self.page.keyboard.press("Escape")  # back to command mode

    def run(self, index: int, timeout: float = 120) -> str:
        """Select the cell, press Shift+Enter, wait for its prompt to show a new number; its output text."""
        before = self.prompt(index)
        cell = self.cell(index)
        cell.locator(".jp-InputPrompt").click()  # selects the cell in command mode
        self.page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + timeout
        while True:
            now = self.prompt(index)
            if _DONE.match(now) and now != before:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: cell {index} did not finish within {timeout:.0f} s "
                                     f"(prompt {now!r})")
            time.sleep(0.2)
        return self.output(index)

    def output(self, index: int) -> str:
        outputs = self.cell(index).locator(".jp-OutputArea-output")
        return "\n".join(outputs.all_inner_texts())

    def save(self) -> None:
        """Ctrl+S, as a student saves (the caller checks the file, which is written a moment later)."""
        self.cell(0).click()
        self.page.keyboard.press("Escape")
        self.page.keyboard.press("Control+s")

    def screenshot(self, path: Path, index: int | None = None) -> None:
        """A screenshot of the page, with cell ``index`` (its output, that is) scrolled into view."""
        if index is not None:
            target = self.cell(index)
            target.scroll_into_view_if_needed()
        self.page.screenshot(path=str(path))
