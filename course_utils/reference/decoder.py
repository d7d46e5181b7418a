"""The decoder (Vaswani et al., 2017, section 3.1): N post-norm layers of masked
self-attention, cross-attention over the encoder's output ("memory") and feed-forward.

Each sublayer is wrapped as ``LayerNorm(x + Dropout(Sublayer(x)))``, which is what
``nn.TransformerDecoderLayer(norm_first=False)`` computes. In cross-attention ("encoder-decoder
attention", section 3.2.3) the queries come from the decoder and the keys and values from the
memory, so the target length ``Lt`` and the source length ``Ls`` may differ. Masks are boolean,
``True`` = may attend: ``tgt_mask`` ``(B or 1, 1, Lt, Lt)`` (causal, possibly with target
padding) and ``src_mask`` ``(B, 1, 1, Ls)`` (source padding).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from course_utils.course.guard import answer_key
from course_utils.reference.feed_forward import FeedForwardNetwork
from course_utils.reference.multi_head_attention import MultiHeadAttention
from course_utils.reference.positional_encoding import PositionalEncoding


@answer_key("DecoderLayer")
class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention, feed-forward; each ``LayerNorm(x + Dropout(...))``.

    After a forward pass, ``self_attn.attention_weights`` ``(B, H, Lt, Lt)`` and
    ``cross_attn.attention_weights`` ``(B, H, Lt, Ls)`` hold the two attention maps.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.feed_forward = FeedForwardNetwork(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, src_mask: Tensor | None = None,
                tgt_mask: Tensor | None = None) -> Tensor:
        """``x``: ``(B, Lt, d_model)``; ``memory``: ``(B, Ls, d_model)``;
        ``src_mask``: ``(B, 1, 1, Ls)``; ``tgt_mask``: ``(B, 1, Lt, Lt)``. Returns ``(B, Lt, d_model)``."""
        # Each target position attends to the target positions tgt_mask allows (0..i).
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, tgt_mask)))
        # Queries from the target, keys and values from the source sentence.
        x = self.norm2(x + self.dropout(self.cross_attn(x, memory, memory, src_mask)))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


@answer_key("Decoder")
class Decoder(nn.Module):
    """Scaled target embedding, positional encoding, dropout, N decoder layers."""

    def __init__(self, vocab_size: int, d_model: int, num_layers: int = 6, num_heads: int = 8,
                 d_ff: int = 2048, dropout: float = 0.1, max_seq_length: int = 5000) -> None:
        super().__init__()
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positional_encoding = PositionalEncoding(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)
        # N separately built layers: [layer] * N would share one set of weights.
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, d_ff, dropout) for _ in range(num_layers))

    def forward(self, tgt: Tensor, memory: Tensor, src_mask: Tensor | None = None,
                tgt_mask: Tensor | None = None) -> Tensor:
        """``tgt``: token ids ``(B, Lt)``; ``memory``: ``(B, Ls, d_model)``; masks as in
        :meth:`DecoderLayer.forward`, passed unchanged to every layer. Returns ``(B, Lt, d_model)``."""
        # Section 3.4: embeddings scaled by sqrt(d_model), as in the encoder.
        x = self.dropout(self.positional_encoding(self.embedding(tgt) * math.sqrt(self.d_model)))
        for layer in self.layers:
            x = layer(x, memory, src_mask, tgt_mask)
        return x
