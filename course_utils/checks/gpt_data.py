"""Autograders for chapter 10_gpt's data pieces: the character tokenizer (``CharTokenizer``) and the
batch sampler (``get_batch``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from course_utils.checks.harness import (
    Check,
    describe,
    device_names,
    devices,
    expect_callable,
    expect_tensor,
    fail,
    seeded,
)

__all__ = ["check_char_tokenizer", "check_get_batch"]


# --------------------------------------------------------------------------------------
# CharTokenizer(text): stoi, itos, vocab_size, encode, decode
# --------------------------------------------------------------------------------------

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ \n,.;:!?'-&"


def _random_text(seed: int, length: int) -> str:
    with seeded(seed):
        # a few characters of the alphabet only, in a shuffled order, so sorted != first appearance
        chars = [_ALPHABET[i] for i in torch.randperm(len(_ALPHABET))[:20].tolist()]
        ids = torch.randint(len(chars), (length,)).tolist()
    return "".join(chars[i] for i in ids)


def check_char_tokenizer(CharTokenizer: type, seed: int = 0, length: int = 300) -> None:
    """Check ``CharTokenizer(text)``: ``itos`` the sorted characters, ``stoi`` their ids, ``vocab_size``,
    ``encode(str) -> list[int]``, ``decode(list[int]) -> str`` (a round trip), and a ValueError naming an
    unknown character."""
    if not isinstance(CharTokenizer, type):
        fail(f"pass the class CharTokenizer itself to the check, not {describe(CharTokenizer)}.")
    check = Check("CharTokenizer")
    check.refuse_answer_key(CharTokenizer)
    text = _random_text(seed, length)
    vocab = sorted(set(text))
    tok = check.call(CharTokenizer, text, what="CharTokenizer(text)")
    for name, create in (("itos", "sorted(set(text))"), ("stoi", "{ch: i for i, ch in enumerate(self.itos)}"),
                         ("vocab_size", "len(self.itos)")):
        if not hasattr(tok, name):
            fail(f"CharTokenizer has no attribute {name}: in __init__, create self.{name} = {create}.")
    itos = list(tok.itos) if isinstance(tok.itos, (list, tuple, str)) else tok.itos
    if itos != vocab:
        message = (f"CharTokenizer(text).itos should be the sorted characters of text, {vocab!r}, "
                   f"but it is {itos!r}.")
        if isinstance(itos, list) and sorted(itos) == vocab:
            message += ("\nLikely mistake: the characters are in the order they first appear; sort them "
                        "(sorted(set(text))) so that the ids do not depend on where the text starts, as nanoGPT does.")
        elif isinstance(itos, list) and len(itos) > len(vocab):
            message += "\nLikely mistake: characters repeat; build it from set(text), one entry per character."
        fail(message)
    if tok.vocab_size != len(vocab):
        fail(f"CharTokenizer(text).vocab_size is {describe(tok.vocab_size)}, expected {len(vocab)} (len(itos)).")
    if not isinstance(tok.stoi, dict) or tok.stoi != {ch: i for i, ch in enumerate(vocab)}:
        hint = ""
        if isinstance(tok.stoi, dict) and tok.stoi == {ch: i + 1 for i, ch in enumerate(vocab)}:
            hint = "\nLikely mistake: the ids start at 1; enumerate starts at 0, and id i must be itos[i]."
        fail(f"CharTokenizer(text).stoi should map each character to its index in itos "
             f"({{ch: i for i, ch in enumerate(itos)}}), but it is {describe(tok.stoi)} {tok.stoi!r:.200}.{hint}")
    piece = text[length // 3: length // 3 + 40]
    ids = check.call(tok.encode, piece, what=f"encode({piece!r})")
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        fail(f"encode(...) should return a list of Python ints, but it returned {describe(ids)}.")
    want = [vocab.index(ch) for ch in piece]
    if ids != want:
        fail(f"encode({piece!r}) returned {ids}, expected {want}: one id per character, stoi[ch].")
    back = check.call(tok.decode, want, what="decode(ids)")
    if back != piece:
        hint = ("\nLikely mistake: the characters are joined with a separator; use ''.join(...)."
                if isinstance(back, str) and back.replace(" ", "") == piece.replace(" ", "") else "")
        fail(f"decode(encode(s)) should give s back: s = {piece!r}, decode gave {describe(back)}.{hint}")
    if check.call(tok.decode, [], what="decode([])") != "" or check.call(tok.encode, "", what="encode('')") != []:
        fail("encode('') should be [] and decode([]) should be '' (nothing in, nothing out).")
    unknown = next(ch for ch in "Z#@%0" if ch not in text)
    probe = piece[:3] + unknown + piece[3:6]
    try:
        result = tok.encode(probe)
    except ValueError as error:
        if repr(unknown) not in str(error) and unknown not in str(error):
            fail(f"encode({probe!r}) raised ValueError, but its message does not name the unknown character "
                 f"{unknown!r}: {error}. Say which character is not in the vocabulary.")
    except KeyError:
        fail(f"encode({probe!r}) raised a bare KeyError for {unknown!r}, which is not in the vocabulary. Catch "
             f"it and raise ValueError(f\"character {{ch!r}} is not in the vocabulary\") instead: a clear error "
             f"that names the character.")
    except Exception as error:  # noqa: BLE001
        fail(f"encode({probe!r}) raised {type(error).__name__}: {error}; for a character outside the vocabulary "
             f"it should raise ValueError naming {unknown!r}.")
    else:
        fail(f"encode({probe!r}) returned {describe(result)} {result!r:.80}, but {unknown!r} is not in the vocabulary: "
             f"it should raise ValueError naming the character, not skip it or give it some other id.")
    check.passed(f"itos sorted, stoi, vocab_size, encode/decode round trip, ValueError for {unknown!r}")


# --------------------------------------------------------------------------------------
# get_batch(data, block_size, batch_size, generator=None) -> (x, y)
# --------------------------------------------------------------------------------------


def check_get_batch(get_batch: Callable[..., tuple[Tensor, Tensor]], seed: int = 0, block_size: int = 8,
                    batch_size: int = 4, length: int = 200) -> None:
    """Check ``get_batch``: windows ``x`` of ``data``, targets ``y`` shifted by one, every start from 0 to
    ``len(data) - block_size - 1`` possible, reproducible with the generator, on ``data``'s device."""
    fn = expect_callable(get_batch, "get_batch")
    check = Check("get_batch")
    check.refuse_answer_key(fn)
    T, B = block_size, batch_size
    for device in devices():
        with seeded(seed):
            data = torch.randperm(length).to(device)  # distinct values: each window's start can be read off
        position = {int(v): i for i, v in enumerate(data.tolist())}
        what = f"get_batch(data of {length} tokens on {device.type}, block_size={T}, batch_size={B}, generator)"

        def call(n: int = B, d: Tensor = data, g_seed: int = seed, global_seed: int = 0) -> tuple[Tensor, Tensor]:
            torch.manual_seed(global_seed)
            result = check.call(fn, d, T, n, torch.Generator().manual_seed(g_seed), what=what,
                                on_error={"out of range": "a start is too large: the last start whose target "
                                          "window fits is len(data) - block_size - 1, and torch.randint's upper "
                                          "bound is exclusive: torch.randint(len(data) - block_size, ...).",
                                          "stack expects each tensor to be equal size":
                                          "a window ran past the end of data: starts must stay below "
                                          "len(data) - block_size (torch.randint's bound is exclusive)."})
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                fail(f"{what} should return a tuple (x, y), but it returned {describe(result)}.")
            return result[0], result[1]

        with seeded(seed):
            x, y = call()
        for name, t in (("x", x), ("y", y)):
            expect_tensor(t, f"{name} from {what}", (B, T))
            if t.dtype != torch.long:
                fail(f"{name} from {what} has dtype {t.dtype}, expected torch.int64 (data's dtype): token ids "
                     f"index an nn.Embedding.")
            if t.device != data.device:
                fail(f"{name} from {what} is on {t.device}, but data is on {data.device}: return windows of data "
                     f"itself (data[i:i + block_size]), on its device.")
        for b in range(B):
            s = position[int(x[b, 0])]
            if s + T > length or not torch.equal(x[b], data[s:s + T]):
                fail(f"row {b} of x is not a window of data: it should be data[s:s + block_size] for a random start s, "
                     f"but it is {x[b].tolist()} (starting like data[{s}:]). Likely mistake: indices mixed up.")
            if torch.equal(y[b], x[b]):
                fail(f"y equals x in row {b}: the targets must be the same window shifted by one, "
                     f"data[s + 1:s + block_size + 1], so that position t learns to predict token t + 1.")
            if s + T + 1 > length or not torch.equal(y[b], data[s + 1:s + T + 1]):
                hint = ""
                if s >= 1 and torch.equal(y[b], data[s - 1:s + T - 1]):
                    hint = "\nLikely mistake: y is shifted the wrong way (data[s - 1:...]); it is data[s + 1:s + block_size + 1]."
                fail(f"row {b} of y should be data[s + 1:s + block_size + 1] for the start s = {s} of x, the next "
                     f"token at each position, but it is {y[b].tolist()}.{hint}")
        x2, y2 = call(global_seed=12345)
        if not (torch.equal(x, x2) and torch.equal(y, y2)):
            fail(f"two calls with generators seeded alike gave different batches: draw the starts with the "
                 f"generator argument, torch.randint(..., generator=generator), so that training is reproducible.")
        # Only three starts fit in a short text: all three must turn up among many rows.
        short = data[: T + 3]
        xs, _ = call(n=300, d=short)
        starts = {position[int(v)] for v in xs[:, 0].tolist()}
        if starts != {0, 1, 2}:
            missing = sorted({0, 1, 2} - starts)
            message = (f"with len(data) = block_size + 3 the valid starts are 0, 1 and 2 (the target window must fit), "
                       f"but in 300 rows the starts were {sorted(starts)}.")
            if missing == [2]:
                message += ("\nLikely mistake: the last valid start never comes up: torch.randint(len(data) - "
                            "block_size, ...) already excludes its upper bound, so do not subtract 1 more.")
            fail(message)
    check.passed(f"x (B, T) windows, y shifted by one, every start possible, generator, int64, on {device_names()}")
