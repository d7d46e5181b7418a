"""Scaled dot-product attention (Vaswani et al., 2017, section 3.2.1).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

Masks are boolean and broadcast to the scores' shape ``(..., Lq, Lk)``:
``True`` means "this query may attend to this key".
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from course_utils.course.guard import answer_key


@answer_key("attention_scores")
def attention_scores(query: Tensor, key: Tensor) -> Tensor:
    """Similarity of every query with every key, scaled by 1/sqrt(d_k).

    Args:
        query: ``(..., Lq, d_k)``.
        key: ``(..., Lk, d_k)``.

    Returns:
        ``(..., Lq, Lk)``: ``scores[..., i, j] = query[..., i, :] . key[..., j, :] / sqrt(d_k)``.
    """
    d_k = query.size(-1)
    # Without the scaling, dot products grow like sqrt(d_k) and push the softmax into
    # regions with vanishing gradients (the paper's footnote 4).
    return query @ key.transpose(-2, -1) / math.sqrt(d_k)


@answer_key("scaled_dot_product_attention")
def scaled_dot_product_attention(
    query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Attend from each query to the keys and average the values by the weights.

    Args:
        query: ``(..., Lq, d_k)``.
        key: ``(..., Lk, d_k)``.
        value: ``(..., Lk, d_v)``.
        mask: optional boolean tensor broadcastable to ``(..., Lq, Lk)``; ``True`` = may attend.
            Every query must be allowed at least one key.

    Returns:
        ``(output, weights)``: output ``(..., Lq, d_v)`` and weights ``(..., Lq, Lk)``, whose
        rows sum to 1 over the keys.
    """
    scores = attention_scores(query, key)
    if mask is not None:
        # -inf becomes exactly 0 after the softmax, so masked keys get no weight at all.
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights
