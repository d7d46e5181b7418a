"""Browser tests: the student's JupyterLab and the instructor's formgrader in headless Chromium.

Playwright for Python drives Debian's Chromium (``apt-get install chromium chromium-driver``);
Playwright never downloads a browser of its own (``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD``, and the
browser is launched from its ``executable_path``). ``.ci/run`` installs both, so CI always runs
these tests; where Chromium or Playwright is missing they are reported as skipped, with the
command that enables them.

One student's lab (``make lab``'s command on a temporary workspace) and one instructor's lab
(``jupyter lab`` in a copy of the suite's graded class) serve every test of the session, and one
browser drives both. Every test module here is marked ``browser`` (``-m "not browser"``
deselects them) and runs on one pytest-xdist worker (``xdist_group("browser")``). Screenshots of
each step go to :data:`SCREENSHOTS` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from course_utils.course.chapters import RELEASE_DIR, ROOT
from course_utils.course.workspace import sync_workspace
from tests.browser.lab import new_tab
from tests.browser.servers import Server, make_lab_command, start_server

#: Where the tests save their screenshots, one PNG per step (git-ignored).
SCREENSHOTS = ROOT / "tests" / "browser" / "screenshots"
#: A Chromium other than the one on PATH (``chromium``), if wanted.
CHROMIUM_ENV = "COURSE_CHROMIUM"
#: What makes these tests run on a machine that skips them.
ENABLE = ("as root: apt-get install chromium chromium-driver, then "
          "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 .venv/bin/pip install -r requirements.txt "
          "(bash .ci/run does both)")
#: Chromium's switches: root needs --no-sandbox; the rest stop it calling Google on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-default-apps", "--no-first-run", "--disable-dev-shm-usage"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives JupyterLab or the formgrader in headless Chromium")


def chromium_path() -> str | None:
    return os.environ.get(CHROMIUM_ENV) or shutil.which("chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session, or a skip that says how to get one."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(f"browser tests not run: no Chromium on PATH. To run them, {ENABLE}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"browser tests not run: Playwright for Python is not installed. To run them, {ENABLE}")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test, so that a fixture can tell a failed test."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, screenshots: Path) -> Iterator[Any]:
    """A fresh tab for one test; when the test fails, a screenshot of it, named for the test."""
    tab = new_tab(browser)
    try:
        yield tab
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            tab.screenshot(path=str(screenshots / f"failed-{request.node.name}.png"))
        tab.context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def student_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace as ``make lab`` makes it: every released chapter, copied by the same code."""
    work = tmp_path_factory.mktemp("student") / "work"
    sync_workspace(RELEASE_DIR, work)
    return work


@pytest.fixture(scope="session")
def student_lab(browser: Any, student_workspace: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Server]:
    """``make lab``'s JupyterLab (its command read from the Makefile) on the temporary workspace.

    ``COURSE_WORKSPACE`` points the kernels at that workspace, so chapters that reuse a student's
    earlier pieces read them there; quick mode (``COURSE_QUICK=1``, set for the whole suite) is what
    ``COURSE_QUICK=1 make lab`` gives a student.
    """
    env, argv = make_lab_command()
    assert "--ServerApp.root_dir=work" in argv, f"make lab no longer serves work/: {argv}"
    argv = [f"--ServerApp.root_dir={student_workspace}" if a == "--ServerApp.root_dir=work" else a for a in argv]
    server = start_server(argv, cwd=ROOT, env={**env, "COURSE_WORKSPACE": str(student_workspace)},
                          scratch=tmp_path_factory.mktemp("student-lab"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def instructor_course(graded_class: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the suite's graded class (every chapter autograded), for the formgrader to browse."""
    course = tmp_path_factory.mktemp("instructor") / "course"
    shutil.copytree(graded_class[0], course, symlinks=True)
    return course


@pytest.fixture(scope="session")
def instructor_lab(browser: Any, instructor_course: Path, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Server]:
    """``jupyter lab`` started in the course directory, as docs/instructors.md says (no student settings)."""
    bin_dir = Path(sys.executable).parent
    server = start_server([str(bin_dir / "jupyter"), "lab"], cwd=instructor_course,
                          env={"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
                          unset=("JUPYTER_CONFIG_PATH",), scratch=tmp_path_factory.mktemp("instructor-lab"))
    try:
        yield server
    finally:
        server.stop()
