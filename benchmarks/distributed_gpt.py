"""GPT training throughput: 1 process against 2 (torchrun, gloo) on this machine's CPU cores.

    python -m benchmarks.distributed_gpt                 # the cpu preset's model, 15 s per run, 2 rounds
    python -m benchmarks.distributed_gpt --seconds 30 --repeats 3
    python -m benchmarks.distributed_gpt --tiny          # the smoke model: seconds, checks the script

The GPT counterpart of ``benchmarks.distributed`` (the translator), with the same three set-ups,
taking turns (A B C, C B A, ...) so that background load hits all alike: one process with 2 threads
(``python -m course_utils.training.gpt --preset cpu`` on a 2-core laptop), one process with 1 thread,
and ``torchrun --standalone --nproc_per_node=2`` (1 thread each, gradients averaged with gloo over
the loopback interface at every step). Each run trains for ``--seconds`` of training time (the
preset's cosine schedule squeezed into it; evaluations, samples and start-up not counted) and the
trainer's ``train_tokens_per_second`` is read: characters trained per second, all processes
together. Two processes take two batches per step, so steps per second are not comparable; tokens are.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/distributed_gpt.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import alternating_rounds, footer, header, markdown_table, median, metrics_of_run
from benchmarks.distributed import SETUPS


def command(processes: int, seconds: float, out: Path, tiny: bool) -> list[str]:
    """The GPT trainer's command line for one set-up: a time-limited run, evaluations only at both ends."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                if processes > 1 else [sys.executable])
    return [*launcher, "-m", "course_utils.training.gpt", "--preset", "smoke" if tiny else "cpu", "--device", "cpu",
            "--max-steps", "1000000", "--max-seconds", f"{seconds:g}", "--eval-every-seconds", "1e9",
            "--sample-every-seconds", "1e9", "--no-progress", "--out", str(out)]


def run_once(processes: int, threads: int, seconds: float, tiny: bool) -> dict[str, Any]:
    """Train one set-up; its metrics."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # torch's thread count in every process
    return metrics_of_run(lambda folder: command(processes, seconds, folder, tiny), seconds + 600, env)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distributed_gpt", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="training time per run (default 15)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the three set-ups (default 2)")
    parser.add_argument("--tiny", action="store_true", help="the smoke model for 2 s per run: checks the script")
    args = parser.parse_args(argv)
    if args.tiny:
        args.seconds, args.repeats = 2.0, 1
    header("GPT training: 1 process against 2 (torchrun, gloo)", "distributed_gpt", argv)

    runs = alternating_rounds(SETUPS, args.repeats, lambda name: run_once(*SETUPS[name], args.seconds, args.tiny),
                              lambda last: f"{last['train_tokens_per_second']:,.0f} characters/s, {last['steps']} "
                                           f"steps, {last['hardware']['torch_threads']} thread(s) per process")
    names = list(SETUPS)

    some = runs[names[0]][0]
    config = some["config"]
    print(f"\nmodel: preset {some['preset']}, {some['parameters']:,} parameters, float32, batches of "
          f"{config['batch_size']} windows of {config['block_size']} characters per process; {args.seconds:g} s of "
          f"training per run, {args.repeats} run(s) per set-up, medians\n")
    base = median([r["train_tokens_per_second"] for r in runs[names[0]]])
    rows = []
    for name in names:
        processes, threads = SETUPS[name]
        rate = median([r["train_tokens_per_second"] for r in runs[name]])
        step = median([r["train_seconds"] / max(r["steps"], 1) for r in runs[name]])
        rows.append([name, processes * threads, processes * config["batch_size"], f"{step * 1000:.0f}",
                     f"{rate:,.0f}", f"{rate / base:.2f}"])
    print(markdown_table(["set-up", "cores used", "windows per step", "ms per step", "characters / s",
                          f"vs {names[0]}"], rows))
    footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
