"""Generation speed of the chapter 10 GPT with and without the key/value cache.

    python -m benchmarks.gpt_decoding                       # the cpu preset's model, block 128
    python -m benchmarks.gpt_decoding --checkpoint checkpoints/gpt-cpu
    python -m benchmarks.gpt_decoding --tiny                # seconds; for the test suite

Both sample the same number of new characters after the same prompt with the same seeded generator
(temperature 0.8) and must give identical tokens. ``generate`` reruns the whole (cropped) context for every
token; ``generate_cached`` runs the prompt once and then only the newest position, until the context fills
``block_size``; after that the window slides and it recomputes the window each step too (the positions
are absolute), which the second row measures. The timings alternate between the two.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from benchmarks.common import footer, header, interleaved, markdown_table, median, set_threads
from course_utils.reference.gpt import GPT, generate, generate_cached
from course_utils.training.gpt import PRESETS, load_gpt_checkpoint


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpt_decoding", description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--checkpoint", default=None, help="a train_gpt checkpoint folder (default: random weights)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    header("GPT generation: tokens per second with and without the key/value cache", "gpt_decoding", argv)
    if args.checkpoint:
        model = load_gpt_checkpoint(args.checkpoint, device="cpu").model
    else:
        preset = PRESETS["cpu"]
        torch.manual_seed(0)
        model = (GPT(65, 16, 16, 1, 2) if args.tiny else
                 GPT(65, preset.block_size, preset.d_model, preset.num_layers, preset.num_heads)).eval()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    rows = []
    block = model.block_size
    for label, n_new in ((f"{block - 1} tokens (within the window)", block - 1),
                         (f"{2 * block} tokens (the window slides after {block})", 2 * block)):
        outputs = {}

        def run(name, fn):
            def go():
                outputs[name] = fn(torch.Generator().manual_seed(0))
            return go

        times = interleaved({
            "plain": run("plain", lambda g: generate(model, prompt, n_new, 0.8, None, None, g)),
            "cached": run("cached", lambda g: generate_cached(model, prompt, n_new, 0.8, None, None, g)),
        }, repeats=1 if args.tiny else args.repeats)
        plain, cached = n_new / median(times["plain"]), n_new / median(times["cached"])
        same = "yes" if torch.equal(outputs["plain"], outputs["cached"]) else "NO"
        rows.append([label, f"{plain:,.0f}", f"{cached:,.0f}", f"**{cached / plain:.1f}**", same])
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params:,} parameters, block_size {block}, batch 1\n")
    print(markdown_table(["new tokens", "plain tokens/s", "cached tokens/s", "speed-up cached / plain",
                          "same tokens"], rows))
    footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
