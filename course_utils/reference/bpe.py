"""Byte-pair encoding (Sennrich et al., 2016, "Neural Machine Translation of Rare Words with Subword
Units"): the answer key of chapter 12.

BPE starts from characters and repeatedly merges the most frequent pair of adjacent symbols into a
new symbol, until the vocabulary has the size asked for. Frequent words end up as one symbol, rare
words as a few pieces, and no word is ever unknown.

The conventions of this course (every exercise of chapter 12 and its checks rely on them):

- **Pre-tokenization** (:func:`pretokenize`): text is cut into chunks by :data:`CHUNK_PATTERN`, a run
  of letters and digits or a run of punctuation, each with the one space before it if there is one,
  or a single whitespace character. Merges never cross a chunk, so " dog" and "." stay apart. The
  chunks, concatenated, give the text back exactly.
- **Words** are chunks split into characters, counted over the corpus: ``{(" ", "d", "o", "g"): 41, ...}``
  (:func:`word_counts`).
- **Pairs** are counted inside each word, every adjacent position, weighted by the word's count;
  ``("a", "a", "a")`` holds the pair ``("a", "a")`` twice.
- **A merge** replaces every occurrence of the pair in a word, scanning left to right without
  overlaps: ``("a", "a", "a")`` merged on ``("a", "a")`` gives ``("aa", "a")``.
- **The tie-break**: among pairs with the same count, the one that sorts first as a Python tuple of
  strings (code-point order) is merged: ``min(counts, key=lambda p: (-counts[p], p))``.
- **Encoding** applies the learned merges **by rank** (their order of learning): in each chunk, the
  adjacent pair with the lowest rank is merged everywhere, then the next, until no learned pair is
  left, which reproduces what training did to that word.
- **Vocabulary** ids: ``<pad>`` 0, ``<unk>`` 1, ``<bos>`` 2, ``<eos>`` 3 (chapter 9's specials, so its
  code runs unchanged; ``<unk>`` is never produced), then the 256 byte tokens ``<0x00>`` ... ``<0xFF>``,
  then the training alphabet in code-point order, then each merged symbol in the order learned (a
  symbol that two merges both produce gets one id).
- **Byte fallback**: a character never seen in training is written as the byte tokens of its UTF-8
  encoding, so every text, any script or emoji, encodes and decodes back exactly, and ``<unk>`` is
  never needed. Decoding joins the bytes of every token and reads them as UTF-8.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from course_utils.course.guard import answer_key
from course_utils.data.vocab import BOS_IDX, EOS_IDX, PAD_IDX, SPECIALS

__all__ = ["BPETokenizer", "BYTE_TOKENS", "CHUNK_PATTERN", "Pair", "TOKENIZER_FORMAT", "Word", "apply_merges", "count_pairs",
           "learn_merges", "merge_pair", "pretokenize", "train_tokenizer", "word_counts"]

Word = tuple[str, ...]
Pair = tuple[str, str]

#: A run of letters/digits or a run of punctuation, each with the space before it; or one whitespace.
CHUNK_PATTERN: Final[re.Pattern[str]] = re.compile(r" ?\w+| ?[^\w\s]+|\s")
#: The ``format`` of :meth:`BPETokenizer.to_dict`.
TOKENIZER_FORMAT: Final[str] = "course_utils.BPETokenizer/1"
#: The 256 byte tokens of the byte fallback, ids ``len(SPECIALS)`` to ``len(SPECIALS) + 255``.
BYTE_TOKENS: Final[tuple[str, ...]] = tuple(f"<0x{b:02X}>" for b in range(256))


def pretokenize(text: str) -> list[str]:
    """Cut ``text`` into the chunks that merges never cross; ``"".join(chunks) == text``."""
    return CHUNK_PATTERN.findall(text)


def word_counts(texts: Iterable[str]) -> dict[Word, int]:
    """Every chunk of ``texts``, split into characters, with how often it occurs."""
    chunks: Counter[str] = Counter()
    for text in texts:
        chunks.update(pretokenize(text))
    return {tuple(chunk): n for chunk, n in chunks.items()}


@answer_key("count_pairs")
def count_pairs(words: Mapping[Word, int]) -> Counter[Pair]:
    """How often each pair of adjacent symbols occurs, inside words, weighted by the words' counts."""
    counts: Counter[Pair] = Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += n
    return counts


def _merge_word(word: Word, pair: Pair) -> Word:
    """``word`` with every occurrence of ``pair`` replaced by one symbol, left to right, no overlaps."""
    a, b = pair
    out: list[str] = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


@answer_key("merge_pair")
def merge_pair(words: Mapping[Word, int], pair: Pair) -> dict[Word, int]:
    """A new word-count table in which every occurrence of ``pair`` is one symbol."""
    merged: dict[Word, int] = {}
    for word, n in words.items():
        new = _merge_word(word, pair) if len(word) > 1 else word
        merged[new] = merged.get(new, 0) + n
    return merged


@answer_key("learn_merges")
def learn_merges(words: Mapping[Word, int], num_merges: int) -> list[Pair]:
    """Learn up to ``num_merges`` merges, most frequent pair first (ties: the smallest pair).

    Fewer come back when no pair is left (every word a single symbol). Counting every pair again
    after each merge costs a pass over the whole corpus per merge; instead the pair counts are
    updated **incrementally**: a merge changes only the words that contain the pair, so only their
    pairs are taken out and put back. A heap of ``(-count, pair)`` entries finds the best pair;
    entries whose count is out of date are skipped when they surface.
    """
    symbols = [list(word) for word in words]
    freq = list(words.values())
    counts: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = {}
    for i, word in enumerate(symbols):
        for pair in zip(word, word[1:]):
            counts[pair] = counts.get(pair, 0) + freq[i]
            where.setdefault(pair, set()).add(i)
    heap = [(-n, pair) for pair, n in counts.items()]
    heapq.heapify(heap)
    merges: list[Pair] = []
    while len(merges) < num_merges and heap:
        negative, pair = heapq.heappop(heap)
        if counts.get(pair, 0) != -negative or negative == 0:
            continue  # an out-of-date entry: the pair's current count has its own entry
        merges.append(pair)
        changed: set[Pair] = set()
        for i in where.pop(pair, ()):
            word = symbols[i]
            if not any(word[j] == pair[0] and word[j + 1] == pair[1] for j in range(len(word) - 1)):
                continue  # an earlier merge in this word took the pair apart
            for old in zip(word, word[1:]):
                counts[old] -= freq[i]
                changed.add(old)
            word = list(_merge_word(tuple(word), pair))
            symbols[i] = word
            for new in zip(word, word[1:]):
                counts[new] = counts.get(new, 0) + freq[i]
                where.setdefault(new, set()).add(i)
                changed.add(new)
        counts.pop(pair, None)
        for other in changed:
            n = counts.get(other, 0)
            if n > 0:
                heapq.heappush(heap, (-n, other))
            else:
                counts.pop(other, None)
    return merges


@answer_key("apply_merges")
def apply_merges(chunk: str, ranks: Mapping[Pair, int]) -> list[str]:
    """Split ``chunk`` into characters and apply the learned merges by rank (lowest first).

    Args:
        chunk: one pre-tokenized chunk, e.g. ``" lower"``.
        ranks: each learned merge and its position in the list of merges.

    Returns:
        the chunk's symbols, e.g. ``[" low", "er"]``; ``"".join(symbols) == chunk``.
    """
    word = tuple(chunk)
    while len(word) > 1:
        pair = min(zip(word, word[1:]), key=lambda p: ranks.get(p, len(ranks)))
        if pair not in ranks:
            break
        word = _merge_word(word, pair)
    return list(word)


@answer_key("BPETokenizer")
class BPETokenizer:
    """Text <-> ids with learned merges, byte fallback and chapter 9's special ids.

    Args:
        merges: the learned merges, in order (their rank is their position).
        alphabet: the characters of the training text; any other character falls back to bytes.
    """

    pad_idx: Final[int] = PAD_IDX
    bos_idx: Final[int] = BOS_IDX
    eos_idx: Final[int] = EOS_IDX

    def __init__(self, merges: Sequence[Pair], alphabet: Iterable[str]) -> None:
        self.merges = [tuple(pair) for pair in merges]
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self.alphabet = frozenset(alphabet)
        tokens = [*SPECIALS, *BYTE_TOKENS, *sorted(self.alphabet), *(a + b for a, b in self.merges)]
        self.itos: list[str] = list(dict.fromkeys(tokens))  # one id per symbol, first come
        self.stoi: dict[str, int] = {token: i for i, token in enumerate(self.itos)}
        self._first_byte = len(SPECIALS)
        self._chunks: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def __len__(self) -> int:
        return len(self.itos)

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = self._chunks.get(chunk)
        if ids is None:
            ids = []
            for part in _known_runs(chunk, self.alphabet):
                if part[0] in self.alphabet:
                    ids += [self.stoi[s] for s in apply_merges.__wrapped__(part, self.ranks)]
                else:
                    ids += [self._first_byte + b for b in part.encode("utf-8")]
            self._chunks[chunk] = ids
        return ids

    def tokens(self, text: str) -> list[str]:
        """The symbols of ``text`` as strings (for showing)."""
        return [self.itos[i] for i in self.encode(text)]

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """``text`` -> ids, with ``<bos>``/``<eos>`` around when asked."""
        ids = [self.bos_idx] if add_bos else []
        for chunk in pretokenize(text):
            ids += self._encode_chunk(chunk)
        if add_eos:
            ids.append(self.eos_idx)
        return ids

    def to_dict(self) -> dict[str, Any]:
        """What :meth:`from_dict` needs (merges and alphabet; the ids follow from them), for a checkpoint."""
        return {"format": TOKENIZER_FORMAT, "merges": [list(pair) for pair in self.merges],
                "alphabet": sorted(self.alphabet)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BPETokenizer:
        if data.get("format") != TOKENIZER_FORMAT:
            raise ValueError(f"not a saved BPETokenizer (format {data.get('format')!r}, expected {TOKENIZER_FORMAT!r})")
        return cls([tuple(pair) for pair in data["merges"]], data["alphabet"])

    def decode(self, ids: Iterable[int]) -> str:
        """ids -> text; special tokens are skipped, bytes are joined and read as UTF-8."""
        data = bytearray()
        last_byte = self._first_byte + 255
        for i in ids:
            i = int(i)
            if i < self._first_byte:
                continue
            if i <= last_byte:
                data.append(i - self._first_byte)
            else:
                data += self.itos[i].encode("utf-8")
        return data.decode("utf-8", errors="replace")


def _known_runs(chunk: str, alphabet: frozenset[str]) -> list[str]:
    """``chunk`` cut where it switches between known and unknown characters: merges happen only
    between known characters, unknown ones become bytes."""
    runs: list[str] = []
    for ch in chunk:
        if runs and (ch in alphabet) == (runs[-1][0] in alphabet):
            runs[-1] += ch
        else:
            runs.append(ch)
    return runs


def train_tokenizer(texts: Iterable[str], vocab_size: int, *, learn=None, tokenizer_class=None) -> BPETokenizer:
    """Learn a tokenizer of (at most) ``vocab_size`` ids from ``texts``.

    The number of merges is what is left of ``vocab_size`` after the specials, the 256 byte tokens and
    the alphabet. ``learn`` and ``tokenizer_class`` default to the reference; chapter 12 passes the
    student's own.
    """
    learn = learn or learn_merges.__wrapped__
    tokenizer_class = tokenizer_class or BPETokenizer
    words = word_counts(texts)
    alphabet = {ch for word in words for ch in word}
    num_merges = vocab_size - len(SPECIALS) - len(BYTE_TOKENS) - len(alphabet)
    if num_merges < 0:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the {len(SPECIALS)} specials, 256 bytes "
                         f"and {len(alphabet)} characters of the text")
    return tokenizer_class(learn(words, num_merges), alphabet)
