"""Fixtures and hooks shared by the test files.

``make test`` runs pytest with ``-n auto --dist loadscope`` (``pyproject.toml``): each test file,
and each notebook's cells, stay on one pytest-xdist worker. The grading tests of several files
share one autograded class (``tests/grading_fixtures.py``), built once for all workers; when the
run includes them, the main process starts grading it as the session starts, and their modules
are collected last (which orders a one-process run; pytest-xdist reorders modules by size).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.grading_fixtures import class_tests_last, start_in_background, stop_background
from tests.grading_fixtures import graded_class, stock_class  # noqa: F401 - fixtures for every test file

TESTS = Path(__file__).resolve().parent
#: Test files (or folders) whose run needs a graded class.
NEEDS_A_CLASS = {TESTS.parent, TESTS, TESTS / "browser", TESTS / "test_grading_round_trip.py",
                 TESTS / "test_sample_class.py", TESTS / "test_grading_equality.py",
                 TESTS / "browser" / "test_formgrader_pages.py"}


def _grades_a_class(config: pytest.Config) -> bool:
    """True when this run selects the graded-class tests (a -k or -m selection: left to them)."""
    if config.option.keyword or config.option.markexpr or config.option.collectonly:
        return False
    return any(Path(arg.split("::")[0]).resolve() in NEEDS_A_CLASS for arg in config.args)


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if not hasattr(config, "workerinput") and _grades_a_class(config):  # the main process only
        start_in_background(config._tmp_path_factory.getbasetemp())


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):
        stop_background()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    class_tests_last(items)
