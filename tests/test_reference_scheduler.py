"""The answer key of chapter 08 against the formula and PyTorch's built-ins.

``NoamScheduler`` is compared with the paper's formula and with ``LambdaLR`` (which scales
the optimizer's initial lr by a function of ``last_epoch``: starting from lr = 1 it gives the
same rates when the function is shifted to count from 1). ``LabelSmoothingLoss`` is compared
with ``nn.CrossEntropyLoss(label_smoothing=eps, ignore_index=pad_idx)``. The guard's class
decorator is also tested on a class without ``forward`` (an LRScheduler).
"""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from course_utils import reference
from course_utils.course.guard import ReferenceUsedError, answer_key, answer_key_name, forbid
from course_utils.reference.schedule import noam_lr

# --------------------------------------------------------------------------------------
# NoamScheduler
# --------------------------------------------------------------------------------------

CONFIGS = [(512, 4000, 1.0), (256, 4000, 1.0), (512, 8000, 2.0), (64, 1, 0.5), (16, 7, 3.0)]


def _formula(s: int, d_model: int, warmup: int, factor: float) -> float:
    return factor / math.sqrt(d_model) * min(1 / math.sqrt(s), s / warmup**1.5)


def _optimizer(*lrs: float) -> torch.optim.Optimizer:
    return torch.optim.Adam([{"params": [nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs],
                            betas=(0.9, 0.98), eps=1e-9)


@pytest.mark.parametrize(("d_model", "warmup", "factor"), CONFIGS)
def test_noam_lr_is_the_formula(d_model: int, warmup: int, factor: float) -> None:
    steps = sorted({1, 2, max(1, warmup - 1), warmup, warmup + 1, 10 * warmup, 100_000})
    for s in steps:
        assert noam_lr(s, d_model, warmup, factor) == pytest.approx(_formula(s, d_model, warmup, factor),
                                                                    rel=1e-12)
    # Peak at warmup: linear before (lr(s) = s * lr(1)), 1/sqrt(s) after.
    peak = noam_lr(warmup, d_model, warmup, factor)
    assert peak == pytest.approx(factor * (d_model * warmup) ** -0.5, rel=1e-12)
    assert all(noam_lr(s, d_model, warmup, factor) <= peak for s in steps)
    assert noam_lr(warmup, d_model, warmup, factor) == pytest.approx(warmup * noam_lr(1, d_model, warmup, factor))
    assert noam_lr(4 * warmup, d_model, warmup, factor) == pytest.approx(peak / 2)


def test_noam_lr_counts_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        noam_lr(0, 512, 4000)
    with pytest.raises(ValueError, match="warmup_steps"):
        reference.NoamScheduler(_optimizer(1.0), 512, 0)


@pytest.mark.parametrize(("d_model", "warmup", "factor"), [c for c in CONFIGS if c[1] < 100])
def test_noam_scheduler_drives_the_optimizer(d_model: int, warmup: int, factor: float) -> None:
    optimizer = _optimizer(0.1, 5.0)  # two groups, initial lrs that the schedule replaces
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the normal protocol raises no warning
        scheduler = reference.NoamScheduler(optimizer, d_model, warmup, factor)
        assert isinstance(scheduler, LRScheduler)
        for s in range(1, 10 * warmup + 1):
            # The optimizer holds lr(s) for the s-th optimizer.step(); get_last_lr agrees.
            want = _formula(s, d_model, warmup, factor)
            assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([want, want], rel=1e-12)
            assert scheduler.get_last_lr() == pytest.approx([want, want], rel=1e-12)
            assert scheduler.last_epoch == s - 1
            optimizer.step()
            scheduler.step()


def test_noam_scheduler_equals_lambda_lr() -> None:
    """LambdaLR from an initial lr of 1 with the formula shifted by one: the same rates."""
    d_model, warmup, factor = 512, 40, 2.0
    ours, theirs = _optimizer(123.0), _optimizer(1.0)
    scheduler = reference.NoamScheduler(ours, d_model, warmup, factor)
    builtin = LambdaLR(theirs, lambda epoch: _formula(epoch + 1, d_model, warmup, factor))
    for _ in range(5 * warmup):
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-12)
        for optimizer, schedule in ((ours, scheduler), (theirs, builtin)):
            optimizer.step()
            schedule.step()


def test_noam_scheduler_state_dict_round_trip() -> None:
    d_model, warmup, factor = 256, 10, 1.0
    optimizer = _optimizer(1.0)
    scheduler = reference.NoamScheduler(optimizer, d_model, warmup, factor)
    for _ in range(13):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    assert checkpoint["scheduler"]["last_epoch"] == 13
    # Restore as the PyTorch docs say: build the scheduler first, then load both states.
    new_optimizer = _optimizer(1.0)
    restored = reference.NoamScheduler(new_optimizer, d_model, warmup, factor)
    new_optimizer.load_state_dict(checkpoint["optimizer"])
    restored.load_state_dict(checkpoint["scheduler"])
    assert new_optimizer.param_groups[0]["lr"] == pytest.approx(_formula(14, d_model, warmup, factor))
    assert restored.get_last_lr() == scheduler.get_last_lr()
    for s in range(15, 20):
        new_optimizer.step()
        restored.step()
        assert new_optimizer.param_groups[0]["lr"] == pytest.approx(_formula(s, d_model, warmup, factor), rel=1e-12)


# --------------------------------------------------------------------------------------
# LabelSmoothingLoss
# --------------------------------------------------------------------------------------


def _batch(batch: int, length: int, vocab: int, pad_idx: int, dtype: torch.dtype,
           seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(batch, length, vocab, generator=g, dtype=dtype)
    target = torch.randint(0, vocab, (batch, length), generator=g)
    target[target == pad_idx] = (pad_idx + 1) % vocab  # real tokens are never pad...
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    lengths[0] = length
    target[torch.arange(length) >= lengths[:, None]] = pad_idx  # ...padding comes at the end
    return logits, target


def _builtin(logits: Tensor, target: Tensor, eps: float, pad_idx: int) -> Tensor:
    return nn.CrossEntropyLoss(label_smoothing=eps, ignore_index=pad_idx)(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1))


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"atol": 1e-12, "rtol": 1e-10} if dtype == torch.float64 else {"atol": 2e-6, "rtol": 1e-5}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 1.0])
@pytest.mark.parametrize(("batch", "length", "vocab", "pad_idx"), [(3, 7, 11, 0), (2, 5, 40, 3), (4, 2, 3, 2)])
def test_label_smoothing_loss_equals_cross_entropy(batch, length, vocab, pad_idx, eps, dtype) -> None:
    logits, target = _batch(batch, length, vocab, pad_idx, dtype)
    loss_fn = reference.LabelSmoothingLoss(eps, pad_idx)
    mine, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss = loss_fn(mine, target)
    expected = _builtin(theirs, target, eps, pad_idx)
    assert loss.shape == () and loss.dtype == dtype
    torch.testing.assert_close(loss, expected, **_tol(dtype))
    # (N, V) inputs give the same loss.
    torch.testing.assert_close(loss_fn(logits.reshape(-1, vocab), target.reshape(-1)), expected.detach(),
                               **_tol(dtype))
    loss.backward()
    expected.backward()
    torch.testing.assert_close(mine.grad, theirs.grad, **_tol(dtype))
    assert (mine.grad[target == pad_idx] == 0).all()


def test_label_smoothing_loss_ignores_padded_positions_and_averages_over_real_tokens() -> None:
    logits, target = _batch(3, 6, 9, 0, torch.float64)
    loss_fn = reference.LabelSmoothingLoss(0.1, 0)
    pad = target == 0
    assert pad.any()
    changed = torch.where(pad[..., None], 100 * torch.randn_like(logits), logits)
    torch.testing.assert_close(loss_fn(changed, target), loss_fn(logits, target))
    # The mean over real tokens: each real token's own loss, averaged.
    per_token = [loss_fn(logits[b, i][None], target[b, i][None]) for b, i in (~pad).nonzero().tolist()]
    torch.testing.assert_close(loss_fn(logits, target), torch.stack(per_token).mean())


def test_label_smoothing_loss_is_cross_entropy_with_the_smoothed_target() -> None:
    """The PyTorch convention, written out: q = (1 - eps) one_hot + eps / V."""
    logits, target = _batch(2, 4, 7, 0, torch.float64)
    eps, V = 0.2, 7
    q = (1 - eps) * F.one_hot(target, V).double() + eps / V
    per_token = -(q * logits.log_softmax(-1)).sum(-1)
    expected = per_token[target != 0].mean()
    torch.testing.assert_close(reference.LabelSmoothingLoss(eps, 0)(logits, target), expected)


def test_label_smoothing_loss_all_padding_is_nan_like_the_builtin() -> None:
    logits = torch.randn(2, 3, 5)
    target = torch.zeros(2, 3, dtype=torch.long)
    assert reference.LabelSmoothingLoss(0.1, 0)(logits, target).isnan()
    assert _builtin(logits, target, 0.1, 0).isnan()


def test_label_smoothing_loss_rejects_bad_smoothing() -> None:
    with pytest.raises(ValueError):
        reference.LabelSmoothingLoss(1.5)


# --------------------------------------------------------------------------------------
# The guard
# --------------------------------------------------------------------------------------


def test_guard_decorates_a_class_without_forward() -> None:
    """An LRScheduler has no forward: the decorator wraps __init__ only, and adds no forward."""

    @answer_key("SomeScheduler")
    class SomeScheduler(LRScheduler):
        def get_lr(self) -> list[float]:
            return [0.5] * len(self.optimizer.param_groups)

    assert not hasattr(SomeScheduler, "forward")
    assert answer_key_name(SomeScheduler) == "SomeScheduler"
    SomeScheduler(_optimizer(1.0))
    with forbid("SomeScheduler"), pytest.raises(ReferenceUsedError, match="SomeScheduler"):
        SomeScheduler(_optimizer(1.0))


def test_guard_refuses_the_chapter_08_answer_keys() -> None:
    optimizer = _optimizer(1.0)
    loss_fn = reference.LabelSmoothingLoss()
    logits, target = _batch(2, 3, 5, 0, torch.float32)
    with forbid("NoamScheduler"):
        with pytest.raises(ReferenceUsedError, match="NoamScheduler"):
            reference.NoamScheduler(optimizer, 512, 4000)
        with pytest.raises(ReferenceUsedError, match="NoamScheduler"):
            noam_lr(1, 512, 4000)
        loss_fn(logits, target)  # the other answer key stays allowed
    with forbid("LabelSmoothingLoss"):
        with pytest.raises(ReferenceUsedError, match="LabelSmoothingLoss"):
            reference.LabelSmoothingLoss()
        with pytest.raises(ReferenceUsedError, match="LabelSmoothingLoss"):
            loss_fn(logits, target)
        reference.NoamScheduler(optimizer, 512, 4000)
