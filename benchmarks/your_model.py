"""Training-step throughput: a student's own ``Transformer`` (from a workspace) against the reference.

    python -m benchmarks.your_model                          # the course's work/ folder
    python -m benchmarks.your_model --workspace /path/to/work --steps 40

Chapter 9 trains whatever ``your_pieces`` returns for a fixed 15 minutes, so a slower piece means
fewer steps and a lower score. This measures by how much: both models at the ``cpu`` preset's size
train on the same Multi30k batches (the preset's 1,000-position budget), taking turns batch by
batch with the order reversed every batch, so background load hits both alike. The table also
says whose pieces the student's model is made of.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import footer, header, markdown_table, median, set_threads
from benchmarks.train_step import Trainer, multi30k_batches, parameter_count
from course_utils.course.chapters import WORK_DIR
from course_utils.data.vocab import PAD_IDX
from course_utils.reference import Transformer as ReferenceTransformer
from course_utils.training.translator import PRESETS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.your_model", description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, default=WORK_DIR)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per model (after 3 untimed ones)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    header("Your Transformer against the reference: training steps", "your_model", argv)

    os.environ["COURSE_WORKSPACE"] = str(args.workspace.resolve())
    from course_utils.yours import whose_model, your_pieces

    [Transformer] = your_pieces("Transformer", show=False)
    warmup = 3
    batches, src_vocab, tgt_vocab = multi30k_batches(warmup + args.steps)
    kwargs = {**PRESETS["cpu"].model_kwargs(), "max_seq_length": 256, "pad_idx": PAD_IDX}
    models = {}
    for name, cls in (("yours", Transformer), ("reference", ReferenceTransformer)):
        torch.manual_seed(0)
        models[name] = cls(src_vocab, tgt_vocab, **kwargs)
    print(whose_model(models["yours"]) + "\n")
    trainers = {name: Trainer(model, bf16=False) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in trainers}
    tokens = 0
    for index, (src, tgt) in enumerate(batches):
        for name in (list(trainers) if index % 2 == 0 else list(reversed(trainers))):
            start = time.perf_counter()
            trainers[name].step(src, tgt)
            if index >= warmup:
                times[name].append(time.perf_counter() - start)
        if index >= warmup:
            tokens += int((tgt[:, 1:] != PAD_IDX).sum())
    rows = [[name, f"{parameter_count(models[name]):,}", f"{1000 * median(times[name]):.0f}",
             f"{tokens / sum(times[name]):,.0f}"] for name in trainers]
    print(markdown_table(["model", "parameters", "median step (ms)", "target tokens/s"], rows))
    ratio = sum(times["reference"]) / sum(times["yours"])
    print(f"\nyours / reference throughput: {ratio:.2f} ({args.steps} steps each, cpu preset size)")
    footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
