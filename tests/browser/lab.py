"""What a person does in JupyterLab, as Playwright calls: open a notebook from the file browser,
put code into a cell, run it, read its output, save, take a screenshot.

Selectors are JupyterLab 4's own CSS classes (``jp-DirListing-item``, ``jp-Cell``, ...). The
student's lab draws every cell (``windowingMode: none`` in ``lab/student/settings``), so a cell
far down a notebook is in the page and its text can be read.

Two facts of JupyterLab 4.6 decide how a cell is run here, both found when a run "never started"
(its prompt stayed ``[ ]``):

- JupyterLab runs a code cell only if the notebook's session already has a kernel
  (``CodeCell.execute`` returns without a word otherwise, and the prompt stays ``[ ]``);
- the toolbar's kernel indicator (``.jp-Notebook-ExecutionIndicator``) starts out as
  ``data-status="idle"`` before any kernel exists, so waiting for it proves nothing at first.

So a notebook counts as ready when the status bar's kernel item reads ``<kernel name> | Idle``
(JupyterLab's own ``kernelDisplayStatus``: a kernel exists, its websocket is connected and it is
idle); every run waits for that, selects the cell by its prompt, presses the toolbar's Run button
(no keystroke that could land in another cell or an editor) and checks that the run started.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.servers import Server

#: Playwright's per-action limit, in ms: the machine may be busy with the rest of the suite.
TIMEOUT_MS = 60_000
#: Seconds a notebook's kernel may take to start and connect (2 busy cores: usually 2 to 5).
KERNEL_SECONDS = 90
#: Seconds between pressing Run and the prompt showing ``[*]`` or a new number.
START_SECONDS = 15
#: The main area's current tab.
CURRENT_TAB = "#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current"
#: The status bar's kernel item once the current notebook's kernel is connected and idle.
KERNEL_IDLE = re.compile(r"^(?!No Kernel).+ \| Idle$")
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


def open_from_file_browser(page: Any, *path: str, kernel: bool = True) -> "Notebook":
    """Double-click each part of ``path`` in the file browser, from the workspace's top folder.

    With ``kernel``, wait until the notebook's kernel is connected and idle, as a student waits
    for the status bar's "Idle" before running a cell.
    """
    for attempt in range(3):
        page.locator(".jp-FileBrowser .jp-BreadCrumbs-home").click()
        try:
            for part in path:
                page.locator(".jp-DirListing-item", has=page.locator(".jp-DirListing-itemText", has_text=re.compile(
                    rf"^{re.escape(part)}$"))).dblclick(timeout=20_000)
            break
        except PlaywrightTimeout:
            # Seen once on a loaded machine: the listing re-rendered under the click for a whole
            # minute ("element was detached from the DOM, retrying"). Start again from the top, as a
            # student would click again.
            if attempt == 2:
                raise
    notebook = Notebook(page, path[-1])
    page.locator(CURRENT_TAB, has_text=path[-1]).wait_for()  # not the notebook shown before
    notebook.cells.first.wait_for()
    if kernel:
        notebook.wait_for_kernel()
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

    def kernel_status(self) -> str:
        """The status bar's kernel item, ``Python 3 (ipykernel) | Idle`` (for the current notebook)."""
        items = self.page.locator("#jp-main-statusbar .jp-StatusBar-TextItem").all_inner_texts()
        return next((t.strip() for t in items if " | " in t), "(no kernel item in the status bar)")

    def wait_for_kernel(self, timeout: float = KERNEL_SECONDS) -> None:
        """Until the notebook's kernel exists, is connected and idle (see the module's docstring)."""
        try:
            self.page.locator("#jp-main-statusbar .jp-StatusBar-TextItem", has_text=KERNEL_IDLE).wait_for(
                timeout=timeout * 1000)
        except Exception as error:  # Playwright's TimeoutError: say what the student would see
            raise AssertionError(f"{self.name}: the kernel was not idle within {timeout:.0f} s "
                                 f"(status bar: {self.kernel_status()!r})") from error

    def select(self, index: int) -> None:
        """Click the cell's prompt: the cell becomes the active one, in command mode."""
        cell = self.cell(index)
        cell.locator(".jp-InputPrompt").click()
        self.page.wait_for_function("cell => cell.classList.contains('jp-mod-active')", arg=cell.element_handle())

    def set_source(self, index: int, code: str) -> None:
        """Replace a code cell's text, as a student pasting their answer does; checks what the editor holds."""
        cell = self.cell(index)
        cell.locator(".cm-content").click()
        cell.locator(".cm-editor.cm-focused").wait_for()  # keystrokes go to this editor and no other
        self.page.keyboard.press("Control+A")
        self.page.keyboard.press("Delete")
        # insert_text sends the text as one input event, like a paste: no auto-indent on each newline.
        self.page.keyboard.insert_text(code)
        self.page.keyboard.press("Escape")  # back to command mode
        shown = "\n".join(cell.locator(".cm-line").all_text_contents())
        assert shown.strip() == code.strip(), (
            f"{self.name}: cell {index}'s editor does not hold the text typed:\n{shown}")

    def run(self, index: int, timeout: float = 120) -> str:
        """Run the cell with the toolbar's Run button and wait for its prompt's new number; its output text."""
        self.wait_for_kernel()
        before = self.prompt(index)
        self.select(index)
        self.panel.locator('.jp-Toolbar [data-command="notebook:run-cell-and-select-next"]').click()
        started = time.monotonic()
        deadline = started + timeout
        while True:
            now = self.prompt(index)
            if _DONE.match(now) and now != before:
                break
            if now == before and time.monotonic() > started + START_SECONDS:
                raise AssertionError(f"{self.name}: cell {index}'s run did not start within {START_SECONDS} s "
                                     f"(prompt {now!r}, status bar {self.kernel_status()!r})")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: cell {index} did not finish within {timeout:.0f} s "
                                     f"(prompt {now!r}, status bar {self.kernel_status()!r})")
            time.sleep(0.1)
        return self.output(index)

    def output(self, index: int) -> str:
        outputs = self.cell(index).locator(".jp-OutputArea-output")
        return "\n".join(outputs.all_inner_texts())

    def save(self) -> None:
        """The toolbar's Save button, as a student saves (the caller checks the file, written a moment later)."""
        self.panel.locator('.jp-Toolbar [data-command="docmanager:save"]').click()

    def screenshot(self, path: Path, index: int | None = None) -> None:
        """A screenshot of the page, with cell ``index`` (its output, that is) scrolled into view."""
        if index is not None:
            target = self.cell(index)
            target.scroll_into_view_if_needed()
        self.page.screenshot(path=str(path))
