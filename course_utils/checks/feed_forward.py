"""Autograders for chapter 03_feed_forward: the FFN equation and ``FeedForwardNetwork``."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils.checks.harness import (
    Check,
    compare_gradients,
    describe,
    device_names,
    devices,
    expect_callable,
    expect_close,
    expect_linear,
    expect_module_class,
    expect_repeatable,
    fail,
    leaf_copies,
    seeded,
)
from course_utils.reference.feed_forward import FeedForwardNetwork as _ReferenceFFN
from course_utils.reference.feed_forward import feed_forward as _reference_feed_forward

_W1_HINTS = {
    "cannot be multiplied": "in the paper's notation W1 is (d_model, d_ff) and W2 is (d_ff, d_model): "
                            "x @ W1 and hidden @ W2 need no transpose.",
    "must match the size": "check the shapes: b1 has d_ff entries and is added to x @ W1; b2 has d_model "
                           "entries and is added to hidden @ W2.",
}

_UNPACK_HINTS = {
    "values to unpack": "the FFN acts on the last axis only and must accept any leading axes: "
                        "nn.Linear already does, so do not unpack or reshape x.",
    "unexpected keyword argument": "keep the constructor's signature: "
                                   "FeedForwardNetwork(d_model, d_ff, dropout=0.1).",
}


def _sizes(d_model: int, d_ff: int) -> list[tuple[int, int]]:
    """``(d_model, d_ff)`` and the two swapped, so that d_ff > d_model and d_ff < d_model are both run."""
    return [(d_model, d_ff)] + ([(d_ff, d_model)] if d_ff != d_model else [])


# --------------------------------------------------------------------------------------
# feed_forward(x, W1, b1, W2, b2): the equation with explicit weights
# --------------------------------------------------------------------------------------


def _equation_mistakes(x: Tensor, W1: Tensor, b1: Tensor, W2: Tensor,
                       b2: Tensor) -> dict[str, Callable[[], Tensor]]:
    """Outputs of the usual wrong versions of max(0, x W1 + b1) W2 + b2."""
    pre = lambda: x @ W1 + b1  # noqa: E731 - the hidden pre-activation (..., d_ff)
    return {
        "there is no activation between the two layers. Without max(0, .) the two matrices "
        "collapse into one linear map (x W1 W2): apply torch.relu to x @ W1 + b1.":
            lambda: pre() @ W2 + b2,
        "this is GELU, not ReLU: the paper's FFN uses max(0, x W1 + b1), i.e. torch.relu.":
            lambda: F.gelu(pre()) @ W2 + b2,
        "this is a sigmoid, not ReLU: the paper's FFN uses max(0, x W1 + b1), i.e. torch.relu.":
            lambda: torch.sigmoid(pre()) @ W2 + b2,
        "this is tanh, not ReLU: the paper's FFN uses max(0, x W1 + b1), i.e. torch.relu.":
            lambda: torch.tanh(pre()) @ W2 + b2,
        "the ReLU is applied after the second layer instead of between the two: "
        "max(0, x W1 + b1) W2 + b2, the ReLU acts on the d_ff hidden units.":
            lambda: torch.relu(pre() @ W2 + b2),
        "there is a ReLU on the output as well: only the hidden units go through max(0, .); "
        "the FFN's output must be able to be negative.":
            lambda: torch.relu(torch.relu(pre()) @ W2 + b2),
        "b1 is added after the ReLU: it belongs inside, max(0, x W1 + b1).":
            lambda: (torch.relu(x @ W1) + b1) @ W2 + b2,
        "b1 is missing: max(0, x W1 + b1).": lambda: torch.relu(x @ W1) @ W2 + b2,
        "b2 is missing: ... W2 + b2.": lambda: torch.relu(pre()) @ W2,
    }


def check_feed_forward(feed_forward: Callable[..., Tensor], seed: int = 0,
                       batch_shape: tuple[int, ...] = (2, 5), d_model: int = 8, d_ff: int = 12) -> None:
    """Check ``feed_forward(x, W1, b1, W2, b2) = max(0, x W1 + b1) W2 + b2``.

    Paper notation: ``W1`` is ``(d_model, d_ff)``, ``W2`` is ``(d_ff, d_model)``. Runs with
    d_ff > d_model and d_ff < d_model, the given leading axes and one more, float32 and
    float64, on every available device; compares values and the gradients of all five inputs.
    """
    fn = expect_callable(feed_forward, "feed_forward")
    check = Check("feed_forward")
    check.refuse_answer_key(fn)
    for dm, dff in _sizes(d_model, d_ff):
        for device in devices():
            for dtype in (torch.float32, torch.float64):
                for lead in (batch_shape, (3, *batch_shape)):
                    with seeded(seed):
                        x = torch.randn(*lead, dm, dtype=dtype).to(device)
                        W1 = (torch.randn(dm, dff, dtype=dtype) / dm ** 0.5).to(device)
                        b1 = torch.randn(dff, dtype=dtype).to(device)
                        W2 = (torch.randn(dff, dm, dtype=dtype) / dff ** 0.5).to(device)
                        b2 = torch.randn(dm, dtype=dtype).to(device)
                    names = ("x", "W1", "b1", "W2", "b2")
                    student = dict(zip(names, leaf_copies(x, W1, b1, W2, b2)))
                    ours = dict(zip(names, leaf_copies(x, W1, b1, W2, b2)))
                    what = (f"feed_forward(x, W1, b1, W2, b2) with x {tuple(x.shape)}, d_model={dm}, "
                            f"d_ff={dff}, on {device.type} in {dtype}")
                    got = check.call(fn, *student.values(), what=what, on_error=_W1_HINTS)
                    want = _reference_feed_forward(*ours.values())
                    expect_close(got, want, f"the output of {what}",
                                 mistakes=_equation_mistakes(x, W1, b1, W2, b2),
                                 shape_hint="the output has the shape of x: (..., d_model). The FFN "
                                            "goes d_model -> d_ff -> d_model at every position.",
                                 hint="compute hidden = max(0, x @ W1 + b1), then hidden @ W2 + b2.")
                    compare_gradients(got, want, student, ours, what, seed)
    check.passed(f"values, d_ff > d_model and d_ff < d_model, leading axes, gradients, "
                 f"float32/float64 on {device_names()}")


# --------------------------------------------------------------------------------------
# FeedForwardNetwork(d_model, d_ff, dropout=0.1)
# --------------------------------------------------------------------------------------


def _build(check: Check, cls: type[nn.Module], d_model: int, d_ff: int, seed: int,
           **kwargs: float) -> nn.Module:
    arguments = ", ".join([str(d_model), str(d_ff), *(f"{k}={v}" for k, v in kwargs.items())])
    with seeded(seed):
        return check.call(cls, d_model, d_ff, what=f"FeedForwardNetwork({arguments})",
                          on_error=_UNPACK_HINTS, **kwargs)


def _expect_structure(ffn: nn.Module, d_model: int, d_ff: int, dropout: float) -> None:
    """linear1, linear2, dropout exist with the right sizes and p; no other parameters."""
    wanted = {"linear1": "nn.Linear(d_model, d_ff)", "linear2": "nn.Linear(d_ff, d_model)",
              "dropout": "nn.Dropout(dropout)"}
    for name, construction in wanted.items():
        if getattr(ffn, name, None) is None:
            fail(f"FeedForwardNetwork has no attribute {name}: in __init__, create "
                 f"self.{name} = {construction} (the check relies on these names).")
    expect_linear(ffn, "FeedForwardNetwork", "linear1", d_model, d_ff)
    expect_linear(ffn, "FeedForwardNetwork", "linear2", d_ff, d_model)
    if not isinstance(ffn.dropout, nn.Dropout):
        fail(f"FeedForwardNetwork.dropout should be an nn.Dropout(dropout) module, but it is "
             f"{describe(ffn.dropout)}. Keep the probability inside the module: "
             f"self.dropout = nn.Dropout(dropout).")
    if abs(ffn.dropout.p - dropout) > 1e-12:
        fail(f"FeedForwardNetwork({d_model}, {d_ff}, dropout={dropout}).dropout has p={ffn.dropout.p}, "
             f"expected {dropout}: pass the constructor's argument on, nn.Dropout(dropout) "
             f"(and keep the default dropout=0.1 in the signature).")
    expected = 2 * d_model * d_ff + d_ff + d_model
    count = sum(p.numel() for p in ffn.parameters())
    if count != expected:
        fail(f"FeedForwardNetwork({d_model}, {d_ff}) has {count} parameters, expected "
             f"2 * d_model * d_ff + d_ff + d_model = {expected} (linear1 and linear2 only).")


def _twin(ffn: nn.Module, d_model: int, d_ff: int, dropout: float) -> nn.Module:
    """The answer key holding the student's weights, on the same device and dtype."""
    twin = _ReferenceFFN(d_model, d_ff, dropout)
    twin.load_state_dict({f"{layer}.{p}": getattr(getattr(ffn, layer), p).detach()
                          for layer in ("linear1", "linear2") for p in ("weight", "bias")})
    return twin.to(device=ffn.linear1.weight.device, dtype=ffn.linear1.weight.dtype).train(ffn.training)


def _module_mistakes(ffn: nn.Module, x: Tensor) -> dict[str, Callable[[], Tensor]]:
    """Eval-mode outputs of the usual wrong forwards, from the student's own layers."""
    def run(activation: Callable[[Tensor], Tensor], after: Callable[[Tensor], Tensor] = lambda t: t) -> Tensor:
        with torch.no_grad():
            return after(ffn.linear2(activation(ffn.linear1(x))))

    return {
        "there is no activation between linear1 and linear2, so the two layers collapse into one "
        "linear map: apply torch.relu to linear1's output.": lambda: run(lambda t: t),
        "this is GELU, not ReLU: the paper's FFN is max(0, x W1 + b1) W2 + b2 (section 3.3), "
        "i.e. torch.relu.": lambda: run(F.gelu),
        "this is a sigmoid, not ReLU: use torch.relu.": lambda: run(torch.sigmoid),
        "this is tanh, not ReLU: use torch.relu.": lambda: run(torch.tanh),
        "the ReLU is applied after linear2 instead of between the two layers: "
        "linear2(relu(linear1(x))).": lambda: run(lambda t: t, torch.relu),
        "there is a ReLU after linear2 as well: only the hidden units go through the ReLU; "
        "the output must be able to be negative.": lambda: run(torch.relu, torch.relu),
    }


def _expect_deterministic_in_eval(check: Check, ffn: nn.Module, x: Tensor, where: str) -> None:
    what = f"FeedForwardNetwork.forward in eval mode on x {tuple(x.shape)}{where}"
    expect_repeatable(lambda: check.call(ffn, x, what=what, on_error=_UNPACK_HINTS),
                      f"in eval mode (model.eval()) two calls on the same input give different outputs{where}: "
                      f"dropout must be off in eval mode. Use the module self.dropout (nn.Dropout follows "
                      f".train()/.eval()), or F.dropout(h, p, training=self.training); F.dropout's "
                      f"default training=True keeps dropping in eval mode.")


def _check_eval_values(check: Check, ffn: nn.Module, d_model: int, d_ff: int, seed: int,
                       batch: int, length: int) -> None:
    """Eval mode: deterministic, equal to the answer key with the same weights, any leading axes."""
    ffn.eval()
    for device in devices():
        for dtype in (torch.float32, torch.float64):
            ffn.to(device=device, dtype=dtype)
            twin = _twin(ffn, d_model, d_ff, 0.1)
            where = f" on {device.type} in {dtype}"
            for lead in ((batch, length), (3, batch, length)):
                with seeded(seed + 1):
                    x = torch.randn(*lead, d_model, dtype=dtype).to(device)
                _expect_deterministic_in_eval(check, ffn, x, where)
                what = f"FeedForwardNetwork({d_model}, {d_ff}) in eval mode on x {tuple(x.shape)}{where}"
                got = check.call(ffn, x, what=what, on_error=_UNPACK_HINTS)
                with torch.no_grad():
                    want = twin(x)
                expect_close(got, want, f"the output of {what}", mistakes=_module_mistakes(ffn, x),
                             shape_hint="the output has the shape of x: (..., d_model).",
                             hint="forward should be linear2(dropout(relu(linear1(x)))).")
    # Gradients of the input and of both weight matrices (CPU, float32).
    ffn.to(device="cpu", dtype=torch.float32).zero_grad()
    twin = _twin(ffn, d_model, d_ff, 0.1)
    with seeded(seed + 2):
        x = torch.randn(batch, length, d_model)
    x_s, x_t = leaf_copies(x, x)
    got = check.call(ffn, x_s, what="FeedForwardNetwork.forward for gradients")
    want = twin(x_t)
    compare_gradients(
        got, want, {"x": x_s, "linear1.weight": ffn.linear1.weight, "linear2.weight": ffn.linear2.weight},
        {"x": x_t, "linear1.weight": twin.linear1.weight, "linear2.weight": twin.linear2.weight},
        "the output of FeedForwardNetwork", seed)


def _check_dropout(check: Check, cls: type[nn.Module], d_model: int, d_ff: int, seed: int,
                   batch: int, length: int) -> None:
    """Train mode: dropout on the hidden units, drawn as nn.Dropout draws it; off again in eval."""
    p = 0.5
    ffn = _build(check, cls, d_model, d_ff, seed, dropout=p)
    _expect_structure(ffn, d_model, d_ff, p)
    for device in devices():
        ffn.to(device).train()
        twin = _twin(ffn, d_model, d_ff, p)
        with seeded(seed + 3):
            x = torch.randn(batch, length, d_model).to(device)
        with torch.no_grad():
            eval_out = twin.eval()(x)
        twin.train()
        what = f"FeedForwardNetwork({d_model}, {d_ff}, dropout={p}) in training mode on {device.type}"
        with seeded(seed + 4):
            got = check.call(ffn, x, what=what)
        with seeded(seed + 4), torch.no_grad():
            want = twin(x)

        def replay(forward: Callable[[], Tensor]) -> Callable[[], Tensor]:
            def run() -> Tensor:
                with seeded(seed + 4), torch.no_grad():
                    return forward()
            return run

        hidden = lambda: torch.relu(ffn.linear1(x))  # noqa: E731
        drop = lambda t, q=p: F.dropout(t, q, training=True)  # noqa: E731
        mistakes = {
            "in training mode your output equals the eval-mode output: dropout is never applied. "
            "Call self.dropout on the hidden activations: linear2(dropout(relu(linear1(x)))).":
                lambda: eval_out,
            "dropout is applied after linear2, to the output. The FFN's dropout acts on the d_ff "
            "hidden units: linear2(dropout(relu(linear1(x)))) (the sublayer's output gets its own "
            "dropout in the encoder layer, chapter 5).":
                replay(lambda: drop(ffn.linear2(hidden()))),
            "dropout is applied to the input x before linear1; it belongs on the hidden units: "
            "linear2(dropout(relu(linear1(x)))).":
                replay(lambda: ffn.linear2(torch.relu(ffn.linear1(drop(x))))),
            "dropout is applied twice, to the hidden units and to the output: only once, on the "
            "hidden units.":
                replay(lambda: drop(ffn.linear2(drop(hidden())))),
            "the dropout probability is fixed at 0.1 instead of the constructor's `dropout`: use "
            "self.dropout = nn.Dropout(dropout) in forward.":
                replay(lambda: ffn.linear2(drop(hidden(), 0.1))),
        }
        expect_close(got, want, f"the output of {what}", mistakes=mistakes,
                     hint="in training mode the check compares your output with "
                          "linear2(dropout(relu(linear1(x)))), drawing the same random dropout mask "
                          "(same seed) as nn.Dropout does: apply self.dropout once, to the hidden "
                          "activations, and nowhere else.")
        ffn.eval()
        back = check.call(ffn, x, what=f"FeedForwardNetwork.forward after .eval() on {device.type}")
        expect_close(back, eval_out, f"the output after switching back to eval mode on {device.type}",
                     hint="in eval mode dropout must do nothing: use self.dropout (nn.Dropout) or "
                          "F.dropout(..., training=self.training).")


def check_feed_forward_network(FeedForwardNetwork: type[nn.Module], seed: int = 0, batch: int = 2,
                               length: int = 5, d_model: int = 16, d_ff: int = 24) -> None:
    """Check a ``FeedForwardNetwork`` class against the answer key with copied weights.

    Structure (``linear1``, ``linear2``, ``dropout`` with the given p, no other parameters)
    with d_ff > d_model and d_ff < d_model; eval mode: deterministic, values for
    ``(B, L, d)`` and ``(A, B, L, d)``, float32/float64, every device, gradients of the input
    and the weights; train mode: dropout on the hidden units, the same random draws as
    ``nn.Dropout``, off again after ``.eval()``.
    """
    cls = expect_module_class(FeedForwardNetwork, "FeedForwardNetwork")
    check = Check("FeedForwardNetwork")
    check.refuse_answer_key(cls)
    for dm, dff in _sizes(d_model, d_ff):
        ffn = _build(check, cls, dm, dff, seed)
        _expect_structure(ffn, dm, dff, 0.1)
        _check_eval_values(check, ffn, dm, dff, seed, batch, length)
    _check_dropout(check, cls, d_model, d_ff, seed, batch, length)
    check.passed(f"structure, eval values (d_ff above and below d_model, leading axes, float32/float64), "
                 f"gradients, dropout only in training on {device_names()}")
