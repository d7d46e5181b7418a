"""What every benchmark shares: the machine's description, interleaved timing, Markdown tables."""

from __future__ import annotations

import os
import platform
import shlex
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from course_utils.notebook.device import cpu_name

#: The repository root (``benchmarks/`` is one level below it).
ROOT = Path(__file__).resolve().parents[1]


def load_average() -> str:
    """The 1-minute load average against the core count, e.g. ``"1.9 on 2 cores"``.

    Printed with every table: a load near or above the core count means something else was
    competing for the CPU, which slows absolute numbers but barely moves interleaved ratios.
    """
    try:
        one_minute = os.getloadavg()[0]
    except OSError:
        return "unknown"
    return f"{one_minute:.2f} on {os.cpu_count()} cores"


def machine_line() -> str:
    """One line that says where the numbers come from."""
    from course_utils.training.translator import bf16_is_fast

    bf16 = "bf16 autocast on" if bf16_is_fast(torch.device("cpu")) else "bf16 autocast off: no AMX"
    return (f"CPU: {cpu_name()} ({os.cpu_count()} cores, {bf16}); torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; Python {platform.python_version()}")


def header(title: str, module: str, argv: Sequence[str] | None) -> None:
    """Print the benchmark's title, the exact command, the machine and the load."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = shlex.join(["python", "-m", f"benchmarks.{module}", *args])
    print(f"## {title}\n")
    print(f"command: `{command}`  ")
    print(f"{machine_line()}  ")
    print(f"load average at start: {load_average()}\n", flush=True)


def footer() -> None:
    """Print the load at the end, to compare with the start's."""
    print(f"\nload average at end: {load_average()}", flush=True)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; numbers are formatted by the caller."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def seconds(fn: Callable[[], Any]) -> float:
    """Wall time of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(contenders: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each contender ``repeats`` times, taking turns (A B, B A, A B, ...).

    Taking turns, and reversing the order every round, exposes both sides to the same
    background load and the same cache state, so their ratio is fair even on a busy machine.

    Returns:
        the wall times of every call, per contender.
    """
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            times[name].append(seconds(contenders[name]))
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` unless ``None`` (torch's default: one per core)."""
    if threads is not None:
        torch.set_num_threads(threads)


def metrics_of_run(command: Callable[[Path], list[str]], timeout: float,
                   env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a training CLI (``command(folder)`` writes ``folder/metrics.json``) from the repository
    root; its metrics. A failed run stops the benchmark with the run's output."""
    with tempfile.TemporaryDirectory() as folder:
        cmd = command(Path(folder))
        result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise SystemExit(f"`{' '.join(cmd)}` failed:\n{result.stdout}\n{result.stderr}")
        return json.loads((Path(folder) / "metrics.json").read_text(encoding="utf-8"))


def alternating_rounds(setups: Sequence[str], repeats: int, run: Callable[[str], dict[str, Any]],
                       describe: Callable[[dict[str, Any]], str]) -> dict[str, list[dict[str, Any]]]:
    """``repeats`` rounds over ``setups``, every other round in reverse order (so that a machine
    warming up or slowing down favours none), printing ``describe(metrics)`` after each run."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in setups}
    names = list(setups)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            runs[name].append(run(name))
            print(f"    {name}: {describe(runs[name][-1])}", flush=True)
    return runs
