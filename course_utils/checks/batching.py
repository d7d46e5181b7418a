"""Autograders for chapter 09_multi30k's batching: ``collate_batch`` and ``batch_by_tokens``.

Both are checked on random sentence lengths: shapes, dtype, padding value and side, order, every
sentence exactly once, the token budget, and that sorting by length keeps padding low (compared
with the course's version).
"""

from __future__ import annotations

import copy
import operator
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from course_utils.checks.harness import Check, describe, expect_callable, expect_pair, expect_tensor, fail
from course_utils.reference.translation import batch_by_tokens as _reference_batch_by_tokens, padding_fraction

__all__ = ["check_batch_by_tokens", "check_collate_batch"]


# ======================================================================================
# collate_batch(pairs, pad_idx) -> (src (B, Ls), tgt (B, Lt))
# ======================================================================================


def _random_pairs(batch: int, pad_idx: int, max_len: int) -> list[tuple[list[int], list[int]]]:
    """Pairs whose longest source and longest target have different lengths and rows."""
    rng = random.Random(1000 + batch)
    # Every id but pad_idx, the small ones included: a real token 0 (or 1, 2) must survive the
    # padding, whatever value padding is first written with.
    ids = [i for i in range(0, 60) if i != pad_idx]
    pairs = []
    for row in range(batch):
        src_len = rng.randint(1, max_len - 2)
        tgt_len = rng.randint(2, max_len - 1)
        pairs.append(([rng.choice(ids) for _ in range(src_len)], [rng.choice(ids) for _ in range(tgt_len)]))
    if batch > 1:  # the longest source (max_len) in row 0, the longest target (max_len - 1) in the last
        pairs[0] = ([rng.choice(ids) for _ in range(max_len)], pairs[0][1][: max_len - 2])
        pairs[-1] = (pairs[-1][0][: max_len - 2], [rng.choice(ids) for _ in range(max_len - 1)])
    for k, (src, tgt) in enumerate(pairs):  # ids 0, 1 and 2 in every sentence (unless one is pad_idx)
        for position, token in enumerate(i for i in (0, 1, 2) if i != pad_idx):
            src[(position + k) % len(src)] = token
            tgt[(position + 2 * k) % len(tgt)] = token
    return pairs


def padded(rows: Sequence[Sequence[int]], pad_idx: int, left: bool = False) -> Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad_idx, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            if left:
                out[i, width - len(r):] = torch.tensor(r)
            else:
                out[i, : len(r)] = torch.tensor(r)
    return out


def check_collate_batch(collate_batch: Callable[..., tuple[Tensor, Tensor]], seed: int = 0, batch: int = 5,
                        pad_idx: int = 7, max_len: int = 9) -> None:
    """Check ``collate_batch(pairs, pad_idx) -> (src (B, Ls), tgt (B, Lt))``: shapes, dtype
    ``torch.long``, padding with ``pad_idx`` at the end, rows in the input order, inputs untouched."""
    fn = expect_callable(collate_batch, "collate_batch")
    check = Check("collate_batch")
    check.refuse_answer_key(fn)
    pairs = _random_pairs(batch, pad_idx, max_len)
    if seed:
        random.Random(seed).shuffle(pairs)
    original = copy.deepcopy(pairs)
    result = check.call(fn, pairs, pad_idx, what=f"collate_batch(pairs, pad_idx={pad_idx})")
    if pairs != original:
        fail("collate_batch changed the lists it was given (e.g. appended padding to them in place). "
             "Build new tensors and leave the input pairs as they were: the same pairs are batched "
             "again in every epoch.")
    src, tgt = expect_pair(result, "collate_batch(pairs, pad_idx)", ("src", "tgt"))
    want_src = padded([s for s, _ in original], pad_idx)
    want_tgt = padded([t for _, t in original], pad_idx)
    for name, got, want, rows in (("src", src, want_src, [s for s, _ in original]),
                                  ("tgt", tgt, want_tgt, [t for _, t in original])):
        _expect_collated(name, got, want, rows, pad_idx, longest_both=max(want_src.size(1), want_tgt.size(1)))
    check.passed(f"shapes (B, longest), torch.long, padded with pad_idx at the end, input order kept "
                 f"(batch of {batch}, pad_idx={pad_idx})")


def _expect_collated(name: str, got: Any, want: Tensor, rows: list[list[int]], pad_idx: int,
                     longest_both: int) -> None:
    what = f"the {name} tensor"
    expect_tensor(got, what)
    batch, width = want.shape
    if got.dim() == 2 and tuple(got.shape) == (width, batch) and width != batch:
        fail(f"{what} has shape {tuple(got.shape)}, expected (B, L) = {tuple(want.shape)}: it is "
             f"sequence-first. The course's tensors are batch-first: one row per sentence "
             f"(with pad_sequence, pass batch_first=True).")
    if got.dim() == 2 and got.size(0) == batch and got.size(1) == longest_both and width != longest_both:
        fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}: it is padded to the "
             f"longest sentence of both sides. Pad the sources to the longest source and the targets "
             f"to the longest target, separately.")
    expect_tensor(got, what, tuple(want.shape),
                  hint=f"row i holds pair i; the width is the longest {name} of the batch ({width}).")
    if got.dtype != torch.long:
        fail(f"{what} has dtype {got.dtype}, expected torch.long: token ids index an embedding table. "
             f"Create it with dtype=torch.long (torch.tensor of Python ints gives it by default).")
    if torch.equal(got, want):
        return
    if torch.equal(got, padded(rows, pad_idx, left=True)):
        fail(f"{what} is padded on the left; the padding goes after each sentence (on the right), "
             f"where the causal and padding masks of the course expect it.")
    real = want != pad_idx
    if pad_idx != 0 and torch.equal(got, want.masked_fill(want == 0, pad_idx)):
        fail(f"{what} turned the real tokens with id 0 into pad_idx={pad_idx}: padding written as 0 and then "
             f"replaced (every 0 becomes pad_idx) also replaces real tokens of id 0. Fill the padding with "
             f"pad_idx directly (torch.full(..., pad_idx), or pad_sequence(..., padding_value=pad_idx)).")
    if torch.equal(got[real], want[real]):
        values = sorted(set(got[~real].tolist()))
        fail(f"{what} holds the right tokens, but its padding positions hold {values}, not "
             f"pad_idx={pad_idx}. Fill with the pad_idx argument (not a fixed 0).")
    order = [next((j for j in range(batch) if torch.equal(got[i], want[j])), None) for i in range(batch)]
    if None not in order and sorted(order) == list(range(batch)):
        fail(f"{what} holds the right rows in another order ({order}): keep the pairs' order, row i "
             f"for pair i (the targets must stay aligned with their sources).")
    row = int((got != want).any(dim=1).nonzero()[0])
    fail(f"{what} has the right shape {tuple(want.shape)} but wrong values, e.g. row {row}: yours "
         f"{got[row].tolist()}, expected {want[row].tolist()} (the ids of pair {row}, then pad_idx).")


# ======================================================================================
# batch_by_tokens(lengths, max_tokens) -> list of index lists
# ======================================================================================


def check_batch_by_tokens(batch_by_tokens: Callable[[list[int], int], list[list[int]]], seed: int = 0,
                          n: int = 300, max_tokens: int = 64) -> None:
    """Check ``batch_by_tokens(lengths, max_tokens)``: every index exactly once, no empty batch,
    ``len(batch) * longest <= max_tokens`` (a sentence longer than that alone in its batch), and
    padding and batch count close to the course's sort-then-fill version.

    Runs twice: on ``n`` random lengths, then with one sentence longer than ``max_tokens`` added.
    """
    fn = expect_callable(batch_by_tokens, "batch_by_tokens")
    check = Check("batch_by_tokens")
    check.refuse_answer_key(fn)
    rng = random.Random(seed)
    lengths = [max(2, min(30, int(rng.gauss(13, 5)))) for _ in range(n)]
    with_long = list(lengths)
    with_long.insert(rng.randrange(n), max_tokens + 5)
    for case, sizes in (("", lengths), (f" with one sentence of {max_tokens + 5} tokens", with_long)):
        batches, mine = _check_batches(check, fn, sizes, max_tokens, case)
    check.passed(f"every sentence once, within {max_tokens} positions per batch, {mine:.0%} padding "
                 f"({n} sentences, {len(batches)} batches), an over-long sentence alone")


def _check_batches(check: Check, fn: Callable[..., Any], lengths: list[int], max_tokens: int,
                   case: str) -> tuple[list[list[int]], float]:
    n = len(lengths)
    given = list(lengths)
    what = f"batch_by_tokens(lengths, max_tokens={max_tokens}){case}"
    result = check.call(fn, given, max_tokens, what=what)
    if given != lengths:
        fail("batch_by_tokens changed the lengths list it was given (sorted it in place?): the indices "
             "it returns then point at the wrong sentences. Sort a list of indices instead: "
             "sorted(range(len(lengths)), key=lambda i: lengths[i]).")
    if not isinstance(result, (list, tuple)):
        fail(f"{what} should return a list of batches (lists of indices), not {describe(result)}.")
    batches: list[list[int]] = []
    for k, b in enumerate(result):
        try:
            batches.append([operator.index(i) for i in b])
        except TypeError:
            fail(f"batch {k} of {what} is {describe(b)}: each batch should be a list of int indices.")
    if any(not b for b in batches):
        fail(f"batch {next(k for k, b in enumerate(batches) if not b)} of {what} is empty: start a new "
             f"batch only when there is a sentence to put in it (e.g. `if current and ...`).")
    seen = [i for b in batches for i in b]
    outside = sorted({i for i in seen if not 0 <= i < n})
    if outside:
        fail(f"the batches of {what} hold indices outside 0..{n - 1}: {outside[:5]}. Return indices of "
             f"lengths, not the lengths themselves.")
    counts = [0] * n
    for i in seen:
        counts[i] += 1
    missing = [i for i in range(n) if counts[i] == 0]
    twice = [i for i in range(n) if counts[i] > 1]
    if twice:
        fail(f"{len(twice)} indices appear in more than one batch of {what} (e.g. {twice[:5]}): each "
             f"sentence belongs to exactly one batch.")
    if missing:
        if all(lengths[i] > max_tokens for i in missing):
            reason = (f"a sentence longer than max_tokens={max_tokens} was left out: it cannot share a "
                      f"batch, so give it a batch of its own.")
        elif max(lengths[i] for i in missing) == max(lengths):
            reason = ("they are the longest ones: the last batch, still being filled when the loop ends, "
                      "was dropped; append it after the loop.")
        else:
            reason = "every sentence must be in a batch."
        fail(f"{len(missing)} of the {n} sentences are in no batch of {what} (e.g. index {missing[0]}, "
             f"length {lengths[missing[0]]}): {reason}")
    for k, b in enumerate(batches):
        longest = max(lengths[i] for i in b)
        if len(b) > 1 and len(b) * longest > max_tokens:
            rest = sorted(lengths[i] for i in b)[:-1]
            one_too_many = len(rest) * max(rest) <= max_tokens
            hint = ("the batch is one sentence over: check the budget before adding a sentence (would "
                    "len(batch) + 1 sentences, padded to the new longest length, still fit?), not after."
                    if one_too_many else
                    "you counted the real tokens (the sum of lengths), but a batch is padded to its "
                    "longest sentence: count len(batch) * longest."
                    if sum(lengths[i] for i in b) <= max_tokens else
                    "a batch padded to its longest sentence occupies len(batch) * longest positions.")
            fail(f"batch {k} of {what} has {len(b)} sentences of up to {longest} tokens: padded, that is "
                 f"{len(b)} x {longest} = {len(b) * longest} positions, over max_tokens={max_tokens}.\n"
                 f"Hint: {hint}")
    reference_batches = _reference_batch_by_tokens(lengths, max_tokens)
    mine, theirs = padding_fraction(batches, lengths), padding_fraction(reference_batches, lengths)
    if mine > theirs + 0.05:
        fail(f"{mine:.0%} of the padded positions of {what} are padding (sorting by length first gives "
             f"{theirs:.0%}): sort the indices by length before filling the batches, so that each "
             f"batch holds sentences of similar lengths.")
    if len(batches) > len(reference_batches) * 1.25 + 2:
        fail(f"{what} made {len(batches)} batches where {len(reference_batches)} suffice: fill each batch "
             f"up to the budget before starting the next one.")
    return batches, mine
