"""Known-wrong and correct answers for chapter 04_positional_encoding's checks.

Each mutant is a realistic student mistake; its ``expect`` pins the diagnosis the check
gives (a regular expression searched in the AssertionError's message). The correct
answers are written differently from the reference: the classic float32 tutorial code
(whose table is off by ~1e-7 * pos at far positions, which the check must tolerate),
``10000 ** (2i / d)`` with stack-and-flatten interleaving, a NumPy float64 table, complex
exponentials for the rotations, ...
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

import course_utils.reference.positional_encoding
from course_utils.reference.positional_encoding import PositionalEncoding as ReferencePE
from course_utils.reference.positional_encoding import rotation_for_offset as reference_rotation
from tests.support import Bug, Catalogue, Mutant

# --------------------------------------------------------------------------------------
# PositionalEncoding(d_model, max_seq_length=5000)
# --------------------------------------------------------------------------------------


def tutorial_table(d_model: int, max_seq_length: int, *, base: float = 10000.0, swap: bool = False,
                   pair_index_only: bool = False, log: bool = True, start: int = 0) -> Tensor:
    """The classic float32 construction, with switches for the usual slips."""
    position = torch.arange(start, start + max_seq_length, dtype=torch.float).unsqueeze(1)
    two_i = torch.arange(0, d_model // 2).float() if pair_index_only else torch.arange(0, d_model, 2).float()
    scale = -math.log(base) / d_model if log else -base / d_model
    div_term = torch.exp(two_i * scale)
    pe = torch.zeros(max_seq_length, d_model)
    first, second = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
    pe[:, 0::2] = first(position * div_term)
    pe[:, 1::2] = second(position * div_term)
    return pe


class _Base(nn.Module):
    """The right module built from ``tutorial_table``; mutants override pieces."""

    def __init__(self, d_model: int, max_seq_length: int = 5000) -> None:
        super().__init__()
        self.register_buffer("pe", tutorial_table(d_model, max_seq_length).unsqueeze(0))

    def forward(self, x):
        return x + self.pe[:, : x.size(1)]


class PEStub(nn.Module):
    def __init__(self, d_model, max_seq_length=5000):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class PEForwardStub(_Base):
    def forward(self, x):
        # YOUR CODE HERE
        raise NotImplementedError()


class PESinCosSwapped(_Base):
    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        self.register_buffer("pe", tutorial_table(d_model, max_seq_length, swap=True).unsqueeze(0))


class PEExponentIOverD(_Base):
    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        self.register_buffer("pe", tutorial_table(d_model, max_seq_length, pair_index_only=True).unsqueeze(0))


class PEExponentFourIOverD(_Base):
    """2 * arange(0, d, 2): the 2 counted twice."""

    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        position = torch.arange(max_seq_length).unsqueeze(1)
        div = 10000 ** (2 * torch.arange(0, d_model, 2) / d_model)
        pe = torch.zeros(max_seq_length, d_model)
        pe[:, 0::2] = torch.sin(position / div)
        pe[:, 1::2] = torch.cos(position / div)
        self.register_buffer("pe", pe.unsqueeze(0))


class PEExponentPerDimension(_Base):
    """Each dimension j uses 10000^(j / d): the cos dimensions get their own frequency."""

    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        position = torch.arange(max_seq_length).unsqueeze(1)
        angles = position / 10000 ** (torch.arange(d_model) / d_model)
        pe = torch.where(torch.arange(d_model) % 2 == 0, torch.sin(angles), torch.cos(angles))
        self.register_buffer("pe", pe.unsqueeze(0))


class PEBase1000(_Base):
    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        self.register_buffer("pe", tutorial_table(d_model, max_seq_length, base=1000.0).unsqueeze(0))


class PEMissingLog(_Base):
    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        self.register_buffer("pe", tutorial_table(d_model, max_seq_length, log=False).unsqueeze(0))


class PEPositionsFromOne(_Base):
    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        self.register_buffer("pe", tutorial_table(d_model, max_seq_length, start=1).unsqueeze(0))


class PEHalvesConcatenated(_Base):
    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        angles = torch.arange(max_seq_length).unsqueeze(1) / 10000 ** (torch.arange(0, d_model, 2) / d_model)
        self.register_buffer("pe", torch.cat([angles.sin(), angles.cos()], dim=-1).unsqueeze(0))


class PEAsParameter(_Base):
    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        self.pe = nn.Parameter(tutorial_table(d_model, max_seq_length).unsqueeze(0), requires_grad=False)


class PEPlainAttribute(_Base):
    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        self.pe = tutorial_table(d_model, max_seq_length).unsqueeze(0)


class PENotPersistent(_Base):
    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        self.register_buffer("pe", tutorial_table(d_model, max_seq_length).unsqueeze(0), persistent=False)


class PENoBatchAxis(_Base):
    """pe (max_seq_length, d_model): forward even works, by broadcasting."""

    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        self.register_buffer("pe", tutorial_table(d_model, max_seq_length))

    def forward(self, x):
        return x + self.pe[: x.size(1)]


class PESequenceFirst(_Base):
    """PyTorch's old tutorial: pe (max_len, 1, d_model) for (L, B, d) inputs."""

    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        self.register_buffer("pe", tutorial_table(d_model, max_seq_length).unsqueeze(1))

    def forward(self, x):
        return x + self.pe[: x.size(0)]


class PESlicedOnBatchAxis(_Base):
    def forward(self, x):
        return x + self.pe[: x.size(1)]


class PESlicedWithBatchSize(_Base):
    def forward(self, x):
        return x + self.pe[:, : x.size(0)]


class PEReturnsEncodingsOnly(_Base):
    def forward(self, x):
        return self.pe[:, : x.size(1)]


class PEAddsInPlace(_Base):
    def forward(self, x):
        x += self.pe[:, : x.size(1)]
        return x


class PEScalesX(_Base):
    def forward(self, x):
        return x * math.sqrt(x.size(-1)) + self.pe[:, : x.size(1)]


class PEFloat64Table(_Base):
    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        self.register_buffer("pe", tutorial_table(d_model, max_seq_length).double().unsqueeze(0))


class PERequiresGrad(_Base):
    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        self.register_buffer("pe", tutorial_table(d_model, max_seq_length).unsqueeze(0).requires_grad_())


class PEOtherArgumentName(_Base):
    def __init__(self, d_model, max_len=5000):
        super().__init__(d_model, max_len)


class PEWithDropout(_Base):
    """The Annotated Transformer's version, with dropout inside (given a default here)."""

    def __init__(self, d_model, max_seq_length=5000, dropout=0.1):
        super().__init__(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(x + self.pe[:, : x.size(1)])


class PEDropoutArgumentRequired(PEWithDropout):
    def __init__(self, d_model, dropout, max_seq_length=5000):
        super().__init__(d_model, max_seq_length, dropout)


class PEOutputDetached(_Base):
    def forward(self, x):
        return (x + self.pe[:, : x.size(1)]).detach()


class PEWrappingTheReference(nn.Module):
    def __init__(self, d_model, max_seq_length=5000):
        super().__init__()
        self.inner = course_utils.reference.positional_encoding.PositionalEncoding(d_model, max_seq_length)

    def forward(self, x):
        return self.inner(x)


class PEWithTheReferenceTable(_Base):
    def __init__(self, d_model, max_seq_length=5000):
        nn.Module.__init__(self)
        table = course_utils.reference.positional_encoding.sinusoidal_table(max_seq_length, d_model)
        self.register_buffer("pe", table.unsqueeze(0))


class PEClassicTutorial(_Base):
    """The float32 construction everyone copies, with .to(x.dtype) in forward."""

    def forward(self, x):
        return x + self.pe[:, : x.size(1)].to(x.dtype)


class PEPowStackFlatten(nn.Module):
    """10000 ** (2i / d) in float32, sin/cos interleaved by stacking and flattening, narrow()."""

    def __init__(self, d_model: int, max_seq_length: int = 5000) -> None:
        super().__init__()
        inv_freq = 1.0 / (10000 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model))
        angles = torch.outer(torch.arange(max_seq_length, dtype=torch.float32), inv_freq)
        table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)
        self.register_buffer("pe", table[None])

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pe.narrow(1, 0, x.shape[1])


class PENumpyFloat64(nn.Module):
    """The table computed with NumPy in float64, converted once."""

    def __init__(self, d_model: int, max_seq_length: int = 5000) -> None:
        super().__init__()
        pos = np.arange(max_seq_length)[:, None]
        i = np.arange(d_model // 2)[None, :]
        angles = pos / np.power(10000.0, 2 * i / d_model)
        table = np.zeros((max_seq_length, d_model))
        table[:, 0::2], table[:, 1::2] = np.sin(angles), np.cos(angles)
        self.register_buffer("pe", torch.from_numpy(table).float().unsqueeze(0))

    def forward(self, x: Tensor) -> Tensor:
        length = x.size(1)
        return torch.add(x, self.pe[:, :length, :])


# --------------------------------------------------------------------------------------
# rotation_for_offset(k, d_model) -> (d_model // 2, 2, 2)
# --------------------------------------------------------------------------------------


def _freq(d_model, per_pair=2, base=10000.0):
    return 1.0 / base ** (per_pair * torch.arange(d_model // 2, dtype=torch.float32) / d_model)


def _blocks(a, b, c, d):
    return torch.stack([torch.stack([a, b], -1), torch.stack([c, d], -1)], -2)


def rot_stub(k, d_model):
    # YOUR CODE HERE
    raise NotImplementedError()


def rot_textbook(k, d_model):
    angle = k * _freq(d_model)
    return _blocks(angle.cos(), -angle.sin(), angle.sin(), angle.cos())


def rot_sign_error(k, d_model):
    angle = k * _freq(d_model)
    return _blocks(angle.cos(), angle.sin(), angle.sin(), angle.cos())


def rot_same_angle_for_all(k, d_model):
    angle = torch.full((d_model // 2,), float(k))
    return _blocks(angle.cos(), angle.sin(), -angle.sin(), angle.cos())


def rot_exponent_i_over_d(k, d_model):
    angle = k * _freq(d_model, per_pair=1)
    return _blocks(angle.cos(), angle.sin(), -angle.sin(), angle.cos())


def rot_base_1000(k, d_model):
    angle = k * _freq(d_model, base=1000.0)
    return _blocks(angle.cos(), angle.sin(), -angle.sin(), angle.cos())


def rot_cos_sin_swapped(k, d_model):
    angle = k * _freq(d_model)
    return _blocks(angle.sin(), angle.cos(), -angle.cos(), angle.sin())


def rot_block_diagonal(k, d_model):
    angle = k * _freq(d_model)
    return torch.block_diag(*_blocks(angle.cos(), angle.sin(), -angle.sin(), angle.cos()))


def rot_entries_last(k, d_model):
    angle = k * _freq(d_model)
    return _blocks(angle.cos(), angle.sin(), -angle.sin(), angle.cos()).permute(1, 2, 0)


def rot_wrapping_the_reference(k, d_model):
    return course_utils.reference.positional_encoding.rotation_for_offset(k, d_model)


def rot_loops(k: int, d_model: int) -> Tensor:
    rows = []
    for i in range(d_model // 2):
        b = k / 10000 ** (2 * i / d_model)
        rows.append([[math.cos(b), math.sin(b)], [-math.sin(b), math.cos(b)]])
    return torch.tensor(rows)


def rot_complex(k: int, d_model: int) -> Tensor:
    angle = k * torch.exp(torch.arange(0, d_model, 2, dtype=torch.float64) * (-math.log(10000.0) / d_model))
    z = torch.polar(torch.ones_like(angle), angle)  # e^{i k w}
    return _blocks(z.real, z.imag, -z.imag, z.real).float()


CATALOGUE = {
    "check_positional_encoding": Catalogue(
        reference=ReferencePE,
        mutants=[
            Mutant("stub", PEStub, r"is not implemented yet"),
            Mutant("forward_stub", PEForwardStub, r"PositionalEncoding\.forward .* is not implemented yet"),
            Mutant("sin_cos_swapped", PESinCosSwapped, r"Likely mistake: sin and cos are swapped"),
            Mutant("exponent_i_over_d", PEExponentIOverD,
                   r"Likely mistake: the exponent is i/d_model instead of 2i/d_model"),
            Mutant("exponent_4i_over_d", PEExponentFourIOverD, r"Likely mistake: the exponent is 4i/d_model"),
            Mutant("exponent_per_dimension", PEExponentPerDimension,
                   r"Likely mistake: the cos dimensions use their own index"),
            Mutant("base_1000", PEBase1000, r"Likely mistake: the base is 1000 instead of 10000"),
            Mutant("missing_log", PEMissingLog, r"Likely mistake: the logarithm is missing"),
            Mutant("positions_from_one", PEPositionsFromOne, r"Likely mistake: the positions start at 1"),
            Mutant("halves_concatenated", PEHalvesConcatenated,
                   r"Likely mistake: sin and cos are concatenated in two halves"),
            Mutant("as_parameter", PEAsParameter, r"\.pe is an nn\.Parameter(.|\n)*register_buffer"),
            Mutant("plain_attribute", PEPlainAttribute, r"\.pe is a plain tensor attribute, not a registered buffer"),
            Mutant("not_persistent", PENotPersistent, r"is not in the state dict \(persistent=False\)"),
            Mutant("no_batch_axis", PENoBatchAxis,
                   r"has shape \(5000, 16\), expected \(1, max_seq_length, d_model\) = \(1, 5000, 16\): "
                   r"the batch axis is missing"),
            Mutant("sequence_first", PESequenceFirst, r"this is the sequence-first layout"),
            Mutant("sliced_on_batch_axis", PESlicedOnBatchAxis,
                   r"pe was not cut to the input's length(.|\n)*self\.pe\[:L\] slices the batch axis"),
            Mutant("sliced_with_batch_size", PESlicedWithBatchSize,
                   r"the slice used the batch size x\.size\(0\)"),
            Mutant("returns_encodings_only", PEReturnsEncodingsOnly, r"returned the encodings alone"),
            Mutant("adds_in_place", PEAddsInPlace, r"changed x in place"),
            Mutant("scales_x", PEScalesX, r"Likely mistake: x is multiplied by sqrt\(d_model\) here"),
            Mutant("float64_table", PEFloat64Table, r"\.pe has dtype torch\.float64, expected torch\.float32"),
            Mutant("requires_grad", PERequiresGrad, r"\.pe requires grad"),
            Mutant("other_argument_name", PEOtherArgumentName,
                   r"unexpected keyword argument(.|\n)*Hint: keep the constructor's signature"),
            Mutant("with_dropout", PEWithDropout, r"gives a different output each time(.|\n)*Leave dropout out"),
            Mutant("dropout_argument_required", PEDropoutArgumentRequired,
                   r"missing 1 required positional argument(.|\n)*has no dropout argument"),
            Mutant("output_detached", PEOutputDetached, r"does not carry gradients back"),
            Mutant("wraps_the_reference", PEWrappingTheReference,
                   r"your code calls course_utils\.reference's own PositionalEncoding"),
            Mutant("uses_the_reference_table", PEWithTheReferenceTable,
                   r"your code calls course_utils\.reference's own PositionalEncoding"),
        ],
        correct=[PEClassicTutorial, PEPowStackFlatten, PENumpyFloat64],
    ),
    "check_rotation_for_offset": Catalogue(
        reference=reference_rotation,
        mutants=[
            Mutant("stub", rot_stub, r"is not implemented yet"),
            Mutant("textbook_rotation", rot_textbook, r"Likely mistake: the rotation goes the wrong way"),
            Mutant("sign_error", rot_sign_error,
                   r"Likely mistake: a sign is wrong: \[\[cos b, sin b\], \[sin b, cos b\]\]"),
            Mutant("same_angle_for_all", rot_same_angle_for_all, r"Likely mistake: the angle is k for every pair"),
            Mutant("exponent_i_over_d", rot_exponent_i_over_d,
                   r"Likely mistake: the frequencies use the exponent i/d_model"),
            Mutant("base_1000", rot_base_1000, r"Likely mistake: the base is 1000"),
            Mutant("cos_sin_swapped", rot_cos_sin_swapped,
                   r"Likely mistake: cos and sin are swapped inside the matrix"),
            Mutant("block_diagonal", rot_block_diagonal, r"returned a \(16, 16\) matrix"),
            Mutant("entries_last", rot_entries_last, r"has shape \(2, 2, 8\), expected \(8, 2, 2\)"),
            Mutant("wraps_the_reference", rot_wrapping_the_reference,
                   r"your code calls course_utils\.reference's own rotation_for_offset"),
        ],
        correct=[rot_loops, rot_complex],
    ),
}

BUG = Bug("pe_solution", "pe[:, 0::2] = torch.sin(position * div_term)",
          "pe[:, 0::2] = torch.cos(position * div_term)")
