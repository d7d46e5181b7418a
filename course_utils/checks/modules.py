"""Helpers shared by the checks of the encoder and the decoder: their layers and stacks (chapters 5, 6).

- structure: an attribute that must exist, an attention with its four projections, a LayerNorm,
  the layer's own dropout, a stack's embedding, positional encoding and dropout, its default depth;
- PyTorch's built-in layers as twins of the student's: weight copying, the feed-forward block,
  the post-norm (or a wrong) arrangement of the sublayers;
- LayerNorms with random scales and shifts; dropout tested in training mode under a seeded trace;
- inputs: right-padding masks and their ``key_padding_mask`` form, and a stack's input (the
  embeddings scaled by sqrt(d_model) plus the sinusoidal table), right or in a known wrong way.

This module has no ``check_*`` function: :mod:`course_utils.checks` exports nothing from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from course_utils.checks.harness import (
    Check,
    count_words,
    describe,
    expect_close,
    expect_linear,
    expect_repeatable,
    fail,
    seeded,
    traced,
)
from course_utils.reference.positional_encoding import sinusoidal_table

BuiltinLayer = TypeVar("BuiltinLayer", nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
Sublayer = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------


def expect_attribute(module: nn.Module, owner: str, name: str, create: str) -> Any:
    """``module.<name>``; fail when it is missing (or None), saying to create it as ``create``."""
    value = getattr(module, name, None)
    if value is None:
        fail(f"{owner} has no attribute {name}: in __init__, create self.{name} = {create}.")
    return value


def expect_attention(layer: nn.Module, owner: str, name: str, d_model: int, builtin: str) -> nn.Module:
    """``layer.<name>`` is a chapter 2 ``MultiHeadAttention`` with ``W_q, W_k, W_v, W_o`` of
    ``nn.Linear(d_model, d_model)``, whose weights are copied into ``builtin`` (named in messages)."""
    attention = expect_attribute(layer, owner, name, "MultiHeadAttention(d_model, num_heads, dropout)")
    if not isinstance(attention, nn.Module):
        fail(f"{owner}.{name} should be a MultiHeadAttention module, but it is {describe(attention)}.")
    for projection in ("W_q", "W_k", "W_v", "W_o"):
        if getattr(attention, projection, None) is None:
            fail(f"{owner}.{name} has no {projection}: it should be a MultiHeadAttention(d_model, "
                 f"num_heads, dropout) from chapter 2 (course_utils.reference's or yours), whose weights "
                 f"the check copies into {builtin}.")
        expect_linear(attention, f"{owner}.{name}", projection, d_model, d_model)
    return attention


def expect_layer_norm(layer: nn.Module, owner: str, name: str, d_model: int) -> nn.LayerNorm:
    """``layer.<name>`` is ``nn.LayerNorm(d_model)`` (its scale and shift are the caller's to check)."""
    norm = expect_attribute(layer, owner, name, "nn.LayerNorm(d_model)")
    if not isinstance(norm, nn.LayerNorm) or tuple(norm.normalized_shape) != (d_model,):
        fail(f"{owner}.{name} should be nn.LayerNorm({d_model}), but it is {describe(norm)}"
             f"{'' if not isinstance(norm, nn.LayerNorm) else f' over {tuple(norm.normalized_shape)}'}.")
    return norm


def expect_layer_dropout(layer: nn.Module, owner: str, dropout: float) -> nn.Dropout:
    """``layer.dropout`` is ``nn.Dropout(dropout)``, the layer's own (applied to each sublayer's output)."""
    drop = expect_attribute(layer, owner, "dropout", "nn.Dropout(dropout)")
    if not isinstance(drop, nn.Dropout):
        fail(f"{owner}.dropout should be nn.Dropout(dropout), but it is {describe(drop)}.")
    if not math.isclose(drop.p, dropout):
        fail(f"{owner}.dropout has p={drop.p}, but the layer was built with dropout={dropout}: "
             f"create self.dropout = nn.Dropout(dropout).")
    return drop


def expect_stack_input(stack: nn.Module, owner: str, vocab_size: int, d_model: int) -> None:
    """A stack's ``embedding`` (``nn.Embedding(vocab_size, d_model)``), ``positional_encoding``
    (a module) and ``dropout`` (``nn.Dropout`` with the p=0.1 the checks build it with)."""
    embedding = expect_attribute(stack, owner, "embedding", "nn.Embedding(vocab_size, d_model)")
    if not isinstance(embedding, nn.Embedding):
        fail(f"{owner}.embedding should be nn.Embedding({vocab_size}, {d_model}), but it is {describe(embedding)}.")
    if (embedding.num_embeddings, embedding.embedding_dim) != (vocab_size, d_model):
        fail(f"{owner}.embedding is nn.Embedding({embedding.num_embeddings}, {embedding.embedding_dim}), "
             f"expected nn.Embedding({vocab_size}, {d_model}): one row of size d_model per vocabulary token.")
    pe = expect_attribute(stack, owner, "positional_encoding", "PositionalEncoding(d_model, max_seq_length)")
    if not isinstance(pe, nn.Module):
        fail(f"{owner}.positional_encoding should be a PositionalEncoding module, but it is {describe(pe)}.")
    drop = expect_attribute(stack, owner, "dropout", "nn.Dropout(dropout)")
    if not isinstance(drop, nn.Dropout) or not math.isclose(drop.p, 0.1):
        fail(f"{owner}.dropout should be nn.Dropout(dropout) with p=0.1 here, but it is {describe(drop)}"
             f"{f' with p={drop.p}' if isinstance(drop, nn.Dropout) else ''}.")


def expect_default_depth(check: Check, cls: type[nn.Module], owner: str, vocab_size: int, seed: int,
                         on_error: dict[str, str] | None = None) -> None:
    """``cls(vocab_size, 8)`` builds the paper's N = 6 layers by default."""
    with seeded(seed):
        default = check.call(cls, vocab_size, 8, what=f"{owner}({vocab_size}, 8)", on_error=on_error)
    if len(getattr(default, "layers", [])) != 6:
        fail(f"{owner}({vocab_size}, 8) should build num_layers=6 layers by default (the paper's N = 6).")


def expect_deterministic(run: Callable[[], Any], what: str, *,
                         switched_off: str = "which .eval() switches off") -> None:
    """Two runs on the same input in eval mode give the same output.

    ``switched_off`` words how ``nn.Dropout`` stops in eval mode: the encoder's and the decoder's
    checks word it differently, and their messages are kept as they were.
    """
    expect_repeatable(run, f"{what} gave two different outputs for the same input in eval mode: something "
                           f"random runs in eval mode. Use nn.Dropout modules (self.dropout), {switched_off}, "
                           f"rather than torch.nn.functional.dropout without training=self.training.")


# --------------------------------------------------------------------------------------
# PyTorch's built-in layers holding the student's weights
# --------------------------------------------------------------------------------------


def copy_feed_forward_and_norms(layer: nn.Module, builtin: nn.Module, norms: Sequence[str]) -> None:
    """Copy ``layer.feed_forward.linear1/2`` into ``builtin.linear1/2`` and the LayerNorms ``norms``
    (``"norm1"``, ...) into the built-in's of the same names."""
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(builtin, name).weight.copy_(getattr(layer.feed_forward, name).weight)
            getattr(builtin, name).bias.copy_(getattr(layer.feed_forward, name).bias)
        for name in norms:
            getattr(builtin, name).weight.copy_(getattr(layer, name).weight)
            getattr(builtin, name).bias.copy_(getattr(layer, name).bias)
            # The epsilon is the student's choice (1e-5 is PyTorch's default, 1e-6 the annotated
            # transformer's, 1e-12 BERT's): compare with a norm that uses theirs.
            getattr(builtin, name).eps = getattr(layer, name).eps


def builtin_twin(builtin_class: type[BuiltinLayer], copy_into: Callable[[nn.Module, BuiltinLayer], BuiltinLayer],
                 layer: nn.Module, d_model: int, num_heads: int, d_ff: int) -> BuiltinLayer:
    """A post-norm ReLU ``builtin_class`` (batch-first) on the layer's device and dtype, holding its
    weights (copied with ``copy_into``), in eval mode."""
    twin = builtin_class(d_model, num_heads, d_ff, dropout=0.1, activation="relu", batch_first=True,
                         norm_first=False)
    weight = layer.self_attn.W_q.weight
    twin.to(device=weight.device, dtype=weight.dtype)
    return copy_into(layer, twin).eval()


def builtin_feed_forward(twin: nn.Module, h: Tensor) -> Tensor:
    """The feed-forward block of a built-in layer, without dropout: ``linear2(relu(linear1(h)))``."""
    return twin.linear2(torch.relu(twin.linear1(h)))


def apply_sublayers(x: Tensor, steps: Iterable[tuple[Sublayer, nn.Module, bool]], *, pre_norm: bool = False,
                    norm_inside: bool = False) -> Tensor:
    """Apply ``(block, norm, residual)`` steps in turn: post-norm ``norm(x + block(x))`` by default,
    or ``x + block(norm(x))`` (``pre_norm``) or ``x + norm(block(x))`` (``norm_inside``); without the
    residual, the same with ``x + `` left out. For the known wrong layers, so without dropout."""
    for block, norm, keep in steps:
        if pre_norm:
            x = x + block(norm(x)) if keep else block(norm(x))
        elif norm_inside:
            x = x + norm(block(x)) if keep else norm(block(x))
        else:
            x = norm(x + block(x)) if keep else norm(block(x))
    return x


# --------------------------------------------------------------------------------------
# LayerNorms and dropout
# --------------------------------------------------------------------------------------


def randomize_norms(modules: Iterable[nn.Module], seed: int) -> None:
    """Give every LayerNorm inside ``modules`` a random scale and shift: with the defaults (1 and 0),
    norms swapped, used twice or in the wrong order would go unnoticed."""
    with seeded(seed), torch.no_grad():
        for module in modules:
            for norm in (m for m in module.modules() if isinstance(m, nn.LayerNorm)):
                if norm.weight is not None:
                    norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape))
                if norm.bias is not None:
                    norm.bias.copy_(0.5 * torch.randn(norm.bias.shape))


Drop = Callable[[Tensor], Tensor]


def expect_dropout_in_training(module: nn.Module, run: Callable[[], Any], *, owner: str, what: str,
                               quiet: Sequence[nn.Module], p: float, seed: int, right: Callable[[Drop], Tensor],
                               mistakes: Mapping[str, Callable[[Drop], Tensor]], expected: str) -> None:
    """The module's own dropout, in training and in eval mode, whichever way it is written.

    ``run()`` calls the student's ``module``. In training mode under a :class:`DropoutTrace`
    (the dropouts inside ``quiet``, the sublayers, switched off), its output must equal
    ``right(drop)``: the check's computation with dropout where the paper puts it, drawing the
    same masks from the same seed. ``mistakes`` are wrong placements computed the same way (named
    when one matches); the number of calls words the rest. In eval mode no dropout may act.
    ``expected`` words where dropout goes (``"once on the output of each sublayer ..."``).
    """
    module.train()
    try:
        got, trace = traced(seed, lambda t: run(), quiet)
    finally:
        module.eval()
    calls = trace.training_calls()

    def under_trace(compute: Callable[[Drop], Tensor]) -> Callable[[], Tensor]:
        def value() -> Tensor:
            with torch.no_grad():
                return traced(seed, lambda t: compute(lambda x: t.drop(x, p)))[0]
        return value

    setup = (f"(The check draws every dropout mask from one seed, for your {owner} and for its own computation, "
             f"with the dropouts inside the sublayers switched off: they match when dropout is applied to the "
             f"same tensors in the same order.)")
    expect_close(got, under_trace(right)(), f"the output of {what} in training mode",
                 mistakes={f"{text} {setup}": under_trace(compute) for text, compute in mistakes.items()},
                 hint=f"in training your {owner} applied dropout {count_words(len(calls))} outside its "
                      f"sublayers (to tensors of shapes {', '.join(str(c) for c in calls) or 'none'}); expected "
                      f"{expected}, with p={p}. {setup}")
    _, trace = traced(seed, lambda t: run(), quiet)
    if any(training and prob > 0 for _, prob, training in trace.calls):
        fail(f"{owner} applies dropout in eval mode: torch.nn.functional.dropout defaults to training=True. Use "
             f"self.dropout = nn.Dropout(dropout), which model.eval() switches off, or pass training=self.training.")


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def right_padding_mask(batch: int, length: int, device: torch.device, generator: torch.Generator,
                       first_padding: int) -> Tensor:
    """``(B, 1, 1, L)`` right padding, True at real tokens: the first sequence is padded by
    ``first_padding`` positions, the others at random (drawn from ``generator``), and every
    sequence keeps >= 1 real token."""
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    lengths[0] = max(1, length - first_padding)
    return (torch.arange(length)[None, :] < lengths[:, None])[:, None, None, :].to(device)


def to_key_padding_mask(mask: Tensor | None) -> Tensor | None:
    """Our padding mask ``(B, 1, 1, L)`` (True = real) as PyTorch's ``key_padding_mask``
    ``(B, L)`` (True = padding, to be ignored)."""
    return None if mask is None else ~mask[:, 0, 0, :]


def sinusoidal_positions(stack: nn.Module, length: int, d_model: int, max_seq_length: int, like: Tensor) -> Tensor:
    """The sinusoidal table ``(length, d_model)`` in ``like``'s dtype and device.

    A positional encoding usually stores its table as a float32 buffer that ``.to(float64)``
    casts, so in float64 the expected table is the float32 one, cast; a table the student's
    module computes in float64 itself is used when it agrees with it to float32 precision.
    """
    table = sinusoidal_table(max_seq_length, d_model)[:length].to(like)
    if like.dtype == torch.float64:
        try:
            with torch.no_grad():
                own = stack.positional_encoding(torch.zeros(1, length, d_model, dtype=like.dtype,
                                                            device=like.device))[0]
            if own.shape == table.shape and torch.allclose(own, table, atol=1e-6, rtol=0):
                return own
        except Exception:  # noqa: BLE001 - a broken module is reported by the float32 run
            pass
    return table


def embed(stack: nn.Module, ids: Tensor, d_model: int, max_seq_length: int, *, scale: float | None = None,
          pe_first: bool = False, with_pe: bool = True) -> Tensor:
    """A stack's input: embedding * sqrt(d_model) + PE (or a wrong variant of it)."""
    emb = stack.embedding.weight[ids]
    pe = sinusoidal_positions(stack, ids.size(1), d_model, max_seq_length, emb)
    scale = math.sqrt(d_model) if scale is None else scale
    if not with_pe:
        return emb * scale
    return (emb + pe) * scale if pe_first else emb * scale + pe


def builtin_stack(stack: nn.Module, ids: Tensor, d_model: int, max_seq_length: int, twins: Iterable[nn.Module],
                  apply: Callable[[nn.Module, Tensor], Tensor], *, chained: bool = True, **embedding: Any) -> Tensor:
    """``embed(...)`` then ``apply(twin, x)`` for each of ``twins``, without gradients; each twin gets
    the previous one's output, or the embeddings again when not ``chained`` (a known mistake).
    ``embedding`` passes the wrong variants on to :func:`embed`."""
    with torch.no_grad():
        start = embed(stack, ids, d_model, max_seq_length, **embedding)
        x = start
        for twin in twins:
            x = apply(twin, x if chained else start)
        return x


def own_layers_output(stack: nn.Module, ids: Tensor, d_model: int, max_seq_length: int,
                      *layer_args: Any) -> Tensor | None:
    """The right stack built from the student's own layers, ``layer(x, *layer_args)`` in turn
    (None if they fail)."""
    try:
        with torch.no_grad():
            x = embed(stack, ids, d_model, max_seq_length)
            for layer in stack.layers:
                x = layer(x, *layer_args)
            return x if isinstance(x, Tensor) else None
    except Exception:  # noqa: BLE001 - the student's layer may crash; then this is not the diagnosis
        return None
