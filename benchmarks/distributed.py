"""Data-parallel training throughput: 1 process against 2 (torchrun, gloo) on this machine's CPU cores.

    python -m benchmarks.distributed                 # the cpu preset, 45 s of training per run, 2 rounds
    python -m benchmarks.distributed --seconds 90 --repeats 3
    python -m benchmarks.distributed --tiny          # the smoke model: seconds, checks the script

Trains the ``cpu`` preset's model (``python -m course_utils.training.translator --preset cpu``, float32) for a
fixed time in three set-ups, taking turns (A B C, C B A, ...) so that background load hits all
alike:

- one process with 2 threads (what ``--preset cpu`` does on a 2-core laptop);
- one process with 1 thread;
- ``torchrun --standalone --nproc_per_node=2``: two processes of 1 thread each, gradients averaged
  with gloo over the loopback interface at every step.

Throughput is real target tokens trained per second of ``train_epoch`` (the trainer's
``train_tokens_per_second``: all ranks' tokens, data loading, evaluation and start-up left out). Two
processes take two batches per step, so steps per second are not comparable; tokens are.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/distributed.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import alternating_rounds, footer, header, markdown_table, median, metrics_of_run

#: name -> (processes, threads per process)
SETUPS: dict[str, tuple[int, int]] = {"1 process, 2 threads": (1, 2), "1 process, 1 thread": (1, 1),
                                      "2 processes (torchrun, gloo), 1 thread each": (2, 1)}


def command(processes: int, threads: int, seconds: float, out: Path, tiny: bool) -> list[str]:
    """The trainer's command line for one set-up: a time-limited first epoch, scoring cut to a minimum."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                if processes > 1 else [sys.executable])
    size = (["--preset", "smoke", "--train-subset", "2000"] if tiny
            else ["--preset", "cpu", "--bf16", "false"])
    return [*launcher, "-m", "course_utils.training.translator", *size, "--threads", str(threads), "--epochs", "1",
            "--max-minutes", f"{seconds / 60:.4f}", "--eval-subset", "20", "--beam-size", "1", "--no-progress",
            "--out", str(out)]


def run_once(processes: int, threads: int, seconds: float, tiny: bool) -> dict[str, Any]:
    """Train one set-up; its metrics."""
    return metrics_of_run(lambda folder: command(processes, threads, seconds, folder, tiny), seconds + 600)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="training time per run (default 45)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the three set-ups (default 2)")
    parser.add_argument("--tiny", action="store_true", help="the smoke model for 3 s per run: checks the script")
    args = parser.parse_args(argv)
    if args.tiny:
        args.seconds, args.repeats = 3.0, 1
    header("Data-parallel training: 1 process against 2 (torchrun, gloo)", "distributed", argv)

    runs = alternating_rounds(SETUPS, args.repeats, lambda name: run_once(*SETUPS[name], args.seconds, args.tiny),
                              lambda last: f"{last['train_tokens_per_second']:,.0f} tokens/s, {last['steps']} steps")
    names = list(SETUPS)

    some = runs[names[0]][0]
    print(f"\nmodel: preset {some['preset']}, {some['parameters']:,} parameters, {some['training_precision']}; "
          f"{args.seconds:g} s of training per run, {args.repeats} run(s) per set-up, medians\n")
    base = median([r["train_tokens_per_second"] for r in runs[names[0]]])
    rows = []
    for name in names:
        processes, threads = SETUPS[name]
        rate = median([r["train_tokens_per_second"] for r in runs[name]])
        # Seconds per optimizer step, from tokens per second and tokens per step.
        step = median([sum(h["train_seconds"] for h in r["history"]) / max(r["steps"], 1) for r in runs[name]])
        rows.append([name, processes * threads, f"{processes * some['config']['max_tokens']:,}",
                     f"{step * 1000:.0f}", f"{rate:,.0f}", f"{rate / base:.2f}"])
    print(markdown_table(["set-up", "cores used", "batch (positions) per step", "ms per step",
                          "target tokens / s", f"vs {names[0]}"], rows))
    footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
