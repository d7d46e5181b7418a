"""Chapter 12's translator on subwords: collect the training runs' metrics into one committed file, and
print the table that ``benchmarks/RESULTS.md`` (section 12) shows.

The runs themselves are the training command line, one full 15-minute run per candidate (the vocabulary
size), compared on the validation split only; the chosen one is then run once more with test2016:

    python -m course_utils.training.translator --preset cpu-subwords --vocab-size 4000 --validation-only \\
        --out checkpoints/sw4000
    ...
    python -m course_utils.training.translator --preset cpu-subwords --out checkpoints/cpu-subwords
    python -m benchmarks.subwords checkpoints/sw4000 checkpoints/sw8000 checkpoints/sw16000 \\
        checkpoints/cpu-subwords

``benchmarks/subwords.json`` keeps, per run, the figures the text quotes (``tests/test_subwords_results.py``
reads RESULTS.md's table against it, so a quoted figure cannot drift from its run).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/subwords.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS_FILE = Path(__file__).resolve().parent / "subwords.json"


def summary(metrics: dict[str, Any], name: str) -> dict[str, Any]:
    """The figures of one run that the results quote."""
    config = metrics["config"]
    beam = metrics.get("beam") or {}
    return {
        "run": name,
        "units": metrics.get("units", config.get("units", "words")),
        "vocab_size": config.get("vocab_size") if config.get("units") == "subwords" else None,
        "vocab_sizes": metrics["vocab_sizes"],
        "steps": metrics["steps"],
        "epochs": metrics["epochs_completed"],
        "train_minutes": metrics["train_minutes"],
        "val_loss_per_epoch": [record["val_loss"] for record in metrics["history"]],
        "val_bleu": metrics["val_bleu_tokenized"],
        "val_sacrebleu": metrics["val_sacrebleu"],
        "test_bleu": metrics["bleu_tokenized"],
        "test_sacrebleu": metrics["sacrebleu"],
        "test_beam_bleu": beam.get("bleu_tokenized"),
        "test_beam_sacrebleu": beam.get("sacrebleu"),
        "test_translations_with_unk": (metrics.get("translations_with_unk") or {}).get("test_greedy"),
        "val_translations_with_unk": (metrics.get("translations_with_unk") or {}).get("val_greedy"),
        "precision": metrics["training_precision"],
        "cpu": metrics["hardware"].get("cpu"),
        "threads": metrics["hardware"].get("torch_threads"),
    }


def table(runs: Sequence[dict[str, Any]]) -> str:
    """The Markdown table of RESULTS.md section 12, one row per run."""
    def cell(value: Any, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else f"{value:,}"

    lines = ["| run | vocabulary (ids) | steps in 15 min | epochs | val BLEU (1) | val sacreBLEU | test BLEU (1) "
             "| test sacreBLEU | beam 4 BLEU (1) / sacreBLEU | test translations with `<unk>` |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        beam = (f"{cell(run['test_beam_bleu'])} / {cell(run['test_beam_sacrebleu'])}"
                if run["test_beam_bleu"] is not None else "-")
        lines.append(f"| {run['run']} | {cell(run['vocab_size'])} | {cell(run['steps'])} | {run['epochs']} | "
                     f"{cell(run['val_bleu'])} | {cell(run['val_sacrebleu'])} | {cell(run['test_bleu'])} | "
                     f"{cell(run['test_sacrebleu'])} | {beam} | {cell(run['test_translations_with_unk'])} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.subwords", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="output folders of the training command (metrics.json)")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE, help=f"the summary file (default {RESULTS_FILE.name})")
    args = parser.parse_args(argv)
    if args.runs:
        runs = [summary(json.loads((folder / "metrics.json").read_text(encoding="utf-8")), folder.name)
                for folder in args.runs]
        args.out.write_text(json.dumps(runs, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        runs = json.loads(args.out.read_text(encoding="utf-8"))
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
