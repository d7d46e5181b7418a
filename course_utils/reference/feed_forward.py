"""Position-wise feed-forward network (Vaswani et al., 2017, section 3.3).

    FFN(x) = max(0, x W_1 + b_1) W_2 + b_2

with ``W_1`` of shape ``(d_model, d_ff)`` and ``W_2`` of shape ``(d_ff, d_model)`` in the
paper's notation. It is applied to every position separately and identically: only the
last axis is mixed, so any leading axes (batch, position, ...) pass through.

``nn.Linear(d_in, d_out)`` computes ``x @ weight.T + bias`` with ``weight`` of shape
``(d_out, d_in)``: ``linear1.weight`` is ``W_1`` transposed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_utils.course.guard import answer_key


@answer_key("feed_forward")
def feed_forward(x: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor) -> Tensor:
    """The FFN equation with explicit weights, in the paper's notation.

    Args:
        x: ``(..., d_model)``
        W1: ``(d_model, d_ff)``, b1: ``(d_ff,)``
        W2: ``(d_ff, d_model)``, b2: ``(d_model,)``

    Returns:
        ``(..., d_model)``: ``max(0, x W1 + b1) W2 + b2``.
    """
    hidden = torch.relu(x @ W1 + b1)  # (..., d_ff)
    return hidden @ W2 + b2


@answer_key("FeedForwardNetwork")
class FeedForwardNetwork(nn.Module):
    """``linear2(dropout(relu(linear1(x))))``: ``(..., d_model) -> (..., d_model)`` through ``d_ff``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        # Dropout on the hidden activations, as in nn.TransformerEncoderLayer and the
        # paper's tensor2tensor code ("relu_dropout").
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(..., d_model)`` -> ``(..., d_model)``."""
        return self.linear2(self.dropout(torch.relu(self.linear1(x))))
