"""Fixtures shared by the test files.

``make test`` runs pytest with ``-n auto --dist loadscope`` (``pyproject.toml``): each test file,
and each notebook's cells, stay on one pytest-xdist worker. The grading tests of several files
share one autograded class (``tests/grading_fixtures.py``), built once for all workers.
"""

from __future__ import annotations

from tests.grading_fixtures import graded_class, stock_class  # noqa: F401 - fixtures for every test file
