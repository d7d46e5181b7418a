"""The answer key for chapter 07 (masks, the full Transformer, greedy decoding) against
PyTorch's built-ins and the definitions.

Masks here are boolean with True = "may attend"; PyTorch's ``nn.Transformer`` family wants the
opposite (True = blocked, or an additive float mask with -inf). The reference Transformer is
compared with ``nn.TransformerEncoder``/``nn.TransformerDecoder`` (post-norm, ReLU, no final
LayerNorm, as in the paper) holding the same weights.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from course_utils import reference
from course_utils.checks.multi_head_attention import copy_mha_into_builtin


def _padded(batch: int, length: int, vocab: int, pad_idx: int, lengths: list[int], seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab - 1, (batch, length), generator=g)
    ids = ids + (ids >= pad_idx).long()
    for row, n in enumerate(lengths):
        ids[row, n:] = pad_idx
    return ids


# --------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("pad_idx", [0, 1, 7])
def test_padding_mask_is_true_at_real_tokens_on_the_key_axis(pad_idx: int) -> None:
    seq = _padded(3, 6, 10, pad_idx, [6, 2, 4])
    mask = reference.create_padding_mask(seq, pad_idx)
    assert mask.shape == (3, 1, 1, 6) and mask.dtype == torch.bool
    assert torch.equal(mask[:, 0, 0], seq != pad_idx)
    assert mask[1, 0, 0].tolist() == [True, True, False, False, False, False]


def test_padding_mask_is_the_negation_of_pytorchs_key_padding_mask() -> None:
    seq = _padded(2, 5, 9, 0, [5, 3])
    key_padding_mask = seq == 0  # nn.MultiheadAttention: True = ignore this key
    assert torch.equal(reference.create_padding_mask(seq, 0)[:, 0, 0], ~key_padding_mask)


@pytest.mark.parametrize("size", [1, 2, 7])
def test_causal_mask_matches_pytorchs_square_subsequent_mask(size: int) -> None:
    mask = reference.create_causal_mask(size)
    assert mask.shape == (1, 1, size, size) and mask.dtype == torch.bool
    additive = nn.Transformer.generate_square_subsequent_mask(size)  # 0 allowed, -inf blocked
    assert torch.equal(mask[0, 0], additive == 0)
    assert mask[0, 0].diagonal().all(), "a position may attend to itself"


def test_causal_mask_device_argument() -> None:
    assert reference.create_causal_mask(3).device.type == "cpu"
    assert reference.create_causal_mask(3, device="cpu").device.type == "cpu"
    if torch.cuda.is_available():
        assert reference.create_causal_mask(3, device="cuda").device.type == "cuda"


def test_create_masks_combines_padding_and_causality() -> None:
    src = _padded(3, 5, 9, 0, [5, 2, 4], seed=1)
    tgt = _padded(3, 7, 9, 0, [7, 3, 5], seed=2)
    src_mask, tgt_mask = reference.create_masks(src, tgt, 0)
    assert src_mask.shape == (3, 1, 1, 5) and tgt_mask.shape == (3, 1, 7, 7)
    assert src_mask.dtype == tgt_mask.dtype == torch.bool
    for b in range(3):
        for i in range(7):
            for j in range(7):
                assert bool(tgt_mask[b, 0, i, j]) == (j <= i and bool(tgt[b, j] != 0))
    # Every query keeps at least one key (position 0 is never padding): no NaN softmax rows.
    assert tgt_mask.any(-1).all()


def test_sdpa_with_create_masks_matches_builtin_masks() -> None:
    """Our boolean masks give the same attention as PyTorch's key_padding_mask + attn_mask."""
    torch.manual_seed(0)
    tgt = _padded(2, 6, 9, 0, [6, 3])
    _, tgt_mask = reference.create_masks(tgt, tgt, 0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(2, 6, 8)
    causal_blocked = ~reference.create_causal_mask(6)[0, 0]
    want = mha(x, x, x, attn_mask=causal_blocked, key_padding_mask=tgt == 0)[0]
    blocked = (~tgt_mask).expand(2, 2, 6, 6).reshape(4, 6, 6)
    got = mha(x, x, x, attn_mask=blocked)[0]
    torch.testing.assert_close(got, want)


# --------------------------------------------------------------------------------------
# the full Transformer
# --------------------------------------------------------------------------------------


def _builtin_twin(model: reference.Transformer, d_model: int, num_heads: int, d_ff: int,
                  num_layers: int) -> tuple[nn.TransformerEncoder, nn.TransformerDecoder]:
    """PyTorch's encoder and decoder stacks (no final norm) with the reference's weights."""
    enc_layer = nn.TransformerEncoderLayer(d_model, num_heads, d_ff, 0.0, batch_first=True)
    dec_layer = nn.TransformerDecoderLayer(d_model, num_heads, d_ff, 0.0, batch_first=True)
    encoder = nn.TransformerEncoder(enc_layer, num_layers, enable_nested_tensor=False)
    decoder = nn.TransformerDecoder(dec_layer, num_layers)
    with torch.no_grad():
        for ours, theirs in zip(model.encoder.layers, encoder.layers):
            copy_mha_into_builtin(ours.self_attn, theirs.self_attn)
            for a, b in (("linear1", "linear1"), ("linear2", "linear2")):
                getattr(theirs, b).load_state_dict(getattr(ours.feed_forward, a).state_dict())
            theirs.norm1.load_state_dict(ours.norm1.state_dict())
            theirs.norm2.load_state_dict(ours.norm2.state_dict())
        for ours, theirs in zip(model.decoder.layers, decoder.layers):
            copy_mha_into_builtin(ours.self_attn, theirs.self_attn)
            copy_mha_into_builtin(ours.cross_attn, theirs.multihead_attn)
            theirs.linear1.load_state_dict(ours.feed_forward.linear1.state_dict())
            theirs.linear2.load_state_dict(ours.feed_forward.linear2.state_dict())
            for n in ("norm1", "norm2", "norm3"):
                getattr(theirs, n).load_state_dict(getattr(ours, n).state_dict())
    return encoder.eval(), decoder.eval()


@pytest.mark.parametrize("pad_idx", [0, 2])
def test_transformer_matches_builtin_stacks(pad_idx: int) -> None:
    d_model, num_heads, d_ff, num_layers = 16, 4, 32, 2
    torch.manual_seed(0)
    model = reference.Transformer(11, 13, d_model, num_layers, num_heads, d_ff, 0.1, 64, pad_idx).eval()
    encoder, decoder = _builtin_twin(model, d_model, num_heads, d_ff, num_layers)
    src = _padded(3, 7, 11, pad_idx, [7, 3, 5], seed=3)
    tgt = _padded(3, 5, 13, pad_idx, [5, 2, 4], seed=4)

    def embed(stack: nn.Module, ids: Tensor) -> Tensor:
        return stack.positional_encoding(stack.embedding(ids) * math.sqrt(d_model))

    with torch.no_grad():
        memory = encoder(embed(model.encoder, src), src_key_padding_mask=src == pad_idx)
        causal = nn.Transformer.generate_square_subsequent_mask(5).isinf()  # True = blocked
        states = decoder(embed(model.decoder, tgt), memory, tgt_mask=causal,
                         tgt_key_padding_mask=tgt == pad_idx, memory_key_padding_mask=src == pad_idx)
        want = model.generator(states)
        got = model(src, tgt)
    assert got.shape == (3, 5, 13)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    src_mask, tgt_mask = reference.create_masks(src, tgt, pad_idx)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(src, src_mask), memory, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(model.decode(tgt, memory, src_mask, tgt_mask), states, atol=2e-5, rtol=1e-4)


def test_transformer_structure_and_logits() -> None:
    model = reference.Transformer(7, 9, d_model=8, num_layers=1, num_heads=2, d_ff=16)
    assert isinstance(model.generator, nn.Linear)
    assert (model.generator.in_features, model.generator.out_features) == (8, 9)
    assert model.encoder.embedding.num_embeddings == 7 and model.decoder.embedding.num_embeddings == 9
    logits = model.eval()(torch.tensor([[3, 4, 0]]), torch.tensor([[1, 5]]))
    assert not torch.allclose(logits.exp().sum(-1), torch.ones(1, 2)), "logits, not probabilities"


def test_transformer_never_sees_the_future() -> None:
    torch.manual_seed(0)
    model = reference.Transformer(10, 10, d_model=16, num_layers=2, num_heads=4, d_ff=32).eval()
    src = torch.randint(1, 10, (2, 6))
    tgt = torch.randint(1, 10, (2, 5))
    changed = tgt.clone()
    changed[:, 3:] = (changed[:, 3:] % 9) + 1
    with torch.no_grad():
        a, b = model(src, tgt), model(src, changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])
    assert not torch.allclose(a[:, 3:], b[:, 3:])


# --------------------------------------------------------------------------------------
# greedy decoding
# --------------------------------------------------------------------------------------


class _Scripted(nn.Module):
    """A fake model whose generator emits a fixed script per batch row, one token per step."""

    def __init__(self, script: list[list[int]], vocab: int) -> None:
        super().__init__()
        self.script = torch.tensor(script)
        self.vocab = vocab
        self.encode_calls = 0
        self.decode_lengths: list[int] = []

    def encode(self, src: Tensor, src_mask: Tensor) -> Tensor:
        self.encode_calls += 1
        assert src_mask.shape == (src.size(0), 1, 1, src.size(1))
        return src.float().unsqueeze(-1)

    def decode(self, ys: Tensor, memory: Tensor, src_mask: Tensor, tgt_mask: Tensor) -> Tensor:
        length = ys.size(1)
        assert tgt_mask.shape[-2:] == (length, length) and bool(tgt_mask[..., 0, 1:].any()) is False
        self.decode_lengths.append(length)
        step = min(length - 1, self.script.size(1) - 1)
        return self.script[:, step].unsqueeze(1).expand(-1, length)

    def generator(self, tokens: Tensor) -> Tensor:
        return nn.functional.one_hot(tokens, self.vocab).float()


def test_greedy_decode_stops_at_eos_and_pads_after_it() -> None:
    bos, eos, pad = 1, 2, 0
    model = _Scripted([[5, 6, eos, 7, 7, 7, 7], [5, 6, 7, 8, eos, 9, 9]], vocab=10)
    out = reference.greedy_decode(model, torch.tensor([[3, 4, 0], [3, 4, 5]]), max_len=10,
                                  bos_idx=bos, eos_idx=eos, pad_idx=pad)
    assert out.tolist() == [[bos, 5, 6, eos, pad, pad], [bos, 5, 6, 7, 8, eos]]
    assert model.encode_calls == 1, "encode once"
    assert model.decode_lengths == [1, 2, 3, 4, 5], "one decoder pass per step, stopping when all are done"


def test_greedy_decode_respects_max_len() -> None:
    model = _Scripted([[5] * 20], vocab=10)
    out = reference.greedy_decode(model, torch.tensor([[3, 4]]), max_len=6, bos_idx=1, eos_idx=2)
    assert out.tolist() == [[1, 5, 5, 5, 5, 5]]


def test_greedy_decode_batched_equals_one_at_a_time() -> None:
    """Padding a source in a batch changes nothing: the padding mask hides it."""
    torch.manual_seed(0)
    model = reference.Transformer(12, 12, d_model=16, num_layers=2, num_heads=4, d_ff=32).eval()
    src = _padded(4, 6, 12, 0, [6, 3, 5, 2], seed=5)
    batched = reference.greedy_decode(model, src, max_len=8, bos_idx=1, eos_idx=2)
    assert batched.shape[0] == 4 and batched.shape[1] <= 8 and (batched[:, 0] == 1).all()
    for row in range(4):
        alone = src[row:row + 1, : int((src[row] != 0).sum())]
        single = reference.greedy_decode(model, alone, max_len=8, bos_idx=1, eos_idx=2)
        n = single.size(1)
        assert batched[row, :n].tolist() == single[0].tolist()
        assert (batched[row, n:] == 0).all()
