"""Autograders for chapter 05_encoder: ``EncoderLayer``, ``Encoder`` and ``encoder_parameter_count``.

``EncoderLayer`` is compared with ``nn.TransformerEncoderLayer(batch_first=True,
norm_first=False, activation="relu")`` holding the student's weights (copied with
:func:`copy_encoder_layer_into_builtin`), and ``Encoder`` with the scaled embedding plus the
sinusoidal table followed by such built-in layers, applied one by one in a loop (never
through ``nn.TransformerEncoder``, whose nested-tensor fast path warns). Around that
comparison come the properties of an encoder: padded positions do not influence the real
ones, the layers are distinct modules, dropout acts in training only.

Dropout cannot be seen in eval mode, and in training it is random. So the dropout tests run
the module in training mode under a :class:`~course_utils.checks.harness.DropoutTrace`: every
dropout, however written (``self.dropout``, ``F.dropout``), draws its mask from one seed, and
the dropouts inside the sublayers are switched off. The output must then equal the check's own
computation with dropout where the paper puts it (``norm(x + dropout(sublayer(x)))``), drawn
from the same seed; a misplaced dropout (``norm(dropout(x + sublayer(x)))``, on the inputs,
twice, missing) gives other values, and is named when it matches a known placement.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils.checks.harness import (
    Check,
    compare_gradients,
    describe,
    device_names,
    devices_and_dtypes,
    expect_callable,
    expect_close,
    expect_linear,
    expect_module_class,
    fail,
    is_close,
    leaf_copies,
    removing_hooks,
    seeded,
    steady,
)
from course_utils.checks.modules import (
    apply_sublayers,
    builtin_feed_forward,
    builtin_stack,
    builtin_twin,
    copy_feed_forward_and_norms,
    embed,
    expect_attention,
    expect_attribute,
    expect_default_depth,
    expect_dropout_in_training,
    expect_deterministic,
    expect_layer_dropout,
    expect_layer_norm,
    expect_stack_input,
    own_layers_output,
    randomize_norms,
    right_padding_mask,
    sinusoidal_positions,
    to_key_padding_mask,
)
from course_utils.checks.multi_head_attention import copy_mha_into_builtin
from course_utils.reference.encoder import Encoder as _ReferenceEncoder
from course_utils.reference.encoder import EncoderLayer as _ReferenceEncoderLayer

_ERROR_HINTS = {
    "unexpected keyword argument": "keep the signatures: EncoderLayer(d_model, num_heads, d_ff, dropout=0.1) "
                                   "with forward(x, mask=None), and Encoder(vocab_size, d_model, num_layers=6, "
                                   "num_heads=8, d_ff=2048, dropout=0.1, max_seq_length=5000) with "
                                   "forward(src, src_mask=None).",
    "positional argument": "keep the signatures: EncoderLayer.forward(x, mask=None) and "
                           "Encoder.forward(src, src_mask=None); self-attention is called as "
                           "self.self_attn(x, x, x, mask).",
    "must match the size": "check the shapes step by step: every sublayer maps (B, L, d_model) to "
                           "(B, L, d_model), so that it can be added to its input.",
}

# --------------------------------------------------------------------------------------
# Weight copying, shared with later chapters
# --------------------------------------------------------------------------------------


def copy_encoder_layer_into_builtin(layer: nn.Module,
                                    builtin: nn.TransformerEncoderLayer) -> nn.TransformerEncoderLayer:
    """Copy a course-style ``EncoderLayer`` into PyTorch's ``nn.TransformerEncoderLayer``.

    ``self_attn -> self_attn`` (``W_q, W_k, W_v`` stacked into ``in_proj``, ``W_o -> out_proj``),
    ``feed_forward.linear1/2 -> linear1/2`` and ``norm1/2 -> norm1/2``.
    """
    copy_mha_into_builtin(layer.self_attn, builtin.self_attn)
    copy_feed_forward_and_norms(layer, builtin, ("norm1", "norm2"))
    return builtin


def _builtin_twin(layer: nn.Module, d_model: int, num_heads: int, d_ff: int) -> nn.TransformerEncoderLayer:
    """``nn.TransformerEncoderLayer`` on the layer's device and dtype, holding its weights, in eval mode."""
    return builtin_twin(nn.TransformerEncoderLayer, copy_encoder_layer_into_builtin, layer, d_model, num_heads,
                        d_ff)


def _builtin_self_attention(twin: nn.TransformerEncoderLayer, h: Tensor, padding: Tensor | None) -> Tensor:
    """The built-in layer's self-attention, without dropout."""
    return twin.self_attn(h, h, h, key_padding_mask=padding, need_weights=False)[0]


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _padding_mask(batch: int, length: int, device: torch.device, seed: int) -> Tensor:
    """``(B, 1, 1, L)`` right padding, True at real tokens: the first sequence is padded by
    ``max(1, L // 3)`` positions, the others at random, and every sequence keeps >= 1 real token."""
    return right_padding_mask(batch, length, device, torch.Generator().manual_seed(seed), max(1, length // 3))


# --------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------


def _expect_layer_structure(layer: nn.Module, owner: str, d_model: int, num_heads: int, d_ff: int,
                            dropout: float) -> None:
    """self_attn, feed_forward, norm1, norm2 and dropout, with the right sizes."""
    attention = expect_attention(layer, owner, "self_attn", d_model, "nn.TransformerEncoderLayer")
    heads = getattr(attention, "num_heads", None)
    if isinstance(heads, int) and heads != num_heads:
        fail(f"{owner}.self_attn has num_heads={heads}, but the layer was built with num_heads={num_heads}: "
             f"create self.self_attn = MultiHeadAttention(d_model, num_heads, dropout).")
    ffn = expect_attribute(layer, owner, "feed_forward", "FeedForwardNetwork(d_model, d_ff, dropout)")
    if not isinstance(ffn, nn.Module):
        fail(f"{owner}.feed_forward should be a FeedForwardNetwork module, but it is {describe(ffn)}.")
    expect_linear(ffn, f"{owner}.feed_forward", "linear1", d_model, d_ff)
    expect_linear(ffn, f"{owner}.feed_forward", "linear2", d_ff, d_model)
    norms = []
    for name in ("norm1", "norm2"):
        norm = expect_layer_norm(layer, owner, name, d_model)
        if norm.weight is None or norm.bias is None:
            fail(f"{owner}.{name} has no learnable scale and shift: keep nn.LayerNorm's defaults "
                 f"(elementwise_affine=True, bias=True).")
        norms.append(norm)
    if norms[0] is norms[1]:
        fail(f"{owner}.norm1 and {owner}.norm2 are the same LayerNorm object: each sublayer has its own "
             f"LayerNorm, with its own scale and shift. Create two: self.norm1 = nn.LayerNorm(d_model) and "
             f"self.norm2 = nn.LayerNorm(d_model).")
    expect_layer_dropout(layer, owner, dropout)


# --------------------------------------------------------------------------------------
# Known wrong layers, computed from the student's weights (through the built-in twin)
# --------------------------------------------------------------------------------------


def _layer_variant(twin: nn.TransformerEncoderLayer, x: Tensor, key_padding: Tensor | None, *,
                   pre_norm: bool = False, norm_inside: bool = False, residual: tuple[bool, bool] = (True, True),
                   norms: tuple[int, int] = (0, 1), order: tuple[str, ...] = ("sa", "ff"),
                   masked: bool = True, first_sentence: bool = False) -> Tensor:
    """The layer computed in a wrong (or, with the defaults, the right) way, without dropout."""
    norm_modules = (twin.norm1, twin.norm2)

    def sa(h: Tensor) -> Tensor:
        out = _builtin_self_attention(twin, h, key_padding if masked else None)
        return out[0] if first_sentence else out  # (L, d_model) broadcasts over the batch

    blocks = {"sa": sa, "ff": lambda h: builtin_feed_forward(twin, h)}
    steps = [(blocks[name], norm_modules[norm_index], keep) for name, norm_index, keep in zip(order, norms, residual)]
    with torch.no_grad():
        return apply_sublayers(x, steps, pre_norm=pre_norm, norm_inside=norm_inside)


def _layer_mistakes(twin: nn.TransformerEncoderLayer, x: Tensor,
                    key_padding: Tensor | None) -> dict[str, Callable[[], Tensor]]:
    def v(**kwargs: Any) -> Callable[[], Tensor]:
        return lambda: _layer_variant(twin, x, key_padding, **kwargs)

    mistakes: dict[str, Callable[[], Tensor]] = {
        "this is pre-norm (x + Sublayer(LayerNorm(x))), as in many tutorials. The paper, and this course, "
        "use post-norm: x = norm(x + dropout(sublayer(x))) after each sublayer (section 3.1).": v(pre_norm=True),
        "the LayerNorm is applied to the sublayer's output before the residual add (x + norm(sublayer(x))); "
        "post-norm normalises the sum: norm(x + dropout(sublayer(x))).": v(norm_inside=True),
        "the residual connections are missing: each sublayer's input is added to its output before the "
        "LayerNorm, norm(x + dropout(sublayer(x))), not norm(dropout(sublayer(x))).":
            v(residual=(False, False)),
        "the residual connection around self-attention is missing: norm1(x + dropout(self_attn(x, x, x, mask))).":
            v(residual=(False, True)),
        "the residual connection around the feed-forward sublayer is missing: "
        "norm2(x + dropout(feed_forward(x))).": v(residual=(True, False)),
        "norm1 and norm2 are swapped: norm1 follows self-attention, norm2 the feed-forward network.":
            v(norms=(1, 0)),
        "norm1 is used after both sublayers: the feed-forward sublayer has its own LayerNorm, norm2.":
            v(norms=(0, 0)),
        "norm2 is used after both sublayers: the self-attention sublayer has its own LayerNorm, norm1.":
            v(norms=(1, 1)),
        "the two sublayers are in the wrong order: self-attention comes first, then the feed-forward network.":
            v(order=("ff", "sa")),
        "the feed-forward sublayer is missing: after norm1(x + dropout(self_attn(...))) comes "
        "norm2(x + dropout(feed_forward(x))).":
            v(order=("sa",)),
        "the self-attention sublayer is missing: norm1(x + dropout(self_attn(x, x, x, mask))) comes first.":
            v(order=("ff",), norms=(1, 0)),
        "self_attn(...)[0] keeps the first sentence's output only (it then broadcasts over the batch): "
        "chapter 2's MultiHeadAttention returns one tensor (B, L, d_model), not a tuple like PyTorch's "
        "nn.MultiheadAttention.": v(first_sentence=True),
    }
    if key_padding is not None:
        mistakes["the mask is not passed to self-attention, so padded positions are attended to: "
                 "self.self_attn(x, x, x, mask)."] = v(masked=False)
    return mistakes


# --------------------------------------------------------------------------------------
# EncoderLayer
# --------------------------------------------------------------------------------------


def _validate(length: int, d_model: int, num_heads: int) -> None:
    if length < 3:
        raise ValueError("the encoder checks need length >= 3 (a padded and a real position)")
    if d_model % num_heads:
        raise ValueError("num_heads must divide d_model")


@steady
def check_encoder_layer(EncoderLayer: type[nn.Module], seed: int = 0, batch: int = 2, length: int = 6,
                        d_model: int = 16, num_heads: int = 4, d_ff: int = 32) -> None:
    """Check an ``EncoderLayer`` class against ``nn.TransformerEncoderLayer`` with copied weights.

    Structure, determinism in eval mode, equality with the built-in (post-norm) without a mask
    and with a padding mask, in float32 and float64, on every available device; outputs at real
    positions do not depend on the padded ones; dropout on each sublayer's output, before the
    residual add, in training only; gradients.
    """
    _validate(length, d_model, num_heads)
    cls = expect_module_class(EncoderLayer, "EncoderLayer")
    check = Check("EncoderLayer")
    check.refuse_answer_key(cls)
    with seeded(seed):
        layer = check.call(cls, d_model, num_heads, d_ff, dropout=0.1,
                           what=f"EncoderLayer({d_model}, {num_heads}, {d_ff}, dropout=0.1)", on_error=_ERROR_HINTS)
    if not isinstance(layer, nn.Module):
        fail(f"EncoderLayer(...) should build an nn.Module, but it gave {describe(layer)}.")
    _expect_layer_structure(layer, "EncoderLayer", d_model, num_heads, d_ff, 0.1)
    randomize_norms([layer], seed + 1)
    layer.eval()
    what = "EncoderLayer.forward(x, mask)"
    hint = ("compare step by step: x = norm1(x + dropout(self_attn(x, x, x, mask))), then "
            "norm2(x + dropout(feed_forward(x))).")
    shape_hint = "the layer returns (B, L, d_model), like its input x."

    for device, dtype, where in devices_and_dtypes(layer):
        twin = _builtin_twin(layer, d_model, num_heads, d_ff)
        with seeded(seed + 2):
            x = torch.randn(batch, length, d_model, dtype=dtype).to(device)
        mask = _padding_mask(batch, length, device, seed + 3)
        with torch.no_grad():
            if device.type == "cpu" and dtype == torch.float32:
                expect_deterministic(lambda: check.call(layer, x, mask, what=f"{what}{where}",
                                                        on_error=_ERROR_HINTS), f"{what}{where}")
            for label, m in (("no mask", None), ("a padding mask (B, 1, 1, L)", mask)):
                case = f"{what} with {label}{where}"
                got = check.call(layer, *((x,) if m is None else (x, m)), what=case, on_error=_ERROR_HINTS)
                want = twin(x, src_key_padding_mask=to_key_padding_mask(m))
                expect_close(got, want, f"the output of {case}",
                             mistakes=_layer_mistakes(twin, x, to_key_padding_mask(m)),
                             shape_hint=shape_hint, hint=hint)
            if device.type == "cpu" and dtype == torch.float32:
                _expect_padding_ignored_layer(check, layer, x, mask, f"{what}{where}")

    layer.to(device="cpu", dtype=torch.float32)
    _expect_layer_dropout(check, layer, d_model, num_heads, d_ff, batch, length, seed)

    # Gradients reach x, as through the built-in.
    layer.to(dtype=torch.float64)
    twin = _builtin_twin(layer, d_model, num_heads, d_ff)
    mask = _padding_mask(batch, length, torch.device("cpu"), seed + 3)
    with seeded(seed + 4):
        x = torch.randn(batch, length, d_model, dtype=torch.float64)
    (x_s,), (x_t,) = leaf_copies(x), leaf_copies(x)
    got = check.call(layer, x_s, mask, what=f"{what} for gradients", on_error=_ERROR_HINTS)
    want = twin(x_t, src_key_padding_mask=to_key_padding_mask(mask))
    compare_gradients(got, want, {"x": x_s}, {"x": x_t}, "EncoderLayer's output", seed + 5)
    check.passed(f"matches nn.TransformerEncoderLayer (post-norm; no mask and a padding mask; float32/float64; "
                 f"gradients); padding ignored; dropout in training only; on {device_names()}")


def _expect_padding_ignored_layer(check: Check, layer: nn.Module, x: Tensor, mask: Tensor, what: str) -> None:
    """Changing x at padded positions leaves the outputs at real positions unchanged."""
    real = mask[:, 0, 0, :]  # (B, L), True at real tokens
    base = check.call(layer, x, mask, what=what, on_error=_ERROR_HINTS)
    noisy = torch.where(real[..., None], x, x + 3 * torch.randn_like(x))
    changed = check.call(layer, noisy, mask, what=what, on_error=_ERROR_HINTS)
    diff = (changed - base).abs().amax(-1).masked_fill(~real, 0.0)  # (B, L), real positions only
    if not is_close(changed.masked_fill(~real[..., None], 0.0), base.masked_fill(~real[..., None], 0.0)):
        b, i = (int(j) for j in (diff == diff.max()).nonzero()[0])
        fail(f"{what}: changing x only at the padded positions (where the mask is False) changed the output "
             f"at the real position {i} of sequence {b} (by {diff[b, i].item():.3g}). Real positions must not "
             f"look at padding: pass the mask to self-attention, self.self_attn(x, x, x, mask).")


def _expect_layer_dropout(check: Check, layer: nn.Module, d_model: int, num_heads: int, d_ff: int,
                          batch: int, length: int, seed: int) -> None:
    """Dropout on each sublayer's output before the residual add, in training only."""
    twin = _builtin_twin(layer, d_model, num_heads, d_ff)
    with seeded(seed + 6):
        x = torch.randn(batch, length, d_model)
    mask = _padding_mask(batch, length, torch.device("cpu"), seed + 3)
    key_padding = to_key_padding_mask(mask)
    what = "EncoderLayer.forward(x, mask)"
    n1, n2 = twin.norm1, twin.norm2

    def sa(h: Tensor) -> Tensor:
        return _builtin_self_attention(twin, h, key_padding)

    def ff(h: Tensor) -> Tensor:
        return builtin_feed_forward(twin, h)

    def layer_with(drop_sa: Callable[[Tensor], Tensor], drop_ff: Callable[[Tensor], Tensor]) -> Tensor:
        h = n1(x + drop_sa(sa(x)))
        return n2(h + drop_ff(ff(h)))

    def keep(t: Tensor) -> Tensor:
        return t

    def after_sum(drop: Callable[[Tensor], Tensor]) -> Tensor:
        h = n1(drop(x + sa(x)))
        return n2(drop(h + ff(h)))

    def on_inputs(drop: Callable[[Tensor], Tensor]) -> Tensor:
        h = n1(x + sa(drop(x)))
        return n2(h + ff(drop(h)))

    def after_norm(drop: Callable[[Tensor], Tensor]) -> Tensor:
        h = drop(n1(x + sa(x)))
        return drop(n2(h + ff(h)))

    expect_dropout_in_training(
        layer, lambda: check.call(layer, x, mask, what=f"{what} in training mode", on_error=_ERROR_HINTS),
        owner="EncoderLayer", what=what, quiet=[layer.self_attn, layer.feed_forward], p=layer.dropout.p,
        seed=seed, right=lambda drop: layer_with(drop, drop), expected="once on the output of each sublayer, "
        "before its residual add: norm(x + self.dropout(sublayer(x))) (section 5.4)",
        mistakes={
            "dropout is applied after the residual sum, norm(dropout(x + sublayer(x))), a slip common in "
            "tutorials: it also drops the residual path. Dropout goes on the sublayer's output only, before the "
            "add: norm(x + self.dropout(sublayer(x))) (section 5.4).": after_sum,
            "self.dropout is never applied in training: each sublayer's output goes through self.dropout before "
            "the residual add, norm(x + self.dropout(sublayer(x))) (section 5.4).": lambda drop: layer_with(keep, keep),
            "dropout is applied after self-attention but not after the feed-forward network: "
            "norm2(x + self.dropout(feed_forward(x))).": lambda drop: layer_with(drop, keep),
            "dropout is applied after the feed-forward network but not after self-attention: "
            "norm1(x + self.dropout(self_attn(x, x, x, mask))).": lambda drop: layer_with(keep, drop),
            "dropout is applied to the sublayers' inputs instead of their outputs: "
            "norm(x + self.dropout(sublayer(x))).": on_inputs,
            "dropout is applied twice to each sublayer's output: once, norm(x + self.dropout(sublayer(x))).":
                lambda drop: layer_with(lambda t: drop(drop(t)), lambda t: drop(drop(t))),
            "dropout is applied after each LayerNorm (to the layer's output) instead of to each sublayer's "
            "output: norm(x + self.dropout(sublayer(x))).": after_norm,
        })


# --------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------


def _stack_variant(encoder: nn.Module, twins: list[nn.TransformerEncoderLayer], src: Tensor,
                   key_padding: Tensor | None, d_model: int, max_seq_length: int, *, chained: bool = True,
                   layers: list[int] | None = None, final_norm: bool = False, **embedding: Any) -> Tensor:
    """The stack computed with the built-in twins, in a wrong (or, with the defaults, the right) way."""
    chosen = twins if layers is None else [twins[i] for i in layers]
    x = builtin_stack(encoder, src, d_model, max_seq_length, chosen,
                      lambda twin, h: twin(h, src_key_padding_mask=key_padding), chained=chained, **embedding)
    return F.layer_norm(x, (d_model,)) if final_norm else x


def _encoder_mistakes(encoder: nn.Module, twins: list[nn.TransformerEncoderLayer], src: Tensor,
                      src_mask: Tensor | None, d_model: int, max_seq_length: int) -> dict[str, Callable[[], Any]]:
    key_padding = to_key_padding_mask(src_mask)

    def v(kp: Tensor | None = key_padding, **kwargs: Any) -> Callable[[], Tensor]:
        return lambda: _stack_variant(encoder, twins, src, kp, d_model, max_seq_length, **kwargs)

    n = len(twins)
    mistakes: dict[str, Callable[[], Any]] = {
        "your Encoder wires the stack right, but its layers differ from nn.TransformerEncoderLayer: fix "
        "EncoderLayer first (checks.check_encoder_layer says what is wrong), or build the stack from "
        "course_utils.reference.EncoderLayer meanwhile.":
            lambda: own_layers_output(encoder, src, d_model, max_seq_length, src_mask),
        "the embeddings are not multiplied by sqrt(d_model) (section 3.4): "
        "self.embedding(src) * math.sqrt(d_model), then the positional encoding.": v(scale=1.0),
        "the embeddings are divided by sqrt(d_model); section 3.4 multiplies them by sqrt(d_model).":
            v(scale=1 / math.sqrt(d_model)),
        "the embeddings are multiplied by d_model instead of its square root, sqrt(d_model).":
            v(scale=float(d_model)),
        "the embeddings are scaled after adding the positional encoding: scale first, "
        "embedding(src) * sqrt(d_model), then add the positions.": v(pe_first=True),
        "the positional encoding is not applied: self.positional_encoding(embedding * sqrt(d_model)); "
        "without it the encoder cannot tell the positions apart.": v(with_pe=False),
        "each layer is applied to the embeddings instead of the previous layer's output: "
        "x = layer(x, src_mask) in the loop.": v(chained=False),
        "there is a LayerNorm after the last layer (a habit of pre-norm models); in this post-norm model "
        "every layer already ends with a LayerNorm: return the last layer's output.": v(final_norm=True),
    }
    if n > 1:
        mistakes["only the first layer is applied: loop over all of self.layers."] = v(layers=[0])
        mistakes[f"the first layer is applied {n} times: use each layer of self.layers once, "
                 f"for layer in self.layers: x = layer(x, src_mask)."] = v(layers=[0] * n)
    if src_mask is not None:
        mistakes["src_mask is not passed down to the layers, so padded positions are attended to: "
                 "x = layer(x, src_mask)."] = v(kp=None)
    return mistakes


def _expect_stack_structure(encoder: nn.Module, vocab_size: int, d_model: int, num_layers: int, num_heads: int,
                            d_ff: int) -> nn.ModuleList:
    expect_stack_input(encoder, "Encoder", vocab_size, d_model)
    layers = expect_attribute(encoder, "Encoder", "layers",
                              "nn.ModuleList([EncoderLayer(...) for _ in range(num_layers)])")
    if isinstance(layers, (list, tuple)) and len({id(layer) for layer in layers}) < len(layers) > 1:
        fail("Encoder.layers is a Python list that holds the same layer object several times ([layer] * N). "
             "Two fixes: build a new EncoderLayer(...) for each position (otherwise all layers share one set of "
             "weights), and wrap the list in nn.ModuleList so that PyTorch sees the layers: "
             "nn.ModuleList([EncoderLayer(...) for _ in range(num_layers)]).")
    if isinstance(layers, (list, tuple)):
        fail("Encoder.layers is a Python list: PyTorch does not see the modules inside it (their parameters "
             "are not trained, .to(device) does not move them). Use "
             "nn.ModuleList([EncoderLayer(...) for _ in range(num_layers)]).")
    if not isinstance(layers, nn.ModuleList):
        fail(f"Encoder.layers should be an nn.ModuleList of EncoderLayer, but it is {describe(layers)}.")
    if len(layers) != num_layers:
        fail(f"Encoder.layers holds {len(layers)} layers, but the encoder was built with num_layers={num_layers}.")
    if num_layers > 1 and len({id(layer) for layer in layers}) < num_layers:
        fail("Encoder.layers holds the same layer object several times: [layer] * N (or "
             "nn.ModuleList([layer] * N)) repeats one layer, so all layers share one set of weights and the "
             "encoder is one layer applied N times. Build a new EncoderLayer(...) for each: "
             "nn.ModuleList([EncoderLayer(...) for _ in range(num_layers)]).")
    for i, layer in enumerate(layers):
        _expect_layer_structure(layer, f"Encoder.layers[{i}]", d_model, num_heads, d_ff, 0.1)
    pointers = [p.data_ptr() for layer in layers for p in layer.parameters()]
    if len(set(pointers)) < len(pointers):
        fail("the layers in Encoder.layers share parameters: each EncoderLayer must have its own weights; "
             "build each one with its own EncoderLayer(...) call (or copy.deepcopy).")
    return layers


@steady
def check_encoder(Encoder: type[nn.Module], seed: int = 0, batch: int = 2, length: int = 7, vocab_size: int = 11,
                  d_model: int = 16, num_layers: int = 2, num_heads: int = 4, d_ff: int = 32) -> None:
    """Check an ``Encoder`` class: scaled embedding + positional encoding + dropout, then the layers
    in a loop, against the same computation with ``nn.TransformerEncoderLayer`` copies of its layers.

    Structure (N distinct layers in an ``nn.ModuleList``, no shared weights), determinism in eval
    mode, equality with the built-in stack without a mask and with a padding mask, in float32 and
    float64, on every available device; outputs at real positions do not depend on the tokens at
    padded positions; dropout on the input of the first layer, in training only; gradients.
    """
    _validate(length, d_model, num_heads)
    max_seq_length = 64
    if length > max_seq_length:
        raise ValueError(f"length must be <= {max_seq_length}")
    cls = expect_module_class(Encoder, "Encoder")
    check = Check("Encoder")
    check.refuse_answer_key(cls)
    built = (f"Encoder({vocab_size}, {d_model}, num_layers={num_layers}, num_heads={num_heads}, d_ff={d_ff}, "
             f"dropout=0.1, max_seq_length={max_seq_length})")
    with seeded(seed):
        encoder = check.call(cls, vocab_size, d_model, num_layers=num_layers, num_heads=num_heads, d_ff=d_ff,
                             dropout=0.1, max_seq_length=max_seq_length, what=built, on_error=_ERROR_HINTS)
    if not isinstance(encoder, nn.Module):
        fail(f"{built} should build an nn.Module, but it gave {describe(encoder)}.")
    layers = _expect_stack_structure(encoder, vocab_size, d_model, num_layers, num_heads, d_ff)
    expect_default_depth(check, cls, "Encoder", vocab_size, seed, on_error=_ERROR_HINTS)
    randomize_norms(list(layers), seed + 1)  # only inside the layers: an extra final norm stays (1, 0)
    encoder.eval()
    what = "Encoder.forward(src, src_mask)"

    for device, dtype, where in devices_and_dtypes(encoder):
        twins = [_builtin_twin(layer, d_model, num_heads, d_ff) for layer in layers]
        with seeded(seed + 2):
            src = torch.randint(0, vocab_size, (batch, length)).to(device)
        mask = _padding_mask(batch, length, device, seed + 3)
        with torch.no_grad():
            if device.type == "cpu" and dtype == torch.float32:
                expect_deterministic(lambda: check.call(encoder, src, mask, what=f"{what}{where}",
                                                        on_error=_ERROR_HINTS), f"{what}{where}")
            for label, m in (("no mask", None), ("a padding mask (B, 1, 1, L)", mask)):
                case = f"{what} with {label}{where}"
                got = check.call(encoder, *((src,) if m is None else (src, m)), what=case,
                                 on_error=_ERROR_HINTS)
                want = _stack_variant(encoder, twins, src, to_key_padding_mask(m), d_model, max_seq_length)
                expect_close(got, want, f"the output of {case}",
                             mistakes=_encoder_mistakes(encoder, twins, src, m, d_model, max_seq_length),
                             shape_hint="the encoder returns (B, L, d_model): one vector per source token.",
                             hint="the encoder is dropout(positional_encoding(embedding(src) * sqrt(d_model))) "
                                  "followed by x = layer(x, src_mask) for each layer.")
            if device.type == "cpu" and dtype == torch.float32:
                _expect_padding_ignored_stack(check, encoder, src, mask, vocab_size, f"{what}{where}")

    encoder.to(device="cpu", dtype=torch.float32)
    _expect_stack_dropout(check, encoder, layers, d_model, num_heads, d_ff, batch, length, vocab_size,
                          max_seq_length, seed)

    # Gradients reach the embedding table.
    encoder.to(dtype=torch.float64).zero_grad()
    twins = [_builtin_twin(layer, d_model, num_heads, d_ff) for layer in layers]
    mask = _padding_mask(batch, length, torch.device("cpu"), seed + 3)
    with seeded(seed + 4):
        src = torch.randint(0, vocab_size, (batch, length))
    got = check.call(encoder, src, mask, what=f"{what} for gradients", on_error=_ERROR_HINTS)
    (emb_t,) = leaf_copies(encoder.embedding.weight)
    x = emb_t[src] * math.sqrt(d_model) + sinusoidal_positions(encoder, length, d_model, max_seq_length, emb_t)
    for twin in twins:
        x = twin(x, src_key_padding_mask=to_key_padding_mask(mask))
    compare_gradients(got, x, {"embedding.weight": encoder.embedding.weight}, {"embedding.weight": emb_t},
                      "Encoder's output", seed + 5)
    layers_text = f"{num_layers} distinct layer{'s' if num_layers != 1 else ''}"
    check.passed(f"embedding * sqrt(d_model) + positions, then {layers_text}; matches the built-in stack "
                 f"(no mask and a padding mask; float32/float64; gradients); padding ignored; dropout in "
                 f"training only; on {device_names()}")


def _expect_padding_ignored_stack(check: Check, encoder: nn.Module, src: Tensor, mask: Tensor, vocab_size: int,
                                  what: str) -> None:
    """Changing the token ids at padded positions leaves the outputs at real positions unchanged."""
    real = mask[:, 0, 0, :]  # (B, L)
    base = check.call(encoder, src, mask, what=what, on_error=_ERROR_HINTS)
    other = torch.where(real, src, (src + 1 + torch.arange(src.size(1), device=src.device)) % vocab_size)
    changed = check.call(encoder, other, mask, what=what, on_error=_ERROR_HINTS)
    keep = real[..., None]
    if not is_close(changed.masked_fill(~keep, 0.0), base.masked_fill(~keep, 0.0)):
        diff = (changed - base).abs().amax(-1).masked_fill(~real, 0.0)
        b, i = (int(j) for j in (diff == diff.max()).nonzero()[0])
        fail(f"{what}: changing only the token ids at padded positions (where src_mask is False) changed the "
             f"output at the real position {i} of sequence {b} (by {diff[b, i].item():.3g}). Real positions must "
             f"not look at padding: pass src_mask down to every layer, x = layer(x, src_mask).")


def _expect_stack_dropout(check: Check, encoder: nn.Module, layers: nn.ModuleList, d_model: int, num_heads: int,
                          d_ff: int, batch: int, length: int, vocab_size: int, max_seq_length: int,
                          seed: int) -> None:
    """Dropout on the scaled embeddings plus positions (the first layer's input), once, in training only."""
    twins = [_builtin_twin(layer, d_model, num_heads, d_ff) for layer in layers]
    with seeded(seed + 6):
        src = torch.randint(0, vocab_size, (batch, length))
    mask = _padding_mask(batch, length, torch.device("cpu"), seed + 3)
    key_padding = to_key_padding_mask(mask)
    what = "Encoder.forward(src, src_mask)"
    with torch.no_grad():
        start = embed(encoder, src, d_model, max_seq_length)
        scaled = embed(encoder, src, d_model, max_seq_length, with_pe=False)
        pe = sinusoidal_positions(encoder, length, d_model, max_seq_length, start)

    def stack(x: Tensor, drop_each: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        for twin in twins:
            x = twin(drop_each(x) if drop_each else x, src_key_padding_mask=key_padding)
        return x

    expect_dropout_in_training(
        encoder, lambda: check.call(encoder, src, mask, what=f"{what} in training mode", on_error=_ERROR_HINTS),
        owner="Encoder", what=what, quiet=list(layers), p=encoder.dropout.p, seed=seed,
        right=lambda drop: stack(drop(start)),
        expected="once, on the scaled embeddings plus the positional encoding, before the first layer "
                 "(section 5.4; each layer has its own dropout)",
        mistakes={
            "self.dropout is never applied in training: it goes on the scaled embeddings plus the positional "
            "encoding, before the first layer (section 5.4).": lambda drop: stack(start),
            "dropout is applied before the positional encoding is added: section 5.4 applies it to the sums of "
            "the embeddings and the positional encodings.": lambda drop: stack(drop(scaled) + pe),
            "dropout is applied to the encoder's output instead of its input: "
            "x = self.dropout(positional_encoding(...)) before the layers.": lambda drop: drop(stack(start)),
            "dropout is applied to the encoder's output as well as its input: only the embeddings plus "
            "positions go through the encoder's dropout.": lambda drop: drop(stack(drop(start))),
            "self.dropout is applied before every layer: only the embeddings plus positions go through the "
            "encoder's dropout (each layer has its own).": lambda drop: stack(start, drop_each=drop),
            "the embeddings are dropped twice (dropout before and after adding the positional encoding, or "
            "twice in a row): apply self.dropout once, to embedding * sqrt(d_model) + positions.":
                lambda drop: stack(drop(drop(scaled) + pe)),
            "the embeddings are dropped twice in a row: apply self.dropout once.":
                lambda drop: stack(drop(drop(start))),
        })


# --------------------------------------------------------------------------------------
# encoder_parameter_count(vocab_size, d_model, num_layers, d_ff)
# --------------------------------------------------------------------------------------

_PAPER_BASE = (37000, 512, 6, 2048)  # shared source/target BPE vocabulary of about 37000 tokens


def _sizes(seed: int) -> list[tuple[int, int, int, int]]:
    """(vocab_size, d_model, num_layers, d_ff): two fixed, two seeded, and the paper's base model."""
    generator = torch.Generator().manual_seed(seed)

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    drawn = [(draw(5, 3000), 8 * draw(1, 24), draw(1, 8), 8 * draw(1, 96)) for _ in range(2)]
    return [(11, 16, 2, 32), (1000, 64, 1, 256), *drawn, _PAPER_BASE]


def _real_count(vocab_size: int, d_model: int, num_layers: int, d_ff: int) -> int:
    """The number of parameters of a real Encoder (the course's reference) of these sizes.

    Small ones are built whole; for the large ones, one real layer is counted and multiplied
    (the layers are identical in shape), to keep the check fast.
    """
    heads = 8 if d_model % 8 == 0 else 1
    with seeded(0):
        if d_model * (d_model + d_ff) * num_layers <= 2_000_000 and vocab_size * d_model <= 2_000_000:
            model = _ReferenceEncoder(vocab_size, d_model, num_layers, heads, d_ff, max_seq_length=1)
            return sum(p.numel() for p in model.parameters())
        layer = _ReferenceEncoderLayer(d_model, heads, d_ff)
        return vocab_size * d_model + num_layers * sum(p.numel() for p in layer.parameters())


def _count_mistakes() -> dict[str, Callable[[int, int, int, int], int]]:
    def layer(d: int, f: int) -> int:
        return 4 * (d * d + d) + (d * f + f) + (f * d + d) + 4 * d

    def total(v: int, d: int, n: int, f: int) -> int:
        return v * d + n * layer(d, f)

    return {
        "the biases are missing: every nn.Linear(n_in, n_out) has n_in * n_out weights plus n_out biases.":
            lambda v, d, n, f: v * d + n * (4 * d * d + 2 * d * f + 4 * d),
        "4 * d_model parameters per layer are missing: the biases of the four attention projections (W_q, W_k, "
        "W_v, W_o each have d_model), or the two LayerNorms (each has a scale and a shift of d_model entries).":
            lambda v, d, n, f: total(v, d, n, f) - n * 4 * d,
        "2 * d_model parameters per layer are missing: a LayerNorm(d_model) has 2 * d_model parameters (a scale "
        "and a shift), and each layer has two of them.":
            lambda v, d, n, f: total(v, d, n, f) - n * 2 * d,
        "the biases of the feed-forward network are missing: linear1 has d_ff of them, linear2 d_model.":
            lambda v, d, n, f: total(v, d, n, f) - n * (f + d),
        "the embedding is missing: nn.Embedding(vocab_size, d_model) has vocab_size * d_model parameters.":
            lambda v, d, n, f: total(v, d, n, f) - v * d,
        "the embedding is counted once per layer: there is one embedding table, before the first layer.":
            lambda v, d, n, f: n * (v * d + layer(d, f)),
        "the embedding is counted twice: the encoder has one table (the output projection to the vocabulary "
        "belongs to the decoder side, chapter 7).": lambda v, d, n, f: total(v, d, n, f) + v * d,
        "you added an output layer nn.Linear(d_model, vocab_size): the encoder ends with its last layer; the "
        "generator belongs to the full Transformer (chapter 7).":
            lambda v, d, n, f: total(v, d, n, f) + v * d + v,
        "W_o is missing: multi-head attention has four d_model x d_model projections, W_q, W_k, W_v and W_o.":
            lambda v, d, n, f: total(v, d, n, f) - n * (d * d + d),
        "only one of the two feed-forward linear layers is counted: linear1 is d_model -> d_ff, linear2 "
        "d_ff -> d_model.": lambda v, d, n, f: total(v, d, n, f) - n * (f * d + d),
        "only one layer is counted: multiply the per-layer count by num_layers.":
            lambda v, d, n, f: v * d + layer(d, f),
        "the positional encoding is counted as parameters: it is a fixed buffer, not learned.":
            lambda v, d, n, f: total(v, d, n, f) + 5000 * d,
    }


@steady
def check_encoder_parameter_count(encoder_parameter_count: Callable[[int, int, int, int], int],
                                  seed: int = 0) -> None:
    """Check ``encoder_parameter_count(vocab_size, d_model, num_layers, d_ff) -> int`` against the
    number of parameters of real ``Encoder`` modules of several sizes, the paper's base model included.

    The function must compute the count from the formula (integer arithmetic), without building
    a model.
    """
    fn = expect_callable(encoder_parameter_count, "encoder_parameter_count")
    check = Check("encoder_parameter_count")
    check.refuse_answer_key(fn)
    sizes = _sizes(seed)
    built: list[str] = []

    def record(module: nn.Module, name: str, param: Any) -> None:
        built.append(f"{type(module).__name__}.{name}")

    answers = []
    for v, d, n, f in sizes:
        call = f"encoder_parameter_count(vocab_size={v}, d_model={d}, num_layers={n}, d_ff={f})"
        with removing_hooks([torch.nn.modules.module.register_module_parameter_registration_hook(record)]):
            answer = check.call(fn, v, d, n, f, what=call, on_error={
                "unexpected keyword argument": "keep the signature encoder_parameter_count(vocab_size, "
                                               "d_model, num_layers, d_ff)."})
        if built:
            fail(f"{call} builds a model ({built[0]} was created) and counts its parameters: this exercise asks "
                 f"for the count from the formula, with integer arithmetic on the four sizes only.")
        if isinstance(answer, bool) or not isinstance(answer, numbers.Integral):
            extra = (" Use integer arithmetic (+, *, //), not /, which gives a float."
                     if isinstance(answer, float) else "")
            fail(f"{call} should return an int, but it returned {describe(answer)}.{extra}")
        answers.append(int(answer))
    expected = [_real_count(*s) for s in sizes]
    for (v, d, n, f), got, want in zip(sizes, answers, expected):
        if got != want:
            message = (f"encoder_parameter_count(vocab_size={v}, d_model={d}, num_layers={n}, d_ff={f}) returned "
                       f"{got:,}, but a real Encoder of these sizes has {want:,} parameters (yours is "
                       f"{'over' if got > want else 'under'} by {abs(got - want):,}).")
            for explanation, variant in _count_mistakes().items():
                if all(variant(*s) == a for s, a in zip(sizes, answers)):
                    fail(message + f"\nLikely mistake: {explanation}")
            fail(message + "\nHint: count each piece of one layer (the four attention projections, the two "
                           "feed-forward linear layers, the two LayerNorms), multiply by num_layers, and add the "
                           "embedding table. Weights and biases both count; the positional encoding does not.")
    check.passed(f"matches real Encoders of {len(sizes)} sizes, the paper's base encoder included "
                 f"({expected[-1]:,} parameters)")
