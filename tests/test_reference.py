"""The answer key (course_utils.reference) against PyTorch's built-ins.

Scaled dot-product attention is compared with ``F.scaled_dot_product_attention`` (its
weights are recovered by attending to an identity "value"), multi-head attention with
``nn.MultiheadAttention(batch_first=True)`` holding the same weights. Masks in this course
are boolean with True = "may attend", which is also what ``F.scaled_dot_product_attention``
expects; ``nn.MultiheadAttention`` wants the opposite convention, shaped ``(B*H, Lq, Lk)``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils import reference
from course_utils.course.guard import ReferenceUsedError, forbid

DTYPES = [torch.float32, torch.float64]
# (leading dims, Lq, Lk, d_k, d_v): 0 to 3 leading axes, Lq != Lk, d_k != d_v.
SHAPES = [
    ((), 3, 5, 4, 2),
    ((2,), 4, 6, 8, 5),
    ((2, 3), 1, 7, 6, 3),
    ((2, 2, 3), 5, 2, 3, 7),
]


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"atol": 1e-12, "rtol": 1e-10} if dtype == torch.float64 else {"atol": 2e-6, "rtol": 1e-5}


def _qkv(lead: tuple[int, ...], lq: int, lk: int, d_k: int, d_v: int, dtype: torch.dtype,
         seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*lead, lq, d_k, generator=g, dtype=dtype),
            torch.randn(*lead, lk, d_k, generator=g, dtype=dtype),
            torch.randn(*lead, lk, d_v, generator=g, dtype=dtype))


def _builtin_weights(q: Tensor, k: Tensor, mask: Tensor | None = None) -> Tensor:
    """The built-in's attention weights: attend to an identity matrix as the value."""
    eye = torch.eye(k.size(-2), dtype=q.dtype).expand(*k.shape[:-1], k.size(-2))
    return F.scaled_dot_product_attention(q, k, eye, attn_mask=mask)


def _masks(lead: tuple[int, ...], lq: int, lk: int) -> dict[str, Tensor]:
    """Boolean masks (True = may attend), each leaving every query at least one key."""
    g = torch.Generator().manual_seed(1)
    full = torch.rand(*lead, lq, lk, generator=g) > 0.5
    full[..., 0] = True
    padding = torch.rand(*lead, 1, lk, generator=g) > 0.5
    padding[..., 0] = True
    causal = torch.ones(lq, lk, dtype=torch.bool).tril()
    return {"full": full, "padding (..., 1, Lk)": padding, "causal (Lq, Lk)": causal}


# --------------------------------------------------------------------------------------
# attention_scores and scaled_dot_product_attention
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"lead{len(s[0])}")
def test_attention_scores_is_scaled_dot_product(shape, dtype) -> None:
    lead, lq, lk, d_k, d_v = shape
    q, k, _ = _qkv(lead, lq, lk, d_k, d_v, dtype)
    scores = reference.attention_scores(q, k)
    assert scores.shape == (*lead, lq, lk) and scores.dtype == dtype
    expected = torch.einsum("...qd,...kd->...qk", q, k) / math.sqrt(d_k)
    torch.testing.assert_close(scores, expected, **_tol(dtype))
    # The softmax of the scores is the built-in's attention distribution.
    torch.testing.assert_close(torch.softmax(scores, dim=-1), _builtin_weights(q, k), **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"lead{len(s[0])}")
def test_sdpa_matches_builtin_without_mask(shape, dtype) -> None:
    lead, lq, lk, d_k, d_v = shape
    q, k, v = _qkv(lead, lq, lk, d_k, d_v, dtype)
    output, weights = reference.scaled_dot_product_attention(q, k, v)
    assert output.shape == (*lead, lq, d_v) and weights.shape == (*lead, lq, lk)
    assert output.dtype == weights.dtype == dtype
    torch.testing.assert_close(output, F.scaled_dot_product_attention(q, k, v), **_tol(dtype))
    torch.testing.assert_close(weights, _builtin_weights(q, k), **_tol(dtype))
    torch.testing.assert_close(weights.sum(-1), torch.ones((*lead, lq), dtype=dtype), **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"lead{len(s[0])}")
def test_sdpa_matches_builtin_with_masks(shape, dtype) -> None:
    lead, lq, lk, d_k, d_v = shape
    q, k, v = _qkv(lead, lq, lk, d_k, d_v, dtype)
    for name, mask in _masks(lead, lq, lk).items():
        output, weights = reference.scaled_dot_product_attention(q, k, v, mask)
        torch.testing.assert_close(output, F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                                   **_tol(dtype), msg=lambda m, name=name: f"{name} mask: {m}")
        torch.testing.assert_close(weights, _builtin_weights(q, k, mask), **_tol(dtype),
                                   msg=lambda m, name=name: f"{name} mask: {m}")
        full = mask.expand(*lead, lq, lk)
        assert torch.all(weights[~full] == 0), f"{name} mask: masked keys must get exactly 0 weight"
        torch.testing.assert_close(weights.sum(-1), torch.ones((*lead, lq), dtype=dtype), **_tol(dtype))


def test_sdpa_causal_mask_hides_the_future() -> None:
    q, k, v = _qkv((2,), 5, 5, 4, 3, torch.float64)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    _, weights = reference.scaled_dot_product_attention(q, k, v, causal)
    assert torch.all(weights.triu(diagonal=1) == 0)
    # Changing a future key or value changes nothing for earlier queries.
    k2, v2 = k.clone(), v.clone()
    k2[:, 3:], v2[:, 3:] = torch.randn(2, 2, 4, dtype=torch.float64), torch.randn(2, 2, 3, dtype=torch.float64)
    out1 = reference.scaled_dot_product_attention(q, k, v, causal)[0]
    out2 = reference.scaled_dot_product_attention(q, k2, v2, causal)[0]
    torch.testing.assert_close(out1[:, :3], out2[:, :3])


def test_sdpa_gradients_gradcheck() -> None:
    q, k, v = (t.requires_grad_() for t in _qkv((2,), 3, 4, 3, 2, torch.float64))
    mask = torch.tensor([[True, False, True, True]])  # (1, Lk), broadcast over queries

    def output_and_weights(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return reference.scaled_dot_product_attention(q, k, v, mask)

    assert torch.autograd.gradcheck(reference.attention_scores, (q, k))
    assert torch.autograd.gradcheck(reference.scaled_dot_product_attention, (q, k, v))
    assert torch.autograd.gradcheck(output_and_weights, (q, k, v))


def test_sdpa_gradients_match_builtin() -> None:
    q, k, v = _qkv((2, 3), 4, 6, 8, 5, torch.float64)
    mask = _masks((2, 3), 4, 6)["full"]
    ours = [t.clone().requires_grad_() for t in (q, k, v)]
    theirs = [t.clone().requires_grad_() for t in (q, k, v)]
    upstream = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    (reference.scaled_dot_product_attention(*ours, mask)[0] * upstream).sum().backward()
    (F.scaled_dot_product_attention(*theirs, attn_mask=mask) * upstream).sum().backward()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad)


# --------------------------------------------------------------------------------------
# split_heads and combine_heads
# --------------------------------------------------------------------------------------


def test_split_heads_layout() -> None:
    batch, length, num_heads, d_k = 2, 5, 4, 3
    x = torch.randn(batch, length, num_heads * d_k)
    heads = reference.split_heads(x, num_heads)
    assert heads.shape == (batch, num_heads, length, d_k)
    for h in range(num_heads):  # head h holds the contiguous feature slice h*d_k:(h+1)*d_k
        torch.testing.assert_close(heads[:, h], x[..., h * d_k:(h + 1) * d_k], rtol=0, atol=0)
    torch.testing.assert_close(heads, torch.stack(x.chunk(num_heads, dim=-1), dim=1), rtol=0, atol=0)


def test_combine_heads_layout_and_round_trip() -> None:
    batch, num_heads, length, d_k = 3, 2, 4, 5
    x = torch.randn(batch, num_heads, length, d_k)
    merged = reference.combine_heads(x)
    assert merged.shape == (batch, length, num_heads * d_k)
    torch.testing.assert_close(merged, torch.cat(x.unbind(dim=1), dim=-1), rtol=0, atol=0)
    torch.testing.assert_close(reference.split_heads(merged, num_heads), x, rtol=0, atol=0)
    y = torch.randn(batch, length, num_heads * d_k)
    torch.testing.assert_close(reference.combine_heads(reference.split_heads(y, num_heads)), y,
                               rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# MultiHeadAttention against nn.MultiheadAttention
# --------------------------------------------------------------------------------------


def _twin(mha: reference.MultiHeadAttention) -> nn.MultiheadAttention:
    twin = nn.MultiheadAttention(mha.d_model, mha.num_heads, batch_first=True)
    with torch.no_grad():
        twin.in_proj_weight.copy_(torch.cat([mha.W_q.weight, mha.W_k.weight, mha.W_v.weight]))
        twin.in_proj_bias.copy_(torch.cat([mha.W_q.bias, mha.W_k.bias, mha.W_v.bias]))
        twin.out_proj.weight.copy_(mha.W_o.weight)
        twin.out_proj.bias.copy_(mha.W_o.bias)
    return twin.to(mha.W_q.weight.dtype).eval()


def _builtin_mask(mask: Tensor | None, batch: int, num_heads: int, lq: int, lk: int) -> Tensor | None:
    """Ours (True = may attend, broadcast to (B, H, Lq, Lk)) -> built-in's (B*H, Lq, Lk), True = may not."""
    if mask is None:
        return None
    return ~mask.expand(batch, num_heads, lq, lk).reshape(batch * num_heads, lq, lk)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_head_attention_matches_builtin(dtype) -> None:
    torch.manual_seed(0)
    batch, lq, lk, d_model, num_heads = 2, 5, 7, 16, 4
    mha = reference.MultiHeadAttention(d_model, num_heads).to(dtype).eval()
    twin = _twin(mha)
    x = torch.randn(batch, lq, d_model, dtype=dtype)
    memory = torch.randn(batch, lk, d_model, dtype=dtype)
    value = torch.randn(batch, lk, d_model, dtype=dtype)
    padding = torch.rand(batch, 1, 1, lk) > 0.5
    padding[..., 0] = True
    causal = torch.ones(1, 1, lq, lq, dtype=torch.bool).tril()
    cases = [
        ("cross", x, memory, value, None),
        ("cross + padding (B, 1, 1, Lk)", x, memory, memory, padding),
        ("self", x, x, x, None),
        ("self + causal (1, 1, L, L)", x, x, x, causal),
    ]
    for name, query, key, val, mask in cases:
        out = mha(query, key, val, mask)
        want, want_w = twin(query, key, val, average_attn_weights=False,
                            attn_mask=_builtin_mask(mask, batch, num_heads, query.size(1), key.size(1)))
        assert out.shape == (batch, query.size(1), d_model) and out.dtype == dtype
        torch.testing.assert_close(out, want, **_tol(dtype), msg=lambda m, name=name: f"{name}: {m}")
        assert mha.attention_weights.shape == (batch, num_heads, query.size(1), key.size(1))
        torch.testing.assert_close(mha.attention_weights, want_w, **_tol(dtype),
                                   msg=lambda m, name=name: f"{name} weights: {m}")


def test_multi_head_attention_gradients_match_builtin() -> None:
    torch.manual_seed(1)
    mha = reference.MultiHeadAttention(12, 3).double().eval()
    twin = _twin(mha)
    q, kv = torch.randn(2, 3, 12, dtype=torch.float64), torch.randn(2, 4, 12, dtype=torch.float64)
    ours = [t.clone().requires_grad_() for t in (q, kv)]
    theirs = [t.clone().requires_grad_() for t in (q, kv)]
    upstream = torch.randn(2, 3, 12, dtype=torch.float64)
    (mha(ours[0], ours[1], ours[1]) * upstream).sum().backward()
    (twin(theirs[0], theirs[1], theirs[1], need_weights=False)[0] * upstream).sum().backward()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(mha.W_q.weight.grad, twin.in_proj_weight.grad[:12])
    torch.testing.assert_close(mha.W_v.weight.grad, twin.in_proj_weight.grad[24:])
    torch.testing.assert_close(mha.W_o.weight.grad, twin.out_proj.weight.grad)


def test_multi_head_attention_dropout_train_and_eval() -> None:
    torch.manual_seed(2)
    mha = reference.MultiHeadAttention(16, 4, dropout=0.5)
    x = torch.randn(2, 6, 16)
    mha.train()
    first, second = mha(x, x, x), mha(x, x, x)
    assert not torch.allclose(first, second), "dropout should make two training passes differ"
    mha.eval()
    evaluated = mha(x, x, x)
    torch.testing.assert_close(mha(x, x, x), evaluated, rtol=0, atol=0)
    assert not torch.allclose(first, evaluated)
    torch.testing.assert_close(evaluated, _twin(mha)(x, x, x, need_weights=False)[0])
    # The stored weights are those before dropout: rows still sum to 1 in training mode.
    mha.train()
    mha(x, x, x)
    torch.testing.assert_close(mha.attention_weights.sum(-1), torch.ones(2, 4, 6))


def test_multi_head_attention_parameters_and_validation() -> None:
    mha = reference.MultiHeadAttention(16, 4)
    for name in ("W_q", "W_k", "W_v", "W_o"):
        layer = getattr(mha, name)
        assert isinstance(layer, nn.Linear) and (layer.in_features, layer.out_features) == (16, 16)
    assert sum(p.numel() for p in mha.parameters()) == 4 * (16 * 16 + 16)
    with pytest.raises(ValueError, match="divisible"):
        reference.MultiHeadAttention(10, 3)


# --------------------------------------------------------------------------------------
# The guard that stops a check from accepting the answer key
# --------------------------------------------------------------------------------------


def test_guard_forbids_only_the_named_answer_key() -> None:
    q, k, v = _qkv((2,), 3, 4, 5, 6, torch.float32)
    with forbid("scaled_dot_product_attention"):
        with pytest.raises(ReferenceUsedError, match="scaled_dot_product_attention"):
            reference.scaled_dot_product_attention(q, k, v)
        reference.attention_scores(q, k)  # another answer key stays allowed
    with forbid("MultiHeadAttention"):
        output, weights = reference.scaled_dot_product_attention(q, k, v)
        assert output.shape == (2, 3, 6) and weights.shape == (2, 3, 4)
        with pytest.raises(ReferenceUsedError, match="MultiHeadAttention"):
            reference.MultiHeadAttention(8, 2)
    # Outside forbid, everything is allowed again.
    reference.scaled_dot_product_attention(q, k, v)
    reference.MultiHeadAttention(8, 2)
