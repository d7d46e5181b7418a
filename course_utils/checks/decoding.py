"""Autograder for chapter 09_multi30k's ``greedy_decode``.

It runs on a small Transformer trained for a second to copy its input (so that its outputs end with
``<eos>`` at different positions; the trained weights are kept in :mod:`course_utils.cache`), in
float64, and must give exactly the course's output; known mistakes are recognised by re-decoding
with them.
"""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from course_utils import cache, reference
from course_utils.checks.harness import (
    Check,
    device_names,
    devices,
    expect_callable,
    expect_tensor,
    fail,
    one_thread,
    seeded,
    steady,
)
from course_utils.reference.decoding import greedy_decode as _reference_greedy_decode
from course_utils.reference.masking import create_causal_mask, create_padding_mask
from course_utils.checks.batching import padded

__all__ = ["check_greedy_decode"]


# ======================================================================================
# greedy_decode(model, src, max_len, bos_idx, eos_idx, pad_idx=0) -> (B, L)
# ======================================================================================

_COPY_VOCAB = 12
_COPY_SPECIALS = (0, 1, 2)  # pad, bos, eos while training the copier


#: Bump when _train_copy_model changes: the disk cache keeps the weights under this version.
_COPY_MODEL_VERSION = 1


@functools.cache
def _copy_model_state() -> dict[str, Tensor]:
    """A small Transformer trained for ~60 steps to copy its input (a second on a CPU).

    Half-trained on purpose: it copies imperfectly, and ends its outputs with <eos> at many
    different positions, which is what a decoding check needs. Trained in float64 on one
    thread (faster for so small a model on a busy machine), so that every machine gets
    practically the same weights. Kept in the course's disk cache (:mod:`course_utils.cache`),
    keyed by this code's version and torch's: autograding runs every submission in a new
    kernel, and a class would otherwise pay that second once per student.
    """
    path = cache.cache_dir() / "checks" / f"copy-model-v{_COPY_MODEL_VERSION}-torch{torch.__version__}.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if _is_copy_model_state(state):
            return state
    except Exception:  # noqa: BLE001 - missing, unreadable or damaged: train it again
        pass
    with one_thread():
        state = _train_copy_model()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    cache.write_atomically(path, buffer.getvalue())
    return state


def _is_copy_model_state(state: Any) -> bool:
    """True when ``state`` has exactly the copier's tensors, in float64, with their shapes."""
    expected = _copy_transformer(dropout=0.0).double().state_dict()
    return (isinstance(state, dict) and set(state) == set(expected)
            and all(isinstance(state[k], Tensor) and state[k].dtype == torch.float64
                    and state[k].shape == v.shape for k, v in expected.items()))


def _copy_transformer(dropout: float, pad_idx: int = 0) -> nn.Module:
    """The copier's architecture (untrained, float32)."""
    return reference.Transformer(_COPY_VOCAB, _COPY_VOCAB, d_model=32, num_layers=2, num_heads=4, d_ff=64,
                                 dropout=dropout, max_seq_length=32, pad_idx=pad_idx)


def _train_copy_model() -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(1234)
    with seeded(1234):
        model = _copy_transformer(dropout=0.0).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    criterion = nn.CrossEntropyLoss(ignore_index=0)
    positions = torch.arange(8)
    for _ in range(60):
        lengths = torch.randint(2, 9, (32,), generator=generator)
        src = torch.randint(3, _COPY_VOCAB, (32, 8), generator=generator)
        src[positions[None, :] >= lengths[:, None]] = 0
        tgt = torch.zeros(32, 10, dtype=torch.long)
        tgt[:, 0] = 1
        tgt[:, 1:9] = src
        tgt[torch.arange(32), lengths + 1] = 2
        logits = model(src, tgt[:, :-1])
        loss = criterion(logits.reshape(-1, _COPY_VOCAB), tgt[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _copy_model(pad_idx: int, bos_idx: int, eos_idx: int, device: torch.device) -> nn.Module:
    """The copier in float64 on ``device``, its ids permuted so that the specials are the ones asked for."""
    model = _copy_transformer(dropout=0.1, pad_idx=pad_idx)
    state = dict(_copy_model_state())
    # new id of old id: specials go where asked, the other ids fill the remaining slots in order.
    wanted = (pad_idx, bos_idx, eos_idx)
    others = [i for i in range(_COPY_VOCAB) if i not in wanted]
    new_of_old = list(wanted) + others
    old_of_new = torch.empty(_COPY_VOCAB, dtype=torch.long)
    for old, new in enumerate(new_of_old):
        old_of_new[new] = old
    for key in ("encoder.embedding.weight", "decoder.embedding.weight", "generator.weight", "generator.bias"):
        state[key] = state[key][old_of_new]
    model.load_state_dict(state)
    return model.to(device=device, dtype=torch.float64).eval()


def _copy_sources(seed: int, batch: int, src_len: int, pad_idx: int, bos_idx: int, eos_idx: int,
                  device: torch.device) -> Tensor:
    rng = random.Random(seed)
    words = [i for i in range(_COPY_VOCAB) if i not in (pad_idx, bos_idx, eos_idx)]
    rows = []
    for r in range(batch):
        length = src_len if r % 3 == 0 else rng.randint(2, src_len)
        rows.append([rng.choice(words) for _ in range(length)])
    return padded(rows, pad_idx).to(device)


def _greedy_variant(model: nn.Module, src: Tensor, max_len: int, bos_idx: int, eos_idx: int, pad_idx: int, *,
                    src_mask: bool = True, causal: bool = True, position: int = -1, pad_after_eos: bool = True,
                    stop_when: str = "all") -> Tensor:
    """The reference algorithm with one known mistake switched on (for diagnoses)."""
    batch = src.size(0)
    with torch.no_grad():
        mask = create_padding_mask(src, pad_idx) if src_mask else None
        memory = model.encode(src, mask)
        ys = torch.full((batch, 1), bos_idx, dtype=torch.long, device=src.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        for _ in range(max_len - 1):
            tgt_mask = create_causal_mask(ys.size(1), device=src.device) if causal else None
            states = model.decode(ys, memory, mask, tgt_mask)
            token = model.generator(states[:, position]).argmax(dim=-1)
            if pad_after_eos:
                token = token.masked_fill(finished, pad_idx)
            ys = torch.cat([ys, token.unsqueeze(1)], dim=1)
            finished |= token == eos_idx
            if (stop_when == "all" and bool(finished.all())) or (stop_when == "any" and bool(finished.any())):
                break
    return ys


@steady
def check_greedy_decode(greedy_decode: Callable[..., Tensor], seed: int = 0, batch: int = 6, src_len: int = 8,
                        max_len: int = 7, pad_idx: int = 0, bos_idx: int = 2, eos_idx: int = 3) -> None:
    """Check ``greedy_decode(model, src, max_len, bos_idx, eos_idx, pad_idx)`` against the course's.

    The model is a small Transformer trained to copy (float64, eval mode); the sources have
    different lengths (padding), some outputs end early with ``<eos>`` and some reach
    ``max_len``. The output must be exactly the course's, except that extra trailing columns
    of padding (decoding on after every sentence has finished) are tolerated.
    """
    fn = expect_callable(greedy_decode, "greedy_decode")
    check = Check("greedy_decode")
    check.refuse_answer_key(fn)
    ids = f"bos_idx={bos_idx}, eos_idx={eos_idx}, pad_idx={pad_idx}"
    for device in devices():
        model = _copy_model(pad_idx, bos_idx, eos_idx, device)
        src = _copy_sources(seed, batch, src_len, pad_idx, bos_idx, eos_idx, device)
        what = f"greedy_decode(model, src, max_len={max_len}, {ids})"
        got = check.call(fn, model, src.clone(), max_len, bos_idx, eos_idx, pad_idx, what=what + f" on {device.type}")
        want = _reference_greedy_decode(model, src, max_len, bos_idx, eos_idx, pad_idx)
        _expect_decoded(got, want, model, src, max_len, bos_idx, eos_idx, pad_idx, f"the output of {what} on "
                        f"{device.type}")
        # Outputs longer than their sources (translations often are): short sources, a generous max_len.
        short = _copy_sources(seed + 1, 4, 3, pad_idx, bos_idx, eos_idx, device)
        long_max = 3 * short.size(1) + 2
        what = f"greedy_decode(model, src, max_len={long_max}, {ids}) with sources of 3 tokens"
        got = check.call(fn, model, short.clone(), long_max, bos_idx, eos_idx, pad_idx, what=what + f" on {device.type}")
        want = _reference_greedy_decode(model, short, long_max, bos_idx, eos_idx, pad_idx)
        if (isinstance(got, Tensor) and got.dim() == 2 and got.size(1) <= short.size(1) + 1 < want.size(1)
                and bool((got[:, 0] == bos_idx).all())):
            fail(f"the output of {what} on {device.type} has {got.size(1)} columns, expected {want.size(1)}: it "
                 f"stops at about the source's length ({short.size(1)} tokens). Outputs can be longer than their "
                 f"sources (translations often are): decode until every row has produced <eos>, or max_len.")
        _expect_decoded(got, want, model, short, long_max, bos_idx, eos_idx, pad_idx,
                        f"the output of {what} on {device.type}")
    check.passed(f"same tokens as the reference: stops at <eos>, pads after it, respects max_len, outputs "
                 f"longer than their sources, padded sources ({batch} sentences, {ids}) on {device_names()}")


def _expect_decoded(got: Any, want: Tensor, model: nn.Module, src: Tensor, max_len: int, bos_idx: int,
                    eos_idx: int, pad_idx: int, what: str) -> None:
    if isinstance(got, (list, tuple)):
        fail(f"{what} is a {type(got).__name__}; return one tensor (B, L), shorter rows padded with pad_idx "
             f"after their <eos>.")
    expect_tensor(got, what)
    if got.dim() != 2 or got.size(0) != want.size(0):
        fail(f"{what} has shape {tuple(got.shape)}, expected (B, L) with B = {want.size(0)} rows: one "
             f"output per source sentence.")
    if got.dtype != torch.long:
        fail(f"{what} has dtype {got.dtype}, expected torch.long (token ids).")
    if got.device != src.device:
        fail(f"{what} is on {got.device}, but src was on {src.device}: create new tensors on "
             f"src.device.")
    if not bool((got[:, 0] == bos_idx).all()):
        fail(f"{what} does not start every row with <bos> (bos_idx={bos_idx}): its first column is "
             f"{got[:, 0].tolist()}. Start from a (B, 1) tensor filled with bos_idx.")
    if got.size(1) > max_len:
        fail(f"{what} has {got.size(1)} columns, more than max_len={max_len}: max_len counts every token "
             f"of the output, <bos> included, so generate at most max_len - 1 tokens.")
    if got.size(1) > want.size(1) and bool((got[:, want.size(1):] == pad_idx).all()):
        got = got[:, : want.size(1)]  # decoding on after everything finished, with padding: fine
    mistakes = {
        "after <eos>, a finished sentence must only grow padding: keep a `finished` flag per row and put "
        "pad_idx where it is set (tensor.masked_fill(finished, pad_idx)).":
            lambda: _greedy_variant(model, src, max_len, bos_idx, eos_idx, pad_idx, pad_after_eos=False),
        "the decoding stops as soon as one sentence has produced <eos>; stop when all of them have "
        "(finished.all()), or at max_len.":
            lambda: _greedy_variant(model, src, max_len, bos_idx, eos_idx, pad_idx, stop_when="any"),
        "the source padding mask is missing: encode and decode with src_mask = create_padding_mask(src, "
        "pad_idx), or the padded source positions are attended to.":
            lambda: _greedy_variant(model, src, max_len, bos_idx, eos_idx, pad_idx, src_mask=False),
        "the decoder ran without the causal mask: pass tgt_mask = create_causal_mask(ys.size(1)) "
        "so that the states of earlier positions are those seen in training.":
            lambda: _greedy_variant(model, src, max_len, bos_idx, eos_idx, pad_idx, causal=False),
        "the next token was taken from the first position's logits; take the last position's, "
        "states[:, -1], the prediction that follows everything generated so far.":
            lambda: _greedy_variant(model, src, max_len, bos_idx, eos_idx, pad_idx, position=0),
    }
    if got.shape != want.shape:
        for explanation, variant in mistakes.items():
            candidate = variant()
            if candidate.shape == got.shape and torch.equal(candidate.to(got.device), got):
                fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}.\nLikely mistake: "
                     f"{explanation}")
        longer = "longer" if got.size(1) > want.size(1) else "shorter"
        fail(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)} ({longer}).\nHint: loop "
             f"at most max_len - 1 times, append each step's tokens, and stop once every row has "
             f"produced <eos> (finished.all()).")
    if torch.equal(got, want):
        return
    row = int((got != want).any(dim=1).nonzero()[0])
    for explanation, variant in mistakes.items():
        if torch.equal(variant().to(got.device), got):
            fail(f"{what} differs from the expected tokens, e.g. row {row}: yours {got[row].tolist()}, "
                 f"expected {want[row].tolist()}.\nLikely mistake: {explanation}")
    fail(f"{what} differs from the expected tokens, e.g. row {row}: yours {got[row].tolist()}, expected "
         f"{want[row].tolist()}.\nHint: encode once with the source padding mask; then repeatedly decode "
         f"ys with the causal mask, take generator(states[:, -1]).argmax(-1) as the next token (pad_idx for "
         f"finished rows), and append it.")
