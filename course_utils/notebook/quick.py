"""Quick mode: heavy cells shrink to seconds under CI, nbval and nbgrader.

Quick mode is on when ``COURSE_QUICK`` is set to anything but ``0``/empty, or when
nbgrader executes the notebook (it sets ``NBGRADER_EXECUTION`` while autograding and
validating), so that grading never waits on a long training run.
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")


def is_quick() -> bool:
    """True when notebooks should run their small, fast variant."""
    flag = os.environ.get("COURSE_QUICK", "").strip().lower()
    if flag not in ("", "0", "false", "no"):
        return True
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def pick(full: T, quick: T) -> T:
    """``quick`` in quick mode, else ``full`` (e.g. ``steps = pick(2000, 20)``)."""
    return quick if is_quick() else full


def nbgrader_running() -> str:
    """``"autograde"`` or ``"validate"`` while nbgrader executes the notebook, else ``""``."""
    return os.environ.get("NBGRADER_EXECUTION", "")
