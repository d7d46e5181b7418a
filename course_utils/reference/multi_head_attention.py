"""Multi-head attention (Vaswani et al., 2017, section 3.2.2).

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,
    head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

The h per-head projections of size d_model x d_k are stored side by side in one
``nn.Linear(d_model, d_model)`` per role; splitting the projected tensor into heads
recovers them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_utils.course.guard import answer_key
from course_utils.reference.attention import scaled_dot_product_attention


@answer_key("split_heads")
def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """Cut the model dimension into heads and move the head axis before the sequence.

    Args:
        x: ``(B, L, d_model)``.
        num_heads: ``H``; must divide ``d_model``.

    Returns:
        ``(B, H, L, d_model // H)``, where head ``h`` holds features ``h*d_k:(h+1)*d_k``.
    """
    batch, length, d_model = x.shape
    # View as (B, L, H, d_k) first: heads are contiguous slices of the feature axis.
    # Viewing straight to (B, H, L, d_k) would mix positions into heads.
    return x.view(batch, length, num_heads, d_model // num_heads).transpose(1, 2)


@answer_key("combine_heads")
def combine_heads(x: Tensor) -> Tensor:
    """Undo :func:`split_heads`: ``(B, H, L, d_k) -> (B, L, H * d_k)``."""
    batch, num_heads, length, d_k = x.shape
    # transpose makes the tensor non-contiguous; reshape copies where view would fail.
    return x.transpose(1, 2).reshape(batch, length, num_heads * d_k)


@answer_key("MultiHeadAttention")
class MultiHeadAttention(nn.Module):
    """Multi-head attention with ``W_q, W_k, W_v, W_o``, each ``nn.Linear(d_model, d_model)``.

    After a forward pass, ``self.attention_weights`` holds the weights ``(B, H, Lq, Lk)``.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.W_q = nn.Linear(d_model, d_model)
        self.W_k = nn.Linear(d_model, d_model)
        self.W_v = nn.Linear(d_model, d_model)
        self.W_o = nn.Linear(d_model, d_model)
        # The paper applies dropout to the attention weights in its code (tensor2tensor);
        # PyTorch's nn.MultiheadAttention does the same.
        self.dropout = nn.Dropout(dropout)
        self.attention_weights: Tensor | None = None

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> Tensor:
        """Attend from ``query`` ``(B, Lq, d_model)`` to ``key``/``value`` ``(B, Lk, d_model)``.

        Args:
            mask: boolean, broadcastable to ``(B, H, Lq, Lk)``; ``True`` = may attend.
                A padding mask is ``(B, 1, 1, Lk)``, a causal mask ``(1, 1, Lq, Lk)``.

        Returns:
            ``(B, Lq, d_model)``.
        """
        q = split_heads(self.W_q(query), self.num_heads)  # (B, H, Lq, d_k)
        k = split_heads(self.W_k(key), self.num_heads)  # (B, H, Lk, d_k)
        v = split_heads(self.W_v(value), self.num_heads)  # (B, H, Lk, d_k)
        context, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, H, Lq, d_k)
        self.attention_weights = weights.detach()
        if self.training and self.dropout.p > 0:
            context = self.dropout(weights) @ v
        return self.W_o(combine_heads(context))
