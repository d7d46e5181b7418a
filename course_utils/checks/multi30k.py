"""Autograders for chapter 09_multi30k: ``collate_batch``, ``batch_by_tokens``, ``train_epoch``
and ``greedy_decode``.

- ``collate_batch`` and ``batch_by_tokens`` are checked on random sentence lengths: shapes,
  dtype, padding value and side, order, every sentence exactly once, the token budget, and
  that sorting by length keeps padding low (compared with the course's version).
- ``train_epoch`` runs on a tiny model with an instrumented optimizer, scheduler, criterion and
  model that record what is called, in which order, with what; the model's weights after the
  epoch and the returned loss are compared with the course's ``train_epoch`` run on an
  identical copy. A mismatch is explained from the record (no ``zero_grad``, no shift, the
  scheduler never stepped, no clipping, padding counted in the mean, ...). Then a few more
  epochs must lower the loss.
- ``greedy_decode`` runs on a small Transformer trained for a second to copy its input (so
  that its outputs end with ``<eos>`` at different positions), in float64, and must give
  exactly the course's output; known mistakes are recognised by re-decoding with them.
"""

from __future__ import annotations

import copy
import functools
import io
import math
import operator
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from course_utils import cache, reference
from course_utils.checks.harness import (
    Check,
    describe,
    device_names,
    devices,
    expect_callable,
    expect_pair,
    expect_tensor,
    fail,
    one_thread,
    seeded,
    steady,
)
from course_utils.reference.decoding import greedy_decode as _reference_greedy_decode
from course_utils.reference.masking import create_causal_mask, create_padding_mask
from course_utils.reference.translation import batch_by_tokens as _reference_batch_by_tokens
from course_utils.reference.translation import padding_fraction
from course_utils.reference.translation import train_epoch as _reference_train_epoch

__all__ = ["check_batch_by_tokens", "check_collate_batch", "check_greedy_decode", "check_train_epoch"]


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


def _padded(rows: Sequence[Sequence[int]], pad_idx: int, left: bool = False) -> Tensor:
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
    want_src = _padded([s for s, _ in original], pad_idx)
    want_tgt = _padded([t for _, t in original], pad_idx)
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
    if torch.equal(got, _padded(rows, pad_idx, left=True)):
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


# ======================================================================================
# train_epoch(model, batches, optimizer, scheduler, criterion, pad_idx, clip_norm)
# ======================================================================================

VOCAB = 11  # the tiny tasks' vocabulary: specials, then 8 "words"


class _Recorder:
    """The shared log of what happened, in order: one list of ``(event, details)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def add(self, event: str, details: Any = None) -> None:
        self.events.append((event, details))

    def names(self) -> list[str]:
        return [e for e, _ in self.events]

    def details(self, event: str) -> list[Any]:
        return [d for e, d in self.events if e == event]


class _RecordingModel(nn.Module):
    """Wraps a Transformer: records each forward (mode, decoder input) and each backward."""

    def __init__(self, inner: nn.Module, recorder: _Recorder) -> None:
        super().__init__()
        self.inner = inner
        self._recorder = recorder

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        self._recorder.add("forward", {"training": self.training, "src": src.detach().clone(),
                                       "tgt": tgt.detach().clone(),
                                       "all_training": all(m.training for m in self.inner.modules())})
        logits = self.inner(src, tgt)
        if logits.requires_grad:
            logits.register_hook(lambda grad: self._recorder.add("backward"))
        return logits

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._recorder.add("zero_grad", "model")
        super().zero_grad(set_to_none)


class _RecordingAdam(torch.optim.Adam):
    """Adam that records ``zero_grad`` and ``step`` (with the gradients' global norm at that moment)."""

    def __init__(self, params, recorder: _Recorder, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self._recorder = recorder

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._recorder.add("zero_grad", "optimizer")
        super().zero_grad(set_to_none)

    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) \
            if grads else 0.0
        self._recorder.add("step", {"grad_norm": norm})
        return super().step(closure)


class _RecordingLambdaLR(torch.optim.lr_scheduler.LambdaLR):
    """A warm-up schedule that records each ``step`` after its construction."""

    def __init__(self, optimizer: torch.optim.Optimizer, recorder: _Recorder, warmup: int) -> None:
        self._recorder = None
        super().__init__(optimizer, lambda s: min(1.0, (s + 1) / warmup))
        self._recorder = recorder

    def step(self, epoch=None):  # noqa: ANN001 - torch's signature
        if self._recorder is not None:
            self._recorder.add("scheduler_step")
        return super().step(epoch) if epoch is not None else super().step()


class _RecordingCriterion(nn.Module):
    """Label-smoothed cross-entropy ignoring padding (mean over real tokens), recording its calls."""

    def __init__(self, pad_idx: int, smoothing: float, recorder: _Recorder) -> None:
        super().__init__()
        self.inner = nn.CrossEntropyLoss(ignore_index=pad_idx, label_smoothing=smoothing)
        self._recorder = recorder

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        loss = self.inner(logits, targets)
        self._recorder.add("criterion", {"targets": targets.detach().clone(), "loss": float(loss.detach())})
        return loss


def _task_batches(seed: int, num_batches: int, batch_size: int, pad_idx: int, bos: int, eos: int
                  ) -> list[tuple[Tensor, Tensor]]:
    """A reversal task: ``tgt`` is ``<bos>`` + reversed ``src`` + ``<eos>``, lengths 2..6, padded,
    with a different amount of padding in every batch."""
    words = [i for i in range(VOCAB) if i not in (pad_idx, bos, eos)]
    rng = random.Random(seed)
    out = []
    for k in range(num_batches):
        longest = 3 + k % 4
        rows = []
        for r in range(batch_size):
            length = longest if r == 0 else rng.randint(2, longest)
            rows.append([rng.choice(words) for _ in range(length)])
        src = _padded(rows, pad_idx)
        tgt = _padded([[bos, *reversed(r), eos] for r in rows], pad_idx)
        out.append((src, tgt))
    return out


class _OneShotBatches:
    """The batches as chapter 9's training loop hands them over: a generator, read once, that may stop
    early (at the time limit). Indexing it, taking its len() or reading it twice does not work."""

    def __init__(self, batches: Sequence[tuple[Tensor, Tensor]]) -> None:
        self._items = iter(list(batches))
        self.passes = 0

    def __iter__(self) -> _OneShotBatches:
        self.passes += 1
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        return next(self._items)


_ONE_SHOT_HINT = ("batches is an iterable that can be read only once, in order: in chapter 9 it is a generator "
                  "that stops at the time limit. Loop over it once, for src, tgt in batches: ..., without "
                  "indexing it (batches[i]), taking len(batches) or reading it twice (count the tokens as you go).")


def _fresh_setup(seed: int, pad_idx: int, smoothing: float, lr: float, warmup: int,
                 device: torch.device) -> tuple[_Recorder, _RecordingModel, _RecordingAdam,
                                                _RecordingLambdaLR, _RecordingCriterion]:
    recorder = _Recorder()
    with seeded(seed):
        inner = reference.Transformer(VOCAB, VOCAB, d_model=16, num_layers=1, num_heads=2, d_ff=32,
                                      dropout=0.0, max_seq_length=32, pad_idx=pad_idx)
    inner = inner.to(device=device, dtype=torch.float64)
    model = _RecordingModel(inner, recorder)
    model.eval()  # as after an evaluation: train_epoch must switch dropout back on
    for p in model.parameters():  # left-over gradients from before: must not leak into this epoch
        p.grad = torch.full_like(p, 0.1)
    optimizer = _RecordingAdam(model.parameters(), recorder, lr=lr)
    scheduler = _RecordingLambdaLR(optimizer, recorder, warmup)
    criterion = _RecordingCriterion(pad_idx, smoothing, recorder)
    return recorder, model, optimizer, scheduler, criterion


def _number(value: Any, what: str) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            fail(f"{what} should be one number (the mean loss per token), but it is {describe(value)}.")
        return float(value.detach())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    fail(f"{what} should return the epoch's mean loss per token as a float, but it returned "
         f"{describe(value)}.")


@steady
def check_train_epoch(train_epoch: Callable[..., float], seed: int = 0, num_batches: int = 4,
                      batch_size: int = 6, pad_idx: int = 0, clip_norm: float = 0.05,
                      smoothing: float = 0.1) -> None:
    """Check ``train_epoch(model, batches, optimizer, scheduler, criterion, pad_idx, clip_norm)``.

    On a tiny float64 Transformer and a reversal task whose batches carry different amounts of
    padding: the weights after one epoch and the returned mean loss per real target token must
    equal those of the course's ``train_epoch`` on an identical copy; a mismatch is explained
    from a record of the calls. Then five more epochs must lower the loss.
    """
    fn = expect_callable(train_epoch, "train_epoch")
    check = Check("train_epoch")
    check.refuse_answer_key(fn)
    bos, eos = (pad_idx + 1) % VOCAB, (pad_idx + 2) % VOCAB
    lr, warmup = 0.02, 3
    for device in devices():
        batches = [(s.to(device), t.to(device)) for s, t in
                   _task_batches(seed, num_batches, batch_size, pad_idx, bos, eos)]
        rec, model, optimizer, scheduler, criterion = _fresh_setup(seed, pad_idx, smoothing, lr, warmup, device)
        _, ref_model, ref_opt, ref_sched, ref_crit = _fresh_setup(seed, pad_idx, smoothing, lr, warmup, device)
        what = f"train_epoch(model, batches, optimizer, scheduler, criterion, pad_idx={pad_idx}, clip_norm={clip_norm})"
        given = _OneShotBatches(batches)
        got = check.call(fn, model, given, optimizer, scheduler, criterion, pad_idx, clip_norm, what=what,
                         on_error=_TRAIN_ERRORS)
        if given.passes > 1 and len(rec.details("forward")) < len(batches):
            fail(f"train_epoch read batches {given.passes} times and trained on "
                 f"{len(rec.details('forward'))} of {len(batches)} batches (on {device.type}).\nHint: "
                 f"{_ONE_SHOT_HINT}")
        loss = _number(got, "train_epoch")
        want = _reference_train_epoch(ref_model, list(batches), ref_opt, ref_sched, ref_crit, pad_idx,
                                                 clip_norm)
        where = f" (on {device.type}, {num_batches} batches)"
        _diagnose_structure(rec, batches, pad_idx, where)
        weights_match = _same_weights(model, ref_model)
        if not weights_match:
            _diagnose_training(rec, batches, clip_norm, where)
            mismatch = _first_mismatch(model, ref_model)
            fail(f"after one epoch the model's weights differ from those of the course's train_epoch{where}: "
                 f"{mismatch}.\nHint: for each batch: logits = model(src, tgt[:, :-1]); loss = criterion("
                 f"logits.reshape(-1, V), tgt[:, 1:].reshape(-1)); optimizer.zero_grad(); loss.backward(); "
                 f"clip_grad_norm_(model.parameters(), clip_norm); optimizer.step(); scheduler.step().")
        if not any(d["training"] for d in rec.details("forward")):
            fail(f"the model ran in eval() mode during training{where}: it came in eval mode (as after an "
                 f"evaluation), so call model.train() at the start of train_epoch, or dropout stays off.")
        if not all(d["all_training"] for d in rec.details("forward")):
            fail(f"the model's submodules ran in eval mode during training{where}: `model.training = True` "
                 f"sets the flag of the top module only, and its layers (their dropout) stay in eval mode. "
                 f"Call model.train(), which switches every submodule.")
        if not math.isclose(loss, want, rel_tol=1e-6, abs_tol=1e-9):
            _diagnose_loss(loss, want, rec, batches, pad_idx, where)
    # The loss goes down over a few epochs (on the CPU; the same code runs on every device).
    batches = _task_batches(seed, num_batches, batch_size, pad_idx, bos, eos)
    _, model, optimizer, scheduler, criterion = _fresh_setup(seed, pad_idx, smoothing, lr, warmup,
                                                             torch.device("cpu"))
    losses = [_number(check.call(fn, model, _OneShotBatches(batches), optimizer, scheduler, criterion, pad_idx, 1.0,
                                 what=f"train_epoch, epoch {e + 1} of 6"), "train_epoch") for e in range(6)]
    if not losses[-1] < 0.8 * losses[0]:
        fail(f"the loss did not go down over 6 epochs on a tiny reversal task: {[round(x, 3) for x in losses]}.")
    check.passed(f"same weights and loss as the reference after an epoch, steps in the right order, loss "
                 f"{losses[0]:.2f} -> {losses[-1]:.2f} in 6 epochs, on {device_names()}")


_TRAIN_ERRORS = {
    "not subscriptable": _ONE_SHOT_HINT,
    "has no len()": _ONE_SHOT_HINT,
    "Expected input batch_size": "the logits and the targets must have the same number of positions: the "
                                 "model reads tgt[:, :-1] and is scored against tgt[:, 1:] (both Lt - 1 long).",
    "size of tensor a": "the model reads tgt[:, :-1] and is scored against tgt[:, 1:] (both Lt - 1 long).",
    "only one element tensors": "loss.item() gives the batch's loss as a float; reduce before calling it.",
    "does not require grad": "the loss is cut off from the model: do not wrap the forward pass in "
                             "torch.no_grad() or call .detach()/.item() before backward().",
}


def _diagnose_structure(rec: _Recorder, batches: list[tuple[Tensor, Tensor]], pad_idx: int, where: str) -> None:
    """Failures visible from the record alone: the model or the criterion unused, no shift."""
    forwards = rec.details("forward")
    if not forwards:
        fail(f"train_epoch never called the model{where}: logits = model(src, tgt[:, :-1]) for each batch.")
    if len(forwards) != len(batches):
        fail(f"train_epoch called the model {len(forwards)} times for {len(batches)} batches{where}: once per batch.")
    for (src, tgt), call in zip(batches, forwards):
        given = call["tgt"].to(tgt.device)
        if torch.equal(given, tgt):
            fail(f"the decoder was given the whole target tgt{where}: with teacher forcing it reads "
                 f"tgt[:, :-1] (<bos> w1 ... wn) and learns to predict tgt[:, 1:] (w1 ... wn <eos>). "
                 f"Fed all of tgt, position i sees the very token it must predict.")
        if given.shape == tgt[:, 1:].shape and torch.equal(given, tgt[:, 1:]):
            fail(f"the decoder was given tgt[:, 1:]{where}: it should read tgt[:, :-1] (starting with "
                 f"<bos>) and be scored against tgt[:, 1:].")
        if not torch.equal(given, tgt[:, :-1]):
            fail(f"the decoder was given a tensor of shape {tuple(given.shape)} that is not tgt[:, :-1]"
                 f"{where}: feed model(src, tgt[:, :-1]).")
    calls = rec.details("criterion")
    if not calls:
        fail(f"train_epoch never called criterion{where}, so padding is scored like real tokens (or the "
             f"loss is not the one asked for). Compute loss = criterion(logits.reshape(-1, V), "
             f"tgt[:, 1:].reshape(-1)): the criterion leaves out positions holding pad_idx.")
    for (_, tgt), call in zip(batches, calls):
        targets = call["targets"].to(tgt.device)
        out = tgt[:, 1:]
        if torch.equal(targets, out.reshape(-1)) or torch.equal(targets, out[out != pad_idx]):
            continue
        if targets.numel() == tgt[:, :-1].numel() and torch.equal(targets, tgt[:, :-1].reshape(-1)):
            fail(f"the loss compares the logits with tgt[:, :-1]{where}, the decoder's own input: the "
                 f"targets are the next tokens, tgt[:, 1:].")
        fail(f"criterion was called with targets that are not tgt[:, 1:]{where}: "
             f"criterion(logits.reshape(-1, V), tgt[:, 1:].reshape(-1)).")


def _diagnose_training(rec: _Recorder, batches: list[tuple[Tensor, Tensor]], clip_norm: float, where: str) -> None:
    """Explain a weight mismatch from the order of the recorded calls."""
    names = rec.names()
    n = len(batches)
    steps = rec.details("step")
    if not steps:
        fail(f"optimizer.step() is never called{where}: the weights never change.")
    if "zero_grad" not in names:
        fail(f"optimizer.zero_grad() is never called{where}: backward() adds to the gradients already "
             f"there, so every step also uses the gradients of all earlier batches (and the model's "
             f"left-over ones). Call optimizer.zero_grad() before loss.backward() in every batch.")
    # Per step: was there a zero_grad since the previous step and before this step's backward?
    last_step, last_zero, last_backward = -1, -1, -1
    for position, name in enumerate(names):
        if name == "zero_grad":
            last_zero = position
        elif name == "backward":
            last_backward = position
        elif name == "step":
            if last_zero > last_backward:
                fail(f"optimizer.zero_grad() comes between loss.backward() and optimizer.step(){where}: it "
                     f"wipes the gradients just computed, so the step uses none. Zero the gradients "
                     f"before backward().")
            if last_zero < last_step or last_zero == -1:
                fail(f"some batches are trained without optimizer.zero_grad() before their backward(){where}: "
                     f"the gradients of earlier batches (or left-over ones) are added in. Call it once "
                     f"per batch, before loss.backward().")
            last_step = position
    if len(steps) != n:
        fail(f"optimizer.step() was called {len(steps)} times for {n} batches{where}: once per batch.")
    scheduler_steps = names.count("scheduler_step")
    if scheduler_steps == 0:
        fail(f"scheduler.step() is never called{where}: the learning rate stays at its first value "
             f"(near 0 with a warm-up schedule). Call it once per batch, after optimizer.step().")
    if scheduler_steps != n:
        fail(f"scheduler.step() was called {scheduler_steps} times for {n} batches{where}: the warm-up "
             f"schedule counts optimizer steps, so call it once per batch, right after optimizer.step().")
    pending = 0
    for name in names:
        if name == "step":
            pending += 1
        elif name == "scheduler_step":
            if pending == 0:
                fail(f"scheduler.step() is called before optimizer.step(){where}: the schedule then runs one "
                     f"step ahead of the optimizer (PyTorch warns about this). Step the optimizer first.")
            pending -= 1
    norms = [d["grad_norm"] for d in steps]
    if max(norms) > clip_norm * (1 + 1e-6) + 1e-12:
        clipped_to_one = max(norms) <= 1.0 + 1e-6
        fail(f"the gradients were not clipped to clip_norm={clip_norm}{where}: their global norm at "
             f"optimizer.step() was up to {max(norms):.3g}.\nHint: "
             + ("they look clipped to 1.0: pass the clip_norm argument, not a fixed value."
                if clipped_to_one else
                "call torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm) after loss.backward() "
                "and before optimizer.step() (clip_grad_value_ is another method)."))


def _diagnose_loss(loss: float, want: float, rec: _Recorder, batches: list[tuple[Tensor, Tensor]], pad_idx: int,
                   where: str) -> None:
    """The weights are right but the returned number is not: which average was it?"""
    batch_losses = [d["loss"] for d in rec.details("criterion")]
    real = [int((tgt[:, 1:] != pad_idx).sum()) for _, tgt in batches]
    every = [tgt[:, 1:].numel() for _, tgt in batches]
    if len(batch_losses) == len(batches):
        known = {
            "the mean counts padding: each batch's loss was weighted by all its target positions "
            "(tgt[:, 1:].numel()), padding included. Weight it by the real tokens, "
            "(tgt[:, 1:] != pad_idx).sum().":
                sum(x * w for x, w in zip(batch_losses, every)) / sum(every),
            "it is the plain average of the batches' losses. Batches hold different numbers of real tokens: "
            "weight each batch's loss by its number of real target tokens, then divide by their total.":
                sum(batch_losses) / len(batch_losses),
            "it is the sum of the batches' losses, not the mean per token.": sum(batch_losses),
            "it is the loss of the last batch only: accumulate over all batches.": batch_losses[-1],
            "it is the total loss of all real tokens: divide by their number.":
                sum(x * w for x, w in zip(batch_losses, real)),
        }
        for explanation, value in known.items():
            if math.isclose(loss, value, rel_tol=1e-6, abs_tol=1e-9):
                fail(f"train_epoch returned {loss:.6g}, expected the mean loss per real target token "
                     f"{want:.6g}{where}.\nLikely mistake: {explanation}")
    fail(f"train_epoch returned {loss:.6g}, expected the mean loss per real target token {want:.6g}{where}: "
         f"add loss.item() * (number of real target tokens) per batch, and divide by the total number of "
         f"real target tokens at the end.")


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.allclose(p, q, rtol=1e-7, atol=1e-9) for p, q in zip(a.parameters(), b.parameters()))


def _first_mismatch(a: nn.Module, b: nn.Module) -> str:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        if not torch.allclose(p, q, rtol=1e-7, atol=1e-9):
            return f"{name.removeprefix('inner.')} is off by up to {(p - q).abs().max().item():.3g}"
    return "no difference"


# ======================================================================================
# greedy_decode(model, src, max_len, bos_idx, eos_idx, pad_idx=0) -> (B, L)
# ======================================================================================

_COPY_VOCAB = 12
_COPY_SPECIALS = (0, 1, 2)  # pad, bos, eos while training the copier


#: Bump when _train_copy_model changes: the disk cache keeps the weights under this version.
_COPY_MODEL_VERSION = 1


@functools.cache
def _copy_model_state() -> dict[str, Tensor]:
    """A small Transformer trained for ~60 steps to copy its input (a second on a CPU).

    Half-trained on purpose: it copies imperfectly, and ends its outputs with <eos> at many
    different positions, which is what a decoding check needs. Trained in float64 on one
    thread (faster for so small a model on a busy machine), so that every machine gets
    practically the same weights. Kept in the course's disk cache (:mod:`course_utils.cache`),
    keyed by this code's version and torch's: autograding runs every submission in a new
    kernel, and a class would otherwise pay that second once per student.
    """
    path = cache.cache_dir() / "checks" / f"copy-model-v{_COPY_MODEL_VERSION}-torch{torch.__version__}.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if _is_copy_model_state(state):
            return state
    except Exception:  # noqa: BLE001 - missing, unreadable or damaged: train it again
        pass
    with one_thread():
        state = _train_copy_model()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    cache.write_atomically(path, buffer.getvalue())
    return state


def _is_copy_model_state(state: Any) -> bool:
    """True when ``state`` has exactly the copier's tensors, in float64, with their shapes."""
    expected = _copy_transformer(dropout=0.0).double().state_dict()
    return (isinstance(state, dict) and set(state) == set(expected)
            and all(isinstance(state[k], Tensor) and state[k].dtype == torch.float64
                    and state[k].shape == v.shape for k, v in expected.items()))


def _copy_transformer(dropout: float, pad_idx: int = 0) -> nn.Module:
    """The copier's architecture (untrained, float32)."""
    return reference.Transformer(_COPY_VOCAB, _COPY_VOCAB, d_model=32, num_layers=2, num_heads=4, d_ff=64,
                                 dropout=dropout, max_seq_length=32, pad_idx=pad_idx)


def _train_copy_model() -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(1234)
    with seeded(1234):
        model = _copy_transformer(dropout=0.0).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    criterion = nn.CrossEntropyLoss(ignore_index=0)
    positions = torch.arange(8)
    for _ in range(60):
        lengths = torch.randint(2, 9, (32,), generator=generator)
        src = torch.randint(3, _COPY_VOCAB, (32, 8), generator=generator)
        src[positions[None, :] >= lengths[:, None]] = 0
        tgt = torch.zeros(32, 10, dtype=torch.long)
        tgt[:, 0] = 1
        tgt[:, 1:9] = src
        tgt[torch.arange(32), lengths + 1] = 2
        logits = model(src, tgt[:, :-1])
        loss = criterion(logits.reshape(-1, _COPY_VOCAB), tgt[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _copy_model(pad_idx: int, bos_idx: int, eos_idx: int, device: torch.device) -> nn.Module:
    """The copier in float64 on ``device``, its ids permuted so that the specials are the ones asked for."""
    model = _copy_transformer(dropout=0.1, pad_idx=pad_idx)
    state = dict(_copy_model_state())
    # new id of old id: specials go where asked, the other ids fill the remaining slots in order.
    wanted = (pad_idx, bos_idx, eos_idx)
    others = [i for i in range(_COPY_VOCAB) if i not in wanted]
    new_of_old = list(wanted) + others
    old_of_new = torch.empty(_COPY_VOCAB, dtype=torch.long)
    for old, new in enumerate(new_of_old):
        old_of_new[new] = old
    for key in ("encoder.embedding.weight", "decoder.embedding.weight", "generator.weight", "generator.bias"):
        state[key] = state[key][old_of_new]
    model.load_state_dict(state)
    return model.to(device=device, dtype=torch.float64).eval()


def _copy_sources(seed: int, batch: int, src_len: int, pad_idx: int, bos_idx: int, eos_idx: int,
                  device: torch.device) -> Tensor:
    rng = random.Random(seed)
    words = [i for i in range(_COPY_VOCAB) if i not in (pad_idx, bos_idx, eos_idx)]
    rows = []
    for r in range(batch):
        length = src_len if r % 3 == 0 else rng.randint(2, src_len)
        rows.append([rng.choice(words) for _ in range(length)])
    return _padded(rows, pad_idx).to(device)


def _greedy_variant(model: nn.Module, src: Tensor, max_len: int, bos_idx: int, eos_idx: int, pad_idx: int, *,
                    src_mask: bool = True, causal: bool = True, position: int = -1, pad_after_eos: bool = True,
                    stop_when: str = "all") -> Tensor:
    """The reference algorithm with one known mistake switched on (for diagnoses)."""
    batch = src.size(0)
    with torch.no_grad():
        mask = create_padding_mask(src, pad_idx) if src_mask else None
        memory = model.encode(src, mask)
        ys = torch.full((batch, 1), bos_idx, dtype=torch.long, device=src.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        for _ in range(max_len - 1):
            tgt_mask = create_causal_mask(ys.size(1), device=src.device) if causal else None
            states = model.decode(ys, memory, mask, tgt_mask)
            token = model.generator(states[:, position]).argmax(dim=-1)
            if pad_after_eos:
                token = token.masked_fill(finished, pad_idx)
            ys = torch.cat([ys, token.unsqueeze(1)], dim=1)
            finished |= token == eos_idx
            if (stop_when == "all" and bool(finished.all())) or (stop_when == "any" and bool(finished.any())):
                break
    return ys


@steady
def check_greedy_decode(greedy_decode: Callable[..., Tensor], seed: int = 0, batch: int = 6, src_len: int = 8,
                        max_len: int = 7, pad_idx: int = 0, bos_idx: int = 2, eos_idx: int = 3) -> None:
    """Check ``greedy_decode(model, src, max_len, bos_idx, eos_idx, pad_idx)`` against the course's.

    The model is a small Transformer trained to copy (float64, eval mode); the sources have
    different lengths (padding), some outputs end early with ``<eos>`` and some reach
    ``max_len``. The output must be exactly the course's, except that extra trailing columns
    of padding (decoding on after every sentence has finished) are tolerated.
    """
    fn = expect_callable(greedy_decode, "greedy_decode")
    check = Check("greedy_decode")
    check.refuse_answer_key(fn)
    ids = f"bos_idx={bos_idx}, eos_idx={eos_idx}, pad_idx={pad_idx}"
    for device in devices():
        model = _copy_model(pad_idx, bos_idx, eos_idx, device)
        src = _copy_sources(seed, batch, src_len, pad_idx, bos_idx, eos_idx, device)
        what = f"greedy_decode(model, src, max_len={max_len}, {ids})"
        got = check.call(fn, model, src.clone(), max_len, bos_idx, eos_idx, pad_idx, what=what + f" on {device.type}")
        want = _reference_greedy_decode(model, src, max_len, bos_idx, eos_idx, pad_idx)
        _expect_decoded(got, want, model, src, max_len, bos_idx, eos_idx, pad_idx, f"the output of {what} on "
                        f"{device.type}")
        # Outputs longer than their sources (translations often are): short sources, a generous max_len.
        short = _copy_sources(seed + 1, 4, 3, pad_idx, bos_idx, eos_idx, device)
        long_max = 3 * short.size(1) + 2
        what = f"greedy_decode(model, src, max_len={long_max}, {ids}) with sources of 3 tokens"
        got = check.call(fn, model, short.clone(), long_max, bos_idx, eos_idx, pad_idx, what=what + f" on {device.type}")
        want = _reference_greedy_decode(model, short, long_max, bos_idx, eos_idx, pad_idx)
        if (isinstance(got, Tensor) and got.dim() == 2 and got.size(1) <= short.size(1) + 1 < want.size(1)
                and bool((got[:, 0] == bos_idx).all())):
            fail(f"the output of {what} on {device.type} has {got.size(1)} columns, expected {want.size(1)}: it "
                 f"stops at about the source's length ({short.size(1)} tokens). Outputs can be longer than their "
                 f"sources (translations often are): decode until every row has produced <eos>, or max_len.")
        _expect_decoded(got, want, model, short, long_max, bos_idx, eos_idx, pad_idx,
                        f"the output of {what} on {device.type}")
    check.passed(f"same tokens as the reference: stops at <eos>, pads after it, respects max_len, outputs "
                 f"longer than their sources, padded sources ({batch} sentences, {ids}) on {device_names()}")


def _expect_decoded(got: Any, want: Tensor, model: nn.Module, src: Tensor, max_len: int, bos_idx: int,
                    eos_idx: int, pad_idx: int, what: str) -> None:
    if isinstance(got, (list, tuple)):
        fail(f"{what} is a {type(got).__name__}; return one tensor (B, L), shorter rows padded with pad_idx "
             f"after their <eos>.")
    expect_tensor(got, what)
    if got.dim() != 2 or got.size(0) != want.size(0):
        fail(f"{what} has shape {tuple(got.shape)}, expected (B, L) with B = {want.size(0)} rows: one "
             f"output per source sentence.")
    if got.dtype != torch.long:
        fail(f"{what} has dtype {got.dtype}, expected torch.long (token ids).")
    if got.device != src.device:
        fail(f"{what} is on {got.device}, but src was on {src.device}: create new tensors on "
             f"src.device.")
    if not bool((got[:, 0] == bos_idx).all()):
        fail(f"{what} does not start every row with <bos> (bos_idx={bos_idx}): its first column is "
             f"{got[:, 0].tolist()}. Start from a (B, 1) tensor filled with bos_idx.")
    if got.size(1) > max_len:
        fail(f"{what} has {got.size(1)} columns, more than max_len={max_len}: max_len counts every token "
             f"of the output, <bos> included, so generate at most max_len - 1 tokens.")
    if got.size(1) > want.size(1) and bool((got[:, want.size(1):] == pad_idx).all()):
        got = got[:, : want.size(1)]  # decoding on after everything finished, with padding: fine
    mistakes = {
        "after <eos>, a finished sentence must only grow padding: keep a `finished` flag per row and put "
        "pad_idx where it is set (tensor.masked_fill(finished, pad_idx)).":
            lambda: _greedy_variant(model, src, max_len, bos_idx, eos_idx, pad_idx, pad_after_eos=False),
        "the decoding stops as soon as one sentence has produced <eos>; stop when all of them have "
        "(finished.all()), or at max_len.":
            lambda: _greedy_variant(model, src, max_len, bos_idx, eos_idx, pad_idx, stop_when="any"),
        "the source padding mask is missing: encode and decode with src_mask = create_padding_mask(src, "
        "pad_idx), or the padded source positions are attended to.":
            lambda: _greedy_variant(model, src, max_len, bos_idx, eos_idx, pad_idx, src_mask=False),
        "the decoder ran without the causal mask: pass tgt_mask = create_causal_mask(ys.size(1)) "
        "so that the states of earlier positions are those seen in training.":
            lambda: _greedy_variant(model, src, max_len, bos_idx, eos_idx, pad_idx, causal=False),
        "the next token was taken from the first position's logits; take the last position's, "
        "states[:, -1], the prediction that follows everything generated so far.":
            lambda: _greedy_variant(model, src, max_len, bos_idx, eos_idx, pad_idx, position=0),
    }
    if got.shape != want.shape:
        for explanation, variant in mistakes.items():
            candidate = variant()
            if candidate.shape == got.shape and torch.equal(candidate.to(got.device), got):
                fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}.\nLikely mistake: "
                     f"{explanation}")
        longer = "longer" if got.size(1) > want.size(1) else "shorter"
        fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)} ({longer}).\nHint: loop "
             f"at most max_len - 1 times, append each step's tokens, and stop once every row has "
             f"produced <eos> (finished.all()).")
    if torch.equal(got, want):
        return
    row = int((got != want).any(dim=1).nonzero()[0])
    for explanation, variant in mistakes.items():
        if torch.equal(variant().to(got.device), got):
            fail(f"{what} differs from the expected tokens, e.g. row {row}: yours {got[row].tolist()}, "
                 f"expected {want[row].tolist()}.\nLikely mistake: {explanation}")
    fail(f"{what} differs from the expected tokens, e.g. row {row}: yours {got[row].tolist()}, expected "
         f"{want[row].tolist()}.\nHint: encode once with the source padding mask; then repeatedly decode "
         f"ys with the causal mask, take generator(states[:, -1]).argmax(-1) as the next token (pad_idx for "
         f"finished rows), and append it.")
