"""Quality per minute of the chapter 10 GPT: validation loss against training time, against the goals.

    python -m course_utils.training.gpt --preset cpu-short      # 130 s of training -> checkpoints/gpt-cpu-short
    python -m course_utils.training.gpt --preset cpu            # 15 minutes       -> checkpoints/gpt-cpu
    python -m benchmarks.gpt_quality_per_minute              # the table and the plot from their metrics.json
    python -m benchmarks.gpt_quality_per_minute --run        # both runs first (about 18 minutes on 2 cores)

The reference point is nanoGPT's CPU example (4 layers, 4 heads, n_embd 128, block 64, batch 12, 2,000
iterations, no dropout): validation loss 1.88 in its README, measured at 1.886 after 130 s (2,000
iterations, its evaluations included) with its own code on this kind of machine. The goals: at most 1.75
after the same 130 s of training, at most 1.55 within 15 minutes. The losses in the table are on the whole
validation split (non-overlapping windows); the curve is the runs' periodic estimates (fixed random windows).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import ROOT, footer, header, markdown_table

NANOGPT = {"val_loss": 1.886, "train_seconds": 130.0}
#: Goals by training budget in seconds: 130 s (nanoGPT's time) and 15 minutes.
GOALS = {130.0: 1.75, 900.0: 1.55}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpt_quality_per_minute",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="store_true", help="train both presets first")
    parser.add_argument("--runs", nargs="*", default=None, metavar="DIR",
                        help="run folders to read (default checkpoints/gpt-cpu-short and checkpoints/gpt-cpu)")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "gpt_quality_per_minute.png")
    args = parser.parse_args(argv)
    header("GPT quality per minute: validation loss against training time", "gpt_quality_per_minute", argv)
    folders = [Path(p) for p in args.runs] if args.runs else [ROOT / "checkpoints" / "gpt-cpu-short",
                                                                ROOT / "checkpoints" / "gpt-cpu"]
    if args.run:
        for folder in folders:
            preset = folder.name.removeprefix("gpt-")
            subprocess.run([sys.executable, "-m", "course_utils.training.gpt", "--preset", preset, "--out", str(folder),
                            "--no-progress"], check=True)
    runs = [json.loads((f / "metrics.json").read_text(encoding="utf-8")) for f in folders]
    rows = [["nanoGPT CPU example (its own code)", "0.80M", "2,000", "130", f"{NANOGPT['val_loss']:.3f}", "", ""]]
    for m in runs:
        goal = GOALS.get(m["config"]["max_seconds"])
        met = "" if goal is None else ("yes" if m["val_loss"] <= goal else "**no**")
        rows.append([f"`--preset {m['preset']}` (block {m['config']['block_size']}, lr {m['config']['lr']:g})", f"{m['parameters'] / 1e6:.2f}M",
                     f"{m['steps']:,}", f"{m['train_seconds']:.0f}", f"**{m['val_loss']:.3f}**",
                     f"{m['val_bits_per_char']:.3f}", f"<= {goal} : {met}" if goal else ""])
    print(markdown_table(["run", "parameters", "steps", "training s", "val loss (nats)", "bits/char", "goal"], rows))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for m in runs:
        curve = [p for p in m["curve"] if p["step"] > 0]
        ax.plot([p["train_seconds"] / 60 for p in curve], [p["val_loss"] for p in curve], "o-", markersize=3,
                label=f"--preset {m['preset']} ({m['val_loss']:.3f} at the end, whole split)")
    ax.plot([NANOGPT["train_seconds"] / 60], [NANOGPT["val_loss"]], "k*", markersize=10, label="nanoGPT CPU example")
    for goal in GOALS.values():
        ax.axhline(goal, color="gray", linestyle=":", linewidth=0.8)
    ax.set_xlabel("minutes of training (2 CPU cores)")
    ax.set_ylabel("validation loss (nats per character)")
    ax.set_ylim(1.4, 2.6)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"\nplot: {args.plot}")
    footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
