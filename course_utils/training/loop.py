"""Training and scoring helpers for encoder-decoder models (the toy tasks, later Multi30k).

Any model with ``forward(src, tgt) -> logits (B, Lt, V)`` trains here with teacher forcing:
the decoder reads ``tgt[:, :-1]`` (``<bos>`` and the answer so far) and learns to predict
``tgt[:, 1:]`` (the answer and ``<eos>``), with cross-entropy that ignores padding.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from course_utils.notebook.device import torch_threads


@dataclass
class TrainingLog:
    """What :func:`train_seq2seq` did: one loss per step, and how long it took."""

    losses: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False  # the time budget ran out before the last step

    @property
    def steps(self) -> int:
        return len(self.losses)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor in [0, 1]: linear warm-up, then a cosine decay to 0 at ``total_steps``.

    ``step`` counts from 0. Chapter 8 meets the paper's own schedule (warm-up, then 1/sqrt(step)).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train_seq2seq(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], *, steps: int,
                  lr: float = 1e-3, warmup_steps: int = 100, pad_idx: int = 0,
                  label_smoothing: float = 0.0, clip_norm: float | None = 1.0,
                  max_seconds: float | None = None, weight_decay: float = 0.0,
                  num_threads: int | None = None,
                  on_step: Callable[[int, float], None] | None = None) -> TrainingLog:
    """Train ``model`` with Adam for ``steps`` batches (or until ``max_seconds`` have passed).

    Args:
        model: ``forward(src, tgt_in) -> logits (B, Lt - 1, V)``; left in ``train()`` mode.
        batches: yields ``(src (B, Ls), tgt (B, Lt))`` token ids; moved to the model's device.
        steps: optimiser steps; the learning-rate schedule (:func:`warmup_cosine`) spans them.
        lr: the peak learning rate, reached after ``warmup_steps``.
        pad_idx: target positions holding it are left out of the loss.
        label_smoothing: passed to ``nn.CrossEntropyLoss`` (0 for the toy tasks).
        clip_norm: clip the gradients' global norm to this (None: no clipping).
        max_seconds: stop early once this much wall-clock time has passed.
        weight_decay: Adam's L2 penalty (0: none).
        num_threads: CPU threads for torch during training (None: torch's current setting);
            1 suits tiny models on a busy machine (see :func:`torch_threads`).
        on_step: called as ``on_step(step, loss)`` after every step (progress display).

    Returns:
        a :class:`TrainingLog` with the loss of every step.
    """
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-9,
                                 weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, steps, warmup_steps))
    criterion = nn.CrossEntropyLoss(ignore_index=pad_idx, label_smoothing=label_smoothing)
    log = TrainingLog()
    model.train()
    start = time.perf_counter()
    with torch_threads(num_threads):
        for step, (src, tgt) in zip(range(steps), batches):
            src, tgt = src.to(device), tgt.to(device)
            logits = model(src, tgt[:, :-1])  # (B, Lt - 1, V)
            loss = criterion(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            log.learning_rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            log.losses.append(loss.item())
            if on_step is not None:
                on_step(step, log.losses[-1])
            if max_seconds is not None and time.perf_counter() - start > max_seconds:
                log.stopped_early = step + 1 < steps
                break
    log.seconds = time.perf_counter() - start
    return log


def _until_eos(row: list[int], eos_idx: int) -> list[int]:
    return row[: row.index(eos_idx) + 1] if eos_idx in row else row


def exact_match(predictions: Tensor, targets: Tensor, eos_idx: int, pad_idx: int = 0) -> Tensor:
    """Which predicted sequences equal their target exactly, ``(B,)`` bool.

    Both are token ids ``(B, L)`` (lengths may differ) read up to and including the first
    ``eos_idx``; a prediction without ``<eos>`` is compared with its padding stripped, so it only
    matches a target that has no ``<eos>`` either.
    """
    result = []
    for pred, tgt in zip(predictions.tolist(), targets.tolist()):
        pred, tgt = _until_eos(pred, eos_idx), _until_eos(tgt, eos_idx)
        if eos_idx not in pred:
            pred = [t for t in pred if t != pad_idx]
        if eos_idx not in tgt:
            tgt = [t for t in tgt if t != pad_idx]
        result.append(pred == tgt)
    return torch.tensor(result, dtype=torch.bool)
