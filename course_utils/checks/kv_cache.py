"""Autograder for chapter 10_gpt's key/value cache: ``cached_attention`` must give, one step at a time,
what full causal attention gives over the whole sequence, and keep the cache it is handed up to date.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from course_utils.checks.harness import (
    Check,
    describe,
    device_names,
    devices_and_dtypes,
    expect_callable,
    expect_close,
    fail,
    one_thread,
    seeded,
)
from course_utils.reference.gpt import LayerCache
from course_utils.checks.gpt import attention_with_mask

__all__ = ["check_cached_attention"]


# --------------------------------------------------------------------------------------
# cached_attention(attn, x, cache, num_heads) -> (B, T_new, d_model)
# --------------------------------------------------------------------------------------


def _cache_mistakes(attn: nn.Module, x_all: Tensor, start: int, n: int, num_heads: int) -> dict[str, Tensor]:
    """Outputs at the new positions ``start .. start + n - 1`` of known-wrong caches."""
    T = start + n
    h = x_all[:, :T]
    causal = torch.ones(T, T, dtype=torch.bool, device=x_all.device).tril()

    def with_rows(rows: Tensor) -> Tensor:
        """Attention whose new queries use the (n, T) mask ``rows`` (earlier rows stay causal, unused)."""
        mask = causal.clone()
        mask[start:] = rows
        return attention_with_mask(attn, h, num_heads, mask)[:, start:]

    new_rows = causal[start:]
    out: dict[str, Tensor] = {}
    if start > 0:
        out["the new position is missing from the keys: append the new keys and values to the cache BEFORE "
            "attending, so that each new token also sees itself."] = with_rows(
                new_rows & (torch.arange(T, device=x_all.device) < start))
        out["the cached keys and values are not used: the new queries attend only to the new positions. Attend to "
            "torch.cat([cache.k, k_new], dim=2) (and the same for v)."] = with_rows(
                new_rows & (torch.arange(T, device=x_all.device) >= start))
        out["the causal mask of the new queries ignores the cached positions: new query i sits at position "
            "T_past + i and may see keys 0 .. T_past + i, so the mask is tril(diagonal=T_past) of a (T_new, T_all) "
            "matrix, not tril() with the default diagonal."] = with_rows(
                torch.ones(n, T, dtype=torch.bool, device=x_all.device).tril())
    if n > 1:
        out["there is no causal mask inside the new chunk: in a prefill of several tokens each one sees the ones "
            "after it. New query i may see keys 0 .. T_past + i only."] = with_rows(torch.ones_like(new_rows))
    out["the scores are not divided by sqrt(d_k)."] = \
        attention_with_mask(attn, h, num_heads, causal, scale=False)[:, start:]
    return out


def check_cached_attention(cached_attention: Callable[..., Tensor], seed: int = 0, batch: int = 2, d_model: int = 16,
                           num_heads: int = 4, chunks: Sequence[int] = (4, 1, 1, 3, 1)) -> None:
    """Check ``cached_attention(attn, x, cache, num_heads)`` over a prefill and several steps: each output equals
    causal self-attention over everything so far, at the new positions; the cache grows to ``(B, H, T, d_k)``
    holding the keys and values of every position."""
    fn = expect_callable(cached_attention, "cached_attention")
    check = Check("cached_attention")
    check.refuse_answer_key(fn)
    from course_utils.reference.multi_head_attention import MultiHeadAttention

    total = sum(chunks)
    d_k = d_model // num_heads
    with one_thread():
        with seeded(seed):
            attn = MultiHeadAttention(d_model, num_heads).eval()
        for device, dtype, where in devices_and_dtypes(attn):
            with seeded(seed + 1):
                x_all = torch.randn(batch, total, d_model, dtype=dtype).to(device)
            with torch.no_grad():
                causal = torch.ones(total, total, dtype=torch.bool, device=device).tril()
                expected_all = attention_with_mask(attn, x_all, num_heads, causal)
                k_all = attn.W_k(x_all).view(batch, total, num_heads, d_k).transpose(1, 2)
                v_all = attn.W_v(x_all).view(batch, total, num_heads, d_k).transpose(1, 2)
            cache = LayerCache()
            start = 0
            for n in chunks:
                what = (f"cached_attention(attn, x (B={batch}, T_new={n}), cache holding {start} positions, "
                        f"num_heads={num_heads}){where}")
                with torch.no_grad():
                    got = check.call(fn, attn, x_all[:, start:start + n], cache, num_heads, what=what)
                    mistakes = _cache_mistakes(attn, x_all, start, n, num_heads)
                k, v = getattr(cache, "k", None), getattr(cache, "v", None)
                if not isinstance(k, Tensor) or not isinstance(v, Tensor):
                    fail(f"after {what}, cache.k and cache.v should hold the keys and values so far, but they are "
                         f"{describe(k)} and {describe(v)}: set cache.k = k_new when it is None, else "
                         f"torch.cat([cache.k, k_new], dim=2), and the same for v.")
                if tuple(k.shape) != (batch, num_heads, start + n, d_k) or tuple(v.shape) != tuple(k.shape):
                    hint = ("\nLikely mistake: the cache is replaced by the new keys instead of growing: "
                            "torch.cat([cache.k, k_new], dim=2)." if k.size(-2) == n and start > 0 else "")
                    fail(f"after {what}, cache.k has shape {tuple(k.shape)} and cache.v {tuple(v.shape)}, expected "
                         f"{(batch, num_heads, start + n, d_k)} each: (B, H, positions so far, d_k), after split_heads "
                         f"(concatenate along dim=2, the position axis).{hint}")
                expect_close(got, expected_all[:, start:start + n], what, mistakes=mistakes,
                             hint="q, k_new, v_new = split_heads(attn.W_q(x)), ...; append k_new, v_new to the cache; "
                                  "softmax(q k^T / sqrt(d_k)) with new query i seeing keys 0 .. T_past + i; attn.W_o.")
                expect_close(k.detach(), k_all[:, :, :start + n], f"cache.k after {what}",
                             hint="the cache stores the projected keys split into heads, attn.W_k(x), positions in order.")
                expect_close(v.detach(), v_all[:, :, :start + n], f"cache.v after {what}",
                             mistakes={"cache.v holds the keys: store split_heads(attn.W_v(x)).": k_all[:, :, :start + n]})
                start += n
    check.passed(f"prefill and step-by-step outputs = full causal attention, cache (B, H, T, d_k) grows, "
                 f"float32/float64 on {device_names()}")
