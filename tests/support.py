"""Shared test helpers: chapter discovery, grade-cell parsing, mutant catalogues."""

from __future__ import annotations

import ast
import importlib.util
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import nbformat

from course_utils.course.chapters import ROOT, chapters, grade_cells, source_notebook

MUTANTS_DIR = Path(__file__).parent / "mutants"
CHAPTERS = chapters()


@dataclass(frozen=True)
class Mutant:
    """A known-wrong answer that a check must reject with a message matching ``expect``."""

    name: str
    answer: Any
    expect: str  # regular expression searched in the AssertionError's message


@dataclass
class Catalogue:
    """Per check: the wrong answers it must reject and correct ones it must accept."""

    reference: Any  # the answer key, which the check must refuse
    mutants: list[Mutant] = field(default_factory=list)
    correct: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Bug:
    """One edit to a solution cell that makes a submission partly wrong (round trip)."""

    grade_id: str
    old: str
    new: str


@dataclass(frozen=True)
class CheckCall:
    """One ``checks.check_x(answer, **kwargs)`` call found in a grade cell."""

    grade_id: str
    check: str
    answer: str
    kwargs: dict[str, Any]
    hidden: bool


def load_notebook(chapter: str) -> Any:
    return nbformat.read(source_notebook(chapter), as_version=4)


def check_calls(chapter: str) -> list[CheckCall]:
    """Every check call in the chapter's grade cells, visible and hidden."""
    calls = []
    for cell in grade_cells(load_notebook(chapter)):
        grade_id = cell.metadata.nbgrader["grade_id"]
        hidden_start = cell.source.find("### BEGIN HIDDEN TESTS")
        tree = ast.parse(cell.source)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "checks"):
                offset = _offset(cell.source, node.lineno)
                calls.append(CheckCall(
                    grade_id=grade_id, check=node.func.attr, answer=ast.unparse(node.args[0]),
                    kwargs={k.arg: _argument(k.value) for k in node.keywords},
                    hidden=hidden_start != -1 and offset > hidden_start))
    return calls


def _argument(node: ast.expr) -> Any:
    """A grade-cell keyword argument: a literal, or a name of the setup cell's ``your_pieces(...)``
    (``attention=MultiHeadAttention``), which stands for the reference piece, what ``your_pieces``
    gives where the student's own notebook is not there (as while autograding)."""
    if isinstance(node, ast.Name):
        from course_utils import reference

        return getattr(reference, node.id)
    return ast.literal_eval(node)


def _offset(source: str, lineno: int) -> int:
    return sum(len(line) + 1 for line in source.split("\n")[: lineno - 1])


def load_mutants(chapter: str) -> ModuleType:
    """``tests/mutants/<chapter>.py``: ``CATALOGUE`` (check name -> Catalogue) and ``BUG``."""
    path = MUTANTS_DIR / f"{chapter}.py"
    spec = importlib.util.spec_from_file_location(f"mutants_{chapter}", path)
    assert spec and spec.loader, f"missing {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_nbgrader(*args: str, cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    """Run an nbgrader command in a course directory; fail the test with its output on error."""
    # nbgrader runs the `alembic` executable to create its gradebook: put the venv's bin on PATH.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path}
    env.pop("COURSE_QUICK", None)  # nbgrader's own NBGRADER_EXECUTION must be what selects quick mode
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"], cwd=cwd,
                            env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def copy_course(destination: Path) -> Path:
    """A throwaway course directory with this course's config and sources."""
    import shutil

    shutil.copy(ROOT / "nbgrader_config.py", destination / "nbgrader_config.py")
    shutil.copytree(ROOT / "solutions", destination / "solutions",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return destination


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
