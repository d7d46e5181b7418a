"""Known-wrong and correct answers for chapter 12_subwords's checks.

The mutants are the mistakes a student who learned BPE from a blog post or the paper's snippet makes: pairs
counted across word boundaries, word counts ignored, ties broken by first occurrence, merges replayed
greedily from the left, unseen characters mapped to ``<unk>``, spaces lost on decoding. The correct answers
are written differently from the reference (another data layout, another search for the best pair, another
byte handling) and must pass every visible and hidden call.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections import Counter, defaultdict

from course_utils import reference
from course_utils.reference.bpe import BYTE_TOKENS, pretokenize
from tests.support import Bug, Catalogue, Mutant

# --------------------------------------------------------------------------------------
# count_pairs
# --------------------------------------------------------------------------------------


def count_pairs_defaultdict(words):
    counts = defaultdict(int)
    for word, n in words.items():
        for i in range(len(word) - 1):
            counts[word[i], word[i + 1]] += n
    return dict(counts)


def count_pairs_counter_sum(words):
    return sum((Counter({pair: n}) for word, n in words.items() for pair in zip(word, word[1:])), Counter())


def count_pairs_stub(words):
    raise NotImplementedError()


def count_pairs_across_words(words):
    sequence = [symbol for word in words for symbol in word]
    return Counter(zip(sequence, sequence[1:]))


def count_pairs_unweighted(words):
    return Counter(pair for word in words for pair in zip(word, word[1:]))


def count_pairs_once_per_word(words):
    counts = Counter()
    for word, n in words.items():
        for pair in set(zip(word, word[1:])):
            counts[pair] += n
    return counts


def count_pairs_misses_last(words):
    counts = Counter()
    for word, n in words.items():
        for pair in zip(word[:-1], word[1:-1]):
            counts[pair] += n
    return counts


def count_pairs_wraps_the_reference(words):
    return reference.count_pairs(words)


# --------------------------------------------------------------------------------------
# merge_pair
# --------------------------------------------------------------------------------------


def merge_pair_recursive(words, pair):
    def merge(word):
        if len(word) < 2:
            return word
        if word[:2] == pair:
            return (word[0] + word[1],) + merge(word[2:])
        return word[:1] + merge(word[1:])

    out = Counter()
    for word, n in words.items():
        out[merge(tuple(word))] += n
    return dict(out)


def merge_pair_with_markers(words, pair):
    # symbols joined by a character no caption holds, the pair replaced with a regular expression
    sep = "\x1f"
    pattern = re.compile(r"(?<![^" + sep + r"])" + re.escape(pair[0] + sep + pair[1]) + r"(?![^" + sep + r"])")
    out = {}
    for word, n in words.items():
        new = tuple(pattern.sub(pair[0] + pair[1], sep.join(word)).split(sep)) if word else word
        out[new] = out.get(new, 0) + n
    return out


def merge_pair_stub(words, pair):
    raise NotImplementedError()


def merge_pair_first_only(words, pair):
    out = {}
    for word, n in words.items():
        word = list(word)
        for i in range(len(word) - 1):
            if (word[i], word[i + 1]) == pair:
                word[i:i + 2] = [pair[0] + pair[1]]
                break
        out[tuple(word)] = n
    return out


def merge_pair_right_to_left(words, pair):
    out = {}
    for word, n in words.items():
        word, i = list(word), len(word) - 2
        while i >= 0:
            if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                word[i:i + 2] = [pair[0] + pair[1]]
                i -= 2
            else:
                i -= 1
        out[tuple(word)] = n
    return out


def merge_pair_drops_other_words(words, pair):
    return {new: n for new, n in reference.merge_pair.__wrapped__(words, pair).items()
            if pair[0] + pair[1] in new}


def merge_pair_in_place(words, pair):
    merged = reference.merge_pair.__wrapped__(words, pair)
    words.clear()
    words.update(merged)
    return words


def merge_pair_string_keys(words, pair):
    return {" ".join(word): n for word, n in reference.merge_pair.__wrapped__(words, pair).items()}


def merge_pair_wraps_the_reference(words, pair):
    return reference.merge_pair(words, pair)


# --------------------------------------------------------------------------------------
# learn_merges
# --------------------------------------------------------------------------------------


def learn_merges_buckets(words, num_merges):
    """Incremental counts; the best pair searched among those of the highest count only (count -> pairs)."""
    words_list = [list(w) for w in words]
    freq = list(words.values())
    counts, where, by_count = Counter(), defaultdict(set), defaultdict(set)
    for i, w in enumerate(words_list):
        for p in zip(w, w[1:]):
            counts[p] += freq[i]
            where[p].add(i)
    for p, n in counts.items():
        by_count[n].add(p)

    def change(p, delta):
        if counts[p] > 0:
            by_count[counts[p]].discard(p)
        counts[p] += delta
        if counts[p] > 0:
            by_count[counts[p]].add(p)

    merges = []
    while len(merges) < num_merges:
        live = [n for n, ps in by_count.items() if ps]
        if not live:
            break
        best = min(by_count[max(live)])
        merges.append(best)
        for i in list(where.pop(best, ())):
            old = words_list[i]
            new, k = [], 0
            while k < len(old):
                if k + 1 < len(old) and (old[k], old[k + 1]) == best:
                    new.append(old[k] + old[k + 1])
                    k += 2
                else:
                    new.append(old[k])
                    k += 1
            if new == old:
                continue
            for p in zip(old, old[1:]):
                change(p, -freq[i])
            for p in zip(new, new[1:]):
                change(p, freq[i])
                where[p].add(i)
            words_list[i] = new
    return merges


def learn_merges_word_deltas(words, num_merges):
    """Incremental, with a heap; each changed word contributes the difference of its pair Counters."""
    def pairs(word):
        return Counter(zip(word, word[1:]))

    def merged(word, pair):
        out, k = [], 0
        while k < len(word):
            if word[k:k + 2] == pair:
                out.append(pair[0] + pair[1])
                k += 2
            else:
                out.append(word[k])
                k += 1
        return tuple(out)

    table, freq = [tuple(w) for w in words], list(words.values())
    counts, index = Counter(), defaultdict(set)
    for i, word in enumerate(table):
        for p, c in pairs(word).items():
            counts[p] += c * freq[i]
            index[p].add(i)
    heap = [(-c, p) for p, c in counts.items()]
    heapq.heapify(heap)
    merges = []
    while heap and len(merges) < num_merges:
        c, p = heapq.heappop(heap)
        if c == 0 or counts.get(p, 0) != -c:
            continue
        merges.append(p)
        changed = set()
        for i in index.pop(p):
            new = merged(table[i], p)
            if new == table[i]:
                continue
            delta = pairs(new)
            delta.subtract(pairs(table[i]))
            for q, d in delta.items():
                if d:
                    counts[q] += d * freq[i]
                    changed.add(q)
                if d > 0:
                    index[q].add(i)
            table[i] = new
        for q in changed:
            if counts[q] > 0:
                heapq.heappush(heap, (-counts[q], q))
    return merges


def learn_merges_stub(words, num_merges):
    raise NotImplementedError()


def _recount(words, num_merges, choose):
    merge = reference.merge_pair.__wrapped__
    count = reference.count_pairs.__wrapped__
    merges = []
    for _ in range(num_merges):
        counts = count(words)
        if not counts:
            break
        pair = choose(counts, words)
        merges.append(pair)
        words = merge(words, pair)
    return merges


def learn_merges_naive(words, num_merges):
    """Correct merges, but every pair counted again after every merge: too slow for the corpus."""
    return _recount(words, num_merges, lambda counts, words: min(counts, key=lambda p: (-counts[p], p)))


def learn_merges_first_occurrence(words, num_merges):
    return _recount(words, num_merges, lambda counts, words: max(counts, key=counts.__getitem__))


def learn_merges_unweighted(words, num_merges):
    def choose(counts, words):
        plain = Counter(p for w in words for p in zip(w, w[1:]))
        return min(plain, key=lambda p: (-plain[p], p))

    return _recount(words, num_merges, choose)


def learn_merges_stale_neighbours(words, num_merges):
    """Incremental, but only the merged pair's own count is taken out: its neighbours keep old counts."""
    symbols = [list(w) for w in words]
    freq = list(words.values())
    counts = Counter()
    for i, w in enumerate(symbols):
        for p in zip(w, w[1:]):
            counts[p] += freq[i]
    merges = []
    while len(merges) < num_merges and counts:
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        del counts[best]
        for i, w in enumerate(symbols):
            new = list(reference.merge_pair.__wrapped__({tuple(w): 1}, best))[0]
            if list(new) != w:
                for p in zip(new, new[1:]):
                    if best[0] + best[1] in p:
                        counts[p] += freq[i]
                symbols[i] = list(new)
    return merges


def learn_merges_never_stops(words, num_merges):
    merges = reference.learn_merges.__wrapped__(words, num_merges)
    while merges and len(merges) < num_merges:
        merges.append(merges[-1])
    return merges


def learn_merges_strings(words, num_merges):
    return [" ".join(pair) for pair in reference.learn_merges.__wrapped__(words, num_merges)]


def learn_merges_wraps_the_reference(words, num_merges):
    return reference.learn_merges(words, num_merges)


# --------------------------------------------------------------------------------------
# apply_merges
# --------------------------------------------------------------------------------------


def apply_merges_in_list_order(chunk, ranks):
    """Sennrich et al.'s encoder: every merge in the order learned, each applied everywhere."""
    word = list(chunk)
    for pair in sorted(ranks, key=ranks.get):
        k = 0
        while k < len(word) - 1:
            if (word[k], word[k + 1]) == pair:
                word[k:k + 2] = [pair[0] + pair[1]]
            k += 1
    return word


def apply_merges_priority(chunk, ranks):
    word = list(chunk)
    while True:
        candidates = [(ranks[p], k) for k, p in enumerate(zip(word, word[1:])) if p in ranks]
        if not candidates:
            return word
        rank = min(candidates)[0]
        pair = next(p for p, r in ranks.items() if r == rank)
        out, k = [], 0
        while k < len(word):
            if k + 1 < len(word) and (word[k], word[k + 1]) == pair:
                out.append(word[k] + word[k + 1])
                k += 2
            else:
                out.append(word[k])
                k += 1
        word = out


def apply_merges_stub(chunk, ranks):
    raise NotImplementedError()


def apply_merges_longest_match(chunk, ranks):
    """WordPiece's rule: from the left, the longest piece that is a learned symbol (or one character)."""
    symbols = {a + b for a, b in ranks}
    pieces, start = [], 0
    while start < len(chunk):
        end = len(chunk)
        while end > start + 1 and chunk[start:end] not in symbols:
            end -= 1
        pieces.append(chunk[start:end])
        start = end
    return pieces


def apply_merges_first_pair_found(chunk, ranks):
    word = list(chunk)
    while True:
        k = next((k for k in range(len(word) - 1) if (word[k], word[k + 1]) in ranks), None)
        if k is None:
            return word
        word[k:k + 2] = [word[k] + word[k + 1]]


def apply_merges_one_pass(chunk, ranks):
    word = list(chunk)
    best = min(zip(word, word[1:]), key=lambda p: ranks.get(p, 10**9), default=None)
    if best in ranks:
        return apply_merges_in_list_order(chunk, {best: 0})
    return word


def apply_merges_joined(chunk, ranks):
    return "".join(reference.apply_merges.__wrapped__(chunk, ranks))


def apply_merges_wraps_the_reference(chunk, ranks):
    return reference.apply_merges(chunk, ranks)


# --------------------------------------------------------------------------------------
# BPETokenizer
# --------------------------------------------------------------------------------------


class TokenizerCorrect:
    """Rank-based merging through its own loop, bytes gathered in a bytearray."""

    def __init__(self, merges, alphabet):
        self.alphabet = frozenset(alphabet)
        self.ranks = {tuple(p): r for r, p in enumerate(merges)}
        self.itos = ["<pad>", "<unk>", "<bos>", "<eos>"] + [f"<0x{b:02X}>" for b in range(256)]
        seen = set(self.itos)
        for symbol in sorted(self.alphabet) + [a + b for a, b in merges]:
            if symbol not in seen:
                seen.add(symbol)
                self.itos.append(symbol)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.vocab_size = len(self.itos)

    def _merge(self, run):
        return apply_merges_priority(run, self.ranks)

    def encode(self, text, add_bos=False, add_eos=False):
        ids = [2] * add_bos
        for chunk in pretokenize(text):
            for known, group in itertools.groupby(chunk, self.alphabet.__contains__):
                run = "".join(group)
                ids.extend([self.stoi[s] for s in self._merge(run)] if known else [4 + b for b in run.encode()])
        return ids + [3] * add_eos

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            if i >= 4:
                out += bytes([i - 4]) if i < 260 else self.itos[i].encode()
        return out.decode(errors="replace")


class TokenizerCorrectCharByChar(TokenizerCorrect):
    """Splits each chunk character by character, flushing known runs by hand; decodes from a byte list."""

    def encode(self, text, add_bos=False, add_eos=False):
        ids = [self.stoi["<bos>"]] if add_bos else []
        for chunk in pretokenize(text):
            run = ""
            for ch in chunk:
                if ch in self.alphabet:
                    run += ch
                else:
                    if run:
                        ids += [self.stoi[s] for s in apply_merges_in_list_order(run, self.ranks)]
                        run = ""
                    ids += [self.stoi[BYTE_TOKENS[b]] for b in ch.encode("utf-8")]
            if run:
                ids += [self.stoi[s] for s in apply_merges_in_list_order(run, self.ranks)]
        if add_eos:
            ids.append(self.stoi["<eos>"])
        return ids

    def decode(self, ids):
        data = []
        for i in ids:
            token = self.itos[i]
            if token in ("<pad>", "<unk>", "<bos>", "<eos>"):
                continue
            data += [int(token[3:5], 16)] if re.fullmatch(r"<0x[0-9A-F]{2}>", token) else list(token.encode("utf-8"))
        return bytes(data).decode("utf-8", errors="replace")


class TokenizerStub:
    def __init__(self, merges, alphabet):
        raise NotImplementedError()


class TokenizerUnk(TokenizerCorrect):
    def encode(self, text, add_bos=False, add_eos=False):
        ids = [2] * add_bos
        for chunk in pretokenize(text):
            for known, group in itertools.groupby(chunk, self.alphabet.__contains__):
                run = "".join(group)
                ids.extend([self.stoi[s] for s in self._merge(run)] if known else [1] * len(run))
        return ids + [3] * add_eos


class TokenizerUnsortedAlphabet(TokenizerCorrect):
    def __init__(self, merges, alphabet):
        super().__init__(merges, alphabet)
        letters = list(dict.fromkeys(ch for ch in "".join(a + b for a, b in merges) + "".join(sorted(alphabet))))
        self.itos = self.itos[:260] + letters + [s for s in self.itos[260:] if s not in letters]
        self.stoi = {s: i for i, s in enumerate(self.itos)}


class TokenizerDuplicateIds(TokenizerCorrect):
    def __init__(self, merges, alphabet):
        super().__init__(merges, alphabet)
        self.itos = self.itos[:260] + sorted(alphabet) + [a + b for a, b in merges]
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.vocab_size = len(self.itos)


class TokenizerDecodesBytesOneByOne(TokenizerCorrect):
    def decode(self, ids):
        return "".join(bytes([i - 4]).decode("utf-8", errors="replace") if i < 260 else self.itos[i]
                       for i in ids if i >= 4)


class TokenizerDecodeJoinsWithSpaces(TokenizerCorrect):
    def decode(self, ids):
        return " ".join(super().decode(ids).split())


class TokenizerGreedyMerges(TokenizerCorrect):
    def _merge(self, run):
        return apply_merges_longest_match(run, self.ranks)


class TokenizerNoBosEos(TokenizerCorrect):
    def encode(self, text, add_bos=False, add_eos=False):
        return super().encode(text)


class TokenizerKeepsSpecials(TokenizerCorrect):
    def decode(self, ids):
        return super().decode([i for i in ids if i not in (0, 2, 3)]) + "".join(
            self.itos[i] for i in ids if i in (0, 2, 3))[:0] + ("<eos>" if 3 in ids else "")


class TokenizerWrapsTheReference:
    def __init__(self, merges, alphabet):
        self.inner = reference.BPETokenizer(merges, alphabet)


CATALOGUE = {
    "check_count_pairs": Catalogue(
        reference=reference.count_pairs,
        mutants=[
            Mutant("stub", count_pairs_stub, r"is not implemented yet"),
            Mutant("across_words", count_pairs_across_words, r"across word boundaries"),
            Mutant("unweighted", count_pairs_unweighted, r"the word counts are ignored"),
            Mutant("once_per_word", count_pairs_once_per_word, r"counted once"),
            Mutant("misses_last_pair", count_pairs_misses_last, r"the last pair of each word is missed"),
            Mutant("wraps_the_reference", count_pairs_wraps_the_reference,
                   r"course_utils\.reference's own count_pairs"),
        ],
        correct=[count_pairs_defaultdict, count_pairs_counter_sum],
    ),
    "check_merge_pair": Catalogue(
        reference=reference.merge_pair,
        mutants=[
            Mutant("stub", merge_pair_stub, r"is not implemented yet"),
            Mutant("first_only", merge_pair_first_only, r"only the first occurrence"),
            Mutant("right_to_left", merge_pair_right_to_left, r"right to left"),
            Mutant("drops_other_words", merge_pair_drops_other_words, r"words without the pair were dropped"),
            Mutant("in_place", merge_pair_in_place, r"changed the table it was given"),
            Mutant("string_keys", merge_pair_string_keys, r"joined into a string"),
            Mutant("wraps_the_reference", merge_pair_wraps_the_reference,
                   r"course_utils\.reference's own merge_pair"),
        ],
        correct=[merge_pair_recursive, merge_pair_with_markers],
    ),
    "check_learn_merges": Catalogue(
        reference=reference.learn_merges,
        mutants=[
            Mutant("stub", learn_merges_stub, r"is not implemented yet"),
            Mutant("naive_recount", learn_merges_naive, r"was stopped after(.|\n)*incrementally"),
            Mutant("first_occurrence", learn_merges_first_occurrence, r"a tie broken the other way"),
            Mutant("unweighted", learn_merges_unweighted, r"the word counts are ignored"),
            Mutant("stale_neighbours", learn_merges_stale_neighbours, r"out of date after a merge"),
            Mutant("never_stops", learn_merges_never_stops, r"only \d+ are possible"),
            Mutant("strings", learn_merges_strings, r"a list of pairs"),
            Mutant("wraps_the_reference", learn_merges_wraps_the_reference,
                   r"course_utils\.reference's own learn_merges"),
        ],
        correct=[learn_merges_buckets, learn_merges_word_deltas],
    ),
    "check_apply_merges": Catalogue(
        reference=reference.apply_merges,
        mutants=[
            Mutant("stub", apply_merges_stub, r"is not implemented yet"),
            Mutant("longest_match", apply_merges_longest_match, r"the longest known symbol is taken from the left"),
            Mutant("first_pair_found", apply_merges_first_pair_found, r"the first learned pair found from the left"),
            Mutant("one_pass", apply_merges_one_pass, r"apply_merges\(.*\) returned"),
            Mutant("joined", apply_merges_joined, r"as a list of strings"),
            Mutant("wraps_the_reference", apply_merges_wraps_the_reference,
                   r"course_utils\.reference's own apply_merges"),
        ],
        correct=[apply_merges_in_list_order, apply_merges_priority],
    ),
    "check_bpe_tokenizer": Catalogue(
        reference=reference.BPETokenizer,
        mutants=[
            Mutant("stub", TokenizerStub, r"is not implemented yet"),
            Mutant("unk", TokenizerUnk, r"became <unk> \(id 1\)(.|\n)*falls back to bytes"),
            Mutant("unsorted_alphabet", TokenizerUnsortedAlphabet, r"characters of the alphabet, sorted"),
            Mutant("duplicate_ids", TokenizerDuplicateIds, r"got two ids"),
            Mutant("bytes_one_by_one", TokenizerDecodesBytesOneByOne, r"byte tokens are decoded one by one"),
            Mutant("joins_with_spaces", TokenizerDecodeJoinsWithSpaces, r"spaces are added or dropped"),
            Mutant("greedy_merges", TokenizerGreedyMerges, r"encode\(.*\) returned"),
            Mutant("no_bos_eos", TokenizerNoBosEos, r"<bos> \(id 2\) first"),
            Mutant("keeps_specials", TokenizerKeepsSpecials, r"decode should skip the special tokens"),
            Mutant("wraps_the_reference", TokenizerWrapsTheReference,
                   r"course_utils\.reference's own BPETokenizer"),
        ],
        correct=[TokenizerCorrect, TokenizerCorrectCharByChar],
    ),
}

BUG = Bug("count_solution", "            counts[pair] += n\n", "            counts[pair] += 1\n")
