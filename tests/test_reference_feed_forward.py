"""The answer key for chapter 03 (course_utils.reference.feed_forward) against PyTorch.

``FeedForwardNetwork`` holding some weights must equal PyTorch's own
``nn.Sequential(nn.Linear, nn.ReLU, nn.Dropout, nn.Linear)`` holding the same weights, in
eval mode and, drawing the same dropout mask from the same seed, in training mode (the
check of chapter 03 relies on that). ``feed_forward`` is the same equation in the paper's
notation, where ``W1 = linear1.weight.T``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.course.guard import ReferenceUsedError, forbid
from course_utils.reference.feed_forward import FeedForwardNetwork, feed_forward

SIZES = [(16, 64), (24, 8), (5, 5)]  # d_ff above, below and equal to d_model
LEADING = [(), (7,), (2, 5), (3, 2, 4)]


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"atol": 1e-12, "rtol": 1e-10} if dtype == torch.float64 else {"atol": 2e-6, "rtol": 1e-5}


def _sequential_twin(ffn: FeedForwardNetwork) -> nn.Sequential:
    """PyTorch's building blocks in the paper's order, holding ffn's weights."""
    d_ff, d_model = ffn.linear1.weight.shape
    twin = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(ffn.dropout.p), nn.Linear(d_ff, d_model))
    twin[0].load_state_dict(ffn.linear1.state_dict())
    twin[3].load_state_dict(ffn.linear2.state_dict())
    return twin.to(ffn.linear1.weight.dtype).train(ffn.training)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: f"d{s[0]}-ff{s[1]}")
def test_ffn_matches_sequential_in_eval_mode(sizes, dtype) -> None:
    torch.manual_seed(0)
    d_model, d_ff = sizes
    ffn = FeedForwardNetwork(d_model, d_ff).to(dtype).eval()
    twin = _sequential_twin(ffn)
    for lead in LEADING:
        x = torch.randn(*lead, d_model, dtype=dtype)
        out = ffn(x)
        assert out.shape == x.shape and out.dtype == dtype
        torch.testing.assert_close(out, twin(x), **_tol(dtype))
        torch.testing.assert_close(ffn(x), out, rtol=0, atol=0)  # eval mode: deterministic


def test_ffn_structure_and_parameter_count() -> None:
    ffn = FeedForwardNetwork(512, 2048)
    assert (ffn.linear1.in_features, ffn.linear1.out_features) == (512, 2048)
    assert (ffn.linear2.in_features, ffn.linear2.out_features) == (2048, 512)
    assert isinstance(ffn.dropout, nn.Dropout) and ffn.dropout.p == 0.1
    assert FeedForwardNetwork(8, 4, dropout=0.3).dropout.p == 0.3
    # The paper's base model: 2 * 512 * 2048 + 2048 + 512 parameters per FFN.
    assert sum(p.numel() for p in ffn.parameters()) == 2 * 512 * 2048 + 2048 + 512 == 2_099_712


def test_ffn_dropout_acts_on_the_hidden_units_in_training_only() -> None:
    torch.manual_seed(1)
    ffn = FeedForwardNetwork(12, 20, dropout=0.5)
    twin = _sequential_twin(ffn)
    x = torch.randn(3, 6, 12)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        trained = ffn(x)
    with torch.random.fork_rng():
        torch.manual_seed(7)
        expected = twin(x)
    torch.testing.assert_close(trained, expected)  # same seed, same mask, same place
    assert not torch.allclose(ffn(x), ffn(x)), "two training passes should differ"
    ffn.eval()
    evaluated = ffn(x)
    assert not torch.allclose(trained, evaluated)
    torch.testing.assert_close(evaluated, twin.eval()(x))


def test_ffn_gradients_match_sequential() -> None:
    torch.manual_seed(2)
    ffn = FeedForwardNetwork(6, 10).double().eval()
    twin = _sequential_twin(ffn)
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(2, 3, 6, dtype=torch.float64)
    (ffn(ours) * upstream).sum().backward()
    (twin(theirs) * upstream).sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad)
    torch.testing.assert_close(ffn.linear1.weight.grad, twin[0].weight.grad)
    torch.testing.assert_close(ffn.linear2.bias.grad, twin[3].bias.grad)
    assert torch.autograd.gradcheck(ffn, (x.clone().requires_grad_(),))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_feed_forward_equation_is_the_module(dtype) -> None:
    torch.manual_seed(3)
    ffn = FeedForwardNetwork(8, 12).to(dtype).eval()
    for lead in LEADING:
        x = torch.randn(*lead, 8, dtype=dtype)
        out = feed_forward(x, ffn.linear1.weight.T, ffn.linear1.bias, ffn.linear2.weight.T, ffn.linear2.bias)
        torch.testing.assert_close(out, ffn(x), **_tol(dtype))
        manual = F.relu(x @ ffn.linear1.weight.T + ffn.linear1.bias) @ ffn.linear2.weight.T + ffn.linear2.bias
        torch.testing.assert_close(out, manual, **_tol(dtype))


def test_feed_forward_gradcheck() -> None:
    g = torch.Generator().manual_seed(4)
    args = [torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()
            for shape in ((2, 3, 4), (4, 6), (6,), (6, 4), (4,))]
    assert torch.autograd.gradcheck(feed_forward, args)


def test_ffn_is_a_kernel_size_one_convolution() -> None:
    """Section 3.3: "two convolutions with kernel size 1"."""
    torch.manual_seed(5)
    ffn = FeedForwardNetwork(8, 16).eval()
    conv1, conv2 = nn.Conv1d(8, 16, 1), nn.Conv1d(16, 8, 1)
    with torch.no_grad():
        conv1.weight.copy_(ffn.linear1.weight[..., None])
        conv1.bias.copy_(ffn.linear1.bias)
        conv2.weight.copy_(ffn.linear2.weight[..., None])
        conv2.bias.copy_(ffn.linear2.bias)
    x = torch.randn(2, 9, 8)
    by_conv = conv2(torch.relu(conv1(x.transpose(1, 2)))).transpose(1, 2)
    torch.testing.assert_close(ffn(x), by_conv)


def test_guard_refuses_the_ffn_answer_keys() -> None:
    with forbid("FeedForwardNetwork"):
        with pytest.raises(ReferenceUsedError, match="FeedForwardNetwork"):
            FeedForwardNetwork(4, 8)
        feed_forward(torch.randn(2, 4), torch.randn(4, 8), torch.randn(8), torch.randn(8, 4), torch.randn(4))
    with forbid("feed_forward"), pytest.raises(ReferenceUsedError, match="feed_forward"):
        feed_forward(torch.randn(2, 4), torch.randn(4, 8), torch.randn(8), torch.randn(8, 4), torch.randn(4))
