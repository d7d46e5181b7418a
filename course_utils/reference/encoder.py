"""The encoder (Vaswani et al., 2017, section 3.1): N identical post-norm layers.

Each sublayer is wrapped as ``LayerNorm(x + Dropout(Sublayer(x)))`` (section 5.4 for the
dropout), which is what ``nn.TransformerEncoderLayer(norm_first=False)`` computes. The stack
reads token ids: embedding times sqrt(d_model) (section 3.4), plus the sinusoidal positional
encoding (section 3.5), dropout, then the layers; there is no final LayerNorm (post-norm).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from course_utils.course.guard import answer_key
from course_utils.reference.feed_forward import FeedForwardNetwork
from course_utils.reference.multi_head_attention import MultiHeadAttention
from course_utils.reference.positional_encoding import PositionalEncoding


@answer_key("EncoderLayer")
class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each with residual, dropout and LayerNorm (post-norm).

    After a forward pass, ``self_attn.attention_weights`` ``(B, H, L, L)`` holds the attention map.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.feed_forward = FeedForwardNetwork(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x``: ``(B, L, d_model)``; ``mask``: ``(B, 1, 1, L)`` padding mask, True = may attend.

        Returns ``(B, L, d_model)``.
        """
        # Dropout on the sublayer's output only, before the residual add (section 5.4).
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, mask)))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


@answer_key("Encoder")
class Encoder(nn.Module):
    """Token embedding scaled by sqrt(d_model), positional encoding, dropout, N encoder layers."""

    def __init__(self, vocab_size: int, d_model: int, num_layers: int = 6, num_heads: int = 8,
                 d_ff: int = 2048, dropout: float = 0.1, max_seq_length: int = 5000) -> None:
        super().__init__()
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positional_encoding = PositionalEncoding(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)
        # A ModuleList of N separately built layers: [layer] * N would share one set of weights.
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, num_heads, d_ff, dropout) for _ in range(num_layers))

    def forward(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """``src``: token ids ``(B, Ls)``; ``src_mask``: ``(B, 1, 1, Ls)``. Returns ``(B, Ls, d_model)``."""
        # Section 3.4: embeddings are multiplied by sqrt(d_model), so they are not drowned
        # by the positional encoding, whose entries lie in [-1, 1].
        x = self.dropout(self.positional_encoding(self.embedding(src) * math.sqrt(self.d_model)))
        for layer in self.layers:
            x = layer(x, src_mask)  # the same padding mask for every layer
        return x


@answer_key("encoder_parameter_count")
def encoder_parameter_count(vocab_size: int, d_model: int, num_layers: int, d_ff: int) -> int:
    """The number of learned parameters of ``Encoder(vocab_size, d_model, num_layers, d_ff=d_ff)``.

    The number of heads does not matter: the heads share the four ``d_model x d_model``
    projections. The positional encoding is a fixed buffer, not a parameter.
    """
    attention = 4 * (d_model * d_model + d_model)  # W_q, W_k, W_v, W_o with biases
    feed_forward = (d_model * d_ff + d_ff) + (d_ff * d_model + d_model)  # linear1, linear2
    norms = 2 * (2 * d_model)  # norm1, norm2: a scale and a shift each
    return vocab_size * d_model + num_layers * (attention + feed_forward + norms)
