"""Greedy decoding with and without a cache of the decoder's past keys and values.

    python -m benchmarks.decoding            # the cpu preset's model size, batch 1 and 32
    python -m benchmarks.decoding --tiny

``greedy_decode(model, src, ...)`` re-runs the decoder on the whole prefix at every step (the
readable version the chapter teaches); ``greedy_decode(..., use_cache=True)`` runs it on the
newest position only, keeping every layer's past keys and values
(:class:`course_utils.reference.decoding.DecoderCache`). Both give the same tokens (checked
here on every setting, and in ``tests/test_kv_cache.py``).

The model has the cpu preset's size (d_model 256, 3+3 layers, 8 heads, d_ff 512, its
vocabularies of 7,853 German and 5,893 English types) with random weights, or a trained
checkpoint (``--checkpoint checkpoints/cpu``). Sources are random ids of 10 to 20 tokens, padded.
``<eos>`` is switched off (an id the model never produces), so every call generates exactly
``max_len - 1`` tokens per sentence and the rates compare like with like. Tokens per second
count generated tokens (batch x (max_len - 1)); the two variants take turns, call by call.
Multi30k's test captions need about 15-20 output tokens; ``max_len`` 64 is the course's cap.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/decoding.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import Tensor, nn

from benchmarks.common import footer, header, interleaved, markdown_table, median, set_threads
from course_utils.data.vocab import BOS_IDX, PAD_IDX
from course_utils.reference import Transformer, greedy_decode

BATCHES = (1, 32)
MAX_LENS = (16, 32, 64)
NO_EOS = -1  # an id argmax never returns: every call runs all max_len - 1 steps


def random_model(tiny: bool) -> nn.Module:
    """The cpu preset's size with random weights (tiny: a toy size), in eval() mode."""
    torch.manual_seed(0)
    if tiny:
        return Transformer(50, 40, d_model=32, num_layers=1, num_heads=2, d_ff=64, max_seq_length=64).eval()
    return Transformer(7853, 5893, d_model=256, num_layers=3, num_heads=8, d_ff=512, dropout=0.0,
                       max_seq_length=256).eval()


def random_sources(batch: int, vocab: int, seed: int = 0) -> Tensor:
    """``(batch, 20)`` ids, each row 10 to 20 real tokens then padding."""
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (batch, 20), generator=generator)
    lengths = torch.randint(10, 21, (batch,), generator=generator)
    src[torch.arange(20)[None, :] >= lengths[:, None]] = PAD_IDX
    return src


def test_set_table(model: nn.Module, checkpoint: Path, repeats: int) -> str:
    """Translate Multi30k's test2016 as ``evaluate_translation`` does (batches of similar lengths,
    ``max_len`` from each source's length, stopping at ``<eos>``), without and with the cache."""
    import functools

    from course_utils.data.batching import encode_split
    from course_utils.data.multi30k import load_multi30k
    from course_utils.training.evaluation import translate_ids
    from course_utils.training.translator import load_checkpoint

    saved = load_checkpoint(checkpoint, device="cpu")
    test = load_multi30k().test
    sources = [src for src, _ in encode_split(test, saved.src_vocab, saved.tgt_vocab, long="truncate").pairs]
    outputs: dict[str, list[list[int]]] = {}
    decoders = {"plain": greedy_decode, "cached": functools.partial(greedy_decode, use_cache=True)}

    def call(name: str) -> None:
        outputs[name] = translate_ids(model, sources, decoder=decoders[name])

    times = interleaved({name: functools.partial(call, name) for name in decoders}, repeats, warmup=0)
    tokens = sum(len(ids) + 1 for ids in outputs["plain"])  # generated tokens, <eos> included
    plain, cached = median(times["plain"]), median(times["cached"])
    return markdown_table(
        ["test2016 (greedy, as evaluated)", "plain s", "cached s", "speed-up cached / plain", "same translations"],
        [[f"{len(sources):,} sentences, {tokens:,} tokens", f"{plain:.1f}", f"{cached:.1f}", f"**{plain / cached:.2f}**",
          "yes" if outputs["plain"] == outputs["cached"] else "NO"]])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decoding", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (default 1,32)")
    parser.add_argument("--max-lens", default=None, help="comma-separated max_len values (default 16,32,64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per variant and setting")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a trained model.pt (or its folder)")
    parser.add_argument("--test-set", action="store_true",
                        help="with --checkpoint: also translate all of test2016 both ways, as the evaluation does")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--tiny", action="store_true", help="a toy model, one small setting: for tests")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    header("decoding", "decoding", argv)

    if args.checkpoint is not None:
        from course_utils.training.translator import load_checkpoint

        model = load_checkpoint(args.checkpoint, device="cpu").model
        print(f"model: trained checkpoint {args.checkpoint}")
    else:
        model = random_model(args.tiny)
        print("model: " + ("toy size" if args.tiny else "the cpu preset's size") + ", random weights")
    src_vocab = model.encoder.embedding.num_embeddings
    batches = [2] if args.tiny else [int(x) for x in (args.batches or ",".join(map(str, BATCHES))).split(",")]
    max_lens = [6] if args.tiny else [int(x) for x in (args.max_lens or ",".join(map(str, MAX_LENS))).split(",")]
    repeats = 1 if args.tiny else args.repeats
    print(f"median of {repeats} interleaved calls per cell, after one warm-up call each\n", flush=True)

    rows = []
    for batch in batches:
        src = random_sources(batch, src_vocab)
        for max_len in max_lens:
            outputs: dict[str, Tensor] = {}

            def call(use_cache: bool) -> None:
                outputs[str(use_cache)] = greedy_decode(model, src, max_len, BOS_IDX, NO_EOS, PAD_IDX,
                                                        use_cache=use_cache)

            times = interleaved({"plain": lambda: call(False), "cached": lambda: call(True)}, repeats)
            same = torch.equal(outputs["False"], outputs["True"])
            tokens = batch * (max_len - 1)
            plain, cached = tokens / median(times["plain"]), tokens / median(times["cached"])
            rows.append([batch, max_len, f"{plain:,.0f}", f"{cached:,.0f}", f"**{cached / plain:.2f}**",
                         "yes" if same else "NO"])
    print(markdown_table(["batch", "max_len", "plain tokens/s", "cached tokens/s", "speed-up cached / plain",
                          "same tokens"], rows))
    if args.test_set:
        if args.checkpoint is None:
            parser.error("--test-set needs --checkpoint (a model trained on Multi30k)")
        print()
        print(test_set_table(model, args.checkpoint, repeats))
    footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
