"""Autograder for chapter 09_multi30k's ``train_epoch``.

It runs on a tiny model with an instrumented optimizer, scheduler, criterion and model that record
what is called, in which order, with what; the model's weights after the epoch and the returned loss
are compared with the course's ``train_epoch`` run on an identical copy. A mismatch is explained
from the record (no ``zero_grad``, no shift, the scheduler never stepped, no clipping, padding
counted in the mean, ...). Then a few more epochs must lower the loss.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from course_utils import reference
from course_utils.checks.harness import (
    Check,
    describe,
    device_names,
    devices,
    expect_callable,
    fail,
    seeded,
    steady,
)
from course_utils.reference.translation import train_epoch as _reference_train_epoch
from course_utils.checks.batching import padded

__all__ = ["check_train_epoch"]


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
        src = padded(rows, pad_idx)
        tgt = padded([[bos, *reversed(r), eos] for r in rows], pad_idx)
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
