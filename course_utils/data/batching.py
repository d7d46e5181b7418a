"""From tokenized sentence pairs to padded tensor batches, with little compute spent on padding.

1. :func:`encode_split` turns a :class:`~course_utils.data.multi30k.ParallelSplit` into id
   lists (``<bos> ... <eos>``; unknown words become ``<unk>``), and handles sentences longer
   than ``max_len``: dropped from training data, truncated in evaluation data, and counted
   either way (:class:`EncodedSplit`).
2. :class:`TokenBatches` groups pairs of similar length into batches under a token budget
   (:func:`~course_utils.reference.translation.batch_by_tokens`) and pads each batch
   (:func:`~course_utils.reference.translation.collate_batch`). Iterating it again gives a
   new shuffle, so it serves as the training data of every epoch.

Why a token budget rather than a fixed number of sentences: a batch of 128 five-word
captions and one of 128 forty-word captions cost very different amounts of memory and
time. Fixing the number of *positions* per batch keeps every step about equally heavy, and
sorting by length first means each batch is padded only up to lengths close to its own.
On Multi30k's training split, with 4,096-position batches, bucketing leaves under 1% of
the positions to padding, against about 50% for batches of 128 pairs drawn at random.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
from torch import Tensor

from course_utils.data.multi30k import ParallelSplit
from course_utils.data.vocab import EOS_IDX, PAD_IDX, UNK_IDX, Vocab
from course_utils.reference.translation import batch_by_tokens, collate_batch, padding_fraction

__all__ = ["MAX_LEN", "EncodedSplit", "SubwordTokenizer", "TokenBatches", "encode_split", "pair_lengths"]

#: The longest sentence the model sees, in tokens with ``<bos>`` and ``<eos>``. Multi30k's
#: longest training caption has 44 tokens (46 with the specials), so nothing is dropped from
#: it at this setting; the limit exists for other data, and for the sizes of the
#: positional-encoding table and of attention.
MAX_LEN = 64

Pair = tuple[list[int], list[int]]


class SubwordTokenizer(Protocol):
    """What :func:`encode_split` needs of a subword tokenizer (:class:`course_utils.reference.bpe.BPETokenizer`)."""

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


@dataclass
class EncodedSplit:
    """A split as id lists, and what happened on the way."""

    pairs: list[Pair]
    """``(src_ids, tgt_ids)``, each ``<bos> ... <eos>``."""
    lines: list[int]
    """``lines[k]`` is the line of the split that ``pairs[k]`` comes from."""
    dropped: int = 0
    """Pairs left out because a side was longer than ``max_len``."""
    truncated: int = 0
    """Pairs cut down to ``max_len`` tokens on a side (evaluation data keeps every line)."""
    src_unk_rate: float = 0.0
    """Fraction of source tokens (specials excluded) that became ``<unk>``."""
    tgt_unk_rate: float = 0.0

    def __len__(self) -> int:
        return len(self.pairs)

    def summary(self) -> str:
        """One line for logs: size, long sentences dropped or truncated, unknown-word rates."""
        return (f"{len(self.pairs):,} pairs, {self.dropped} dropped and {self.truncated} truncated "
                f"as longer than the limit, <unk>: {self.src_unk_rate:.1%} of source and "
                f"{self.tgt_unk_rate:.1%} of target tokens")


def encode_split(split: ParallelSplit, src_vocab: Vocab | SubwordTokenizer, tgt_vocab: Vocab | SubwordTokenizer, *,
                 src_lang: str = "de", max_len: int = MAX_LEN, long: Literal["drop", "truncate"] = "drop"
                 ) -> EncodedSplit:
    """Encode a split's token lists to ids, ``<bos> ... <eos>`` on both sides.

    Args:
        split: tokenized pairs (:func:`course_utils.data.load_multi30k`).
        src_vocab, tgt_vocab: vocabularies of the source and target languages: word
            :class:`Vocab` objects (the spaCy tokens are encoded) or subword tokenizers (chapter 12;
            the raw captions are encoded, and nothing is ever ``<unk>``).
        src_lang: ``"de"`` (German -> English, the course's direction) or ``"en"``.
        max_len: the most tokens a side may have, ``<bos>`` and ``<eos>`` included.
        long: what to do with a pair whose source or target is longer: ``"drop"`` it (for
            training data) or ``"truncate"`` it to ``max_len`` tokens, keeping ``<eos>`` (for
            evaluation data, where every line must get a translation).
    """
    if max_len < 3:
        raise ValueError("max_len must leave room for <bos>, one token and <eos>")
    if long not in ("drop", "truncate"):
        raise ValueError(f"long must be 'drop' or 'truncate', not {long!r}")
    tgt_lang = "en" if src_lang == "de" else "de"
    encoded = EncodedSplit(pairs=[], lines=[])
    counts = {"src": [0, 0], "tgt": [0, 0]}  # [unknown, total]
    for line, (src, tgt) in enumerate(zip(_encode_side(split, src_lang, src_vocab),
                                          _encode_side(split, tgt_lang, tgt_vocab))):
        for side, ids in (("src", src), ("tgt", tgt)):
            counts[side][0] += sum(i == UNK_IDX for i in ids)
            counts[side][1] += len(ids) - 2
        if len(src) > max_len or len(tgt) > max_len:
            if long == "drop":
                encoded.dropped += 1
                continue
            encoded.truncated += 1
            src, tgt = _truncate(src, max_len), _truncate(tgt, max_len)
        encoded.pairs.append((src, tgt))
        encoded.lines.append(line)
    encoded.src_unk_rate = counts["src"][0] / max(counts["src"][1], 1)
    encoded.tgt_unk_rate = counts["tgt"][0] / max(counts["tgt"][1], 1)
    return encoded


def _encode_side(split: ParallelSplit, lang: str, vocab: Vocab | SubwordTokenizer) -> list[list[int]]:
    """One language of a split as ``<bos> ... <eos>`` id lists: a word :class:`Vocab` encodes the spaCy
    tokens, a subword tokenizer (chapter 12) the raw captions."""
    if isinstance(vocab, Vocab):
        return [vocab.encode(tokens) for tokens in (split.de_tokens if lang == "de" else split.en_tokens)]
    return [vocab.encode(text, add_bos=True, add_eos=True) for text in (split.de if lang == "de" else split.en)]


def _truncate(ids: list[int], max_len: int) -> list[int]:
    return ids if len(ids) <= max_len else ids[: max_len - 1] + [EOS_IDX]


def pair_lengths(pairs: Sequence[Pair]) -> list[int]:
    """The length a pair occupies in a batch: the longer of its two sides."""
    return [max(len(src), len(tgt)) for src, tgt in pairs]


class TokenBatches:
    """Length-bucketed, padded batches ``(src (B, Ls), tgt (B, Lt))`` under a token budget.

    Iterate it once per epoch: with ``shuffle=True`` each pass draws a new grouping (pairs of
    equal length are shuffled before sorting) and a new batch order, reproducibly from
    ``seed``. Without shuffling, the batches are always the same, shortest first.

    Args:
        pairs: ``(src_ids, tgt_ids)`` lists, e.g. ``encode_split(...).pairs``.
        max_tokens: positions per batch, padding included: ``B * max(length) <= max_tokens``.
        pad_idx: the padding id.
        shuffle: reshuffle every pass (training) or not (evaluation).
        seed: the random seed of the shuffles.
        device: where the batches go (the model's device).
        collate: ``collate(pairs, pad_idx) -> (src, tgt)``; the course's by default, or yours.
        batcher: ``batcher(lengths, max_tokens) -> list of index lists``; the course's by default.
    """

    def __init__(self, pairs: Sequence[Pair], max_tokens: int, pad_idx: int = PAD_IDX, *,
                 shuffle: bool = True, seed: int = 0, device: torch.device | str | None = None,
                 collate: Callable[..., tuple[Tensor, Tensor]] = collate_batch,
                 batcher: Callable[[Sequence[int], int], list[list[int]]] = batch_by_tokens) -> None:
        if not pairs:
            raise ValueError("no sentence pairs to batch")
        self.pairs = list(pairs)
        self.lengths = pair_lengths(self.pairs)
        self.max_tokens = max_tokens
        self.pad_idx = pad_idx
        self.shuffle = shuffle
        self.seed = seed
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.collate = collate
        self.batcher = batcher
        self.epoch = 0  # passes started so far
        self._plans: dict[int, list[list[int]]] = {}

    def plan(self, epoch: int | None = None) -> list[list[int]]:
        """The batches (lists of pair indices) of pass ``epoch`` (default: the next pass)."""
        epoch = self.epoch if epoch is None else epoch
        if epoch not in self._plans:
            self._plans = {epoch: self._make_plan(epoch)}  # keep one: plans are cheap to redo
        return self._plans[epoch]

    def _make_plan(self, epoch: int) -> list[list[int]]:
        order = list(range(len(self.pairs)))
        rng = random.Random(self.seed * 1_000_003 + epoch)
        if self.shuffle:
            rng.shuffle(order)
        # The batcher sorts by length stably: shuffling first varies who shares a batch.
        batches = self.batcher([self.lengths[i] for i in order], self.max_tokens)
        batches = [[order[j] for j in batch] for batch in batches]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __len__(self) -> int:
        """Batches in the next pass."""
        return len(self.plan())

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        batches = self.plan()
        self.epoch += 1
        for batch in batches:
            src, tgt = self.collate([self.pairs[i] for i in batch], self.pad_idx)
            yield src.to(self.device), tgt.to(self.device)

    def padding_fraction(self) -> float:
        """The fraction of padded positions in the next pass's batches."""
        return padding_fraction(self.plan(), self.lengths)

    def tokens(self) -> int:
        """Real target tokens predicted per pass (``<bos>`` excluded, ``<eos>`` included)."""
        return sum(len(tgt) - 1 for _, tgt in self.pairs)
