"""Autograders for chapter 11_modern: ``RMSNorm``, ``SwiGLU``, ``RotaryEmbedding``, ``fused_causal_attention``
and ``ModernGPT``.

``RMSNorm`` is compared with ``torch.nn.RMSNorm`` holding the same weight. ``SwiGLU`` and
``fused_causal_attention`` are recomputed from the student's own Linear layers with plain tensor
operations. The rotary check proves the property rotary embeddings exist for: for every head and any
offset, the score of the query at position m with the key at position n depends on m - n only; it then
compares the rotated vectors with the float64 formula of either convention (half-split "rotate_half" of
GPT-NeoX and LLaMA, or RoFormer's interleaved pairs), says which one the student used, and names the
usual mistakes. ``ModernGPT`` is compared with the answer key holding the student's parameters, for each
switch of ``ModernConfig`` flipped on its own; a switch the student's model ignores is named.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from course_utils.checks.harness import (
    Check,
    describe,
    device_names,
    devices_and_dtypes,
    expect_callable,
    expect_close,
    expect_close_within,
    expect_linear,
    expect_module_class,
    expect_tensor,
    fail,
    one_thread,
    seeded,
)
from course_utils.checks.modules import expect_attribute, expect_deterministic
from course_utils.reference.modern import ModernConfig, ModernGPT as _ReferenceGPT, gelu_mlp_parameters

__all__ = ["check_fused_causal_attention", "check_modern_gpt", "check_rms_norm", "check_rotary_embedding",
           "check_swiglu", "rotary_formula"]


# --------------------------------------------------------------------------------------
# RMSNorm(d_model, eps=1e-6)
# --------------------------------------------------------------------------------------


def _rms_variants(x: Tensor, weight: Tensor, eps: float) -> dict[str, Tensor]:
    ms = x.pow(2).mean(-1, keepdim=True)
    centred = x - x.mean(-1, keepdim=True)
    return {
        "the mean is subtracted first: that is LayerNorm. RMSNorm divides x itself by its root mean square, "
        "x / sqrt(mean(x**2) + eps), with no centring.": centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True)
                                                                              + eps) * weight,
        "x is divided by the mean of squares, not by its square root: x * torch.rsqrt(mean(x**2) + eps).":
            x / (ms + eps) * weight,
        "eps is added after the square root: it belongs inside, sqrt(mean(x**2) + eps), as torch.nn.RMSNorm does.":
            x / (ms.sqrt() + eps) * weight,
        "the squares are summed instead of averaged: mean(x**2, dim=-1), not sum.":
            x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps) * weight,
        "self.weight is not applied: multiply the normalised x by it (it is learned, starting at ones).":
            x * torch.rsqrt(ms + eps),
        "the mean is taken over the wrong dimension: normalise over the last one, the features "
        "(mean(dim=-1, keepdim=True)).": x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + eps) * weight,
    }


def check_rms_norm(RMSNorm: type[nn.Module], seed: int = 0, d_model: int = 16, eps: float = 1e-6,
                   shape: tuple[int, ...] = (2, 5)) -> None:
    """Check ``RMSNorm(d_model, eps=1e-6)``: ``weight`` ``(d_model,)`` of ones, no bias; ``forward(x (..., d))``
    equals ``torch.nn.RMSNorm(d_model, eps)`` holding the same (random) weight, in float32 and float64, for small
    inputs where eps matters, with gradients."""
    cls = expect_module_class(RMSNorm, "RMSNorm")
    check = Check("RMSNorm")
    check.refuse_answer_key(cls)
    with one_thread():
        with seeded(seed):
            norm = check.call(cls, d_model, eps, what=f"RMSNorm({d_model}, eps={eps})")
        weight = expect_attribute(norm, "RMSNorm", "weight", "nn.Parameter(torch.ones(d_model))")
        if not isinstance(weight, nn.Parameter) or tuple(weight.shape) != (d_model,):
            fail(f"RMSNorm.weight should be an nn.Parameter of shape ({d_model},), but it is {describe(weight)}: "
                 f"self.weight = nn.Parameter(torch.ones(d_model)), so that it is learned.")
        if not torch.equal(weight.detach(), torch.ones(d_model)):
            fail("RMSNorm.weight should start at ones (as LayerNorm's does): nn.Parameter(torch.ones(d_model)).")
        extra = [name for name, _ in norm.named_parameters() if name != "weight"]
        if extra:
            fail(f"RMSNorm should have one parameter, weight, but it also has {extra}: RMSNorm has no bias "
                 f"(Zhang & Sennrich, 2019).")
        default_eps = getattr(norm, "eps", eps)
        with seeded(seed + 1):
            nn.init.normal_(norm.weight, 1.0, 0.5)  # ones would hide a missing weight
        builtin = nn.RMSNorm(d_model, eps=eps)
        for device, dtype, where in devices_and_dtypes(norm):
            builtin.to(device=device, dtype=dtype)
            with torch.no_grad():
                builtin.weight.copy_(norm.weight)
            for scale, label in ((1.0, ""), (1e-4, ", inputs of size 1e-4 (where eps matters)")):
                with seeded(seed + 2):
                    x = (torch.randn(*shape, d_model, dtype=dtype) * scale + 0.3 * scale).to(device)
                x.requires_grad_(True)
                what = f"RMSNorm.forward(x of shape {tuple(x.shape)}){where}{label}"
                got = check.call(norm, x, what=what)
                expected = builtin(x)
                with torch.no_grad():
                    mistakes = _rms_variants(x.detach(), norm.weight.detach(), eps)
                expect_close(got, expected, what, mistakes=mistakes,
                             hint="y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.")
                if not got.requires_grad:
                    fail(f"{what} does not carry gradients: keep every step a torch operation.")
                upstream = torch.randn_like(expected)
                (g_got,) = torch.autograd.grad(got, x, upstream)
                (g_want,) = torch.autograd.grad(expected, x, upstream)
                expect_close(g_got, g_want, f"the gradient of {what} with respect to x")
        if default_eps != eps:
            fail(f"RMSNorm({d_model}, eps={eps}).eps is {default_eps}: store the eps you are given.")
    check.passed(f"weight (d,) of ones, no bias, = torch.nn.RMSNorm(eps={eps}), gradients, float32/float64 on "
                 f"{device_names()}")


# --------------------------------------------------------------------------------------
# SwiGLU(d_model, d_ff=None, dropout=0.0)
# --------------------------------------------------------------------------------------


def _swiglu_variants(module: nn.Module, x: Tensor) -> dict[str, Tensor]:
    gate, up, down = module.w_gate, module.w_up, module.w_down
    g, u = gate(x), up(x)
    return {
        "right": down(F.silu(g) * u),
        "silu is applied to w_up instead of w_gate: the gate is silu(w_gate(x)), multiplied by w_up(x).":
            down(g * F.silu(u)),
        "the gate uses GELU; SwiGLU uses SiLU (Swish), F.silu (GEGLU, with GELU, is another variant).":
            down(F.gelu(g) * u),
        "the gate uses a sigmoid: that is the original GLU (Dauphin et al., 2017); SwiGLU uses silu(z) = z * "
        "sigmoid(z).": down(torch.sigmoid(g) * u),
        "the gate uses ReLU (ReGLU); SwiGLU uses F.silu.": down(torch.relu(g) * u),
        "there is no gating: w_up(x) is never multiplied in. SwiGLU is w_down(silu(w_gate(x)) * w_up(x)).":
            down(F.silu(g)),
        "w_up's output goes through silu too: only the gate goes through silu.": down(F.silu(g) * F.silu(u)),
    }


def check_swiglu(SwiGLU: type[nn.Module], seed: int = 0, d_model: int = 16, d_ff: int = 24,
                 shape: tuple[int, ...] = (2, 5)) -> None:
    """Check ``SwiGLU(d_model, d_ff=None, dropout=0.0)``: ``w_gate, w_up`` (``d_model -> d_ff``) and ``w_down``
    (``d_ff -> d_model``), no biases; ``d_ff=None`` gives the width at which SwiGLU has the parameter count of the
    4x GELU MLP; ``forward(x) = w_down(silu(w_gate(x)) * w_up(x))`` in float32 and float64, with gradients."""
    cls = expect_module_class(SwiGLU, "SwiGLU")
    check = Check("SwiGLU")
    check.refuse_answer_key(cls)
    with one_thread():
        with seeded(seed):
            module = check.call(cls, d_model, d_ff, 0.0, what=f"SwiGLU({d_model}, {d_ff})")
        for name, (i, o) in (("w_gate", (d_model, d_ff)), ("w_up", (d_model, d_ff)), ("w_down", (d_ff, d_model))):
            expect_linear(module, "SwiGLU", name, i, o, bias=False)
        # The default width: 3 d h parameters against the GELU MLP's d (8d + 5), biases included.
        gelu = gelu_mlp_parameters(d_model)
        best = round(gelu / (3 * d_model))
        default = check.call(cls, d_model, what=f"SwiGLU({d_model})")
        linear = getattr(default, "w_gate", None)
        h = linear.out_features if isinstance(linear, nn.Linear) else None
        count = sum(p.numel() for p in default.parameters())
        if h != best or count != 3 * d_model * best:
            wrong = {4 * d_model: "d_ff defaults to 4 * d_model, the GELU MLP's width: with three matrices instead of "
                                  "two that is 1.5 times its parameters.",
                     int(8 * d_model / 3): "the 4x MLP's biases are left out (or 8d/3 is truncated): count them too.",
                     math.ceil(8 * d_model / 3): "the 4x MLP's biases are left out of the count: count them too."}
            message = (f"SwiGLU({d_model}) (d_ff=None) has {count:,} parameters with d_ff={h}, but it should match the "
                       f"4x GELU MLP's {gelu:,} = d(2*4d + 4 + 1) (weights and biases of nn.Linear({d_model}, "
                       f"{4 * d_model}) and nn.Linear({4 * d_model}, {d_model})) as closely as possible: 3 * d * h "
                       f"parameters, so h = round({gelu} / (3 * {d_model})) = {best}, {3 * d_model * best:,} "
                       f"parameters.")
            if h in wrong and h != best:
                message += f"\nLikely mistake: {wrong[h]}"
            fail(message)
        with seeded(seed + 1):
            for layer in (module.w_gate, module.w_up, module.w_down):
                nn.init.normal_(layer.weight, 0.0, 0.5)
        module.eval()
        for device, dtype, where in devices_and_dtypes(module):
            with seeded(seed + 2):
                x = torch.randn(*shape, d_model, dtype=dtype).to(device)
            what = f"SwiGLU.forward(x of shape {tuple(x.shape)}){where}"
            expect_deterministic(lambda: check.call(module, x, what=what), what)
            got = check.call(module, x, what=what)
            with torch.no_grad():
                variants = _swiglu_variants(module, x)
            expect_close(got, variants.pop("right"), what, mistakes=variants,
                         hint="w_down(F.silu(w_gate(x)) * w_up(x)), then the dropout.")
            if not got.requires_grad:
                fail(f"{what} does not carry gradients: keep every step a torch operation.")
    check.passed(f"w_gate, w_up, w_down without biases, d_ff={best} for d_model={d_model} (= the 4x GELU MLP's "
                 f"{gelu:,} parameters within {abs(3 * d_model * best - gelu)}), w_down(silu(w_gate x) * w_up x), "
                 f"float32/float64 on {device_names()}")


# --------------------------------------------------------------------------------------
# RotaryEmbedding(head_dim, max_seq_len, base=10000.0): forward(x (B, H, T, hd), offset=0)
# --------------------------------------------------------------------------------------

HALF_SPLIT = "half-split (rotate_half: feature i paired with i + head_dim/2, GPT-NeoX / LLaMA)"
INTERLEAVED = "interleaved (neighbours 2i, 2i+1 paired, RoFormer, Su et al. 2021, eq. 34)"


def rotary_formula(x: Tensor, offset: int, base: float = 10000.0, *, convention: str = "half",
                   sign: float = 1.0, exponent: float = 2.0, ignore_offset: bool = False) -> Tensor:
    """Rotary embedding of ``x`` ``(..., T, hd)`` at positions ``offset .. offset + T - 1``, in float64.

    ``convention``: ``"half"`` pairs ``(i, i + hd/2)``, ``"interleaved"`` pairs ``(2i, 2i+1)``. Pair ``i`` turns
    by ``sign * p * base**(-exponent * i / hd)`` (the right formula: sign 1, exponent 2).
    """
    x = x.detach().to(device="cpu", dtype=torch.float64)
    T, hd = x.shape[-2:]
    half = hd // 2
    inv_freq = base ** (-exponent * torch.arange(half, dtype=torch.float64) / hd)
    start = 0 if ignore_offset else offset
    theta = sign * torch.arange(start, start + T, dtype=torch.float64)[:, None] * inv_freq  # (T, hd/2)
    c, s = theta.cos(), theta.sin()
    if convention == "half":
        a, b = x[..., :half], x[..., half:]
        return torch.cat([a * c - b * s, a * s + b * c], dim=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)


def _rotary_mistakes(x: Tensor, offset: int, base: float, convention: str) -> dict[str, Callable[[], Tensor]]:
    other = "interleaved" if convention == "half" else "half"
    x64 = x.detach().to(device="cpu", dtype=torch.float64)
    T, hd = x.shape[-2:]
    half = hd // 2

    def mixed() -> Tensor:
        # rotate_half pairing with tables whose angles are repeated per neighbour pair (repeat_interleave)
        inv_freq = base ** (-2 * torch.arange(half, dtype=torch.float64) / hd)
        theta = torch.arange(offset, offset + T, dtype=torch.float64)[:, None] * inv_freq
        theta = theta.repeat_interleave(2, dim=-1)
        a, b = x64[..., :half], x64[..., half:]
        return x64 * theta.cos() + torch.cat([-b, a], dim=-1) * theta.sin()

    return {
        "the offset is ignored: position t of x is position offset + t (the rows offset .. offset + T - 1 of the "
        "tables), which generation with a cache needs.": lambda: rotary_formula(x, offset, base, convention=convention,
                                                                                 ignore_offset=True),
        "the rotation goes the wrong way (the sign of sin is flipped): x' = x * cos + rotate_half(x) * sin with "
        "rotate_half([x1, x2]) = [-x2, x1].": lambda: rotary_formula(x, offset, base, convention=convention, sign=-1.0),
        "the frequencies are base**(-i / head_dim) for i = 0, 1, ..., head_dim/2 - 1: the exponent is 2i / head_dim "
        "(torch.arange(0, head_dim, 2) / head_dim).": lambda: rotary_formula(x, offset, base, convention=convention,
                                                                              exponent=1.0),
        "the tables and the pairing come from different conventions: rotate_half pairs feature i with i + head_dim/2, "
        "so both halves of the cos/sin rows must hold the same angles (torch.cat([theta, theta], -1), not "
        "repeat_interleave).": mixed,
        "cos and sin are swapped.": lambda: _swapped(x64, offset, base, convention),
        "the positions are not rotated at all.": lambda: x64,
        f"(for information: this would be right in the other convention, {other}).":
            lambda: rotary_formula(x, offset, base, convention=other),
    }


def _swapped(x64: Tensor, offset: int, base: float, convention: str) -> Tensor:
    T, hd = x64.shape[-2:]
    half = hd // 2
    inv_freq = base ** (-2 * torch.arange(half, dtype=torch.float64) / hd)
    theta = torch.arange(offset, offset + T, dtype=torch.float64)[:, None] * inv_freq
    c, s = theta.sin(), theta.cos()
    if convention == "half":
        a, b = x64[..., :half], x64[..., half:]
        return torch.cat([a * c - b * s, a * s + b * c], dim=-1)
    a, b = x64[..., 0::2], x64[..., 1::2]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)


def _rotary_tolerance(dtype: torch.dtype, last_position: int) -> float:
    # Angles computed in float32 (as many libraries do) are off by about 6e-8 * position radians, so even
    # float64 inputs get a tolerance that grows with the position; every known mistake is off by far more.
    return max(1e-4, 2e-7 * last_position) if dtype == torch.float32 else 1e-7 + 2e-7 * last_position


def check_rotary_embedding(RotaryEmbedding: type[nn.Module], seed: int = 0, head_dim: int = 8, num_heads: int = 3,
                           max_seq_len: int = 64, length: int = 6, offsets: tuple[int, ...] = (0, 1, 29),
                           base: float = 10000.0) -> None:
    """Check ``RotaryEmbedding(head_dim, max_seq_len, base)`` and ``forward(x (B, H, T, hd), offset=0)``.

    1. the shape and dtype of ``x`` are kept, lengths are preserved (a rotation);
    2. for every head, the score ``<rot(q, m), rot(k, n)>`` of query position m and key position n depends only on
       m - n: the same q and k at every position, rotated at several offsets, give equal scores along every
       diagonal and for every offset, and differ between diagonals (positions are encoded);
    3. the rotated vectors equal the float64 formula of one of the two conventions, which the success line names.
    """
    cls = expect_module_class(RotaryEmbedding, "RotaryEmbedding")
    check = Check("RotaryEmbedding")
    check.refuse_answer_key(cls)
    found: str | None = None
    with one_thread():
        rope = check.call(cls, head_dim, max_seq_len, base, what=f"RotaryEmbedding({head_dim}, {max_seq_len}, {base})")
        # The module moves to each device but keeps its own dtypes: its tables are not parameters, and casting
        # them (float64 to float32, or complex to real) is not the student's choice.
        for device, dtype, where in devices_and_dtypes():
            rope.to(device=device)
            atol = _rotary_tolerance(dtype, max(offsets) + length)
            with seeded(seed):
                # one query and one key per head, repeated at every position: only the rotation differs
                q = torch.randn(1, num_heads, 1, head_dim, dtype=dtype).expand(2, num_heads, length, head_dim)
                k = torch.randn(1, num_heads, 1, head_dim, dtype=dtype).expand(2, num_heads, length, head_dim)
                x = torch.randn(2, num_heads, length, head_dim, dtype=dtype)
            q, k, x = q.contiguous().to(device), k.contiguous().to(device), x.to(device)
            reference_scores: Tensor | None = None
            for offset in offsets:
                what = f"RotaryEmbedding.forward(x of shape {tuple(x.shape)}, offset={offset}){where}"
                got = check.call(rope, x, offset=offset, what=what,
                                 on_error={"unexpected keyword": "forward takes offset=0 as a keyword: "
                                                                 "def forward(self, x, offset: int = 0)."})
                expect_tensor(got, what, tuple(x.shape), hint="return x rotated, with x's shape (B, H, T, head_dim).")
                if got.dtype != dtype or got.device != x.device:
                    fail(f"{what} returned {describe(got)}: keep x's dtype and device (cast the tables with "
                         f".to(x.dtype)).")
                norms_in, norms_out = x.double().norm(dim=-1), got.detach().double().norm(dim=-1)
                if not torch.allclose(norms_in, norms_out, atol=atol * 10, rtol=atol * 10):
                    mistakes = _rotary_mistakes(x, offset, base, "half")
                    if _matches64(got, mistakes["cos and sin are swapped."](), atol):
                        fail(f"{what} changes the lengths of the vectors, so it is not a rotation.\nLikely mistake: cos "
                             f"and sin are swapped: x' = x * cos + rotate_half(x) * sin.")
                    fail(f"{what} changes the lengths of the vectors (|x| = {norms_in.flatten()[0]:.4f} became "
                         f"{norms_out.flatten()[0]:.4f}), so it is not a rotation: each pair (x_a, x_b) must become "
                         f"(x_a cos - x_b sin, x_a sin + x_b cos) with the SAME angle for both features of a pair.")
                rq = check.call(rope, q, offset=offset, what=what)
                rk = check.call(rope, k, offset=offset, what=what)
                scores = (rq.detach().double() @ rk.detach().double().transpose(-2, -1))  # (2, H, T, T)
                _expect_relative(scores, offset, what, atol)
                if reference_scores is None:
                    reference_scores = scores
                elif not torch.allclose(scores, reference_scores, atol=atol * 10, rtol=atol * 10):
                    fail(f"the scores <rot(q, m), rot(k, n)> with offset={offset} differ from those with offset="
                         f"{offsets[0]}, although m - n is the same: with rotary embeddings a score depends only on "
                         f"the distance between query and key, wherever the window starts.")
                # which convention?
                for convention, name in (("half", HALF_SPLIT), ("interleaved", INTERLEAVED)):
                    if _matches64(got, rotary_formula(x, offset, base, convention=convention), atol):
                        if found not in (None, name):
                            fail(f"{what} follows the {name} convention, but other calls followed the "
                                 f"{found} one: pick one.")
                        found = name
                        break
                else:
                    mistakes = _rotary_mistakes(x, offset, base, "half")
                    mistakes.update({f"{text} (interleaved)": f for text, f in
                                     _rotary_mistakes(x, offset, base, "interleaved").items()
                                     if not text.startswith("(for information")})
                    mistakes = {t: f for t, f in mistakes.items() if not t.startswith("(for information")}
                    expect_close_within(got, rotary_formula(x, offset, base, convention="half"), what, atol=atol,
                                        mistakes=mistakes, hint=(
                                            "compared with the half-split formula: pair i (features i and i + hd/2) "
                                            "at position p turns by p * base**(-2i / head_dim); the interleaved "
                                            "convention (pairs 2i, 2i+1) is accepted too, but matched neither."))
            _expect_positions_matter(reference_scores, what)
    check.passed(f"scores depend on m - n only (every head, offsets {', '.join(map(str, offsets))}), lengths kept, "
                 f"= the float64 formula; your convention: {found}; float32/float64 on {device_names()}")


def _matches64(got: Tensor, expected: Tensor, atol: float) -> bool:
    return bool(torch.allclose(got.detach().to(device="cpu", dtype=torch.float64), expected, atol=atol, rtol=0))


def _expect_relative(scores: Tensor, offset: int, what: str, atol: float) -> None:
    """``scores`` ``(B, H, T, T)`` of one q and one k per head at every position: constant along each diagonal."""
    T = scores.size(-1)
    for d in range(-(T - 1), T):
        diagonal = scores.diagonal(offset=d, dim1=-2, dim2=-1)  # (B, H, T - |d|)
        spread = (diagonal - diagonal[..., :1]).abs().amax(dim=(0, -1))  # (H,)
        if (spread > atol * 10 * (1 + scores.abs().max())).any():
            head = int(spread.argmax())
            m, n = (abs(d), 0) if d < 0 else (0, d)
            fail(f"{what}: for head {head} the score of query position m with key position n depends on more than "
                 f"m - n: with the same q and k at every position, positions ({offset + m}, {offset + n}) and "
                 f"({offset + m + 1}, {offset + n + 1}) give scores {float(diagonal[0, head, 0]):.6g} and "
                 f"{float(diagonal[0, head, 1]):.6g}. Rotate q and k by angles proportional to their positions, "
                 f"with the same frequencies for both, each pair by one angle.")


def _expect_positions_matter(scores: Tensor | None, what: str) -> None:
    if scores is None:
        return
    first_row = scores[0, :, -1, :]  # the last query against every key
    if torch.allclose(first_row, first_row[..., :1].expand_as(first_row), atol=1e-6):
        fail(f"{what}: every key gets the same score whatever its position: the positions are not encoded (is x "
             f"returned unrotated?).")


# --------------------------------------------------------------------------------------
# fused_causal_attention(attn, x, num_heads) -> (B, T, d_model)
# --------------------------------------------------------------------------------------


class _SdpaSpy(TorchFunctionMode):
    """Records the keyword arguments of every ``F.scaled_dot_product_attention`` call, however it is named."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            self.calls.append({"args": len(args), **{k: v for k, v in kwargs.items() if k != "attn_mask"},
                               "attn_mask": kwargs.get("attn_mask", args[3] if len(args) > 3 else None)})
        return func(*args, **kwargs)


def _attention(attn: nn.Module, h: Tensor, num_heads: int, *, mask: str = "causal", scale: bool = True,
               heads: bool = True, output: bool = True) -> Tensor:
    """Self-attention of ``h`` with ``attn``'s projections, written out (or one of the usual mistakes)."""
    B, T, d = h.shape
    H = num_heads if heads else 1

    def split(t: Tensor) -> Tensor:
        return t.view(B, T, H, d // H).transpose(1, 2)

    q, k, v = split(attn.W_q(h)), split(attn.W_k(h)), split(attn.W_v(h))
    scores = q @ k.transpose(-2, -1) / (math.sqrt(d // H) if scale else 1.0)
    ones = torch.ones(T, T, dtype=torch.bool, device=h.device)
    allowed = {"causal": ones.tril(), "none": ones, "shifted": ones.tril(1)}[mask]
    out = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
    out = out.transpose(1, 2).reshape(B, T, d)
    return attn.W_o(out) if output else out


def check_fused_causal_attention(fused_causal_attention: Callable[..., Tensor], seed: int = 0, batch: int = 2,
                                 length: int = 7, d_model: int = 16, num_heads: int = 4,
                                 attention: type | None = None) -> None:
    """Check ``fused_causal_attention(attn, x, num_heads)``: it calls ``F.scaled_dot_product_attention`` with
    ``is_causal=True`` on the heads of ``attn``'s projections and returns what ``attn(x, x, x, causal_mask)``
    returns, in float32 and float64, with gradients. ``attn`` is an ``attention(d_model, num_heads)``: the
    student's own chapter 2 ``MultiHeadAttention`` when the grade cell passes it (``your_pieces`` gives the
    reference where theirs failed its checks), the reference by default."""
    fn = expect_callable(fused_causal_attention, "fused_causal_attention")
    check = Check("fused_causal_attention")
    check.refuse_answer_key(fn)
    from course_utils.reference.masking import create_causal_mask
    from course_utils.reference.multi_head_attention import MultiHeadAttention

    whose = "MultiHeadAttention"
    if attention is None:
        attention = MultiHeadAttention
    elif attention is not MultiHeadAttention:
        whose = f"your {getattr(attention, '__name__', 'attention')}"
    with one_thread():
        with seeded(seed):
            attn = check.call(attention, d_model, num_heads,
                              what=f"{getattr(attention, '__name__', 'attention')}({d_model}, {num_heads})").eval()
        for device, dtype, where in devices_and_dtypes(attn):
            with seeded(seed + 1):
                x = torch.randn(batch, length, d_model, dtype=dtype).to(device)
            what = f"fused_causal_attention(attn, x of shape {tuple(x.shape)}, num_heads={num_heads}){where}"
            with _SdpaSpy() as spy:
                got = check.call(fn, attn, x, num_heads, what=what)
            if not spy.calls:
                fail(f"{what} never calls F.scaled_dot_product_attention: the point of this exercise is to replace "
                     f"the hand-written softmax(q k^T / sqrt(d_k)) v by PyTorch's fused kernel, "
                     f"F.scaled_dot_product_attention(q, k, v, is_causal=True).")
            call = spy.calls[0]
            expected = attn(x, x, x, create_causal_mask(length, device))
            mistakes = {
                "there is no causal mask: pass is_causal=True.": _attention(attn, x, num_heads, mask="none"),
                "the causal mask is shifted by one: position t also sees t + 1. is_causal=True lets position t see "
                "0..t.": _attention(attn, x, num_heads, mask="shifted"),
                "scale=1.0 was passed: leave scale at its default, 1/sqrt(d_k) (d_k = d_model / num_heads).":
                    _attention(attn, x, num_heads, scale=False),
                "the heads are not split: F.scaled_dot_product_attention attends over the last two dimensions, so "
                "q, k, v must be (B, H, T, d_k) (split_heads), not (B, T, d_model).":
                    _attention(attn, x, num_heads, heads=False),
                "attn.W_o is not applied to the combined heads.": _attention(attn, x, num_heads, output=False),
            }
            expect_close(got, expected, what, mistakes=mistakes,
                         hint="q, k, v = split_heads(attn.W_q(x), num_heads), ...; out = "
                              "F.scaled_dot_product_attention(q, k, v, is_causal=True); attn.W_o(combine_heads(out)).")
            if not call.get("is_causal", False):
                fail(f"{what} gives the right values, but calls F.scaled_dot_product_attention without is_causal=True "
                     f"(with an explicit attn_mask): is_causal=True is what lets PyTorch pick a causal flash or "
                     f"memory-efficient kernel that never builds the (T, T) mask.")
            if not got.requires_grad:
                fail(f"{what} does not carry gradients: keep every step a torch operation.")
    check.passed(f"F.scaled_dot_product_attention(is_causal=True) = {whose} with a causal mask, "
                 f"float32/float64 on {device_names()}")


# --------------------------------------------------------------------------------------
# ModernGPT(config): every switch of ModernConfig
# --------------------------------------------------------------------------------------

#: The other value each switch can take, for naming a switch the student's model ignores.
_FLIPS: dict[str, tuple[Any, ...]] = {
    "norm": ("layer", "rms"),
    "mlp": ("gelu", "swiglu"),
    "positions": ("learned", "sinusoidal", "rotary", "none"),
    "norm_first": (True, False),
}


def _configs(vocab_size: int, block_size: int, d_model: int, num_layers: int, num_heads: int) -> list[ModernConfig]:
    """Chapter 10's settings, each switch flipped on its own, and the all-modern model."""
    base = dict(vocab_size=vocab_size, block_size=block_size, d_model=d_model, num_layers=num_layers,
                num_heads=num_heads)
    ch10 = ModernConfig.chapter10(**base)
    out = [ch10]
    for field, values in (("norm", ("rms",)), ("mlp", ("swiglu",)), ("positions", ("sinusoidal", "rotary", "none")),
                          ("fused_attention", (True,)), ("norm_first", (False,))):
        for value in values:
            out.append(ModernConfig(**{**ch10.__dict__, field: value}))
    out.append(ModernConfig(**base))  # every default: the modern GPT
    return out


def _describe_config(config: ModernConfig) -> str:
    return (f"ModernConfig(norm={config.norm!r}, mlp={config.mlp!r}, positions={config.positions!r}, "
            f"fused_attention={config.fused_attention}, norm_first={config.norm_first}, d_model={config.d_model}, "
            f"num_layers={config.num_layers}, num_heads={config.num_heads})")


def _reference_with(params: dict[str, Tensor], config: ModernConfig) -> nn.Module:
    model = _ReferenceGPT(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
    return model.eval()


def check_modern_gpt(ModernGPT: type[nn.Module], seed: int = 0, vocab_size: int = 11, block_size: int = 8,
                     d_model: int = 16, num_layers: int = 2, num_heads: int = 2, batch: int = 2) -> None:
    """Check ``ModernGPT(config)`` for chapter 10's settings, each switch of :class:`ModernConfig` flipped alone,
    and the all-modern default: the parameters are chapter 10's names (``token_embedding``, ``position_embedding``
    when learned, ``blocks.i.ln1/attn/ln2/mlp``, ``ln_f``; the SwiGLU's ``w_gate, w_up, w_down``; RMSNorms with a
    ``weight`` only), ``lm_head`` is tied, and the logits equal the answer key's holding the same parameters. A
    switch the model ignores is named; ``fused_attention=True`` must call ``F.scaled_dot_product_attention``."""
    cls = expect_module_class(ModernGPT, "ModernGPT")
    check = Check("ModernGPT")
    check.refuse_answer_key(cls)
    # seeded: the answer-key models built for comparison draw their initial weights from torch's generator
    with one_thread(), seeded(seed):
        for config in _configs(vocab_size, block_size, d_model, num_layers, num_heads):
            label = _describe_config(config)
            with seeded(seed):
                model = check.call(cls, config, what=f"ModernGPT({label})")
            with seeded(seed):
                reference = _ReferenceGPT(config)
            mine = dict(model.named_parameters())
            want = {name: tuple(p.shape) for name, p in reference.named_parameters()}
            got_shapes = {name: tuple(p.shape) for name, p in mine.items()}
            if got_shapes != want:
                missing = sorted(set(want) - set(got_shapes))
                extra = sorted(set(got_shapes) - set(want))
                wrong = sorted(n for n in set(want) & set(got_shapes) if want[n] != got_shapes[n])
                fail(f"ModernGPT({label}) does not have the expected parameters.\n"
                     + (f"Missing: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}.\n" if missing else "")
                     + (f"Unexpected: {', '.join(extra[:6])}{' ...' if len(extra) > 6 else ''}.\n" if extra else "")
                     + "".join(f"{n} has shape {got_shapes[n]}, expected {want[n]}.\n" for n in wrong[:4])
                     + _parameter_hint(missing, extra, config))
            head = getattr(model, "lm_head", None)
            tok = getattr(model, "token_embedding", None)
            if not isinstance(head, nn.Linear) or not isinstance(tok, nn.Embedding) or head.weight is not tok.weight:
                fail(f"ModernGPT({label}): lm_head.weight should BE token_embedding.weight (tied, as in chapter 10): "
                     f"self.lm_head.weight = self.token_embedding.weight.")
            with seeded(seed + 1):
                for p in mine.values():  # random values everywhere: ones and zeros would hide mistakes
                    with torch.no_grad():
                        p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.5) + (1.0 if p.dim() == 1 else 0.0))
            params = {n: p.detach() for n, p in mine.items()}
            model.eval()
            expected_model = _reference_with(params, config)
            for device, dtype, where in devices_and_dtypes(model):
                expected_model.to(device=device, dtype=dtype)
                with seeded(seed + 2):
                    idx = torch.randint(vocab_size, (batch, block_size)).to(device)
                what = f"ModernGPT({label}).forward(idx of shape {tuple(idx.shape)}){where}"
                with _SdpaSpy() as spy:
                    got = check.call(model, idx, what=what)
                with torch.no_grad():
                    expected = expected_model(idx)
                mistakes = {}
                for field, values in _FLIPS.items():
                    for value in values:
                        if value == getattr(config, field):
                            continue
                        other = ModernConfig(**{**config.__dict__, field: value})
                        try:
                            wrong_model = _reference_with(params, other).to(device=device, dtype=dtype)
                        except KeyError:  # that setting has other parameters: the structure check covers it
                            continue
                        with torch.no_grad():
                            mistakes[f"with {field}={getattr(config, field)!r} your model computes what "
                                     f"{field}={value!r} gives: that switch is not followed."] = wrong_model(idx)
                # Whole-model logits, random weights: float32 tables (sinusoids, rotary) computed in another
                # order are right too, so the tolerance is looser than for one layer.
                atol, rtol = (1e-4, 1e-4) if dtype == torch.float32 else (1e-6, 1e-6)
                expect_tensor(got, what, tuple(expected.shape), hint="forward returns logits (B, T, vocab_size).")
                if got.dtype != dtype or got.device != idx.device:
                    fail(f"{what} returned {describe(got)}: the logits should have the model's dtype and device.")
                if config.positions == "rotary":
                    interleaved = _reference_patched(params, config, idx, device, dtype, interleaved=True)
                    if torch.allclose(got.detach(), interleaved, atol=atol, rtol=rtol):
                        continue  # RoFormer's interleaved pairs: right too
                    mistakes["the rotary embedding is also applied to the values: rotate queries and keys only."] = \
                        _reference_patched(params, config, idx, device, dtype, rotate_values=True)
                if config.positions == "sinusoidal":
                    mistakes["the sinusoidal table is added unscaled: GPT's token embeddings start at N(0, 0.02), so "
                             "the table is scaled to the same size, sinusoidal_table(block_size, d_model) * 0.02 * "
                             "sqrt(2) (an RMS of 0.02 per feature)."] = \
                        _reference_patched(params, config, idx, device, dtype, sinusoidal_rms=1 / math.sqrt(2))
                expect_close_within(got, expected, what, atol=atol, rtol=rtol, mistakes=mistakes,
                                    hint="build each piece from the config: norms (LayerNorm or RMSNorm), the MLP "
                                         "(GELU or SwiGLU), the positions (added learned or sinusoidal rows, or "
                                         "queries and keys rotated in every layer, or nothing), pre- or post-norm "
                                         "residuals.")
                if config.fused_attention and not spy.calls:
                    fail(f"{what}: with fused_attention=True the model should call F.scaled_dot_product_attention "
                         f"(your fused_causal_attention), but it never did.")
    check.passed(f"chapter 10's GPT and each switch alone (norm, mlp, positions, fused_attention, norm_first), "
                 f"tied lm_head, = the answer key, float32/float64 on {device_names()}")


def _parameter_hint(missing: list[str], extra: list[str], config: ModernConfig) -> str:
    names = missing + extra
    if any(n.endswith(".bias") and ("ln" in n) for n in extra) and config.norm == "rms":
        return "Likely mistake: with norm='rms' every norm (ln1, ln2, ln_f) is an RMSNorm, which has a weight only."
    if any("position_embedding" in n for n in extra):
        return ("Likely mistake: position_embedding exists only for positions='learned'; sinusoidal tables and "
                "rotary embeddings are not learned (register them as buffers, persistent=False).")
    if any("position_embedding" in n for n in missing):
        return "Likely mistake: positions='learned' needs self.position_embedding = nn.Embedding(block_size, d_model)."
    if any("w_gate" in n or "w_up" in n or "w_down" in n for n in names):
        return ("Likely mistake: mlp='swiglu' makes each block's mlp a SwiGLU (attributes w_gate, w_up, w_down, no "
                "biases, d_ff = swiglu_hidden_size(d_model)); mlp='gelu' keeps chapter 10's nn.Sequential.")
    return "Use chapter 10's names: token_embedding, blocks[i].ln1 / attn / ln2 / mlp, ln_f, lm_head."


def _reference_patched(params: dict[str, Tensor], config: ModernConfig, idx: Tensor, device: torch.device,
                       dtype: torch.dtype, *, rotate_values: bool = False, interleaved: bool = False,
                       sinusoidal_rms: float | None = None) -> Tensor:
    """The answer key's logits with one piece changed: rotary also on the values, the interleaved rotary
    convention, or another scale of the sinusoidal table."""
    from course_utils.reference import modern

    saved = modern._heads, modern.apply_rotary, modern.SINUSOIDAL_RMS
    original_heads = modern._heads

    def heads(attn: nn.Module, x: Tensor, num_heads: int, rotary: nn.Module | None) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = original_heads(attn, x, num_heads, rotary)
        return q, k, (rotary(v) if rotary is not None else v)

    try:
        if rotate_values:
            modern._heads = heads
        if interleaved:
            modern.apply_rotary = modern.apply_rotary_interleaved
        if sinusoidal_rms is not None:
            modern.SINUSOIDAL_RMS = sinusoidal_rms
        model = _reference_with(params, config).to(device=device, dtype=dtype)
        with torch.no_grad():
            return model(idx)
    finally:
        modern._heads, modern.apply_rotary, modern.SINUSOIDAL_RMS = saved
