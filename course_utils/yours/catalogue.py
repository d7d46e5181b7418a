"""What each chapter asks the student to write, read from the course's own release notebooks.

Nothing here is listed by hand. A chapter's *pieces* are the names its grade cells pass to
``checks.check_*`` in their visible part (``checks.check_encoder_layer(EncoderLayer)``); a piece
can be reused later when ``course_utils.reference`` has an object of the same name. A chapter's
*needs* are the names its setup cell asks :func:`course_utils.yours.your_pieces` for, and the
setup cell's import statements are the names its solution cells may use. The course's release
notebook is the authority for all of this, never the student's copy: a student may edit or
delete a locked cell in JupyterLab, and the course must still know what to check.
"""

from __future__ import annotations

import ast
import functools
import json
from dataclasses import dataclass
from pathlib import Path

from course_utils.course.chapters import RELEASE_DIR, chapters, nbgrader_meta, release_notebook

HIDDEN_MARKER = "### BEGIN HIDDEN TESTS"
#: The function whose call in a setup cell lists the pieces a chapter reuses.
CALL_NAME = "your_pieces"


@dataclass(frozen=True)
class GradeCell:
    """One grade cell: its visible source (hidden tests cut off) and the pieces it checks."""

    grade_id: str
    source: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class Chapter:
    """What the course expects of one chapter's notebook."""

    id: str
    imports: str                     # the setup cell's import statements, as source
    needs: tuple[str, ...]           # names the setup cell asks your_pieces for
    solution_ids: tuple[str, ...]    # grade_ids of the exercise (solution) code cells, in order
    grade_cells: tuple[GradeCell, ...]

    @property
    def pieces(self) -> tuple[str, ...]:
        """Every name this chapter's grade cells check, in order."""
        return tuple(name for cell in self.grade_cells for name in cell.names)


def _cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _checked_names(source: str) -> tuple[str, ...]:
    """The first positional argument of every ``checks.check_*(Name, ...)`` call in ``source``."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr.startswith("check_") and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "checks" and node.args and isinstance(node.args[0], ast.Name)
                and node.args[0].id not in names):
            names.append(node.args[0].id)
    return tuple(names)


def setup_parts(source: str) -> tuple[str, tuple[str, ...]]:
    """A setup cell's import statements (without the one of ``course_utils.yours``) and the names
    of its ``your_pieces(...)`` call."""
    tree = ast.parse(source)
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
               and not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_utils.yours"))]
    needs: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == CALL_NAME:
            needs += [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    return "\n".join(ast.unparse(node) for node in imports), tuple(needs)


def read_chapter(chapter: str, path: Path) -> Chapter:
    """Parse one release notebook."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    imports, needs, solution_ids, grades = "", (), [], []
    for cell in notebook["cells"]:
        meta = nbgrader_meta(cell)
        if cell.get("cell_type") != "code":
            continue
        source = _cell_source(cell)
        if meta.get("grade_id") == "setup":
            imports, needs = setup_parts(source)
        elif meta.get("solution"):
            solution_ids.append(meta["grade_id"])
        elif meta.get("grade"):
            visible = source.split(HIDDEN_MARKER)[0]
            grades.append(GradeCell(meta["grade_id"], visible, _checked_names(visible)))
    return Chapter(chapter, imports, needs, tuple(solution_ids), tuple(grades))


@functools.lru_cache(maxsize=4)
def catalogue(release_dir: Path = RELEASE_DIR) -> dict[str, Chapter]:
    """Every chapter of the release, in order."""
    return {chapter: read_chapter(chapter, release_notebook(chapter, release_dir))
            for chapter in chapters(release_dir)}


def chapter_of(name: str, release_dir: Path = RELEASE_DIR) -> str | None:
    """The first chapter whose grade cells check ``name`` (None: no chapter asks for it)."""
    for chapter in catalogue(release_dir).values():
        if name in chapter.pieces:
            return chapter.id
    return None
