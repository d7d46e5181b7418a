"""Multi30k (task 1, German -> English): the six shipped files, verified, tokenized, cached.

>>> from course_utils.data import load_multi30k
>>> corpus = load_multi30k()            # seconds the first time, well under one after
>>> corpus.train.de_tokens[0]
['Zwei', 'junge', 'weiße', 'Männer', 'sind', 'im', 'Freien', 'in', 'der', 'Nähe', 'vieler', 'Büsche', '.']
>>> len(corpus.train), len(corpus.val), len(corpus.test)
(29000, 1014, 1000)

**Offline and verified.** The files are read from ``data/multi30k/`` through
:func:`course_utils.data.read_lines`, which checks each one's sha256. All six are checked
before anything else happens, and every problem is reported in one
:class:`~course_utils.data.DataFileError` that names the bad files and the fix.

**Cached.** Tokenizing 60,000 captions with spaCy takes a few seconds, and importing spaCy
a few more. The tokens are therefore written once to ``.cache/multi30k/<key>.json`` at the
repository root (git-ignored; ``$COURSE_CACHE_DIR`` moves it). The key is a hash of
everything the tokens depend on: the six files' sha256 sums, the tokenizers (spaCy's
version, the blank ``de``/``en`` languages) and the cache format. Change any of them and a
new entry is written; a damaged entry is ignored and rebuilt. The files themselves are
still verified on every run (that part takes about 0.05 s).

Tokens are cached with their original case: lowercasing is an option of the vocabulary
(:class:`course_utils.data.Vocab`), so one cache entry serves both choices.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from course_utils import cache
from course_utils.cache import CACHE_DIR
from course_utils.data.files import DATA_FILES, DataFileError, read_lines, resolve_data_dir
from course_utils.data.tokenization import spacy_version, tokenize

__all__ = [
    "CACHE_DIR",
    "MULTI30K_SPLITS",
    "Multi30k",
    "ParallelSplit",
    "load_multi30k",
    "multi30k_cache_key",
    "verify_multi30k",
]

#: Split name -> file stem under ``data/multi30k/`` (``<stem>.de.gz`` and ``<stem>.en.gz``).
MULTI30K_SPLITS: Final[dict[str, str]] = {
    "train": "train",
    "val": "val",
    "test": "test_2016_flickr",
}

# Bump when the cached structure changes: old entries are then simply not found.
_CACHE_FORMAT: Final[int] = 1


@dataclass(frozen=True)
class ParallelSplit:
    """One split of Multi30k: line ``i`` of ``de`` translates line ``i`` of ``en``.

    ``de``/``en`` are the raw captions (the references for standard sacreBLEU);
    ``de_tokens``/``en_tokens`` their spaCy tokens, original case.
    """

    name: str
    de: list[str]
    en: list[str]
    de_tokens: list[list[str]]
    en_tokens: list[list[str]]

    def __len__(self) -> int:
        return len(self.de)

    def subset(self, n: int) -> ParallelSplit:
        """The first ``n`` pairs (quick mode, smoke tests)."""
        return ParallelSplit(self.name, self.de[:n], self.en[:n], self.de_tokens[:n], self.en_tokens[:n])


@dataclass(frozen=True)
class Multi30k:
    """The three splits, and how they were prepared."""

    train: ParallelSplit
    val: ParallelSplit
    test: ParallelSplit
    from_cache: bool = False
    """True when the tokens came from the cache (no spaCy run)."""
    seconds: float = 0.0
    """Wall-clock time :func:`load_multi30k` took."""
    cache_file: Path | None = field(default=None, compare=False)

    def split(self, name: str) -> ParallelSplit:
        """``"train"``, ``"val"`` or ``"test"`` (test2016, the Flickr test set)."""
        if name not in MULTI30K_SPLITS:
            raise ValueError(f"unknown split {name!r}; Multi30k has {tuple(MULTI30K_SPLITS)}")
        return getattr(self, name)


def _relpath(split: str, lang: str) -> str:
    return f"multi30k/{MULTI30K_SPLITS[split]}.{lang}.gz"


def verify_multi30k(data_dir: str | os.PathLike[str] | None = None) -> dict[str, list[str]]:
    """Read and verify all six files; return ``{relpath: lines}``.

    Raises:
        DataFileError: one error listing every missing or corrupt file, each with the
            reason, and the fix (restore ``data/`` from git).
    """
    lines: dict[str, list[str]] = {}
    problems: list[str] = []
    for split in MULTI30K_SPLITS:
        for lang in ("de", "en"):
            relpath = _relpath(split, lang)
            try:
                lines[relpath] = read_lines(relpath, data_dir)
            except DataFileError as error:
                problems.append(str(error))
    if problems:
        if len(problems) == 1:
            raise DataFileError(f"Multi30k cannot be loaded: {problems[0]}")
        listed = "\n".join(f"  - {p}" for p in problems)
        raise DataFileError(
            f"Multi30k cannot be loaded: {len(problems)} of its 6 files are missing or corrupt:\n{listed}")
    return lines


def multi30k_cache_key() -> str:
    """The cache entry's name: a hash of the data's checksums, the tokenizers and the format."""
    settings = {
        "format": _CACHE_FORMAT,
        "files": {_relpath(s, lang): DATA_FILES[_relpath(s, lang)].sha256
                  for s in MULTI30K_SPLITS for lang in ("de", "en")},
        "tokenizer": {"library": "spacy", "version": spacy_version(), "pipelines": "blank de/en"},
    }
    blob = json.dumps(settings, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def _read_cache(path: Path, lines: dict[str, list[str]]) -> dict[str, list[list[str]]] | None:
    """The cached tokens, or None when absent, unreadable or not matching the files' line counts."""
    try:
        tokens = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(tokens, dict) or set(tokens) != set(lines):
        return None
    if any(len(tokens[k]) != len(lines[k]) for k in lines):
        return None
    return tokens


def load_multi30k(data_dir: str | os.PathLike[str] | None = None, *, use_cache: bool = True,
                  cache_dir: str | os.PathLike[str] | None = None) -> Multi30k:
    """Multi30k's train, val and test2016 splits, verified and tokenized (German and English).

    Args:
        data_dir: the folder holding ``multi30k/`` (default: the course's ``data/``, or
            ``$COURSE_DATA_DIR``).
        use_cache: read and write the token cache (see the module docstring).
        cache_dir: where the cache lives (default ``.cache/`` at the repository root, or
            ``$COURSE_CACHE_DIR``); entries go to ``<cache_dir>/multi30k/<key>.json``.

    Raises:
        DataFileError: a file is missing or corrupt (one message for all of them).
    """
    start = time.perf_counter()
    lines = verify_multi30k(resolve_data_dir(data_dir))
    path = cache.cache_dir(cache_dir) / "multi30k" / f"{multi30k_cache_key()}.json" if use_cache else None
    tokens = _read_cache(path, lines) if path is not None else None
    from_cache = tokens is not None
    if tokens is None:
        tokens = {relpath: tokenize(text, relpath.split(".")[-2]) for relpath, text in lines.items()}
        if path is not None:
            cache.write_atomically(path, json.dumps(tokens, ensure_ascii=False).encode("utf-8"))

    def split(name: str) -> ParallelSplit:
        de, en = _relpath(name, "de"), _relpath(name, "en")
        return ParallelSplit(name, lines[de], lines[en], tokens[de], tokens[en])

    return Multi30k(split("train"), split("val"), split("test"), from_cache=from_cache,
                    seconds=time.perf_counter() - start, cache_file=path)
