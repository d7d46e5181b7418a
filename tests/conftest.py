"""Fixtures shared by the test files, and how pytest-xdist may split the suite.

``make test`` runs pytest with ``-n auto --dist loadgroup`` (``pyproject.toml``): tests go to
the workers one by one, except those marked ``xdist_group``, which stay together on one worker.
"""

from __future__ import annotations

import pytest

from tests.grading_fixtures import graded_class, stock_class  # noqa: F401 - fixtures for every test file


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep each notebook's cells on one worker: nbval runs them in order in one kernel."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.xdist_group(name=f"nbval:{item.path.name}"))
