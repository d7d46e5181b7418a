"""Autograders for chapter 04_positional_encoding: ``PositionalEncoding`` and ``rotation_for_offset``.

The expected table is a float64 evaluation of the paper's formula written here on its own
(``10000 ** (2i / d)`` with ``torch.pow``), independent of the answer key's ``exp``/``log``
form. A correct float32 table built the usual way is off by about ``1e-7 * pos`` (the
angle ``pos * w_i`` is rounded to float32), so table comparisons allow an error that grows
with the position: ``1e-5 + 1e-6 * pos``, ten times the rounding, still far below what any
wrong formula gives.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from course_utils.checks.harness import (
    Check,
    compare_gradients,
    describe,
    device_names,
    devices,
    expect_callable,
    expect_close,
    expect_close_within,
    expect_module_class,
    expect_repeatable,
    expect_tensor,
    fail,
    leaf_copies,
    seeded,
)

DEFAULT_MAX_SEQ_LENGTH = 5000


# --------------------------------------------------------------------------------------
# The formula, in float64, and its usual wrong variants
# --------------------------------------------------------------------------------------


def _angles(max_seq_length: int, d_model: int, *, base: float = 10000.0,
            exponent: Callable[[Tensor, int], Tensor] | None = None, first_position: int = 0) -> Tensor:
    """``pos / base^(exponent(j))`` for every position and dimension ``j``, float64 ``(L, d)``."""
    j = torch.arange(d_model, dtype=torch.float64)
    pair = torch.div(j, 2, rounding_mode="floor")  # i for dimensions 2i and 2i+1
    power = exponent(j, d_model) if exponent else 2 * pair / d_model
    position = torch.arange(first_position, first_position + max_seq_length, dtype=torch.float64)
    return position[:, None] / torch.pow(torch.tensor(base, dtype=torch.float64), power)


def _interleave(angles: Tensor, even: Callable[[Tensor], Tensor] = torch.sin,
                odd: Callable[[Tensor], Tensor] = torch.cos) -> Tensor:
    table = torch.empty_like(angles)
    table[:, 0::2] = even(angles[:, 0::2])
    table[:, 1::2] = odd(angles[:, 1::2])
    return table


def formula_table(max_seq_length: int, d_model: int) -> Tensor:
    """``PE(pos, 2i) = sin(pos / 10000^(2i/d))``, ``PE(pos, 2i+1) = cos(...)``: float64 ``(L, d)``."""
    return _interleave(_angles(max_seq_length, d_model))


def _table_mistakes(max_seq_length: int, d_model: int) -> dict[str, Callable[[], Tensor]]:
    """Float64 tables of the usual wrong formulas, keyed by the explanation to show."""
    L, d = max_seq_length, d_model

    def halves() -> Tensor:  # sin of all frequencies, then cos of all frequencies
        angles = _angles(L, d)[:, 0::2]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)[:, :d]

    return {
        "sin and cos are swapped: sin goes on the even dimensions (pe[:, 0::2]) and cos on the "
        "odd ones (pe[:, 1::2]).": lambda: _interleave(_angles(L, d), torch.cos, torch.sin),
        "the exponent is i/d_model instead of 2i/d_model: with i counting the sin/cos pairs "
        "(0, 1, 2, ...), the pair (2i, 2i+1) uses 10000^(2i/d_model). torch.arange(0, d_model, 2) "
        "already gives the even numbers 2i.":
            lambda: _interleave(_angles(L, d, exponent=lambda j, n: torch.div(j, 2, rounding_mode="floor") / n)),
        "the exponent is 4i/d_model: torch.arange(0, d_model, 2) already gives 2i, so do not "
        "multiply it by 2 again.":
            lambda: _interleave(_angles(L, d, exponent=lambda j, n: 4 * torch.div(j, 2, rounding_mode="floor") / n)),
        "the cos dimensions use their own index: dimension 2i+1 must use the same frequency as "
        "dimension 2i, 10000^(2i/d_model), not 10000^((2i+1)/d_model).":
            lambda: _interleave(_angles(L, d, exponent=lambda j, n: j / n)),
        "the base is 1000 instead of 10000: the wavelengths go from 2pi to 10000 * 2pi.":
            lambda: _interleave(_angles(L, d, base=1000.0)),
        "the logarithm is missing: 10000^(-2i/d) = exp(-2i * ln(10000) / d), i.e. "
        "torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model)); exp(-2i * "
        "10000 / d) makes every frequency but the first vanish.": lambda: _missing_log_table(L, d),
        "the positions start at 1: position p is torch.arange(0, max_seq_length), starting at 0.":
            lambda: _interleave(_angles(L, d, first_position=1)),
        "sin and cos are concatenated in two halves: they must alternate, sin on the even "
        "dimensions (pe[:, 0::2]) and cos on the odd ones (pe[:, 1::2]).": halves,
        "the odd dimensions hold sin as well: PE(pos, 2i+1) is the cos.":
            lambda: _interleave(_angles(L, d), torch.sin, torch.sin),
    }


def _missing_log_table(max_seq_length: int, d_model: int) -> Tensor:
    """exp(-2i * 10000 / d) as the frequency: every frequency but the first underflows to 0."""
    pair = torch.arange(0, d_model, 2, dtype=torch.float64)
    freq = torch.exp(pair * (-10000.0 / d_model))
    angles = torch.arange(max_seq_length, dtype=torch.float64)[:, None] * freq.repeat_interleave(2)[:d_model]
    return _interleave(angles)


def _position_tolerance(length: int) -> Tensor:
    """``1e-5 + 1e-6 * pos`` as a column ``(L, 1)``: float32 rounding of the angle grows with pos."""
    return 1e-5 + 1e-6 * torch.arange(length, dtype=torch.float64)[:, None]


# --------------------------------------------------------------------------------------
# PositionalEncoding(d_model, max_seq_length=5000)
# --------------------------------------------------------------------------------------

_CONSTRUCTOR_HINTS = {
    "unexpected keyword argument": "keep the constructor's signature: PositionalEncoding(d_model, "
                                   "max_seq_length=5000).",
    "required positional argument": "keep the constructor's signature: PositionalEncoding(d_model, "
                                    "max_seq_length=5000). This course's PositionalEncoding has no "
                                    "dropout argument: the encoder applies dropout after it (chapter 5).",
    "must match the size": "the pieces of the table do not fit: pe is (max_seq_length, d_model); "
                           "pe[:, 0::2] and pe[:, 1::2] each take d_model // 2 columns, one per "
                           "frequency, so build torch.arange(0, d_model, 2) frequencies and a "
                           "position column of shape (max_seq_length, 1).",
}


def _build(check: Check, cls: type[nn.Module], d_model: int, max_seq_length: int | None) -> nn.Module:
    if max_seq_length is None:
        return check.call(cls, d_model, what=f"PositionalEncoding({d_model})", on_error=_CONSTRUCTOR_HINTS)
    return check.call(cls, d_model, max_seq_length=max_seq_length, on_error=_CONSTRUCTOR_HINTS,
                      what=f"PositionalEncoding({d_model}, max_seq_length={max_seq_length})")


def _expect_pe_buffer(module: nn.Module, d_model: int, max_seq_length: int, built: str) -> Tensor:
    """``module.pe`` is a float32 buffer ``(1, max_seq_length, d_model)`` in the state dict."""
    if "pe" in dict(module.named_parameters()) or isinstance(getattr(module, "pe", None), nn.Parameter):
        fail(f"{built}.pe is an nn.Parameter, so it would be trained and handed to the optimizer. "
             f"The encoding is fixed (section 3.5): register it as a buffer instead, "
             f"self.register_buffer('pe', pe), which is saved in the state dict and moved by "
             f".to(device) without being learned.")
    pe = getattr(module, "pe", None)
    if pe is None:
        fail(f"{built} has no attribute pe: in __init__, build the table and register it with "
             f"self.register_buffer('pe', pe) (the check reads it under that name).")
    if not isinstance(pe, Tensor):
        fail(f"{built}.pe should be a tensor registered with self.register_buffer('pe', pe), but it "
             f"is {describe(pe)}.")
    if "pe" not in dict(module.named_buffers()):
        fail(f"{built}.pe is a plain tensor attribute, not a registered buffer: it would not move "
             f"with model.to(device) and is not saved in the state dict. Use "
             f"self.register_buffer('pe', pe) instead of self.pe = pe.")
    if "pe" not in module.state_dict():
        fail(f"{built}.pe is a buffer but is not in the state dict (persistent=False): register it "
             f"with the default persistent=True, self.register_buffer('pe', pe).")
    try:  # "moves with .to(device)", testable without a GPU: the meta device holds no data
        moved = copy.deepcopy(module).to("meta")
    except Exception:  # noqa: BLE001 - a module that cannot be copied: named_buffers() said enough
        moved = module
    if moved is not module and (getattr(moved, "pe", None) is None or moved.pe.device.type != "meta"):
        fail(f"{built}.pe does not move with .to(device): register it with self.register_buffer('pe', pe).")
    if pe.requires_grad:
        fail(f"{built}.pe requires grad: the encoding is a constant. Build it from plain tensors "
             f"(no requires_grad=True) before registering it as a buffer.")
    if not pe.is_floating_point():
        fail(f"{built}.pe has dtype {pe.dtype}: build it from floating-point positions "
             f"(torch.arange(..., dtype=torch.float) or .float()), or sin and cos are lost.")
    if pe.dtype != torch.float32:
        fail(f"{built}.pe has dtype {pe.dtype}, expected torch.float32 (the default dtype, like the "
             f"embeddings it is added to): convert the table with .float() before registering it.")
    expected = (1, max_seq_length, d_model)
    shape = tuple(pe.shape)
    if shape != expected:
        if shape == (max_seq_length, d_model):
            reason = ("the batch axis is missing: register pe.unsqueeze(0), of shape (1, max_seq_length, "
                      "d_model), so that forward adds self.pe[:, :L] to every sequence of the batch.")
        elif shape == (max_seq_length, 1, d_model):
            reason = ("this is the sequence-first layout (L, 1, d_model) of PyTorch's old tutorial; this "
                      "course is batch-first: register pe.unsqueeze(0), shaped (1, max_seq_length, d_model).")
        elif shape == (1, d_model, max_seq_length) or shape == (d_model, max_seq_length):
            reason = ("positions and dimensions are swapped: row p of the table is the encoding of "
                      "position p, so the table is (max_seq_length, d_model) before unsqueeze(0).")
        else:
            reason = "one row per position, one column per dimension, and a batch axis of size 1 in front."
        fail(f"{built}.pe has shape {shape}, expected (1, max_seq_length, d_model) = {expected}: {reason}")
    return pe


def _locate_table(index: tuple[int, ...]) -> str:
    position, dim = index[-2], index[-1]
    kind = "sin" if dim % 2 == 0 else "cos"
    return f"position {position}, dimension {dim} (the {kind} of pair i={dim // 2})"


def _expect_table_values(pe: Tensor, max_seq_length: int, d_model: int, built: str) -> None:
    expect_close_within(
        pe[0], formula_table(max_seq_length, d_model), f"the table {built}.pe[0]",
        atol=_position_tolerance(max_seq_length), mistakes=_table_mistakes(max_seq_length, d_model),
        locate=_locate_table,
        hint="PE(pos, 2i) = sin(pos / 10000^(2i/d_model)) and PE(pos, 2i+1) = cos(pos / "
             "10000^(2i/d_model)), pos = 0, 1, ..., i = 0, 1, ..., d_model/2 - 1.")


def _forward_mistakes(x: Tensor, rows: Tensor) -> dict[str, Callable[[], Tensor]]:
    d_model = x.size(-1)
    return {
        "forward returns x unchanged: add the encodings, x + self.pe[:, :L].": lambda: x,
        "x is multiplied by sqrt(d_model) here: that scaling belongs to the embeddings (the "
        "encoder does it in chapter 5); PositionalEncoding only adds: x + self.pe[:, :L].":
            lambda: x * math.sqrt(d_model) + rows,
        "the encodings are subtracted: x + self.pe[:, :L].": lambda: x - rows,
        "the encodings are added twice.": lambda: x + 2 * rows,
    }


def _expect_output_shape(got: object, x: Tensor, max_seq_length: int, what: str) -> None:
    """Name the slicing mistake behind a wrong output shape (broadcasting hides it as a shape)."""
    if not isinstance(got, Tensor) or got.shape == x.shape:
        return
    batch, length, d_model = x.shape
    if tuple(got.shape) == (batch, max_seq_length, d_model):
        fail(f"{what} returned shape {tuple(got.shape)}, expected {tuple(x.shape)}: pe was not cut to "
             f"the input's length. self.pe[:L] slices the batch axis of pe (of size 1), which keeps all "
             f"{max_seq_length} rows; slice the positions, axis 1: self.pe[:, :x.size(1)].")
    if tuple(got.shape) == (batch, batch, d_model) and length == 1:
        fail(f"{what} returned shape {tuple(got.shape)}, expected {tuple(x.shape)}: the slice used the "
             f"batch size x.size(0); the length of the sequences is x.size(1) (x is batch-first, "
             f"(B, L, d_model)).")


def _check_forward(check: Check, module: nn.Module, pe: Tensor, seed: int, batch: int,
                   d_model: int, max_seq_length: int) -> None:
    """x + pe[:, :L] for L = 1, a middle length and the maximum, any dtype, every device, gradients."""
    with seeded(seed):
        middle = int(torch.randint(2, max(3, max_seq_length), ()).item()) if max_seq_length > 2 else 1
    lengths = [middle, *sorted({1, max_seq_length} - {middle})]  # a length > 1 first: clearer shape errors
    table = pe.detach().cpu()
    hints = {
        f"size of tensor b ({max_seq_length})": "pe was not cut to the input's length: self.pe[:L] slices the "
            "batch axis of pe (of size 1), which keeps everything. Slice the positions, axis 1: "
            "self.pe[:, :x.size(1)].",
        f"size of tensor b ({batch})": "the slice used the batch size x.size(0): the length of the "
            "sequences is x.size(1) (x is batch-first, (B, L, d_model)).",
        "must match the size": "forward should return x + self.pe[:, :L] with L = x.size(1), the "
            "sequence length: (B, L, d_model) + (1, L, d_model) broadcasts over the batch.",
    }
    for device in devices():
        module.to(device)
        if module.pe.device.type != device.type:
            fail(f"after model.to({device.type!r}), pe is still on {module.pe.device}: register it with "
                 f"self.register_buffer('pe', pe).")
        for dtype in (torch.float32, torch.float64):
            for length in lengths:
                with seeded(seed + length):
                    x = torch.randn(batch, length, d_model, dtype=dtype).to(device)
                original = x.clone()
                where = f"on x of shape {tuple(x.shape)} ({dtype}, on {device.type})"
                what = f"PositionalEncoding.forward {where}"
                got = expect_repeatable(
                    lambda: check.call(module, x, what=what, on_error=hints),
                    f"{what} gives a different output each time it is called on the same x: "
                    f"PositionalEncoding must be deterministic. Leave dropout out of it (the "
                    f"encoder applies dropout after adding the encodings, chapter 5).")
                if not torch.equal(x, original):
                    fail(f"{what} changed x in place (x += ... or x.add_): the caller's tensor must "
                         f"stay as it was. Return a new tensor: return x + self.pe[:, :L].")
                rows = table[:, :length].to(device=device, dtype=dtype)
                if isinstance(got, Tensor) and batch > 1 and tuple(got.shape) == (1, length, d_model) \
                        and torch.allclose(got.detach().to(dtype), rows, atol=1e-6):
                    fail(f"{what} returned the encodings alone, shape (1, L, d_model): add them to the "
                         f"input, return x + self.pe[:, :L].")
                _expect_output_shape(got, x, max_seq_length, what)
                expect_close(got, x + rows, f"the output of {what}", mistakes=_forward_mistakes(x, rows),
                             shape_hint="the output has the shape of x, (B, L, d_model): "
                                        "x + self.pe[:, :L], where the (1, L, d_model) slice "
                                        "broadcasts over the batch.",
                             hint="forward adds the first L rows of the table to every sequence "
                                  "of the batch, and nothing else (no dropout, no scaling).")
    module.to("cpu")
    with seeded(seed + 1):
        x = torch.randn(batch, max(1, max_seq_length // 2), d_model)
    x_s, x_t = leaf_copies(x, x)
    got = check.call(module, x_s, what="PositionalEncoding.forward for gradients")
    compare_gradients(got, x_t + table[:, : x.size(1)], {"x": x_s}, {"x": x_t},
                      "the output of PositionalEncoding", seed)


def check_positional_encoding(PositionalEncoding: type[nn.Module], seed: int = 0, batch: int = 3,
                              d_model: int = 16, max_seq_length: int = 40) -> None:
    """Check a ``PositionalEncoding`` class: the buffer ``pe`` and ``forward(x) = x + pe[:, :L]``.

    ``pe`` is a float32 buffer ``(1, max_seq_length, d_model)`` (not a parameter, in the
    state dict, moved by ``.to``, no grad) equal to the float64 formula, for the default
    ``max_seq_length=5000`` and a given one; forward adds exactly the first L rows for
    L = 1, a middle length and the maximum, keeps x's shape and dtype (float32 and float64)
    without modifying it, on every device, and passes gradients through.
    """
    cls = expect_module_class(PositionalEncoding, "PositionalEncoding")
    check = Check("PositionalEncoding")
    check.refuse_answer_key(cls)
    if d_model % 2:
        raise ValueError("check_positional_encoding needs an even d_model")
    default = _build(check, cls, d_model, None)
    pe = _expect_pe_buffer(default, d_model, DEFAULT_MAX_SEQ_LENGTH, f"PositionalEncoding({d_model})")
    _expect_table_values(pe, DEFAULT_MAX_SEQ_LENGTH, d_model, f"PositionalEncoding({d_model})")
    built = f"PositionalEncoding({d_model}, max_seq_length={max_seq_length})"
    module = _build(check, cls, d_model, max_seq_length)
    pe = _expect_pe_buffer(module, d_model, max_seq_length, built)
    _expect_table_values(pe, max_seq_length, d_model, built)
    _check_forward(check, module, pe, seed, batch, d_model, max_seq_length)
    if any(True for _ in module.parameters()):
        fail(f"{built} has parameters ({', '.join(n for n, _ in module.named_parameters())}): the "
             f"encoding is fixed and the module should have none.")
    check.passed(f"pe is a buffer (1, max_seq_length, d_model) matching the formula; forward adds "
                 f"the first L rows for L = 1 to the maximum, float32/float64, gradients on {device_names()}")


# --------------------------------------------------------------------------------------
# rotation_for_offset(k, d_model): PE(p + k) as a rotation of PE(p)
# --------------------------------------------------------------------------------------


def _rotations(angle: Tensor, *, transpose: bool = False, signs: tuple[int, int] = (1, -1),
               swap: bool = False) -> Tensor:
    """``[[cos b, s0 sin b], [s1 sin b, cos b]]`` per angle ``b`` (``(n,) -> (n, 2, 2)``)."""
    c, s = torch.cos(angle), torch.sin(angle)
    if swap:
        c, s = s, c
    r = torch.stack([torch.stack([c, signs[0] * s], -1), torch.stack([signs[1] * s, c], -1)], -2)
    return r.transpose(-2, -1) if transpose else r


def _pair_frequencies(d_model: int, *, base: float = 10000.0, per_pair: float = 2.0) -> Tensor:
    i = torch.arange(d_model // 2, dtype=torch.float64)
    return 1.0 / torch.pow(torch.tensor(base, dtype=torch.float64), per_pair * i / d_model)


def _rotation_mistakes(k: int, d_model: int) -> dict[str, Callable[[], Tensor]]:
    w = _pair_frequencies(d_model)
    angle = k * w
    return {
        "the rotation goes the wrong way: your matrices turn PE(p) into PE(p - k). Each pair is "
        "ordered (sin, cos), so the matrix is [[cos b, sin b], [-sin b, cos b]], the transpose of "
        "the textbook [[cos b, -sin b], [sin b, cos b]] (which acts on (cos, sin) pairs). Expand "
        "sin(a + b) and cos(a + b) to see it.": lambda: _rotations(angle, transpose=True),
        "a sign is wrong: [[cos b, sin b], [sin b, cos b]] is not a rotation. From cos(a + b) = "
        "cos a cos b - sin a sin b, the bottom-left entry is -sin b.":
            lambda: _rotations(angle, signs=(1, 1)),
        "a sign is wrong: [[cos b, -sin b], [-sin b, cos b]] is not a rotation. From sin(a + b) = "
        "sin a cos b + cos a sin b, the top-right entry is +sin b.":
            lambda: _rotations(angle, signs=(-1, -1)),
        "cos and sin are swapped inside the matrix: R(b) = [[cos b, sin b], [-sin b, cos b]].":
            lambda: _rotations(angle, swap=True),
        "the angle is k for every pair: pair i turns by k * w_i, with w_i = 1 / 10000^(2i/d_model).":
            lambda: _rotations(torch.full_like(w, float(k))),
        "the frequencies use the exponent i/d_model instead of 2i/d_model: w_i = 1 / 10000^(2i/d_model).":
            lambda: _rotations(k * _pair_frequencies(d_model, per_pair=1.0)),
        "the frequencies use the exponent 4i/d_model: w_i = 1 / 10000^(2i/d_model), with i = 0, 1, "
        "..., d_model/2 - 1 counting the pairs.": lambda: _rotations(k * _pair_frequencies(d_model, per_pair=4.0)),
        "the base is 1000 instead of 10000: w_i = 1 / 10000^(2i/d_model).":
            lambda: _rotations(k * _pair_frequencies(d_model, base=1000.0)),
    }


def check_rotation_for_offset(rotation_for_offset: Callable[[int, int], Tensor], seed: int = 0,
                              d_model: int = 16, max_seq_length: int = 64) -> None:
    """Check ``rotation_for_offset(k, d_model) -> (d_model // 2, 2, 2)`` against the PE table.

    For k = 0, 1, 2 and three seeded offsets, applying block i to ``[PE(p, 2i), PE(p, 2i+1)]``
    must give ``[PE(p+k, 2i), PE(p+k, 2i+1)]`` for every p with ``p + k < max_seq_length``
    (float64 table, tolerance for float32 matrices); wrong signs, transposes and frequencies
    are diagnosed.
    """
    fn = expect_callable(rotation_for_offset, "rotation_for_offset")
    check = Check("rotation_for_offset")
    check.refuse_answer_key(fn)
    if d_model % 2 or max_seq_length < 8:
        raise ValueError("check_rotation_for_offset needs an even d_model and max_seq_length >= 8")
    pairs = formula_table(max_seq_length, d_model).reshape(max_seq_length, d_model // 2, 2)
    with seeded(seed):  # three distinct offsets above 2, up to half the table
        extra = sorted((3 + torch.randperm(max_seq_length // 2 - 2)[:3]).tolist())
    offsets = [0, 1, 2, *extra]
    for k in offsets:
        what = f"rotation_for_offset({k}, {d_model})"
        got = check.call(fn, k, d_model, what=what)
        if isinstance(got, Tensor) and tuple(got.shape) == (d_model, d_model):
            fail(f"{what} returned a ({d_model}, {d_model}) matrix: return one 2x2 rotation per "
                 f"frequency, stacked as (d_model // 2, 2, 2) = {(d_model // 2, 2, 2)}.")
        expect_tensor(got, f"the result of {what}", (d_model // 2, 2, 2),
                      hint="one 2x2 matrix per sin/cos pair: torch.stack the entries into (d_model // 2, 2, 2), "
                           "block i being [[cos(k w_i), sin(k w_i)], [-sin(k w_i), cos(k w_i)]].")
        if got.dtype not in (torch.float32, torch.float64):
            fail(f"the result of {what} has dtype {got.dtype}: return a real floating-point tensor "
                 f"(float32, torch's default).")
        start, target = pairs[: max_seq_length - k], pairs[k:]

        def apply(rotation: Tensor, start: Tensor = start) -> Tensor:
            return torch.einsum("iab,pib->pia", rotation.detach().cpu().double(), start)

        def locate(index: tuple[int, ...]) -> str:
            p, i, part = index
            return f"p={p}, pair i={i} (the {'sin' if part == 0 else 'cos'} entry of PE(p + {k}))"

        expect_close_within(
            apply(got), target,
            f"{what} applied to [PE(p, 2i), PE(p, 2i+1)] for p = 0..{max_seq_length - k - 1} "
            f"(it should give [PE(p+{k}, 2i), PE(p+{k}, 2i+1)])",
            atol=1e-5 + 1e-6 * k, locate=locate,
            mistakes={text: (lambda make=make: apply(make()))
                      for text, make in _rotation_mistakes(k, d_model).items()},
            hint="block i is R(k w_i) = [[cos(k w_i), sin(k w_i)], [-sin(k w_i), cos(k w_i)]] with "
                 "w_i = 1 / 10000^(2i/d_model); for k = 0 it is the identity.")
    check.passed(f"PE(p + k) = R(k) PE(p) for every p, k = {', '.join(map(str, offsets))}")
