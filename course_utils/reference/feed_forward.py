"""Position-wise feed-forward network (Vaswani et al., 2017, section 3.3).

    FFN(x) = max(0, x W_1 + b_1) W_2 + b_2

Applied to every position separately and identically: only the last axis is mixed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_utils.guard import answer_key


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
