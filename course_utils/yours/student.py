"""Reading a student's chapter notebook from the workspace (``work/``): read only, never written.

The exercise cells are found by their nbgrader metadata (``solution: true`` and a ``grade_id``),
whatever the student wrote inside them. Everything that can go wrong with the file (missing,
renamed, duplicated, not JSON, from another release of the course) becomes a one-line reason,
never a traceback: the chapter then falls back to the reference and says why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from course_utils.course.chapters import nbgrader_meta


@dataclass
class StudentChapter:
    """The exercise cells of one chapter as the student wrote them.

    ``problem`` is set when the notebook cannot be used at all (every piece of the chapter then
    falls back, with it as the reason); ``notes`` are worth saying but change nothing.
    """

    chapter: str
    path: Path | None
    shown_path: str
    cells: dict[str, str] = field(default_factory=dict)   # grade_id -> source
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


def _shown(path: Path, workspace: Path) -> str:
    """``work/01_attention/01_attention.ipynb``: the path as the student knows it."""
    try:
        return str(Path(workspace.name) / path.relative_to(workspace))
    except ValueError:
        return str(path)


def _other_copies(workspace: Path, chapter: str, wanted: Path) -> list[Path]:
    folder = workspace / chapter
    candidates = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
    candidates += sorted(p for p in workspace.glob(f"{chapter}*.ipynb"))
    return [p for p in candidates if p != wanted and ".ipynb_checkpoints" not in p.parts]


def read_student_chapter(workspace: Path, chapter: str, solution_ids: tuple[str, ...]) -> StudentChapter:
    """The student's ``<workspace>/<chapter>/<chapter>.ipynb``, read for the cells ``solution_ids``."""
    path = workspace / chapter / f"{chapter}.ipynb"
    shown = _shown(path, workspace)
    result = StudentChapter(chapter, path, shown)
    others = _other_copies(workspace, chapter, path)
    if not path.is_file():
        result.path = None
        if others:
            names = ", ".join(p.name for p in others[:3])
            result.problem = (f"notebook not found: {shown} (there is {names}; only the file named like the "
                              f"chapter is read: rename your copy back)")
        else:
            result.problem = f"notebook not found: {shown}"
        return result
    if others:
        result.notes.append(f"{chapter}: also found {', '.join(p.name for p in others[:3])}; "
                            f"using {path.name}, the one named like the chapter")
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
    except json.JSONDecodeError as error:
        result.problem = (f"{shown} is not valid JSON (line {error.lineno}, column {error.colno}): "
                          f"the file is damaged; restore it from .ipynb_checkpoints/ or JupyterLab's history")
        return result
    except (OSError, UnicodeDecodeError, KeyError, TypeError) as error:
        result.problem = f"{shown} cannot be read as a notebook ({type(error).__name__}: {error})"
        return result
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if meta.get("solution") and grade_id in solution_ids and grade_id not in result.cells:
            source = cell.get("source", "")
            result.cells[grade_id] = "".join(source) if isinstance(source, list) else str(source)
    if not result.cells and solution_ids:
        result.problem = (f"{shown} has none of this release's exercise cells ({', '.join(solution_ids[:3])}): "
                          f"it is from another release of the course, or its cells lost their nbgrader metadata")
    return result
