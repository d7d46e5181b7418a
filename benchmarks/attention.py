"""Scaled dot-product attention: the course's reference against ``F.scaled_dot_product_attention``.

    python -m benchmarks.attention                    # L = 32 ... 1024, table and benchmarks/attention.png
    python -m benchmarks.attention --tiny --plot /tmp/a.png

Batch 4, 8 heads, d_k = 64 (the paper's), float32, on the CPU; sequence lengths L = Lq = Lk
from 32 to 1024. For each length:

- **time**: the median wall time of the forward pass alone (under ``torch.no_grad()``, as in
  decoding) and of forward plus backward (``output.sum().backward()``, as in training),
  without a mask and with a causal boolean mask (the same tensor for both sides). The two
  implementations take turns, call by call.
- **peak memory**: how far the process's peak resident memory (``VmHWM`` in
  ``/proc/self/status``) rises above its resident memory just before one call, in a fresh
  subprocess per configuration (the peak is reset through ``/proc/self/clear_refs`` where
  Linux allows it). This is what the machine had to provide, allocator slack included. Next
  to it, the size of one ``(B, H, L, L)`` float32 score matrix: the reference materialises
  several (the scores, the scaled scores, the masked scores, the weights, and for the
  backward pass their gradients), the built-in's fused kernel works on tiles and never holds
  the whole matrix.

The reference also returns the weights ``(B, H, L, L)`` (the course's API does: chapter 2
stores them for plots); ``F.scaled_dot_product_attention`` returns only the output.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/attention.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.common import ROOT, footer, header, interleaved, markdown_table, median, seconds, set_threads
from course_utils.reference.attention import scaled_dot_product_attention

LENGTHS = (32, 64, 128, 256, 512, 1024)
SHAPE = {"batch": 4, "heads": 8, "d_k": 64}
TINY_LENGTHS = (16, 32)
TINY_SHAPE = {"batch": 1, "heads": 2, "d_k": 8}
MODES = ("forward", "forward+backward")
IMPLEMENTATIONS = ("reference", "torch")


def inputs(length: int, batch: int, heads: int, d_k: int, grad: bool, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Query, key, value ``(batch, heads, length, d_k)``, float32."""
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, heads, length, d_k, generator=generator).requires_grad_(grad)
                 for _ in range(3))  # type: ignore[return-value]


def causal_mask(length: int) -> Tensor:
    """``(1, 1, L, L)`` boolean, True = may attend (the course's convention, which is also F's)."""
    return torch.ones(length, length, dtype=torch.bool).tril()[None, None]


def run(implementation: str, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, backward: bool) -> None:
    """One call of ``implementation`` (forward, and backward when asked)."""
    if backward:
        if implementation == "reference":
            output, _ = scaled_dot_product_attention(q, k, v, mask)
        else:
            output = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        output.sum().backward()
        q.grad = k.grad = v.grad = None
        return
    with torch.no_grad():
        if implementation == "reference":
            scaled_dot_product_attention(q, k, v, mask)
        else:
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def time_length(length: int, shape: dict[str, int], masked: bool, backward: bool,
                budget: float) -> dict[str, float]:
    """Median seconds per call of each implementation, taking turns; ``budget`` seconds each, roughly."""
    q, k, v = inputs(length, **shape, grad=backward)
    mask = causal_mask(length) if masked else None
    calls = {name: (lambda name=name: run(name, q, k, v, mask, backward)) for name in IMPLEMENTATIONS}
    once = max(seconds(calls["reference"]), 1e-6)
    repeats = max(3, min(50, int(budget / once)))
    times = interleaved(calls, repeats, warmup=1)
    return {name: median(values) for name, values in times.items()}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_memory_here(implementation: str, length: int, shape: dict[str, int], backward: bool) -> dict[str, float]:
    """In this (fresh) process: how much one call raises the peak resident memory, in MiB."""
    # Warm up on a tiny input so that one-time costs (thread pools, kernels) are not counted.
    run(implementation, *inputs(8, **shape, grad=backward), None, backward)
    q, k, v = inputs(length, **shape, grad=backward)
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
        reset = True
    except OSError:
        reset = False
    before = _status_kib("VmRSS")
    run(implementation, q, k, v, None, backward)
    return {"peak_mib": (_status_kib("VmHWM") - before) / 1024, "reset": reset}


def peak_memory(implementation: str, length: int, shape: dict[str, int], backward: bool,
                fresh_process: bool = True) -> float | None:
    """:func:`peak_memory_here` in a fresh subprocess; ``None`` where ``/proc`` is missing (not Linux).

    ``fresh_process=False`` measures in this process instead (quicker, but memory freed by
    earlier work may be reused unseen: for tests of the plumbing only).
    """
    if not Path("/proc/self/status").exists():
        return None
    if not fresh_process:
        return float(peak_memory_here(implementation, length, shape, backward)["peak_mib"])
    spec = json.dumps({"implementation": implementation, "length": length, "shape": shape, "backward": backward})
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    result = subprocess.run([sys.executable, "-m", "benchmarks.attention", "--memory-child", spec],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"memory measurement failed:\n{result.stderr}")
    return float(json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"])


def score_matrix_mib(length: int, shape: dict[str, int]) -> float:
    """The size of one ``(B, H, L, L)`` float32 matrix, in MiB."""
    return shape["batch"] * shape["heads"] * length * length * 4 / 2**20


def plot(path: Path, lengths: Sequence[int], times: dict[tuple[int, bool, str], dict[str, float]],
         memory: dict[tuple[int, str, str], float | None], shape: dict[str, int]) -> None:
    """Two small panels: forward+backward time, and peak memory, against L (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=80)
    for name, label, style in (("reference", "reference (course)", "o-"), ("torch", "F.scaled_dot_product_attention", "s--")):
        left.plot(lengths, [1000 * times[(n, False, "forward+backward")][name] for n in lengths], style, label=label)
        values = [memory.get((n, name, "forward+backward")) for n in lengths]
        if all(v is not None for v in values):
            right.plot(lengths, [max(v, 0.01) for v in values], style, label=label)
    right.plot(lengths, [score_matrix_mib(n, shape) for n in lengths], ":", color="gray", label="one L×L score matrix")
    for axis, title, unit in ((left, "time, forward+backward", "ms"), (right, "peak memory, forward+backward", "MiB")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("sequence length L")
        axis.set_ylabel(unit)
        axis.set_title(title, fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.suptitle(f"attention on the CPU: batch {shape['batch']}, {shape['heads']} heads, d_k {shape['d_k']}, float32",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attention", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default=None, help="comma-separated sequence lengths (default 32,...,1024)")
    parser.add_argument("--budget", type=float, default=0.3, help="seconds of timing per implementation and setting")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--plot", type=Path, default=None,
                        help="where the PNG goes (default benchmarks/attention.png; none with --tiny)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--tiny", action="store_true", help="two tiny lengths: for tests (no plot unless --plot)")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.memory_child is not None:  # the subprocess of peak_memory()
        spec = json.loads(args.memory_child)
        print(json.dumps(peak_memory_here(spec["implementation"], spec["length"], spec["shape"], spec["backward"])))
        return 0
    header("attention", "attention", argv)
    shape = TINY_SHAPE if args.tiny else SHAPE
    lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else list(TINY_LENGTHS if args.tiny else LENGTHS)
    budget = 0.01 if args.tiny else args.budget
    plot_path = args.plot if args.plot is not None or args.tiny else ROOT / "benchmarks" / "attention.png"
    print(f"batch {shape['batch']}, {shape['heads']} heads, d_k {shape['d_k']}, float32; "
          f"median of interleaved calls (about {budget} s per implementation and cell)\n", flush=True)

    times: dict[tuple[int, bool, str], dict[str, float]] = {}
    rows = []
    for length in lengths:
        for masked in (False, True):
            row = [length, "causal" if masked else "none"]
            for mode in MODES:
                result = time_length(length, shape, masked, mode == "forward+backward", budget)
                times[(length, masked, mode)] = result
                row += [f"{1000 * result['reference']:.2f}", f"{1000 * result['torch']:.2f}",
                        f"**{result['torch'] / result['reference']:.2f}**"]
            rows.append(row)
    print("### time (ms per call; speed ref / torch = torch's time / the reference's)\n")
    print(markdown_table(["L", "mask", "fwd ref", "fwd torch", "fwd speed ref/torch",
                          "fwd+bwd ref", "fwd+bwd torch", "fwd+bwd speed ref/torch"], rows))

    memory: dict[tuple[int, str, str], float | None] = {}
    if not args.no_memory:
        rows = []
        for length in lengths:
            row = [length, f"{score_matrix_mib(length, shape):.2f}"]
            for mode in MODES:
                for name in IMPLEMENTATIONS:
                    value = peak_memory(name, length, shape, mode == "forward+backward", fresh_process=not args.tiny)
                    memory[(length, name, mode)] = value
                    row.append("n/a" if value is None else f"{value:.1f}")
            rows.append(row)
        where = "in this process (--tiny)" if args.tiny else "one fresh process per cell"
        print(f"\n### peak memory (MiB above the resident memory before the call; no mask; {where})\n")
        print(markdown_table(["L", "one L×L matrix", "fwd ref", "fwd torch", "fwd+bwd ref", "fwd+bwd torch"], rows))
    if plot_path is not None:
        plot(plot_path, lengths, times, memory, shape)
        print(f"\nplot: {plot_path}")
    footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
