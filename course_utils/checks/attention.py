"""Autograders for chapter 01_attention: ``attention_scores`` and ``scaled_dot_product_attention``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from course_utils import reference
from course_utils.checks.harness import (
    Check,
    compare_gradients,
    device_names,
    devices,
    expect_callable,
    expect_close,
    expect_pair,
    expect_tensor,
    fail,
    leaf_copies,
    seeded,
    steady,
)

_MATMUL_HINTS = {
    # Checked in order: the first needle found in the error message gives the hint.
    "cannot be multiplied": "query @ key needs the key's last two axes swapped: key.transpose(-2, -1).",
    "Expected size for first two dimensions": "query @ key needs the key's last two axes swapped: "
                                              "key.transpose(-2, -1).",
    # Broadcasting failures, raised by @ on the batch axes as well as by +, * or masked_fill.
    "size of tensor a": "query @ key needs the key's last two axes swapped, and only those: "
                        "key.transpose(-2, -1); a mask must broadcast against the scores (..., Lq, Lk).",
}


BACKWARD_HINTS = {
    "modified by an inplace operation": "an in-place operation (a method ending in _, such as masked_fill_, or "
                                        "x[...] = ...) changed a tensor that backward needs, such as the softmax's "
                                        "output. Use the out-of-place form: weights = weights.masked_fill(...), "
                                        "or mask the scores before the softmax only.",
}


def random_qkv(batch_shape: tuple[int, ...], lq: int, lk: int, d_k: int, d_v: int,
               dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
               ) -> tuple[Tensor, Tensor, Tensor]:
    """Random query ``(*batch, lq, d_k)``, key ``(*batch, lk, d_k)``, value ``(*batch, lk, d_v)``."""
    q = torch.randn(*batch_shape, lq, d_k, dtype=dtype)
    k = torch.randn(*batch_shape, lk, d_k, dtype=dtype)
    v = torch.randn(*batch_shape, lk, d_v, dtype=dtype)
    return q.to(device), k.to(device), v.to(device)


def random_mask(shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """A boolean mask (True = may attend) where every query row keeps at least one key."""
    mask = torch.rand(shape) > 0.4
    mask[..., 0] = True  # a row with no allowed key has no defined softmax
    return mask.to(device)


def _score_mistakes(query: Tensor, key: Tensor) -> dict[str, Callable[[], Tensor]]:
    d_k = query.size(-1)
    raw = lambda: query @ key.transpose(-2, -1)  # noqa: E731
    return {
        "the scores were not divided by sqrt(d_k) (section 3.2.1: QK^T / sqrt(d_k)).": raw,
        "the scores were divided by d_k instead of sqrt(d_k).": lambda: raw() / d_k,
        "the scores were multiplied by sqrt(d_k) instead of divided.": lambda: raw() * math.sqrt(d_k),
        "the scores were divided by sqrt(Lk) (the number of keys) instead of sqrt(d_k) "
        "(the size of each key vector, query.size(-1)).": lambda: raw() / math.sqrt(key.size(-2)),
    }


def check_attention_scores(attention_scores: Callable[..., Tensor], seed: int = 0,
                           batch_shape: tuple[int, ...] = (2, 3), lq: int = 4, lk: int = 6,
                           d_k: int = 8) -> None:
    """Check ``attention_scores(query, key) -> (..., Lq, Lk)`` equals ``QK^T / sqrt(d_k)``.

    Uses ``Lq != Lk != d_k`` and leading batch dims, on every available device, in float32
    and float64, and compares gradients.
    """
    expect_callable(attention_scores, "attention_scores")
    check = Check("attention_scores")
    check.refuse_answer_key(attention_scores)
    for device in devices():
        for dtype in (torch.float32, torch.float64):
            with seeded(seed):
                q, k, _ = random_qkv(batch_shape, lq, lk, d_k, 1, dtype, device)
            q_s, k_s = leaf_copies(q, k)
            q_r, k_r = leaf_copies(q, k)
            got = check.call(attention_scores, q_s, k_s, what="attention_scores(query, key)",
                             on_error=_MATMUL_HINTS)
            want = reference.attention_scores(q_r, k_r)
            expect_close(
                got, want, f"attention_scores(query, key) on {device.type} in {dtype}",
                mistakes=_score_mistakes(q, k),
                shape_hint="scores have one row per query and one column per key: (..., Lq, Lk). "
                           "Transpose only the key's last two axes: key.transpose(-2, -1).",
            )
            compare_gradients(got, want, {"query": q_s, "key": k_s}, {"query": q_r, "key": k_r},
                              "attention_scores", seed)
    check.passed(f"shapes, values, gradients, float32/float64 on {device_names()}")


@steady
def check_scaled_dot_product_attention(
    scaled_dot_product_attention: Callable[..., tuple[Tensor, Tensor]], seed: int = 0,
    batch_shape: tuple[int, ...] = (2, 3), lq: int = 4, lk: int = 6, d_k: int = 8, d_v: int = 5,
) -> None:
    """Check ``scaled_dot_product_attention(q, k, v, mask=None) -> (output, weights)``.

    Compares with ``torch.nn.functional.scaled_dot_product_attention`` and the reference,
    with and without a mask (full ``(..., Lq, Lk)``, broadcast padding-style ``(..., 1, Lk)``
    and a 2-D causal ``(Lq, Lk)``), gradients with each mask, checks that weights sum to 1 over the keys and that masked keys get
    exactly zero weight, gradients, dtype and device.
    """
    fn = expect_callable(scaled_dot_product_attention, "scaled_dot_product_attention")
    check = Check("scaled_dot_product_attention")
    check.refuse_answer_key(fn)
    what = "scaled_dot_product_attention(query, key, value)"
    for device in devices():
        for dtype in (torch.float32, torch.float64):
            with seeded(seed):
                q, k, v = random_qkv(batch_shape, lq, lk, d_k, d_v, dtype, device)
                full_mask = random_mask((*batch_shape, lq, lk), device)
                pad_mask = random_mask((*batch_shape, 1, lk), device)
                causal_mask = torch.ones(lq, lk, dtype=torch.bool, device=device).tril()  # row i sees keys 0..i
            where = f" on {device.type} in {dtype}"
            # 1. No mask: output against PyTorch's built-in, weights against the reference.
            q_s, k_s, v_s = leaf_copies(q, k, v)
            out, weights = expect_pair(check.call(fn, q_s, k_s, v_s, what=what, on_error=_MATMUL_HINTS),
                                       what, ("output", "weights"))
            expect_tensor(out, "the output")
            expect_tensor(weights, "the attention-weight tensor", (*batch_shape, lq, lk),
                          hint="weights have one row per query and one column per key: (..., Lq, Lk). "
                               "If yours is (..., Lk, Lq) or (..., Lq, d_v), check the order of "
                               "return values: (output, weights).")
            _expect_rows_sum_to_one(weights, where)
            expected_weights = reference.scaled_dot_product_attention(q, k, v)[1]
            expect_close(weights, expected_weights, "the attention weights" + where,
                         mistakes=_weight_mistakes(q, k))
            builtin = F.scaled_dot_product_attention(q, k, v)
            expect_close(out, builtin, "the output" + where,
                         shape_hint="the output has one row per query, of the value's size: (..., Lq, d_v).",
                         hint="the weights are right, so look at the last step: output = weights @ value.")
            q_r, k_r, v_r = leaf_copies(q, k, v)
            ref_out = reference.scaled_dot_product_attention(q_r, k_r, v_r)[0]
            compare_gradients(out, ref_out, {"query": q_s, "key": k_s, "value": v_s},
                              {"query": q_r, "key": k_r, "value": v_r}, "the output", seed)
            # 2. Masks: the full one and a broadcast padding-style one.
            for mask, label in ((full_mask, "a (..., Lq, Lk) mask"), (pad_mask, "a broadcast (..., 1, Lk) mask"),
                                (causal_mask, "a 2-D causal mask (Lq, Lk)")):
                q_s, k_s, v_s = leaf_copies(q, k, v)
                got_out, got_w = expect_pair(
                    check.call(fn, q_s, k_s, v_s, mask,
                               what=f"scaled_dot_product_attention(query, key, value, mask) with {label}",
                               on_error=_MATMUL_HINTS),
                    what, ("output", "weights"))
                expect_tensor(got_w, f"the attention-weight tensor with {label}", (*batch_shape, lq, lk))
                full = mask.expand(*batch_shape, lq, lk)
                leaked = got_w.detach().masked_select(~full).abs()
                if leaked.numel() and leaked.max() > 1e-6:
                    inverted = reference.scaled_dot_product_attention(q, k, v, ~mask)[1] \
                        if bool((~full).any(-1).all()) else None
                    reason = ("your weights match an inverted mask: True means 'may attend', so fill "
                              "the scores where the mask is False (masked_fill(~mask, float('-inf')))."
                              if inverted is not None and torch.allclose(got_w, inverted, atol=1e-5)
                              else "fill the scores of masked keys with float('-inf') before the softmax.")
                    fail(f"with {label}{where}, keys where the mask is False got weight up to "
                         f"{leaked.max().item():.3g}; they must get exactly 0.\nHint: {reason}")
                _expect_rows_sum_to_one(got_w, where + f" with {label}",
                                        extra="If you zeroed masked weights after the softmax, the rest "
                                              "no longer sum to 1: mask the scores before the softmax instead.")
                expect_close(got_w, reference.scaled_dot_product_attention(q, k, v, mask)[1],
                             f"the attention weights with {label}{where}")
                expect_close(got_out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                             f"the output with {label}{where}")
                # Backward with a mask: an in-place change of the weights (masked_fill_ after the
                # softmax) breaks it only here.
                q_r, k_r, v_r = leaf_copies(q, k, v)
                ref_out = reference.scaled_dot_product_attention(q_r, k_r, v_r, mask)[0]
                check.call(lambda: compare_gradients(got_out, ref_out, {"query": q_s, "key": k_s, "value": v_s},
                                                     {"query": q_r, "key": k_r, "value": v_r},
                                                     f"the output with {label}", seed),
                           what=f"backward() through scaled_dot_product_attention with {label}",
                           on_error=BACKWARD_HINTS)
    check.passed("shapes, values vs torch's built-in, masks, weights sum to 1, gradients, "
                 f"float32/float64 on {device_names()}")


def _expect_rows_sum_to_one(weights: Tensor, where: str, extra: str = "") -> None:
    sums = weights.detach().sum(-1)
    error = (sums - 1).abs()
    if error.max() > 1e-4:
        col_sums_ok = bool(((weights.detach().sum(-2) - 1).abs().max() < 1e-4))
        hint = ("they sum to 1 over the queries instead: the softmax ran over the wrong axis; "
                "use dim=-1 (the key axis)." if col_sums_ok else
                "take the softmax over the key axis: torch.softmax(scores, dim=-1). " + extra)
        index = tuple(int(i) for i in torch.unravel_index(error.flatten().argmax().cpu(), error.shape))
        fail(f"the attention weights{where} do not sum to 1 over the keys: the row at {index} "
             f"sums to {sums[index].item():.6g}.\nHint: {hint}")


def _weight_mistakes(query: Tensor, key: Tensor) -> dict[str, Callable[[], Tensor]]:
    return {text: (lambda s=scores: torch.softmax(s(), dim=-1))
            for text, scores in _score_mistakes(query, key).items()}
