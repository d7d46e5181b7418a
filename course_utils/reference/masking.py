"""Boolean attention masks: ``True`` means "may attend". They broadcast to ``(B, H, Lq, Lk)``."""

from __future__ import annotations

import torch
from torch import Tensor

from course_utils.course.guard import answer_key


@answer_key("create_padding_mask")
def create_padding_mask(seq: Tensor, pad_idx: int) -> Tensor:
    """``seq``: token ids ``(B, L)`` -> ``(B, 1, 1, L)``: True at real tokens, False at padding.

    The mask lies on the key axis: no query may attend to a padded key. Padded queries still
    produce (ignored) outputs, which keeps every softmax row well defined.
    """
    return (seq != pad_idx).unsqueeze(1).unsqueeze(2)


@answer_key("create_causal_mask")
def create_causal_mask(size: int, device: torch.device | str | None = None) -> Tensor:
    """``(1, 1, size, size)``: True on and below the diagonal, so position i sees 0..i."""
    return torch.ones(size, size, dtype=torch.bool, device=device).tril().unsqueeze(0).unsqueeze(0)


@answer_key("create_masks")
def create_masks(src: Tensor, tgt: Tensor, pad_idx: int) -> tuple[Tensor, Tensor]:
    """Masks for a batch: ``src_mask`` ``(B, 1, 1, Ls)`` and ``tgt_mask`` ``(B, 1, Lt, Lt)``.

    The target mask combines padding (no attending to padded target tokens) with causality
    (no attending to later tokens).
    """
    src_mask = create_padding_mask(src, pad_idx)
    tgt_mask = create_padding_mask(tgt, pad_idx) & create_causal_mask(tgt.size(1), tgt.device)
    return src_mask, tgt_mask
