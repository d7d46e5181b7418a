"""Deciding, chapter by chapter, whose piece is used: the student's where it passes its check.

Chapters are resolved in course order. A chapter's namespace is built like the student's kernel
builds it: the setup cell's imports, then the earlier pieces it asks for (already resolved: the
student's own where they passed, the reference otherwise), then the student's exercise cells.
Each grade cell's visible check then runs on what those cells defined; a piece that fails is
replaced by the reference *before* the next check runs, so a student's ``MultiHeadAttention``
built on a broken ``split_heads`` is judged on the reference ``split_heads``.

Two modes share this code. The worker (:mod:`course_utils.yours.worker`, a subprocess with
time limits) runs cells and checks and writes each chapter's verdicts to a cache keyed by
everything they depend on. The student's kernel only re-executes the cells whose verdicts are
known, which takes milliseconds: a re-run setup cell is instant, and student code the worker
found hanging is never run in the kernel.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import json
import linecache
import os
import signal
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from course_utils import cache
from course_utils.course.chapters import ROOT
from course_utils.yours.catalogue import Chapter, catalogue, chapter_of
from course_utils.yours.student import StudentChapter, read_student_chapter

#: Seconds an exercise cell may take to run (it only defines functions and classes).
CELL_SECONDS = float(os.environ.get("COURSE_YOURS_CELL_SECONDS", "10"))
#: Seconds one grade cell's visible check may take (they take well under 2 s).
CHECK_SECONDS = float(os.environ.get("COURSE_YOURS_CHECK_SECONDS", "30"))

YOURS, REFERENCE = "yours", "reference"


@dataclass
class ChapterResult:
    """The verdicts of one chapter: for each piece, whose it is and, for a fallback, why."""

    chapter: str
    key: str
    whose: dict[str, str] = field(default_factory=dict)     # name -> "yours" | "reference"
    reasons: dict[str, str] = field(default_factory=dict)   # name -> one line (fallbacks only)
    skip_cells: list[str] = field(default_factory=list)     # cells never to run again (hung)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChapterResult:
        return cls(**data)


class Missing(Exception):
    """A chapter's verdicts are not known yet: the worker must run its checks."""


class _TimeUp(BaseException):
    """Raised by the alarm. A BaseException, so that a student's ``except Exception`` cannot eat it."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread only; None: no limit)."""
    if not seconds:
        yield
        return

    def ring(signum: int, frame: Any) -> None:
        raise _TimeUp()

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def cache_dir() -> Path:
    """``.cache/yours/`` at the repository root (or under ``$COURSE_CACHE_DIR``); git-ignored."""
    return cache.cache_dir() / "yours"


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def course_fingerprint() -> str:
    """A hash of the code that decides verdicts: the checks, the answer key and this package
    (read afresh each time, a millisecond: a course update must not reuse old verdicts)."""
    package = Path(__file__).resolve().parents[1]
    hasher = hashlib.sha256()
    for folder in ("checks", "reference", "yours"):
        for path in sorted((package / folder).glob("*.py")):
            hasher.update(path.name.encode())
            hasher.update(path.read_bytes())
    return hasher.hexdigest()[:20]


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's message, which the checks make self-contained."""
    for line in str(error).splitlines():
        if line.strip():
            return line.strip()
    return type(error).__name__


def failure_reason(error: BaseException) -> str:
    """The reason shown for a piece whose check failed."""
    line = first_line(error)
    if "not implemented yet" in line:
        return "not written yet"
    if isinstance(error, AssertionError):
        # The check's diagnosis, when it has one, says more than the numbers: keep it on the line.
        likely = [text.strip() for text in str(error).splitlines() if text.strip().startswith("Likely mistake:")]
        return f"fails its check: {line}" + (f" {likely[0]}" if likely and likely[0] not in line else "")
    return f"its check raised {type(error).__name__}: {line}"


def _register_source(filename: str, source: str) -> None:
    """Let tracebacks through the student's code show its lines."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow what student code and checks print (the worker also silences the real fds)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def reference_object(name: str) -> Any:
    """The answer key's object called ``name`` (None when the reference has none)."""
    import course_utils.reference as reference

    return getattr(reference, name) if name in reference.__all__ else None


class Resolver:
    """Resolves chapters in course order; see the module docstring.

    Args:
        workspace: the student's ``work/`` folder.
        forced: names for which the reference is used whatever the student wrote.
        fingerprint: the course's :func:`course_fingerprint` (the worker is given the kernel's).
        run_checks: True in the worker (run cells with time limits and checks), False in the kernel.
        known: results already in hand (from the worker), by chapter key.
        hung: ``"<key>:<step>"`` entries of steps that hung in compiled code in an earlier worker
            run: treated as timed out, never run again.
        on_step: called with ``(chapter, key, step)`` before each cell or check runs (the worker
            reports it so that the kernel knows which step hung if it has to stop the worker).
        use_disk: read and write :func:`cache_dir`.
    """

    def __init__(self, workspace: Path, forced: set[str], *, run_checks: bool,
                 known: dict[str, ChapterResult] | None = None, hung: set[str] | None = None,
                 on_step: Callable[[str, str, str], None] | None = None, use_disk: bool = True,
                 modules: dict[str, types.ModuleType] | None = None, fingerprint: str | None = None) -> None:
        self.workspace = workspace
        self.forced = forced
        self.run_checks = run_checks
        self.known = known if known is not None else {}
        self.hung = hung or set()
        self.on_step = on_step or (lambda chapter, key, step: None)
        self.use_disk = use_disk
        self.modules = modules if modules is not None else {}
        self.results: dict[str, ChapterResult] = {}      # by chapter id, this resolution
        self.namespaces: dict[str, dict[str, Any]] = {}  # by chapter id
        self.catalogue = catalogue()
        # One fingerprint for the kernel and its worker, so that both compute the same keys.
        self.fingerprint = fingerprint or course_fingerprint()

    # ---- objects -------------------------------------------------------------------------
    def whose(self, name: str) -> tuple[str, str]:
        """``(whose, reason)`` of a resolved piece."""
        chapter = chapter_of(name)
        result = self.results[chapter]
        return result.whose[name], result.reasons.get(name, "")

    def obj(self, name: str) -> Any:
        """The object a resolved piece stands for: the student's or the reference."""
        chapter = chapter_of(name)
        if chapter in self.results and self.results[chapter].whose.get(name) == YOURS:
            return self.namespaces[chapter][name]
        return reference_object(name)

    # ---- resolution ----------------------------------------------------------------------
    def resolve(self, chapter: str) -> ChapterResult:
        """Resolve ``chapter`` (and, first, every earlier chapter it needs)."""
        if chapter in self.results:
            return self.results[chapter]
        spec = self.catalogue[chapter]
        order = list(self.catalogue)
        deps = {}
        for name in spec.needs:
            source = chapter_of(name)
            if source is not None and order.index(source) < order.index(chapter):
                self.resolve(source)
                deps[name] = self.whose(name)
        student = read_student_chapter(self.workspace, chapter, spec.solution_ids)
        key = _digest(self.fingerprint, chapter, student.problem, student.cells,
                      sorted(self.forced & set(spec.pieces)),
                      {name: (whose, self._key_of(name) if whose == YOURS else "") for name, (whose, _) in deps.items()})
        result = self.known.get(key) or self._from_disk(chapter, key)
        if result is None:
            if not self.run_checks:
                raise Missing(chapter)
            result = self._check(spec, student, key)
            self._to_disk(result)
        else:
            self._rebuild(spec, student, result)
        result.notes = list(dict.fromkeys(result.notes + student.notes))
        self.results[chapter] = result
        return result

    def _key_of(self, name: str) -> str:
        return self.results[chapter_of(name)].key

    def _namespace(self, spec: Chapter, key: str) -> dict[str, Any]:
        module = types.ModuleType(f"work_{spec.id}", f"Your exercise cells of {spec.id}.")
        namespace = module.__dict__
        namespace["__builtins__"] = builtins
        with _quiet():
            exec(compile(spec.imports, f"<{spec.id} setup imports>", "exec"), namespace)  # noqa: S102
        order = list(self.catalogue)
        for name in spec.needs:
            source = chapter_of(name)
            if source is not None and order.index(source) < order.index(spec.id):
                namespace[name] = self.obj(name)
            else:
                namespace[name] = reference_object(name)
        sys.modules[module.__name__] = module
        self.modules[key] = module
        self.namespaces[spec.id] = namespace
        return namespace

    def _run_cell(self, namespace: dict[str, Any], student: StudentChapter, grade_id: str,
                  limit: float | None) -> str | None:
        """Run one exercise cell; the reason it failed, or None."""
        source = student.cells[grade_id]
        filename = f"{student.shown_path}, cell {grade_id}"
        _register_source(filename, source)
        try:
            code = compile(source, filename, "exec")
        except SyntaxError as error:
            return f"your cell {grade_id} has a {type(error).__name__} at line {error.lineno}: {error.msg}"
        try:
            with _quiet(), time_limit(limit):
                exec(code, namespace)  # noqa: S102 - the student's own code, as their kernel runs it
        except _TimeUp:
            return f"your cell {grade_id} did not finish within {limit:.0f} s when run (an endless loop?)"
        except BaseException as error:  # noqa: BLE001 - anything the student's cell raises is a reason
            if isinstance(error, KeyboardInterrupt):
                raise
            return f"your cell {grade_id} raises {type(error).__name__} when run: {first_line(error)}"
        return None

    def _check(self, spec: Chapter, student: StudentChapter, key: str) -> ChapterResult:
        start = time.perf_counter()
        result = ChapterResult(spec.id, key)
        namespace = self._namespace(spec, key)
        before = dict(namespace)
        cell_errors: dict[str, str] = {}
        if student.problem is None:
            for grade_id in spec.solution_ids:
                if grade_id not in student.cells:
                    continue
                if f"{key}:cell {grade_id}" in self.hung:
                    cell_errors[grade_id] = (f"your cell {grade_id} did not finish when run: it stopped the "
                                             f"checking process (an endless loop in compiled code, or a crash)")
                    result.skip_cells.append(grade_id)
                    continue
                self.on_step(spec.id, key, f"cell {grade_id}")
                error = self._run_cell(namespace, student, grade_id, CELL_SECONDS)
                if error is not None:
                    cell_errors[grade_id] = error
                    if "did not finish" in error:
                        result.skip_cells.append(grade_id)
        missing_cells = [g for g in spec.solution_ids if g not in student.cells]
        for cell in spec.grade_cells:
            names = [n for n in cell.names if n not in result.whose]
            if not names:
                continue
            reason = self._reason_before_check(names, student, namespace, before, cell_errors, missing_cells)
            if reason is None:
                if f"{key}:check {cell.grade_id}" in self.hung:
                    reason = ("its check did not finish: it stopped the checking process (an endless loop in "
                              "compiled code, or a crash)")
                else:
                    self.on_step(spec.id, key, f"check {cell.grade_id}")
                    reason = self._run_check(cell.source, namespace, cell.grade_id)
            for name in names:
                result.whose[name] = YOURS if reason is None else REFERENCE
                if reason is not None:
                    result.reasons[name] = reason
                    if reference_object(name) is not None:
                        namespace[name] = reference_object(name)
        result.seconds = time.perf_counter() - start
        return result

    def _reason_before_check(self, names: list[str], student: StudentChapter, namespace: dict[str, Any],
                             before: dict[str, Any], cell_errors: dict[str, str],
                             missing_cells: list[str]) -> str | None:
        """Why a grade cell's pieces cannot be checked at all, or None when they can."""
        if student.problem is not None:
            return student.problem
        forced = [n for n in names if n in self.forced]
        if forced:
            return "you asked for the reference"
        undefined = [n for n in names if n not in namespace or namespace[n] is before.get(n)]
        if undefined:
            if cell_errors:
                return next(iter(cell_errors.values()))
            if missing_cells:
                return (f"{student.shown_path} has no cell {missing_cells[0]}: it is from an older release of "
                        f"the course (copy your code into the current one)")
            return f"{undefined[0]} is not defined in {student.shown_path}"
        return None

    def _run_check(self, source: str, namespace: dict[str, Any], grade_id: str) -> str | None:
        try:
            with _quiet(), time_limit(CHECK_SECONDS if self.run_checks else None):
                exec(compile(source, f"<grade cell {grade_id}>", "exec"), dict(namespace))  # noqa: S102
        except _TimeUp:
            return f"its check did not finish within {CHECK_SECONDS:.0f} s (an endless loop?)"
        except BaseException as error:  # noqa: BLE001
            if isinstance(error, KeyboardInterrupt):
                raise
            return failure_reason(error)
        return None

    def _rebuild(self, spec: Chapter, student: StudentChapter, result: ChapterResult) -> None:
        """The kernel's side: re-create the namespace the verdicts were taken on, without checks."""
        module = self.modules.get(result.key)
        if module is not None:
            self.namespaces[spec.id] = module.__dict__
            sys.modules[module.__name__] = module
            return
        namespace = self._namespace(spec, result.key)
        if student.problem is None:
            for grade_id in spec.solution_ids:
                if grade_id in student.cells and grade_id not in result.skip_cells:
                    self._run_cell(namespace, student, grade_id, None)
        for name, whose in result.whose.items():
            if whose == REFERENCE and reference_object(name) is not None:
                namespace[name] = reference_object(name)

    # ---- the disk cache ------------------------------------------------------------------
    def _path(self, chapter: str, key: str) -> Path:
        return cache_dir() / f"{chapter}-{key}.json"

    def _from_disk(self, chapter: str, key: str) -> ChapterResult | None:
        if not self.use_disk:
            return None
        try:
            return ChapterResult.from_json(json.loads(self._path(chapter, key).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def _to_disk(self, result: ChapterResult) -> None:
        self.known[result.key] = result
        if not self.use_disk:
            return
        cache.write_atomically(self._path(result.chapter, result.key), json.dumps(result.to_json()).encode("utf-8"))


def default_workspace() -> Path:
    return ROOT / "work"
