"""Training a translator (chapter 09): batches, one epoch of training, and the held-out loss.

The pieces the chapter's exercises ask for, as the answer key:

- :func:`collate_batch`: a list of ``(source ids, target ids)`` pairs -> two padded tensors;
- :func:`batch_by_tokens`: group sentences of similar length into batches that fit a token
  budget, so that little compute goes to padding;
- :func:`train_epoch`: one pass over the training batches with teacher forcing.

and one helper that is not an exercise, :func:`evaluate_loss` (mean cross-entropy per real
target token on held-out data, whose exponential is the perplexity).

Conventions: token ids are ``torch.long``; ``<pad>`` has id ``pad_idx`` (0 in the course's
vocabularies); every target starts with ``<bos>`` and ends with ``<eos>``. Teacher forcing
feeds the decoder ``tgt[:, :-1]`` (``<bos> w1 ... wn``) and asks it to predict ``tgt[:, 1:]``
(``w1 ... wn <eos>``): position ``i`` learns the token that follows the first ``i`` ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from course_utils.course.guard import answer_key

__all__ = ["batch_by_tokens", "batch_cost", "collate_batch", "evaluate_loss", "padding_fraction",
           "perplexity", "train_epoch"]


@answer_key("collate_batch")
def collate_batch(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_idx: int) -> tuple[Tensor, Tensor]:
    """Stack sentence pairs of different lengths into two padded, batch-first tensors.

    Args:
        pairs: ``B`` pairs ``(src_ids, tgt_ids)``, lists (or 1-d tensors) of token ids.
        pad_idx: the id that fills the positions after a sentence's end.

    Returns:
        ``src`` ``(B, Ls)`` and ``tgt`` ``(B, Lt)``, ``torch.long``, where ``Ls`` / ``Lt`` are the
        longest source / target of the batch; row ``i`` holds pair ``i``'s ids, then ``pad_idx``.
    """
    src_len = max(len(src) for src, _ in pairs)
    tgt_len = max(len(tgt) for _, tgt in pairs)
    src = torch.full((len(pairs), src_len), pad_idx, dtype=torch.long)
    tgt = torch.full((len(pairs), tgt_len), pad_idx, dtype=torch.long)
    for row, (src_ids, tgt_ids) in enumerate(pairs):
        src[row, : len(src_ids)] = torch.as_tensor(src_ids, dtype=torch.long)
        tgt[row, : len(tgt_ids)] = torch.as_tensor(tgt_ids, dtype=torch.long)
    return src, tgt


def batch_cost(batch: Sequence[int], lengths: Sequence[int]) -> int:
    """Positions a batch occupies once padded: ``len(batch) * (longest length in it)``."""
    return len(batch) * max(lengths[i] for i in batch)


def padding_fraction(batches: Iterable[Sequence[int]], lengths: Sequence[int]) -> float:
    """The fraction of the padded positions of ``batches`` that hold padding, not tokens."""
    batches = list(batches)
    real = sum(lengths[i] for batch in batches for i in batch)
    total = sum(batch_cost(batch, lengths) for batch in batches)
    return 1.0 - real / total if total else 0.0


@answer_key("batch_by_tokens")
def batch_by_tokens(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Group sentence indices into batches of similar lengths under a token budget.

    Sort the indices by length, then fill batches in that order: a sentence joins the current
    batch while the batch, padded to its longest sentence, stays within ``max_tokens``
    positions (:func:`batch_cost`); otherwise it starts a new batch. A sentence longer than
    the budget gets a batch of its own.

    Args:
        lengths: ``lengths[i]`` is the length of example ``i`` (for a sentence pair, the
            longer of its source and target).
        max_tokens: the budget: ``len(batch) * max(lengths in batch) <= max_tokens``.

    Returns:
        a list of batches, each a list of indices into ``lengths``; every index appears
        exactly once. Batches come out shortest first: shuffle their order for training.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        grown = max(longest, lengths[i])
        if current and grown * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
    return batches


@answer_key("train_epoch")
def train_epoch(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
                optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                criterion: Callable[[Tensor, Tensor], Tensor], pad_idx: int, clip_norm: float = 1.0,
                on_step: Callable[[float], None] | None = None) -> float:
    """Train ``model`` for one pass over ``batches`` with teacher forcing.

    For every batch: predict ``tgt[:, 1:]`` from ``src`` and ``tgt[:, :-1]``; compute the loss;
    zero the old gradients; backpropagate; clip the gradients' global norm to ``clip_norm``;
    step the optimizer, then the learning-rate scheduler (once per batch: the Noam schedule
    counts optimizer steps).

    Args:
        model: ``model(src (B, Ls), tgt_in (B, Lt - 1)) -> logits (B, Lt - 1, V)``.
        batches: ``(src (B, Ls), tgt (B, Lt))`` token-id pairs, already on the model's device;
            every ``tgt`` row is ``<bos> ... <eos>`` then padding.
        criterion: ``criterion(logits (N, V), targets (N,)) -> loss``, the mean over the
            targets that are not ``pad_idx`` (e.g. ``LabelSmoothingLoss(0.1, pad_idx)`` from
            chapter 8, or ``nn.CrossEntropyLoss(ignore_index=pad_idx, label_smoothing=0.1)``).
        pad_idx: the padding id (its positions count neither in the loss nor in the mean).
        clip_norm: the largest global gradient norm allowed (``clip_grad_norm_``).
        on_step: called with each batch's loss (progress bars, training curves); not part of
            the exercise.

    Returns:
        the mean loss per real target token over the epoch: each batch's loss weighted by
        its number of non-padding target tokens (batches hold different numbers of them).
    """
    model.train()  # dropout on (an evaluation may have switched it off)
    total_loss, total_tokens = 0.0, 0
    for src, tgt in batches:
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]  # (B, Lt - 1) each: shifted by one position
        logits = model(src, tgt_in)  # (B, Lt - 1, V)
        loss = criterion(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        scheduler.step()
        tokens = int((tgt_out != pad_idx).sum())
        total_loss += loss.item() * tokens
        total_tokens += tokens
        if on_step is not None:
            on_step(loss.item())
    return total_loss / max(total_tokens, 1)


def evaluate_loss(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], pad_idx: int) -> float:
    """Mean cross-entropy per real target token (no label smoothing), in ``eval()`` mode.

    ``math.exp`` of it is the perplexity: the model is, on average, as unsure as a uniform
    choice among that many words. Leaves the model in ``eval()`` mode.
    """
    model.eval()
    criterion = nn.CrossEntropyLoss(ignore_index=pad_idx, reduction="sum")
    total_loss, total_tokens = 0.0, 0
    with torch.no_grad():
        for src, tgt in batches:
            logits = model(src, tgt[:, :-1])
            total_loss += criterion(logits.reshape(-1, logits.size(-1)).float(), tgt[:, 1:].reshape(-1)).item()
            total_tokens += int((tgt[:, 1:] != pad_idx).sum())
    return total_loss / max(total_tokens, 1)


def perplexity(mean_loss: float) -> float:
    """``exp(mean cross-entropy per token)``; inf when it overflows."""
    try:
        return math.exp(mean_loss)
    except OverflowError:
        return math.inf
