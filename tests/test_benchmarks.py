"""The benchmarks run: each script on its --tiny sizes, printing its table. No timing is
asserted (tiny numbers mean nothing); `make bench` runs the real sizes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import attention, decoding, quality_per_minute, test_suite, train_step
from course_utils.course.chapters import ROOT


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the Markdown tables in ``output``, as cells."""
    rows = []
    for line in output.splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def number(cell: str) -> float:
    return float(cell.replace("*", "").replace(",", ""))


def test_train_step_prints_both_throughputs_and_their_ratio(capsys) -> None:
    assert train_step.main(["--tiny", "--precisions", "fp32"]) == 0
    output = capsys.readouterr().out
    assert "ratio ref / torch" in output and "command: `python -m benchmarks.train_step --tiny" in output
    header, row = table_rows(output)
    assert row[0] == "tiny" and number(row[header.index("ratio ref / torch")]) > 0


def test_the_builtin_model_has_the_reference_size_and_interface() -> None:
    reference, builtin = train_step.build_pair(train_step.TINY, 30, 20)  # asserts equal parameter counts
    src, tgt = train_step.random_batches(1, 30, 20, max_tokens=40)[0]
    assert builtin(src, tgt).shape == reference(src, tgt).shape == (*tgt.shape, 20)


def test_attention_prints_time_and_memory_tables_and_plots(capsys, tmp_path: Path) -> None:
    assert attention.main(["--tiny", "--plot", str(tmp_path / "attention.png")]) == 0
    output = capsys.readouterr().out
    assert "fwd+bwd speed ref/torch" in output and "peak memory" in output
    rows = table_rows(output)
    assert len(rows) == 1 + 4 + 1 + 2  # time: 2 lengths x 2 masks; memory: 2 lengths
    assert (tmp_path / "attention.png").stat().st_size > 1000


def test_decoding_prints_the_speed_up_and_identical_outputs(capsys) -> None:
    assert decoding.main(["--tiny"]) == 0
    output = capsys.readouterr().out
    header, row = table_rows(output)
    assert row[header.index("same tokens")] == "yes"
    assert number(row[header.index("speed-up cached / plain")]) > 0


def test_quality_per_minute_records_bleu_after_each_epoch(capsys, tmp_path: Path) -> None:
    """The tiny run trains through `python -m course_utils.training.translator --bleu-every-epoch`."""
    assert quality_per_minute.main(["--tiny", "--out", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    history = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))["history"]
    assert [r["val_bleu_sentences"] for r in history] == [20, 20]
    assert all(0 <= r["val_bleu"] <= 100 and r["bleu_seconds"] >= 0 for r in history)
    assert re.search(r"val BLEU \(20 sentences, greedy\)", output)
    assert (tmp_path / "quality_per_minute.png").stat().st_size > 1000


def test_test_suite_stages_cover_every_test_file_once() -> None:
    stages = test_suite.stage_commands(["unit", "mutants", "release", "round trip", "browser"], 5, tiny=False)
    files = [arg for stage in stages for arg in stage.command if arg.startswith("tests/")]
    assert sorted(files) == sorted([*(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")),
                                    "tests/browser"])
    assert "tests/test_benchmarks.py" in files


def test_test_suite_prints_a_table_by_stage(capsys) -> None:
    assert test_suite.main(["--tiny"]) == 0
    output = capsys.readouterr().out
    names = [row[0] for row in table_rows(output)[1:]]
    assert names == [*test_suite.STAGES, "**total** (stages of `make test`)"]


@pytest.mark.parametrize("script", ["train_step"])
def test_a_benchmark_runs_as_a_file_too(script: str) -> None:
    result = subprocess.run([sys.executable, f"benchmarks/{script}.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--tiny" in result.stdout, result.stderr


def test_gpt_subwords_compares_both_units_in_bits_per_character(capsys) -> None:
    from benchmarks import gpt_subwords

    assert gpt_subwords.main(["--tiny", "--seeds", "1"]) == 0
    output = capsys.readouterr().out
    rows = table_rows(output)
    assert [row[0] for row in rows[1:]] == ["characters", "subwords"]
    chars_per_id = {row[0]: number(row[3]) for row in rows[1:]}
    assert chars_per_id["characters"] == 1.0 and chars_per_id["subwords"] > 1.2
    assert all(0 < number(row[-1]) < 10 for row in rows[1:])
    assert "characters: mean" in output and "subwords: mean" in output
