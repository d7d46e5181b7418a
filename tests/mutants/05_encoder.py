"""Known-wrong and correct answers for chapter 05_encoder's checks.

Each mutant is a realistic student mistake (an ``nn.Module`` class, or a function for the
parameter count); its ``expect`` pins the diagnosis the check gives (a regular expression
searched in the AssertionError's message). The mistakes issue 3 names are all here: pre-norm
instead of post-norm, dropout after the residual sum, a missing residual, a missing
sqrt(d_model), ``[layer] * N``, the mask not passed down; and a few more students make (norms
swapped or shared, PE not applied, a final LayerNorm, dropout left on in eval mode). The
correct answers are written differently from the reference and must pass.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import course_utils.reference
from course_utils import reference
from course_utils.reference import FeedForwardNetwork, MultiHeadAttention, PositionalEncoding
from course_utils.reference.encoder import encoder_parameter_count as reference_parameter_count
from tests.support import Bug, Catalogue, Mutant

# --------------------------------------------------------------------------------------
# EncoderLayer(d_model, num_heads, d_ff, dropout=0.1)
# --------------------------------------------------------------------------------------


class _Layer(nn.Module):
    """The right constructor and forward; mutants override one of them."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.feed_forward = FeedForwardNetwork(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, mask)))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class LayerStub(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class LayerForwardStub(_Layer):
    def forward(self, x, mask=None):
        # YOUR CODE HERE
        raise NotImplementedError()


class LayerPreNorm(_Layer):
    def forward(self, x, mask=None):
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h, mask))
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class LayerDropoutAfterResidual(_Layer):
    def forward(self, x, mask=None):
        x = self.norm1(self.dropout(x + self.self_attn(x, x, x, mask)))
        return self.norm2(self.dropout(x + self.feed_forward(x)))


class LayerNoResidual(_Layer):
    def forward(self, x, mask=None):
        x = self.norm1(self.dropout(self.self_attn(x, x, x, mask)))
        return self.norm2(self.dropout(self.feed_forward(x)))


class LayerNoAttentionResidual(_Layer):
    def forward(self, x, mask=None):
        x = self.norm1(self.dropout(self.self_attn(x, x, x, mask)))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class LayerNormInside(_Layer):
    def forward(self, x, mask=None):
        x = x + self.norm1(self.dropout(self.self_attn(x, x, x, mask)))
        return x + self.norm2(self.dropout(self.feed_forward(x)))


class LayerNormsSwapped(_Layer):
    def forward(self, x, mask=None):
        x = self.norm2(x + self.dropout(self.self_attn(x, x, x, mask)))
        return self.norm1(x + self.dropout(self.feed_forward(x)))


class LayerNorm1Twice(_Layer):
    def forward(self, x, mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, mask)))
        return self.norm1(x + self.dropout(self.feed_forward(x)))


class LayerSharedNormObject(_Layer):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__(d_model, num_heads, d_ff, dropout)
        self.norm2 = self.norm1  # one LayerNorm under two names


class LayerMaskNotPassed(_Layer):
    def forward(self, x, mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x)))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class LayerSublayersSwapped(_Layer):
    def forward(self, x, mask=None):
        x = self.norm1(x + self.dropout(self.feed_forward(x)))
        return self.norm2(x + self.dropout(self.self_attn(x, x, x, mask)))


class LayerIndexesTheAttention(_Layer):
    """self_attn(...)[0], as if it returned (output, weights) like nn.MultiheadAttention."""

    def forward(self, x, mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, mask)[0]))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class LayerNoDropout(_Layer):
    def forward(self, x, mask=None):
        x = self.norm1(x + self.self_attn(x, x, x, mask))
        return self.norm2(x + self.feed_forward(x))


class LayerFunctionalDropoutAlwaysOn(_Layer):
    """F.dropout with the layer's p, but without training=self.training."""

    def forward(self, x, mask=None):
        p = self.dropout.p
        x = self.norm1(x + F.dropout(self.self_attn(x, x, x, mask), p))
        return self.norm2(x + F.dropout(self.feed_forward(x), p))


class LayerDropoutOnInputs(_Layer):
    def forward(self, x, mask=None):
        h = self.dropout(x)
        x = self.norm1(x + self.self_attn(h, h, h, mask))
        return self.norm2(x + self.feed_forward(self.dropout(x)))


class LayerDropoutTwice(_Layer):
    """A sublayer helper that drops its output, then the layer drops it again."""

    def forward(self, x, mask=None):
        x = self.norm1(x + self.dropout(self.dropout(self.self_attn(x, x, x, mask))))
        return self.norm2(x + self.dropout(self.dropout(self.feed_forward(x))))


class LayerDropoutAfterNorm(_Layer):
    def forward(self, x, mask=None):
        x = self.dropout(self.norm1(x + self.self_attn(x, x, x, mask)))
        return self.dropout(self.norm2(x + self.feed_forward(x)))


class LayerFunctionalDropoutFollowsTraining(_Layer):
    """Correct: F.dropout with training=self.training instead of calling the nn.Dropout module,
    and LayerNorms with the annotated transformer's epsilon, 1e-6."""

    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__(d_model, num_heads, d_ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model, eps=1e-6), nn.LayerNorm(d_model, eps=1e-6)
        self.p = dropout

    def forward(self, x, mask=None):
        x = self.norm1(x + F.dropout(self.self_attn(x, x, x, mask), self.p, self.training))
        return self.norm2(x + F.dropout(self.feed_forward(x), p=self.p, training=self.training))


class LayerTinyEpsilon(_Layer):
    """Correct: LayerNorms with another popular repository's epsilon, 1e-12 (BERT's)."""

    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__(d_model, num_heads, d_ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model, eps=1e-12), nn.LayerNorm(d_model, eps=1e-12)


class LayerBuiltinAttention(_Layer):
    """PyTorch's nn.MultiheadAttention instead of chapter 2's module."""

    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__(d_model, num_heads, d_ff, dropout)
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout, batch_first=True)

    def forward(self, x, mask=None):
        padding = None if mask is None else ~mask[:, 0, 0]
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, key_padding_mask=padding)[0]))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class LayerOneHead(_Layer):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__(d_model, num_heads, d_ff, dropout)
        self.self_attn = MultiHeadAttention(d_model, 1, dropout)


class LayerNamedAttention(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        self.attention = MultiHeadAttention(d_model, num_heads, dropout)
        self.feed_forward = FeedForwardNetwork(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        x = self.norm1(x + self.dropout(self.attention(x, x, x, mask)))
        return self.norm2(x + self.dropout(self.feed_forward(x)))


class LayerWrappingTheReference(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        self.inner = course_utils.reference.EncoderLayer(d_model, num_heads, d_ff, dropout)

    def forward(self, x, mask=None):
        return self.inner(x, mask)


class LayerSublayerHelper(nn.Module):
    """A SublayerConnection-style helper and functional dropout that honours self.training."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.feed_forward = FeedForwardNetwork(d_model, d_ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def _wrap(self, x: Tensor, sublayer, norm: nn.LayerNorm) -> Tensor:
        return norm(x + F.dropout(sublayer(x), self.dropout.p, self.training))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self._wrap(x, lambda h: self.self_attn(h, h, h, mask=mask), self.norm1)
        return self._wrap(x, self.feed_forward, self.norm2)


class _OwnAttention(nn.Module):
    """Multi-head attention written with einsum (a student's own chapter 2)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.drop = nn.Dropout(dropout)
        self.attention_weights = None

    def forward(self, query, key, value, mask=None):
        B, L, D = query.shape
        H = self.num_heads
        q = self.W_q(query).view(B, L, H, -1)
        k = self.W_k(key).view(B, key.size(1), H, -1)
        v = self.W_v(value).view(B, value.size(1), H, -1)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D // H)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)
        self.attention_weights = weights.detach()
        return self.W_o(torch.einsum("bhqk,bkhd->bqhd", self.drop(weights), v).reshape(B, L, D))


class _OwnFeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class LayerOwnPieces(nn.Module):
    """Own attention and FFN, and PyTorch-style dropout1/dropout2 next to the required dropout."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = _OwnAttention(d_model, num_heads, dropout)
        self.feed_forward = _OwnFeedForward(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        attended = self.self_attn(x, x, x, mask)
        x = self.norm1(self.dropout(attended) + x)
        return self.norm2(self.dropout2(self.feed_forward(x)) + x)


# --------------------------------------------------------------------------------------
# Encoder(vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1, max_seq_length=5000)
# --------------------------------------------------------------------------------------


class _Stack(nn.Module):
    """The right constructor and forward; mutants override one of them."""

    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        super().__init__()
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positional_encoding = PositionalEncoding(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList([_Layer(d_model, num_heads, d_ff, dropout) for _ in range(num_layers)])

    def forward(self, src, src_mask=None):
        x = self.dropout(self.positional_encoding(self.embedding(src) * math.sqrt(self.d_model)))
        for layer in self.layers:
            x = layer(x, src_mask)
        return x


class StackStub(nn.Module):
    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class StackForwardStub(_Stack):
    def forward(self, src, src_mask=None):
        # YOUR CODE HERE
        raise NotImplementedError()


class StackNoScale(_Stack):
    def forward(self, src, src_mask=None):
        x = self.dropout(self.positional_encoding(self.embedding(src)))
        for layer in self.layers:
            x = layer(x, src_mask)
        return x


class StackScaledAfterPE(_Stack):
    def forward(self, src, src_mask=None):
        x = self.dropout(self.positional_encoding(self.embedding(src)) * math.sqrt(self.d_model))
        for layer in self.layers:
            x = layer(x, src_mask)
        return x


class StackNoPositions(_Stack):
    def forward(self, src, src_mask=None):
        x = self.dropout(self.embedding(src) * math.sqrt(self.d_model))
        for layer in self.layers:
            x = layer(x, src_mask)
        return x


class StackSharedLayer(_Stack):
    """nn.ModuleList([layer] * N): one layer, N times."""

    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        super().__init__(vocab_size, d_model, num_layers, num_heads, d_ff, dropout, max_seq_length)
        self.layers = nn.ModuleList([_Layer(d_model, num_heads, d_ff, dropout)] * num_layers)


class StackPythonListShared(_Stack):
    """[layer] * N in a plain list."""

    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        nn.Module.__init__(self)
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positional_encoding = PositionalEncoding(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)
        self.layers = [_Layer(d_model, num_heads, d_ff, dropout)] * num_layers


class StackPythonList(_Stack):
    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        nn.Module.__init__(self)
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positional_encoding = PositionalEncoding(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)
        self.layers = [_Layer(d_model, num_heads, d_ff, dropout) for _ in range(num_layers)]


class StackMaskNotPassed(_Stack):
    def forward(self, src, src_mask=None):
        x = self.dropout(self.positional_encoding(self.embedding(src) * math.sqrt(self.d_model)))
        for layer in self.layers:
            x = layer(x)
        return x


class StackNotChained(_Stack):
    def forward(self, src, src_mask=None):
        x = self.dropout(self.positional_encoding(self.embedding(src) * math.sqrt(self.d_model)))
        out = x
        for layer in self.layers:
            out = layer(x, src_mask)
        return out


class StackFinalNorm(_Stack):
    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        super().__init__(vocab_size, d_model, num_layers, num_heads, d_ff, dropout, max_seq_length)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, src, src_mask=None):
        return self.norm(super().forward(src, src_mask))


class StackNoDropout(_Stack):
    def forward(self, src, src_mask=None):
        x = self.positional_encoding(self.embedding(src) * math.sqrt(self.d_model))
        for layer in self.layers:
            x = layer(x, src_mask)
        return x


class StackDropoutBeforePositions(_Stack):
    def forward(self, src, src_mask=None):
        x = self.positional_encoding(self.dropout(self.embedding(src) * math.sqrt(self.d_model)))
        for layer in self.layers:
            x = layer(x, src_mask)
        return x


class StackDropoutOnOutput(_Stack):
    def forward(self, src, src_mask=None):
        x = self.positional_encoding(self.embedding(src) * math.sqrt(self.d_model))
        for layer in self.layers:
            x = layer(x, src_mask)
        return self.dropout(x)


class StackEmbeddingsDroppedTwice(_Stack):
    """Dropout before and after the positional encoding (as when the PE module drops too)."""

    def forward(self, src, src_mask=None):
        x = self.dropout(self.positional_encoding(self.dropout(self.embedding(src) * math.sqrt(self.d_model))))
        for layer in self.layers:
            x = layer(x, src_mask)
        return x


class StackFunctionalDropout(_Stack):
    """Correct: F.dropout that follows self.training, positions added from the buffer directly."""

    def forward(self, src, src_mask=None):
        x = self.embedding(src) * self.d_model ** 0.5 + self.positional_encoding.pe[:, : src.size(1)]
        x = F.dropout(x, p=self.dropout.p, training=self.training)
        for layer in self.layers:
            x = layer(x, src_mask)
        return x


class StackWrongLayers(_Stack):
    """The stack is right, the layers are pre-norm."""

    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        super().__init__(vocab_size, d_model, num_layers, num_heads, d_ff, dropout, max_seq_length)
        self.layers = nn.ModuleList([LayerPreNorm(d_model, num_heads, d_ff, dropout) for _ in range(num_layers)])


class StackWrappingTheReference(nn.Module):
    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        super().__init__()
        self.inner = course_utils.reference.Encoder(vocab_size, d_model, num_layers, num_heads, d_ff, dropout,
                                                    max_seq_length)

    def forward(self, src, src_mask=None):
        return self.inner(src, src_mask)


class StackWithReferenceLayers(nn.Module):
    """Built on course_utils.reference.EncoderLayer (allowed: it is the previous exercise), with
    PyTorch-style clones (copy.deepcopy, as nn.TransformerEncoder does) and d_model ** 0.5."""

    def __init__(self, vocab_size: int, d_model: int, num_layers: int = 6, num_heads: int = 8, d_ff: int = 2048,
                 dropout: float = 0.1, max_seq_length: int = 5000) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positional_encoding = PositionalEncoding(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)
        layer = reference.EncoderLayer(d_model, num_heads, d_ff, dropout)
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])

    def forward(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        x = self.embedding(src) * self.embedding.embedding_dim ** 0.5
        x = self.dropout(self.positional_encoding(x))
        for layer in self.layers:
            x = layer(x, mask=src_mask)
        return x


class _OwnPositions(nn.Module):
    """A student's own positional encoding, computed in float64 and stored as a buffer."""

    def __init__(self, d_model: int, max_seq_length: int = 5000) -> None:
        super().__init__()
        position = torch.arange(max_seq_length, dtype=torch.float64)[:, None]
        div = 10000.0 ** (torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
        pe = torch.zeros(max_seq_length, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(position / div)
        pe[:, 1::2] = torch.cos(position / div)
        self.register_buffer("pe", pe.float()[None])

    def forward(self, x):
        return x + self.pe[:, : x.size(1)]


class StackOwnPieces(nn.Module):
    """Own layers and positional encoding, a functional dropout honouring self.training."""

    def __init__(self, vocab_size: int, d_model: int, num_layers: int = 6, num_heads: int = 8, d_ff: int = 2048,
                 dropout: float = 0.1, max_seq_length: int = 5000) -> None:
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positional_encoding = _OwnPositions(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            self.layers.append(LayerOwnPieces(d_model, num_heads, d_ff, dropout))

    def forward(self, src, src_mask=None):
        x = F.dropout(self.positional_encoding(self.scale * self.embedding(src)), self.dropout.p, self.training)
        for layer in self.layers:
            x = layer(x, src_mask)
        return x


# --------------------------------------------------------------------------------------
# encoder_parameter_count(vocab_size, d_model, num_layers, d_ff) -> int
# --------------------------------------------------------------------------------------


def count_stub(vocab_size, d_model, num_layers, d_ff):
    # YOUR CODE HERE
    raise NotImplementedError()


def count_no_biases(vocab_size, d_model, num_layers, d_ff):
    return vocab_size * d_model + num_layers * (4 * d_model * d_model + 2 * d_model * d_ff + 4 * d_model)


def count_no_layer_norms(vocab_size, d_model, num_layers, d_ff):
    layer = 4 * (d_model * d_model + d_model) + d_model * d_ff + d_ff + d_ff * d_model + d_model
    return vocab_size * d_model + num_layers * layer


def count_norms_scale_only(vocab_size, d_model, num_layers, d_ff):
    layer = 4 * (d_model * d_model + d_model) + d_model * d_ff + d_ff + d_ff * d_model + d_model + 2 * d_model
    return vocab_size * d_model + num_layers * layer


def count_no_embedding(vocab_size, d_model, num_layers, d_ff):
    return num_layers * (4 * (d_model * d_model + d_model) + 2 * d_model * d_ff + d_ff + d_model + 4 * d_model)


def count_one_layer(vocab_size, d_model, num_layers, d_ff):
    return vocab_size * d_model + 4 * (d_model * d_model + d_model) + 2 * d_model * d_ff + d_ff + 5 * d_model


def count_three_projections(vocab_size, d_model, num_layers, d_ff):
    layer = 3 * (d_model * d_model + d_model) + 2 * d_model * d_ff + d_ff + d_model + 4 * d_model
    return vocab_size * d_model + num_layers * layer


def count_with_generator(vocab_size, d_model, num_layers, d_ff):
    return reference_parameter_count.__wrapped__(vocab_size, d_model, num_layers, d_ff) \
        + d_model * vocab_size + vocab_size


def count_float(vocab_size, d_model, num_layers, d_ff):
    per_layer = 4 * d_model * (d_model + 1) + d_ff * (2 * d_model + 1) + 5 * d_model
    return vocab_size * d_model + num_layers * per_layer / 1  # "/" makes it a float


def count_by_building(vocab_size, d_model, num_layers, d_ff):
    model = reference.Encoder(vocab_size, d_model, num_layers, 1, d_ff, max_seq_length=1)
    return sum(p.numel() for p in model.parameters())


def count_wrapping_the_reference(vocab_size, d_model, num_layers, d_ff):
    return reference_parameter_count(vocab_size, d_model, num_layers, d_ff)


def count_wrong_unexplained(vocab_size, d_model, num_layers, d_ff):
    return vocab_size * d_model + num_layers * (4 * d_model * d_model + d_model * d_ff)


def count_expanded(vocab_size, d_model, num_layers, d_ff):
    per_layer = 4 * d_model * (d_model + 1) + d_ff * (2 * d_model + 1) + 5 * d_model
    return vocab_size * d_model + num_layers * per_layer


def count_by_pieces(vocab_size: int, d_model: int, num_layers: int, d_ff: int) -> int:
    def linear(n_in: int, n_out: int) -> int:
        return n_in * n_out + n_out

    layer_norm = 2 * d_model
    layer = 4 * linear(d_model, d_model) + linear(d_model, d_ff) + linear(d_ff, d_model) + 2 * layer_norm
    return vocab_size * d_model + sum(layer for _ in range(num_layers))


CATALOGUE: dict[str, Catalogue] = {
    "check_encoder_layer": Catalogue(
        reference=reference.EncoderLayer,
        mutants=[
            Mutant("stub", LayerStub, r"EncoderLayer\(16, 4, 32, dropout=0\.1\) is not implemented yet"),
            Mutant("forward_stub", LayerForwardStub, r"EncoderLayer\.forward\(x, mask\).* is not implemented yet"),
            Mutant("pre_norm", LayerPreNorm, r"no mask on cpu in float32 has the right shape(.|\n)*"
                   r"Likely mistake: this is pre-norm \(x \+ Sublayer\(LayerNorm\(x\)\)\)"),
            Mutant("dropout_after_residual", LayerDropoutAfterResidual,
                   r"in training mode(.|\n)*Likely mistake: dropout is applied after the residual "
                   r"sum, norm\(dropout\(x \+ sublayer\(x\)\)\)"),
            Mutant("dropout_on_inputs", LayerDropoutOnInputs,
                   r"in training mode(.|\n)*Likely mistake: dropout is applied to the sublayers' inputs"),
            Mutant("dropout_twice", LayerDropoutTwice,
                   r"in training mode(.|\n)*Likely mistake: dropout is applied twice to each sublayer's output"),
            Mutant("dropout_after_norm", LayerDropoutAfterNorm,
                   r"in training mode(.|\n)*Likely mistake: dropout is applied after each LayerNorm"),
            Mutant("no_residual", LayerNoResidual, r"Likely mistake: the residual connections are missing"),
            Mutant("no_attention_residual", LayerNoAttentionResidual,
                   r"Likely mistake: the residual connection around self-attention is missing"),
            Mutant("norm_inside", LayerNormInside,
                   r"Likely mistake: the LayerNorm is applied to the sublayer's output before the residual add"),
            Mutant("norms_swapped", LayerNormsSwapped, r"Likely mistake: norm1 and norm2 are swapped"),
            Mutant("norm1_twice", LayerNorm1Twice, r"Likely mistake: norm1 is used after both sublayers"),
            Mutant("shared_norm_object", LayerSharedNormObject,
                   r"EncoderLayer\.norm1 and EncoderLayer\.norm2 are the same LayerNorm object"),
            Mutant("mask_not_passed", LayerMaskNotPassed,
                   r"with a padding mask \(B, 1, 1, L\) on cpu(.|\n)*Likely mistake: the mask is not passed to "
                   r"self-attention"),
            Mutant("sublayers_swapped", LayerSublayersSwapped,
                   r"Likely mistake: the two sublayers are in the wrong order"),
            Mutant("indexes_the_attention", LayerIndexesTheAttention,
                   r"Likely mistake: self_attn\(\.\.\.\)\[0\] keeps the first sentence's output only"),
            Mutant("no_dropout", LayerNoDropout,
                   r"in training mode(.|\n)*Likely mistake: self\.dropout is never applied in training"),
            Mutant("dropout_always_on", LayerFunctionalDropoutAlwaysOn,
                   r"gave two different outputs for the same input in eval mode"),
            Mutant("builtin_attention", LayerBuiltinAttention,
                   r"EncoderLayer\.self_attn has no W_q: it should be a MultiHeadAttention"),
            Mutant("one_head", LayerOneHead, r"self_attn has num_heads=1, but the layer was built with num_heads=4"),
            Mutant("named_attention", LayerNamedAttention,
                   r"EncoderLayer has no attribute self_attn: in __init__, create self\.self_attn = "
                   r"MultiHeadAttention\(d_model, num_heads, dropout\)"),
            Mutant("wraps_the_reference", LayerWrappingTheReference,
                   r"your code calls course_utils\.reference's own EncoderLayer"),
        ],
        correct=[LayerSublayerHelper, LayerOwnPieces, LayerFunctionalDropoutFollowsTraining, LayerTinyEpsilon],
    ),
    "check_encoder": Catalogue(
        reference=reference.Encoder,
        mutants=[
            Mutant("stub", StackStub, r"Encoder\(11, 16, num_layers=2.*\) is not implemented yet"),
            Mutant("forward_stub", StackForwardStub, r"Encoder\.forward\(src, src_mask\).* is not implemented yet"),
            Mutant("no_sqrt_d_model", StackNoScale,
                   r"Likely mistake: the embeddings are not multiplied by sqrt\(d_model\)"),
            Mutant("scaled_after_positions", StackScaledAfterPE,
                   r"Likely mistake: the embeddings are scaled after adding the positional encoding"),
            Mutant("no_positions", StackNoPositions, r"Likely mistake: the positional encoding is not applied"),
            Mutant("shared_layer", StackSharedLayer,
                   r"Encoder\.layers holds the same layer object several times: \[layer\] \* N"),
            Mutant("python_list_shared", StackPythonListShared,
                   r"Encoder\.layers is a Python list that holds the same layer object several times"),
            Mutant("python_list", StackPythonList, r"Encoder\.layers is a Python list: PyTorch does not see"),
            Mutant("mask_not_passed_down", StackMaskNotPassed,
                   r"with a padding mask(.|\n)*Likely mistake: src_mask is not passed down to the layers"),
            Mutant("not_chained", StackNotChained,
                   r"Likely mistake: each layer is applied to the embeddings instead of the previous layer's output"),
            Mutant("final_norm", StackFinalNorm, r"Likely mistake: there is a LayerNorm after the last layer"),
            Mutant("no_dropout", StackNoDropout,
                   r"in training mode(.|\n)*Likely mistake: self\.dropout is never applied in training"),
            Mutant("dropout_before_positions", StackDropoutBeforePositions,
                   r"Likely mistake: dropout is applied before the positional encoding is added"),
            Mutant("dropout_on_output", StackDropoutOnOutput,
                   r"in training mode(.|\n)*Likely mistake: dropout is applied to the encoder's output instead"),
            Mutant("embeddings_dropped_twice", StackEmbeddingsDroppedTwice,
                   r"in training mode(.|\n)*Likely mistake: the embeddings are dropped twice"),
            Mutant("pre_norm_layers", StackWrongLayers,
                   r"Likely mistake: your Encoder wires the stack right, but its layers differ"),
            Mutant("wraps_the_reference", StackWrappingTheReference,
                   r"your code calls course_utils\.reference's own Encoder"),
        ],
        correct=[StackWithReferenceLayers, StackOwnPieces, StackFunctionalDropout],
    ),
    "check_encoder_parameter_count": Catalogue(
        reference=reference_parameter_count,
        mutants=[
            Mutant("stub", count_stub, r"encoder_parameter_count\(vocab_size=11, d_model=16, num_layers=2, "
                                       r"d_ff=32\) is not implemented yet"),
            Mutant("no_biases", count_no_biases, r"Likely mistake: the biases are missing"),
            Mutant("no_layer_norms", count_no_layer_norms,
                   r"under by 128(.|\n)*Likely mistake: 4 \* d_model parameters per layer are missing"),
            Mutant("norms_scale_only", count_norms_scale_only,
                   r"Likely mistake: 2 \* d_model parameters per layer are missing"),
            Mutant("no_embedding", count_no_embedding, r"Likely mistake: the embedding is missing"),
            Mutant("one_layer", count_one_layer, r"Likely mistake: only one layer is counted"),
            Mutant("three_projections", count_three_projections, r"Likely mistake: W_o is missing"),
            Mutant("with_generator", count_with_generator, r"Likely mistake: you added an output layer"),
            Mutant("float", count_float, r"should return an int, but it returned float .*Use integer arithmetic"),
            Mutant("builds_a_model", count_by_building, r"builds a model \(\w+\.\w+ was created\)"),
            Mutant("unexplained", count_wrong_unexplained, r"returned 3,248, but a real Encoder of these sizes has "
                                                           r"[\d,]+ parameters(.|\n)*Hint: count each piece"),
            Mutant("wraps_the_reference", count_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own encoder_parameter_count"),
        ],
        correct=[count_expanded, count_by_pieces],
    ),
}

BUG = Bug("encoder_solution", "self.embedding(src) * math.sqrt(self.d_model)", "self.embedding(src)")
