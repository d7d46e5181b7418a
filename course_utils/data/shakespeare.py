"""Tiny Shakespeare for chapter 10: the text, its 90/10 train/validation split, encoded as tensors.

The split is nanoGPT's (``data/shakespeare_char/prepare.py``): the first 90% of the characters
train, the last 10% validate, so validation losses compare with nanoGPT's figures.

Example::

    >>> from course_utils.data.shakespeare import load_shakespeare, split_text
    >>> text = load_shakespeare()
    >>> train_text, val_text = split_text(text)
    >>> len(text), len(train_text), len(val_text)
    (1115394, 1003854, 111540)
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from course_utils.data.files import read_text

__all__ = ["SHAKESPEARE_FILE", "TRAIN_FRACTION", "encode_splits", "load_shakespeare", "split_text"]

SHAKESPEARE_FILE = "tinyshakespeare/input.txt.gz"
TRAIN_FRACTION = 0.9


def load_shakespeare(data_dir: str | os.PathLike[str] | None = None) -> str:
    """The whole text (1,115,394 characters), checked against its sha256 (see ``data/README.md``)."""
    return read_text(SHAKESPEARE_FILE, data_dir)


def split_text(text: str, train_fraction: float = TRAIN_FRACTION) -> tuple[str, str]:
    """``(train, validation)``: the first ``train_fraction`` of the characters, then the rest."""
    n = int(train_fraction * len(text))
    return text[:n], text[n:]


def encode_splits(tokenizer, text: str, train_fraction: float = TRAIN_FRACTION) -> tuple[Tensor, Tensor]:
    """Both splits encoded with ``tokenizer.encode``, as int64 tensors ``(N_train,)`` and ``(N_val,)``."""
    train_text, val_text = split_text(text, train_fraction)
    return (torch.tensor(tokenizer.encode(train_text), dtype=torch.long),
            torch.tensor(tokenizer.encode(val_text), dtype=torch.long))
