"""The GPT training command line (`python -m course_utils.training.gpt`, smoke preset end to end), the
schedule and optimizer groups, loading a checkpoint into the reference and a student-style GPT, the
generation panel, and the chapter 10 benchmarks on their tiny sizes (no timing asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpt_decoding, gpt_train_step
from course_utils.training import gpt
from course_utils.notebook.panel import generation_panel, stream_text
from course_utils.reference import GPT
from tests.test_benchmarks import number, table_rows


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gpt-smoke")
    result = subprocess.run([sys.executable, "-m", "course_utils.training.gpt", "--preset", "smoke", "--out", str(out),
                             "--no-progress"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wrote" in result.stdout and "bits per character" in result.stdout
    return out


def test_smoke_run_writes_checkpoint_metrics_and_samples(smoke_run: Path) -> None:
    metrics = json.loads((smoke_run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["preset"] == "smoke" and metrics["steps"] == 30
    assert metrics["val_bits_per_char"] == pytest.approx(metrics["val_loss"] / math.log(2))
    assert 2.0 < metrics["val_loss"] < 4.3  # 30 steps of a tiny model: below uniform (4.17), far from good
    assert metrics["curve"][0]["step"] == 0 and metrics["curve"][-1]["step"] == 30
    assert metrics["hardware"]["cpu"] and metrics["train_seconds"] > 0
    samples = (smoke_run / "samples.txt").read_text(encoding="utf-8")
    assert "=== final model, 500 characters" in samples


def test_the_checkpoint_loads_into_the_reference_and_a_student_gpt(smoke_run: Path) -> None:
    from tests.support import load_mutants

    loaded = gpt.load_gpt_checkpoint(smoke_run, device="cpu")
    student = gpt.load_gpt_checkpoint(smoke_run, model_class=load_mutants("10_gpt").GPTCorrect, device="cpu")
    idx = torch.tensor([loaded.tokenizer.encode("ROMEO:")])
    torch.testing.assert_close(loaded.model(idx), student.model(idx))
    assert loaded.tokenizer.vocab_size == 65 and loaded.preset.name == "smoke"


def test_cli_overrides_and_unknown_preset() -> None:
    preset, _ = gpt._parse(["--preset", "cpu", "--max-seconds", "130", "--block-size", "64"])
    assert (preset.max_seconds, preset.block_size, preset.d_model) == (130.0, 64, gpt.PRESETS["cpu"].d_model)
    with pytest.raises(SystemExit):
        gpt._parse(["--preset", "nope"])


def test_schedule_warms_up_then_decays_to_its_floor() -> None:
    preset = gpt.GPTPreset("t", lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert gpt.learning_rate(0, 0.0, preset) == pytest.approx(1e-4)
    assert gpt.learning_rate(9, 0.0, preset) == pytest.approx(1e-3)
    assert gpt.learning_rate(500, 0.5, preset) == pytest.approx(0.55e-3)
    assert gpt.learning_rate(1000, 1.0, preset) == pytest.approx(1e-4)


def test_weight_decay_only_on_matrices() -> None:
    model = GPT(11, 8, 16, 1, 2)
    decay, no_decay = gpt.configure_optimizer(model, 1e-3, 0.1).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == sum(p.numel() for p in model.parameters())


class _Tok:
    itos = list("ab\n")
    stoi = {c: i for i, c in enumerate(itos)}
    vocab_size = 3

    def encode(self, s):
        return [self.stoi[c] for c in s]

    def decode(self, ids):
        return "".join(self.itos[i] for i in ids)


def test_stream_text_and_the_panel_generate() -> None:
    torch.manual_seed(0)
    model = GPT(3, 8, 8, 1, 2).eval()
    pieces: list[str] = []
    out = stream_text(model, _Tok(), "ab", 20, temperature=1.0, on_text=pieces.append, seed=0)
    assert len(out) == 22 and out.startswith("ab") and "".join(pieces) == out
    panel = generation_panel(model, _Tok(), prompt="a")
    prompt_box, _, (_, length), (button, status), text = (panel.children[0], panel.children[1],
                                                         panel.children[2].children, panel.children[3].children,
                                                         panel.children[4])
    length.value = 15
    button.click()
    assert len(text.value) == 1 + 15 and status.value == "15 characters"
    prompt_box.value = "Z"
    button.click()
    assert "not in the vocabulary" in status.value


def test_gpt_train_step_benchmark(capsys) -> None:
    assert gpt_train_step.main(["--tiny"]) == 0
    header, row = table_rows(capsys.readouterr().out)
    assert number(row[header.index("ratio course / built-in")]) > 0


def test_gpt_decoding_benchmark(capsys) -> None:
    assert gpt_decoding.main(["--tiny"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert [r[rows[0].index("same tokens")] for r in rows[1:]] == ["yes", "yes"]


def test_gpt_quality_per_minute_reads_runs_and_plots(smoke_run: Path, tmp_path: Path, capsys) -> None:
    from benchmarks import gpt_quality_per_minute

    assert gpt_quality_per_minute.main(["--runs", str(smoke_run), "--plot", str(tmp_path / "q.png")]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows[1][0].startswith("nanoGPT") and "--preset smoke" in rows[2][0]
    assert (tmp_path / "q.png").stat().st_size > 1000
