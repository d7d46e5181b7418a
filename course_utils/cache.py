"""The course's disk cache: ``.cache/`` at the repository root (git-ignored), or ``$COURSE_CACHE_DIR``.

It holds what is slow to compute and the same every time: chapter 9's tokenized corpus
(:mod:`course_utils.data.multi30k`), which of a student's pieces passed their checks
(:mod:`course_utils.yours`) and the small trained model of chapter 9's decoding check
(:mod:`course_utils.checks.decoding`). Every entry's name carries a key of what it was computed
from, so a stale entry is never read, and everything here is optional: a read-only or missing
folder only costs the speed-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

CACHE_DIR: Final[Path] = Path(__file__).resolve().parents[1] / ".cache"
CACHE_DIR_ENV: Final[str] = "COURSE_CACHE_DIR"


def cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir`` if given, else ``$COURSE_CACHE_DIR`` if set, else ``.cache/`` at the repository root."""
    if cache_dir is not None:
        return Path(cache_dir)
    from_env = os.environ.get(CACHE_DIR_ENV, "").strip()
    return Path(from_env) if from_env else CACHE_DIR


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: processes that race to
    create the same entry (a class graded over several workers) never read half a file. An
    ``OSError`` (a read-only course folder) is ignored: the entry is only a speed-up."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError:
        pass
