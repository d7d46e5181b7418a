"""Your own pieces from earlier chapters, wherever they pass their checks.

In a chapter's setup cell::

    from course_utils.yours import your_pieces

    MultiHeadAttention, FeedForwardNetwork = your_pieces("MultiHeadAttention", "FeedForwardNetwork")

returns, for each name, the class or function **you** wrote in that earlier chapter's notebook in
your workspace (``work/<id>/<id>.ipynb``) when it passes that chapter's check, and the course's
reference (``course_utils.reference``) otherwise. Earlier chapters are executed in order, so
your chapter-5 ``EncoderLayer`` is built on your own chapter-2 ``MultiHeadAttention`` when that
one passes. A table says whose each piece is and, for each fallback, why. ``reference=[...]``
forces the reference for chosen pieces (``reference=True``: for all), to tell a bug in one
chapter from a bug in another.

Grading never depends on another notebook: under nbgrader (``NBGRADER_EXECUTION``), and
whenever the notebook runs outside the workspace (nbval over ``solutions/``, for one), the
reference is used and the table says why. Your files are only read. See
:mod:`course_utils.yours.resolve` for how verdicts are reached and cached.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from course_utils.course.chapters import WORK_DIR
from course_utils.yours.catalogue import catalogue, chapter_of
from course_utils.yours.resolve import (CHECK_SECONDS, REFERENCE, YOURS, ChapterResult, Missing, Resolver,
                                        failure_reason, reference_object)

__all__ = ["Pieces", "this_notebook", "whose", "whose_model", "your_pieces"]

#: Set to a folder to use it as the workspace (tests do); default: ``work/`` of the course.
WORKSPACE_ENV = "COURSE_WORKSPACE"
#: Seconds without news from the worker after which it is stopped (a hang in compiled code).
STALL_SECONDS = float(os.environ.get("COURSE_YOURS_STALL_SECONDS", CHECK_SECONDS + 20))

# Within one kernel: verdicts and namespaces already built, so a re-run setup cell is instant.
_KNOWN: dict[str, ChapterResult] = {}
_MODULES: dict[str, types.ModuleType] = {}


@dataclass(frozen=True)
class Row:
    name: str
    chapter: str
    whose: str
    reason: str


class Pieces(tuple):
    """The objects asked for, in order (unpack it), with ``rows`` saying whose each one is."""

    rows: tuple[Row, ...]
    notes: tuple[str, ...]
    seconds: float
    title: str

    def __new__(cls, objects: Iterable[Any], rows: Iterable[Row], notes: Iterable[str], seconds: float,
                title: str = "Pieces from earlier chapters"):
        self = super().__new__(cls, objects)
        self.rows, self.notes, self.seconds, self.title = tuple(rows), tuple(notes), seconds, title
        return self

    @property
    def whose(self) -> dict[str, str]:
        return {row.name: row.whose for row in self.rows}

    def table(self) -> str:
        width = max([len(row.name) for row in self.rows] + [5])
        mine = sum(row.whose == YOURS for row in self.rows)
        lines = [f"{self.title}: {mine} of {len(self.rows)} yours ({self.seconds:.1f} s)"]
        for row in self.rows:
            mark = "✓ yours    " if row.whose == YOURS else "  reference"
            text = f"  {row.name:<{width}}  {mark}  {row.chapter}"
            lines.append(text + (f": {row.reason}" if row.reason else ""))
        lines += [f"  note: {note}" for note in self.notes]
        if any(row.whose == REFERENCE for row in self.rows):
            lines.append("  (a reference piece is built from reference parts throughout)")
        return "\n".join(lines)


def _current_chapter() -> str | None:
    name = Path.cwd().name
    return name if name in catalogue() else None


def _workspace() -> tuple[Path | None, str]:
    """The student's workspace, or None and the reason the reference is used."""
    if os.environ.get("NBGRADER_EXECUTION"):
        return None, "graded by nbgrader, which always uses the reference (a grade never depends on another notebook)"
    configured = os.environ.get(WORKSPACE_ENV, "").strip()
    if configured:
        path = Path(configured).expanduser().resolve()
        if not path.is_dir():
            return None, f"{WORKSPACE_ENV}={configured} is not a folder"
        return path, ""
    cwd = Path.cwd().resolve()
    work = WORK_DIR.resolve()
    if cwd == work or work in cwd.parents:
        return work, ""
    return None, f"this notebook runs in {cwd.parent.name}/{cwd.name}, not in the course's work/ folder"


def _closure(names: Iterable[str]) -> list[str]:
    """The chapters that define ``names`` and, recursively, the chapters those need, in course order."""
    order = list(catalogue())
    wanted: set[str] = set()
    stack = [chapter_of(name) for name in names]
    while stack:
        chapter = stack.pop()
        if chapter is None or chapter in wanted:
            continue
        wanted.add(chapter)
        position = order.index(chapter)
        stack += [c for c in (chapter_of(n) for n in catalogue()[chapter].needs)
                  if c is not None and order.index(c) < position]
    return [c for c in order if c in wanted]


def _run_worker(workspace: Path, chapters: list[str], forced: set[str], fingerprint: str) -> None:
    """Run the checks in a subprocess; put its verdicts in ``_KNOWN``. A step that hangs beyond
    the worker's own time limits is stopped here, marked as hung, and the worker started again."""
    hung: list[str] = []
    for _attempt in range(12):
        command = [sys.executable, "-m", "course_utils.yours.worker", "--workspace", str(workspace),
                   "--chapters", ",".join(chapters), "--forced", ",".join(sorted(forced)),
                   "--fingerprint", fingerprint]
        command += [f"--hung={entry}" for entry in hung]
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
        with tempfile.TemporaryDirectory(prefix="course-yours-") as scratch:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                       stdin=subprocess.DEVNULL, cwd=scratch, env=env, text=True)
            lines: queue.Queue[str | None] = queue.Queue()

            def pump() -> None:
                for line in process.stdout:  # type: ignore[union-attr]
                    lines.put(line)
                lines.put(None)

            threading.Thread(target=pump, daemon=True).start()
            last_step, finished = None, False
            while True:
                try:
                    line = lines.get(timeout=STALL_SECONDS)
                except queue.Empty:
                    process.kill()
                    break
                if line is None:
                    finished = True
                    break
                message = json.loads(line)
                if "step" in message:
                    last_step = message["step"]
                elif "results" in message:
                    for data in message["results"]:
                        result = ChapterResult.from_json(data)
                        _KNOWN[result.key] = result
            process.wait()
        if finished and process.returncode == 0:
            return
        if last_step is None or f"{last_step[1]}:{last_step[2]}" in hung:
            raise RuntimeError(f"the checking process failed (exit code {process.returncode})")
        hung.append(f"{last_step[1]}:{last_step[2]}")
    raise RuntimeError("the checking process was stopped too many times")


def _all_reference(names: tuple[str, ...], reason: str, start: float) -> Pieces:
    rows = [Row(name, chapter_of(name) or "-", REFERENCE, reason) for name in names]
    return Pieces([reference_object(name) for name in names], rows, (), time.perf_counter() - start)


def your_pieces(*names: str, reference: Iterable[str] | bool = (), show: bool = True) -> Pieces:
    """Your pieces of earlier chapters where they pass their checks, the reference otherwise.

    Args:
        names: the pieces, as the chapters name them (``"MultiHeadAttention"``, ...).
        reference: names for which to use the reference anyway (``True``: every piece).
        show: print the table of whose each piece is.

    Returns:
        the objects in the order of ``names`` (a tuple to unpack), with ``.rows`` and ``.table()``.
    """
    start = time.perf_counter()
    unknown = [name for name in names if reference_object(name) is None]
    if unknown:
        raise ValueError(f"your_pieces: no chapter's piece is called {', '.join(unknown)}")
    chapters = _closure(names)
    forced = set(reference) if not isinstance(reference, bool) else set()
    if reference is True:
        forced = {name for chapter in chapters for name in catalogue()[chapter].pieces}
    workspace, reason = _workspace()
    current = _current_chapter()
    if workspace is None:
        pieces = _all_reference(names, reason, start)
    else:
        resolver = Resolver(workspace, forced, run_checks=False, known=_KNOWN, modules=_MODULES)
        order = list(catalogue())
        reachable = [c for c in chapters if current is None or order.index(c) < order.index(current)]
        try:
            for chapter in reachable:
                resolver.resolve(chapter)
        except Missing:
            try:
                _run_worker(workspace, reachable, forced, resolver.fingerprint)
                resolver = Resolver(workspace, forced, run_checks=False, known=_KNOWN, modules=_MODULES,
                                    fingerprint=resolver.fingerprint)
                for chapter in reachable:
                    resolver.resolve(chapter)
            except (RuntimeError, Missing) as error:
                pieces = _all_reference(names, f"your notebooks could not be checked: {error}", start)
                if show:
                    print(pieces.table())
                return pieces
        rows = []
        shown = [n for c in reachable for n in catalogue()[c].pieces if reference_object(n) is not None]
        for name in dict.fromkeys([*shown, *names]):
            chapter = chapter_of(name)
            if chapter not in reachable:
                rows.append(Row(name, chapter, REFERENCE, "this chapter's or a later one's exercise"))
            else:
                kind, why = resolver.whose(name)
                rows.append(Row(name, chapter, kind, why))
        objects = [resolver.obj(name) if chapter_of(name) in reachable else reference_object(name) for name in names]
        notes = [note for c in reachable for note in resolver.results[c].notes]
        pieces = Pieces(objects, rows, notes, time.perf_counter() - start)
    if show:
        print(pieces.table())
    return pieces


def this_notebook(pieces: dict[str, Any], show: bool = True) -> Pieces:
    """This notebook's own exercises where they pass the visible part of their grade cells, the reference
    otherwise, with the same table as :func:`your_pieces`.

    A chapter that goes on to use what the student just wrote (chapter 12 trains a translator on the
    student's tokenizer) calls it with ``{"learn_merges": learn_merges, ...}``: a piece that fails its
    check is replaced by the answer key, and the table says why, so the run never stops on it.
    """
    from course_utils import checks

    start = time.perf_counter()
    objects, rows = [], []
    for name, obj in pieces.items():
        chapter = chapter_of(name)
        if chapter is None or reference_object(name) is None:
            raise ValueError(f"this_notebook: no chapter's exercise is called {name}")
        cells = [cell for cell in catalogue()[chapter].grade_cells if name in cell.names]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                for cell in cells:
                    exec(compile(cell.source, f"<grade cell {cell.grade_id}>", "exec"), {"checks": checks, name: obj})
        except Exception as error:  # noqa: BLE001 - any failure means: use the reference, say why
            objects.append(reference_object(name))
            rows.append(Row(name, chapter, REFERENCE, failure_reason(error)))
        else:
            objects.append(obj)
            rows.append(Row(name, chapter, YOURS, ""))
    result = Pieces(objects, rows, (), time.perf_counter() - start, title="Your exercises of this chapter")
    if show:
        print(result.table())
    return result


def _target(obj: Any) -> Any:
    """A class or function stands for itself; an instance for its class."""
    return obj if isinstance(obj, (type, types.FunctionType)) else type(obj)


def whose(obj: Any) -> str | None:
    """``"yours (05_encoder)"``, ``"yours (this notebook)"``, ``"reference"``, or None (neither:
    PyTorch's own, say). ``obj`` may be a class, an instance or a function."""
    target = _target(obj)
    if getattr(target, "__answer_key__", None):
        return "reference"
    module = getattr(target, "__module__", "") or ""
    if module.startswith("work_"):
        return f"yours ({module[5:]})"
    if module == "__main__":
        return "yours (this notebook)"
    return None


def _functions_used(obj: Any) -> list[types.FunctionType]:
    """The course functions that the code of ``obj`` (a class or a function) calls by global
    name, and those they call in turn: a student's ``MultiHeadAttention`` -> ``split_heads``,
    ``scaled_dot_product_attention`` -> ``attention_scores``."""
    found: list[types.FunctionType] = []

    def names(code: types.CodeType) -> Iterable[str]:
        yield from code.co_names
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                yield from names(const)

    def visit(function: Any) -> None:
        function = getattr(function, "__func__", function)
        if not isinstance(function, types.FunctionType):
            return
        for name in names(function.__code__):
            value = function.__globals__.get(name)
            if isinstance(value, types.FunctionType) and chapter_of(name) is not None and value not in found:
                found.append(value)
                visit(value)

    for member in (vars(obj).values() if isinstance(obj, type) else [obj]):
        visit(member)
    return found


def whose_model(model: nn.Module, *others: Any) -> str:
    """Whose each kind of part of ``model`` is (the student's own or the reference), one per line.

    Classes come from walking ``model.modules()``; the course functions a student's class calls
    (their attention, their masks) from its code. ``others`` (a scheduler class, a loss, a
    training function) are listed after the model's parts.
    """
    parts: dict[str, str] = {}
    for module in model.modules():
        cls = type(module)
        kind = whose(cls)
        if kind is None or cls.__name__ in parts:
            continue
        parts[cls.__name__] = kind
        if kind.startswith("yours"):
            for function in _functions_used(cls):
                parts.setdefault(function.__name__, whose(function) or "reference")
    for other in others:
        kind, name = whose(other), _target(other).__name__
        if kind is not None and name not in parts:
            parts[name] = kind
    mine = sum(kind.startswith("yours") for kind in parts.values())
    lines = [f"Whose parts are trained here: {mine} of {len(parts)} yours"]
    lines += [f"  {name:<30} {kind}" for name, kind in parts.items()]
    return "\n".join(lines)
