"""Known-wrong and correct answers for chapter 02_multi_head_attention's checks.

Each mutant is a realistic student mistake (a small function, or an ``nn.Module`` class for
MultiHeadAttention); its ``expect`` pins the diagnosis the check gives (a regular
expression searched in the AssertionError's message). The correct answers are written
differently from the reference and must pass. The check requires ``W_q, W_k, W_v, W_o``,
each ``nn.Linear(d_model, d_model)``, so the correct modules vary the internals only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import course_utils.reference
from course_utils import reference
from tests.support import Bug, Catalogue, Mutant

# --------------------------------------------------------------------------------------
# split_heads(x, num_heads): (B, L, d_model) -> (B, H, L, d_k)
# --------------------------------------------------------------------------------------


def split_stub(x: Tensor, num_heads: int) -> Tensor:
    # YOUR CODE HERE
    raise NotImplementedError()


def split_without_transposing(x: Tensor, num_heads: int) -> Tensor:
    batch, length, d_model = x.shape
    return x.view(batch, num_heads, length, d_model // num_heads)


def split_interleaved(x: Tensor, num_heads: int) -> Tensor:
    batch, length, d_model = x.shape
    return x.view(batch, length, d_model // num_heads, num_heads).permute(0, 3, 1, 2)


def split_heads_last(x: Tensor, num_heads: int) -> Tensor:
    # Forgot to move the head axis before the sequence: (B, L, H, d_k).
    batch, length, d_model = x.shape
    return x.view(batch, length, num_heads, d_model // num_heads)


def split_sizes_swapped(x: Tensor, num_heads: int) -> Tensor:
    # d_k heads of size num_heads instead of num_heads heads of size d_k.
    batch, length, d_model = x.shape
    return x.view(batch, length, d_model // num_heads, num_heads).transpose(1, 2)


def split_wrong_axes_transposed(x: Tensor, num_heads: int) -> Tensor:
    batch, length, d_model = x.shape
    return x.view(batch, length, num_heads, d_model // num_heads).transpose(1, 3)


def split_wrapping_the_reference(x: Tensor, num_heads: int) -> Tensor:
    return course_utils.reference.split_heads(x, num_heads)


def split_unflatten_permute(x: Tensor, num_heads: int) -> Tensor:
    return x.unflatten(-1, (num_heads, -1)).permute(0, 2, 1, 3)


def split_chunk_stack(x: Tensor, num_heads: int) -> Tensor:
    return torch.stack(x.chunk(num_heads, dim=-1), dim=1)


def split_reshape_swapaxes(x: Tensor, num_heads: int) -> Tensor:
    batch, length, _ = x.shape
    return x.reshape(batch, length, num_heads, -1).swapaxes(1, 2).contiguous()


# --------------------------------------------------------------------------------------
# combine_heads(x): (B, H, L, d_k) -> (B, L, H * d_k)
# --------------------------------------------------------------------------------------


def combine_stub(x: Tensor) -> Tensor:
    # YOUR CODE HERE
    raise NotImplementedError()


def combine_without_transposing(x: Tensor) -> Tensor:
    batch, num_heads, length, d_k = x.shape
    return x.reshape(batch, length, num_heads * d_k)


def combine_view_after_transpose(x: Tensor) -> Tensor:
    batch, num_heads, length, d_k = x.shape
    return x.transpose(1, 2).view(batch, length, num_heads * d_k)


def combine_no_reshape(x: Tensor) -> Tensor:
    return x.transpose(1, 2)  # (B, L, H, d_k): the heads are never concatenated


def combine_flattened_wrong_axes(x: Tensor) -> Tensor:
    batch, num_heads, length, d_k = x.shape
    return x.reshape(batch, num_heads * length, d_k)


def combine_interleaved(x: Tensor) -> Tensor:
    # Moves d_k before the heads: features come out as (d_k, H), interleaving the heads.
    batch, num_heads, length, d_k = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, length, num_heads * d_k)


def combine_wrapping_the_reference(x: Tensor) -> Tensor:
    return course_utils.reference.combine_heads(x)


def combine_cat_unbind(x: Tensor) -> Tensor:
    return torch.cat(x.unbind(dim=1), dim=-1)


def combine_permute_flatten(x: Tensor) -> Tensor:
    return x.permute(0, 2, 1, 3).flatten(start_dim=2)


def combine_contiguous_view(x: Tensor) -> Tensor:
    batch, _, length, _ = x.shape
    return x.transpose(1, 2).contiguous().view(batch, length, -1)


# --------------------------------------------------------------------------------------
# MultiHeadAttention(d_model, num_heads, dropout=0.0)
# --------------------------------------------------------------------------------------


def _split(x: Tensor, num_heads: int) -> Tensor:
    return x.view(x.size(0), x.size(1), num_heads, -1).transpose(1, 2)


def _combine(x: Tensor) -> Tensor:
    return x.transpose(1, 2).reshape(x.size(0), x.size(2), -1)


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


class _Base(nn.Module):
    """The right constructor; mutants override ``forward`` (or ``__init__``)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        assert d_model % num_heads == 0
        self.num_heads = num_heads
        self.d_k = d_model // num_heads
        self.W_q = nn.Linear(d_model, d_model)
        self.W_k = nn.Linear(d_model, d_model)
        self.W_v = nn.Linear(d_model, d_model)
        self.W_o = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.attention_weights = None

    def forward(self, query, key, value, mask=None):
        q = _split(self.W_q(query), self.num_heads)
        k = _split(self.W_k(key), self.num_heads)
        v = _split(self.W_v(value), self.num_heads)
        context, weights = _attend(q, k, v, mask)
        self.attention_weights = weights.detach()
        return self.W_o(_combine(context))


class MHAStub(nn.Module):
    def __init__(self, d_model, num_heads, dropout=0.0):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class MHAForwardStub(_Base):
    def forward(self, query, key, value, mask=None):
        # YOUR CODE HERE
        raise NotImplementedError()


class MHANamedQProj(nn.Module):
    """The projections named after another codebase (q_proj, ...), not W_q."""

    def __init__(self, d_model, num_heads, dropout=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.attention_weights = None

    def forward(self, query, key, value, mask=None):
        q = _split(self.q_proj(query), self.num_heads)
        k = _split(self.k_proj(key), self.num_heads)
        v = _split(self.v_proj(value), self.num_heads)
        context, self.attention_weights = _attend(q, k, v, mask)
        return self.out_proj(_combine(context))


class MHANoOutputProjection(_Base):
    def forward(self, query, key, value, mask=None):
        q = _split(self.W_q(query), self.num_heads)
        k = _split(self.W_k(key), self.num_heads)
        v = _split(self.W_v(value), self.num_heads)
        context, self.attention_weights = _attend(q, k, v, mask)
        return _combine(context)


class MHASingleHead(_Base):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.W_q(query), self.W_k(key), self.W_v(value)  # (B, L, d_model): one head
        if mask is not None:
            mask = mask.squeeze(1)  # (B, 1, Lq, Lk) -> (B, Lq, Lk)
        context, weights = _attend(q, k, v, mask)
        self.attention_weights = weights.unsqueeze(1).expand(-1, self.num_heads, -1, -1)
        return self.W_o(context)


class MHASplitWithoutTransposing(_Base):
    def forward(self, query, key, value, mask=None):
        B = query.size(0)
        q = self.W_q(query).view(B, self.num_heads, -1, self.d_k)
        k = self.W_k(key).view(B, self.num_heads, -1, self.d_k)
        v = self.W_v(value).view(B, self.num_heads, -1, self.d_k)
        context, self.attention_weights = _attend(q, k, v, mask)
        return self.W_o(context.reshape(B, -1, self.num_heads * self.d_k))


class MHASplitWithoutTransposingMergedRight(_Base):
    def forward(self, query, key, value, mask=None):
        B = query.size(0)
        q = self.W_q(query).view(B, self.num_heads, -1, self.d_k)
        k = self.W_k(key).view(B, self.num_heads, -1, self.d_k)
        v = self.W_v(value).view(B, self.num_heads, -1, self.d_k)
        context, self.attention_weights = _attend(q, k, v, mask)
        return self.W_o(_combine(context))


class MHAKeyValueSwapped(_Base):
    def forward(self, query, key, value, mask=None):
        q = _split(self.W_q(query), self.num_heads)
        k = _split(self.W_k(value), self.num_heads)
        v = _split(self.W_v(key), self.num_heads)
        context, self.attention_weights = _attend(q, k, v, mask)
        return self.W_o(_combine(context))


class MHAMaskIgnored(_Base):
    def forward(self, query, key, value, mask=None):
        q = _split(self.W_q(query), self.num_heads)
        k = _split(self.W_k(key), self.num_heads)
        v = _split(self.W_v(value), self.num_heads)
        context, self.attention_weights = _attend(q, k, v, None)
        return self.W_o(_combine(context))


class MHAMaskInverted(_Base):
    def forward(self, query, key, value, mask=None):
        q = _split(self.W_q(query), self.num_heads)
        k = _split(self.W_k(key), self.num_heads)
        v = _split(self.W_v(value), self.num_heads)
        context, self.attention_weights = _attend(q, k, v, None if mask is None else ~mask)
        return self.W_o(_combine(context))


class MHAOneLinearPerHead(_Base):
    """W_q, W_k, W_v, W_o exist, but each head also gets its own projections."""

    def __init__(self, d_model, num_heads, dropout=0.0):
        super().__init__(d_model, num_heads, dropout)
        d_k = d_model // num_heads
        self.heads = nn.ModuleList(
            nn.ModuleList([nn.Linear(d_model, d_k) for _ in range(3)]) for _ in range(num_heads))

    def forward(self, query, key, value, mask=None):
        contexts, weights = [], []
        for W_q, W_k, W_v in self.heads:
            context, w = _attend(W_q(query), W_k(key), W_v(value), None if mask is None else mask[:, 0])
            contexts.append(context)
            weights.append(w)
        self.attention_weights = torch.stack(weights, dim=1)
        return self.W_o(torch.cat(contexts, dim=-1))


class MHAModuleListPerHead(nn.Module):
    """W_q as a list of per-head nn.Linear(d_model, d_k)."""

    def __init__(self, d_model, num_heads, dropout=0.0):
        super().__init__()
        d_k = d_model // num_heads
        self.W_q = nn.ModuleList([nn.Linear(d_model, d_k) for _ in range(num_heads)])
        self.W_k = nn.ModuleList([nn.Linear(d_model, d_k) for _ in range(num_heads)])
        self.W_v = nn.ModuleList([nn.Linear(d_model, d_k) for _ in range(num_heads)])
        self.W_o = nn.Linear(d_model, d_model)

    def forward(self, query, key, value, mask=None):
        heads = [_attend(q(query), k(key), v(value), mask)[0]
                 for q, k, v in zip(self.W_q, self.W_k, self.W_v)]
        return self.W_o(torch.cat(heads, dim=-1))


class MHALinearToDk(_Base):
    """nn.Linear(d_model, d_k): the projections produce one head's worth of features."""

    def __init__(self, d_model, num_heads, dropout=0.0):
        super().__init__(d_model, num_heads, dropout)
        self.W_q = nn.Linear(d_model, self.d_k)
        self.W_k = nn.Linear(d_model, self.d_k)
        self.W_v = nn.Linear(d_model, self.d_k)
        self.W_o = nn.Linear(self.d_k, d_model)


class MHANoWeightsStored(_Base):
    def forward(self, query, key, value, mask=None):
        q = _split(self.W_q(query), self.num_heads)
        k = _split(self.W_k(key), self.num_heads)
        v = _split(self.W_v(value), self.num_heads)
        context, _ = _attend(q, k, v, mask)
        return self.W_o(_combine(context))


class MHAWeightsAveraged(_Base):
    def forward(self, query, key, value, mask=None):
        q = _split(self.W_q(query), self.num_heads)
        k = _split(self.W_k(key), self.num_heads)
        v = _split(self.W_v(value), self.num_heads)
        context, weights = _attend(q, k, v, mask)
        self.attention_weights = weights.mean(dim=1)  # (B, Lq, Lk): the heads averaged away
        return self.W_o(_combine(context))


class MHACombineWithView(_Base):
    def forward(self, query, key, value, mask=None):
        q = _split(self.W_q(query), self.num_heads)
        k = _split(self.W_k(key), self.num_heads)
        v = _split(self.W_v(value), self.num_heads)
        context, self.attention_weights = _attend(q, k, v, mask)
        B, H, L, d_k = context.shape
        return self.W_o(context.transpose(1, 2).view(B, L, H * d_k))


class MHAOutputDetached(_Base):
    def forward(self, query, key, value, mask=None):
        with torch.no_grad():
            return super().forward(query, key, value, mask)


class MHAWrappingTheReference(nn.Module):
    def __init__(self, d_model, num_heads, dropout=0.0):
        super().__init__()
        self.inner = course_utils.reference.MultiHeadAttention(d_model, num_heads, dropout)

    def forward(self, query, key, value, mask=None):
        return self.inner(query, key, value, mask)


class MHAFusedCore(nn.Module):
    """PyTorch's fused attention for the output; the weights computed on the side."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError("num_heads must divide d_model")
        self.h = num_heads
        self.p = dropout
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.attention_weights = None

    def forward(self, query, key, value, mask=None):
        q, k, v = (t.unflatten(-1, (self.h, -1)).transpose(1, 2)
                   for t in (self.W_q(query), self.W_k(key), self.W_v(value)))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                 dropout_p=self.p if self.training else 0.0)
        with torch.no_grad():
            scores = q @ k.mT * q.size(-1) ** -0.5
            if mask is not None:
                scores = scores.masked_fill(~mask, -math.inf)
            self.attention_weights = scores.softmax(-1)
        return self.W_o(context.transpose(1, 2).flatten(2))


class MHAEinsum(nn.Module):
    """Heads as an explicit axis through einsum, masked with the dtype's smallest value."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.W_q = nn.Linear(d_model, d_model)
        self.W_k = nn.Linear(d_model, d_model)
        self.W_v = nn.Linear(d_model, d_model)
        self.W_o = nn.Linear(d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, query, key, value, mask=None):
        B, Lq, D = query.shape
        H = self.num_heads
        q = self.W_q(query).reshape(B, Lq, H, D // H)
        k = self.W_k(key).reshape(B, key.size(1), H, D // H)
        v = self.W_v(value).reshape(B, value.size(1), H, D // H)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / (D // H) ** 0.5
        if mask is not None:
            scores = scores.masked_fill(mask.logical_not(), torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        self.attention_weights = weights.detach()
        context = torch.einsum("bhqk,bkhd->bqhd", self.drop(weights), v)
        return self.W_o(context.reshape(B, Lq, D))


class MHAWithReferenceAttention(nn.Module):
    """Own split and merge around the reference attention, which chapter 2 may import."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.W_q = nn.Linear(d_model, d_model)
        self.W_k = nn.Linear(d_model, d_model)
        self.W_v = nn.Linear(d_model, d_model)
        self.W_o = nn.Linear(d_model, d_model)

        self.drop = nn.Dropout(dropout)

    def forward(self, query, key, value, mask=None):
        q, k, v = (split_chunk_stack(t, self.num_heads)
                   for t in (self.W_q(query), self.W_k(key), self.W_v(value)))
        context, weights = reference.scaled_dot_product_attention(q, k, v, mask)
        self.attention_weights = weights
        if self.training:
            context = self.drop(weights) @ v
        return self.W_o(combine_cat_unbind(context))


class MHAFusedQKV(nn.Module):
    """One matmul for the three projections, as many tutorials fuse them (here from the course's
    W_q, W_k, W_v, concatenated); heads split with view/permute; functional dropout that follows
    self.training (not the nn.Dropout module)."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.h, self.p = num_heads, dropout
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, query, key, value, mask=None):
        B, Lq, D = query.shape
        if query is key is value:  # self-attention: one fused projection
            weight = torch.cat([self.W_q.weight, self.W_k.weight, self.W_v.weight])
            bias = torch.cat([self.W_q.bias, self.W_k.bias, self.W_v.bias])
            q, k, v = F.linear(query, weight, bias).chunk(3, dim=-1)
        else:
            q, k, v = self.W_q(query), self.W_k(key), self.W_v(value)
        q, k, v = (t.view(B, t.size(1), self.h, D // self.h).permute(0, 2, 1, 3) for t in (q, k, v))
        scores = torch.matmul(q, k.permute(0, 1, 3, 2)) / math.sqrt(D // self.h)
        if mask is not None:
            scores = scores.masked_fill(mask == 0, -1e9)
        weights = F.softmax(scores, dim=-1)
        self.attention_weights = weights
        weights = F.dropout(weights, self.p, self.training)
        out = torch.matmul(weights, v).permute(0, 2, 1, 3).contiguous().view(B, Lq, D)
        return self.W_o(out)


class MHANoAttentionDropout(MHAWithReferenceAttention):
    """Right in eval mode; the dropout module exists but is never applied."""

    def forward(self, query, key, value, mask=None):
        q, k, v = (split_chunk_stack(t, self.num_heads)
                   for t in (self.W_q(query), self.W_k(key), self.W_v(value)))
        context, self.attention_weights = reference.scaled_dot_product_attention(q, k, v, mask)
        return self.W_o(combine_cat_unbind(context))


class MHADropoutAlwaysOn(_Base):
    """Functional dropout without training=self.training: on in eval mode too."""

    def __init__(self, d_model, num_heads, dropout=0.0):
        super().__init__(d_model, num_heads, dropout)
        self.p = dropout

    def forward(self, query, key, value, mask=None):
        q, k, v = (_split(w(t), self.num_heads) for w, t in ((self.W_q, query), (self.W_k, key), (self.W_v, value)))
        _, weights = _attend(q, k, v, mask)
        self.attention_weights = weights
        return self.W_o(_combine(F.dropout(weights, self.p) @ v))


class MHADropoutOnOutput(_Base):
    def forward(self, query, key, value, mask=None):
        return self.dropout(super().forward(query, key, value, mask))


class MHADropoutTwice(_Base):
    def forward(self, query, key, value, mask=None):
        q, k, v = (_split(w(t), self.num_heads) for w, t in ((self.W_q, query), (self.W_k, key), (self.W_v, value)))
        _, weights = _attend(q, k, v, mask)
        self.attention_weights = weights
        return self.W_o(_combine(self.dropout(self.dropout(weights)) @ v))


class MHAMaskOneLayout(_Base):
    """Reshapes the mask to (B, 1, Lq-or-1, Lk): right for (B, 1, 1, Lk) and (B, 1, Lq, Lk) only."""

    def forward(self, query, key, value, mask=None):
        if mask is not None:
            mask = mask.reshape(query.size(0), 1, -1, key.size(1))
        return super().forward(query, key, value, mask)


class MHAInplaceMaskAfterSoftmax(_Base):
    """Zeroes masked weights in place after the softmax: same values, but backward breaks with a mask."""

    def forward(self, query, key, value, mask=None):
        q, k, v = (_split(w(t), self.num_heads) for w, t in ((self.W_q, query), (self.W_k, key), (self.W_v, value)))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights.masked_fill_(~mask, 0.0)
        self.attention_weights = weights.detach()
        return self.W_o(_combine(self.dropout(weights) @ v))


CATALOGUE: dict[str, Catalogue] = {
    "check_split_heads": Catalogue(
        reference=reference.split_heads,
        mutants=[
            Mutant("stub", split_stub, r"not implemented yet"),
            Mutant("without_transposing", split_without_transposing,
                   r"reshaped straight to \(B, H, L, d_k\), which mixes positions into heads"),
            Mutant("interleaved", split_interleaved,
                   r"the features of each head are interleaved"),
            Mutant("heads_last", split_heads_last,
                   r"has shape \(2, 5, 4, 3\), expected \(2, 4, 5, 3\)"
                   r"(.|\n)*should be \(B, H, L, d_k\)"),
            Mutant("sizes_swapped", split_sizes_swapped,
                   r"has shape \(2, 3, 5, 4\), expected \(2, 4, 5, 3\)"),
            Mutant("wrong_axes_transposed", split_wrong_axes_transposed,
                   r"has shape \(2, 3, 4, 5\), expected \(2, 4, 5, 3\)"),
            Mutant("wraps_the_reference", split_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own split_heads"),
        ],
        correct=[split_unflatten_permute, split_chunk_stack, split_reshape_swapaxes],
    ),
    "check_combine_heads": Catalogue(
        reference=reference.combine_heads,
        mutants=[
            Mutant("stub", combine_stub, r"not implemented yet"),
            Mutant("without_transposing", combine_without_transposing,
                   r"without moving the head axis back first: \.transpose\(1, 2\) before the reshape"),
            Mutant("view_after_transpose", combine_view_after_transpose,
                   r"raised RuntimeError: view size is not compatible(.|\n)*Hint: after transpose "
                   r"the tensor is not contiguous in memory: use \.reshape"),
            Mutant("no_reshape", combine_no_reshape,
                   r"has shape \(2, 5, 4, 3\), expected \(2, 5, 12\)"),
            Mutant("flattened_wrong_axes", combine_flattened_wrong_axes,
                   r"has shape \(2, 20, 3\), expected \(2, 5, 12\)"),
            # No known-mistake entry for this one: the check reports the wrong values only.
            Mutant("interleaved", combine_interleaved,
                   r"has the right shape \(2, 5, 12\) but wrong values"),
            Mutant("wraps_the_reference", combine_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own combine_heads"),
        ],
        correct=[combine_cat_unbind, combine_permute_flatten, combine_contiguous_view],
    ),
    "check_multi_head_attention": Catalogue(
        reference=reference.MultiHeadAttention,
        mutants=[
            Mutant("stub", MHAStub, r"MultiHeadAttention\(16, 4\) is not implemented yet"),
            Mutant("forward_stub", MHAForwardStub,
                   r"MultiHeadAttention\.forward, .* is not implemented yet"),
            Mutant("named_q_proj", MHANamedQProj,
                   r"has no attribute W_q: in __init__, create self\.W_q = nn\.Linear\(16, 16\)"),
            Mutant("no_output_projection", MHANoOutputProjection, r"W_o is never applied"),
            Mutant("single_head", MHASingleHead, r"this is single-head attention"),
            Mutant("split_without_transposing", MHASplitWithoutTransposing,
                   r"split \(and merged\) with a plain reshape, without transposing"),
            # Split without transposing but merged correctly: the check's known mistake
            # assumes both steps are naive, so only the generic step-by-step hint is given.
            Mutant("split_without_transposing_merged_right", MHASplitWithoutTransposingMergedRight,
                   r"has the right shape \(2, 5, 16\) but wrong values(.|\n)*Hint: compare step by step"),
            Mutant("key_value_swapped", MHAKeyValueSwapped, r"key and value are swapped"),
            Mutant("mask_ignored", MHAMaskIgnored,
                   r"with a padding mask (.|\n)*the mask is ignored"),
            Mutant("mask_inverted", MHAMaskInverted,
                   r"with a padding mask (.|\n)*the mask is inverted: True means 'may attend'"),
            Mutant("one_linear_per_head", MHAOneLinearPerHead,
                   r"has \d+ parameters, expected 4 \* \(d_model\^2 \+ d_model\) = 1088"
                   r"(.|\n)*do not create one layer per head"),
            Mutant("module_list_per_head", MHAModuleListPerHead,
                   r"MultiHeadAttention\.W_q should be an nn\.Linear\(16, 16\), but it is ModuleList"),
            Mutant("linear_to_d_k", MHALinearToDk,
                   r"MultiHeadAttention\.W_q is nn\.Linear\(16, 4\), expected nn\.Linear\(16, 16\)"),
            Mutant("no_weights_stored", MHANoWeightsStored,
                   r"self\.attention_weights should hold the attention weights"),
            Mutant("weights_averaged_over_heads", MHAWeightsAveraged,
                   r"self\.attention_weights has shape \(2, 5, 7\), expected \(2, 4, 5, 7\)"),
            Mutant("combine_with_view", MHACombineWithView,
                   r"raised RuntimeError: view size is not compatible(.|\n)*Hint: after transpose "
                   r"the tensor is not contiguous"),
            Mutant("output_detached", MHAOutputDetached, r"carries no gradient"),
            Mutant("wraps_the_reference", MHAWrappingTheReference,
                   r"your code calls course_utils\.reference's own MultiHeadAttention"),
            Mutant("no_attention_dropout", MHANoAttentionDropout,
                   r"never applies dropout in training mode: apply self\.dropout to the attention weights"),
            Mutant("dropout_always_on", MHADropoutAlwaysOn, r"applies dropout in eval mode"),
            Mutant("dropout_on_output", MHADropoutOnOutput,
                   r"in training mode(.|\n)*Likely mistake: dropout is applied to the output \(after W_o\)"),
            Mutant("dropout_twice", MHADropoutTwice,
                   r"in training mode(.|\n)*Likely mistake: dropout is applied twice to the attention weights"),
            Mutant("mask_one_layout", MHAMaskOneLayout,
                   r"with a 2-D causal mask \(Lq, Lk\)(.|\n)*raised RuntimeError(.|\n)*Hint: a mask may come "
                   r"in any shape"),
            Mutant("inplace_mask_after_softmax", MHAInplaceMaskAfterSoftmax,
                   r"backward\(\) through .*with a padding mask(.|\n)*modified by an inplace operation(.|\n)*"
                   r"Hint: an in-place operation"),
        ],
        correct=[MHAFusedCore, MHAEinsum, MHAWithReferenceAttention, MHAFusedQKV],
    ),
}

BUG = Bug("mha_solution", "return self.W_o(combine_heads(context))", "return combine_heads(context)")


class MHAScaleOnTheCpu(_Base):
    """Scales the scores by a tensor built from the head size on the CPU (no device=)."""

    def forward(self, query, key, value, mask=None):
        q, k, v = (_split(w(t), self.num_heads) for w, t in ((self.W_q, query), (self.W_k, key), (self.W_v, value)))
        scores = q @ k.transpose(-2, -1) / torch.full((1,), float(self.d_k), dtype=q.dtype).sqrt()
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        self.attention_weights = weights.detach()
        return self.W_o(_combine(self.dropout(weights) @ v))


DEVICE_MUTANTS: dict[str, list[Mutant]] = {
    "check_multi_head_attention": [
        Mutant("scale_on_the_cpu", MHAScaleOnTheCpu,
               r"raised RuntimeError(.|\n)*Hint: a tensor your code created is on another device than the inputs"),
    ],
}
