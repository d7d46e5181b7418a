"""Autograder for chapter 07_masking's full model: ``Transformer``.

The model is the student's, built from an encoder and a decoder (the course's reference ones or
the student's own). The check does not compare it with another implementation: it checks that
``encode``, ``decode`` and ``forward`` wire the student's own ``encoder``, ``decoder`` and
``generator`` together with the right masks, that the output is logits, that every parameter
learns, and that the model can memorise one small batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils import reference
from course_utils.checks.harness import (
    Check,
    describe,
    device_names,
    devices,
    expect_close,
    expect_module_class,
    expect_tensor,
    fail,
    one_thread,
    seeded,
    steady,
)
from course_utils.checks.masking import random_padded_ids

SIGNATURE = {"src_vocab_size": inspect.Parameter.empty, "tgt_vocab_size": inspect.Parameter.empty,
             "d_model": 512, "num_layers": 6, "num_heads": 8, "d_ff": 2048, "dropout": 0.1,
             "max_seq_length": 5000, "pad_idx": 0}
SIGNATURE_TEXT = ("Transformer(src_vocab_size, tgt_vocab_size, d_model=512, num_layers=6, num_heads=8, "
                  "d_ff=2048, dropout=0.1, max_seq_length=5000, pad_idx=0)")

_MASK_SHAPE_HINT = (
    "a mask does not fit the attention scores it was given to. src_mask (B, 1, 1, Ls) belongs to "
    "the encoder's self-attention and to the decoder's cross-attention (keys from the source); "
    "tgt_mask (B, 1, Lt, Lt) to the decoder's self-attention. Are src_mask and tgt_mask swapped?"
)
_ON_ERROR = {"must match the size of tensor b": _MASK_SHAPE_HINT,
             "The size of tensor a": _MASK_SHAPE_HINT}

# The overfitting test: a tiny model must memorise one small batch.
OVERFIT_STEPS = 300
OVERFIT_LOSS = 0.05


def _expect_signature(cls: type[nn.Module]) -> None:
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters.values()):
        return  # (*args, **kwargs) passed on to a parent: the construction below will tell
    problems = []
    for name, default in SIGNATURE.items():
        if name not in parameters:
            problems.append(f"the parameter {name} is missing")
        elif default is not inspect.Parameter.empty and parameters[name].default != default:
            shown = parameters[name].default
            problems.append(f"{name} defaults to {'nothing' if shown is inspect.Parameter.empty else repr(shown)}, "
                            f"expected {default!r}")
    if problems:
        fail(f"Transformer.__init__ should be {SIGNATURE_TEXT} (the paper's base model): "
             f"{'; '.join(problems)}.")


def _expect_structure(model: nn.Module, src_vocab: int, tgt_vocab: int, d_model: int,
                      num_layers: int) -> None:
    for name, what in (("encoder", f"Encoder(src_vocab_size, d_model, ...)"),
                       ("decoder", f"Decoder(tgt_vocab_size, d_model, ...)"),
                       ("generator", f"nn.Linear(d_model, tgt_vocab_size)")):
        part = getattr(model, name, None)
        if part is None:
            fail(f"Transformer has no attribute {name}: in __init__, create self.{name} = {what}.")
        if not isinstance(part, nn.Module):
            fail(f"Transformer.{name} should be an nn.Module ({what}), but it is {describe(part)}.")
    generator = model.generator
    for module in generator.modules():
        if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
            fail(f"Transformer.generator contains {type(module).__name__}: the generator must return "
                 f"logits, not probabilities. Make it a plain nn.Linear(d_model, tgt_vocab_size); "
                 f"nn.CrossEntropyLoss applies log-softmax itself, and greedy decoding only needs "
                 f"the argmax.")
    if not isinstance(generator, nn.Linear):
        fail(f"Transformer.generator should be nn.Linear({d_model}, {tgt_vocab}) (decoder states to "
             f"target-vocabulary logits), but it is {describe(generator)}.")
    if generator.in_features != d_model or generator.out_features != tgt_vocab:
        extra = (" It maps to the SOURCE vocabulary: the output is a target-language token."
                 if generator.out_features == src_vocab else "")
        fail(f"Transformer.generator is nn.Linear({generator.in_features}, {generator.out_features}), "
             f"expected nn.Linear({d_model}, {tgt_vocab}) for d_model={d_model}, "
             f"tgt_vocab_size={tgt_vocab}.{extra}")
    for name, vocab, other, side in (("encoder", src_vocab, tgt_vocab, "source"),
                                     ("decoder", tgt_vocab, src_vocab, "target")):
        embedding = getattr(getattr(model, name), "embedding", None)
        if isinstance(embedding, nn.Embedding) and embedding.num_embeddings != vocab:
            swapped = " (the two vocabulary sizes are swapped)" if embedding.num_embeddings == other else ""
            fail(f"Transformer.{name}.embedding has {embedding.num_embeddings} rows, expected the "
                 f"{side} vocabulary size {vocab}{swapped}.")
        layers = getattr(getattr(model, name), "layers", None)
        if isinstance(layers, nn.ModuleList) and len(layers) != num_layers:
            fail(f"Transformer.{name} has {len(layers)} layers, expected num_layers={num_layers}: "
                 f"pass num_layers on to it.")


def _forward_mistakes(model: nn.Module, src: Tensor, tgt: Tensor, pad_idx: int, expected: Tensor
                      ) -> dict[str, Callable[[], Tensor]]:
    """Logits of common wrong forwards, computed with the student's own submodules."""
    src_mask, tgt_mask = reference.create_masks(src, tgt, pad_idx)
    causal = reference.create_causal_mask(tgt.size(1), tgt.device)
    tgt_pad = reference.create_padding_mask(tgt, pad_idx)

    def run(enc_mask: Tensor | None = src_mask, cross_mask: Tensor | None = src_mask,
            self_mask: Tensor | None = tgt_mask) -> Tensor:
        with torch.no_grad():
            memory = model.encoder(src, enc_mask)
            return model.generator(model.decoder(tgt, memory, cross_mask, self_mask))

    mistakes: dict[str, Callable[[], Tensor]] = {
        "the logits went through a softmax: forward must return logits (B, Lt, V), not "
        "probabilities; nn.CrossEntropyLoss applies log-softmax itself.":
            lambda: torch.softmax(expected, dim=-1),
        "the logits went through a log_softmax: forward must return the raw logits of the "
        "generator; nn.CrossEntropyLoss applies log-softmax itself.":
            lambda: F.log_softmax(expected, dim=-1),
        "no masks are used: build (src_mask, tgt_mask) with create_masks(src, tgt, self.pad_idx) "
        "and pass them to encode and decode.": lambda: run(None, None, None),
        "the target mask has no padding part (causal only): use create_masks, whose tgt_mask is "
        "padding & causal.": lambda: run(self_mask=causal),
        "the decoder's self-attention is not causal (padding only): it sees the future. Use "
        "tgt_mask = padding & causal.": lambda: run(self_mask=tgt_pad),
        "the decoder gets no tgt_mask: its self-attention sees the future.": lambda: run(self_mask=None),
        "the encoder gets no src_mask: pass src_mask to encode, so padded source tokens are "
        "ignored.": lambda: run(enc_mask=None),
        "the decoder gets no src_mask: pass src_mask to decode too, for the cross-attention over "
        "the source.": lambda: run(cross_mask=None),
    }
    if pad_idx != 0:
        zero_src, zero_tgt = reference.create_masks(src, tgt, 0)
        mistakes["the masks were built with padding index 0 instead of self.pad_idx: store pad_idx "
                 "in __init__ and use it in forward."] = lambda: run(zero_src, zero_src, zero_tgt)
    return mistakes


def _overfit(cls: type[nn.Module], check: Check, seed: int, pad_idx: int) -> None:
    """A tiny model of the student's class memorises one batch of 4 random pairs."""
    with one_thread():
        _train_one_batch(cls, check, seed, pad_idx)


def _train_one_batch(cls: type[nn.Module], check: Check, seed: int, pad_idx: int) -> None:
    vocab = 12
    with seeded(seed + 7):
        model = check.call(cls, vocab, vocab, d_model=32, num_layers=2, num_heads=4, d_ff=64,
                           dropout=0.0, max_seq_length=32, pad_idx=pad_idx,
                           what="Transformer(12, 12, d_model=32, num_layers=2, num_heads=4, d_ff=64, "
                                "dropout=0.0, pad_idx=...)")
        src = random_padded_ids(4, 7, vocab, pad_idx, min_length=4)
        tgt = random_padded_ids(4, 6, vocab, pad_idx, min_length=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    criterion = nn.CrossEntropyLoss(ignore_index=pad_idx)
    model.train()
    first = loss = None
    for _ in range(OVERFIT_STEPS):
        logits = check.call(model, src, tgt[:, :-1], what="Transformer.forward while training")
        loss = criterion(logits.reshape(-1, vocab), tgt[:, 1:].reshape(-1))
        first = loss.item() if first is None else first
        if loss.item() < OVERFIT_LOSS:
            return
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    fail(f"a tiny Transformer of your class (d_model=32, 2 layers) trained with Adam (lr=3e-3) on one "
         f"batch of 4 sentence pairs should memorise it, but after {OVERFIT_STEPS} steps the "
         f"cross-entropy is still {loss.item():.3f} (it started at {first:.3f}; it should fall below "
         f"{OVERFIT_LOSS}). Look for what stops learning: a softmax before the loss, outputs that "
         f"leave the autograd graph, layers created in forward (new weights each step), or the "
         f"decoder not reading the encoder's memory.")


@steady
def check_transformer(Transformer: type[nn.Module], seed: int = 0, batch: int = 3, src_len: int = 7,
                      tgt_len: int = 5, src_vocab: int = 11, tgt_vocab: int = 13, d_model: int = 16,
                      num_layers: int = 2, num_heads: int = 4, d_ff: int = 32, pad_idx: int = 1) -> None:
    """Check the full ``Transformer``: structure, ``encode``, ``decode``, ``forward``, learning.

    - ``__init__`` has the course's signature and defaults; ``encoder``, ``decoder`` and
      ``generator`` (``nn.Linear(d_model, tgt_vocab_size)``, no softmax) exist with the right sizes;
    - ``encode(src, src_mask)`` equals ``encoder(src, src_mask)``; ``decode(tgt, memory, src_mask,
      tgt_mask)`` equals ``decoder(...)``;
    - ``forward(src, tgt)`` equals ``generator(decode(tgt, encode(src, src_mask), src_mask,
      tgt_mask))`` with the masks of ``create_masks(src, tgt, pad_idx)`` (padded batches,
      ``Ls != Lt``, a ``pad_idx`` other than 0), on every available device;
    - every parameter gets a gradient, and a tiny model memorises one batch.
    """
    cls = expect_module_class(Transformer, "Transformer")
    check = Check("Transformer")
    check.refuse_answer_key(cls)
    _expect_signature(cls)
    description = (f"Transformer({src_vocab}, {tgt_vocab}, d_model={d_model}, num_layers={num_layers}, "
                   f"num_heads={num_heads}, d_ff={d_ff}, dropout=0.1, max_seq_length=64, pad_idx={pad_idx})")
    with seeded(seed):
        model = check.call(cls, src_vocab, tgt_vocab, d_model=d_model, num_layers=num_layers,
                           num_heads=num_heads, d_ff=d_ff, dropout=0.1, max_seq_length=64,
                           pad_idx=pad_idx, what=description)
    _expect_structure(model, src_vocab, tgt_vocab, d_model, num_layers)
    model.eval()  # no dropout: outputs are deterministic
    for device in devices():
        model.to(device)
        where = f" on {device.type}"
        with seeded(seed + 1):
            src = random_padded_ids(batch, src_len, src_vocab, pad_idx, min_length=2).to(device)
            tgt = random_padded_ids(batch, tgt_len, tgt_vocab, pad_idx, min_length=2).to(device)
        src_mask, tgt_mask = reference.create_masks(src, tgt, pad_idx)
        # encode and decode: thin wrappers around the student's own encoder and decoder.
        memory = check.call(model.encoder, src, src_mask, what="Transformer.encoder(src, src_mask)")
        got = check.call(model.encode, src, src_mask, what="Transformer.encode(src, src_mask)")
        expect_close(got, memory, f"Transformer.encode(src, src_mask){where}",
                     shape_hint="encode returns the encoder's output, the memory (B, Ls, d_model).",
                     mistakes={"encode ignores src_mask: pass it on to self.encoder.":
                               lambda: model.encoder(src, None)},
                     hint="encode(src, src_mask) should return self.encoder(src, src_mask).")
        states = check.call(model.decoder, tgt, memory, src_mask, tgt_mask,
                            what="Transformer.decoder(tgt, memory, src_mask, tgt_mask)", on_error=_ON_ERROR)
        got = check.call(model.decode, tgt, memory, src_mask, tgt_mask,
                         what="Transformer.decode(tgt, memory, src_mask, tgt_mask)", on_error=_ON_ERROR)
        expect_close(got, states, f"Transformer.decode(tgt, memory, src_mask, tgt_mask){where}",
                     shape_hint="decode returns the decoder's states (B, Lt, d_model), before the "
                                "generator; forward applies the generator.",
                     hint="decode(tgt, memory, src_mask, tgt_mask) should return "
                          "self.decoder(tgt, memory, src_mask, tgt_mask).")
        with torch.no_grad():
            expected = model.generator(states)
        what = f"Transformer.forward(src, tgt) with padded src (Ls={src_len}) and tgt (Lt={tgt_len}){where}"
        logits = check.call(model, src, tgt, what=what, on_error=_ON_ERROR)
        expect_tensor(logits, "the output of Transformer.forward", (batch, tgt_len, tgt_vocab),
                      hint="forward returns logits (B, Lt, tgt_vocab_size): one score per target-"
                           "vocabulary token for each target position.")
        expect_close(logits, expected, f"the logits of {what}",
                     mistakes=_forward_mistakes(model, src, tgt, pad_idx, expected),
                     hint="forward(src, tgt) should be generator(decode(tgt, encode(src, src_mask), "
                          "src_mask, tgt_mask)) with (src_mask, tgt_mask) = create_masks(src, tgt, "
                          "self.pad_idx).")
    # Gradients reach every parameter.
    model.to("cpu").zero_grad()
    with seeded(seed + 2):
        src = random_padded_ids(batch, src_len, src_vocab, pad_idx, min_length=2)
        tgt = random_padded_ids(batch, tgt_len, tgt_vocab, pad_idx, min_length=2)
        upstream = torch.randn(batch, tgt_len, tgt_vocab)
    logits = check.call(model, src, tgt, what="Transformer.forward for gradients")
    if not logits.requires_grad:
        fail("the output of Transformer.forward carries no gradient: something leaves the autograd "
             "graph (.detach(), .item(), torch.no_grad()).")
    (logits * upstream).sum().backward()
    for name, parameter in model.named_parameters():
        if parameter.grad is None:
            fail(f"the parameter {name} got no gradient from forward: is that part of the model "
                 f"used in forward?")
    _overfit(cls, check, seed, pad_idx)
    check.passed(f"encode, decode, forward = generator(decode(encode(...))) with the right masks, "
                 f"logits, gradients, memorises one batch, on {device_names()}")
