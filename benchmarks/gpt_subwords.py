"""Characters or subwords for chapter 10's GPT? Both trained for the same wall time, compared in bits per
character on the whole validation split (the only measure fair across tokenizations: a subword model's
loss per token covers several characters).

One arm reads characters (chapter 10's tokenizer), the other chapter 12's byte-pair encoding learned on the
training 90% of Tiny Shakespeare; the same model, preset and budget (the ``cpu-short`` preset: block 64
ids, 130 s), several seeds each::

    python -m benchmarks.gpt_subwords                      # 2 seeds x 2 arms x 130 s, about 10 minutes
    python -m benchmarks.gpt_subwords --tiny               # seconds: what the tests run

Bits per character of a run = (validation loss in nats per id) x (validation ids) / (validation
characters) / ln 2; for characters the ratio of ids to characters is 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/gpt_subwords.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from course_utils.data.shakespeare import load_shakespeare, split_text
from course_utils.notebook.device import cpu_name
from course_utils.reference import GPT, CharTokenizer
from course_utils.reference.bpe import train_tokenizer
from course_utils.training.gpt import PRESETS, train_gpt, validation_loss

OUT = Path(__file__).resolve().parent / "gpt_subwords.json"


def arm(units: str, seed: int, preset, vocab_size: int, text_limit: int | None) -> dict:
    """Train one arm; its bits per character on the whole validation split."""
    text = load_shakespeare()[:text_limit]
    train_text, val_text = split_text(text)
    start = time.perf_counter()
    tokenizer = CharTokenizer(text) if units == "characters" else train_tokenizer([train_text], vocab_size)
    vocab = tokenizer.vocab_size
    train_ids = torch.tensor(tokenizer.encode(train_text), dtype=torch.long)
    val_ids = torch.tensor(tokenizer.encode(val_text), dtype=torch.long)
    tokenize_seconds = time.perf_counter() - start
    preset = dataclasses.replace(preset, seed=seed)
    torch.manual_seed(seed)
    model = GPT(**preset.model_kwargs(vocab))
    log = train_gpt(model, train_ids, val_ids, preset, progress=False, log=lambda message: None)
    nats_per_id = validation_loss(model, val_ids, preset.block_size)
    # validation_loss scores len(val) - 1 ids rounded down to whole windows: scale by the characters they cover
    scored = ((len(val_ids) - 1) // preset.block_size) * preset.block_size
    chars_per_id = len(val_text) / len(val_ids)
    bpc = nats_per_id / chars_per_id / math.log(2)
    return {"units": units, "seed": seed, "vocab_size": vocab, "steps": log.steps,
            "train_seconds": round(log.train_seconds, 1), "tokenize_seconds": round(tokenize_seconds, 1),
            "val_ids": len(val_ids), "val_ids_scored": scored, "chars_per_id": round(chars_per_id, 3),
            "val_nats_per_id": round(nats_per_id, 4), "val_bits_per_char": round(bpc, 4)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpt_subwords", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1338])
    parser.add_argument("--vocab-size", type=int, default=1000, help="subword ids (default 1000)")
    parser.add_argument("--seconds", type=float, default=None, help="training budget per arm (default: the preset's)")
    parser.add_argument("--tiny", action="store_true", help="the smoke preset on 20,000 characters (seconds)")
    parser.add_argument("--out", type=Path, default=None, help=f"write the runs as JSON (the full run: {OUT.name})")
    args = parser.parse_args(argv)
    preset = PRESETS["smoke"] if args.tiny else PRESETS["cpu-short"]
    if args.seconds is not None:
        preset = dataclasses.replace(preset, max_seconds=args.seconds)
    limit = 20_000 if args.tiny else None
    vocab_size = min(args.vocab_size, 400) if args.tiny else args.vocab_size
    print(f"CPU {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; preset {preset.name} "
          f"(block {preset.block_size} ids, {preset.max_seconds} s)")
    runs = [arm(units, seed, preset, vocab_size, limit) for seed in args.seeds for units in ("characters", "subwords")]
    print("| units | seed | vocabulary | characters per id | steps | training (s) | bits per character |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for run in runs:
        print(f"| {run['units']} | {run['seed']} | {run['vocab_size']:,} | {run['chars_per_id']:.2f} | {run['steps']:,} "
              f"| {run['train_seconds']:.0f} | {run['val_bits_per_char']:.3f} |")
    for units in ("characters", "subwords"):
        values = [run["val_bits_per_char"] for run in runs if run["units"] == units]
        spread = (max(values) - min(values)) / 2 if len(values) > 1 else float("nan")
        print(f"{units}: mean {statistics.mean(values):.3f} bits per character, +- {spread:.3f} (half the range)")
    if args.out:
        args.out.write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
