"""Known-wrong and correct answers for chapter 06_decoder's checks.

Each mutant is a realistic student mistake (an ``nn.Module`` class); its ``expect`` pins the
diagnosis the check gives (a regular expression searched in the AssertionError's message).
Source and target lengths differ in every check call, so several of these mistakes crash
inside the mutant with a bare shape error: the check must then name the mix-up. The
correct answers are written differently from the reference and must pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import course_utils.reference
from course_utils import reference
from course_utils.reference import FeedForwardNetwork, MultiHeadAttention, PositionalEncoding
from tests.support import Bug, Catalogue, Mutant

# --------------------------------------------------------------------------------------
# DecoderLayer(d_model, num_heads, d_ff, dropout=0.1)
# --------------------------------------------------------------------------------------


class _Layer(nn.Module):
    """The right constructor and forward; mutants override one of them."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.feed_forward = FeedForwardNetwork(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, tgt_mask)))
        x = self.norm2(x + self.dropout(self.cross_attn(x, memory, memory, src_mask)))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class LayerStub(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class LayerForwardStub(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        # YOUR CODE HERE
        raise NotImplementedError()


class LayerQueryMemorySwapped(_Layer):
    """Cross-attention with the query taken from memory and the keys/values from x."""

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, tgt_mask)))
        x = self.norm2(x + self.dropout(self.cross_attn(memory, x, x, src_mask)))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class LayerSelfAttentionTwice(_Layer):
    """The second sublayer reuses self_attn (over memory): cross_attn's weights never used."""

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, tgt_mask)))
        x = self.norm2(x + self.dropout(self.self_attn(x, memory, memory, src_mask)))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class LayerSelfAttentionTwiceNoMemory(_Layer):
    """Two self-attentions over the target: memory is never read."""

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, tgt_mask)))
        x = self.norm2(x + self.dropout(self.self_attn(x, x, x, tgt_mask)))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class LayerCrossKeysFromX(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, tgt_mask)))
        x = self.norm2(x + self.dropout(self.cross_attn(x, x, x, src_mask)))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class LayerMasksSwapped(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, src_mask)))
        x = self.norm2(x + self.dropout(self.cross_attn(x, memory, memory, tgt_mask)))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class LayerTgtMaskIgnored(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x)))
        x = self.norm2(x + self.dropout(self.cross_attn(x, memory, memory, src_mask)))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class LayerOwnFutureMask(_Layer):
    """Ignores tgt_mask and builds an upper-triangular mask: each position sees itself and the future."""

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        size = x.size(1)
        future = torch.ones(size, size, dtype=torch.bool, device=x.device).triu()
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, future)))
        x = self.norm2(x + self.dropout(self.cross_attn(x, memory, memory, src_mask)))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class LayerSrcMaskIgnored(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, tgt_mask)))
        x = self.norm2(x + self.dropout(self.cross_attn(x, memory, memory)))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class LayerPreNorm(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h, tgt_mask))
        h = self.norm2(x)
        x = x + self.dropout(self.cross_attn(h, memory, memory, src_mask))
        return x + self.dropout(self.feed_forward(self.norm3(x)))


class LayerNoResidual(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(self.dropout(self.self_attn(x, x, x, tgt_mask)))
        x = self.norm2(self.dropout(self.cross_attn(x, memory, memory, src_mask)))
        return self.norm3(self.dropout(self.feed_forward(x)))


class LayerNoCrossResidual(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, tgt_mask)))
        x = self.norm2(self.dropout(self.cross_attn(x, memory, memory, src_mask)))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class LayerNormsReversed(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm3(x + self.dropout(self.self_attn(x, x, x, tgt_mask)))
        x = self.norm2(x + self.dropout(self.cross_attn(x, memory, memory, src_mask)))
        return self.norm1(x + self.dropout(self.feed_forward(x)))


class LayerNormInsideResidual(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = x + self.norm1(self.dropout(self.self_attn(x, x, x, tgt_mask)))
        x = x + self.norm2(self.dropout(self.cross_attn(x, memory, memory, src_mask)))
        return x + self.norm3(self.dropout(self.feed_forward(x)))


class LayerNamedEncAttn(nn.Module):
    """The cross-attention named after another codebase."""

    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.enc_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.feed_forward = FeedForwardNetwork(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, tgt_mask)))
        x = self.norm2(x + self.dropout(self.enc_attn(x, memory, memory, src_mask)))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class LayerSharedAttention(_Layer):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__(d_model, num_heads, d_ff, dropout)
        self.cross_attn = self.self_attn


class LayerOneNorm(_Layer):
    """One LayerNorm object stored under three names."""

    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__(d_model, num_heads, d_ff, dropout)
        self.norm2 = self.norm3 = self.norm1


class LayerNoDropout(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + self.self_attn(x, x, x, tgt_mask))
        x = self.norm2(x + self.cross_attn(x, memory, memory, src_mask))
        return self.norm3(x + self.feed_forward(x))


class LayerFunctionalDropout(_Layer):
    """F.dropout without training=self.training: active in eval mode too."""

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + F.dropout(self.self_attn(x, x, x, tgt_mask), 0.1))
        x = self.norm2(x + F.dropout(self.cross_attn(x, memory, memory, src_mask), 0.1))
        return self.norm3(x + F.dropout(self.feed_forward(x), 0.1))


class LayerDropoutAfterResidual(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(self.dropout(x + self.self_attn(x, x, x, tgt_mask)))
        x = self.norm2(self.dropout(x + self.cross_attn(x, memory, memory, src_mask)))
        return self.norm3(self.dropout(x + self.feed_forward(x)))


class LayerDropoutOnMemory(_Layer):
    """Drops memory (the cross-attention's keys and values) instead of the cross-attention's output."""

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self.norm1(x + self.dropout(self.self_attn(x, x, x, tgt_mask)))
        m = self.dropout(memory)
        x = self.norm2(x + self.cross_attn(x, m, m, src_mask))
        return self.norm3(x + self.dropout(self.feed_forward(x)))


class LayerDropoutOnInputs(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        h = self.dropout(x)
        x = self.norm1(x + self.self_attn(h, h, h, tgt_mask))
        x = self.norm2(x + self.cross_attn(self.dropout(x), memory, memory, src_mask))
        return self.norm3(x + self.feed_forward(self.dropout(x)))


class LayerDropoutTwice(_Layer):
    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        def drop(t):
            return self.dropout(self.dropout(t))
        x = self.norm1(x + drop(self.self_attn(x, x, x, tgt_mask)))
        x = self.norm2(x + drop(self.cross_attn(x, memory, memory, src_mask)))
        return self.norm3(x + drop(self.feed_forward(x)))


class LayerFunctionalDropoutFollowsTraining(_Layer):
    """Correct: F.dropout with training=self.training; LayerNorms with epsilon 1e-6 (the annotated transformer's)."""

    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__(d_model, num_heads, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model, eps=1e-6) for _ in range(3))

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        p = self.dropout.p
        x = self.norm1(x + F.dropout(self.self_attn(x, x, x, tgt_mask), p, self.training))
        x = self.norm2(x + F.dropout(self.cross_attn(x, memory, memory, src_mask), p, self.training))
        return self.norm3(x + F.dropout(self.feed_forward(x), p, self.training))


class LayerWrappingTheReference(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        self.inner = course_utils.reference.DecoderLayer(d_model, num_heads, d_ff, dropout)

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        return self.inner(x, memory, src_mask, tgt_mask)


# Correct alternatives --------------------------------------------------------------------


class LayerWithSublayerHelper(nn.Module):
    """A helper for the residual-dropout-norm wrapping; attentions called with keywords."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.feed_forward = FeedForwardNetwork(d_model, d_ff, dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def _wrap(self, x: Tensor, sublayer, norm: nn.LayerNorm) -> Tensor:
        return norm(x + self.dropout(sublayer(x)))

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        x = self._wrap(x, lambda h: self.self_attn(query=h, key=h, value=h, mask=tgt_mask), self.norm1)
        x = self._wrap(x, lambda h: self.cross_attn(query=h, key=memory, value=memory, mask=src_mask),
                       self.norm2)
        return self._wrap(x, self.feed_forward, self.norm3)


class _EinsumAttention(nn.Module):
    """Own multi-head attention with the chapter 2 attribute names (W_q, W_k, W_v, W_o)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.h = num_heads
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.drop = nn.Dropout(dropout)

    def forward(self, query, key, value, mask=None):
        B, Lq, D = query.shape
        q = self.W_q(query).view(B, Lq, self.h, -1)
        k = self.W_k(key).view(B, key.size(1), self.h, -1)
        v = self.W_v(value).view(B, value.size(1), self.h, -1)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D // self.h)
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        self.attention_weights = scores.softmax(-1)
        context = torch.einsum("bhqk,bkhd->bqhd", self.drop(self.attention_weights), v)
        return self.W_o(context.reshape(B, Lq, D))


class _OwnFFN(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class LayerOwnParts(nn.Module):
    """Own attention and FFN modules; masks passed by keyword; a loop over the sublayers."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.self_attn = _EinsumAttention(d_model, num_heads, dropout)
        self.cross_attn = _EinsumAttention(d_model, num_heads, dropout)
        self.feed_forward = _OwnFFN(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, src_mask: Tensor | None = None,
                tgt_mask: Tensor | None = None) -> Tensor:
        steps = [
            (lambda h: self.self_attn(h, h, h, mask=tgt_mask), self.norm1),
            (lambda h: self.cross_attn(h, memory, memory, mask=src_mask), self.norm2),
            (self.feed_forward, self.norm3),
        ]
        for sublayer, norm in steps:
            residual = x
            x = norm(residual + self.dropout(sublayer(x)))
        return x


# --------------------------------------------------------------------------------------
# Decoder(vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1, max_seq_length=5000)
# --------------------------------------------------------------------------------------


class _Decoder(nn.Module):
    """The right decoder (built from the mutants' right layer); mutants override a part."""

    layer_class: type[nn.Module] = _Layer

    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        super().__init__()
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positional_encoding = PositionalEncoding(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            self.layer_class(d_model, num_heads, d_ff, dropout) for _ in range(num_layers))

    def embed(self, tgt):
        return self.dropout(self.positional_encoding(self.embedding(tgt) * math.sqrt(self.d_model)))

    def forward(self, tgt, memory, src_mask=None, tgt_mask=None):
        x = self.embed(tgt)
        for layer in self.layers:
            x = layer(x, memory, src_mask, tgt_mask)
        return x


class DecoderStub(nn.Module):
    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class DecoderNoSqrt(_Decoder):
    def embed(self, tgt):
        return self.dropout(self.positional_encoding(self.embedding(tgt)))


class DecoderScaledAfterPE(_Decoder):
    def embed(self, tgt):
        return self.dropout(self.positional_encoding(self.embedding(tgt)) * math.sqrt(self.d_model))


class DecoderNoPositions(_Decoder):
    def embed(self, tgt):
        return self.dropout(self.embedding(tgt) * math.sqrt(self.d_model))


class DecoderNoDropout(_Decoder):
    def embed(self, tgt):
        return self.positional_encoding(self.embedding(tgt) * math.sqrt(self.d_model))


class DecoderDropoutOnOutput(_Decoder):
    def embed(self, tgt):
        return self.positional_encoding(self.embedding(tgt) * math.sqrt(self.d_model))

    def forward(self, tgt, memory, src_mask=None, tgt_mask=None):
        return self.dropout(super().forward(tgt, memory, src_mask, tgt_mask))


class DecoderEmbeddingsDroppedTwice(_Decoder):
    def embed(self, tgt):
        return self.dropout(self.positional_encoding(self.dropout(self.embedding(tgt) * math.sqrt(self.d_model))))


class DecoderFunctionalDropout(_Decoder):
    """Correct: F.dropout that follows self.training instead of calling the nn.Dropout module."""

    def embed(self, tgt):
        return F.dropout(self.positional_encoding(self.embedding(tgt) * math.sqrt(self.d_model)),
                         self.dropout.p, self.training)


class DecoderTgtMaskNotPassed(_Decoder):
    def forward(self, tgt, memory, src_mask=None, tgt_mask=None):
        x = self.embed(tgt)
        for layer in self.layers:
            x = layer(x, memory, src_mask)
        return x


class DecoderSrcMaskNotPassed(_Decoder):
    def forward(self, tgt, memory, src_mask=None, tgt_mask=None):
        x = self.embed(tgt)
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask)
        return x


class DecoderMasksSwapped(_Decoder):
    def forward(self, tgt, memory, src_mask=None, tgt_mask=None):
        x = self.embed(tgt)
        for layer in self.layers:
            x = layer(x, memory, tgt_mask, src_mask)
        return x


class DecoderTargetAsMemory(_Decoder):
    def forward(self, tgt, memory, src_mask=None, tgt_mask=None):
        x = self.embed(tgt)
        for layer in self.layers:
            x = layer(x, x, src_mask, tgt_mask)
        return x


class DecoderNotChained(_Decoder):
    def forward(self, tgt, memory, src_mask=None, tgt_mask=None):
        x = self.embed(tgt)
        for layer in self.layers:
            out = layer(x, memory, src_mask, tgt_mask)
        return out


class DecoderLastLayerOnly(_Decoder):
    def forward(self, tgt, memory, src_mask=None, tgt_mask=None):
        return self.layers[-1](self.embed(tgt), memory, src_mask, tgt_mask)


class DecoderSameLayerRepeated(_Decoder):
    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        super().__init__(vocab_size, d_model, 0, num_heads, d_ff, dropout, max_seq_length)
        self.layers = nn.ModuleList([_Layer(d_model, num_heads, d_ff, dropout)] * num_layers)


class DecoderPythonList(_Decoder):
    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        nn.Module.__init__(self)
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positional_encoding = PositionalEncoding(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)
        self.layers = [_Layer(d_model, num_heads, d_ff, dropout) for _ in range(num_layers)]


class DecoderWithPreNormLayers(_Decoder):
    """The stack is right; its layers are pre-norm."""

    layer_class = LayerPreNorm


class DecoderWithCrashingLayers(_Decoder):
    """The stack is right; its layers swap the masks and crash on Lt != Ls."""

    layer_class = LayerMasksSwapped


class DecoderWrappingTheReference(nn.Module):
    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        super().__init__()
        self.inner = course_utils.reference.Decoder(vocab_size, d_model, num_layers, num_heads, d_ff,
                                                    dropout, max_seq_length)

    def forward(self, tgt, memory, src_mask=None, tgt_mask=None):
        return self.inner(tgt, memory, src_mask, tgt_mask)


# Correct alternatives --------------------------------------------------------------------


class DecoderOfReferenceLayers(nn.Module):
    """Built on the reference DecoderLayer (allowed: the exercise is the stack), an own
    sinusoidal buffer, masks passed by keyword."""

    def __init__(self, vocab_size: int, d_model: int, num_layers: int = 6, num_heads: int = 8,
                 d_ff: int = 2048, dropout: float = 0.1, max_seq_length: int = 5000) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positional_encoding = PositionalEncoding(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList([reference.DecoderLayer(d_model, num_heads, d_ff, dropout)
                                     for _ in range(num_layers)])
        self.scale = d_model ** 0.5

    def forward(self, tgt, memory, src_mask=None, tgt_mask=None):
        x = self.dropout(self.positional_encoding(self.scale * self.embedding(tgt)))
        for layer in self.layers:
            x = layer(x, memory, src_mask=src_mask, tgt_mask=tgt_mask)
        return x


class _OwnPositions(nn.Module):
    def __init__(self, d_model: int, max_seq_length: int) -> None:
        super().__init__()
        position = torch.arange(max_seq_length).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(1, max_seq_length, d_model)
        pe[0, :, 0::2] = torch.sin(position * div)
        pe[0, :, 1::2] = torch.cos(position * div)
        self.register_buffer("pe", pe)

    def forward(self, x):
        return x + self.pe[:, : x.size(1)]


class DecoderOwnParts(nn.Module):
    """Own positional encoding and own layers (LayerOwnParts), functools-free loop with enumerate."""

    def __init__(self, vocab_size, d_model, num_layers=6, num_heads=8, d_ff=2048, dropout=0.1,
                 max_seq_length=5000):
        super().__init__()
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.positional_encoding = _OwnPositions(d_model, max_seq_length)
        self.dropout = nn.Dropout(p=dropout)
        self.layers = nn.ModuleList()
        for _ in range(num_layers):
            self.layers.append(LayerOwnParts(d_model, num_heads, d_ff, dropout))

    def forward(self, tgt, memory, src_mask=None, tgt_mask=None):
        hidden = self.embedding(tgt).mul(math.sqrt(self.d_model))
        hidden = self.dropout(self.positional_encoding(hidden))
        for index, layer in enumerate(self.layers):
            hidden = self.layers[index](hidden, memory, src_mask, tgt_mask)
        return hidden


CATALOGUE: dict[str, Catalogue] = {
    "check_decoder_layer": Catalogue(
        reference=reference.DecoderLayer,
        mutants=[
            Mutant("stub", LayerStub, r"DecoderLayer\(16, 4, 32, dropout=0\.1\) is not implemented yet"),
            Mutant("forward_stub", LayerForwardStub, r"DecoderLayer\.forward\(.*\) is not implemented yet"),
            Mutant("query_memory_swapped", LayerQueryMemorySwapped,
                   r"raised RuntimeError(.|\n)*Likely mistake: cross-attention has its query and memory "
                   r"swapped"),
            Mutant("self_attention_twice", LayerSelfAttentionTwice,
                   r"self-attention is used twice instead of cross-attention"),
            Mutant("self_attention_twice_no_memory", LayerSelfAttentionTwiceNoMemory,
                   r"self-attention is used twice instead of cross-attention"),
            Mutant("cross_keys_from_x", LayerCrossKeysFromX,
                   r"Likely mistake: cross-attention takes its keys/values from x instead of memory"),
            Mutant("masks_swapped", LayerMasksSwapped,
                   r"raised RuntimeError(.|\n)*Likely mistake: src_mask and tgt_mask are swapped"),
            Mutant("tgt_mask_ignored", LayerTgtMaskIgnored,
                   r"the output at position 0 changed (.|\n)*position 0 saw the future(.|\n)*"
                   r"tgt_mask is not passed to self-attention"),
            Mutant("own_future_mask", LayerOwnFutureMask, r"position 0 saw the future"),
            Mutant("src_mask_ignored", LayerSrcMaskIgnored,
                   r"changing memory only at padded source positions(.|\n)*"
                   r"src_mask is not passed to cross-attention"),
            Mutant("pre_norm", LayerPreNorm, r"Likely mistake: this is pre-norm"),
            Mutant("no_residual", LayerNoResidual, r"Likely mistake: the residual connections are missing"),
            Mutant("no_cross_residual", LayerNoCrossResidual,
                   r"the residual connection around the cross-attention sublayer is missing"),
            Mutant("norms_reversed", LayerNormsReversed,
                   r"the LayerNorms are used in the wrong order \(yours: norm3, norm2, norm1\)"),
            Mutant("norm_inside_residual", LayerNormInsideResidual,
                   r"the LayerNorm is applied to the sublayer's output before the residual add"),
            Mutant("named_enc_attn", LayerNamedEncAttn,
                   r"DecoderLayer has no attribute cross_attn: in __init__, create self\.cross_attn = "
                   r"MultiHeadAttention"),
            Mutant("shared_attention", LayerSharedAttention,
                   r"cross_attn is the same module as DecoderLayer\.self_attn"),
            Mutant("one_norm", LayerOneNorm, r"norm1, norm2 and norm3 are not three different LayerNorms"),
            Mutant("no_dropout", LayerNoDropout, r"DecoderLayer\.dropout was applied 0 time\(s\)"),
            Mutant("dropout_after_residual", LayerDropoutAfterResidual,
                   r"in training mode(.|\n)*Likely mistake: dropout is applied after the residual sum"),
            Mutant("dropout_on_memory", LayerDropoutOnMemory,
                   r"in training mode(.|\n)*Likely mistake: dropout is applied to memory instead of the "
                   r"cross-attention's output"),
            Mutant("dropout_on_inputs", LayerDropoutOnInputs,
                   r"in training mode(.|\n)*Likely mistake: dropout is applied to the sublayers' inputs"),
            Mutant("dropout_twice", LayerDropoutTwice,
                   r"DecoderLayer\.dropout was applied 6 time\(s\) in one forward pass, expected 3"),
            Mutant("functional_dropout", LayerFunctionalDropout,
                   r"two different outputs for the same input in eval mode"),
            Mutant("wraps_the_reference", LayerWrappingTheReference,
                   r"your code calls course_utils\.reference's own DecoderLayer"),
        ],
        correct=[LayerWithSublayerHelper, LayerOwnParts, LayerFunctionalDropoutFollowsTraining],
    ),
    "check_decoder": Catalogue(
        reference=reference.Decoder,
        mutants=[
            Mutant("stub", DecoderStub, r"Decoder\(11, 16, .*\) is not implemented yet"),
            Mutant("no_sqrt", DecoderNoSqrt, r"Likely mistake: the embeddings are not multiplied by sqrt\(d_model\)"),
            Mutant("scaled_after_pe", DecoderScaledAfterPE,
                   r"the embeddings are scaled after adding the positional encoding"),
            Mutant("no_positions", DecoderNoPositions, r"the positional encoding is missing"),
            Mutant("no_dropout", DecoderNoDropout, r"Decoder\.dropout was applied 0 time\(s\)"),
            Mutant("dropout_on_output", DecoderDropoutOnOutput,
                   r"in training mode(.|\n)*Likely mistake: dropout is applied to the decoder's output instead"),
            Mutant("embeddings_dropped_twice", DecoderEmbeddingsDroppedTwice,
                   r"Decoder\.dropout was applied 2 time\(s\) in one forward pass, expected 1"),
            Mutant("tgt_mask_not_passed", DecoderTgtMaskNotPassed,
                   r"position 0 saw the future(.|\n)*Decoder does not pass tgt_mask down"),
            Mutant("src_mask_not_passed", DecoderSrcMaskNotPassed,
                   r"padded source positions(.|\n)*Decoder does not pass src_mask down"),
            Mutant("masks_swapped", DecoderMasksSwapped,
                   r"raised RuntimeError(.|\n)*Likely mistake: Decoder swaps the masks"),
            Mutant("target_as_memory", DecoderTargetAsMemory,
                   r"Likely mistake: Decoder passes the target \(x\) as memory"),
            Mutant("not_chained", DecoderNotChained,
                   r"each layer is applied to the embeddings instead of the previous layer's output"),
            Mutant("last_layer_only", DecoderLastLayerOnly, r"only 1 of the 2 layers are called"),
            Mutant("same_layer_repeated", DecoderSameLayerRepeated,
                   r"holds the same layer object several times \(\[layer\] \* N"),
            Mutant("python_list", DecoderPythonList, r"Decoder\.layers is a Python list"),
            Mutant("pre_norm_layers", DecoderWithPreNormLayers,
                   r"your Decoder wires the stack right, but its layers differ"),
            Mutant("crashing_layers", DecoderWithCrashingLayers,
                   r"raised inside Decoder\.layers\[0\](.|\n)*So the error is in your DecoderLayer: "
                   r"checks\.check_decoder_layer\(DecoderLayer\) explains it"),
            Mutant("wraps_the_reference", DecoderWrappingTheReference,
                   r"your code calls course_utils\.reference's own Decoder"),
        ],
        correct=[DecoderOfReferenceLayers, DecoderOwnParts, DecoderFunctionalDropout],
    ),
}

BUG = Bug("decoder_solution", "self.embedding(tgt) * math.sqrt(self.d_model)", "self.embedding(tgt)")
