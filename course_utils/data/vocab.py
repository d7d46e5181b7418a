"""A word vocabulary: token strings <-> integer ids, with the four specials the model needs.

======  ==========  =====================================================
id      token       role
======  ==========  =====================================================
0       ``<pad>``   fills sentences up to the longest of a batch
1       ``<unk>``   stands for every word not in the vocabulary
2       ``<bos>``   starts every sentence (the decoder's first input)
3       ``<eos>``   ends every sentence (the decoder says "done")
4 ...   words       by decreasing frequency in the training data (ties: alphabetical)
======  ==========  =====================================================

A word enters the vocabulary when it occurs at least ``min_freq`` times in the training
split (default 2: a word seen once cannot be learned well, and keeping it would teach the
model nothing about ``<unk>``). With ``lowercase=True`` (the default) tokens are lowercased
both when the vocabulary is built and when it encodes, so "Ein" and "ein" share one id.
On Multi30k's training split this gives 7,853 German and 5,893 English types.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

__all__ = ["BOS", "BOS_IDX", "EOS", "EOS_IDX", "PAD", "PAD_IDX", "SPECIALS", "UNK", "UNK_IDX", "Vocab"]

PAD: Final[str] = "<pad>"
UNK: Final[str] = "<unk>"
BOS: Final[str] = "<bos>"
EOS: Final[str] = "<eos>"
#: The specials, in id order: ``<pad>`` is 0.
SPECIALS: Final[tuple[str, ...]] = (PAD, UNK, BOS, EOS)
PAD_IDX: Final[int] = 0
UNK_IDX: Final[int] = 1
BOS_IDX: Final[int] = 2
EOS_IDX: Final[int] = 3

_FORMAT: Final[str] = "course_utils.Vocab/1"


class Vocab:
    """Maps tokens to ids and back. Build one per language with :meth:`build`.

    Args:
        tokens: the non-special tokens, in id order (ids start at ``len(SPECIALS)``).
        lowercase: lowercase every token before looking it up.
    """

    pad_idx: Final[int] = PAD_IDX
    unk_idx: Final[int] = UNK_IDX
    bos_idx: Final[int] = BOS_IDX
    eos_idx: Final[int] = EOS_IDX
    counts: Counter[str] | None = None
    """Token counts of the data :meth:`build` saw (not saved)."""

    def __init__(self, tokens: Iterable[str], lowercase: bool = True) -> None:
        self.lowercase = lowercase
        self.itos: list[str] = [*SPECIALS]
        for token in tokens:
            if token in SPECIALS:
                raise ValueError(f"{token!r} is a special token; pass only ordinary tokens")
            self.itos.append(token)
        self.stoi: dict[str, int] = {token: i for i, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("the tokens of a vocabulary must be distinct")

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_freq: int = 2, lowercase: bool = True,
              max_size: int | None = None) -> Vocab:
        """Count the tokens of ``sentences`` and keep those seen at least ``min_freq`` times.

        Args:
            sentences: tokenized sentences (the training split only: the vocabulary must
                not peek at the test data).
            min_freq: the least number of occurrences a kept token needs.
            lowercase: lowercase tokens before counting (and, later, before encoding).
            max_size: keep at most this many tokens besides the specials (the most frequent).
        """
        counts: Counter[str] = Counter()
        for sentence in sentences:
            counts.update([t.lower() for t in sentence] if lowercase else sentence)
        for special in SPECIALS:
            counts.pop(special, None)
        kept = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        vocab = cls(kept[:max_size] if max_size is not None else kept, lowercase=lowercase)
        vocab.counts = counts
        return vocab

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return self._norm(token) in self.stoi

    def __getitem__(self, token: str) -> int:
        """The id of ``token``; ``<unk>``'s id (1) for a token not in the vocabulary."""
        return self.stoi.get(self._norm(token), UNK_IDX)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and (self.itos, self.lowercase) == (other.itos, other.lowercase)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens, lowercase={self.lowercase})"

    def _norm(self, token: str) -> str:
        return token if token in SPECIALS or not self.lowercase else token.lower()

    def lookup_token(self, index: int) -> str:
        """The token of id ``index``."""
        return self.itos[index]

    def encode(self, tokens: Sequence[str], add_bos: bool = True, add_eos: bool = True) -> list[int]:
        """``["Zwei", "Hunde"]`` -> ``[2, id("zwei"), id("hunde"), 3]``; unknown tokens -> 1."""
        ids = [self[t] for t in tokens]
        return ([BOS_IDX] if add_bos else []) + ids + ([EOS_IDX] if add_eos else [])

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> list[str]:
        """Ids -> tokens. With ``strip_specials`` (default): stop at the first ``<eos>`` and drop
        ``<bos>`` and ``<pad>`` (``<unk>`` stays: it is part of the output)."""
        tokens = []
        for index in ids:
            index = int(index)
            if strip_specials:
                if index == EOS_IDX:
                    break
                if index in (PAD_IDX, BOS_IDX):
                    continue
            tokens.append(self.itos[index])
        return tokens

    def unknown_rate(self, sentences: Iterable[Sequence[str]]) -> float:
        """The fraction of the tokens of ``sentences`` that map to ``<unk>``."""
        total = unknown = 0
        for sentence in sentences:
            total += len(sentence)
            unknown += sum(self._norm(t) not in self.stoi for t in sentence)
        return unknown / max(total, 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (what :meth:`save` writes; checkpoints embed it)."""
        return {"format": _FORMAT, "lowercase": self.lowercase, "itos": self.itos}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocab:
        """The inverse of :meth:`to_dict`."""
        if data.get("format") != _FORMAT or list(data["itos"][: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError("not a course_utils vocabulary (wrong format or specials)")
        return cls(data["itos"][len(SPECIALS):], lowercase=bool(data["lowercase"]))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as JSON (UTF-8)."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocab:
        """Read a vocabulary written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
