"""Quality per minute: the cpu preset's BLEU after each epoch against training time.

    python -m benchmarks.quality_per_minute            # trains the cpu preset (~15 min + scoring)
    python -m benchmarks.quality_per_minute --from-metrics checkpoints/quality/metrics.json
    python -m benchmarks.quality_per_minute -- --d-model 512 --d-ff 1024   # another size, same budget
    python -m benchmarks.quality_per_minute --tiny --out /tmp/q

Runs ``python -m course_utils.training.translator --preset cpu --bleu-every-epoch 500 --beam-size 1``: the
preset exactly as students run it (15 minutes of training on this machine's cores), plus, after
every epoch, the BLEU of greedy translations of the first 500 validation sentences. That
scoring is not counted as training time (the trainer stops its clock and moves the time limit
back by as much), so the curve is BLEU against minutes of training. Beam search is skipped at
the end (``--beam-size 1``) to save minutes; the final line is greedy BLEU on all of test2016.
Arguments after ``--`` go to the trainer, to draw the curve of another size or setting.

Prints the history as a table and draws ``benchmarks/quality_per_minute.png``; with several
``--from-metrics`` files, one curve each (to compare sizes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/quality_per_minute.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, footer, header, markdown_table

#: Validation sentences scored after each epoch (of 1,014): enough for a stable corpus BLEU,
#: few enough to cost well under a minute with the decoder cache.
BLEU_SENTENCES = 500


def train_command(out: Path, tiny: bool, extra: Sequence[str]) -> list[str]:
    """The trainer's command line."""
    if tiny:  # the smoke preset, cut down further: seconds
        return [sys.executable, "-m", "course_utils.training.translator", "--preset", "smoke", "--out", str(out), "--no-progress",
                "--train-subset", "300", "--eval-subset", "20", "--epochs", "2", "--beam-size", "1",
                "--bleu-every-epoch", "20", *extra]
    return [sys.executable, "-m", "course_utils.training.translator", "--preset", "cpu", "--out", str(out), "--no-progress",
            "--beam-size", "1", "--bleu-every-epoch", str(BLEU_SENTENCES), *extra]


def run_training(command: Sequence[str]) -> None:
    """Run the trainer, echoing its one-line reports as they come."""
    print(f"training: `{' '.join(command[1:])}`\n", flush=True)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        print(f"    {line.rstrip()}", flush=True)
    if process.wait() != 0:
        raise SystemExit(f"training failed with exit status {process.returncode}")


def summary(metrics: dict[str, Any]) -> str:
    """The model and the run in one line."""
    config = metrics["config"]
    return (f"preset {metrics['preset']}: d_model {config['d_model']}, {config['num_layers']}+{config['num_layers']} "
            f"layers, {config['num_heads']} heads, d_ff {config['d_ff']}, dropout {config['dropout']}, "
            f"max_tokens {config['max_tokens']}, {metrics['parameters']:,} parameters, "
            f"{metrics['training_precision']}; {metrics['hardware']['torch_threads']} threads on "
            f"{metrics['hardware']['cpu']}")


def trimmed(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` without the bulky parts (per-batch losses, example translations)."""
    kept = {key: value for key, value in metrics.items() if key != "examples"}
    kept["history"] = [{k: v for k, v in record.items() if k != "batch_losses"} for record in metrics["history"]]
    return kept


def history_table(metrics: dict[str, Any]) -> str:
    rows = [[r["epoch"], r["steps"], f"{r['minutes']:.2f}", f"{r['train_loss']:.3f}", f"{r['val_loss']:.3f}",
             f"{r['val_perplexity']:.2f}", f"{r['val_bleu']:.2f}" if "val_bleu" in r else "—"]
            for r in metrics["history"]]
    sentences = next((r["val_bleu_sentences"] for r in metrics["history"] if "val_bleu_sentences" in r), None)
    bleu = f"val BLEU ({sentences} sentences, greedy)" if sentences else "val BLEU (not recorded)"
    return markdown_table(["epoch", "steps", "training minutes", "train loss (smoothed)", "val loss",
                           "val perplexity", bleu], rows)


def plot(path: Path, runs: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Against training minutes, one curve per run: BLEU after each epoch (left; where the run
    recorded it, with the final test BLEU as a star) and the validation loss (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=80)
    for label, metrics in runs:
        history = metrics["history"]
        scored = [r for r in history if "val_bleu" in r]
        color = right.plot([r["minutes"] for r in history], [r["val_loss"] for r in history], "o-",
                           label=label)[0].get_color()
        if scored:  # the run recorded BLEU after each epoch (--bleu-every-epoch)
            points = [(0.0, 0.0)] + [(r["minutes"], r["val_bleu"]) for r in scored]
            left.plot([m for m, _ in points], [b for _, b in points], "o-", color=color, label=f"{label}, val")
        for record in scored:
            left.annotate(str(record["epoch"]), (record["minutes"], record["val_bleu"]), fontsize=7,
                          textcoords="offset points", xytext=(0, 5), ha="center", color=color)
        left.plot([metrics["train_minutes"]], [metrics["bleu_tokenized"]], "*", markersize=11, color=color,
                  label=f"{label}, test2016 (best epoch)")
    left.set_xlim(left=0)
    left.set_ylim(bottom=0)
    left.set_ylabel("BLEU (tokenized, greedy)")
    left.set_title("BLEU after each epoch", fontsize=9)
    right.set_ylabel("validation loss (nats / token)")
    right.set_title("validation loss after each epoch", fontsize=9)
    for axis in (left, right):
        axis.set_xlabel("training minutes (scoring excluded)")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7, loc="lower right" if axis is left else "upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality_per_minute",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints" / "quality",
                        help="the training run's folder (default checkpoints/quality, git-ignored)")
    parser.add_argument("--from-metrics", type=Path, nargs="+", default=None,
                        help="skip training: tabulate and plot these metrics.json files (or --save files)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="where the PNG goes (default benchmarks/quality_per_minute.png; "
                             "with --tiny, <out>/quality_per_minute.png)")
    parser.add_argument("--save", type=Path, default=None,
                        help="write the runs' metrics, without per-batch losses, to this JSON file (default after "
                             "a real training run: benchmarks/quality_per_minute.json)")
    parser.add_argument("--tiny", action="store_true", help="a cut-down smoke run (seconds): for tests")
    args = parser.parse_args(argv)
    header("quality_per_minute", "quality_per_minute", argv + (["--", *extra] if extra else []))

    if args.from_metrics:
        paths = args.from_metrics
    else:
        run_training(train_command(args.out, args.tiny, extra))
        paths = [args.out / "metrics.json"]
    runs = []
    loaded = [json.loads(Path(path).read_text(encoding="utf-8")) for path in paths]
    # A metrics.json holds one run; a file written by --save, a list of them.
    for metrics in [m for item in loaded for m in (item if isinstance(item, list) else [item])]:
        config = metrics["config"]
        precision = "bf16" if metrics.get("training_precision", "").startswith("bfloat16") else "fp32"
        label = f"{config['d_model']}d {config['num_layers']}+{config['num_layers']} {precision}"
        runs.append((label, metrics))
        print(f"\n{summary(metrics)}\n")
        print(history_table(metrics))
        print(f"\nfinal (best epoch by validation loss) on {metrics['test_set']}: BLEU {metrics['bleu_tokenized']:.2f} "
              f"tokenized, sacreBLEU {metrics['sacrebleu']:.2f}, greedy; {metrics['train_minutes']:.1f} min of "
              f"training, {metrics['steps']} steps, {metrics['epochs_completed']} epochs"
              f"{' (stopped by the time limit)' if metrics['stopped_by_time_limit'] else ''}")
        if metrics.get("beam"):
            print(f"with beam search ({metrics['beam']['beam_size']} beams): BLEU {metrics['beam']['bleu_tokenized']:.2f} "
                  f"tokenized, sacreBLEU {metrics['beam']['sacrebleu']:.2f}")
    save = args.save or (ROOT / "benchmarks" / "quality_per_minute.json" if not (args.tiny or args.from_metrics) else None)
    if save is not None:
        save.write_text(json.dumps([trimmed(metrics) for _, metrics in runs], indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
        print(f"\nmetrics: {save}")
    plot_path = args.plot or (args.out / "quality_per_minute.png" if args.tiny
                              else ROOT / "benchmarks" / "quality_per_minute.png")
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot(plot_path, runs)
    print(f"\nplot: {plot_path}")
    footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
