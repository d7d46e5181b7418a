"""The answer key for chapter 05 (course_utils.reference.encoder) against PyTorch.

``EncoderLayer`` holding some weights must equal ``nn.TransformerEncoderLayer(batch_first=True,
norm_first=False, activation="relu")`` holding the same weights, and ``Encoder`` must equal the
scaled embedding plus the sinusoidal table followed by ``nn.TransformerEncoder`` (a stack of
such layers, no final norm). The properties the chapter's checks rely on are tested on the
answer key too: padding ignored, distinct layers, dropout only in training, and the
parameter-count formula.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from course_utils.course.guard import ReferenceUsedError, forbid
from course_utils.reference import Encoder, EncoderLayer, create_padding_mask
from course_utils.reference.encoder import encoder_parameter_count
from course_utils.reference.positional_encoding import sinusoidal_table

B, L, D, H, FF, V = 3, 7, 16, 4, 40, 13


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"atol": 1e-10, "rtol": 1e-8} if dtype == torch.float64 else {"atol": 2e-5, "rtol": 1e-4}


def _copy_into(layer: EncoderLayer, twin: nn.TransformerEncoderLayer) -> None:
    """The reference layer's weights into PyTorch's, copied by hand (not by the check's helper)."""
    with torch.no_grad():
        attn = layer.self_attn
        twin.self_attn.in_proj_weight.copy_(torch.cat([attn.W_q.weight, attn.W_k.weight, attn.W_v.weight]))
        twin.self_attn.in_proj_bias.copy_(torch.cat([attn.W_q.bias, attn.W_k.bias, attn.W_v.bias]))
        twin.self_attn.out_proj.load_state_dict(attn.W_o.state_dict())
        twin.linear1.load_state_dict(layer.feed_forward.linear1.state_dict())
        twin.linear2.load_state_dict(layer.feed_forward.linear2.state_dict())
        twin.norm1.load_state_dict(layer.norm1.state_dict())
        twin.norm2.load_state_dict(layer.norm2.state_dict())


def _twin(layer: EncoderLayer) -> nn.TransformerEncoderLayer:
    twin = nn.TransformerEncoderLayer(D, H, FF, dropout=layer.dropout.p, activation="relu", batch_first=True,
                                      norm_first=False).to(layer.norm1.weight.dtype)
    _copy_into(layer, twin)
    return twin.train(layer.training)


def _randomize_norms(module: nn.Module) -> None:
    with torch.no_grad():
        for norm in (m for m in module.modules() if isinstance(m, nn.LayerNorm)):
            norm.weight.copy_(1 + 0.5 * torch.randn_like(norm.weight))
            norm.bias.copy_(0.5 * torch.randn_like(norm.bias))


def _tokens() -> tuple[Tensor, Tensor]:
    """src (B, L) with padding id 0 at the end of two sentences, and its mask (B, 1, 1, L)."""
    src = torch.tensor([[5, 6, 7, 8, 9, 3, 0], [4, 4, 2, 0, 0, 0, 0], [3, 1, 2, 3, 4, 5, 6]])
    return src, create_padding_mask(src, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", [False, True])
def test_encoder_layer_matches_builtin(dtype: torch.dtype, masked: bool) -> None:
    torch.manual_seed(0)
    layer = EncoderLayer(D, H, FF).to(dtype)
    _randomize_norms(layer)
    layer.eval()
    twin = _twin(layer)
    x = torch.randn(B, L, D, dtype=dtype)
    _, mask = _tokens()
    with torch.no_grad():
        ours = layer(x, mask if masked else None)
        theirs = twin(x, src_key_padding_mask=~mask[:, 0, 0] if masked else None)
    torch.testing.assert_close(ours, theirs, **_tol(dtype))


def test_encoder_layer_gradients_match_builtin() -> None:
    torch.manual_seed(1)
    layer = EncoderLayer(D, H, FF).double().eval()
    twin = _twin(layer)
    _, mask = _tokens()
    x = torch.randn(B, L, D, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    upstream = torch.randn(B, L, D, dtype=torch.float64)
    (layer(x1, mask) * upstream).sum().backward()
    (twin(x2, src_key_padding_mask=~mask[:, 0, 0]) * upstream).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **_tol(torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masked", [False, True])
def test_encoder_matches_builtin_stack(dtype: torch.dtype, masked: bool) -> None:
    torch.manual_seed(2)
    encoder = Encoder(V, D, num_layers=3, num_heads=H, d_ff=FF, max_seq_length=32).to(dtype)
    _randomize_norms(encoder)
    encoder.eval()
    stack = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, H, FF, batch_first=True, norm_first=False),
                                  num_layers=3, enable_nested_tensor=False).to(dtype).eval()
    for ours, theirs in zip(encoder.layers, stack.layers):
        _copy_into(ours, theirs)
    src, mask = _tokens()
    with torch.no_grad():
        got = encoder(src, mask if masked else None)
        x = encoder.embedding(src) * math.sqrt(D) + sinusoidal_table(32, D)[:L].to(dtype)
        want = stack(x, src_key_padding_mask=~mask[:, 0, 0] if masked else None)
    torch.testing.assert_close(got, want, **_tol(dtype))


def test_padding_is_ignored() -> None:
    torch.manual_seed(3)
    encoder = Encoder(V, D, num_layers=2, num_heads=H, d_ff=FF).eval()
    src, mask = _tokens()
    other = torch.where(mask[:, 0, 0], src, torch.full_like(src, 11))
    with torch.no_grad():
        a, b = encoder(src, mask), encoder(other, mask)
    real = mask[:, 0, 0]
    torch.testing.assert_close(a[real], b[real])
    assert not torch.allclose(a[~real], b[~real])  # the padded rows themselves do change


def test_layers_are_distinct_modules() -> None:
    encoder = Encoder(V, D, num_layers=4, num_heads=H, d_ff=FF)
    assert isinstance(encoder.layers, nn.ModuleList) and len(encoder.layers) == 4
    assert len({id(layer) for layer in encoder.layers}) == 4
    pointers = [p.data_ptr() for layer in encoder.layers for p in layer.parameters()]
    assert len(set(pointers)) == len(pointers)
    assert not torch.equal(encoder.layers[0].self_attn.W_q.weight, encoder.layers[1].self_attn.W_q.weight)
    assert len(Encoder(V, 8).layers) == 6


def test_dropout_only_in_training() -> None:
    torch.manual_seed(4)
    encoder = Encoder(V, D, num_layers=2, num_heads=H, d_ff=FF, dropout=0.5)
    src, mask = _tokens()
    encoder.train()
    assert not torch.equal(encoder(src, mask), encoder(src, mask))
    encoder.eval()
    torch.testing.assert_close(encoder(src, mask), encoder(src, mask), rtol=0, atol=0)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(5)
    encoder = Encoder(V, D, num_layers=2, num_heads=H, d_ff=FF)
    src, mask = _tokens()
    encoder(src, mask).square().sum().backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("sizes", [(11, 16, 2, 32), (1000, 64, 1, 256), (5, 24, 3, 8), (37000, 512, 6, 2048)])
def test_parameter_count_formula(sizes: tuple[int, int, int, int]) -> None:
    vocab_size, d_model, num_layers, d_ff = sizes
    if d_model >= 512:  # the paper's base encoder: count one real layer, the layers are identical
        layer = sum(p.numel() for p in EncoderLayer(d_model, 8, d_ff).parameters())
        real = vocab_size * d_model + num_layers * layer
    else:
        real = sum(p.numel() for p in Encoder(vocab_size, d_model, num_layers, 4, d_ff).parameters())
    assert encoder_parameter_count(vocab_size, d_model, num_layers, d_ff) == real


def test_the_paper_base_encoder_count() -> None:
    # 37000 * 512 embedding + 6 * 3,152,384 per layer
    assert encoder_parameter_count(37000, 512, 6, 2048) == 18_944_000 + 6 * 3_152_384


def test_the_answer_key_is_refused_while_forbidden() -> None:
    with forbid("EncoderLayer"), pytest.raises(ReferenceUsedError):
        EncoderLayer(D, H, FF)
    with forbid("Encoder"), pytest.raises(ReferenceUsedError):
        Encoder(V, D, num_layers=1, num_heads=H, d_ff=FF)
    with forbid("encoder_parameter_count"), pytest.raises(ReferenceUsedError):
        encoder_parameter_count(V, D, 1, FF)
