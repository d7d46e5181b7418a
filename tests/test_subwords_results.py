"""Chapter 12's figures in benchmarks/RESULTS.md and the README come from the runs' own metrics
(benchmarks/subwords.json, written by `python -m benchmarks.subwords` from each run's metrics.json):
the table is the one the script prints, and every figure the README quotes is that file's."""

from __future__ import annotations

import json
import re

import pytest

from benchmarks import subwords
from course_utils.course.chapters import ROOT

RUNS = json.loads(subwords.RESULTS_FILE.read_text(encoding="utf-8"))
CHOSEN = next(run for run in RUNS if run["test_bleu"] is not None and run["units"] == "subwords")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def test_results_section_12_shows_the_table_of_the_runs() -> None:
    section = _section((ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8"), "## 12.")
    assert subwords.table(RUNS) in section, "regenerate the table: python -m benchmarks.subwords"


def test_the_readme_quotes_the_chosen_runs_figures() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = _section(readme, "**Subwords (chapter 12).**").split("\n\n")[0]
    quoted = {name: float(value) for name, value in re.findall(r"<!-- (\w+) -->\**([\d.]+)", paragraph)}
    assert quoted, "the README's chapter 12 paragraph marks its figures with <!-- field --> comments"
    for name, value in quoted.items():
        assert CHOSEN[name] == pytest.approx(value, abs=0.051), name


def test_every_candidate_was_compared_on_validation_and_the_chosen_one_is_the_best() -> None:
    candidates = [run for run in RUNS if run["test_bleu"] is None and run["units"] == "subwords"]
    assert len(candidates) >= 3 and all(run["val_bleu"] is not None for run in candidates)
    best = max(candidates, key=lambda run: run["val_bleu"])
    assert CHOSEN["vocab_size"] == best["vocab_size"]
    assert CHOSEN["test_translations_with_unk"] == 0


def test_results_quote_the_notebooks_committed_scores() -> None:
    notebook = json.loads((ROOT / "solutions" / "12_subwords" / "12_subwords.ipynb").read_text(encoding="utf-8"))
    [cell] = [c for c in notebook["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "eval"]
    printed = "".join("".join(o.get("text", "")) for o in cell["outputs"])
    bleu = re.search(r"BLEU \(1\), lowercased spaCy tokens:\s+([\d.]+)", printed).group(1)
    sacre = re.search(r"BLEU \(2\), standard sacreBLEU:\s+([\d.]+)", printed).group(1)
    unk = re.search(r"translations containing <unk>:\s+(\d+)", printed).group(1)
    section = _section((ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8"), "## 12.")
    assert f"greedy BLEU (1) {bleu}, sacreBLEU {sacre}, {unk} translations with `<unk>`" in section


def test_results_show_the_gpt_runs_in_bits_per_character() -> None:
    runs = json.loads((ROOT / "benchmarks" / "gpt_subwords.json").read_text(encoding="utf-8"))
    section = _section((ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8"), "## 12.")
    for run in runs:
        row = (f"| {run['units']} | {run['seed']} | {run['vocab_size']:,} | {run['chars_per_id']:.2f} | {run['steps']:,} "
               f"| {run['train_seconds']:.0f} | {run['val_bits_per_char']:.3f} |")
        assert row in section, row
    assert {run["units"] for run in runs} == {"characters", "subwords"} and len({run["seed"] for run in runs}) >= 2
