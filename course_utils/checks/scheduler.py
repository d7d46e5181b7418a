"""Autograders for chapter 08_scheduler: ``NoamScheduler`` and ``LabelSmoothingLoss``.

``check_noam_scheduler`` steps the student's scheduler through ``10 * warmup_steps`` steps
of a real optimizer and compares the rate the optimizer holds at every step with the
formula (so step 1, the steps around the peak and the late decay are all covered); then it
checks several param groups, ``get_last_lr`` and a ``state_dict`` round trip through
``torch.save``/``torch.load``.

``check_label_smoothing_loss`` compares the student's loss with
``nn.CrossEntropyLoss(label_smoothing=eps, ignore_index=pad_idx)`` on padded batches, on
``(B, L, V)`` and ``(N, V)`` inputs, in float32 and float64, on every device, with the
gradients; and it names the other label-smoothing conventions when the student used one.
"""

from __future__ import annotations

import io
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from course_utils.checks.harness import (
    Check,
    compare_gradients,
    describe,
    device_names,
    devices_and_dtypes,
    expect_close,
    expect_module_class,
    fail,
    leaf_copies,
    seeded,
)
from course_utils.reference.schedule import noam_lr

__all__ = ["check_label_smoothing_loss", "check_noam_scheduler"]

# --------------------------------------------------------------------------------------
# NoamScheduler(optimizer, d_model, warmup_steps, factor=1.0)
# --------------------------------------------------------------------------------------

_SCHEDULER_HINTS = {
    "cannot be raised to a negative power": "the steps are counted from 0 here. LRScheduler's "
        "constructor sets self.last_epoch = 0 and calls get_lr() once: that first rate is the rate "
        "of step 1, so use step = self.last_epoch + 1.",
    "division by zero": "the steps are counted from 0 here. LRScheduler's constructor sets "
        "self.last_epoch = 0 and calls get_lr() once: that first rate is the rate of step 1, so use "
        "step = self.last_epoch + 1.",
    "object has no attribute": "LRScheduler.__init__ already calls get_lr() (and step()) once: set "
        "self.d_model, self.warmup_steps and self.factor BEFORE calling super().__init__(optimizer).",
    "unexpected keyword argument": "keep the signature NoamScheduler(optimizer, d_model, warmup_steps, "
        "factor=1.0).",
    "positional argument": "keep the signature NoamScheduler(optimizer, d_model, warmup_steps, "
        "factor=1.0).",
    "zip()": "get_lr() must return one learning rate per param group of the optimizer: "
             "[lr] * len(self.optimizer.param_groups).",
}

_LAST_LR_HINTS = {
    "_last_lr": "get_last_lr() returns self._last_lr, which LRScheduler.step() sets. If you override "
                "step(), you bypass it: implement get_lr() only and let LRScheduler.step() update the "
                "optimizer and get_last_lr().",
}


def _expect_scheduler_class(obj: Any) -> type[LRScheduler]:
    """Fail unless ``obj`` is a subclass of ``LRScheduler`` (the class, not an instance)."""
    if isinstance(obj, LRScheduler):
        fail("pass the class NoamScheduler itself to the check, not an instance: "
             "check(NoamScheduler), not check(NoamScheduler(...)).")
    if not isinstance(obj, type) or not issubclass(obj, LRScheduler):
        fail(f"NoamScheduler should be a class that subclasses torch.optim.lr_scheduler.LRScheduler "
             f"(class NoamScheduler(LRScheduler): ...), but it is {describe(obj)}. Subclassing "
             f"LRScheduler gives you step(), get_last_lr() and state_dict() for free.")
    return obj


def _as_float(value: Any, what: str) -> float:
    """A learning rate as a float; fail on tensors and other types."""
    if isinstance(value, Tensor):
        fail(f"{what} is a tensor ({describe(value)}); learning rates should be Python floats. "
             f"Compute the rate with Python arithmetic (** and min on floats), or call .item().")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(f"{what} should be a float, but it is {describe(value)}.")
    return float(value)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def _same(got: Sequence[float], want: Sequence[float]) -> bool:
    return len(got) == len(want) and all(_close(a, b) for a, b in zip(got, want))


def _when(step: int) -> str:
    """When the optimizer holds the rate of ``step`` (steps counted from 1)."""
    if step == 1:
        return "right after NoamScheduler(...) is created"
    return f"after {step - 1} call{'s' if step > 2 else ''} of scheduler.step()"


def _schedule_mistakes(d_model: int, warmup_steps: int, factor: float, base_lr: float,
                       n: int) -> dict[str, list[float]]:
    """The rates of steps 1..n under the usual wrong versions of the formula."""
    def seq(rate: Callable[[int], float]) -> list[float]:
        return [rate(s) for s in range(1, n + 1)]

    right = seq(lambda s: noam_lr(s, d_model, warmup_steps, factor))
    w = warmup_steps
    count_from_zero = ("the steps are counted from 0: right after construction last_epoch is 0 and "
                       "the optimizer must already hold the rate of step 1 (the first "
                       "optimizer.step() uses it). Use step = self.last_epoch + 1.")
    mistakes = {
        count_from_zero: [0.0] + right[:-1],
        count_from_zero + " ": [right[0]] + right[:-1],  # max(last_epoch, 1): step 1 twice
        "the steps are counted from 2 (one too many): after construction the optimizer must hold "
        "the rate of step 1. Use step = self.last_epoch + 1.":
            right[1:] + [noam_lr(n + 1, d_model, w, factor)],
        "the two exponents are swapped: min(step**-0.5, step * warmup_steps**-1.5), not "
        "min(step**-1.5, step * warmup_steps**-0.5).":
            seq(lambda s: factor * d_model**-0.5 * min(s**-1.5, s * w**-0.5)),
        "warmup_steps has the wrong exponent: the warm-up term is step * warmup_steps**-1.5 "
        "(so that both terms meet at step = warmup_steps), not warmup_steps**-0.5.":
            seq(lambda s: factor * d_model**-0.5 * min(s**-0.5, s * w**-0.5)),
        "max instead of min: the rate is the SMALLER of the warm-up line step * warmup_steps**-1.5 "
        "and the decay step**-0.5.":
            seq(lambda s: factor * d_model**-0.5 * max(s**-0.5, s * w**-1.5)),
        "the d_model**-0.5 factor is missing.":
            seq(lambda s: factor * min(s**-0.5, s * w**-1.5)),
        "d_model has the wrong sign in its exponent: d_model**-0.5 (1/sqrt(d_model)), not "
        "d_model**0.5.":
            seq(lambda s: factor * d_model**0.5 * min(s**-0.5, s * w**-1.5)),
        "the rates were multiplied by the learning rate the optimizer was created with "
        "(self.base_lrs). This schedule sets the rate itself: lr = factor * d_model**-0.5 * min(...), "
        "whatever lr the optimizer started with.":
            [base_lr * r for r in right],
    }
    if factor != 1.0:
        mistakes["factor is ignored: multiply the rate by self.factor."] = \
            seq(lambda s: noam_lr(s, d_model, w, 1.0))
    return mistakes


def _key_steps(warmup_steps: int, n: int) -> list[int]:
    return sorted({1, max(1, warmup_steps - 1), warmup_steps, warmup_steps + 1, n})


def _expect_schedule(got: list[float], want: list[float], what: str, warmup_steps: int,
                     mistakes: dict[str, list[float]] | None = None, hint: str | None = None) -> None:
    """Compare the rates of steps 1..len(want) with the expected ones; name the likely mistake."""
    bad = [s for s, (a, b) in enumerate(zip(got, want), start=1) if not _close(a, b)]
    if not bad:
        return
    s = bad[0]
    table = "\n".join(f"    step {k:>6}: yours {got[k - 1]:.6g}, expected {want[k - 1]:.6g}"
                      for k in _key_steps(warmup_steps, len(want)))
    message = (
        f"{what}: the rate of step {s} (held by the optimizer {_when(s)}) is {got[s - 1]:.6g}, "
        f"expected {want[s - 1]:.6g}; {len(bad)} of {len(want)} steps are off. A few steps:\n{table}"
    )
    for explanation, candidate in (mistakes or {}).items():
        if _same(got, candidate):
            fail(message + f"\nLikely mistake: {explanation.strip()}")
    fail(message + (f"\nHint: {hint}" if hint else ""))


def _optimizer(seed: int, lrs: Sequence[float]) -> torch.optim.Optimizer:
    """An SGD optimizer with one param group per entry of ``lrs``."""
    with seeded(seed):
        groups = [{"params": [nn.Parameter(torch.randn(3))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0])


def _group_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [_as_float(g["lr"], f"optimizer.param_groups[{i}]['lr']")
            for i, g in enumerate(optimizer.param_groups)]


def _last_lrs(check: Check, scheduler: LRScheduler) -> list[float]:
    values = check.call(scheduler.get_last_lr, what="scheduler.get_last_lr()", on_error=_LAST_LR_HINTS)
    if not isinstance(values, (list, tuple)):
        fail(f"scheduler.get_last_lr() should return a list with one rate per param group, but it "
             f"returned {describe(values)}. Do not override get_last_lr().")
    return [_as_float(v, "an entry of scheduler.get_last_lr()") for v in values]


def _step(check: Check, optimizer: torch.optim.Optimizer, scheduler: LRScheduler) -> None:
    """One training step's worth: optimizer.step() (no gradients: no update), then scheduler.step()."""
    optimizer.step()
    check.call(scheduler.step, what="scheduler.step()", on_error=_SCHEDULER_HINTS)


def _run(check: Check, scheduler: LRScheduler, optimizer: torch.optim.Optimizer,
         n: int) -> tuple[list[list[float]], list[list[float]]]:
    """The rates of steps 1..n: what every param group holds, and what get_last_lr() says."""
    held, last = [_group_lrs(optimizer)], [_last_lrs(check, scheduler)]
    for _ in range(n - 1):
        _step(check, optimizer, scheduler)
        held.append(_group_lrs(optimizer))
        last.append(_last_lrs(check, scheduler))
    return held, last


def check_noam_scheduler(NoamScheduler: type[LRScheduler], seed: int = 0, d_model: int = 512,
                         warmup_steps: int = 8, factor: float = 2.0) -> None:
    """Check ``NoamScheduler(optimizer, d_model, warmup_steps, factor=1.0)``.

    The optimizer must hold ``factor * d_model**-0.5 * min(s**-0.5, s * warmup_steps**-1.5)``
    for step ``s``: ``s = 1`` right after construction, ``s = k + 1`` after ``k`` calls of
    ``scheduler.step()``. Checked at every step up to ``10 * warmup_steps``, for every param
    group, with ``get_last_lr()``, the default ``factor`` and a ``state_dict`` round trip.
    """
    cls = _expect_scheduler_class(NoamScheduler)
    check = Check("NoamScheduler")
    check.refuse_answer_key(cls)
    n = 10 * warmup_steps
    signature = f"NoamScheduler(optimizer, d_model={d_model}, warmup_steps={warmup_steps}, factor={factor})"

    def build(optimizer: torch.optim.Optimizer, **kwargs: Any) -> LRScheduler:
        what = signature if kwargs else signature.replace(f", factor={factor}", "")
        if len(optimizer.param_groups) > 1:
            what += f" with an optimizer of {len(optimizer.param_groups)} param groups"
        scheduler = check.call(cls, optimizer, d_model, warmup_steps, what=what, on_error=_SCHEDULER_HINTS,
                               **kwargs)
        if not isinstance(scheduler, LRScheduler):
            fail(f"{what} returned {describe(scheduler)}, not an LRScheduler.")
        return scheduler

    want = [noam_lr(s, d_model, warmup_steps, factor) for s in range(1, n + 1)]

    # 1. One param group: the whole sequence, step by step.
    base_lr = 0.3  # neither 1 nor 1 / factor, so that 'times base lr' and 'factor ignored' differ
    optimizer = _optimizer(seed, [base_lr])
    scheduler = build(optimizer, factor=factor)
    held, last = _run(check, scheduler, optimizer, n)
    _expect_schedule([h[0] for h in held], want, "optimizer.param_groups[0]['lr']", warmup_steps,
                     mistakes=_schedule_mistakes(d_model, warmup_steps, factor, base_lr, n),
                     hint="the rate of step s is factor * d_model**-0.5 * min(s**-0.5, s * "
                          "warmup_steps**-1.5), with s = self.last_epoch + 1 in get_lr().")
    for s, (h, lst) in enumerate(zip(held, last), start=1):
        if len(lst) != 1 or not _close(lst[0], h[0]):
            fail(f"scheduler.get_last_lr() returns {lst} {_when(s)}, but the optimizer holds "
                 f"[{h[0]:.6g}]: they should agree. Implement get_lr() and let LRScheduler.step() "
                 f"set both (do not override step() or get_last_lr()).")
    peak = max(range(n), key=lambda i: held[i][0]) + 1
    if peak != warmup_steps:  # implied by the values; stated for the message
        fail(f"the rate peaks at step {peak}, expected at step warmup_steps = {warmup_steps}.")

    # 2. factor defaults to 1.0.
    optimizer = _optimizer(seed, [base_lr])
    build(optimizer)
    default = _group_lrs(optimizer)[0]
    if not _close(default, noam_lr(1, d_model, warmup_steps, 1.0)):
        fail(f"NoamScheduler(optimizer, d_model={d_model}, warmup_steps={warmup_steps}) sets the rate of "
             f"step 1 to {default:.6g}, expected {noam_lr(1, d_model, warmup_steps, 1.0):.6g}: factor "
             f"should default to 1.0.")

    # 3. Several param groups: every group gets the same rate.
    optimizer = _optimizer(seed + 1, [base_lr, 0.05, 3.0])
    scheduler = build(optimizer, factor=factor)
    held, last = _run(check, scheduler, optimizer, 2 * warmup_steps + 1)
    for group in range(3):
        _expect_schedule([h[group] for h in held], want[: len(held)],
                         f"with 3 param groups, optimizer.param_groups[{group}]['lr']", warmup_steps,
                         hint="every param group gets the same rate: return "
                              "[lr] * len(self.optimizer.param_groups) from get_lr().")
    for s, (h, lst) in enumerate(zip(held, last), start=1):
        if len(lst) != 3 or not _same(lst, h):
            fail(f"with 3 param groups, scheduler.get_last_lr() returns {lst} {_when(s)}, but the "
                 f"optimizer holds {h}: get_lr() must return one rate per param group.")

    # 4. state_dict: save scheduler and optimizer mid-run, restore both into new ones, continue.
    k = warmup_steps + 2  # past the peak
    optimizer = _optimizer(seed + 2, [base_lr])
    scheduler = build(optimizer, factor=factor)
    for _ in range(k):
        _step(check, optimizer, scheduler)  # now at step k + 1
    saved_last = _last_lrs(check, scheduler)
    state = check.call(scheduler.state_dict, what="scheduler.state_dict()")
    buffer = io.BytesIO()
    try:
        torch.save({"scheduler": state, "optimizer": optimizer.state_dict()}, buffer)
        buffer.seek(0)
        checkpoint = torch.load(buffer, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure becomes a message
        fail(f"the scheduler's state_dict() could not be saved and loaded with torch.save / "
             f"torch.load(weights_only=True): {type(error).__name__}: {error}\nKeep only numbers, "
             f"strings, lists and dicts in the scheduler's attributes: state_dict() saves all of them.")
    restored_optimizer = _optimizer(seed + 3, [base_lr])
    restored = build(restored_optimizer, factor=factor)
    restored_optimizer.load_state_dict(checkpoint["optimizer"])
    check.call(restored.load_state_dict, checkpoint["scheduler"], what="scheduler.load_state_dict(state)")
    restored_last = _last_lrs(check, restored)
    got = []
    for _ in range(3):
        _step(check, restored_optimizer, restored)
        got.append(_group_lrs(restored_optimizer)[0])
    expected = [noam_lr(s, d_model, warmup_steps, factor) for s in range(k + 2, k + 5)]
    if not _same(got, expected):
        restarted = [noam_lr(s, d_model, warmup_steps, factor) for s in range(2, 5)]
        message = (f"a scheduler saved at step {k + 1} (state_dict) and restored into a new one "
                   f"(load_state_dict) should continue with the rates of steps {k + 2}..{k + 4}: "
                   f"{[f'{v:.6g}' for v in expected]}, but it gave {[f'{v:.6g}' for v in got]}")
        if _same(got, restarted):
            fail(message + ", the rates of steps 2..4: it started counting again. The step count "
                           "(self.last_epoch) must be part of state_dict(); LRScheduler's own "
                           "state_dict() saves every attribute, so do not override it.")
        fail(message + ".")
    if not _same(restored_last, saved_last):
        fail(f"after load_state_dict, get_last_lr() returns {restored_last}, but the saved scheduler's "
             f"was {saved_last}: state_dict() must hold the scheduler's whole state. LRScheduler's own "
             f"state_dict() saves every attribute, so do not override it.")
    check.passed(f"rate of step 1 after construction, of step s+1 after s steps; matches the formula "
                 f"over {n} steps (peak at step {warmup_steps}); several param groups, get_last_lr, "
                 f"state_dict save/load")


# --------------------------------------------------------------------------------------
# LabelSmoothingLoss(smoothing=0.1, pad_idx=0)
# --------------------------------------------------------------------------------------

_LOSS_HINTS = {
    "Expected target size": "F.cross_entropy / F.nll_loss want the classes on axis 1: flatten the "
                            "logits to (N, V) and the target to (N,) first (logits.reshape(-1, V)).",
    "unexpected keyword argument": "keep the signature LabelSmoothingLoss(smoothing=0.1, pad_idx=0).",
    "view size is not compatible": "use .reshape(...) instead of .view(...).",
}


def _padded_batch(seed: int, batch: int, length: int, vocab: int, pad_idx: int, dtype: torch.dtype,
                  device: torch.device) -> tuple[Tensor, Tensor]:
    """Random logits ``(B, L, V)`` and targets ``(B, L)``: real tokens, then padding at the end."""
    with seeded(seed):
        logits = (2.0 * torch.randn(batch, length, vocab, dtype=torch.float64)).to(dtype)
        real_classes = torch.tensor([c for c in range(vocab) if c != pad_idx])
        target = real_classes[torch.randint(0, vocab - 1, (batch, length))]
        lengths = torch.randint(1, length + 1, (batch,))
    lengths[0] = length  # one full row, one row at most half real
    lengths[-1] = min(int(lengths[-1]), max(1, length // 2))
    target[torch.arange(length) >= lengths[:, None]] = pad_idx
    return logits.to(device), target.to(device)


def _builtin(logits: Tensor, target: Tensor, smoothing: float, pad_idx: int) -> Tensor:
    """``nn.CrossEntropyLoss(label_smoothing=smoothing, ignore_index=pad_idx)`` on flattened inputs."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                           ignore_index=pad_idx, label_smoothing=smoothing)


def _loss_mistakes(logits: Tensor, target: Tensor, eps: float,
                   pad_idx: int) -> dict[str, Callable[[], Tensor]]:
    """Losses of the usual wrong versions, each named with the convention or slip it follows."""
    vocab = logits.size(-1)
    flat = logits.detach().reshape(-1, vocab)
    y = target.reshape(-1)
    real = y != pad_idx
    one_hot = F.one_hot(y, vocab).to(flat.dtype)  # (N, V)
    not_pad_class = torch.ones(vocab, dtype=flat.dtype, device=flat.device)
    not_pad_class[pad_idx] = 0.0

    def ce(q: Tensor, logp: Tensor | None = None) -> Tensor:  # per-token cross-entropy (N,)
        return -(q * (flat.log_softmax(-1) if logp is None else logp)).sum(-1)

    def entropy(q: Tensor) -> Tensor:  # (N,), with 0 log 0 = 0
        return -torch.xlogy(q, q).sum(-1)

    def mean_real(per_token: Tensor) -> Tensor:
        return per_token[real].mean()

    pytorch = (1 - eps) * one_hot + eps / vocab
    paper = (1 - eps) * one_hot + eps / (vocab - 1) * (1 - one_hot)
    annotated = (1 - eps) * one_hot + eps / (vocab - 2) * (1 - one_hot) * not_pad_class
    which = (f"This check follows nn.CrossEntropyLoss(label_smoothing=eps) and Szegedy et al.: every "
             f"one of the V classes gets eps/V (here {eps}/{vocab}), the true class then 1 - eps + eps/V, "
             f"the padding class included.")
    mistakes: dict[str, Callable[[], Tensor]] = {
        "padded positions are counted in the loss: leave out the positions whose target is pad_idx "
        "(nn.CrossEntropyLoss's ignore_index) and average over the others.":
            lambda: F.cross_entropy(flat, y, label_smoothing=eps),
        "no label smoothing: this is the plain cross-entropy. Mix in eps times the cross-entropy with "
        "the uniform distribution: (1 - eps) * (-log p_y) + eps * mean_k(-log p_k).":
            lambda: F.cross_entropy(flat, y, ignore_index=pad_idx),
        "the losses of the real tokens are summed, not averaged: divide by the number of real "
        "(non-padding) tokens.":
            lambda: ce(pytorch)[real].sum(),
        "the mean is over all positions, padding included: padded positions add 0 but still count in "
        "the denominator. Divide by the number of real tokens (target != pad_idx), not by B * L.":
            lambda: ce(pytorch)[real].sum() / y.numel(),
        "you used the convention of the paper's own code (tensor2tensor): eps/(V-1) on each wrong "
        "class and exactly 1 - eps on the true one. " + which:
            lambda: mean_real(ce(paper)),
        "you used the paper's code convention (eps/(V-1) on each wrong class) and subtracted the "
        "target's entropy, as tensor2tensor does: that is a KL divergence, not the cross-entropy. "
        + which + " Return the cross-entropy itself.":
            lambda: mean_real(ce(paper) - entropy(paper)),
        "you gave the padding class no smoothing mass (eps/(V-2) on the classes other than the true "
        "one and <pad>: The Annotated Transformer's convention). " + which:
            lambda: mean_real(ce(annotated)),
        "you used The Annotated Transformer's convention (no mass on <pad>, eps/(V-2) elsewhere) with "
        "nn.KLDivLoss: the KL divergence is the cross-entropy minus the target's entropy (same "
        "gradients, another value). " + which + " Return the cross-entropy itself.":
            lambda: mean_real(ce(annotated) - entropy(annotated)),
        "you gave the padding class no smoothing mass: eps/V went to every class but <pad>, so the "
        "target no longer sums to 1. " + which:
            lambda: mean_real(ce((1 - eps) * one_hot + eps / vocab * not_pad_class)),
        "you gave the padding class no smoothing mass: eps/(V-1) went to every class but <pad>. " + which:
            lambda: mean_real(ce((1 - eps) * one_hot + eps / (vocab - 1) * not_pad_class)),
        "you computed the KL divergence (nn.KLDivLoss with the smoothed target), which is the "
        "cross-entropy minus the entropy of the target: same gradients, but another value. Return "
        "the cross-entropy: (1 - eps) * (-log p_y) + eps * mean_k(-log p_k).":
            lambda: mean_real(ce(pytorch) - entropy(pytorch)),
        "the true class lost its (1 - eps) weight: the target is (1 - eps) * one_hot + eps / V, which "
        "sums to 1; yours sums to 1 + eps.":
            lambda: mean_real(ce(one_hot + eps / vocab)),
        "smoothing and confidence are swapped: the true class gets 1 - eps, and eps is spread over "
        "all classes.":
            lambda: mean_real(ce(eps * one_hot + (1 - eps) / vocab)),
        "the logits were used as log-probabilities: apply log_softmax over the last axis first.":
            lambda: mean_real(ce(pytorch, flat)),
        "softmax where log_softmax is needed: the loss uses log-probabilities (log_softmax), not "
        "probabilities.":
            lambda: mean_real(ce(pytorch, flat.softmax(-1))),
    }
    return mistakes


def check_label_smoothing_loss(LabelSmoothingLoss: type[nn.Module], seed: int = 0, batch: int = 3,
                               length: int = 6, vocab: int = 11, smoothing: float = 0.1,
                               pad_idx: int = 0) -> None:
    """Check ``LabelSmoothingLoss(smoothing, pad_idx)`` against ``nn.CrossEntropyLoss``.

    ``forward(logits (B, L, V) or (N, V), target (B, L) or (N,))`` must return the scalar
    ``nn.CrossEntropyLoss(label_smoothing=smoothing, ignore_index=pad_idx)`` of the flattened
    inputs: smoothed cross-entropy averaged over the real (non-padding) tokens. Also checked:
    padded positions have no influence, the gradients, ``smoothing=0``, dtype and device.
    """
    cls = expect_module_class(LabelSmoothingLoss, "LabelSmoothingLoss")
    check = Check("LabelSmoothingLoss")
    check.refuse_answer_key(cls)
    name = f"LabelSmoothingLoss(smoothing={smoothing}, pad_idx={pad_idx})"
    loss_fn = check.call(cls, smoothing=smoothing, pad_idx=pad_idx, what=name, on_error=_LOSS_HINTS)
    plain_name = f"LabelSmoothingLoss(smoothing=0.0, pad_idx={pad_idx})"
    plain_fn = check.call(cls, smoothing=0.0, pad_idx=pad_idx, what=plain_name, on_error=_LOSS_HINTS)
    hint = ("per real token the loss is (1 - eps) * (-log p_y) + eps * mean_k(-log p_k) with "
            "log p = log_softmax(logits); average it over the tokens whose target is not pad_idx.")
    shape_hint = "return one number (a 0-dim tensor): the mean over the real tokens, not a loss per token."
    for device, dtype, where in devices_and_dtypes():
        logits, target = _padded_batch(seed, batch, length, vocab, pad_idx, dtype, device)
        n_real = int((target != pad_idx).sum())
        cases = [
            (f"logits (B, L, V) = {tuple(logits.shape)}, target (B, L) with {n_real} real tokens "
             f"and {target.numel() - n_real} padded", logits, target),
            (f"flattened logits (N, V) = {(batch * length, vocab)}, target (N,)",
             logits.reshape(-1, vocab), target.reshape(-1)),
        ]
        for label, x, t in cases:
            what = f"{name} on {label}{where}"
            got = check.call(loss_fn, x, t, what=what, on_error=_LOSS_HINTS)
            expect_close(got, _builtin(x, t, smoothing, pad_idx), f"the loss of {what}",
                         mistakes=_loss_mistakes(x, t, smoothing, pad_idx), hint=hint,
                         shape_hint=shape_hint)
        # Padded positions have no influence: new logits there change nothing.
        with seeded(seed + 1):
            noise = 10.0 * torch.randn(logits.shape, dtype=torch.float64).to(dtype).to(device)
        changed = torch.where((target == pad_idx)[..., None], noise, logits)
        what = f"{name} with other logits at the padded positions{where}"
        again = check.call(loss_fn, changed, target, what=what, on_error=_LOSS_HINTS)
        before = check.call(loss_fn, logits, target, what=f"{name}{where}", on_error=_LOSS_HINTS)
        expect_close(again, before.detach(), f"the loss of {what} (padded positions must not "
                     f"count: the loss should not change)",
                     hint="select or mask the positions whose target is pad_idx before averaging.")
        # smoothing = 0 is the plain cross-entropy.
        what = f"{plain_name} on {cases[0][0]}{where}"
        got = check.call(plain_fn, logits, target, what=what, on_error=_LOSS_HINTS)
        expect_close(got, _builtin(logits, target, 0.0, pad_idx), f"the loss of {what} (smoothing=0 "
                     f"is the plain cross-entropy)", hint=hint, shape_hint=shape_hint)
    # Gradients with respect to the logits, against the built-in's (zero at padded positions).
    logits, target = _padded_batch(seed + 2, batch, length, vocab, pad_idx, torch.float64,
                                   torch.device("cpu"))
    mine, theirs = leaf_copies(logits, logits)
    got = check.call(loss_fn, mine, target, what=f"{name} for gradients")
    compare_gradients(got, _builtin(theirs, target, smoothing, pad_idx), {"logits": mine},
                      {"logits": theirs}, f"{name}(logits, target)", seed + 3)
    check.passed(f"equals nn.CrossEntropyLoss(label_smoothing={smoothing}, ignore_index={pad_idx}) on "
                 f"padded batches ((B, L, V) and (N, V), float32/float64, padding ignored, smoothing=0, "
                 f"gradients) on {device_names()}")
