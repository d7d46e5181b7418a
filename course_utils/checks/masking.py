"""Autograders for chapter 07_masking: ``create_padding_mask``, ``create_causal_mask``, ``create_masks``.

Masks in this course are boolean and broadcast to ``(B, H, Lq, Lk)``; ``True`` means "may
attend". The checks compare with the answer key entry by entry and name the usual mistakes
(inverted, on the wrong axis, causal without the diagonal or off by one, float instead of bool).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from course_utils import reference
from course_utils.checks.harness import (
    Check,
    describe,
    device_names,
    devices,
    expect_callable,
    expect_pair,
    fail,
    seeded,
)

MaskMistakes = Mapping[str, Tensor | Callable[[], Tensor]]

_BOOL_HINT = (
    "masks in this course are boolean (True = may attend): a comparison such as seq != pad_idx "
    "already gives a bool tensor, and torch.ones(..., dtype=torch.bool) makes one. Drop any "
    ".float()/.int()/.long(): attention fills scores with masked_fill(~mask, -inf), and on an "
    "integer mask ~ flips bits (~1 == -2) instead of meaning 'not'."
)


def expect_mask(actual: object, expected: Tensor, what: str, *,
                shape_mistakes: Mapping[tuple[int, ...], str] | None = None,
                mistakes: MaskMistakes | None = None, hint: str | None = None,
                axes: tuple[str, ...] | None = None) -> Tensor:
    """Compare a boolean mask with the expected one: type, shape, dtype, device, then entries.

    Args:
        shape_mistakes: wrong shapes mapped to the explanation to show when ``actual`` has one.
        mistakes: known wrong masks (or callables making them), keyed by the explanation to show
            when ``actual`` equals one of them.
        hint: appended to a value mismatch that matches no known mistake.
        axes: names of the axes, to say where the first wrong entry is
            (e.g. ``("batch", "head", "query", "key")``).
    """
    if not isinstance(actual, Tensor):
        fail(f"{what} should be a torch.Tensor, but it is {describe(actual)}.")
    if tuple(actual.shape) != tuple(expected.shape):
        message = f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}."
        explanation = (shape_mistakes or {}).get(tuple(actual.shape))
        fail(message + (f"\nLikely mistake: {explanation}" if explanation else ""))
    if actual.dtype != torch.bool:
        fail(f"{what} has dtype {actual.dtype}, expected torch.bool.\nLikely mistake: {_BOOL_HINT}")
    if actual.device != expected.device:
        fail(f"{what} is on {actual.device}, but it should be on {expected.device} (where the "
             f"inputs are, or the device asked for). Create it there: device=seq.device, or "
             f"pass the device argument on to torch.ones(..., device=device).")
    wrong = actual.detach() != expected
    if not wrong.any():
        return actual
    index = tuple(int(i) for i in wrong.nonzero()[0])
    where = (", ".join(f"{name} {i}" for name, i in zip(axes, index)) if axes and len(axes) == len(index)
             else f"index {index}")
    message = (f"{what} has the right shape {tuple(expected.shape)} but {int(wrong.sum())} of "
               f"{wrong.numel()} entries are wrong; the first is at {where}: yours is "
               f"{bool(actual[index])}, expected {bool(expected[index])} (True = may attend).")
    for explanation, candidate in (mistakes or {}).items():
        value = candidate() if callable(candidate) else candidate
        if value is not None and value.shape == actual.shape and torch.equal(
                actual.detach().cpu(), value.detach().cpu().to(torch.bool)):
            fail(message + f"\nLikely mistake: {explanation}")
    fail(message + (f"\nHint: {hint}" if hint else ""))


def random_padded_ids(batch: int, length: int, vocab: int, pad_idx: int, *,
                      min_length: int = 1) -> Tensor:
    """Token ids ``(batch, length)`` as a batch of real sentences: tokens, then ``pad_idx``.

    Row 0 has no padding, row 1 (when there is one) is padded down to ``min_length``, and the rest
    get random lengths. Real tokens are drawn from ``0..vocab-1`` without ``pad_idx`` (so 0 is a
    real token when ``pad_idx != 0``). Uses torch's global generator: call it under
    :func:`~course_utils.checks.harness.seeded`.
    """
    ids = torch.randint(0, vocab - 1, (batch, length))
    ids = ids + (ids >= pad_idx).long()  # skip pad_idx
    lengths = torch.randint(min_length, length + 1, (batch,))
    lengths[0] = length
    if batch > 1:
        lengths[1] = min_length
    positions = torch.arange(length).unsqueeze(0)
    return ids.masked_fill(positions >= lengths.unsqueeze(1), pad_idx)


def _padding_shape_mistakes(batch: int, length: int) -> dict[tuple[int, ...], str]:
    return {
        (batch, 1, length, 1): "the padding is on the query axis (B, 1, L, 1). It must lie on the "
                               "key axis, (B, 1, 1, L): no query may look AT a padded token, which "
                               "is a column of the (Lq, Lk) score matrix: seq[:, None, None, :].",
        (batch, length): "add the head and query axes so the mask broadcasts over (B, H, Lq, Lk): "
                         "(B, 1, 1, L), e.g. mask.unsqueeze(1).unsqueeze(2) or mask[:, None, None, :].",
        (batch, 1, length): "one axis is missing: the mask should be (B, 1, 1, L) (batch, head, "
                            "query, key).",
        (1, 1, batch, length): "the new axes went in front of the batch axis: unsqueeze(1) twice "
                               "(or mask[:, None, None, :]) keeps the batch first.",
    }


def check_create_padding_mask(create_padding_mask: Callable[[Tensor, int], Tensor], seed: int = 0,
                              batch: int = 3, length: int = 7, pad_idx: int = 0) -> None:
    """Check ``create_padding_mask(seq, pad_idx) -> (B, 1, 1, L)``: True at real tokens.

    Uses ``pad_idx`` and a second padding index (so 0 is a real token), padding in every position
    of some row, bool dtype, and every available device.
    """
    fn = expect_callable(create_padding_mask, "create_padding_mask")
    check = Check("create_padding_mask")
    check.refuse_answer_key(fn)
    other_pad = pad_idx + 3
    for device in devices():
        for pad in (pad_idx, other_pad):
            with seeded(seed):
                seq = random_padded_ids(batch, length, vocab=10, pad_idx=pad).to(device)
                # padding also inside a sentence: the mask is about tokens, not about lengths
                seq[-1, 0] = pad
                seq[-1, -1] = (pad + 1) % 10
            what = f"create_padding_mask(seq, pad_idx={pad}) on {device.type}"
            got = check.call(fn, seq, pad, what=what)
            expected = reference.create_padding_mask(seq, pad)
            mistakes: dict[str, Tensor] = {
                "the mask is inverted: True means 'may attend', so real tokens are True and "
                "padding False (seq != pad_idx).": ~expected,
            }
            if pad != 0:
                mistakes["the padding index is fixed at 0: compare with the pad_idx argument."] = \
                    (seq != 0)[:, None, None, :]
            expect_mask(got, expected, what, shape_mistakes=_padding_shape_mistakes(batch, length),
                        mistakes=mistakes, axes=("batch", "head", "query", "key"),
                        hint="position j of sequence b must be True exactly when seq[b, j] != pad_idx.")
    check.passed(f"shape (B, 1, 1, L), bool, True at real tokens, pad_idx={pad_idx} and "
                 f"{other_pad}, device kept on {device_names()}")


_CAUSAL_HINTS = {
    "unexpected keyword argument 'device'": "give your function a device parameter, "
                                            "def create_causal_mask(size, device=None), and pass it "
                                            "on: torch.ones(size, size, dtype=torch.bool, device=device).",
}


def _causal_mistakes(size: int, device: torch.device) -> dict[str, Tensor]:
    ones = torch.ones(size, size, dtype=torch.bool, device=device)

    def four_d(m: Tensor) -> Tensor:
        return m[None, None]

    return {
        "the diagonal is masked: position i may attend to itself (torch.tril keeps the diagonal "
        "with its default diagonal=0). Without it the first position sees no key at all and its "
        "softmax gives NaN.": four_d(ones.tril(-1)),
        "the mask is shifted by one: position i also sees position i+1, the very token it must "
        "predict. Use torch.tril(..., diagonal=0).": four_d(ones.tril(1)),
        "the mask is inverted: True means 'may attend' in this course. This is the convention of "
        "nn.Transformer's masks (True = blocked); ours keeps the lower triangle: torch.tril.":
            four_d(ones.triu(1)),
        "the upper triangle lets each position see the future (i..L-1) and not the past: keep "
        "the lower triangle, torch.tril.": four_d(ones.triu()),
        "every entry is True: nothing is masked. Keep only the lower triangle (torch.tril), so "
        "position i sees positions 0..i.": four_d(ones),
    }


def check_create_causal_mask(create_causal_mask: Callable[..., Tensor], size: int = 5) -> None:
    """Check ``create_causal_mask(size, device=None) -> (1, 1, size, size)``: the lower triangle.

    Tries ``size`` and two other sizes, the default device (CPU) and ``device=`` for every
    available device.
    """
    fn = expect_callable(create_causal_mask, "create_causal_mask")
    check = Check("create_causal_mask")
    check.refuse_answer_key(fn)
    for n in (size, 1, size + 3):
        what = f"create_causal_mask({n})"
        cpu = torch.device("cpu")
        got = check.call(fn, n, what=what)
        shapes = {(n, n): "add a batch and a head axis, (1, 1, L, L), so the mask broadcasts over "
                          "(B, H, Lq, Lk): mask.unsqueeze(0).unsqueeze(0) or mask[None, None]."}
        expect_mask(got, reference.create_causal_mask(n), what, shape_mistakes=shapes,
                    mistakes=_causal_mistakes(n, cpu), axes=("batch", "head", "query", "key"))
        for device in devices():
            what = f"create_causal_mask({n}, device={str(device)!r})"
            got = check.call(fn, n, device=device, what=what, on_error=_CAUSAL_HINTS)
            expect_mask(got, reference.create_causal_mask(n, device), what, shape_mistakes=shapes,
                        mistakes=_causal_mistakes(n, device), axes=("batch", "head", "query", "key"))
    check.passed(f"shape (1, 1, L, L), bool, lower triangle with the diagonal, sizes {size}, 1, "
                 f"{size + 3}, device= on {device_names()}")


def check_create_masks(create_masks: Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]],
                       seed: int = 0, batch: int = 3, src_len: int = 6, tgt_len: int = 8,
                       pad_idx: int = 0) -> None:
    """Check ``create_masks(src, tgt, pad_idx) -> (src_mask (B, 1, 1, Ls), tgt_mask (B, 1, Lt, Lt))``.

    ``src_mask`` is the source padding mask; ``tgt_mask`` is the target padding mask AND the
    causal mask. Source and target lengths differ and both are padded.
    """
    fn = expect_callable(create_masks, "create_masks")
    check = Check("create_masks")
    check.refuse_answer_key(fn)
    B, Ls, Lt = batch, src_len, tgt_len
    for device in devices():
        with seeded(seed):
            src = random_padded_ids(B, Ls, vocab=10, pad_idx=pad_idx).to(device)
            tgt = random_padded_ids(B, Lt, vocab=10, pad_idx=pad_idx, min_length=2).to(device)
        what = f"create_masks(src, tgt, pad_idx={pad_idx}) on {device.type} (Ls={Ls}, Lt={Lt})"
        src_mask, tgt_mask = expect_pair(check.call(fn, src, tgt, pad_idx, what=what), what,
                                         ("src_mask", "tgt_mask"))
        want_src, want_tgt = reference.create_masks(src, tgt, pad_idx)
        expect_mask(src_mask, want_src, f"src_mask from {what}", axes=("batch", "head", "query", "key"),
                    shape_mistakes={
                        (B, 1, Lt, Lt): "the masks come back in the wrong order: return "
                                        "(src_mask, tgt_mask).",
                        (B, 1, 1, Lt): "src_mask was built from tgt: it is the padding mask of src.",
                        (B, 1, Ls, Ls): "src_mask should only hide the source's padding, (B, 1, 1, Ls): "
                                        "the encoder may look at the whole source, so no causal part.",
                    },
                    mistakes={"src_mask is inverted: True at real tokens, False at padding.": ~want_src})
        pad_t = reference.create_padding_mask(tgt, pad_idx)  # (B, 1, 1, Lt)
        causal = reference.create_causal_mask(Lt, device)  # (1, 1, Lt, Lt)
        full = (B, 1, Lt, Lt)
        expect_mask(tgt_mask, want_tgt, f"tgt_mask from {what}", axes=("batch", "head", "query", "key"),
                    shape_mistakes={
                        (1, 1, Lt, Lt): "tgt_mask is the causal mask alone. Combine it with the "
                                        "target's padding mask: padding_mask & causal_mask, which "
                                        "broadcasts to (B, 1, Lt, Lt).",
                        (B, 1, 1, Lt): "tgt_mask is the target's padding mask alone: combine it "
                                       "with the causal mask (&), so no position sees the future.",
                        (B, 1, 1, Ls): "the masks come back in the wrong order: return "
                                       "(src_mask, tgt_mask).",
                    },
                    mistakes={
                        "tgt_mask has no padding part: it equals the causal mask. Combine them with &: "
                        "create_padding_mask(tgt, pad_idx) & create_causal_mask(Lt).":
                            lambda: causal.expand(full),
                        "tgt_mask has no causal part: it equals the padding mask, so each position "
                        "sees the future. Combine them with &.": lambda: pad_t.expand(full),
                        "the padding and causal masks were combined with | (or): a key must be "
                        "allowed by both, so use & (and).": lambda: pad_t | causal,
                        "the target padding is on the query axis (rows): pad the key axis, "
                        "(B, 1, 1, Lt), then & with the causal mask.":
                            lambda: pad_t.transpose(-1, -2) & causal,
                        "tgt_mask is inverted: True means 'may attend'.": lambda: ~want_tgt,
                        "the causal part misses the diagonal: a position may attend to itself.":
                            lambda: pad_t & causal.tril(-1),
                        "the causal part is shifted by one: position i must not see i+1.":
                            lambda: pad_t & torch.ones_like(causal).tril(1),
                        "the causal part is the upper triangle (it sees the future): use torch.tril.":
                            lambda: pad_t & torch.ones_like(causal).triu(),
                    })
    check.passed(f"src_mask (B, 1, 1, Ls) and tgt_mask = padding & causal (B, 1, Lt, Lt), bool, "
                 f"Ls != Lt, pad_idx={pad_idx}, on {device_names()}")
