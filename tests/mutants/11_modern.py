"""Known-wrong and correct answers for chapter 11_modern's checks.

Each mutant is a realistic student mistake; its ``expect`` pins the diagnosis the check gives (a regular
expression searched in the AssertionError's message). The correct answers are written differently from the
reference (other operations; for rotary embeddings, the other convention and LLaMA's complex-number form) and
must pass every visible and hidden call.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils import reference
from course_utils.reference import MultiHeadAttention, create_causal_mask
from course_utils.reference.modern import gelu_mlp_parameters
from course_utils.reference.multi_head_attention import combine_heads, split_heads
from course_utils.reference.positional_encoding import sinusoidal_table
from tests.support import Bug, Catalogue, Mutant

# --------------------------------------------------------------------------------------
# RMSNorm
# --------------------------------------------------------------------------------------


class RMSNormCorrect(nn.Module):
    """F.rms_norm, PyTorch's functional form."""

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


class RMSNormCorrectNorm(nn.Module):
    """Through the vector norm: rms = |x| / sqrt(d)."""

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        d = x.size(-1)
        rms = torch.sqrt(torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2 / d + self.eps)
        return self.weight * (x / rms)


class RMSNormStub(nn.Module):
    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class RMSNormCentred(RMSNormCorrect):
    def forward(self, x: Tensor) -> Tensor:
        x = x - x.mean(-1, keepdim=True)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class RMSNormNoSqrt(RMSNormCorrect):
    def forward(self, x: Tensor) -> Tensor:
        return x / (x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class RMSNormEpsOutside(RMSNormCorrect):
    def forward(self, x: Tensor) -> Tensor:
        return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + self.eps) * self.weight


class RMSNormSum(RMSNormCorrect):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + self.eps) * self.weight


class RMSNormNoWeight(RMSNormCorrect):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class RMSNormWithBias(RMSNormCorrect):
    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__(d_model, eps)
        self.bias = nn.Parameter(torch.zeros(d_model))


class RMSNormBuiltin(nn.RMSNorm):
    """torch.nn.RMSNorm itself, with eps left at its default (the dtype's machine epsilon)."""

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__(d_model)


class RMSNormWrapsTheReference(nn.Module):
    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.inner = reference.RMSNorm(d_model, eps)
        self.weight = self.inner.weight

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)


# --------------------------------------------------------------------------------------
# SwiGLU
# --------------------------------------------------------------------------------------


def _swiglu_width(d_model: int) -> int:
    return round(gelu_mlp_parameters(d_model) / (3 * d_model))


class SwiGLUCorrect(nn.Module):
    """silu written out as z * sigmoid(z); the width from the parameter count written out."""

    def __init__(self, d_model: int, d_ff: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if d_ff is None:
            gelu = (d_model * 4 * d_model + 4 * d_model) + (4 * d_model * d_model + d_model)
            d_ff = math.floor(gelu / (3 * d_model) + 0.5)
        self.w_gate = nn.Linear(d_model, d_ff, bias=False)
        self.w_up = nn.Linear(d_model, d_ff, bias=False)
        self.w_down = nn.Linear(d_ff, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        z = self.w_gate(x)
        return self.dropout(self.w_down(z * torch.sigmoid(z) * self.w_up(x)))


class SwiGLUCorrectEinsum(SwiGLUCorrect):
    """The three matrices applied with einsum on their weights."""

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.einsum("...d,hd->...h", x, self.w_gate.weight)
        up = torch.einsum("...d,hd->...h", x, self.w_up.weight)
        return self.dropout(torch.einsum("...h,dh->...d", F.silu(gate) * up, self.w_down.weight))


class SwiGLUStub(nn.Module):
    def __init__(self, d_model: int, d_ff: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class SwiGLUSiluOnUp(SwiGLUCorrect):
    def forward(self, x: Tensor) -> Tensor:
        return self.w_down(self.w_gate(x) * F.silu(self.w_up(x)))


class SwiGLUGelu(SwiGLUCorrect):
    def forward(self, x: Tensor) -> Tensor:
        return self.w_down(F.gelu(self.w_gate(x)) * self.w_up(x))


class SwiGLUSigmoid(SwiGLUCorrect):
    def forward(self, x: Tensor) -> Tensor:
        return self.w_down(torch.sigmoid(self.w_gate(x)) * self.w_up(x))


class SwiGLUNoGate(SwiGLUCorrect):
    def forward(self, x: Tensor) -> Tensor:
        return self.w_down(F.silu(self.w_gate(x)))


class SwiGLUWidth4d(SwiGLUCorrect):
    def __init__(self, d_model: int, d_ff: int | None = None, dropout: float = 0.0) -> None:
        super().__init__(d_model, 4 * d_model if d_ff is None else d_ff, dropout)


class SwiGLUWidthNoBiases(SwiGLUCorrect):
    def __init__(self, d_model: int, d_ff: int | None = None, dropout: float = 0.0) -> None:
        super().__init__(d_model, int(8 * d_model / 3) if d_ff is None else d_ff, dropout)


class SwiGLUBiases(nn.Module):
    def __init__(self, d_model: int, d_ff: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        d_ff = _swiglu_width(d_model) if d_ff is None else d_ff
        self.w_gate = nn.Linear(d_model, d_ff)
        self.w_up = nn.Linear(d_model, d_ff)
        self.w_down = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class SwiGLUSubclassesTheReference(reference.SwiGLU):
    pass


# --------------------------------------------------------------------------------------
# RotaryEmbedding
# --------------------------------------------------------------------------------------


class RotaryCorrectComplex(nn.Module):
    """LLaMA's own form: interleaved pairs as complex numbers, multiplied by e^{i p theta}."""

    def __init__(self, head_dim: int, max_seq_len: int, base: float = 10000.0) -> None:
        super().__init__()
        freqs = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), freqs)
        self.register_buffer("turn", torch.polar(torch.ones_like(angles), angles), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        T = x.size(-2)
        pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2).contiguous())
        turned = pairs * self.turn[offset:offset + T]
        return torch.view_as_real(turned).flatten(-2).to(x.dtype)


class RotaryCorrectFloat32(nn.Module):
    """The half-split form with float32 tables and the angles recomputed at each call."""

    def __init__(self, head_dim: int, max_seq_len: int, base: float = 10000.0) -> None:
        super().__init__()
        self.register_buffer("inv_freq", base ** (-torch.arange(0, head_dim, 2).float() / head_dim), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        T = x.size(-2)
        positions = torch.arange(offset, offset + T, device=x.device, dtype=torch.float32)
        theta = positions[:, None] * self.inv_freq[None, :]
        cos, sin = theta.cos().to(x.dtype), theta.sin().to(x.dtype)
        half = x.size(-1) // 2
        a, b = x[..., :half], x[..., half:]
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class _RotaryHalf(nn.Module):
    """A half-split rotary embedding with one mistake switched on by a subclass."""

    sign, exponent, shift, swap, mixed, slice_bug = 1.0, 2.0, True, False, False, False

    def __init__(self, head_dim: int, max_seq_len: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = base ** (-self.exponent * torch.arange(head_dim // 2, dtype=torch.float64) / head_dim)
        theta = torch.arange(max_seq_len, dtype=torch.float64)[:, None] * inv_freq
        theta = theta.repeat_interleave(2, dim=-1) if self.mixed else torch.cat([theta, theta], dim=-1)
        cos, sin = theta.cos(), self.sign * theta.sin()
        if self.swap:
            cos, sin = sin, cos
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        T = x.size(-2)
        start = offset if self.shift else 0
        end = T if self.slice_bug else start + T
        cos, sin = self.cos[start:end].to(x.dtype), self.sin[start:end].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class RotaryStub(nn.Module):
    def __init__(self, head_dim: int, max_seq_len: int, base: float = 10000.0) -> None:
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class RotaryIgnoresOffset(_RotaryHalf):
    shift = False


class RotaryWrongWay(_RotaryHalf):
    sign = -1.0


class RotaryExponentOne(_RotaryHalf):
    exponent = 1.0


class RotaryCosSinSwapped(_RotaryHalf):
    swap = True


class RotaryMixedConventions(_RotaryHalf):
    mixed = True


class RotarySliceToT(_RotaryHalf):
    slice_bug = True


class RotaryNone(_RotaryHalf):
    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        return x.clone()


class RotaryWrapsTheReference(nn.Module):
    def __init__(self, head_dim: int, max_seq_len: int, base: float = 10000.0) -> None:
        super().__init__()
        self.inner = reference.RotaryEmbedding(head_dim, max_seq_len, base)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        return self.inner(x, offset)


# --------------------------------------------------------------------------------------
# fused_causal_attention
# --------------------------------------------------------------------------------------


def fused_correct_one_projection(attn, x, num_heads):
    """q, k and v from one matrix multiply, as GPT-2's c_attn does."""
    weight = torch.cat([attn.W_q.weight, attn.W_k.weight, attn.W_v.weight])
    bias = torch.cat([attn.W_q.bias, attn.W_k.bias, attn.W_v.bias])
    B, T, d = x.shape
    qkv = F.linear(x, weight, bias).view(B, T, 3, num_heads, d // num_heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
    return attn.W_o(out.permute(0, 2, 1, 3).reshape(B, T, d))


def fused_correct_named(attn, x, num_heads):
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    q, k, v = (split_heads(layer(x), num_heads) for layer in (attn.W_q, attn.W_k, attn.W_v))
    return attn.W_o(combine_heads(sdpa(q, k, v, dropout_p=0.0, is_causal=True)))


def fused_stub(attn, x, num_heads):
    # YOUR CODE HERE
    raise NotImplementedError()


def _qkv(attn, x, num_heads):
    return (split_heads(attn.W_q(x), num_heads), split_heads(attn.W_k(x), num_heads),
            split_heads(attn.W_v(x), num_heads))


def fused_by_hand(attn, x, num_heads):
    q, k, v = _qkv(attn, x, num_heads)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(~create_causal_mask(x.size(1)), -math.inf)
    return attn.W_o(combine_heads(scores.softmax(-1) @ v))


def fused_not_causal(attn, x, num_heads):
    q, k, v = _qkv(attn, x, num_heads)
    return attn.W_o(combine_heads(F.scaled_dot_product_attention(q, k, v)))


def fused_scale_one(attn, x, num_heads):
    q, k, v = _qkv(attn, x, num_heads)
    return attn.W_o(combine_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)))


def fused_heads_not_split(attn, x, num_heads):
    return attn.W_o(F.scaled_dot_product_attention(attn.W_q(x), attn.W_k(x), attn.W_v(x), is_causal=True))


def fused_no_output_projection(attn, x, num_heads):
    q, k, v = _qkv(attn, x, num_heads)
    return combine_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True))


def fused_mask_not_is_causal(attn, x, num_heads):
    q, k, v = _qkv(attn, x, num_heads)
    mask = torch.ones(x.size(1), x.size(1), dtype=torch.bool, device=x.device).tril()
    return attn.W_o(combine_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))


def fused_mask_off_by_one(attn, x, num_heads):
    q, k, v = _qkv(attn, x, num_heads)
    mask = torch.ones(x.size(1), x.size(1), dtype=torch.bool, device=x.device).tril(1)
    return attn.W_o(combine_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)))


def fused_wraps_the_reference(attn, x, num_heads):
    return reference.fused_causal_attention(attn, x, num_heads)


# --------------------------------------------------------------------------------------
# ModernGPT
# --------------------------------------------------------------------------------------


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class _Rotary(nn.Module):
    def __init__(self, head_dim: int, max_seq_len: int, interleaved: bool = False) -> None:
        super().__init__()
        inv_freq = 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        theta = torch.arange(max_seq_len, dtype=torch.float64)[:, None] * inv_freq
        self.interleaved = interleaved
        theta = theta.repeat_interleave(2, -1) if interleaved else torch.cat([theta, theta], -1)
        self.register_buffer("cos", theta.cos(), persistent=False)
        self.register_buffer("sin", theta.sin(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        T = x.size(-2)
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        if self.interleaved:
            swapped = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)
            return x * cos + swapped * sin
        return _rotate(x, cos, sin)


class _Block(nn.Module):
    """A modern block; the class attributes switch mistakes on."""

    follow_norm_first = True
    rotate_values = False
    use_sdpa = True

    def __init__(self, config) -> None:
        super().__init__()
        d = config.d_model
        self.config = config
        self.ln1 = RMSNormCorrect(d) if config.norm == "rms" else nn.LayerNorm(d)
        self.attn = MultiHeadAttention(d, config.num_heads, config.dropout)
        self.ln2 = RMSNormCorrect(d) if config.norm == "rms" else nn.LayerNorm(d)
        self.mlp = (SwiGLUCorrect(d) if config.mlp == "swiglu"
                    else nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d)))
        self.dropout = nn.Dropout(config.dropout)

    def attend(self, h: Tensor, rotary: nn.Module | None) -> Tensor:
        H = self.config.num_heads
        q, k, v = _qkv(self.attn, h, H)
        if rotary is not None:
            q, k = rotary(q), rotary(k)
            if self.rotate_values:
                v = rotary(v)
        if self.config.fused_attention and self.use_sdpa:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
            out = scores.masked_fill(~create_causal_mask(h.size(1), h.device), -math.inf).softmax(-1) @ v
        return self.attn.W_o(combine_heads(out))

    def forward(self, x: Tensor, rotary: nn.Module | None = None) -> Tensor:
        if self.config.norm_first or not self.follow_norm_first:
            x = x + self.dropout(self.attend(self.ln1(x), rotary))
            return x + self.dropout(self.mlp(self.ln2(x)))
        x = self.ln1(x + self.dropout(self.attend(x, rotary)))
        return self.ln2(x + self.dropout(self.mlp(x)))


class ModernCorrect(nn.Module):
    """Written from scratch, without the answer key's classes."""

    block = _Block
    interleaved = False
    use_rotary = True
    sinusoidal_scale = 0.02 * math.sqrt(2)
    tie = True
    norm_kind: str | None = None

    def __init__(self, config) -> None:
        super().__init__()
        d = config.d_model
        self.config, self.block_size, self.num_heads = config, config.block_size, config.num_heads
        self.token_embedding = nn.Embedding(config.vocab_size, d)
        if config.positions == "learned":
            self.position_embedding = nn.Embedding(config.block_size, d)
        elif config.positions == "sinusoidal":
            self.register_buffer("table", sinusoidal_table(config.block_size, d) * self.sinusoidal_scale,
                                 persistent=False)
        self.rotary = (_Rotary(d // config.num_heads, config.block_size, self.interleaved)
                       if config.positions == "rotary" and self.use_rotary else None)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(self.block(config) for _ in range(config.num_layers))
        norm = self.norm_kind or config.norm
        self.ln_f = RMSNormCorrect(d) if norm == "rms" else nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        if self.tie:
            self.lm_head.weight = self.token_embedding.weight

    def forward(self, idx: Tensor) -> Tensor:
        x = self.token_embedding(idx)
        if self.config.positions == "learned":
            x = x + self.position_embedding.weight[: idx.size(1)]
        elif self.config.positions == "sinusoidal":
            x = x + self.table[: idx.size(1)].to(x.dtype)
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, self.rotary)
        return self.lm_head(self.ln_f(x))


class ModernCorrectInterleaved(ModernCorrect):
    """RoFormer's pairs for the rotary embedding: right too."""

    interleaved = True


class ModernStub(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class _PostNormIgnored(_Block):
    follow_norm_first = False


class ModernIgnoresNormFirst(ModernCorrect):
    block = _PostNormIgnored


class _RotatesValues(_Block):
    rotate_values = True


class ModernRotatesValues(ModernCorrect):
    block = _RotatesValues


class ModernForgetsRotary(ModernCorrect):
    use_rotary = False


class ModernUnscaledSinusoids(ModernCorrect):
    sinusoidal_scale = 1.0


class _NeverFused(_Block):
    use_sdpa = False


class ModernNeverFused(ModernCorrect):
    block = _NeverFused


class ModernUntied(ModernCorrect):
    tie = False


class _AlwaysLayerNorm(_Block):
    def __init__(self, config) -> None:
        super().__init__(config)
        self.ln1, self.ln2 = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)


class ModernAlwaysLayerNorm(ModernCorrect):
    block = _AlwaysLayerNorm
    norm_kind = "layer"


class ModernSubclassesTheReference(reference.ModernGPT):
    pass


CATALOGUE = {
    "check_rms_norm": Catalogue(
        reference=reference.RMSNorm,
        mutants=[
            Mutant("stub", RMSNormStub, r"is not implemented yet"),
            Mutant("centred", RMSNormCentred, r"Likely mistake: the mean is subtracted first: that is LayerNorm"),
            Mutant("no_sqrt", RMSNormNoSqrt, r"Likely mistake: x is divided by the mean of squares"),
            Mutant("eps_outside", RMSNormEpsOutside, r"Likely mistake: eps is added after the square root"),
            Mutant("sum", RMSNormSum, r"Likely mistake: the squares are summed"),
            Mutant("no_weight", RMSNormNoWeight, r"Likely mistake: self.weight is not applied"),
            Mutant("with_bias", RMSNormWithBias, r"RMSNorm has no bias"),
            Mutant("builtin_default_eps", RMSNormBuiltin, r"inputs of size 1e-4"),
            Mutant("wraps_the_reference", RMSNormWrapsTheReference, r"course_utils\.reference's own RMSNorm"),
        ],
        correct=[RMSNormCorrect, RMSNormCorrectNorm],
    ),
    "check_swiglu": Catalogue(
        reference=reference.SwiGLU,
        mutants=[
            Mutant("stub", SwiGLUStub, r"is not implemented yet"),
            Mutant("silu_on_up", SwiGLUSiluOnUp, r"Likely mistake: silu is applied to w_up instead of w_gate"),
            Mutant("gelu", SwiGLUGelu, r"Likely mistake: the gate uses GELU"),
            Mutant("sigmoid", SwiGLUSigmoid, r"Likely mistake: the gate uses a sigmoid: that is the original GLU"),
            Mutant("no_gate", SwiGLUNoGate, r"Likely mistake: there is no gating"),
            Mutant("width_4d", SwiGLUWidth4d, r"Likely mistake: d_ff defaults to 4 \* d_model"),
            Mutant("width_no_biases", SwiGLUWidthNoBiases, r"Likely mistake: the 4x MLP's biases are left out"),
            Mutant("biases", SwiGLUBiases, r"SwiGLU\.w_gate should not have a bias"),
            Mutant("subclasses_the_reference", SwiGLUSubclassesTheReference, r"course_utils' own implementation"),
        ],
        correct=[SwiGLUCorrect, SwiGLUCorrectEinsum],
    ),
    "check_rotary_embedding": Catalogue(
        reference=reference.RotaryEmbedding,
        mutants=[
            Mutant("stub", RotaryStub, r"is not implemented yet"),
            Mutant("ignores_offset", RotaryIgnoresOffset, r"Likely mistake: the offset is ignored"),
            Mutant("wrong_way", RotaryWrongWay, r"Likely mistake: the rotation goes the wrong way"),
            Mutant("exponent_one", RotaryExponentOne, r"Likely mistake: the frequencies are base\*\*\(-i / head_dim\)"),
            Mutant("cos_sin_swapped", RotaryCosSinSwapped, r"Likely mistake: cos and sin are swapped"),
            Mutant("mixed_conventions", RotaryMixedConventions, r"not a rotation(.|\n)*SAME angle for both features"),
            Mutant("slice_to_T", RotarySliceToT, r"raised RuntimeError"),
            Mutant("no_rotation", RotaryNone, r"Likely mistake: the positions are not rotated at all"),
            Mutant("wraps_the_reference", RotaryWrapsTheReference, r"course_utils\.reference's own RotaryEmbedding"),
        ],
        correct=[RotaryCorrectComplex, RotaryCorrectFloat32],
    ),
    "check_fused_causal_attention": Catalogue(
        reference=reference.fused_causal_attention,
        mutants=[
            Mutant("stub", fused_stub, r"is not implemented yet"),
            Mutant("by_hand", fused_by_hand, r"never calls F\.scaled_dot_product_attention"),
            Mutant("not_causal", fused_not_causal, r"Likely mistake: there is no causal mask"),
            Mutant("scale_one", fused_scale_one, r"Likely mistake: scale=1\.0 was passed"),
            Mutant("heads_not_split", fused_heads_not_split, r"Likely mistake: the heads are not split"),
            Mutant("no_output_projection", fused_no_output_projection, r"Likely mistake: attn\.W_o is not applied"),
            Mutant("mask_not_is_causal", fused_mask_not_is_causal, r"without is_causal=True"),
            Mutant("mask_off_by_one", fused_mask_off_by_one, r"Likely mistake: the causal mask is shifted by one"),
            Mutant("wraps_the_reference", fused_wraps_the_reference,
                   r"course_utils\.reference's own fused_causal_attention"),
        ],
        correct=[fused_correct_one_projection, fused_correct_named],
    ),
    "check_modern_gpt": Catalogue(
        reference=reference.ModernGPT,
        mutants=[
            Mutant("stub", ModernStub, r"is not implemented yet"),
            Mutant("ignores_norm_first", ModernIgnoresNormFirst,
                   r"Likely mistake: with norm_first=False your model computes what norm_first=True gives"),
            Mutant("rotates_values", ModernRotatesValues, r"Likely mistake: the rotary embedding is also applied to the values"),
            Mutant("forgets_rotary", ModernForgetsRotary,
                   r"Likely mistake: with positions='rotary' your model computes what positions='none' gives"),
            Mutant("unscaled_sinusoids", ModernUnscaledSinusoids, r"Likely mistake: the sinusoidal table is added unscaled"),
            Mutant("never_fused", ModernNeverFused, r"with fused_attention=True the model should call"),
            Mutant("untied", ModernUntied, r"(lm_head\.weight should BE token_embedding\.weight|Unexpected: lm_head)"),
            Mutant("always_layer_norm", ModernAlwaysLayerNorm, r"with norm='rms' every norm"),
            Mutant("subclasses_the_reference", ModernSubclassesTheReference, r"course_utils' own implementation"),
        ],
        correct=[ModernCorrect, ModernCorrectInterleaved],
    ),
}

#: One bug for the grading round trip: the SwiGLU gate loses its silu.
BUG = Bug("swiglu_solution", "F.silu(self.w_gate(x))", "self.w_gate(x)")
