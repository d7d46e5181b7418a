"""greedy_decode(..., use_cache=True): the incremental decoder gives the same outputs as the
readable one, which re-runs the decoder on the whole prefix at every step."""

from __future__ import annotations

import pytest
import torch

from course_utils.reference import Transformer, create_causal_mask, create_padding_mask, greedy_decode
from course_utils.reference.decoding import DecoderCache

PAD, BOS, EOS = 0, 1, 2


def small_model(seed: int, dropout: float = 0.1) -> Transformer:
    """A small random Transformer in eval() mode (dropout off, as decoding needs)."""
    torch.manual_seed(seed)
    return Transformer(13, 11, d_model=32, num_layers=2, num_heads=4, d_ff=48, dropout=dropout,
                       max_seq_length=64).eval()


def padded_source(seed: int) -> torch.Tensor:
    """``(5, 9)`` source ids with several amounts of padding (one row without any)."""
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 13, (5, 9), generator=generator)
    for row, length in enumerate((9, 7, 4, 2, 6)):
        src[row, length:] = PAD
    return src


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cached_greedy_decoding_gives_the_same_tokens(seed: int) -> None:
    model, src = small_model(seed), padded_source(seed)
    plain = greedy_decode(model, src, max_len=20, bos_idx=BOS, eos_idx=EOS, pad_idx=PAD)
    cached = greedy_decode(model, src, max_len=20, bos_idx=BOS, eos_idx=EOS, pad_idx=PAD, use_cache=True)
    assert torch.equal(plain, cached), f"\n{plain}\n{cached}"


def test_cached_decoding_runs_to_max_len_like_the_plain_one() -> None:
    # An <eos> id the model never produces: both run all max_len - 1 steps.
    model, src = small_model(3), padded_source(3)
    plain = greedy_decode(model, src, max_len=30, bos_idx=BOS, eos_idx=-1, pad_idx=PAD)
    cached = greedy_decode(model, src, max_len=30, bos_idx=BOS, eos_idx=-1, pad_idx=PAD, use_cache=True)
    assert plain.shape == (5, 30) and torch.equal(plain, cached)


def test_each_cached_step_matches_the_full_decoder_states() -> None:
    """Position by position, the cache's states equal model.decode's on the whole prefix."""
    model, src = small_model(4), padded_source(4)
    tgt = torch.randint(3, 11, (5, 8), generator=torch.Generator().manual_seed(4))
    tgt[:, 0] = BOS
    with torch.no_grad():
        src_mask = create_padding_mask(src, PAD)
        memory = model.encode(src, src_mask)
        full = model.decode(tgt, memory, src_mask, create_causal_mask(tgt.size(1)))  # (5, 8, 32)
        cache = DecoderCache(model, memory)
        steps = torch.cat([cache.decode_next(tgt[:, t: t + 1], src_mask) for t in range(tgt.size(1))], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)
    assert cache.length == 8 and cache.keys[0].shape == (5, 4, 8, 8)


def test_the_default_is_the_uncached_path() -> None:
    model, src = small_model(5), padded_source(5)
    calls = []
    original = model.decode

    def counting_decode(*args, **kwargs):
        calls.append(args[0].size(1))
        return original(*args, **kwargs)

    model.decode = counting_decode
    greedy_decode(model, src, max_len=6, bos_idx=BOS, eos_idx=-1, pad_idx=PAD)
    assert calls == [1, 2, 3, 4, 5]  # the whole prefix every step
    calls.clear()
    greedy_decode(model, src, max_len=6, bos_idx=BOS, eos_idx=-1, pad_idx=PAD, use_cache=True)
    assert calls == []  # the cache runs the decoder's layers itself


def test_a_model_without_the_course_layout_is_refused_clearly() -> None:
    class Other(torch.nn.Module):
        def encode(self, src, src_mask):
            return torch.zeros(src.size(0), src.size(1), 4)

    with pytest.raises(TypeError, match="use_cache needs a model laid out like"):
        greedy_decode(Other(), torch.tensor([[3, 4]]), 5, BOS, EOS, PAD, use_cache=True)
