"""Autograders for chapter 12_subwords: pair counting, one merge, learning merges (exactly and at speed),
applying them by rank, and the tokenizer (ids, byte fallback, lossless round trip).

Every answer is compared with :mod:`course_utils.reference.bpe` on small tables written to contain the
cases that go wrong (a symbol repeated three times, ties, words of one symbol), on Sennrich et al.'s
worked example and on Multi30k's captions. A mismatch is explained: at the first merge that differs
the counts are recomputed, so the message says whether a tie was broken the other way, the counts were
out of date or the word frequencies were ignored.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from course_utils.checks.harness import Check, describe, fail
from course_utils.data.vocab import SPECIALS
from course_utils.reference import bpe as _bpe
from course_utils.reference.bpe import BYTE_TOKENS, Pair, Word, word_counts

__all__ = ["SENNRICH_EXAMPLE", "check_apply_merges", "check_bpe_tokenizer", "check_count_pairs",
           "check_learn_merges", "check_merge_pair"]

# The answer key, unwrapped: the checks compute expectations with it while the student's code runs
# under the guard that refuses the wrapped objects.
_count_pairs = _bpe.count_pairs.__wrapped__
_merge_pair = _bpe.merge_pair.__wrapped__
_learn_merges = _bpe.learn_merges.__wrapped__
_apply_merges = _bpe.apply_merges.__wrapped__

#: Sennrich et al. (2016), section 3.2: four words with their counts, ``</w>`` marking a word's end.
SENNRICH_EXAMPLE: dict[Word, int] = {("l", "o", "w", "</w>"): 5, ("l", "o", "w", "e", "r", "</w>"): 2,
                                     ("n", "e", "w", "e", "s", "t", "</w>"): 6,
                                     ("w", "i", "d", "e", "s", "t", "</w>"): 3}

_TIE_RULE = ("the most frequent pair; among pairs of equal count, the one that sorts first as a tuple of "
             "strings: min(counts, key=lambda pair: (-counts[pair], pair))")


def _random_table(seed: int, words: int, symbols: str = "abcde") -> dict[Word, int]:
    """Words of 1 to 7 symbols over a small alphabet (so that pairs repeat, and ``a a a`` occurs),
    some symbols already merged, with counts from 1 to 9."""
    rng = random.Random(seed)
    pool = list(symbols) + ["ab", "ca", " "]
    table: dict[Word, int] = {("a", "a", "a"): rng.randint(1, 9), ("b",): 4, ("a", "b", "c", "a", "b"): 2}
    while len(table) < words:
        word = tuple(rng.choice(pool) for _ in range(rng.randint(1, 7)))
        table[word] = rng.randint(1, 9)
    return table


def _as_counts(result: Any, what: str) -> dict[Pair, int]:
    if not isinstance(result, Mapping):
        fail(f"{what} should return a dict (or Counter) from pairs to counts, but it returned {describe(result)}.")
    for pair, n in result.items():
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
            fail(f"{what}: the keys should be pairs of symbols, tuples of two strings like ('l', 'o'), but one key "
                 f"is {pair!r}.")
        if not isinstance(n, int):
            fail(f"{what}: counts should be ints, but the count of {pair!r} is {describe(n)}.")
    return {pair: n for pair, n in result.items() if n != 0}


def _copy(table: Mapping[Word, int]) -> dict[Word, int]:
    return {tuple(word): n for word, n in table.items()}


def _expect_unchanged(table: Mapping[Word, int], before: dict[Word, int], what: str) -> None:
    if dict(table) != before:
        fail(f"{what} changed the table it was given. Build and return a new dict: the caller still needs the "
             f"old one (the trainer compares before and after, the check reuses it).")


# --------------------------------------------------------------------------------------
# count_pairs(words) -> Counter of adjacent pairs
# --------------------------------------------------------------------------------------


def _pair_variants(table: Mapping[Word, int]) -> dict[str, dict[Pair, int]]:
    """What the usual mistakes count on ``table``, each under its diagnosis."""
    unweighted: Counter[Pair] = Counter()
    once: Counter[Pair] = Counter()
    short: Counter[Pair] = Counter()
    for word, n in table.items():
        pairs = list(zip(word, word[1:]))
        unweighted.update(pairs)
        once.update({pair: n for pair in set(pairs)})
        for pair in pairs[:-1]:
            short[pair] += n
    return {
        "the word counts are ignored: each word adds 1 for each pair it holds, not its count": dict(unweighted),
        "a pair repeated inside a word is counted once (a set of pairs per word); ('a', 'a', 'a') holds "
        "('a', 'a') twice": dict(once),
        "the last pair of each word is missed: zip(word, word[1:]) pairs every symbol with the next": dict(short),
    }


def check_count_pairs(count_pairs: Callable[[Mapping[Word, int]], Any], seed: int = 0, words: int = 12) -> None:
    """Check ``count_pairs(words) -> {pair: count}``: adjacent pairs inside each word, weighted by the word's
    count, never across two words; the table is left unchanged."""
    check = Check("count_pairs")
    check.refuse_answer_key(count_pairs)
    tables = [("Sennrich et al.'s example", SENNRICH_EXAMPLE), (f"a random table (seed {seed})",
              _random_table(seed, words)), ("a table of one-symbol words", {("x",): 3, ("y",): 1}), ("{}", {})]
    for name, table in tables:
        before = _copy(table)
        what = f"count_pairs({name})"
        got = _as_counts(check.call(count_pairs, table, what=what), what)
        _expect_unchanged(table, before, what)
        want = {pair: n for pair, n in _count_pairs(before).items() if n}
        if got == want:
            continue
        message = f"{what} is wrong."
        extra = sorted(set(got) - set(want))
        if extra:
            message += (f"\nIt holds pairs that are in no word, e.g. {extra[0]!r}.\nLikely mistake: pairs are counted "
                        f"across word boundaries (the words were joined into one sequence); count inside each word "
                        f"only: a merge never crosses words.")
        else:
            wrong = next(pair for pair in want if got.get(pair, 0) != want[pair])
            message += f"\nThe pair {wrong!r} should be counted {want[wrong]} times, not {got.get(wrong, 0)}."
            for diagnosis, variant in _pair_variants(before).items():
                if got == variant:
                    message += f"\nLikely mistake: {diagnosis}."
                    break
        fail(message)
    check.passed("pairs inside words, weighted by counts, repeats counted, nothing across words")


# --------------------------------------------------------------------------------------
# merge_pair(words, pair) -> new table
# --------------------------------------------------------------------------------------


def _merge_right_to_left(word: Word, pair: Pair) -> Word:
    return tuple(reversed(_merge_word_reversed(tuple(reversed(word)), (pair[1], pair[0]), pair[0] + pair[1])))


def _merge_word_reversed(word: Word, pair: Pair, joined: str) -> Word:
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(joined)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _merge_first_only(word: Word, pair: Pair) -> Word:
    for i in range(len(word) - 1):
        if (word[i], word[i + 1]) == pair:
            return word[:i] + (pair[0] + pair[1],) + word[i + 2:]
    return word


def check_merge_pair(merge_pair: Callable[[Mapping[Word, int], Pair], Any], seed: int = 0, words: int = 12) -> None:
    """Check ``merge_pair(words, pair) -> new table``: every occurrence of the pair in every word becomes one
    symbol, left to right without overlaps, counts kept, other words unchanged, the input untouched."""
    check = Check("merge_pair")
    check.refuse_answer_key(merge_pair)
    table = _random_table(seed, words)
    counts = _count_pairs(table)
    cases = [("a random table", table, ("a", "a")), ("a random table", table, ("a", "b")),
             ("a random table", table, max(sorted(counts), key=counts.__getitem__)),
             ("Sennrich et al.'s example", SENNRICH_EXAMPLE, ("e", "s")),
             ("a table without the pair", {("x", "y"): 2}, ("y", "x"))]
    for name, words_in, pair in cases:
        before = _copy(words_in)
        what = f"merge_pair({name}, {pair!r})"
        got = check.call(merge_pair, words_in, pair, what=what)
        _expect_unchanged(words_in, before, what)
        if not isinstance(got, Mapping):
            fail(f"{what} should return a dict from words (tuples of symbols) to counts, but it returned "
                 f"{describe(got)}.")
        bad_key = next((w for w in got if not (isinstance(w, tuple) and all(isinstance(s, str) for s in w))), None)
        if bad_key is not None:
            fail(f"{what}: the words of the new table should stay tuples of symbols, like ('lo', 'w'), but one is "
                 f"{bad_key!r}.\nLikely mistake: the symbols were joined into a string; keep a tuple.")
        want = _merge_pair(before, pair)
        got = dict(got)
        if got == want:
            continue
        joined = pair[0] + pair[1]
        message = f"{what} is wrong."
        wrong = next((w for w in want if got.get(w) != want[w]), None)
        original = next((w for w in before if _merge_pair({w: 1}, pair) == {wrong: 1}), None) if wrong else None
        if wrong is not None:
            message += f"\nThe word {original!r} (count {before.get(original)}) should become {wrong!r}."
        variants = {
            "only the first occurrence in each word is merged; merge every occurrence, scanning left to right":
                {_merge_first_only(w, pair): n for w, n in before.items()},
            "the scan runs right to left (or overlapping pairs are taken from the end): ('a', 'a', 'a') merged "
            "on ('a', 'a') is ('aa', 'a'): scan left to right and skip past each merge":
                {_merge_right_to_left(w, pair): n for w, n in before.items()},
            "words without the pair were dropped: keep every word, changed or not":
                {w: n for w, n in want.items() if joined in w},
        }
        for diagnosis, variant in variants.items():
            if got == variant:
                message += f"\nLikely mistake: {diagnosis}."
                break
        else:
            if sum(got.values()) != sum(want.values()):
                message += (f"\nThe counts add up to {sum(got.values())}, expected {sum(want.values())}: every word "
                            f"keeps its count.")
        fail(message)
    check.passed("every occurrence merged left to right, counts kept, a new table returned")


# --------------------------------------------------------------------------------------
# learn_merges(words, num_merges) -> list of pairs
# --------------------------------------------------------------------------------------


class _TimeUp(BaseException):
    """Raised by the CPU-time limit; a BaseException, so that ``except Exception`` cannot swallow it."""


def _with_cpu_limit(seconds: float, run: Callable[[], Any]) -> Any:
    """Run ``run()``, interrupted after ``seconds`` of CPU time (SIGPROF, so that a wall-clock alarm used by
    whoever runs the check is left alone; main thread only)."""
    def ring(signum: int, frame: Any) -> None:
        raise _TimeUp()

    if threading.current_thread() is not threading.main_thread():
        return run()  # signals reach the main thread only: no limit here
    previous = signal.signal(signal.SIGPROF, ring)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        return run()
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def _first_in_insertion_order(table: Mapping[Word, int], num_merges: int) -> list[Pair]:
    table, merges = dict(table), []
    for _ in range(num_merges):
        counts = _count_pairs(table)
        if not counts:
            break
        pair = max(counts, key=counts.__getitem__)  # the first of the most frequent, as dict order gives it
        merges.append(pair)
        table = _merge_pair(table, pair)
    return merges


def _explain_merges(got: list[Any], want: list[Pair], table: Mapping[Word, int], what: str) -> str:
    """Where ``got`` leaves ``want``, and why: the counts of the table at that point."""
    bad = next((x for x in got if not (isinstance(x, tuple) and len(x) == 2 and all(isinstance(s, str) for s in x))),
               None)
    if bad is not None:
        return (f"{what} should return a list of pairs, tuples of two strings like ('e', 's'), but it holds "
                f"{bad!r}.")
    i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    if i == min(len(got), len(want)):
        if len(got) > len(want):
            return (f"{what} returned {len(got)} merges, but only {len(want)} are possible: once every word is a "
                    f"single symbol no pair is left; stop there (your merge {len(want)} is {got[len(want)]!r}).")
        return (f"{what} returned {len(got)} merges; the first {i} are right but {len(want)} were asked for and "
                f"possible (the next one is {want[i]!r}).")
    state = dict(table)
    for pair in want[:i]:
        state = _merge_pair(state, pair)
    counts = _count_pairs(state)
    message = (f"{what}: the first {i} merges are right, merge {i} is not: it should be {want[i]!r} (count "
               f"{counts[want[i]]} at that point), but it is {got[i]!r} (count {counts.get(got[i], 0)}).")
    if counts.get(got[i], 0) == counts[want[i]]:
        message += f"\nLikely mistake: a tie broken the other way. The rule is {_TIE_RULE}."
        if got[: i + 1] == _first_in_insertion_order(table, i + 1):
            message += " Your trainer takes the first pair it met (max() in dict order), which depends on the order of the words."
    else:
        unweighted = _count_pairs({w: 1 for w in state})
        if unweighted.get(got[i], 0) == max(unweighted.values()):
            message += ("\nLikely mistake: the word counts are ignored: weight each word's pairs by its count.")
        elif counts.get(got[i], 0) < counts[want[i]]:
            message += ("\nLikely mistake: the pair counts are out of date after a merge: when a word changes, take "
                        "its old pairs out of the counts and add its new ones (the pairs around the merged symbol "
                        "change too).")
    return message


def _multi30k_words() -> dict[Word, int]:
    from course_utils.data import load_multi30k

    return word_counts(load_multi30k().train.en)


def check_learn_merges(learn_merges: Callable[[Mapping[Word, int], int], Any], seed: int = 0, words: int = 40,
                       speed: bool = True, speed_merges: int = 3000) -> None:
    """Check ``learn_merges(words, num_merges) -> [pair, ...]``: exactly the reference's merges (most frequent
    first, ties to the smallest pair) on Sennrich et al.'s example, on random tables full of ties and, with
    ``speed``, on Multi30k's English training captions within ``max(10 s, 20 x the reference's time)`` of CPU
    time: an incremental trainer passes (the course's heap, or a scan for the best pair: about 14 x), recounting
    every pair after every merge (about 100 x) does not."""
    check = Check("learn_merges")
    check.refuse_answer_key(learn_merges)
    cases = [("Sennrich et al.'s example", SENNRICH_EXAMPLE, 10),
             (f"a random table (seed {seed})", _random_table(seed, words), 25),
             ("a table that runs out of pairs", {("a", "b", "c"): 2, ("c", "a"): 1}, 10),
             ("any table", {("a", "b"): 1}, 0)]
    for name, table, n in cases:
        before = _copy(table)
        what = f"learn_merges({name}, {n})"
        got = check.call(learn_merges, table, n, what=what)
        _expect_unchanged(table, before, what)
        if not isinstance(got, (list, tuple)):
            fail(f"{what} should return a list of pairs, but it returned {describe(got)}.")
        got = [tuple(x) if isinstance(x, list) else x for x in got]
        want = _learn_merges(before, n)
        if got != want:
            fail(_explain_merges(got, want, before, what))
    summary = "the reference's merges on Sennrich et al.'s example and tables full of ties"
    if speed:
        table = _multi30k_words()
        start = time.process_time()
        want = _learn_merges(table, speed_merges)
        reference_seconds = time.process_time() - start
        limit = max(10.0, 20 * reference_seconds)
        what = f"learn_merges(Multi30k's English training words, {speed_merges})"
        try:
            got = _with_cpu_limit(limit, lambda: check.call(learn_merges, table, speed_merges, what=what))
        except _TimeUp:
            fail(f"{what} was stopped after {limit:.0f} s; the course's version takes {reference_seconds:.1f} s on this "
                 f"machine. Likely cause: all pairs are counted again after every merge, a pass over the whole "
                 f"corpus per merge. Update the counts incrementally instead: keep, for each pair, the words that "
                 f"contain it; a merge changes only those words, so take their old pairs out of the counts and add "
                 f"their new ones. (Finding the best pair with a heap of (-count, pair) makes it faster still.)")
        got = [tuple(x) if isinstance(x, list) else x for x in got] if isinstance(got, (list, tuple)) else got
        if got != want:
            fail(_explain_merges(got, want, table, what) if isinstance(got, list) else
                 f"{what} should return a list of pairs, but it returned {describe(got)}.")
        summary += f"; {speed_merges:,} merges on Multi30k, within the time limit"
    check.passed(summary)


# --------------------------------------------------------------------------------------
# apply_merges(chunk, ranks) -> symbols
# --------------------------------------------------------------------------------------


_CHECK_TEXT = ("the lower newest widest low slower lowest wider news, the newer one. "
               "a aaa aaaa aaaaa abab ababab news newest lower lowest")


def _small_ranks() -> dict[Pair, int]:
    merges = _learn_merges(word_counts([_CHECK_TEXT]), 30)
    return {pair: rank for rank, pair in enumerate(merges)}


def _greedy_longest(chunk: str, ranks: Mapping[Pair, int]) -> list[str]:
    vocab = set(chunk) | {a + b for a, b in ranks}
    out, i = [], 0
    while i < len(chunk):
        j = max(k for k in range(i + 1, len(chunk) + 1) if chunk[i:k] in vocab or k == i + 1)
        out.append(chunk[i:j])
        i = j
    return out


def _first_pair_in_word(chunk: str, ranks: Mapping[Pair, int]) -> list[str]:
    word = list(chunk)
    while True:
        i = next((k for k in range(len(word) - 1) if (word[k], word[k + 1]) in ranks), None)
        if i is None:
            return word
        word[i:i + 2] = [word[i] + word[i + 1]]


def check_apply_merges(apply_merges: Callable[[str, Mapping[Pair, int]], Any], seed: int = 0) -> None:
    """Check ``apply_merges(chunk, ranks) -> symbols``: the learned merges applied to one chunk by rank, lowest
    first, every occurrence, until no learned pair is left (what training did to the word)."""
    check = Check("apply_merges")
    check.refuse_answer_key(apply_merges)
    ranks = _small_ranks()
    rng = random.Random(seed)
    chunks = [" lowest", " newest", " aaaaa", " ababab", "lower", " slowest", " wonder", ".", " ", "x",
              *(" " + "".join(rng.choice("lowensta") for _ in range(rng.randint(2, 9))) for _ in range(20))]
    for chunk in chunks:
        what = f"apply_merges({chunk!r}, ranks)"
        got = check.call(apply_merges, chunk, dict(ranks), what=what)
        if isinstance(got, tuple):
            got = list(got)
        if not isinstance(got, list) or not all(isinstance(s, str) for s in got):
            fail(f"{what} should return the chunk's symbols as a list of strings, but it returned {describe(got)}.")
        want = _apply_merges(chunk, ranks)
        if got == want:
            continue
        message = f"{what} returned {got!r}, expected {want!r}."
        if "".join(got) != chunk:
            message += " Joined together, the symbols must give the chunk back."
        elif got == _greedy_longest(chunk, ranks):
            message += ("\nLikely mistake: the longest known symbol is taken from the left (as WordPiece does). BPE "
                        "replays its merges: merge the pair with the LOWEST rank anywhere in the chunk, then the next, "
                        "until no learned pair is left.")
        elif got == _first_pair_in_word(chunk, ranks):
            message += ("\nLikely mistake: the first learned pair found from the left is merged, whatever its rank. "
                        "Merge by rank: the pair learned earliest goes first, wherever it is in the chunk.")
        fail(message)
    check.passed(f"merges applied by rank on {len(chunks)} chunks (repeats, unseen words, single characters)")


# --------------------------------------------------------------------------------------
# BPETokenizer(merges, alphabet): itos/stoi/vocab_size, encode(text, add_bos, add_eos), decode(ids)
# --------------------------------------------------------------------------------------


_ROUND_TRIP = ["The lower newest widest.", "aaaaa ababab slowest wonder newer lowest welw weenai", "  two spaces,\ttab and\nnewline ", "Ünïcödé: Grüße aus Köln! 😀 €5",
               "", "x", "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt."]


def check_bpe_tokenizer(BPETokenizer: type, seed: int = 0) -> None:
    """Check ``BPETokenizer(merges, alphabet)``: ids (specials 0-3, byte tokens 4-259, the alphabet sorted, merged
    symbols in order), ``encode`` like the reference's, byte fallback for unseen characters, ``<bos>``/``<eos>``
    when asked, and ``decode(encode(text)) == text`` for any text."""
    if not isinstance(BPETokenizer, type):
        fail(f"pass the class BPETokenizer itself to the check, not {describe(BPETokenizer)}.")
    check = Check("BPETokenizer")
    check.refuse_answer_key(BPETokenizer)
    rng = random.Random(seed)
    words = word_counts([_CHECK_TEXT, "Ein Mann mit einem Hut."])
    alphabet = {ch for word in words for ch in word}
    merges = _learn_merges(words, 25 + rng.randint(0, 10))
    # A symbol that two merges both make (" lo" + "wer" after " low" + "er"): it must keep one id.
    made, learned = {a + b for a, b in merges}, set(merges)
    symbols = sorted(alphabet) + [a + b for a, b in merges]
    merges.append(next(((x, y) for x in symbols for y in symbols if x + y in made and (x, y) not in learned)))
    reference = _bpe.BPETokenizer(merges, alphabet)  # built before the guard is on
    tok = check.call(BPETokenizer, list(merges), set(alphabet), what="BPETokenizer(merges, alphabet)")
    for name in ("itos", "stoi", "vocab_size"):
        if not hasattr(tok, name):
            fail(f"BPETokenizer has no attribute {name}: in __init__, create self.{name} (see the exercise).")
    itos = list(tok.itos)
    want = reference.itos
    if itos[: len(SPECIALS)] != list(SPECIALS):
        fail(f"the first ids should be chapter 9's specials {list(SPECIALS)}, but itos starts {itos[:4]!r}.")
    if itos[len(SPECIALS): len(SPECIALS) + 256] != list(BYTE_TOKENS):
        fail(f"ids 4 to 259 should be the 256 byte tokens '<0x00>' ... '<0xFF>' (f'<0x{{b:02X}}>'), but they start "
             f"{itos[4:7]!r}.")
    letters = sorted(alphabet)
    if itos[260: 260 + len(letters)] != letters:
        hint = (" They are there but not sorted: sort them (code-point order), so that the ids do not depend on the "
                "order of a set." if sorted(itos[260: 260 + len(letters)]) == letters else "")
        fail(f"after the bytes come the {len(letters)} characters of the alphabet, sorted: {letters[:8]!r}..., but "
             f"itos has {itos[260: 268]!r}....{hint}")
    if itos != want:
        k = next((i for i, (a, b) in enumerate(zip(itos, want)) if a != b), min(len(itos), len(want)))
        hint = ""
        if len(itos) > len(want):
            hint = ("\nLikely mistake: a symbol that two merges both produce got two ids; give each symbol one id "
                    "(the first).")
        fail(f"after the alphabet come the merged symbols, a + b for each merge in order: id {k} should be "
             f"{want[k] if k < len(want) else 'nothing'!r}, but itos has {itos[k] if k < len(itos) else 'nothing'!r} "
             f"({len(itos)} ids, expected {len(want)}).{hint}")
    stoi = dict(tok.stoi)
    if stoi != reference.stoi:
        fail("stoi should map each symbol of itos to its id: {s: i for i, s in enumerate(itos)}.")
    if tok.vocab_size != len(want):
        fail(f"vocab_size is {describe(tok.vocab_size)}, expected {len(want)} (len(itos)).")
    for text in _ROUND_TRIP:
        what = f"encode({text!r})"
        ids = check.call(tok.encode, text, what=what)
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            fail(f"{what} should return a list of ints, but it returned {describe(ids)}.")
        expected = reference.encode(text)
        if ids != expected:
            unknown = [ch for ch in text if ch not in alphabet]
            message = f"{what} returned {ids}, expected {expected}."
            if 1 in ids and unknown:
                message += (f"\nLikely mistake: characters never seen in training ({unknown[0]!r}) became <unk> (id 1). "
                            f"The course falls back to bytes: such a character is written as the byte tokens of its "
                            f"UTF-8 encoding, id 4 + byte, so that nothing is ever lost.")
            elif [i for i in ids if i >= 4] and "".join(reference.itos[i] for i in ids if i >= 260) != "".join(
                    reference.itos[i] for i in expected if i >= 260):
                message += " The symbols differ: pre-tokenize with pretokenize(text) and apply the merges to each chunk."
            fail(message)
        back = check.call(tok.decode, ids, what=f"decode(encode({text!r}))")
        if back != text:
            message = f"decode(encode(s)) should give s back exactly: s = {text!r}, decode gave {describe(back)}."
            if isinstance(back, str) and "".join(back.split()) == "".join(text.split()):
                message += ("\nLikely mistake: spaces are added or dropped (or whitespace normalised); the symbols "
                            "already hold every space, tab and newline: join them with ''.join(...), nothing else.")
            elif isinstance(back, str) and "\ufffd" in back or (isinstance(back, str) and "<0x" in back):
                message += ("\nLikely mistake: byte tokens are decoded one by one (or shown as text); collect the bytes "
                            "of all tokens into one bytes object and decode it as UTF-8 once: a character can take "
                            "several bytes.")
            fail(message)
    text = "the newest"
    ids = check.call(tok.encode, text, add_bos=True, add_eos=True, what=f"encode({text!r}, add_bos=True, add_eos=True)")
    expected = reference.encode(text, add_bos=True, add_eos=True)
    if ids != expected:
        fail(f"encode({text!r}, add_bos=True, add_eos=True) returned {ids}, expected {expected}: <bos> (id 2) first, "
             f"<eos> (id 3) last.")
    back = check.call(tok.decode, [0, *expected, 0], what="decode([<pad>, <bos>, ..., <eos>, <pad>])")
    if back != text:
        fail(f"decode should skip the special tokens (<pad>, <unk>, <bos>, <eos>): decoding {[0, *expected, 0]} gave "
             f"{back!r}, expected {text!r}.")
    check.passed("ids laid out as chapter 9 expects, encode by rank, byte fallback, lossless on "
                 f"{len(_ROUND_TRIP)} texts (tabs, newlines, emoji), <bos>/<eos>, specials skipped")
