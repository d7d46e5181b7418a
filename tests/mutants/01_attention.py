"""Known-wrong and correct answers for chapter 01_attention's checks.

Each mutant is a realistic student mistake written as a small standalone function; its
``expect`` pins the diagnosis the check gives (a regular expression searched in the
AssertionError's message). The correct answers are written differently from the
reference (einsum, torch.matmul with an explicit scale tensor, masked_fill with
``torch.finfo(dtype).min``, PyTorch's fused kernel for the output, ...) and must pass.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import course_utils.reference
from course_utils import reference
from tests.support import Bug, Catalogue, Mutant

# --------------------------------------------------------------------------------------
# attention_scores(query, key) -> (..., Lq, Lk)
# --------------------------------------------------------------------------------------


def scores_stub(query: Tensor, key: Tensor) -> Tensor:
    # YOUR CODE HERE
    raise NotImplementedError()


def scores_unscaled(query: Tensor, key: Tensor) -> Tensor:
    return query @ key.transpose(-2, -1)


def scores_divided_by_d_k(query: Tensor, key: Tensor) -> Tensor:
    return query @ key.transpose(-2, -1) / query.size(-1)


def scores_multiplied_by_sqrt_d_k(query: Tensor, key: Tensor) -> Tensor:
    return query @ key.transpose(-2, -1) * math.sqrt(query.size(-1))


def scores_divided_by_sqrt_lk(query: Tensor, key: Tensor) -> Tensor:
    return query @ key.transpose(-2, -1) / math.sqrt(key.size(-2))


def scores_key_not_transposed(query: Tensor, key: Tensor) -> Tensor:
    return query @ key / math.sqrt(query.size(-1))


def scores_wrong_axes_transposed(query: Tensor, key: Tensor) -> Tensor:
    return query @ key.transpose(1, 2) / math.sqrt(query.size(-1))


def scores_detached(query: Tensor, key: Tensor) -> Tensor:
    return (query @ key.transpose(-2, -1)).detach() / math.sqrt(query.size(-1))


def scores_through_numpy(query: Tensor, key: Tensor) -> Tensor:
    q, k = query.detach().numpy(), key.detach().numpy()
    return torch.from_numpy(q @ np.swapaxes(k, -2, -1) / math.sqrt(q.shape[-1]))


def scores_float32_buffer(query: Tensor, key: Tensor) -> Tensor:
    # A buffer made with torch.zeros(...) is float32 whatever the inputs' dtype.
    scores = torch.zeros(*query.shape[:-1], key.size(-2))
    scores[...] = query @ key.transpose(-2, -1) / math.sqrt(query.size(-1))
    return scores


def scores_wrapping_the_reference(query: Tensor, key: Tensor) -> Tensor:
    return course_utils.reference.attention_scores(query, key)


def scores_einsum(query: Tensor, key: Tensor) -> Tensor:
    return torch.einsum("...qd,...kd->...qk", query, key) * query.size(-1) ** -0.5


def scores_matmul_scale_tensor(query: Tensor, key: Tensor) -> Tensor:
    scale = torch.tensor(query.size(-1), dtype=query.dtype, device=query.device).rsqrt()
    return torch.matmul(query * scale, key.mT)


def scores_flattened_bmm(query: Tensor, key: Tensor) -> Tensor:
    *batch, lq, d_k = query.shape
    q = query.reshape(-1, lq, d_k) / math.sqrt(d_k)
    k = key.reshape(-1, key.size(-2), d_k)
    return torch.bmm(q, k.permute(0, 2, 1)).reshape(*batch, lq, key.size(-2))


# --------------------------------------------------------------------------------------
# scaled_dot_product_attention(query, key, value, mask=None) -> (output, weights)
# --------------------------------------------------------------------------------------


def _scores(query: Tensor, key: Tensor) -> Tensor:
    return query @ key.transpose(-2, -1) / math.sqrt(query.size(-1))


def sdpa_stub(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None):
    # YOUR CODE HERE
    raise NotImplementedError()


def sdpa_unscaled(query, key, value, mask=None):
    scores = query @ key.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


def sdpa_divided_by_d_k(query, key, value, mask=None):
    scores = query @ key.transpose(-2, -1) / query.size(-1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


def sdpa_softmax_over_queries(query, key, value, mask=None):
    scores = _scores(query, key)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-2)
    return weights @ value, weights


def sdpa_inverted_mask(query, key, value, mask=None):
    scores = _scores(query, key)
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


def sdpa_inverted_mask_finite(query, key, value, mask=None):
    scores = _scores(query, key)
    if mask is not None:
        scores = scores.masked_fill(mask == 1, -1e9)
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


def sdpa_mask_after_softmax(query, key, value, mask=None):
    weights = torch.softmax(_scores(query, key), dim=-1)
    if mask is not None:
        weights = weights * mask  # zeroes masked keys but the rows no longer sum to 1
    return weights @ value, weights


def sdpa_mask_ignored(query, key, value, mask=None):
    weights = torch.softmax(_scores(query, key), dim=-1)
    return weights @ value, weights


def sdpa_key_not_transposed(query, key, value, mask=None):
    scores = query @ key / math.sqrt(query.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


def sdpa_returns_weights_first(query, key, value, mask=None):
    scores = _scores(query, key)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights, weights @ value


def sdpa_weights_detached(query, key, value, mask=None):
    scores = _scores(query, key)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).detach()
    return weights @ value, weights


def sdpa_numpy_softmax(query, key, value, mask=None):
    scores = _scores(query, key).detach().numpy()
    if mask is not None:
        scores = np.where(mask.numpy(), scores, -np.inf)
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights = torch.from_numpy(exp / exp.sum(axis=-1, keepdims=True))
    return weights @ value, weights


def sdpa_float32_softmax(query, key, value, mask=None):
    scores = _scores(query, key)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32)  # casts float64 inputs down
    return weights @ value.float(), weights


def sdpa_wrapping_the_reference(query, key, value, mask=None):
    from course_utils.reference import scaled_dot_product_attention

    return scaled_dot_product_attention(query, key, value, mask)


def sdpa_einsum_finfo_min(query, key, value, mask=None):
    scale = torch.tensor(query.size(-1), dtype=query.dtype, device=query.device).rsqrt()
    scores = torch.einsum("...qd,...kd->...qk", query, key) * scale
    if mask is not None:
        scores = scores.masked_fill(mask.logical_not(), torch.finfo(scores.dtype).min)
    weights = F.softmax(scores, dim=-1)
    return torch.einsum("...qk,...kv->...qv", weights, value), weights


def sdpa_where_matmul(query, key, value, mask=None):
    scores = torch.matmul(query / math.sqrt(query.shape[-1]), key.mT)
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=scores.dtype,
                                                        device=scores.device))
    weights = scores.softmax(-1)
    return torch.matmul(weights, value), weights


def sdpa_fused_output(query, key, value, mask=None):
    # PyTorch's fused kernel for the output, the weights computed on the side (and built on
    # the reference scores, which this exercise allows: it asks for the attention itself).
    scores = reference.attention_scores(query, key)
    if mask is not None:
        scores = scores.masked_fill(~mask, -math.inf)
    weights = torch.exp(scores - torch.logsumexp(scores, dim=-1, keepdim=True))
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask), weights


def sdpa_zeroes_masked_weights_in_place(query, key, value, mask=None):
    """Right values; the in-place masked_fill_ after the softmax breaks backward, with a mask only."""
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights.masked_fill_(~mask, 0.0)
    return weights @ value, weights


CATALOGUE: dict[str, Catalogue] = {
    "check_attention_scores": Catalogue(
        reference=reference.attention_scores,
        mutants=[
            Mutant("stub", scores_stub, r"not implemented yet"),
            Mutant("unscaled", scores_unscaled, r"not divided by sqrt\(d_k\)"),
            Mutant("divided_by_d_k", scores_divided_by_d_k, r"divided by d_k instead of sqrt\(d_k\)"),
            Mutant("multiplied_by_sqrt_d_k", scores_multiplied_by_sqrt_d_k,
                   r"multiplied by sqrt\(d_k\) instead of divided"),
            Mutant("divided_by_sqrt_lk", scores_divided_by_sqrt_lk, r"divided by sqrt\(Lk\)"),
            Mutant("key_not_transposed", scores_key_not_transposed,
                   r"raised RuntimeError: Expected size for first two dimensions of batch2 tensor"
                   r"(.|\n)*Hint: query @ key needs the key's last two axes swapped"),
            Mutant("wrong_axes_transposed", scores_wrong_axes_transposed,
                   r"raised RuntimeError: The size of tensor a .*\n.*\nHint: query @ key needs the "
                   r"key's last two axes swapped"),
            Mutant("detached", scores_detached, r"does not carry gradients back"),
            Mutant("through_numpy", scores_through_numpy, r"does not carry gradients back"),
            Mutant("float32_buffer", scores_float32_buffer,
                   r"in torch\.float64 has dtype torch\.float32, expected torch\.float64"),
            Mutant("wraps_the_reference", scores_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own attention_scores"),
        ],
        correct=[scores_einsum, scores_matmul_scale_tensor, scores_flattened_bmm],
    ),
    "check_scaled_dot_product_attention": Catalogue(
        reference=reference.scaled_dot_product_attention,
        mutants=[
            Mutant("stub", sdpa_stub, r"not implemented yet"),
            Mutant("unscaled", sdpa_unscaled, r"not divided by sqrt\(d_k\)"),
            Mutant("divided_by_d_k", sdpa_divided_by_d_k, r"divided by d_k instead of sqrt\(d_k\)"),
            Mutant("softmax_over_queries", sdpa_softmax_over_queries,
                   r"do not sum to 1 over the keys(.|\n)*sum to 1 over the queries instead"),
            Mutant("inverted_mask", sdpa_inverted_mask, r"your weights match an inverted mask"),
            Mutant("inverted_mask_finite", sdpa_inverted_mask_finite,
                   r"your weights match an inverted mask"),
            Mutant("mask_after_softmax", sdpa_mask_after_softmax,
                   r"do not sum to 1 over the keys(.|\n)*zeroed masked weights after the softmax"),
            Mutant("mask_ignored", sdpa_mask_ignored,
                   r"keys where the mask is False got weight up to .*must get exactly 0"
                   r"\.\nHint: fill the scores of masked keys with float\('-inf'\) before the softmax"),
            Mutant("key_not_transposed", sdpa_key_not_transposed,
                   r"raised RuntimeError: Expected size for first two dimensions of batch2 tensor"
                   r"(.|\n)*Hint: query @ key needs the key's last two axes swapped"),
            Mutant("returns_weights_first", sdpa_returns_weights_first,
                   r"the attention-weight tensor has shape \(2, 3, 4, 5\), expected \(2, 3, 4, 6\)"
                   r"(.|\n)*check the order of return values"),
            Mutant("weights_detached", sdpa_weights_detached,
                   r"the gradient of the output with respect to query is missing"),
            Mutant("numpy_softmax", sdpa_numpy_softmax,
                   r"the gradient of the output with respect to query is missing"),
            Mutant("float32_softmax", sdpa_float32_softmax,
                   r"in torch\.float64 has dtype torch\.float32, expected torch\.float64"),
            Mutant("wraps_the_reference", sdpa_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own scaled_dot_product_attention"),
            Mutant("zeroes_masked_weights_in_place", sdpa_zeroes_masked_weights_in_place,
                   r"backward\(\) through scaled_dot_product_attention with a \(\.\.\., Lq, Lk\) mask raised "
                   r"RuntimeError(.|\n)*Hint: an in-place operation"),
        ],
        correct=[sdpa_einsum_finfo_min, sdpa_where_matmul, sdpa_fused_output],
    ),
}

BUG = Bug("sdpa_solution", "torch.softmax(scores, dim=-1)", "torch.softmax(scores, dim=-2)")


# --------------------------------------------------------------------------------------
# Code that works on the CPU only: rejected on a GPU, and under checks' fake_accelerator()
# --------------------------------------------------------------------------------------


def sdpa_fill_tensor_on_the_cpu(query, key, value, mask=None):
    """Masks with a -inf tensor created without device=: fine on the CPU, an error on a GPU."""
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.size(-1))
    if mask is not None:
        scores = torch.where(mask, scores, torch.full(scores.shape, float("-inf"), dtype=scores.dtype))
    weights = torch.softmax(scores, dim=-1)
    return weights @ value, weights


DEVICE_MUTANTS: dict[str, list[Mutant]] = {
    "check_scaled_dot_product_attention": [
        Mutant("fill_tensor_on_the_cpu", sdpa_fill_tensor_on_the_cpu,
               r"raised RuntimeError(.|\n)*Hint: a tensor your code created is on another device than the inputs"),
    ],
}
