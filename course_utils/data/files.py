"""The datasets shipped in ``data/``: where they are, what they must contain, how to read them.

Every file is a gzipped UTF-8 text committed with the course, so nothing is downloaded at
run time. :data:`DATA_FILES` is the single table of expected contents (sha256 of the
*decompressed* text and its line count); ``data/README.md`` documents the same values
for people, and a test keeps the two in step.

Reading always verifies the checksum first, so a truncated clone, a Git LFS pointer or a
hand-edited file fails at once with one message naming the file and the fix, instead of
surfacing later as a strange vocabulary size or a shifted sentence pair.

Example::

    >>> from course_utils.data import read_lines
    >>> german = read_lines("multi30k/train.de.gz")
    >>> len(german)
    29000
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final, NamedTuple

__all__ = [
    "DATA_DIR",
    "DATA_FILES",
    "DataFileError",
    "FileInfo",
    "read_lines",
    "read_text",
    "resolve_data_dir",
    "verify_all",
]

#: The repository's ``data/`` folder (this file is ``course_utils/data/files.py``).
DATA_DIR: Final[Path] = Path(__file__).resolve().parents[2] / "data"

#: Environment variable that points the loaders at another copy of ``data/``.
DATA_DIR_ENV: Final[str] = "COURSE_DATA_DIR"


class FileInfo(NamedTuple):
    """What a shipped file must contain once decompressed."""

    sha256: str
    """Hex sha256 of the decompressed bytes."""
    lines: int
    """Number of lines (every file ends with a newline)."""


#: Relative path under ``data/`` -> expected (sha256 of decompressed text, line count).
#: The one place these values live in code; ``data/README.md`` mirrors them for readers.
DATA_FILES: Final[Mapping[str, FileInfo]] = MappingProxyType(
    {
        # Multi30k task 1 (multi30k/dataset, data/task1/raw/).
        # Line i of a .de file translates line i of the matching .en file.
        "multi30k/train.de.gz": FileInfo(
            "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72", 29_000
        ),
        "multi30k/train.en.gz": FileInfo(
            "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6", 29_000
        ),
        "multi30k/val.de.gz": FileInfo(
            "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660", 1_014
        ),
        "multi30k/val.en.gz": FileInfo(
            "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227", 1_014
        ),
        "multi30k/test_2016_flickr.de.gz": FileInfo(
            "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16", 1_000
        ),
        "multi30k/test_2016_flickr.en.gz": FileInfo(
            "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182", 1_000
        ),
        # Tiny Shakespeare (karpathy/char-rnn, data/tinyshakespeare/input.txt).
        "tinyshakespeare/input.txt.gz": FileInfo(
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 40_000
        ),
    }
)


class DataFileError(RuntimeError):
    """A shipped data file is missing, unreadable or does not match its checksum."""


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder to read: ``data_dir``, else ``$COURSE_DATA_DIR``, else :data:`DATA_DIR`.

    The environment variable is read on every call (not at import) so that a notebook,
    a test or CI can redirect the loaders without reloading the module.
    """
    if data_dir is not None:
        return Path(data_dir)
    from_env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(from_env) if from_env else DATA_DIR


def read_text(relpath: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """Decompress ``data/<relpath>``, verify its sha256 and return it as text.

    Args:
        relpath: a key of :data:`DATA_FILES`, e.g. ``"multi30k/train.de.gz"``.
        data_dir: folder holding the files; see :func:`resolve_data_dir`.

    Returns:
        The whole decompressed file, decoded as UTF-8.

    Raises:
        ValueError: ``relpath`` is not one of the shipped files.
        DataFileError: the file is missing, unreadable, not valid gzip, or its
            decompressed content does not have the expected sha256.
    """
    info = _info(relpath)
    folder = resolve_data_dir(data_dir)
    path = folder / relpath
    shown = _display(path)
    fix = _fix(folder)

    if not path.is_file():
        raise DataFileError(f"{shown} is missing: {fix}")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        # A damaged gzip stream (or a Git LFS pointer in its place) never reaches the
        # checksum, but for the reader it is the same problem with the same fix.
        raise DataFileError(
            f"{shown} is corrupt: it does not decompress ({exc}), so it cannot have the "
            f"expected sha256 {info.sha256}. {_capitalize(fix)}"
        ) from exc
    except OSError as exc:
        raise DataFileError(f"{shown} cannot be read ({exc}): {fix}") from exc

    # Hash the bytes, not the decoded text, so the value matches `gzip -dc FILE | sha256sum`.
    actual = hashlib.sha256(raw).hexdigest()
    if actual != info.sha256:
        raise DataFileError(
            f"{shown} is corrupt: the sha256 of its decompressed text is {actual}, "
            f"expected {info.sha256}. {_capitalize(fix)}"
        )
    # Cannot fail: the checksum matched bytes that are known to be valid UTF-8.
    return raw.decode("utf-8")


def read_lines(relpath: str, data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The verified lines of ``data/<relpath>``, newline stripped, one entry per line.

    Splits on ``"\\n"`` only: :meth:`str.splitlines` would also break on characters such
    as U+2028 or form feeds inside a caption, which would silently misalign the German
    and English sides of Multi30k. Blank lines (Tiny Shakespeare has many) are kept.

    Raises:
        ValueError, DataFileError: as :func:`read_text`.
    """
    lines = read_text(relpath, data_dir).split("\n")
    # Every file ends with a newline; that final terminator does not start a new line.
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def verify_all(data_dir: str | os.PathLike[str] | None = None) -> dict[str, int]:
    """Verify every file of :data:`DATA_FILES` and return ``{relpath: line count}``.

    Stops at the first bad file with its :class:`DataFileError`, which names the fix.
    """
    return {relpath: len(read_lines(relpath, data_dir)) for relpath in DATA_FILES}


def _info(relpath: str) -> FileInfo:
    """The table entry for ``relpath``, or a ValueError listing the valid names."""
    try:
        return DATA_FILES[relpath]
    except KeyError:
        known = ", ".join(sorted(DATA_FILES))
        raise ValueError(f"unknown data file {relpath!r}; the course ships: {known}") from None


def _display(path: Path) -> str:
    """``path`` relative to the repository root when inside it (``data/...``), else absolute."""
    try:
        return path.resolve().relative_to(DATA_DIR.parent).as_posix()
    except ValueError:
        return str(path)


def _fix(folder: Path) -> str:
    """How to get a good copy back, worded for the folder actually being read."""
    if folder.resolve() == DATA_DIR:
        return (
            "the course ships it in data/; restore it with `git checkout -- data/` (or re-clone)"
        )
    # Redirected (argument or COURSE_DATA_DIR): git cannot repair that folder directly.
    return (
        f"the course ships it in data/; copy it from there into {folder} "
        "(if data/ itself is damaged, restore it with `git checkout -- data/` or re-clone)"
    )


def _capitalize(sentence: str) -> str:
    """``sentence`` with its first letter upper-cased (str.capitalize would lower the rest)."""
    return sentence[:1].upper() + sentence[1:]
