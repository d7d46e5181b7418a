"""The answer key for chapter 04 (course_utils.reference.positional_encoding) against the
paper's formula evaluated independently with NumPy in float64, and the rotation property
behind the sin/cos pairs.

    PE(pos, 2i) = sin(pos / 10000^(2i/d)),  PE(pos, 2i+1) = cos(pos / 10000^(2i/d))
    [PE(p+k, 2i), PE(p+k, 2i+1)] = [[cos kw_i, sin kw_i], [-sin kw_i, cos kw_i]] [PE(p, 2i), PE(p, 2i+1)]
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from course_utils.checks.positional_encoding import formula_table
from course_utils.course.guard import ReferenceUsedError, forbid
from course_utils.reference.positional_encoding import (
    PositionalEncoding,
    frequencies,
    rotation_for_offset,
    sinusoidal_table,
)


def _numpy_table(length: int, d_model: int) -> np.ndarray:
    table = np.zeros((length, d_model))
    for pos in range(length):
        for i in range(0, d_model, 2):
            angle = pos / 10000 ** (i / d_model)  # i runs over the even dimensions 2i'
            table[pos, i] = np.sin(angle)
            if i + 1 < d_model:
                table[pos, i + 1] = np.cos(angle)
    return table


@pytest.mark.parametrize(("length", "d_model"), [(50, 16), (300, 64), (20, 7), (1, 2)])
def test_table_matches_the_formula(length, d_model) -> None:
    expected = torch.from_numpy(_numpy_table(length, d_model))
    torch.testing.assert_close(sinusoidal_table(length, d_model, torch.float64), expected, rtol=0, atol=1e-12)
    # float32: only the final rounding, even at far positions.
    torch.testing.assert_close(sinusoidal_table(length, d_model).double(), expected, rtol=0, atol=1e-7)
    if d_model % 2 == 0:  # the checks' own float64 formula (pow, not exp/log) agrees
        torch.testing.assert_close(formula_table(length, d_model), expected, rtol=0, atol=1e-12)


def test_default_table_is_accurate_at_far_positions() -> None:
    pe = PositionalEncoding(32).pe
    assert pe.shape == (1, 5000, 32) and pe.dtype == torch.float32
    expected = torch.from_numpy(_numpy_table(5000, 32))
    assert (pe[0].double() - expected).abs().max() < 1e-7


def test_frequencies() -> None:
    w = frequencies(8)
    torch.testing.assert_close(w, torch.tensor([1.0, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75],
                                               dtype=torch.float64))


def test_pe_is_a_buffer_not_a_parameter() -> None:
    module = PositionalEncoding(16, max_seq_length=40)
    assert not list(module.parameters())
    assert "pe" in dict(module.named_buffers()) and "pe" in module.state_dict()
    assert not module.pe.requires_grad
    assert copy.deepcopy(module).to("meta").pe.device.type == "meta"
    assert copy.deepcopy(module).double().pe.dtype == torch.float64
    restored = PositionalEncoding(16, max_seq_length=40)
    restored.load_state_dict(module.state_dict())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_forward_adds_the_first_rows(dtype) -> None:
    module = PositionalEncoding(8, max_seq_length=30)
    table = sinusoidal_table(30, 8, torch.float64)
    for length in (1, 13, 30):
        x = torch.randn(4, length, 8).to(dtype)
        before = x.clone()
        out = module(x)
        assert out.shape == x.shape and out.dtype == dtype
        assert torch.equal(x, before), "forward must not modify x"
        expected = (x.double() + table[:length]).to(dtype)
        tol = {"atol": 1e-2, "rtol": 1e-2} if dtype == torch.bfloat16 else {"atol": 1e-6, "rtol": 1e-6}
        torch.testing.assert_close(out, expected, **tol)
        # every sequence of the batch gets the same rows
        added = (out.double() - x.double())
        torch.testing.assert_close(added[0].expand_as(added), added, **tol)


def test_forward_gradient_is_identity() -> None:
    module = PositionalEncoding(6, max_seq_length=10)
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(module, (x,))


@pytest.mark.parametrize("d_model", [2, 8, 64])
def test_rotation_moves_every_position_by_k(d_model) -> None:
    length = 120
    pairs = sinusoidal_table(length, d_model, torch.float64).reshape(length, d_model // 2, 2)
    for k in (0, 1, 5, 37, 100):
        rotation = rotation_for_offset(k, d_model)
        assert rotation.shape == (d_model // 2, 2, 2) and rotation.dtype == torch.float32
        moved = torch.einsum("iab,pib->pia", rotation.double(), pairs[: length - k])
        torch.testing.assert_close(moved, pairs[k:], rtol=0, atol=1e-6)


def test_rotations_are_rotations() -> None:
    r = rotation_for_offset(7, 16).double()
    eye = torch.eye(2, dtype=torch.float64).expand(8, 2, 2)
    torch.testing.assert_close(r @ r.transpose(-2, -1), eye)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(8, dtype=torch.float64))
    torch.testing.assert_close(rotation_for_offset(0, 16), eye.float(), rtol=0, atol=0)
    # R(a) R(b) = R(a + b)
    torch.testing.assert_close(rotation_for_offset(3, 16) @ rotation_for_offset(4, 16), rotation_for_offset(7, 16))


def test_dot_product_depends_only_on_the_offset() -> None:
    """PE(p) . PE(p+k) = sum_i cos(k w_i), whatever p: what attention can pick up."""
    table = sinusoidal_table(200, 32, torch.float64)
    w = frequencies(32)
    for k in (0, 3, 50):
        dots = (table[: 200 - k] * table[k:]).sum(-1)
        torch.testing.assert_close(dots, torch.cos(k * w).sum().expand_as(dots))


def test_guard_refuses_the_pe_answer_keys() -> None:
    with forbid("PositionalEncoding"):
        with pytest.raises(ReferenceUsedError, match="PositionalEncoding"):
            PositionalEncoding(8)
        with pytest.raises(ReferenceUsedError, match="PositionalEncoding"):
            sinusoidal_table(10, 8)
        rotation_for_offset(2, 8)  # another answer key stays allowed
    with forbid("rotation_for_offset"), pytest.raises(ReferenceUsedError, match="rotation_for_offset"):
        rotation_for_offset(2, 8)
