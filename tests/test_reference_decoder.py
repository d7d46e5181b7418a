"""The answer key for chapter 06 (course_utils.reference.decoder) against PyTorch.

``DecoderLayer`` holding some weights must equal ``nn.TransformerDecoderLayer(batch_first=True,
norm_first=False, activation="relu")`` holding the same weights, and ``Decoder`` must equal the
scaled embedding plus the sinusoidal table followed by ``nn.TransformerDecoder`` (a stack of
such layers, no final norm), with the source and target lengths different. The properties the
chapter's checks rely on are tested on the answer key too: causality, the source padding
mask, distinct layers, dropout only in training.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from course_utils.checks.decoder import copy_decoder_layer_into_builtin
from course_utils.checks.multi_head_attention import to_builtin_mask
from course_utils.course.guard import ReferenceUsedError, forbid
from course_utils.reference import Decoder, DecoderLayer, create_causal_mask, create_padding_mask
from course_utils.reference.positional_encoding import sinusoidal_table

B, LT, LS, D, H, FF = 3, 5, 8, 16, 4, 40


def _tol(dtype: torch.dtype) -> dict[str, float]:
    return {"atol": 1e-10, "rtol": 1e-8} if dtype == torch.float64 else {"atol": 2e-5, "rtol": 1e-4}


def _twin(layer: DecoderLayer) -> nn.TransformerDecoderLayer:
    """PyTorch's layer with the reference layer's weights, copied by hand (not by the check's helper)."""
    d_model = layer.norm1.normalized_shape[0]
    twin = nn.TransformerDecoderLayer(d_model, layer.self_attn.num_heads, layer.feed_forward.linear1.out_features,
                                      dropout=layer.dropout.p, activation="relu", batch_first=True,
                                      norm_first=False).to(layer.norm1.weight.dtype)
    with torch.no_grad():
        for ours, theirs in ((layer.self_attn, twin.self_attn), (layer.cross_attn, twin.multihead_attn)):
            theirs.in_proj_weight.copy_(torch.cat([ours.W_q.weight, ours.W_k.weight, ours.W_v.weight]))
            theirs.in_proj_bias.copy_(torch.cat([ours.W_q.bias, ours.W_k.bias, ours.W_v.bias]))
            theirs.out_proj.load_state_dict(ours.W_o.state_dict())
        twin.linear1.load_state_dict(layer.feed_forward.linear1.state_dict())
        twin.linear2.load_state_dict(layer.feed_forward.linear2.state_dict())
        for name in ("norm1", "norm2", "norm3"):
            getattr(twin, name).load_state_dict(getattr(layer, name).state_dict())
    return twin.train(layer.training)


def _randomize_norms(module: nn.Module) -> None:
    with torch.no_grad():
        for norm in (m for m in module.modules() if isinstance(m, nn.LayerNorm)):
            norm.weight.copy_(1 + 0.5 * torch.randn_like(norm.weight))
            norm.bias.copy_(0.5 * torch.randn_like(norm.bias))


def _inputs(dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x (B, Lt, D), memory (B, Ls, D), src_mask (B, 1, 1, Ls), tgt_mask (B, 1, Lt, Lt)."""
    x = torch.randn(B, LT, D, dtype=dtype)
    memory = torch.randn(B, LS, D, dtype=dtype)
    src = torch.tensor([[5, 6, 7, 8, 9, 3, 0, 0], [4, 4, 0, 0, 0, 0, 0, 0], [3] * LS])
    tgt = torch.tensor([[1, 5, 6, 0, 0], [1, 2, 3, 4, 5], [1, 0, 0, 0, 0]])
    src_mask = create_padding_mask(src, 0)
    tgt_mask = create_padding_mask(tgt, 0) & create_causal_mask(LT)
    return x, memory, src_mask, tgt_mask


def _builtin_masks(src_mask: Tensor | None, tgt_mask: Tensor | None) -> dict[str, Tensor | None]:
    return {"tgt_mask": to_builtin_mask(tgt_mask, B, H, LT, LT),
            "memory_mask": to_builtin_mask(src_mask, B, H, LT, LS)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_decoder_layer_matches_builtin(dtype) -> None:
    torch.manual_seed(0)
    layer = DecoderLayer(D, H, FF).to(dtype)
    _randomize_norms(layer)
    layer.eval()
    twin = _twin(layer)
    x, memory, src_mask, tgt_mask = _inputs(dtype)
    causal = create_causal_mask(LT)
    cases = [(src_mask, tgt_mask), (src_mask, causal), (None, causal), (src_mask, None), (None, None)]
    for src, tgt in cases:
        out = layer(x, memory, src, tgt)
        assert out.shape == (B, LT, D) and out.dtype == dtype
        torch.testing.assert_close(out, twin(x, memory, **_builtin_masks(src, tgt)), **_tol(dtype))
    torch.testing.assert_close(layer(x, memory, src_mask, tgt_mask), layer(x, memory, src_mask, tgt_mask),
                               rtol=0, atol=0)  # eval mode: deterministic


def test_check_helper_copies_the_same_weights() -> None:
    torch.manual_seed(1)
    layer = DecoderLayer(D, H, FF).eval()
    _randomize_norms(layer)
    mine = copy_decoder_layer_into_builtin(layer, nn.TransformerDecoderLayer(D, H, FF, batch_first=True)).eval()
    theirs = _twin(layer).eval()
    x, memory, src_mask, tgt_mask = _inputs(torch.float32)
    masks = _builtin_masks(src_mask, tgt_mask)
    torch.testing.assert_close(mine(x, memory, **masks), theirs(x, memory, **masks), rtol=0, atol=0)


def test_decoder_layer_gradients_match_builtin() -> None:
    torch.manual_seed(2)
    layer = DecoderLayer(D, H, FF).double().eval()
    _randomize_norms(layer)
    twin = _twin(layer)
    x, memory, src_mask, tgt_mask = _inputs(torch.float64)
    ours = [t.clone().requires_grad_() for t in (x, memory)]
    theirs = [t.clone().requires_grad_() for t in (x, memory)]
    upstream = torch.randn(B, LT, D, dtype=torch.float64)
    (layer(*ours, src_mask, tgt_mask) * upstream).sum().backward()
    (twin(*theirs, **_builtin_masks(src_mask, tgt_mask)) * upstream).sum().backward()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(layer.cross_attn.W_k.weight.grad, twin.multihead_attn.in_proj_weight.grad[D:2 * D])
    torch.testing.assert_close(layer.norm3.weight.grad, twin.norm3.weight.grad)


def test_decoder_layer_never_sees_the_future() -> None:
    torch.manual_seed(3)
    layer = DecoderLayer(D, H, FF).eval()
    x, memory, src_mask, _ = _inputs(torch.float32)
    causal = create_causal_mask(LT)
    base = layer(x, memory, src_mask, causal)
    for i in range(LT - 1):
        changed = x.clone()
        changed[:, i + 1:] = torch.randn(B, LT - i - 1, D)
        out = layer(changed, memory, src_mask, causal)
        torch.testing.assert_close(out[:, : i + 1], base[:, : i + 1])
        assert not torch.allclose(out[:, i + 1:], base[:, i + 1:])
    # Without the mask, the first position does see the rest.
    changed = x.clone()
    changed[:, 1:] += 1
    assert not torch.allclose(layer(changed, memory, src_mask)[:, 0], layer(x, memory, src_mask)[:, 0])


def test_decoder_layer_reads_memory_and_ignores_padding() -> None:
    torch.manual_seed(4)
    layer = DecoderLayer(D, H, FF).eval()
    x, memory, src_mask, tgt_mask = _inputs(torch.float32)
    padded = ~src_mask[:, 0, 0, :, None]  # (B, Ls, 1)
    base = layer(x, memory, src_mask, tgt_mask)
    torch.testing.assert_close(layer(x, torch.where(padded, memory * 5 + 1, memory), src_mask, tgt_mask), base)
    assert not torch.allclose(layer(x, torch.where(padded, memory, memory + 1), src_mask, tgt_mask), base)
    weights = layer.cross_attn.attention_weights
    assert weights.shape == (B, H, LT, LS)
    assert torch.all(weights.masked_select(~src_mask.expand_as(weights)) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, LT))
    assert layer.self_attn.attention_weights.shape == (B, H, LT, LT)


def test_decoder_layer_structure_and_parameter_count() -> None:
    layer = DecoderLayer(512, 8, 2048)
    assert layer.self_attn is not layer.cross_attn
    assert len({id(layer.norm1), id(layer.norm2), id(layer.norm3)}) == 3
    assert isinstance(layer.dropout, nn.Dropout) and layer.dropout.p == 0.1
    mha = 4 * (512 * 512 + 512)
    ffn = 2 * 512 * 2048 + 2048 + 512
    assert sum(p.numel() for p in layer.parameters()) == 2 * mha + ffn + 3 * 2 * 512 == 4_204_032
    builtin = nn.TransformerDecoderLayer(512, 8, 2048, batch_first=True)
    assert sum(p.numel() for p in builtin.parameters()) == 4_204_032


def test_decoder_layer_dropout_in_training_only() -> None:
    torch.manual_seed(5)
    layer = DecoderLayer(D, H, FF, dropout=0.3)
    x, memory, src_mask, tgt_mask = _inputs(torch.float32)
    assert not torch.allclose(layer(x, memory, src_mask, tgt_mask), layer(x, memory, src_mask, tgt_mask))
    layer.eval()
    torch.testing.assert_close(layer(x, memory, src_mask, tgt_mask), layer(x, memory, src_mask, tgt_mask))


def _builtin_stack(decoder: Decoder) -> nn.TransformerDecoder:
    layers = list(decoder.layers)
    stack = nn.TransformerDecoder(_twin(layers[0]), num_layers=len(layers))  # no final norm
    for i, layer in enumerate(layers):
        stack.layers[i] = _twin(layer)
    return stack.train(decoder.training)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_decoder_matches_scaled_embedding_and_builtin_stack(dtype) -> None:
    torch.manual_seed(6)
    vocab, max_len = 13, 32
    decoder = Decoder(vocab, D, num_layers=3, num_heads=H, d_ff=FF, max_seq_length=max_len).to(dtype)
    _randomize_norms(decoder)
    decoder.eval()
    stack = _builtin_stack(decoder)
    _, memory, src_mask, tgt_mask = _inputs(dtype)
    tgt = torch.randint(0, vocab, (B, LT))
    # The PE buffer is built in float32 and cast by .to(dtype), so float64 runs add the float32 table.
    x = decoder.embedding.weight[tgt] * math.sqrt(D) + sinusoidal_table(max_len, D)[:LT].to(dtype)
    for src, mask in ((src_mask, tgt_mask), (src_mask, create_causal_mask(LT)), (None, None)):
        out = decoder(tgt, memory, src, mask)
        assert out.shape == (B, LT, D) and out.dtype == dtype
        torch.testing.assert_close(out, stack(x, memory, **_builtin_masks(src, mask)), **_tol(dtype))


def test_decoder_layers_are_distinct_and_causal() -> None:
    torch.manual_seed(7)
    decoder = Decoder(11, D, num_layers=2, num_heads=H, d_ff=FF).eval()
    assert isinstance(decoder.layers, nn.ModuleList) and len(decoder.layers) == 2
    assert decoder.layers[0] is not decoder.layers[1]
    assert not torch.equal(decoder.layers[0].self_attn.W_q.weight, decoder.layers[1].self_attn.W_q.weight)
    assert len(Decoder(11, 8).layers) == 6
    _, memory, src_mask, _ = _inputs(torch.float32)
    tgt = torch.randint(0, 11, (B, LT))
    causal = create_causal_mask(LT)
    base = decoder(tgt, memory, src_mask, causal)
    for i in range(LT - 1):
        changed = tgt.clone()
        changed[:, i + 1:] = (changed[:, i + 1:] + 1) % 11
        torch.testing.assert_close(decoder(changed, memory, src_mask, causal)[:, : i + 1], base[:, : i + 1])


def test_guard_refuses_the_decoder_answer_keys() -> None:
    with forbid("DecoderLayer"):
        with pytest.raises(ReferenceUsedError, match="DecoderLayer"):
            DecoderLayer(D, H, FF)
    layer = DecoderLayer(D, H, FF)
    x, memory, src_mask, tgt_mask = _inputs(torch.float32)
    with forbid("DecoderLayer"), pytest.raises(ReferenceUsedError, match="DecoderLayer"):
        layer(x, memory, src_mask, tgt_mask)
    with forbid("Decoder"), pytest.raises(ReferenceUsedError, match="Decoder"):
        Decoder(11, D, num_layers=1, num_heads=H, d_ff=FF)
    with forbid("Decoder"):  # building a stack from the reference layers stays allowed
        DecoderLayer(D, H, FF)(x, memory, src_mask, tgt_mask)
