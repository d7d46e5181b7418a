"""Chapter 11's ablations at their full budget, in one process: the table of what each choice buys.

    python -m benchmarks.ablations                      # every comparison, seed 0 (about 11 minutes on 2 cores)
    python -m benchmarks.ablations --seed 1 --only heads positions mlp norm modern
                                                        # a second seed for some: the spread, merged into the JSON
    python -m benchmarks.ablations --modern-15min       # the modern GPT with chapter 10's 15-minute cpu preset
    python -m benchmarks.ablations --quick --out-dir /tmp/ablations   # seconds per arm (the test); numbers meaningless

Each comparison is a function of :mod:`course_utils.training.ablations` (the notebook of chapter 11 calls the same
ones). Writes ``ablations.json`` (every arm's curve and final figure, per seed, the machine) and one figure
per comparison, ``ablation_<name>.png`` (``_seed<k>`` added for another seed than 0), into ``--out-dir`` (default ``benchmarks/``; with ``--quick``
nothing is written unless ``--out-dir`` is given). Run it alone on the machine (timings are wall time).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, footer, header, load_average, machine_line, markdown_table
from course_utils.training import ablations
from course_utils.training.ablations import Ablation

JSON_NAME = "ablations.json"


def spread(runs: dict[str, dict[str, Ablation]], name: str) -> dict[str, float]:
    """For comparison ``name``: each arm's largest difference in final metric between the seeds run."""
    finals: dict[str, list[float]] = {}
    for by_name in runs.values():
        if name in by_name:
            for arm in by_name[name].arms:
                finals.setdefault(arm.label, []).append(arm.final)
    return {label: max(values) - min(values) for label, values in finals.items() if len(values) > 1}


def summary_rows(runs: dict[str, dict[str, Ablation]], seed_key: str) -> list[list[str]]:
    """The Markdown summary: each arm of each comparison of ``seed_key``, against its baseline and the spread."""
    rows = []
    for name, result in runs[seed_key].items():
        gaps = spread(runs, name)
        base = result.arms[0]
        for arm in result.arms:
            difference = "baseline" if arm is base else f"{arm.final - base.final:+.3f}"
            speed = arm.tokens_per_second / base.tokens_per_second if base.tokens_per_second else float("nan")
            seeds = sum(1 for by_name in runs.values() if name in by_name)
            rows.append([name, arm.label, f"{arm.final:.3f}", difference, f"{arm.tokens_per_second:,.0f}",
                         f"{speed:.2f}", f"{arm.steps:,}",
                         f"{gaps[arm.label]:.3f} ({seeds} seeds)" if arm.label in gaps else ""])
    return rows


def load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"runs": {}}
    data = json.loads(path.read_text(encoding="utf-8"))
    data["runs"] = {key: {name: Ablation.from_dict(result) for name, result in by_name.items()}
                    for key, by_name in data.get("runs", {}).items()}
    return data


def save(path: Path, data: dict[str, Any]) -> None:
    plain = {**data, "runs": {key: {name: result.to_dict() for name, result in by_name.items()}
                              for key, by_name in data["runs"].items()}}
    if "modern_15min" in plain and isinstance(plain["modern_15min"], Ablation):
        plain["modern_15min"] = plain["modern_15min"].to_dict()
    path.write_text(json.dumps(plain, indent=1) + "\n", encoding="utf-8")


def save_figure(result: Ablation, out_dir: Path) -> Path:
    """``ablation_<name>.png`` for seed 0, ``ablation_<name>_seed<k>.png`` for another seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = result.plot()
    suffix = "" if result.seed == 0 else f"_seed{result.seed}"
    path = out_dir / f"ablation_{result.name}{suffix}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ablations", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds per arm (tests); nothing to read into")
    parser.add_argument("--seed", type=int, default=0, help="seed of every arm (model initialisation and batches)")
    parser.add_argument("--only", nargs="+", choices=list(ablations.COMPARISONS), default=None,
                        help="run only these comparisons")
    parser.add_argument("--modern-15min", action="store_true",
                        help="instead: the modern GPT with chapter 10's cpu preset, 900 s (15 minutes)")
    parser.add_argument("--with-gpt", action="store_true",
                        help="with --modern-15min: train chapter 10's GPT with the same budget too (15 more minutes)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where ablations.json and the figures go (default benchmarks/; --quick: nowhere)")
    args = parser.parse_args(argv)
    out_dir = args.out_dir if args.out_dir is not None else (None if args.quick else ROOT / "benchmarks")
    budget = "quick" if args.quick else "full"
    header("Chapter 11: ablations", "ablations", argv)
    data = load(out_dir / JSON_NAME) if out_dir is not None else {"runs": {}}

    if args.modern_15min:
        result = ablations.modern_at_cpu_preset(seconds=4.0 if args.quick else None, include_gpt=args.with_gpt)
        print(f"### {result.title}\n")
        print(markdown_table(["arm", "val loss (nats/char)", "steps", "train s", "tokens/s", "parameters"],
                             [[a.label, f"**{a.final:.3f}**", f"{a.steps:,}", f"{a.seconds:.1f}",
                               f"{a.tokens_per_second:,.0f}", f"{a.parameters:,}"] for a in result.arms]))
        for note in result.notes:
            print(f"\n{note}")
        data["modern_15min"] = result
        data["modern_15min_machine"] = {"machine": machine_line(), **ablations.cpu_features()}
    else:
        seed_key = f"seed{args.seed}"
        data["runs"].setdefault(seed_key, {})

        def show(result: Ablation) -> None:
            data["runs"][seed_key][result.name] = result
            print(f"### {result.title}\n")
            headers = ["arm", result.metric, "vs baseline", "tokens/s", "speed vs baseline", "steps", "train s",
                       "parameters"]
            print(markdown_table(headers, result.rows()))
            for note in result.notes:
                print(f"\nnote: {note}")
            if out_dir is not None:  # after every comparison, so an interrupted run keeps what it measured
                out_dir.mkdir(parents=True, exist_ok=True)
                print(f"\nfigure: {save_figure(result, out_dir)}")
                save(out_dir / JSON_NAME, data)
            print(f"load average: {load_average()}\n", flush=True)

        ablations.run_all(budget, args.seed, args.only, on_result=show)
        print("### Summary: what each choice buys\n")
        print(markdown_table(["comparison", "arm", "final metric", "vs baseline", "tokens/s", "tokens/s vs baseline",
                              "steps", "spread between seeds"], summary_rows(data["runs"], seed_key)))
        data.setdefault("machines", {})[seed_key] = {"machine": machine_line(), **ablations.cpu_features(),
                                                     "budget": budget}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        save(out_dir / JSON_NAME, data)
        print(f"\nwrote {out_dir / JSON_NAME}")
    footer()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
