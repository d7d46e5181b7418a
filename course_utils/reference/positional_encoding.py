"""Sinusoidal positional encoding (Vaswani et al., 2017, section 3.5).

    PE(pos, 2i)   = sin(pos * w_i)
    PE(pos, 2i+1) = cos(pos * w_i),      w_i = 1 / 10000^(2i / d_model)

Each pair of dimensions ``(2i, 2i+1)`` is a point on the unit circle turning at the
frequency ``w_i``. Moving ``k`` positions further turns every pair by the angle ``k w_i``,
whatever the starting position ``p``:

    [PE(p+k, 2i), PE(p+k, 2i+1)] = R(k w_i) [PE(p, 2i), PE(p, 2i+1)],
    R(b) = [[cos b, sin b], [-sin b, cos b]]

(from sin(a+b) = sin a cos b + cos a sin b and cos(a+b) = cos a cos b - sin a sin b). This
is the property the paper gives for its choice: PE(p+k) is a linear function of PE(p).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from course_utils.course.guard import answer_key


def frequencies(d_model: int) -> Tensor:
    """The angular frequencies ``w_i = 10000^(-2i/d_model)``, float64, shape ``(ceil(d_model/2),)``."""
    # Computed as exp(-2i * ln(10000) / d_model), the usual numerically friendly form.
    return torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))


@answer_key("PositionalEncoding")
def sinusoidal_table(max_seq_length: int, d_model: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The PE table ``(max_seq_length, d_model)``: sin on even, cos on odd dimensions.

    Evaluated in float64, then cast to ``dtype``, so that even the last positions are
    accurate to float32's rounding.
    """
    position = torch.arange(max_seq_length, dtype=torch.float64).unsqueeze(1)  # (L, 1)
    inv_freq = frequencies(d_model)  # (ceil(d/2),)
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


@answer_key("rotation_for_offset")
def rotation_for_offset(k: int, d_model: int) -> Tensor:
    """The rotations that move every sin/cos pair of PE forward by ``k`` positions.

    Args:
        k: the offset in positions (any integer; ``k = 0`` gives identities).
        d_model: the (even) model size.

    Returns:
        ``(d_model // 2, 2, 2)`` float32: block ``i`` is ``[[cos(k w_i), sin(k w_i)],
        [-sin(k w_i), cos(k w_i)]]``, so that for every position ``p``
        ``R[i] @ [PE(p, 2i), PE(p, 2i+1)] = [PE(p+k, 2i), PE(p+k, 2i+1)]``.
    """
    angle = k * frequencies(d_model)[: d_model // 2]  # (d_model // 2,)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.stack([torch.stack([cos, sin], dim=-1),
                            torch.stack([-sin, cos], dim=-1)], dim=-2)  # (d/2, 2, 2)
    return rotation.to(torch.float32)
