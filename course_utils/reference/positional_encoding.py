"""Sinusoidal positional encoding (Vaswani et al., 2017, section 3.5).

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from course_utils.guard import answer_key


def sinusoidal_table(max_seq_length: int, d_model: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The PE table ``(max_seq_length, d_model)``: sin on even, cos on odd dimensions."""
    position = torch.arange(max_seq_length, dtype=torch.float64).unsqueeze(1)  # (L, 1)
    # 1 / 10000^(2i/d) computed as exp(-2i * ln(10000) / d): one frequency per sin/cos pair.
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_seq_length, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: d_model // 2])
    return table.to(dtype)


@answer_key("PositionalEncoding")
class PositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to a batch of embeddings.

    ``pe`` is a buffer ``(1, max_seq_length, d_model)``: saved in the state dict and moved by
    ``.to(device)``, but not a parameter (it is not learned).
    """

    def __init__(self, d_model: int, max_seq_length: int = 5000) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(max_seq_length, d_model).unsqueeze(0))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, L, d_model)`` with ``L <= max_seq_length`` -> ``x + pe[:, :L]``."""
        return x + self.pe[:, : x.size(1)].to(x.dtype)
