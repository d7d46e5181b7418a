"""Toy sequence-to-sequence tasks: copy, reverse or sort a sequence of digits.

They are the classic sanity checks for an encoder-decoder: small enough to train in a minute on
a CPU, hard enough to need every piece (the decoder must find, through cross-attention, which
source position to read next), and scored exactly (a sequence is right or wrong).

The vocabulary is fixed: three specials, then the ten digits.

====  =========  ===============================================
id    token      role
====  =========  ===============================================
0     ``<pad>``  fills sequences up to the longest of the batch
1     ``<bos>``  starts every target (the decoder's first input)
2     ``<eos>``  ends every target (the decoder says "done")
3-12  ``0``-``9``  the digits
====  =========  ===============================================

A batch is a pair ``(src, tgt)`` of ``torch.long`` tensors:

- ``src`` ``(B, Ls)``: the digits of each source sequence, then ``<pad>``;
- ``tgt`` ``(B, Lt)``: ``<bos>``, the digits of the answer, ``<eos>``, then ``<pad>``.

Training feeds ``tgt[:, :-1]`` to the decoder and asks it to predict ``tgt[:, 1:]``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

ToyTask = Literal["copy", "reverse", "sort"]
TOY_TASKS: tuple[str, ...] = get_args(ToyTask)

TOY_PAD_IDX = 0
TOY_BOS_IDX = 1
TOY_EOS_IDX = 2
SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>")
DIGIT_OFFSET = len(SPECIALS)
TOY_TOKENS: tuple[str, ...] = (*SPECIALS, *(str(d) for d in range(10)))
TOY_VOCAB_SIZE = len(TOY_TOKENS)  # 13

MIN_LENGTH = 8
MAX_LENGTH = 12


def toy_answer(task: ToyTask, digits: Sequence[int]) -> list[int]:
    """What the model must output for ``digits`` (plain digits 0-9, no specials)."""
    if task == "copy":
        return list(digits)
    if task == "reverse":
        return list(reversed(digits))
    if task == "sort":
        return sorted(digits)
    raise ValueError(f"unknown toy task {task!r}; choose one of {TOY_TASKS}")


def make_toy_batch(task: ToyTask, batch_size: int, *, min_length: int = MIN_LENGTH,
                   max_length: int = MAX_LENGTH, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """One random batch ``(src (B, Ls), tgt (B, Lt))`` for ``task``.

    Each sequence has a length drawn uniformly from ``min_length..max_length`` and digits drawn
    uniformly from 0-9. ``Ls`` is the longest source of the batch and ``Lt = Ls + 2``
    (``<bos>`` and ``<eos>``); shorter sequences are padded with ``TOY_PAD_IDX``.
    """
    if task not in TOY_TASKS:
        raise ValueError(f"unknown toy task {task!r}; choose one of {TOY_TASKS}")
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length} and {max_length}")
    lengths = torch.randint(min_length, max_length + 1, (batch_size,), generator=generator)
    digits = torch.randint(0, 10, (batch_size, max_length), generator=generator)
    longest = int(lengths.max())
    src = torch.full((batch_size, longest), TOY_PAD_IDX, dtype=torch.long)
    tgt = torch.full((batch_size, longest + 2), TOY_PAD_IDX, dtype=torch.long)
    for row, length in enumerate(lengths.tolist()):
        sequence = digits[row, :length].tolist()
        src[row, :length] = torch.tensor(sequence) + DIGIT_OFFSET
        tgt[row, 0] = TOY_BOS_IDX
        tgt[row, 1:length + 1] = torch.tensor(toy_answer(task, sequence)) + DIGIT_OFFSET
        tgt[row, length + 1] = TOY_EOS_IDX
    return src.to(device), tgt.to(device)


def toy_batches(task: ToyTask, batch_size: int, *, seed: int = 0, min_length: int = MIN_LENGTH,
                max_length: int = MAX_LENGTH, device: torch.device | str | None = None
                ) -> Iterator[tuple[Tensor, Tensor]]:
    """An endless, reproducible stream of :func:`make_toy_batch` batches (its own generator)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield make_toy_batch(task, batch_size, min_length=min_length, max_length=max_length,
                             generator=generator, device=device)


def toy_to_text(ids: Sequence[int] | Tensor) -> str:
    """Readable digits of one sequence: ``<bos>`` and ``<pad>`` skipped, cut at ``<eos>``.

    >>> toy_to_text([1, 4, 5, 3, 2, 0])
    '1 2 0'
    """
    values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    out = []
    for token in values:
        if token == TOY_EOS_IDX:
            break
        if token in (TOY_PAD_IDX, TOY_BOS_IDX):
            continue
        out.append(TOY_TOKENS[token])
    return " ".join(out)
