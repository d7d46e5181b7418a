"""The chapter 11 answer key against PyTorch's built-ins and its own promises: RMSNorm against
``torch.nn.RMSNorm``, SwiGLU's parameter count, rotary embeddings' relative-position property and their two
conventions, fused attention against chapter 2's, and ModernGPT under chapter 10's settings = chapter 10's GPT."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from course_utils import reference
from tests.support import load_mutants
from course_utils.reference.modern import (
    MLPS,
    NORMS,
    POSITIONS,
    ModernConfig,
    apply_rotary,
    apply_rotary_interleaved,
    gelu_mlp_parameters,
    rotary_tables,
    swiglu_hidden_size,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rms_norm_equals_the_builtin(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    mine, builtin = reference.RMSNorm(24, eps=1e-5).to(dtype), nn.RMSNorm(24, eps=1e-5).to(dtype)
    with torch.no_grad():
        mine.weight.normal_(1.0, 0.5)
        builtin.weight.copy_(mine.weight)
    for scale in (1.0, 1e-3):
        x = torch.randn(3, 5, 24, dtype=dtype) * scale
        torch.testing.assert_close(mine(x), builtin(x))
    assert [name for name, _ in mine.named_parameters()] == ["weight"]


def test_rms_norm_keeps_bfloat16_and_computes_in_float32() -> None:
    x = torch.randn(4, 64) * 50
    out = reference.RMSNorm(64)(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference.RMSNorm(64)(x.bfloat16().float()), atol=0.02, rtol=0.01)


@pytest.mark.parametrize("d_model", [8, 12, 16, 64, 128, 384])
def test_swiglu_width_matches_the_gelu_mlp_within_d_parameters(d_model: int) -> None:
    gelu = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
    n_gelu = sum(p.numel() for p in gelu.parameters())
    assert n_gelu == gelu_mlp_parameters(d_model)
    n_swiglu = sum(p.numel() for p in reference.SwiGLU(d_model).parameters())
    assert abs(n_swiglu - n_gelu) <= d_model
    # the nearest width: one more or one less is further away
    h = swiglu_hidden_size(d_model)
    assert all(abs(3 * d_model * h - n_gelu) <= abs(3 * d_model * other - n_gelu) for other in (h - 1, h + 1))
    if d_model % 3 == 2:
        assert n_swiglu == n_gelu
    assert swiglu_hidden_size(128) == 343


def test_swiglu_computes_the_gated_product() -> None:
    torch.manual_seed(0)
    module = reference.SwiGLU(16, 24).double()
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    g, u = x @ module.w_gate.weight.t(), x @ module.w_up.weight.t()
    expected = (g * torch.sigmoid(g) * u) @ module.w_down.weight.t()
    torch.testing.assert_close(module(x), expected)
    assert [n for n, _ in module.named_parameters()] == ["w_gate.weight", "w_up.weight", "w_down.weight"]


def test_rotary_scores_depend_on_the_offset_only() -> None:
    torch.manual_seed(0)
    rope = reference.RotaryEmbedding(16, 512)
    q = torch.randn(1, 4, 1, 16, dtype=torch.float64).expand(1, 4, 40, 16)
    k = torch.randn(1, 4, 1, 16, dtype=torch.float64).expand(1, 4, 40, 16)
    s0 = rope(q) @ rope(k).transpose(-2, -1)
    s_far = rope(q, offset=400) @ rope(k, offset=400).transpose(-2, -1)
    torch.testing.assert_close(s0, s_far, atol=1e-10, rtol=1e-10)
    for d in range(-39, 40):
        diagonal = s0.diagonal(d, -2, -1)
        torch.testing.assert_close(diagonal, diagonal[..., :1].expand_as(diagonal), atol=1e-10, rtol=1e-10)
    # and positions are encoded: the scores differ between diagonals
    assert (s0[0, :, -1, 0] - s0[0, :, -1, -1]).abs().min() > 1e-3


def test_rotary_matches_the_float64_formula_and_keeps_lengths() -> None:
    x = torch.randn(2, 3, 10, 8, dtype=torch.float64)
    out = reference.RotaryEmbedding(8, 64)(x, offset=7)
    theta = torch.arange(7, 17, dtype=torch.float64)[:, None] * 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    a, b = x[..., :4], x[..., 4:]
    expected = torch.cat([a * theta.cos() - b * theta.sin(), a * theta.sin() + b * theta.cos()], dim=-1)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    assert reference.RotaryEmbedding(8, 64)(x.float()).dtype == torch.float32
    with pytest.raises(ValueError, match="tables stop"):
        reference.RotaryEmbedding(8, 16)(x, offset=7)


def test_the_two_rotary_conventions_are_a_permutation_apart() -> None:
    x = torch.randn(2, 3, 10, 12, dtype=torch.float64)
    cos, sin = rotary_tables(12, 10, dtype=torch.float64)
    to_halves = torch.cat([torch.arange(0, 12, 2), torch.arange(1, 12, 2)])
    via_halves = apply_rotary(x[..., to_halves], cos, sin)[..., torch.argsort(to_halves)]
    torch.testing.assert_close(apply_rotary_interleaved(x, cos, sin), via_halves)
    # RoFormer's form as complex numbers (LLaMA's original code)
    pairs = torch.view_as_complex(x.reshape(2, 3, 10, 6, 2).contiguous())
    turned = pairs * torch.polar(torch.ones(10, 6, dtype=torch.float64), torch.atan2(sin[:, :6], cos[:, :6]))
    torch.testing.assert_close(apply_rotary_interleaved(x, cos, sin), torch.view_as_real(turned).flatten(-2))


def test_fused_causal_attention_equals_chapter_2s() -> None:
    torch.manual_seed(0)
    attn = reference.MultiHeadAttention(32, 4).double().eval()
    x = torch.randn(3, 9, 32, dtype=torch.float64)
    expected = attn(x, x, x, reference.create_causal_mask(9))
    torch.testing.assert_close(reference.fused_causal_attention(attn, x, 4), expected)


def _chapter10_pair(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    gpt = reference.GPT(65, 32, d_model=64, num_layers=3, num_heads=4)
    torch.manual_seed(seed)
    modern = reference.ModernGPT(ModernConfig.chapter10(65, 32, d_model=64, num_layers=3, num_heads=4))
    return gpt, modern


def test_modern_gpt_under_chapter10_settings_is_chapter10s_gpt() -> None:
    gpt, modern = _chapter10_pair()
    g, m = gpt.state_dict(), modern.state_dict()
    assert list(g) == list(m)
    assert all(torch.equal(g[k], m[k]) for k in g), "same seed, same initial weights"
    assert modern.lm_head.weight is modern.token_embedding.weight
    idx = torch.randint(65, (2, 32))
    gpt.eval(), modern.eval()
    assert torch.equal(gpt(idx), modern(idx))
    # and given any GPT's state dict, the same outputs
    torch.manual_seed(5)
    other = reference.GPT(65, 32, d_model=64, num_layers=3, num_heads=4).eval()
    modern.load_state_dict(other.state_dict())
    assert torch.equal(other(idx), modern(idx))


def test_every_switch_setting_builds_trains_and_fuses_without_changing_outputs() -> None:
    idx = torch.randint(65, (2, 16))
    for norm, mlp, positions, norm_first in itertools.product(NORMS, MLPS, POSITIONS, (True, False)):
        config = ModernConfig(65, 16, d_model=32, num_layers=2, num_heads=4, norm=norm, mlp=mlp,
                              positions=positions, fused_attention=True, norm_first=norm_first)
        torch.manual_seed(0)
        fused = reference.ModernGPT(config).eval()
        unfused = reference.ModernGPT(ModernConfig(**{**config.__dict__, "fused_attention": False})).eval()
        unfused.load_state_dict(fused.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(fused(idx), unfused(idx), atol=1e-5, rtol=1e-5)
        logits = fused.train()(idx)
        assert logits.shape == (2, 16, 65)
        # GPT-2's init makes the first predictions nearly uniform
        targets = torch.randint(65, (2, 16), generator=torch.Generator().manual_seed(1))
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        assert abs(loss.item() - math.log(65)) < 0.3, (config, loss.item())
        loss.backward()
        assert all(p.grad is not None for p in fused.parameters())


def test_positions_are_what_the_config_says() -> None:
    idx = torch.randint(65, (1, 16))
    bag = torch.cat([idx[:, :-1][:, torch.randperm(15)], idx[:, -1:]], dim=1)  # same last token, others shuffled
    for positions in POSITIONS:
        torch.manual_seed(0)
        model = reference.ModernGPT(ModernConfig(65, 16, d_model=32, num_layers=1, num_heads=4,
                                                 positions=positions)).eval()
        names = {n for n, _ in model.named_parameters()}
        assert ("position_embedding.weight" in names) == (positions == "learned")
        assert all("cos" not in k and "position_table" not in k for k in model.state_dict())
        with torch.no_grad():
            same = torch.allclose(model(idx)[:, -1], model(bag)[:, -1], atol=1e-6)
        # Without positions the last position sees a bag of tokens: its logits ignore their order.
        assert same == (positions == "none"), positions
    table = reference.ModernGPT(ModernConfig(65, 16, d_model=32, positions="sinusoidal")).position_table
    assert abs(table.pow(2).mean().sqrt().item() - 0.02) < 1e-3


def test_config_refuses_unknown_switches() -> None:
    with pytest.raises(ValueError, match="choose one of 'layer', 'rms'"):
        ModernConfig(65, 16, norm="batch")
    with pytest.raises(ValueError, match="not divisible"):
        ModernConfig(65, 16, d_model=30, num_heads=4)


@pytest.mark.parametrize("attention", load_mutants("02_multi_head_attention").CATALOGUE["check_multi_head_attention"].correct,
                         ids=lambda c: c.__name__)
def test_the_fused_check_compares_with_the_students_own_attention(attention, capsys) -> None:
    """Chapter 11's grade cell passes the student's chapter 2 class: each of chapter 2's correct ones works."""
    from course_utils import checks

    checks.check_fused_causal_attention(load_mutants("11_modern").fused_correct_named, attention=attention)
    assert f"= your {attention.__name__} with a causal mask" in capsys.readouterr().out


def test_the_fused_check_names_a_students_attention_that_cannot_be_built() -> None:
    from course_utils import checks
    from course_utils.checks.harness import CheckFailure

    class Broken(nn.Module):
        def __init__(self, d_model: int, num_heads: int) -> None:
            raise ValueError("d_model must be even")

    with pytest.raises(CheckFailure, match=r"Broken\(16, 4\).*d_model must be even"):
        checks.check_fused_causal_attention(load_mutants("11_modern").fused_correct_named, attention=Broken)
