"""Autograders for chapter 02_multi_head_attention: head split/merge and ``MultiHeadAttention``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from course_utils import reference
from course_utils.checks.attention import BACKWARD_HINTS, random_mask
from course_utils.checks.harness import (
    Check,
    count_words,
    device_names,
    devices,
    expect_callable,
    expect_close,
    expect_linear,
    expect_module_class,
    expect_tensor,
    fail,
    leaf_copies,
    seeded,
    steady,
    traced,
)


def check_split_heads(split_heads: Callable[[Tensor, int], Tensor], seed: int = 0,
                      batch: int = 2, length: int = 5, num_heads: int = 4, d_k: int = 3) -> None:
    """Check ``split_heads(x, num_heads)``: ``(B, L, H*d_k) -> (B, H, L, d_k)``, head h = features h*d_k:(h+1)*d_k."""
    fn = expect_callable(split_heads, "split_heads")
    check = Check("split_heads")
    check.refuse_answer_key(fn)
    d_model = num_heads * d_k
    for device in devices():
        with seeded(seed):
            x = torch.randn(batch, length, d_model).to(device)
        got = check.call(fn, x, num_heads, what=f"split_heads(x, num_heads={num_heads})")
        expect_close(
            got, reference.split_heads(x, num_heads), f"split_heads(x, {num_heads}) on {device.type}",
            shape_hint=f"x is (B, L, d_model) = {tuple(x.shape)}; the result should be "
                       f"(B, H, L, d_k) = {(batch, num_heads, length, d_k)}.",
            mistakes={
                "you reshaped straight to (B, H, L, d_k), which mixes positions into heads. "
                "Reshape to (B, L, H, d_k) first, then swap axes 1 and 2 with .transpose(1, 2).":
                    lambda: x.reshape(batch, num_heads, length, d_k),
                "the features of each head are interleaved: head h must hold the contiguous "
                "slice h*d_k:(h+1)*d_k, so reshape to (B, L, H, d_k), not (B, L, d_k, H).":
                    lambda: x.reshape(batch, length, d_k, num_heads).permute(0, 3, 1, 2),
            },
        )
    check.passed(f"shapes and values on {device_names()}")


def check_combine_heads(combine_heads: Callable[[Tensor], Tensor], seed: int = 0,
                        batch: int = 2, length: int = 5, num_heads: int = 4, d_k: int = 3) -> None:
    """Check ``combine_heads(x)``: ``(B, H, L, d_k) -> (B, L, H*d_k)``, the inverse of split_heads."""
    fn = expect_callable(combine_heads, "combine_heads")
    check = Check("combine_heads")
    check.refuse_answer_key(fn)
    for device in devices():
        with seeded(seed):
            x = torch.randn(batch, num_heads, length, d_k).to(device)
        got = check.call(fn, x, what="combine_heads(x)",
                         on_error={"view size is not compatible": "after transpose the tensor is not "
                                   "contiguous in memory: use .reshape(...) (or .contiguous().view(...))."})
        expect_close(
            got, reference.combine_heads(x), f"combine_heads(x) on {device.type}",
            shape_hint=f"x is (B, H, L, d_k) = {tuple(x.shape)}; the result should be "
                       f"(B, L, H*d_k) = {(batch, length, num_heads * d_k)}.",
            mistakes={
                "you reshaped (B, H, L, d_k) straight to (B, L, H*d_k) without moving the head "
                "axis back first: .transpose(1, 2) before the reshape.":
                    lambda: x.reshape(batch, length, num_heads * d_k),
            },
        )
        # The inverse property, stated on its own: it is what forward relies on.
        y = torch.randn(batch, length, num_heads * d_k, device=device)
        back = check.call(fn, reference.split_heads(y, num_heads), what="combine_heads(split_heads(y))")
        expect_close(back, y, f"combine_heads(split_heads(y)) on {device.type} (it should give y back)")
    check.passed(f"shapes, values, inverse of split_heads on {device_names()}")


def copy_mha_into_builtin(mha: nn.Module, builtin: nn.MultiheadAttention) -> nn.MultiheadAttention:
    """Copy a course-style MHA (``W_q, W_k, W_v, W_o``) into PyTorch's ``nn.MultiheadAttention``.

    The built-in stores the three input projections stacked in ``in_proj_weight``
    ``(3*d_model, d_model)`` and the output projection in ``out_proj``.
    """
    with torch.no_grad():
        builtin.in_proj_weight.copy_(torch.cat([mha.W_q.weight, mha.W_k.weight, mha.W_v.weight]))
        builtin.in_proj_bias.copy_(torch.cat([mha.W_q.bias, mha.W_k.bias, mha.W_v.bias]))
        builtin.out_proj.weight.copy_(mha.W_o.weight)
        builtin.out_proj.bias.copy_(mha.W_o.bias)
    return builtin


def _builtin_twin(mha: nn.Module, d_model: int, num_heads: int) -> nn.MultiheadAttention:
    """PyTorch's nn.MultiheadAttention holding the same weights as a student's module."""
    twin = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
    twin.to(device=mha.W_q.weight.device, dtype=mha.W_q.weight.dtype)
    return copy_mha_into_builtin(mha, twin).eval()


def to_builtin_mask(mask: Tensor | None, batch: int, num_heads: int, lq: int, lk: int) -> Tensor | None:
    """Our mask (True = may attend, broadcastable to (B, H, Lq, Lk)) in the form PyTorch's
    attention modules take: ``(B*H, Lq, Lk)`` with True = may NOT attend."""
    if mask is None:
        return None
    return ~mask.expand(batch, num_heads, lq, lk).reshape(batch * num_heads, lq, lk)


def _mask_cases(batch: int, lq: int, lk: int, device: torch.device) -> list[tuple[str, bool, Tensor | None]]:
    """(label, self-attention?, mask) for every mask layout the contract allows: no mask, padding
    ``(B, 1, 1, Lk)``, full ``(B, 1, Lq, Lk)``, causal ``(Lq, Lk)`` and ``(1, 1, Lq, Lk)``, and for
    self-attention a causal ``(1, 1, L, L)`` and a padding-and-causal ``(B, 1, L, L)``."""
    pad = random_mask((batch, 1, 1, lk), device)
    causal_cross = torch.ones(lq, lk, dtype=torch.bool, device=device).tril()  # row i sees keys 0..i
    causal_self = torch.ones(lq, lq, dtype=torch.bool, device=device).tril()
    self_pad = random_mask((batch, 1, 1, lq), device)
    return [
        ("cross-attention (Lq != Lk, key and value differ)", False, None),
        ("cross-attention with a padding mask (B, 1, 1, Lk)", False, pad),
        ("cross-attention with a mask (B, 1, Lq, Lk)", False, random_mask((batch, 1, lq, lk), device)),
        ("cross-attention with a 2-D causal mask (Lq, Lk)", False, causal_cross),
        ("cross-attention with a causal mask (1, 1, Lq, Lk)", False, causal_cross[None, None]),
        ("self-attention with a causal mask (1, 1, L, L)", True, causal_self[None, None]),
        ("self-attention with a padding and causal mask (B, 1, L, L)", True, self_pad & causal_self),
    ]


@steady
def check_multi_head_attention(MultiHeadAttention: type[nn.Module], seed: int = 0,
                               batch: int = 2, lq: int = 5, lk: int = 7, d_model: int = 16,
                               num_heads: int = 4) -> None:
    """Check a ``MultiHeadAttention`` class against ``nn.MultiheadAttention`` with copied weights.

    Cross-attention (Lq != Lk, distinct key and value tensors), self-attention, masks of every
    layout that broadcasts to ``(B, H, Lq, Lk)`` (padding ``(B, 1, 1, Lk)``, full ``(B, 1, Lq, Lk)``,
    causal ``(Lq, Lk)`` and ``(1, 1, Lq, Lk)``), ``attention_weights``, gradients of the inputs and
    of ``W_q`` with and without a mask, float64, every available device; and in training mode,
    dropout on the attention weights, drawn as the check draws it (:class:`DropoutTrace`).
    """
    cls = expect_module_class(MultiHeadAttention, "MultiHeadAttention")
    check = Check("MultiHeadAttention")
    check.refuse_answer_key(cls)
    with seeded(seed):
        mha = check.call(cls, d_model, num_heads, what=f"MultiHeadAttention({d_model}, {num_heads})")
        mha_drop = check.call(cls, d_model, num_heads, dropout=0.1,
                              what=f"MultiHeadAttention({d_model}, {num_heads}, dropout=0.1)")
    for attribute in ("W_q", "W_k", "W_v", "W_o"):
        expect_linear(mha, "MultiHeadAttention", attribute, d_model, d_model)
    n_params = sum(p.numel() for p in mha.parameters())
    if n_params != 4 * (d_model * d_model + d_model):
        fail(f"MultiHeadAttention({d_model}, {num_heads}) has {n_params} parameters, expected "
             f"4 * (d_model^2 + d_model) = {4 * (d_model * d_model + d_model)} (W_q, W_k, W_v, W_o "
             f"only). The heads share these four layers: do not create one layer per head.")
    mha.eval()
    for device in devices():
        for dtype in (torch.float32, torch.float64):
            mha.to(device=device, dtype=dtype)
            twin = _builtin_twin(mha, d_model, num_heads)
            where = f" on {device.type} in {dtype}"
            with seeded(seed + 1):
                q = torch.randn(batch, lq, d_model, dtype=dtype).to(device)
                kv = torch.randn(batch, lk, d_model, dtype=dtype).to(device)
                v = torch.randn(batch, lk, d_model, dtype=dtype).to(device)
                masks = _mask_cases(batch, lq, lk, device)
            for label, is_self, mask in masks:
                query, key, value = (q, q, q) if is_self else (q, kv, v)
                args = (query, key, value) if mask is None else (query, key, value, mask)
                what = f"MultiHeadAttention.forward, {label}{where}"
                got = check.call(mha, *args, what=what, on_error=_FORWARD_ERRORS)
                with torch.no_grad():
                    want, want_w = twin(query, key, value, attn_mask=to_builtin_mask(
                        mask, batch, num_heads, query.size(1), key.size(1)), average_attn_weights=False)
                expect_close(got, want, f"the output of {what}", mistakes=_mha_mistakes(
                    mha, query, key, value, mask, num_heads),
                    shape_hint="forward returns (B, Lq, d_model): one vector per query position.",
                    hint="compare step by step: project with W_q/W_k/W_v, split_heads, attention, "
                         "combine_heads, then W_o." + ("" if mask is None else _MASK_HINT))
                weights = getattr(mha, "attention_weights", None)
                if weights is None:
                    fail("after forward, self.attention_weights should hold the attention weights "
                         "(B, H, Lq, Lk); it is missing or None. Store them in forward.")
                expect_tensor(weights, "self.attention_weights",
                              (batch, num_heads, query.size(1), key.size(1)),
                              hint="keep the weights per head: (B, H, Lq, Lk).")
                expect_close(weights.to(want_w.dtype), want_w, f"self.attention_weights after {what}")
    # Gradients reach the inputs and the projections, with and without a mask (an in-place
    # operation on the weights breaks backward only when a mask is given).
    mha.to(device="cpu", dtype=torch.float32)
    twin = _builtin_twin(mha, d_model, num_heads)
    with seeded(seed + 2):
        q, kv, v = torch.randn(batch, lq, d_model), torch.randn(batch, lk, d_model), torch.randn(batch, lk, d_model)
        upstream = torch.randn(batch, lq, d_model)
        masks = _mask_cases(batch, lq, lk, torch.device("cpu"))
    for label, _, mask in (masks[0], masks[1], masks[3]):
        mha.zero_grad()
        twin.zero_grad()
        q_s, k_s, v_s = leaf_copies(q, kv, v)
        q_t, k_t, v_t = leaf_copies(q, kv, v)
        what = f"MultiHeadAttention.forward for gradients, {label}"
        got = check.call(mha, *((q_s, k_s, v_s) if mask is None else (q_s, k_s, v_s, mask)), what=what,
                         on_error=_FORWARD_ERRORS)
        if not got.requires_grad:
            fail("the output of MultiHeadAttention.forward carries no gradient: something leaves the "
                 "autograd graph (.detach(), .item(), .numpy(), torch.no_grad()).")
        check.call(lambda: (got * upstream).sum().backward(), what=f"backward() through {what}",
                   on_error=BACKWARD_HINTS)
        (twin(q_t, k_t, v_t, need_weights=False, attn_mask=to_builtin_mask(mask, batch, num_heads, lq, lk))[0]
         * upstream).sum().backward()
        for name, a, b in (("query", q_s, q_t), ("key", k_s, k_t), ("value", v_s, v_t)):
            expect_close(a.grad, b.grad, f"the gradient with respect to {name}, {label}")
        if mha.W_q.weight.grad is None:
            fail("W_q.weight got no gradient: is self.W_q used in forward?")
        expect_close(mha.W_q.weight.grad, twin.in_proj_weight.grad[:d_model], f"the gradient of W_q.weight, {label}")
    _expect_attention_dropout(check, mha_drop, seed, batch, lq, lk, d_model, num_heads)
    check.passed(f"matches nn.MultiheadAttention (cross- and self-attention, padding, full and causal masks "
                 f"of every layout, weights, gradients with and without a mask, float32/float64); dropout on "
                 f"the weights in training only; on {device_names()}")


_FORWARD_ERRORS = {
    "view size is not compatible": "after transpose the tensor is not contiguous: use .reshape(...) instead of "
                                   ".view(...).",
    "shape '[": "a mask may come in any shape that broadcasts to (B, H, Lq, Lk): (Lq, Lk), (B, 1, 1, Lk), "
                "(B, 1, Lq, Lk), (1, 1, Lq, Lk). Use it as it is (masked_fill broadcasts it), without "
                "reshaping it to one layout.",
    "must match the size": "a mask may come in any shape that broadcasts to (B, H, Lq, Lk): use it as it is "
                           "(masked_fill broadcasts it) rather than reshaping or indexing it.",
}


_MASK_HINT = (" With a mask: fill the scores where the mask is False with float('-inf') before the softmax; "
              "the mask may be (Lq, Lk), (B, 1, 1, Lk), (B, 1, Lq, Lk) or (1, 1, Lq, Lk).")


def _attend(mha: nn.Module, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None,
            num_heads: int, drop: Callable[[Tensor], Tensor] | None = None, at: str = "weights") -> Tensor:
    """The right forward with the student's weights, with ``drop`` applied ``at`` ``"weights"`` (the
    paper's place), ``"twice"`` (on the weights, twice), ``"context"`` (before W_o) or ``"output"``."""
    split, combine = reference.split_heads, reference.combine_heads
    q, k, v = split(mha.W_q(query), num_heads), split(mha.W_k(key), num_heads), split(mha.W_v(value), num_heads)
    weights = reference.scaled_dot_product_attention(q, k, v, mask)[1]
    if drop is not None and at in ("weights", "twice"):
        weights = drop(drop(weights)) if at == "twice" else drop(weights)
    context = combine(weights @ v)
    if drop is not None and at == "context":
        context = drop(context)
    out = mha.W_o(context)
    return drop(out) if drop is not None and at == "output" else out


def _expect_attention_dropout(check: Check, mha: nn.Module, seed: int, batch: int, lq: int, lk: int,
                              d_model: int, num_heads: int) -> None:
    """In training, dropout(p) on the attention weights (B, H, Lq, Lk), once; in eval mode, none."""
    p = 0.1
    mha.to(device="cpu", dtype=torch.float64)
    with seeded(seed + 3):
        q, kv, v = (torch.randn(batch, n, d_model, dtype=torch.float64) for n in (lq, lk, lk))
        mask = random_mask((batch, 1, 1, lk))
    built = f"MultiHeadAttention({d_model}, {num_heads}, dropout={p})"
    weights_shape = (batch, num_heads, lq, lk)
    mha.eval()
    got, trace = traced(seed, lambda t: check.call(mha, q, kv, v, mask, what=f"{built} in eval mode"))
    if any(training and prob > 0 for _, prob, training in trace.calls):
        fail(f"{built} applies dropout in eval mode: F.dropout(x, p) defaults to training=True. Use the module "
             f"self.dropout = nn.Dropout(dropout), which .eval() switches off, or pass "
             f"training=self.training.")
    with torch.no_grad():
        expect_close(got, _attend(mha, q, kv, v, mask, num_heads), f"the output of {built} in eval mode")
    mha.train()
    try:
        got, trace = traced(seed, lambda t: check.call(mha, q, kv, v, mask, what=f"{built} in training mode"))
    finally:
        mha.eval()
    shapes = trace.training_calls()

    def variant(at: str | None) -> Callable[[], Tensor]:
        def run() -> Tensor:
            with torch.no_grad():
                return traced(seed, lambda t: _attend(mha, q, kv, v, mask, num_heads, None if at is None else
                                                      (lambda x: t.drop(x, p)), at))[0]
        return run

    if not shapes:
        fail(f"{built} never applies dropout in training mode: apply self.dropout to the attention weights "
             f"(B, H, Lq, Lk) before multiplying them by the values, context = self.dropout(weights) @ v (the "
             f"paper's code and nn.MultiheadAttention do; .eval() switches it off).")
    expect_close(got, variant("weights")(), f"the output of {built} in training mode (with the check's dropout "
                 f"masks, drawn from one seed)", mistakes={
                     "dropout is applied to the output (after W_o) instead of the attention weights: "
                     "context = self.dropout(weights) @ v.": variant("output"),
                     "dropout is applied to the heads' context (before W_o) instead of the attention weights: "
                     "context = self.dropout(weights) @ v.": variant("context"),
                     "dropout is applied twice to the attention weights: once, "
                     "context = self.dropout(weights) @ v.": variant("twice"),
                 },
                 hint=f"in training, your forward applied dropout {count_words(len(shapes))}, to tensors of shape "
                      f"{', '.join(str(s) for s in shapes)}; expected once, to the attention weights "
                      f"{weights_shape}, with the module's p={p}: context = self.dropout(weights) @ v.")


def _mha_mistakes(mha: nn.Module, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None,
                  num_heads: int) -> dict[str, Callable[[], Tensor]]:
    """Outputs of common wrong forwards, computed from the student's own weights."""
    sdpa = reference.scaled_dot_product_attention
    split, combine = reference.split_heads, reference.combine_heads

    def naive_split(x: Tensor, heads: int) -> Tensor:
        return x.reshape(x.size(0), heads, x.size(1), -1)

    def naive_combine(x: Tensor) -> Tensor:
        return x.reshape(x.size(0), x.size(2), -1)

    def run(q_in: Tensor, k_in: Tensor, v_in: Tensor, heads: int = num_heads, out: bool = True,
            m: Tensor | None = mask, naive: bool = False) -> Tensor:
        sp, co = (naive_split, naive_combine) if naive else (split, combine)
        with torch.no_grad():
            q, k, v = sp(mha.W_q(q_in), heads), sp(mha.W_k(k_in), heads), sp(mha.W_v(v_in), heads)
            context = co(sdpa(q, k, v, m)[0])
            return mha.W_o(context) if out else context

    mistakes: dict[str, Callable[[], Tensor]] = {
        "W_o is never applied: the heads are concatenated but not projected back "
        "(section 3.2.2: Concat(head_1, ..., head_h) W^O).": lambda: run(query, key, value, out=False),
        "this is single-head attention: split the projections into num_heads heads "
        "before attending.": lambda: run(query, key, value, heads=1),
        "the heads were split (and merged) with a plain reshape, without transposing the "
        "head and position axes: view as (B, L, H, d_k), then .transpose(1, 2).":
            lambda: run(query, key, value, naive=True),
        "key and value are swapped: attend with keys from `key` and average rows of `value`.":
            lambda: run(query, value, key),
    }
    if mask is not None:
        mistakes["the mask is ignored: pass it on to the attention."] = lambda: run(query, key, value, m=None)
        mistakes["the mask is inverted: True means 'may attend'."] = lambda: run(query, key, value, m=~mask)
    if query.size(1) == key.size(1):
        mistakes["the keys were projected from the query (self-attention) instead of `key`."] = \
            lambda: run(query, query, value)
    return mistakes
