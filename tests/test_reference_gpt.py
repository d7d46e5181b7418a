"""The chapter 10 answer key against PyTorch's built-ins and its own promises: the pre-norm block against
``nn.TransformerEncoderLayer(norm_first=True)``, the GPT's tying and initialisation, the batch sampler,
sampling, and generation with and without the key/value cache."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import reference
from course_utils.checks.sampling import chi_square_threshold, intended_distribution
from course_utils.data.shakespeare import encode_splits, load_shakespeare, split_text
from course_utils.reference.gpt import LayerCache, forward_cached


@pytest.fixture(scope="module")
def text() -> str:
    return load_shakespeare()


def test_the_data_split_is_nanogpts(text: str) -> None:
    train, val = split_text(text)
    assert (len(text), len(train), len(val)) == (1_115_394, 1_003_854, 111_540)
    assert train + val == text


def test_tokenizer_round_trip_on_the_whole_text(text: str) -> None:
    tok = reference.CharTokenizer(text)
    assert tok.vocab_size == 65 and tok.itos == sorted(set(text)) and tok.itos[0] == "\n"
    train, val = encode_splits(tok, text)
    assert tok.decode(torch.cat([train, val])) == text
    with pytest.raises(ValueError, match="'é' is not in the vocabulary"):
        tok.encode("café")


def test_get_batch_windows_and_targets() -> None:
    data = torch.arange(100)
    x, y = reference.get_batch(data, 10, 64, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (64, 10) and x.dtype == torch.long
    assert torch.equal(y, x + 1) and torch.equal(x[:, 1:], x[:, :-1] + 1)
    starts = reference.get_batch(data[:13], 10, 500, torch.Generator().manual_seed(1))[0][:, 0]
    assert set(starts.tolist()) == {0, 1, 2}


def _builtin_twin(block: nn.Module, d_model: int, num_heads: int) -> nn.TransformerEncoderLayer:
    twin = nn.TransformerEncoderLayer(d_model, num_heads, 4 * d_model, dropout=0.0, activation="gelu",
                                      batch_first=True, norm_first=True).double()
    attn = block.attn
    with torch.no_grad():
        twin.self_attn.in_proj_weight.copy_(torch.cat([attn.W_q.weight, attn.W_k.weight, attn.W_v.weight]))
        twin.self_attn.in_proj_bias.copy_(torch.cat([attn.W_q.bias, attn.W_k.bias, attn.W_v.bias]))
        twin.self_attn.out_proj.weight.copy_(attn.W_o.weight)
        twin.self_attn.out_proj.bias.copy_(attn.W_o.bias)
        for mine, theirs in ((block.mlp[0], twin.linear1), (block.mlp[2], twin.linear2),
                             (block.ln1, twin.norm1), (block.ln2, twin.norm2)):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)
    return twin.eval()


def test_block_matches_the_builtin_pre_norm_encoder_layer_with_a_causal_mask() -> None:
    torch.manual_seed(0)
    block = reference.GPTBlock(32, 4).double().eval()
    for norm in (block.ln1, block.ln2):
        nn.init.normal_(norm.weight, 1.0, 0.3)
        nn.init.normal_(norm.bias, 0.0, 0.3)
    twin = _builtin_twin(block, 32, 4)
    x = torch.randn(3, 9, 32, dtype=torch.float64)
    mask = nn.Transformer.generate_square_subsequent_mask(9, dtype=torch.float64)
    torch.testing.assert_close(block(x), twin(x, src_mask=mask, is_causal=True), atol=1e-10, rtol=1e-8)


def test_gpt_ties_initialises_and_starts_uniform() -> None:
    torch.manual_seed(0)
    model = reference.GPT(65, 64, d_model=128, num_layers=4, num_heads=4)
    assert model.lm_head.weight is model.token_embedding.weight
    d, L, V, T = 128, 4, 65, 64
    assert sum(p.numel() for p in model.parameters()) == V * d + T * d + L * (12 * d * d + 13 * d) + 2 * d
    assert model.blocks[0].attn.W_o.weight.std().item() == pytest.approx(0.02 / math.sqrt(2 * L), rel=0.05)
    assert model.token_embedding.weight.std().item() == pytest.approx(0.02, rel=0.05)
    idx, targets = torch.randint(V, (4, T)), torch.randint(V, (4, T))
    loss = F.cross_entropy(model(idx).flatten(0, 1), targets.flatten())
    assert loss.item() == pytest.approx(math.log(V), abs=0.06)
    with pytest.raises(ValueError, match="block_size=64"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_gpt_is_causal() -> None:
    torch.manual_seed(0)
    model = reference.GPT(11, 8, d_model=16, num_layers=2, num_heads=2).eval()
    idx = torch.randint(11, (2, 8))
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    torch.testing.assert_close(model(idx)[:, :5], model(changed)[:, :5])


def test_sampling_follows_its_distribution() -> None:
    logits = torch.tensor([2.0, 1.5, 0.3, -0.2, -1.0, 0.9])
    n = 40_000
    for temperature, top_k, top_p in ((1.0, None, None), (0.6, 3, None), (1.3, None, 0.8), (1.0, 4, 0.7)):
        draws = reference.sample_next_token(logits.expand(n, -1), temperature, top_k, top_p,
                                            torch.Generator().manual_seed(0))
        counts = torch.bincount(draws.flatten(), minlength=6).double()
        probs = intended_distribution(logits, temperature, top_k, top_p)
        support = probs > 0
        assert counts[~support].sum() == 0
        chi2 = (((counts - n * probs) ** 2)[support] / (n * probs[support])).sum().item()
        assert chi2 < chi_square_threshold(int(support.sum()) - 1)
    assert torch.equal(reference.sample_next_token(logits[None], 0), torch.tensor([[0]]))


def test_chi_square_threshold_matches_known_quantiles() -> None:
    # df = 1: the square of the normal's two-sided 1e-6 quantile, 4.891638^2; df = 2: -2 ln(1e-6) exactly.
    assert chi_square_threshold(1) == pytest.approx(4.891638 ** 2, rel=1e-5)
    assert chi_square_threshold(2) == pytest.approx(-2 * math.log(1e-6), rel=1e-5)
    assert chi_square_threshold(6, 0.05) == pytest.approx(12.5916, rel=1e-4)  # the textbook table's value


def test_cached_forward_matches_the_full_forward() -> None:
    torch.manual_seed(0)
    model = reference.GPT(13, 16, d_model=24, num_layers=2, num_heads=3).double().eval()
    idx = torch.randint(13, (2, 12))
    caches = [LayerCache() for _ in model.blocks]
    pieces = [forward_cached(model, idx[:, :5], caches)]
    pieces += [forward_cached(model, idx[:, t:t + 1], caches) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), model(idx), atol=1e-10, rtol=1e-8)
    assert caches[0].k.shape == (2, 3, 12, 8)


@pytest.mark.parametrize("new_tokens", [10, 40])  # within the window, and sliding past block_size = 16
def test_generate_cached_gives_the_same_tokens(new_tokens: int) -> None:
    torch.manual_seed(0)
    model = reference.GPT(13, 16, d_model=24, num_layers=2, num_heads=3).eval()
    prompt = torch.randint(13, (3, 4))
    for settings in ((0.8, None, None), (1.0, 5, None), (1.0, None, 0.9), (0, None, None)):
        plain = reference.generate(model, prompt, new_tokens, *settings, torch.Generator().manual_seed(1))
        cached = reference.generate_cached(model, prompt, new_tokens, *settings, torch.Generator().manual_seed(1))
        assert torch.equal(plain, cached)
        assert plain.shape == (3, 4 + new_tokens)
