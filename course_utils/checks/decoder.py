"""Autograders for chapter 06_decoder: ``DecoderLayer`` and ``Decoder``.

``DecoderLayer`` is compared with ``nn.TransformerDecoderLayer(batch_first=True,
norm_first=False, activation="relu")`` holding the student's weights (copied with
:func:`copy_decoder_layer_into_builtin`), and ``Decoder`` with the scaled embedding plus the
sinusoidal table followed by such built-in layers in a loop. Around that comparison come the
properties that matter for a decoder: a position never sees later target tokens, the keys and
values of cross-attention come from ``memory``, padded source positions are ignored.

Source and target lengths always differ (``ls != lt``), so that a query taken from the wrong
tensor cannot go unnoticed. Such mix-ups often crash inside the student's code with a bare
shape error; the checks record what the student's ``self_attn`` and ``cross_attn`` (or, for
the stack, its layers) were called with, and name the mix-up instead.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from course_utils.checks.harness import (
    Check,
    CheckFailure,
    compare_gradients,
    describe,
    device_names,
    devices_and_dtypes,
    expect_close,
    expect_linear,
    expect_module_class,
    fail,
    is_close,
    leaf_copies,
    removing_hooks,
    seeded,
    steady,
    tolerance,
    traced,
)
from course_utils.checks.modules import (
    apply_sublayers,
    builtin_feed_forward,
    builtin_stack,
    builtin_twin,
    copy_feed_forward_and_norms,
    expect_attention,
    expect_attribute,
    expect_default_depth,
    embed,
    expect_deterministic,
    expect_dropout_in_training,
    expect_layer_dropout,
    expect_layer_norm,
    expect_stack_input,
    own_layers_output,
    randomize_norms,
    right_padding_mask,
    sinusoidal_positions,
    to_key_padding_mask,
)
from course_utils.checks.multi_head_attention import copy_mha_into_builtin, to_builtin_mask

_SHAPE_HINTS = {
    "must match the size of tensor": "x is (B, Lt, d_model) and memory is (B, Ls, d_model) with Lt != Ls "
                                     "here. Only the keys and values of cross-attention come from memory; "
                                     "the queries, the residuals and the masks' query axis follow x.",
    "shape mismatch": "x is (B, Lt, d_model) and memory is (B, Ls, d_model) with Lt != Ls here: check which "
                      "tensor each attention takes its query, key and value from.",
    "Expected size for first two dimensions": "x is (B, Lt, d_model) and memory is (B, Ls, d_model) with "
                                              "Lt != Ls here: the keys and the values of one attention must "
                                              "come from the same tensor.",
    "unexpected keyword argument": "keep the signatures: DecoderLayer(d_model, num_heads, d_ff, dropout=0.1) "
                                   "and forward(x, memory, src_mask=None, tgt_mask=None).",
}


# --------------------------------------------------------------------------------------
# Weight copying, shared with later chapters
# --------------------------------------------------------------------------------------


def copy_decoder_layer_into_builtin(layer: nn.Module,
                                    builtin: nn.TransformerDecoderLayer) -> nn.TransformerDecoderLayer:
    """Copy a course-style ``DecoderLayer`` into PyTorch's ``nn.TransformerDecoderLayer``.

    ``self_attn -> self_attn``, ``cross_attn -> multihead_attn``, ``feed_forward.linear1/2 ->
    linear1/2`` and ``norm1/2/3 -> norm1/2/3``.
    """
    copy_mha_into_builtin(layer.self_attn, builtin.self_attn)
    copy_mha_into_builtin(layer.cross_attn, builtin.multihead_attn)
    copy_feed_forward_and_norms(layer, builtin, ("norm1", "norm2", "norm3"))
    return builtin


def _builtin_twin(layer: nn.Module, d_model: int, num_heads: int, d_ff: int) -> nn.TransformerDecoderLayer:
    """``nn.TransformerDecoderLayer`` on the layer's device and dtype, holding its weights, in eval mode."""
    return builtin_twin(nn.TransformerDecoderLayer, copy_decoder_layer_into_builtin, layer, d_model, num_heads,
                        d_ff)


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _causal(lt: int, device: torch.device) -> Tensor:
    """``(1, 1, Lt, Lt)``, True on and below the diagonal."""
    return torch.ones(lt, lt, dtype=torch.bool, device=device).tril()[None, None]


@dataclass
class _Masks:
    src: Tensor  # (B, 1, 1, Ls) padding
    causal: Tensor  # (1, 1, Lt, Lt)
    tgt: Tensor  # (B, 1, Lt, Lt) causal and target padding


def _masks(batch: int, lt: int, ls: int, device: torch.device, seed: int) -> _Masks:
    generator = torch.Generator().manual_seed(seed)
    causal = _causal(lt, device)
    return _Masks(src=right_padding_mask(batch, ls, device, generator, 2), causal=causal,
                  tgt=right_padding_mask(batch, lt, device, generator, 2) & causal)


def _mask_cases(masks: _Masks) -> list[tuple[str, Tensor | None, Tensor | None]]:
    """(label, src_mask, tgt_mask) of the three comparisons with the built-in."""
    return [
        ("a causal tgt_mask (1, 1, Lt, Lt) and a padding src_mask (B, 1, 1, Ls)", masks.src, masks.causal),
        ("a causal and padded tgt_mask (B, 1, Lt, Lt) and a padding src_mask (B, 1, 1, Ls)", masks.src, masks.tgt),
        ("no masks", None, None),
    ]


def _builtin_masks(src_mask: Tensor | None, tgt_mask: Tensor | None, batch: int, num_heads: int, lt: int,
                   ls: int) -> tuple[Tensor | None, Tensor | None]:
    """``(tgt_mask, memory_mask)`` as ``nn.TransformerDecoderLayer`` takes them (True = blocked)."""
    return to_builtin_mask(tgt_mask, batch, num_heads, lt, lt), to_builtin_mask(src_mask, batch, num_heads, lt, ls)


def _validate_sizes(lt: int, ls: int, d_model: int, num_heads: int) -> None:
    if lt == ls or lt < 2 or ls < 3:
        raise ValueError("the decoder checks need lt != ls, lt >= 2 and ls >= 3")
    if d_model % num_heads:
        raise ValueError("num_heads must divide d_model")


# --------------------------------------------------------------------------------------
# Recording what the attentions (or the layers) are called with
# --------------------------------------------------------------------------------------


@dataclass
class _Call:
    name: str  # which module: "self_attn", "cross_attn", "layers[i]"
    args: list[Any]  # the first four arguments in the forward's parameter order
    returned: bool = False  # False while running, and for good if the call raised


def _first_four(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """The first four arguments of ``module.forward`` in its parameter order, however passed."""
    try:
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        names = list(inspect.signature(module.forward).parameters)[:4]
        values = [bound.arguments.get(n) for n in names]
    except (TypeError, ValueError):
        values = list(args) + list(kwargs.values())
    return (values + [None] * 4)[:4]


@contextmanager
def _recording(modules: dict[str, nn.Module]) -> Iterator[list[_Call]]:
    """Record, in order, the calls of each module (even when the call then raises)."""
    calls: list[_Call] = []
    handles = []
    for name, module in modules.items():
        def enter(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], name: str = name) -> None:
            calls.append(_Call(name, _first_four(mod, args, kwargs)))

        def leave(mod: nn.Module, args: tuple[Any, ...], output: Any, name: str = name) -> None:
            for call in reversed(calls):
                if call.name == name and not call.returned:
                    call.returned = True
                    break

        handles.append(module.register_forward_pre_hook(enter, with_kwargs=True))
        handles.append(module.register_forward_hook(leave))
    with removing_hooks(handles):
        yield calls


def _length(t: Any) -> int | None:
    return t.size(1) if isinstance(t, Tensor) and t.dim() >= 2 else None


def _same_mask(got: Any, mask: Tensor | None) -> bool:
    if mask is None or not isinstance(got, Tensor):
        return False
    return got is mask or (got.shape == mask.shape and bool(torch.equal(got, mask)))


def _attention_routing(calls: list[_Call], lt: int, ls: int, src_mask: Tensor | None,
                       tgt_mask: Tensor | None, finished: bool) -> str | None:
    """A definite mix-up in how DecoderLayer calls its two attentions, or None."""
    self_calls = [c for c in calls if c.name == "self_attn"]
    cross_calls = [c for c in calls if c.name == "cross_attn"]
    if not cross_calls and len(self_calls) >= 2:
        return ("self-attention is used twice instead of cross-attention: the second sublayer must "
                "call self.cross_attn(x, memory, memory, src_mask), which has its own weights and takes "
                "its keys and values from memory.")
    for call in cross_calls:
        query, key, value, mask = call.args
        if _length(query) == ls:
            return ("cross-attention has its query and memory swapped: the queries come from the decoder "
                    "(x, one row per target position) and the keys and values from memory: "
                    "self.cross_attn(x, memory, memory, src_mask). Taking the query from memory gives "
                    "one output row per source position.")
        if _length(key) == lt or _length(value) == lt:
            return ("cross-attention takes its keys/values from x instead of memory: this is a second "
                    "self-attention. Cross-attention reads the source sentence: "
                    "self.cross_attn(x, memory, memory, src_mask).")
    for call in self_calls:
        query, key, value, mask = call.args
        if ls in (_length(query), _length(key), _length(value)):
            return ("self-attention is given memory: the first sublayer attends over the target "
                    "itself, self.self_attn(x, x, x, tgt_mask); memory is for cross-attention only.")
    self_mask = self_calls[0].args[3] if self_calls else None
    cross_mask = cross_calls[0].args[3] if cross_calls else None
    if _same_mask(self_mask, src_mask) and (_same_mask(cross_mask, tgt_mask) or not cross_calls):
        return ("src_mask and tgt_mask are swapped: self-attention over the target needs tgt_mask "
                "(B, 1, Lt, Lt), cross-attention over the source needs src_mask (B, 1, 1, Ls).")
    if _same_mask(self_mask, src_mask):
        return ("self-attention is given src_mask: it attends over the target, so it needs tgt_mask "
                "(B, 1, Lt, Lt); src_mask (B, 1, 1, Ls) belongs to cross-attention.")
    if _same_mask(cross_mask, tgt_mask):
        return ("cross-attention is given tgt_mask: it attends over the source, so it needs src_mask "
                "(B, 1, 1, Ls); tgt_mask belongs to self-attention.")
    if tgt_mask is not None and self_calls and self_mask is None:
        return ("tgt_mask is not passed to self-attention (it gets no mask), so every position sees the "
                "whole target: self.self_attn(x, x, x, tgt_mask).")
    if src_mask is not None and cross_calls and cross_mask is None:
        return ("src_mask is not passed to cross-attention (it gets no mask), so padding is attended to: "
                "self.cross_attn(x, memory, memory, src_mask).")
    if finished and self_calls and not cross_calls:
        return ("self.cross_attn is never called: the second sublayer must attend over memory with "
                "self.cross_attn(x, memory, memory, src_mask).")
    return None


def _layer_routing(calls: list[_Call], num_layers: int, lt: int, ls: int, src_mask: Tensor | None,
                   tgt_mask: Tensor | None, finished: bool) -> str | None:
    """A definite mix-up in how Decoder calls its layers, or None."""
    for call in calls:
        x, memory, got_src, got_tgt = call.args
        if _length(memory) == lt:
            return (f"Decoder passes the target (x) as memory to {call.name}: every layer takes "
                    f"layer(x, memory, src_mask, tgt_mask), with the encoder's memory unchanged.")
        if _length(x) == ls:
            return (f"Decoder passes memory as the layer's input x to {call.name}: x is the running target "
                    f"representation (B, Lt, d_model), memory stays the same for every layer.")
        if _same_mask(got_src, tgt_mask) and _same_mask(got_tgt, src_mask):
            return (f"Decoder swaps the masks when it calls {call.name}: the layer's signature is "
                    f"forward(x, memory, src_mask, tgt_mask); pass them in that order (or by name).")
        if tgt_mask is not None and got_tgt is None:
            return (f"Decoder does not pass tgt_mask down to {call.name} (it arrives as None): call "
                    f"layer(x, memory, src_mask, tgt_mask) so that every layer is masked.")
        if src_mask is not None and got_src is None:
            return (f"Decoder does not pass src_mask down to {call.name} (it arrives as None): call "
                    f"layer(x, memory, src_mask, tgt_mask).")
    names = {c.name for c in calls}
    if finished and len(names) < num_layers:
        return (f"only {len(names)} of the {num_layers} layers are called: loop over self.layers and "
                f"feed each layer the previous one's output.")
    return None


class _Runner:
    """Calls student code through Check.call, recording the calls of chosen submodules, and
    turns a crash or a wrong result into a named mix-up where one is recognised."""

    def __init__(self, check: Check, module: nn.Module, watched: dict[str, nn.Module],
                 routing: Callable[[list[_Call], bool], str | None], owner: str, inside_hint: str = "") -> None:
        self.check, self.module, self.watched, self.routing = check, module, watched, routing
        self.owner, self.inside_hint = owner, inside_hint
        self.last_calls: list[_Call] = []

    def __call__(self, *args: Any, what: str) -> Any:
        with _recording(self.watched) as calls:
            try:
                result = self.check.call(self.module, *args, what=what, on_error=_SHAPE_HINTS)
            except CheckFailure as error:
                message = str(error)
                if "not implemented yet" in message or "course_utils.reference's own" in message:
                    raise
                problem = self.routing(calls, False)
                if problem:
                    fail(f"{message}\nLikely mistake: {problem}")
                crashed = [c for c in calls if not c.returned]
                if crashed:
                    inputs = "; ".join(describe(a) for a in crashed[-1].args)
                    fail(f"{message}\nThe error was raised inside {self.owner}.{crashed[-1].name}, which was "
                         f"called with: {inputs}.{self.inside_hint}")
                raise
        self.last_calls = list(calls)
        problem = self.routing(self.last_calls, True)
        if problem and not _soft(problem):
            fail(f"{what}: {problem}")
        return result

    def explain(self) -> str:
        """The soft routing diagnosis of the last call, as a suffix for a failure message."""
        problem = self.routing(self.last_calls, True)
        return f"\nLikely mistake: {problem}" if problem else ""

    def explain_mismatch(self, got: Any, want: Tensor, what: str, against: str) -> None:
        """When ``got`` has ``want``'s shape but other values, fail with the routing diagnosis of
        the last call, if there is one (``against`` names where ``want`` comes from)."""
        if isinstance(got, Tensor) and got.shape == want.shape and not is_close(got, want):
            problem = self.explain()
            if problem:
                fail(f"the output of {what} differs from {against} (largest error "
                     f"{(got - want).abs().max().item():.3g}).{problem}")


_SOFT = ("self.cross_attn is never called", "only ", "Decoder does not pass", "tgt_mask is not passed",
         "src_mask is not passed")


def _soft(problem: str) -> bool:
    """Diagnoses given only when a property or a value already failed: a correct answer could call
    its modules in ways the hooks do not see (``self.cross_attn.forward(...)``), and a missing mask
    is best reported by the property it breaks (which position saw the future)."""
    return problem.startswith(_SOFT)


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------


def _expect_dropout_calls(module: nn.Module, run: Callable[[], Any], owner: str, expected: int,
                          where: str, quiet: list[nn.Module]) -> None:
    """The module applies dropout ``expected`` times outside its sublayers ``quiet``, in whatever form
    (``self.dropout(...)`` or ``F.dropout(..., training=self.training)``); in eval mode, so as calls."""
    _, trace = traced(0, lambda t: run(), quiet)
    if len(trace.calls) != expected:
        fail(f"{owner}.dropout was applied {len(trace.calls)} time(s) in one forward pass, expected {expected}: "
             f"{where}. (In eval mode dropout does nothing, but in training it is the regulariser of "
             f"section 5.4.)")


def _expect_causal(run: Callable[[Tensor], Tensor], x: Tensor, perturb: Callable[[Tensor, int], Tensor],
                   what: str, explain: Callable[[], str]) -> None:
    """Changing the target after position i leaves the outputs at positions 0..i unchanged."""
    base = run(x)
    length = base.size(1)
    for i in range(length - 1):
        changed = run(perturb(x, i))
        diff = (changed[:, : i + 1] - base[:, : i + 1]).abs().amax(dim=(0, 2))
        atol, _ = tolerance(base.dtype)
        leaks = (diff > atol * 10).nonzero()
        if len(leaks):
            j = int(leaks[0])
            after = f"position {i + 1}" if i + 1 == length - 1 else f"positions {i + 1} to {length - 1}"
            fail(f"{what}: with a causal tgt_mask, the output at position {j} changed (by up to "
                 f"{diff[j].item():.3g}) when only the target at {after} changed: position {j} saw the "
                 f"future. Position i may depend on target positions 0..i only." + explain())


def _expect_padding_ignored(run: Callable[[Tensor], Tensor], memory: Tensor, src_mask: Tensor, what: str,
                            explain: Callable[[], str]) -> None:
    """Memory at padded source positions does not matter; memory at real positions does."""
    base = run(memory)
    padded = to_key_padding_mask(src_mask)  # (B, Ls), True at padding
    noise = torch.randn_like(memory) * 3
    at_padding = run(torch.where(padded[..., None], memory + noise, memory))
    if not is_close(at_padding, base):
        fail(f"{what}: changing memory only at padded source positions (where src_mask is False) changed "
             f"the output by up to {(at_padding - base).abs().max().item():.3g}: cross-attention must not "
             f"look at padding. Pass src_mask to cross-attention: "
             f"self.cross_attn(x, memory, memory, src_mask)." + explain())
    at_tokens = run(torch.where(padded[..., None], memory, memory + noise))
    if is_close(at_tokens, base):
        fail(f"{what}: changing memory at the real source positions did not change the output: the "
             f"decoder ignores the source sentence. Cross-attention takes its keys and values from memory: "
             f"self.cross_attn(x, memory, memory, src_mask)." + explain())


def _redraw_states(x: Tensor, i: int) -> Tensor:
    """``x`` with new random vectors after position ``i`` (for the causality test)."""
    x = x.clone()
    x[:, i + 1:] = torch.randn_like(x[:, i + 1:])
    return x


def _redraw_tokens(vocab_size: int) -> Callable[[Tensor, int], Tensor]:
    """A perturbation for the causality test: other token ids after position ``i``."""
    def perturb(t: Tensor, i: int) -> Tensor:
        t = t.clone()
        t[:, i + 1:] = (t[:, i + 1:] + torch.randint_like(t[:, i + 1:], 1, vocab_size)) % vocab_size
        return t

    return perturb


def _expect_properties(runner: _Runner, module: nn.Module, first: Tensor, memory: Tensor, masks: _Masks,
                       perturb: Callable[[Tensor, int], Tensor], what: str, where: str, dropout_calls: int,
                       dropout_where: str, quiet: list[nn.Module]) -> None:
    """The properties of a decoder layer or stack called as ``module(first, memory, src_mask, tgt_mask)``
    (``first`` is x or tgt) with a causal tgt_mask: determinism in eval mode, ``dropout_calls``
    calls of its own dropout, causality (``perturb(first, i)`` changes what follows position i),
    and padded memory ignored."""
    def run(t: Tensor = first, m: Tensor = memory) -> Any:
        return runner(t, m, masks.src, masks.causal, what=what)

    expect_deterministic(run, f"{what}{where}", switched_off="which switch off after .eval()")
    _expect_dropout_calls(module, run, runner.owner, dropout_calls, dropout_where, quiet)
    _expect_causal(lambda t: run(t=t), first, perturb, f"{what}{where}", runner.explain)
    _expect_padding_ignored(lambda m: run(m=m), memory, masks.src, f"{what}{where}", runner.explain)


# --------------------------------------------------------------------------------------
# Structure
# --------------------------------------------------------------------------------------


def _expect_layer_structure(layer: nn.Module, owner: str, d_model: int, num_heads: int, d_ff: int,
                            dropout: float) -> None:
    """self_attn, cross_attn, feed_forward, norm1..3 and dropout, with the right sizes."""
    attentions = [expect_attention(layer, owner, name, d_model, "nn.TransformerDecoderLayer")
                  for name in ("self_attn", "cross_attn")]
    if attentions[0] is attentions[1]:
        fail(f"{owner}.cross_attn is the same module as {owner}.self_attn: the two attentions must be "
             f"two MultiHeadAttention(...) objects with their own weights.")
    ffn = expect_attribute(layer, owner, "feed_forward", "FeedForwardNetwork(d_model, d_ff, dropout)")
    expect_linear(ffn, f"{owner}.feed_forward", "linear1", d_model, d_ff)
    expect_linear(ffn, f"{owner}.feed_forward", "linear2", d_ff, d_model)
    norms = []
    for name in ("norm1", "norm2", "norm3"):
        norm = expect_layer_norm(layer, owner, name, d_model)
        if norm.weight is None:
            fail(f"{owner}.{name} has no learnable scale and shift: keep nn.LayerNorm's default "
                 f"elementwise_affine=True.")
        norms.append(norm)
    if len({id(n) for n in norms}) < 3:
        fail(f"{owner}.norm1, norm2 and norm3 are not three different LayerNorms: each sublayer has its "
             f"own, with its own scale and shift; create three nn.LayerNorm(d_model).")
    expect_layer_dropout(layer, owner, dropout)


# --------------------------------------------------------------------------------------
# Known wrong layers, computed from the student's weights (through the built-in twin)
# --------------------------------------------------------------------------------------


def _layer_variant(twin: nn.TransformerDecoderLayer, x: Tensor, memory: Tensor, tgt_b: Tensor | None,
                   src_b: Tensor | None, *, pre_norm: bool = False, residual: tuple[bool, ...] = (True,) * 3,
                   norms: tuple[int, ...] = (0, 1, 2), norm_inside: bool = False,
                   self_mask: bool = True, cross_mask: bool = True) -> Tensor:
    """The layer computed in a wrong (or, with the defaults, the right) way."""
    norm_modules = (twin.norm1, twin.norm2, twin.norm3)

    def sa(h: Tensor) -> Tensor:
        return twin.self_attn(h, h, h, attn_mask=tgt_b if self_mask else None, need_weights=False)[0]

    def ca(h: Tensor) -> Tensor:
        return twin.multihead_attn(h, memory, memory, attn_mask=src_b if cross_mask else None,
                                   need_weights=False)[0]

    def ff(h: Tensor) -> Tensor:
        return builtin_feed_forward(twin, h)

    steps = [(block, norm_modules[norm_index], keep) for block, norm_index, keep in zip((sa, ca, ff), norms, residual)]
    with torch.no_grad():
        return apply_sublayers(x, steps, pre_norm=pre_norm, norm_inside=norm_inside)


_ORDINAL = ("self-attention", "cross-attention", "feed-forward")


def _layer_mistakes(twin: nn.TransformerDecoderLayer, x: Tensor, memory: Tensor, tgt_b: Tensor | None,
                    src_b: Tensor | None) -> dict[str, Callable[[], Tensor]]:
    def v(**kwargs: Any) -> Callable[[], Tensor]:
        return lambda: _layer_variant(twin, x, memory, tgt_b, src_b, **kwargs)

    mistakes: dict[str, Callable[[], Tensor]] = {
        "this is pre-norm (x + Sublayer(LayerNorm(x))). The paper, and this course, use post-norm: "
        "x = norm(x + dropout(sublayer(x))) after each sublayer (section 3.1).": v(pre_norm=True),
        "the LayerNorm is applied to the sublayer's output before the residual add "
        "(x + norm(sublayer(x))); post-norm normalises the sum: norm(x + dropout(sublayer(x))).":
            v(norm_inside=True),
        "the residual connections are missing: each sublayer's output is added to its input before "
        "the LayerNorm, norm(x + dropout(sublayer(x))).": v(residual=(False, False, False)),
    }
    for i, name in enumerate(_ORDINAL):
        keep = tuple(j != i for j in range(3))
        mistakes[f"the residual connection around the {name} sublayer is missing: "
                 f"norm{i + 1}(x + dropout({name} output)), not norm{i + 1}(dropout(...))."] = v(residual=keep)
    for order in ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0), (0, 0, 0)):
        used = ", ".join(f"norm{k + 1}" for k in order)
        mistakes[f"the LayerNorms are used in the wrong order (yours: {used}): norm1 follows "
                 f"self-attention, norm2 cross-attention, norm3 the feed-forward."] = v(norms=order)
    if tgt_b is not None:
        mistakes["tgt_mask is not applied in self-attention, so positions see the future: "
                 "self.self_attn(x, x, x, tgt_mask)."] = v(self_mask=False)
    if src_b is not None:
        mistakes["src_mask is not applied in cross-attention: "
                 "self.cross_attn(x, memory, memory, src_mask)."] = v(cross_mask=False)
    return mistakes


# --------------------------------------------------------------------------------------
# DecoderLayer
# --------------------------------------------------------------------------------------


@steady
def check_decoder_layer(DecoderLayer: type[nn.Module], seed: int = 0, batch: int = 2, lt: int = 5,
                        ls: int = 7, d_model: int = 16, num_heads: int = 4, d_ff: int = 32) -> None:
    """Check a ``DecoderLayer`` class against ``nn.TransformerDecoderLayer`` with copied weights.

    Structure, determinism in eval mode, dropout on each sublayer's output, causality (a
    position never sees later target tokens), cross-attention over memory with the source
    padding mask, equality with the built-in for causal and padded masks and none, float32
    and float64, gradients, on every available device. ``ls != lt`` in every call.
    """
    _validate_sizes(lt, ls, d_model, num_heads)
    cls = expect_module_class(DecoderLayer, "DecoderLayer")
    check = Check("DecoderLayer")
    check.refuse_answer_key(cls)
    with seeded(seed):
        layer = check.call(cls, d_model, num_heads, d_ff, dropout=0.1,
                           what=f"DecoderLayer({d_model}, {num_heads}, {d_ff}, dropout=0.1)",
                           on_error=_SHAPE_HINTS)
    _expect_layer_structure(layer, "DecoderLayer", d_model, num_heads, d_ff, 0.1)
    randomize_norms([layer], seed + 1)
    layer.eval()
    what = "DecoderLayer.forward(x, memory, src_mask, tgt_mask)"

    for device, dtype, where in devices_and_dtypes(layer):
        twin = _builtin_twin(layer, d_model, num_heads, d_ff)
        with seeded(seed + 2):
            x = torch.randn(batch, lt, d_model, dtype=dtype).to(device)
            memory = torch.randn(batch, ls, d_model, dtype=dtype).to(device)
        masks = _masks(batch, lt, ls, device, seed + 3)

        def routing(calls: list[_Call], finished: bool, src: Tensor | None = masks.src,
                    tgt: Tensor | None = masks.causal) -> str | None:
            return _attention_routing(calls, lt, ls, src, tgt, finished)

        runner = _Runner(check, layer, {"self_attn": layer.self_attn, "cross_attn": layer.cross_attn},
                         routing, "DecoderLayer")
        with torch.no_grad():
            if device.type == "cpu" and dtype == torch.float32:
                _expect_properties(runner, layer, x, memory, masks, _redraw_states, what, where, 3,
                                   "once on the output of each of the three sublayers, before its "
                                   "residual add: norm(x + self.dropout(sublayer(x)))",
                                   [layer.self_attn, layer.cross_attn, layer.feed_forward])

            for label, src_mask, tgt_mask in _mask_cases(masks):
                runner.routing = lambda calls, finished, s=src_mask, t=tgt_mask: _attention_routing(
                    calls, lt, ls, s, t, finished)
                case_what = f"{what} with {label}, Lt={lt}, Ls={ls}{where}"
                args = (x, memory) if src_mask is None else (x, memory, src_mask, tgt_mask)
                got = runner(*args, what=case_what)
                tgt_b, src_b = _builtin_masks(src_mask, tgt_mask, batch, num_heads, lt, ls)
                want = twin(x, memory, tgt_mask=tgt_b, memory_mask=src_b)
                runner.explain_mismatch(got, want, case_what, "nn.TransformerDecoderLayer's")
                expect_close(got, want, f"the output of {case_what}",
                             mistakes=_layer_mistakes(twin, x, memory, tgt_b, src_b),
                             shape_hint="the layer returns (B, Lt, d_model): one vector per target "
                                        "position, like its input x.",
                             hint="compare step by step with the three sublayers: "
                                  "norm1(x + dropout(self_attn(x, x, x, tgt_mask))), then "
                                  "norm2(x + dropout(cross_attn(x, memory, memory, src_mask))), then "
                                  "norm3(x + dropout(feed_forward(x))).")

    layer.to(device="cpu", dtype=torch.float32)
    _expect_layer_dropout(check, layer, d_model, num_heads, d_ff, batch, lt, ls, seed)

    # Gradients reach x and memory, as through the built-in.
    layer.to(device="cpu", dtype=torch.float64)
    twin = _builtin_twin(layer, d_model, num_heads, d_ff)
    masks = _masks(batch, lt, ls, torch.device("cpu"), seed + 3)
    with seeded(seed + 4):
        x = torch.randn(batch, lt, d_model, dtype=torch.float64)
        memory = torch.randn(batch, ls, d_model, dtype=torch.float64)
    x_s, m_s = leaf_copies(x, memory)
    x_t, m_t = leaf_copies(x, memory)
    got = check.call(layer, x_s, m_s, masks.src, masks.tgt, what=f"{what} for gradients")
    tgt_b, src_b = _builtin_masks(masks.src, masks.tgt, batch, num_heads, lt, ls)
    want = twin(x_t, m_t, tgt_mask=tgt_b, memory_mask=src_b)
    compare_gradients(got, want, {"x": x_s, "memory": m_s}, {"x": x_t, "memory": m_t},
                      "DecoderLayer's output", seed + 5)
    check.passed(f"matches nn.TransformerDecoderLayer (causal/padded/no masks, Lt != Ls, float32/float64, "
                 f"gradients); never sees the future; reads memory, not its padding; on {device_names()}")


def _expect_layer_dropout(check: Check, layer: nn.Module, d_model: int, num_heads: int, d_ff: int, batch: int,
                          lt: int, ls: int, seed: int) -> None:
    """In training, dropout once on each sublayer's output before its residual add (seeded, any form)."""
    twin = _builtin_twin(layer, d_model, num_heads, d_ff)
    masks = _masks(batch, lt, ls, torch.device("cpu"), seed + 3)
    with seeded(seed + 6):
        x = torch.randn(batch, lt, d_model)
        memory = torch.randn(batch, ls, d_model)
    tgt_b, src_b = _builtin_masks(masks.src, masks.tgt, batch, num_heads, lt, ls)
    n1, n2, n3 = twin.norm1, twin.norm2, twin.norm3

    def sa(h: Tensor) -> Tensor:
        return twin.self_attn(h, h, h, attn_mask=tgt_b, need_weights=False)[0]

    def ca(h: Tensor, m: Tensor = memory) -> Tensor:
        return twin.multihead_attn(h, m, m, attn_mask=src_b, need_weights=False)[0]

    def ff(h: Tensor) -> Tensor:
        return builtin_feed_forward(twin, h)

    def keep(t: Tensor) -> Tensor:
        return t

    def with_drops(d1: Callable[[Tensor], Tensor], d2: Callable[[Tensor], Tensor],
                   d3: Callable[[Tensor], Tensor]) -> Tensor:
        h = n1(x + d1(sa(x)))
        h = n2(h + d2(ca(h)))
        return n3(h + d3(ff(h)))

    def after_sum(drop: Callable[[Tensor], Tensor]) -> Tensor:
        h = n1(drop(x + sa(x)))
        h = n2(drop(h + ca(h)))
        return n3(drop(h + ff(h)))

    def on_inputs(drop: Callable[[Tensor], Tensor]) -> Tensor:
        h = n1(x + sa(drop(x)))
        h = n2(h + ca(drop(h)))
        return n3(h + ff(drop(h)))

    def on_memory(drop: Callable[[Tensor], Tensor]) -> Tensor:
        h = n1(x + drop(sa(x)))
        h = n2(h + ca(h, drop(memory)))
        return n3(h + drop(ff(h)))

    def twice(drop: Callable[[Tensor], Tensor]) -> Tensor:
        return with_drops(*(lambda t: drop(drop(t)),) * 3)

    mistakes: dict[str, Callable[[Callable[[Tensor], Tensor]], Tensor]] = {
        "dropout is applied after the residual sum, norm(dropout(x + sublayer(x))): it also drops the residual "
        "path. Dropout goes on the sublayer's output only, before the add: norm(x + self.dropout(sublayer(x))) "
        "(section 5.4).": after_sum,
        "dropout is applied to the sublayers' inputs instead of their outputs: "
        "norm(x + self.dropout(sublayer(x))).": on_inputs,
        "dropout is applied to memory instead of the cross-attention's output: "
        "norm2(x + self.dropout(self.cross_attn(x, memory, memory, src_mask))).": on_memory,
        "dropout is applied twice to each sublayer's output: once, norm(x + self.dropout(sublayer(x))).": twice,
    }
    for i, name in enumerate(_ORDINAL):
        mistakes[f"dropout is missing after the {name} sublayer: norm{i + 1}(x + self.dropout({name} output))."] = \
            lambda drop, i=i: with_drops(*(keep if j == i else drop for j in range(3)))
    expect_dropout_in_training(
        layer, lambda: check.call(layer, x, memory, masks.src, masks.tgt, what="DecoderLayer.forward in training "
                                  "mode", on_error=_SHAPE_HINTS),
        owner="DecoderLayer", what="DecoderLayer.forward(x, memory, src_mask, tgt_mask)",
        quiet=[layer.self_attn, layer.cross_attn, layer.feed_forward], p=layer.dropout.p, seed=seed,
        right=lambda drop: with_drops(drop, drop, drop), mistakes=mistakes,
        expected="once on the output of each of the three sublayers, before its residual add: "
                 "norm(x + self.dropout(sublayer(x))) (section 5.4)")


# --------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------


def _expect_stack_dropout(check: Check, decoder: nn.Module, layers: nn.ModuleList, d_model: int, num_heads: int,
                          d_ff: int, batch: int, lt: int, ls: int, vocab_size: int, max_seq_length: int,
                          seed: int) -> None:
    """In training, dropout once on the scaled embeddings plus positions, before the first layer."""
    twins = [_builtin_twin(layer, d_model, num_heads, d_ff) for layer in layers]
    masks = _masks(batch, lt, ls, torch.device("cpu"), seed + 3)
    with seeded(seed + 6):
        tgt = torch.randint(0, vocab_size, (batch, lt))
        memory = torch.randn(batch, ls, d_model)
    tgt_b, src_b = _builtin_masks(masks.src, masks.tgt, batch, num_heads, lt, ls)
    with torch.no_grad():
        start = embed(decoder, tgt, d_model, max_seq_length)
        scaled = embed(decoder, tgt, d_model, max_seq_length, with_pe=False)
        pe = sinusoidal_positions(decoder, lt, d_model, max_seq_length, start)

    def stack(x: Tensor, drop_each: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        for twin in twins:
            x = twin(drop_each(x) if drop_each else x, memory, tgt_mask=tgt_b, memory_mask=src_b)
        return x

    expect_dropout_in_training(
        decoder, lambda: check.call(decoder, tgt, memory, masks.src, masks.tgt, what="Decoder.forward in training "
                                    "mode", on_error=_SHAPE_HINTS),
        owner="Decoder", what="Decoder.forward(tgt, memory, src_mask, tgt_mask)", quiet=list(layers),
        p=decoder.dropout.p, seed=seed, right=lambda drop: stack(drop(start)),
        expected="once, on the scaled embeddings plus the positional encoding, before the first layer "
                 "(section 5.4; each layer has its own dropout)",
        mistakes={
            "self.dropout is never applied in training: it goes on the scaled embeddings plus the positional "
            "encoding, before the first layer (section 5.4).": lambda drop: stack(start),
            "dropout is applied before the positional encoding is added: section 5.4 applies it to the sums of "
            "the embeddings and the positional encodings.": lambda drop: stack(drop(scaled) + pe),
            "dropout is applied to the decoder's output instead of its input.": lambda drop: drop(stack(start)),
            "dropout is applied to the decoder's output as well as its input: only the embeddings plus positions "
            "go through the decoder's dropout.": lambda drop: drop(stack(drop(start))),
            "self.dropout is applied before every layer: only the embeddings plus positions go through the "
            "decoder's dropout (each layer has its own).": lambda drop: stack(start, drop_each=drop),
            "the embeddings are dropped twice (dropout before and after adding the positional encoding): apply "
            "self.dropout once, to embedding * sqrt(d_model) + positions.": lambda drop: stack(drop(drop(scaled) + pe)),
            "the embeddings are dropped twice in a row: apply self.dropout once.":
                lambda drop: stack(drop(drop(start))),
        })



def _stack_variant(decoder: nn.Module, twins: list[nn.TransformerDecoderLayer], tgt: Tensor, memory: Tensor,
                   tgt_b: Tensor | None, src_b: Tensor | None, d_model: int, max_seq_length: int, *,
                   chained: bool = True, layers: slice = slice(None), **embedding: Any) -> Tensor:
    """The stack computed with the built-in twins, in a wrong (or, with the defaults, the right) way."""
    return builtin_stack(decoder, tgt, d_model, max_seq_length, twins[layers],
                         lambda twin, h: twin(h, memory, tgt_mask=tgt_b, memory_mask=src_b), chained=chained,
                         **embedding)


def _decoder_mistakes(decoder: nn.Module, twins: list[nn.TransformerDecoderLayer], tgt: Tensor, memory: Tensor,
                      src_mask: Tensor | None, tgt_mask: Tensor | None, tgt_b: Tensor | None,
                      src_b: Tensor | None, d_model: int, max_seq_length: int) -> dict[str, Callable[[], Any]]:
    def v(tb: Tensor | None = tgt_b, sb: Tensor | None = src_b, **kwargs: Any) -> Callable[[], Tensor]:
        return lambda: _stack_variant(decoder, twins, tgt, memory, tb, sb, d_model, max_seq_length, **kwargs)

    mistakes: dict[str, Callable[[], Any]] = {
        "your Decoder wires the stack right, but its layers differ from nn.TransformerDecoderLayer: fix "
        "DecoderLayer first (checks.check_decoder_layer says what is wrong), or build the stack from "
        "course_utils.reference.DecoderLayer meanwhile.":
            lambda: own_layers_output(decoder, tgt, d_model, max_seq_length, memory, src_mask, tgt_mask),
        "the embeddings are not multiplied by sqrt(d_model) (section 3.4): "
        "self.embedding(tgt) * math.sqrt(d_model), then the positional encoding.": v(scale=1.0),
        "the embeddings are divided by sqrt(d_model); section 3.4 multiplies them by sqrt(d_model).":
            v(scale=1 / math.sqrt(d_model)),
        "the embeddings are scaled after adding the positional encoding: scale first, "
        "embedding(tgt) * sqrt(d_model), then add the positions.": v(pe_first=True),
        "the positional encoding is missing: self.positional_encoding(embedding * sqrt(d_model)).":
            v(with_pe=False),
        "each layer is applied to the embeddings instead of the previous layer's output: "
        "x = layer(x, memory, src_mask, tgt_mask) in the loop.": v(chained=False),
        "only the first layer is applied: loop over all of self.layers.": v(layers=slice(0, 1)),
    }
    if tgt_b is not None:
        mistakes["tgt_mask is not passed down to the layers: layer(x, memory, src_mask, tgt_mask)."] = v(tb=None)
    if src_b is not None:
        mistakes["src_mask is not passed down to the layers: layer(x, memory, src_mask, tgt_mask)."] = v(sb=None)
    return mistakes


@steady
def check_decoder(Decoder: type[nn.Module], seed: int = 0, batch: int = 2, lt: int = 5, ls: int = 7,
                  vocab_size: int = 11, d_model: int = 16, num_layers: int = 2, num_heads: int = 4,
                  d_ff: int = 32) -> None:
    """Check a ``Decoder`` class: scaled embedding + positional encoding + dropout, then the
    layers in a loop, against ``nn.TransformerDecoderLayer`` copies of its layers.

    Structure (N distinct layers in an ``nn.ModuleList``), determinism in eval mode, causality
    (a position never sees later target tokens), the source padding mask, equality with the
    built-in stack for causal and padded masks and none, float32 and float64, gradients, on
    every available device. ``ls != lt`` in every call.
    """
    _validate_sizes(lt, ls, d_model, num_heads)
    max_seq_length = 64
    cls = expect_module_class(Decoder, "Decoder")
    check = Check("Decoder")
    check.refuse_answer_key(cls)
    built = (f"Decoder({vocab_size}, {d_model}, num_layers={num_layers}, num_heads={num_heads}, "
             f"d_ff={d_ff}, dropout=0.1, max_seq_length={max_seq_length})")
    with seeded(seed):
        decoder = check.call(cls, vocab_size, d_model, num_layers=num_layers, num_heads=num_heads, d_ff=d_ff,
                             dropout=0.1, max_seq_length=max_seq_length, what=built, on_error=_SHAPE_HINTS)
    expect_stack_input(decoder, "Decoder", vocab_size, d_model)
    layers = expect_attribute(decoder, "Decoder", "layers",
                              "nn.ModuleList(DecoderLayer(...) for _ in range(num_layers))")
    if isinstance(layers, (list, tuple)):
        fail("Decoder.layers is a Python list: PyTorch does not see the modules inside it (their "
             "parameters are not trained, .to(device) does not move them). Use "
             "nn.ModuleList([DecoderLayer(...) for _ in range(num_layers)]).")
    if not isinstance(layers, nn.ModuleList):
        fail(f"Decoder.layers should be an nn.ModuleList of DecoderLayer, but it is {describe(layers)}.")
    if len(layers) != num_layers:
        fail(f"Decoder.layers holds {len(layers)} layers, but the decoder was built with "
             f"num_layers={num_layers}.")
    if len({id(layer) for layer in layers}) < num_layers:
        fail("Decoder.layers holds the same layer object several times ([layer] * N repeats one layer, "
             "so all layers share one set of weights). Build a new DecoderLayer(...) for each: "
             "nn.ModuleList(DecoderLayer(...) for _ in range(num_layers)).")
    for i, layer in enumerate(layers):
        _expect_layer_structure(layer, f"Decoder.layers[{i}]", d_model, num_heads, d_ff, 0.1)
    shared = {p.data_ptr() for layer in layers for p in layer.parameters()}
    if len(shared) < sum(1 for layer in layers for _ in layer.parameters()):
        fail("the layers in Decoder.layers share parameters: each DecoderLayer must have its own weights; "
             "build each one with its own DecoderLayer(...) call.")
    expect_default_depth(check, cls, "Decoder", vocab_size, seed)
    randomize_norms([decoder], seed + 1)
    decoder.eval()
    what = "Decoder.forward(tgt, memory, src_mask, tgt_mask)"

    for device, dtype, where in devices_and_dtypes(decoder):
        twins = [_builtin_twin(layer, d_model, num_heads, d_ff) for layer in layers]
        with seeded(seed + 2):
            tgt = torch.randint(0, vocab_size, (batch, lt)).to(device)
            memory = torch.randn(batch, ls, d_model, dtype=dtype).to(device)
        masks = _masks(batch, lt, ls, device, seed + 3)
        watched = {f"layers[{i}]": layer for i, layer in enumerate(layers)}
        runner = _Runner(check, decoder, watched, lambda calls, finished: _layer_routing(
            calls, num_layers, lt, ls, masks.src, masks.causal, finished), "Decoder",
            " So the error is in your DecoderLayer: checks.check_decoder_layer(DecoderLayer) explains it.")
        with torch.no_grad():
            if device.type == "cpu" and dtype == torch.float32:
                _expect_properties(runner, decoder, tgt, memory, masks, _redraw_tokens(vocab_size), what, where, 1,
                                   "once, on the scaled embeddings plus the positional encoding, before the "
                                   "first layer", list(layers))
            for label, src_mask, tgt_mask in _mask_cases(masks):
                runner.routing = lambda calls, finished, s=src_mask, t=tgt_mask: _layer_routing(
                    calls, num_layers, lt, ls, s, t, finished)
                case_what = f"{what} with {label}, Lt={lt}, Ls={ls}{where}"
                args = (tgt, memory) if src_mask is None else (tgt, memory, src_mask, tgt_mask)
                got = runner(*args, what=case_what)
                tgt_b, src_b = _builtin_masks(src_mask, tgt_mask, batch, num_heads, lt, ls)
                want = _stack_variant(decoder, twins, tgt, memory, tgt_b, src_b, d_model, max_seq_length)
                runner.explain_mismatch(got, want, case_what, "the built-in stack's")
                expect_close(got, want, f"the output of {case_what}",
                             mistakes=_decoder_mistakes(decoder, twins, tgt, memory, src_mask, tgt_mask,
                                                        tgt_b, src_b, d_model, max_seq_length),
                             shape_hint="the decoder returns (B, Lt, d_model): one vector per target token.",
                             hint="the decoder is dropout(positional_encoding(embedding(tgt) * "
                                  "sqrt(d_model))) followed by x = layer(x, memory, src_mask, tgt_mask) "
                                  "for each layer.")

    decoder.to(device="cpu", dtype=torch.float32)
    _expect_stack_dropout(check, decoder, layers, d_model, num_heads, d_ff, batch, lt, ls, vocab_size,
                          max_seq_length, seed)

    # Gradients reach memory and the embedding table.
    decoder.to(device="cpu", dtype=torch.float64).zero_grad()
    twins = [_builtin_twin(layer, d_model, num_heads, d_ff) for layer in layers]
    masks = _masks(batch, lt, ls, torch.device("cpu"), seed + 3)
    with seeded(seed + 4):
        tgt = torch.randint(0, vocab_size, (batch, lt))
        memory = torch.randn(batch, ls, d_model, dtype=torch.float64)
    (m_s,), (m_t,) = leaf_copies(memory), leaf_copies(memory)
    got = check.call(decoder, tgt, m_s, masks.src, masks.tgt, what=f"{what} for gradients")
    tgt_b, src_b = _builtin_masks(masks.src, masks.tgt, batch, num_heads, lt, ls)
    (emb_t,) = leaf_copies(decoder.embedding.weight)
    pe_table = sinusoidal_positions(decoder, lt, d_model, max_seq_length, emb_t)
    x = emb_t[tgt] * math.sqrt(d_model) + pe_table
    for twin in twins:
        x = twin(x, m_t, tgt_mask=tgt_b, memory_mask=src_b)
    compare_gradients(got, x, {"memory": m_s, "embedding.weight": decoder.embedding.weight},
                      {"memory": m_t, "embedding.weight": emb_t}, "Decoder's output", seed + 5)
    layers_text = f"{num_layers} distinct layer{'s' if num_layers != 1 else ''}"
    check.passed(f"embedding * sqrt(d_model) + positions, then {layers_text}; matches the built-in stack "
                 f"(masks passed down, Lt != Ls, float32/float64, gradients); never sees the future; "
                 f"on {device_names()}")
