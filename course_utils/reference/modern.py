"""What changed since 2017: the pieces of today's decoder-only models, and a GPT built from them.

The pieces of chapter 11, in the order the chapter builds them:

- :class:`RMSNorm` (Zhang & Sennrich, 2019): ``x / sqrt(mean(x^2) + eps) * weight``, LayerNorm without
  the mean subtraction and the bias; equal to ``torch.nn.RMSNorm(d_model, eps)``.
- :class:`SwiGLU` (Shazeer, 2020): the gated feed-forward network ``w_down(silu(w_gate(x)) * w_up(x))``
  of PaLM and LLaMA, at the parameter count of GPT's 4x GELU network (:func:`swiglu_hidden_size`).
- Rotary position embeddings (Su et al., 2021): :func:`rotary_tables`, :func:`apply_rotary`,
  :class:`RotaryEmbedding`. Queries and keys are rotated by an angle proportional to their position,
  so the score of query m and key n depends on m - n only.
- :func:`fused_causal_attention`: chapter 2's multi-head attention with its core replaced by
  ``F.scaled_dot_product_attention(..., is_causal=True)``.
- :class:`ModernConfig`, :class:`ModernBlock` and :class:`ModernGPT`: chapter 10's GPT with each of the
  above switchable on its own. With ``norm="layer", mlp="gelu", positions="learned",
  fused_attention=False, norm_first=True`` it is chapter 10's ``GPT``: the same parameter names and
  shapes, the same initial weights for the same seed, and the same outputs for the same state dict.

**Rotary convention.** This module pairs feature ``i`` with feature ``i + head_dim / 2`` (the
"rotate_half" form of GPT-NeoX, LLaMA and Hugging Face): for pair ``i`` at position ``p`` the angle is
``p * base**(-2i / head_dim)``, and

    x' = x * cos + rotate_half(x) * sin,    rotate_half([x1, x2]) = [-x2, x1]

with ``cos`` and ``sin`` tables of width ``head_dim`` (each angle written twice, once per half). The
original RoFormer paper (Su et al., 2021, section 3.4, equation 34) pairs neighbours ``(2i, 2i+1)``
instead ("interleaved"); the two are the same rotation applied to a permuted feature axis, so a model
trained with one is equivalent to a model trained with the other, but their weights are not
interchangeable without that permutation. :func:`apply_rotary_interleaved` is the other convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils.course.guard import answer_key
from course_utils.reference.attention import scaled_dot_product_attention
from course_utils.reference.gpt import GPTBlock, init_gpt_weights
from course_utils.reference.masking import create_causal_mask
from course_utils.reference.multi_head_attention import combine_heads, split_heads
from course_utils.reference.positional_encoding import sinusoidal_table

__all__ = [
    "ModernBlock",
    "ModernConfig",
    "ModernGPT",
    "RMSNorm",
    "RotaryEmbedding",
    "SwiGLU",
    "apply_rotary",
    "apply_rotary_interleaved",
    "fused_causal_attention",
    "rotary_tables",
    "swiglu_hidden_size",
]

NORMS = ("layer", "rms")
MLPS = ("gelu", "swiglu")
POSITIONS = ("learned", "sinusoidal", "rotary", "none")

#: The sinusoidal table is scaled to this per-feature RMS, that of GPT-2's N(0, 0.02) embeddings. GPT
#: does not multiply token embeddings by sqrt(d_model) as the 2017 model did, so an unscaled table
#: (RMS 1/sqrt(2)) would outweigh the tokens about 35 to 1 at the start of training.
SINUSOIDAL_RMS = 0.02


@answer_key("RMSNorm")
class RMSNorm(nn.Module):
    """Root-mean-square normalisation: ``y = x / sqrt(mean(x**2, -1) + eps) * weight``.

    ``weight`` is ``(d_model,)``, initialised to ones; there is no bias and no mean subtraction.
    ``forward(x (..., d_model)) -> (..., d_model)``, equal to ``torch.nn.RMSNorm(d_model, eps)``.
    """

    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        # The mean of squares is taken in float32 at least: in bfloat16 it loses most of its digits.
        x32 = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (normed * self.weight).to(x.dtype)  # as torch.nn.RMSNorm: the input's dtype


def gelu_mlp_parameters(d_model: int, expansion: int = 4) -> int:
    """Parameters of GPT's MLP ``Linear(d, e*d) -> GELU -> Linear(e*d, d)``, biases included: ``d * (2ed + e + 1)``."""
    return d_model * (2 * expansion * d_model + expansion + 1)


def swiglu_hidden_size(d_model: int, expansion: int = 4) -> int:
    """The hidden width ``h`` that gives :class:`SwiGLU` the parameter count of the ``expansion``x GELU MLP.

    SwiGLU has three bias-free ``d x h`` matrices, ``3 d h`` parameters; the GELU MLP has
    ``d (2 e d + e + 1)`` with its biases (:func:`gelu_mlp_parameters`). So ``h = (2 e d + e + 1) / 3``,
    rounded to the nearest integer: the two counts differ by at most ``d`` parameters, and are equal
    when ``d = 2 (mod 3)`` for ``e = 4`` (``d_model=128`` gives ``h = 343``). LLaMA instead takes
    ``8d/3`` (the biases left out) rounded up to a multiple of 256, a few percent more, for speed.
    """
    return round(gelu_mlp_parameters(d_model, expansion) / (3 * d_model))


@answer_key("SwiGLU")
class SwiGLU(nn.Module):
    """The gated feed-forward network of Shazeer (2020): ``dropout(w_down(silu(w_gate(x)) * w_up(x)))``.

    ``w_gate``, ``w_up``: ``nn.Linear(d_model, d_ff, bias=False)``; ``w_down``: ``nn.Linear(d_ff, d_model,
    bias=False)``; ``d_ff`` defaults to :func:`swiglu_hidden_size` ``(d_model)``.
    ``forward(x (..., d_model)) -> (..., d_model)``.
    """

    def __init__(self, d_model: int, d_ff: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        d_ff = swiglu_hidden_size(d_model) if d_ff is None else d_ff
        # Registered in this order so that w_down is the last Linear: GPT-2's initialisation scales the
        # last Linear of each MLP, the one that writes into the residual stream.
        self.w_gate = nn.Linear(d_model, d_ff, bias=False)
        self.w_up = nn.Linear(d_model, d_ff, bias=False)
        self.w_down = nn.Linear(d_ff, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        # The gate silu(x W_gate) decides, feature by feature, how much of x W_up passes.
        return self.dropout(self.w_down(F.silu(self.w_gate(x)) * self.w_up(x)))


def rotary_angles(head_dim: int, seq_len: int, base: float = 10000.0, offset: int = 0) -> Tensor:
    """``(seq_len, head_dim // 2)`` float64: ``theta[p, i] = (offset + p) * base**(-2i / head_dim)``."""
    if head_dim % 2:
        raise ValueError(f"rotary embeddings rotate pairs of features: head_dim={head_dim} must be even")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (head_dim/2,)
    position = torch.arange(offset, offset + seq_len, dtype=torch.float64)
    return position[:, None] * inv_freq[None, :]


@answer_key("rotary_tables")
def rotary_tables(head_dim: int, seq_len: int, base: float = 10000.0, offset: int = 0, *,
                  device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """The ``cos`` and ``sin`` tables of the half-split convention, each ``(seq_len, head_dim)``.

    Row ``p`` is position ``offset + p``; column ``j`` holds the angle of pair ``j mod head_dim/2``, so
    both halves of a row are the same. Computed in float64 (positions times small frequencies lose
    digits in float32), then cast to ``dtype`` (float32 by default).
    """
    theta = rotary_angles(head_dim, seq_len, base, offset)
    theta = torch.cat([theta, theta], dim=-1)  # (seq_len, head_dim)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    return theta.cos().to(device=device, dtype=dtype), theta.sin().to(device=device, dtype=dtype)


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last axis: a quarter turn of every pair ``(i, i + d/2)``."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


@answer_key("apply_rotary")
def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate queries or keys ``x`` ``(B, H, T, head_dim)`` by the tables ``cos, sin`` ``(T, head_dim)``.

    Pair ``(i, i + head_dim/2)`` at position ``t`` turns by its angle ``theta[t, i]``; the result has
    ``x``'s shape and dtype.
    """
    return (x * cos + rotate_half(x) * sin).to(x.dtype)


def apply_rotary_interleaved(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """The RoFormer convention (Su et al., 2021, eq. 34): pairs are neighbours ``(2i, 2i+1)``.

    Takes the same tables as :func:`apply_rotary` (only their first half is read: one angle per pair).
    Equal to ``apply_rotary`` on features permuted to ``[0, 2, 4, ..., 1, 3, 5, ...]`` and back.
    """
    half = x.size(-1) // 2
    c, s = cos[..., :half], sin[..., :half]  # (T, head_dim/2)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * c - odd * s, even * s + odd * c], dim=-1).flatten(-2).to(x.dtype)


@answer_key("RotaryEmbedding")
class RotaryEmbedding(nn.Module):
    """Rotary position embeddings for heads of ``head_dim`` features, positions ``0 .. max_seq_len - 1``.

    Holds the tables as non-persistent float64 buffers ``cos`` and ``sin`` ``(max_seq_len, head_dim)``: they
    move with ``.to(device)`` but stay out of the state dict, since they are not learned; each forward casts
    the rows it needs to ``x``'s dtype, so float64 inputs get float64 angles.
    ``forward(x (B, H, T, head_dim), offset=0)`` rotates position ``t`` of ``x`` as position ``offset + t``.
    """

    def __init__(self, head_dim: int, max_seq_len: int, base: float = 10000.0) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.max_seq_len = max_seq_len
        self.base = base
        cos, sin = rotary_tables(head_dim, max_seq_len, base, dtype=torch.float64)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        T = x.size(-2)
        if offset + T > self.max_seq_len:
            raise ValueError(f"positions up to {offset + T - 1} asked for, but the tables stop at "
                             f"max_seq_len - 1 = {self.max_seq_len - 1}")
        cos, sin = self.cos[offset:offset + T], self.sin[offset:offset + T]
        return apply_rotary(x, cos.to(x.dtype), sin.to(x.dtype))


def _heads(attn: nn.Module, x: Tensor, num_heads: int,
           rotary: RotaryEmbedding | None) -> tuple[Tensor, Tensor, Tensor]:
    """Queries, keys and values ``(B, H, T, d_k)`` of self-attention, queries and keys rotated."""
    q = split_heads(attn.W_q(x), num_heads)
    k = split_heads(attn.W_k(x), num_heads)
    v = split_heads(attn.W_v(x), num_heads)
    if rotary is not None:
        # Only queries and keys turn: their dot product then sees the offset m - n. Values carry content.
        q, k = rotary(q), rotary(k)
    return q, k, v


@answer_key("fused_causal_attention")
def fused_causal_attention(attn: nn.Module, x: Tensor, num_heads: int,
                           rotary: RotaryEmbedding | None = None) -> Tensor:
    """Causal self-attention with chapter 2's projections and PyTorch's fused kernel.

    Args:
        attn: a chapter 2 ``MultiHeadAttention`` (its ``W_q, W_k, W_v, W_o`` and ``dropout`` are used).
        x: ``(B, T, d_model)``.
        num_heads: ``H``.
        rotary: when given, rotates queries and keys before the scores.

    Returns:
        ``(B, T, d_model)``: ``attn(x, x, x, causal_mask)`` computed by
        ``F.scaled_dot_product_attention(q, k, v, is_causal=True)``, which never builds the ``(T, T)``
        weights when a flash or memory-efficient kernel applies.
    """
    q, k, v = _heads(attn, x, num_heads, rotary)
    dropout_p = attn.dropout.p if attn.training else 0.0
    context = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    return attn.W_o(combine_heads(context))


def unfused_causal_attention(attn: nn.Module, x: Tensor, num_heads: int,
                             rotary: RotaryEmbedding | None = None) -> Tensor:
    """:func:`fused_causal_attention` with chapter 1's attention and chapter 7's causal mask instead."""
    mask = create_causal_mask(x.size(1), x.device)
    if rotary is None:  # chapter 10's path exactly: the module itself, which keeps attention_weights
        return attn(x, x, x, mask)
    q, k, v = _heads(attn, x, num_heads, rotary)
    context, weights = scaled_dot_product_attention(q, k, v, mask)
    if attn.training and attn.dropout.p > 0:  # as chapter 2's MultiHeadAttention does
        context = attn.dropout(weights) @ v
    return attn.W_o(combine_heads(context))


@dataclass
class ModernConfig:
    """The shape of a :class:`ModernGPT` and which upgrade each part uses.

    Attributes:
        norm: ``"layer"`` (``nn.LayerNorm``) or ``"rms"`` (:class:`RMSNorm`), for every norm of the model.
        mlp: ``"gelu"`` (chapter 10's 4x MLP) or ``"swiglu"`` (:class:`SwiGLU` at the same parameter count).
        positions: ``"learned"`` (chapter 10), ``"sinusoidal"`` (chapter 4's fixed table, added),
            ``"rotary"`` (queries and keys rotated in every layer) or ``"none"``.
        fused_attention: ``F.scaled_dot_product_attention(is_causal=True)`` instead of chapter 2's attention.
        norm_first: pre-norm ``x + f(norm(x))`` (GPT-2 and later) or post-norm ``norm(x + f(x))`` (2017).
    """

    vocab_size: int
    block_size: int
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    dropout: float = 0.0
    norm: str = "rms"
    mlp: str = "swiglu"
    positions: str = "rotary"
    fused_attention: bool = True
    norm_first: bool = True
    rotary_base: float = 10000.0

    def __post_init__(self) -> None:
        for field, value, allowed in (("norm", self.norm, NORMS), ("mlp", self.mlp, MLPS),
                                      ("positions", self.positions, POSITIONS)):
            if value not in allowed:
                raise ValueError(f"ModernConfig.{field}={value!r}: choose one of {', '.join(map(repr, allowed))}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")

    @classmethod
    def chapter10(cls, vocab_size: int, block_size: int, **overrides) -> ModernConfig:
        """The settings under which :class:`ModernGPT` is chapter 10's ``GPT``."""
        settings = dict(norm="layer", mlp="gelu", positions="learned", fused_attention=False, norm_first=True)
        return cls(vocab_size, block_size, **{**settings, **overrides})


def make_norm(kind: str, d_model: int) -> nn.Module:
    """``nn.LayerNorm(d_model)`` for ``"layer"``, :class:`RMSNorm` ``(d_model)`` for ``"rms"``."""
    return nn.LayerNorm(d_model) if kind == "layer" else RMSNorm(d_model)


@answer_key("ModernBlock")
class ModernBlock(GPTBlock):
    """Chapter 10's :class:`GPTBlock` with its norms, MLP, attention core and residual order switchable.

    Same attributes as ``GPTBlock`` (``ln1, attn, ln2, mlp, dropout``); ``ln1, ln2`` are RMSNorms when
    ``config.norm == "rms"`` and ``mlp`` is a :class:`SwiGLU` when ``config.mlp == "swiglu"``.
    ``forward(x (B, T, d_model), rotary=None) -> (B, T, d_model)``.
    """

    def __init__(self, config: ModernConfig) -> None:
        super().__init__(config.d_model, config.num_heads, config.dropout)
        if config.norm == "rms":
            self.ln1 = RMSNorm(config.d_model)
            self.ln2 = RMSNorm(config.d_model)
        if config.mlp == "swiglu":
            # The block's own dropout follows the MLP, as it does for the GELU one.
            self.mlp = SwiGLU(config.d_model)
        self.num_heads = config.num_heads
        self.fused = config.fused_attention
        self.norm_first = config.norm_first

    def attend(self, h: Tensor, rotary: RotaryEmbedding | None = None) -> Tensor:
        """Causal self-attention of ``h`` ``(B, T, d_model)``."""
        attention = fused_causal_attention if self.fused else unfused_causal_attention
        return attention(self.attn, h, self.num_heads, rotary)

    def forward(self, x: Tensor, rotary: RotaryEmbedding | None = None) -> Tensor:
        if self.norm_first:
            x = x + self.dropout(self.attend(self.ln1(x), rotary))
            return x + self.dropout(self.mlp(self.ln2(x)))
        # Post-norm (Vaswani et al., 2017): every residual sum is normalised, so the gradient reaching
        # early layers passes through 2 * num_layers norms (Xiong et al., 2020, why it needs warm-up).
        x = self.ln1(x + self.dropout(self.attend(x, rotary)))
        return self.ln2(x + self.dropout(self.mlp(x)))


@answer_key("ModernGPT")
class ModernGPT(nn.Module):
    """Chapter 10's GPT with the upgrades of :class:`ModernConfig`: ``forward(idx (B, T)) -> (B, T, vocab)``.

    Attributes: ``config``, ``block_size``, ``num_heads``, ``token_embedding``, ``position_embedding``
    (``nn.Embedding(block_size, d_model)``, only for ``positions="learned"``), the buffer
    ``position_table`` ``(block_size, d_model)`` (``"sinusoidal"``, not saved), ``rotary``
    (a :class:`RotaryEmbedding` shared by every layer, ``"rotary"``), ``dropout``, ``blocks``
    (:class:`ModernBlock`), ``ln_f`` (of ``config.norm``), ``lm_head`` tied to ``token_embedding``;
    GPT-2's initialisation (:func:`~course_utils.reference.gpt.init_gpt_weights`). The post-norm model
    keeps ``ln_f`` too, so that ``norm_first`` changes nothing else.
    """

    def __init__(self, config: ModernConfig) -> None:
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.num_heads = config.num_heads
        d = config.d_model
        self.token_embedding = nn.Embedding(config.vocab_size, d)
        self.rotary: RotaryEmbedding | None = None
        if config.positions == "learned":
            self.position_embedding = nn.Embedding(config.block_size, d)
        elif config.positions == "sinusoidal":
            table = sinusoidal_table(config.block_size, d) * (SINUSOIDAL_RMS * math.sqrt(2))
            self.register_buffer("position_table", table, persistent=False)
        elif config.positions == "rotary":
            self.rotary = RotaryEmbedding(d // config.num_heads, config.block_size, config.rotary_base)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(ModernBlock(config) for _ in range(config.num_layers))
        self.ln_f = make_norm(config.norm, d)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight
        init_gpt_weights(self, config.num_layers)

    def forward(self, idx: Tensor) -> Tensor:
        T = idx.size(1)
        if T > self.block_size:
            raise ValueError(f"the sequence has {T} tokens but the model was built for at most "
                             f"block_size={self.block_size}: crop it to the last {self.block_size}")
        x = self.token_embedding(idx)
        if self.config.positions == "learned":
            x = x + self.position_embedding(torch.arange(T, device=idx.device))
        elif self.config.positions == "sinusoidal":
            x = x + self.position_table[:T].to(x.dtype)
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, self.rotary)
        return self.lm_head(self.ln_f(x))
