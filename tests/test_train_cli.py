"""The training command line, `python -m course_utils.training.translator`: the smoke preset end to end
(checkpoint and metrics), overrides, presets, and loading a checkpoint into a model."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from course_utils.training import translator
from course_utils.data import Vocab
from course_utils.training.evaluation import translate_sentences
from course_utils.reference import Transformer
from course_utils.reference.bpe import BPETokenizer


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    result = subprocess.run([sys.executable, "-m", "course_utils.training.translator", "--preset", "smoke", "--out", str(out),
                             "--no-progress"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wrote" in result.stdout
    return out


def test_smoke_preset_writes_metrics_with_every_field(smoke_run: Path) -> None:
    metrics = json.loads((smoke_run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["preset"] == "smoke"
    for key in ("bleu_tokenized", "sacrebleu", "test_perplexity", "val_perplexity", "val_bleu_tokenized", "train_minutes",
                "total_minutes", "parameters", "steps", "epochs_completed"):
        assert isinstance(metrics[key], (int, float)), key
    assert metrics["sacrebleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    assert metrics["beam"]["beam_size"] == 4 and "bleu_gain_over_greedy" in metrics["beam"]
    assert metrics["hardware"]["device"] in ("cpu", "cuda") and metrics["hardware"]["torch_threads"] >= 1
    assert metrics["versions"]["torch"] == torch.__version__ and "sacrebleu" in metrics["versions"]
    assert metrics["data"]["train_pairs"] == translator.PRESETS["smoke"].train_subset == 1_000
    assert metrics["test_set"].startswith("test2016") and len(metrics["examples"]) == 5
    assert len(metrics["history"]) == 1 and metrics["history"][0]["batch_losses"]


def test_smoke_checkpoint_loads_and_translates(smoke_run: Path) -> None:
    saved = translator.load_checkpoint(smoke_run, device="cpu")
    assert isinstance(saved.model, Transformer) and not saved.model.training
    assert saved.preset == translator.PRESETS["smoke"]
    assert isinstance(saved.src_vocab, Vocab) and saved.src_vocab.lowercase
    [english] = translate_sentences(saved.model, ["Ein Hund läuft."], saved.src_vocab, saved.tgt_vocab)
    assert isinstance(english, str)


def test_subwords_train_translate_and_reload_without_unk(tmp_path: Path) -> None:
    """`--units subwords` (chapter 12): one joint tokenizer, saved in the checkpoint, never an <unk>."""
    result = subprocess.run([sys.executable, "-m", "course_utils.training.translator", "--preset", "smoke",
                             "--units", "subwords", "--vocab-size", "1000", "--out", str(tmp_path), "--no-progress"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["units"] == "subwords" and metrics["vocab_sizes"] == {"de": 1000, "en": 1000}
    assert metrics["translations_with_unk"] == {"test_greedy": 0, "val_greedy": 0}
    saved = translator.load_checkpoint(tmp_path, device="cpu")
    assert isinstance(saved.src_vocab, BPETokenizer) and saved.src_vocab.itos == saved.tgt_vocab.itos
    [english] = translate_sentences(saved.model, ["Ein Dudelsackspieler läuft 😀."], saved.src_vocab, saved.tgt_vocab)
    assert isinstance(english, str) and "<unk>" not in english


def test_a_checkpoint_does_not_load_into_a_model_with_other_names(smoke_run: Path) -> None:
    class Renamed(nn.Module):
        def __init__(self, src_vocab_size, tgt_vocab_size, **kwargs):
            super().__init__()
            self.projection = nn.Linear(2, 2)

    with pytest.raises(RuntimeError, match="do not fit Renamed"):
        translator.load_checkpoint(smoke_run / "model.pt", model_class=Renamed, device="cpu")


def test_a_missing_checkpoint_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"python -m course_utils\.training\.translator --preset cpu"):
        translator.load_checkpoint(tmp_path)


def test_command_line_overrides() -> None:
    preset, args = translator._parse(["--preset", "cpu", "--epochs", "2", "--max-minutes", "0.5", "--bf16", "false",
                                 "--out", "/tmp/x"])
    assert preset == dataclasses.replace(translator.PRESETS["cpu"], epochs=2, max_minutes=0.5, bf16=False)
    assert args.out == Path("/tmp/x")
    with pytest.raises(SystemExit):
        translator._parse(["--preset", "tpu"])


def test_presets_respect_their_budgets() -> None:
    cpu, gpu, smoke = translator.PRESETS["cpu"], translator.PRESETS["gpu"], translator.PRESETS["smoke"]
    assert cpu.max_minutes is not None and cpu.max_minutes <= 15
    assert smoke.train_subset and smoke.eval_subset and smoke.epochs == 1
    for preset in (cpu, gpu, smoke):
        assert preset.d_model % preset.num_heads == 0
        assert preset.min_freq == 2 and preset.lowercase and preset.beam_size == 4


def test_autocast_wrapper_shares_the_weights() -> None:
    model = Transformer(11, 13, d_model=16, num_layers=1, num_heads=2, d_ff=32, dropout=0.0)
    wrapped = translator.Autocast(model, "cpu")
    assert list(wrapped.parameters()) == list(model.parameters())
    wrapped.eval()
    assert not model.training
    logits = wrapped(torch.tensor([[2, 5, 3]]), torch.tensor([[2, 7]]))
    assert logits.dtype == torch.float32 and logits.shape == (1, 2, 13)
    fp32 = dataclasses.replace(translator.PRESETS["smoke"], bf16=False)
    assert translator.for_training(model, fp32, "cpu") is model


def test_time_limited_stops_yielding_after_the_deadline() -> None:
    assert list(translator.time_limited(iter(range(5)), None)) == [0, 1, 2, 3, 4]
    assert list(translator.time_limited(iter(range(5)), 0.0)) == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)


@pytest.mark.parametrize("chained", [False, True], ids=["closed-form schedule", "chained schedule"])
def test_cooldown_falls_linearly_to_zero_at_the_deadline(chained: bool) -> None:
    """Full rate for the first 60% of a 100 s budget, then linear to 0; the wrapped schedule's own
    rate (constant 1 here) is never scaled twice, also when it computes each rate from the last one."""
    optimizer, clock = _optimizer(), FakeClock()
    inner = (torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=1.0) if chained
             else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))
    scheduler = translator.TimedCooldown(inner, lambda: 100.0, 100.0, 0.4, clock=clock)
    seen = []
    for now in (10, 50, 60, 70, 80, 90, 100, 120):
        clock.now = now
        optimizer.step()
        scheduler.step()
        seen.append(round(optimizer.param_groups[0]["lr"], 6))
    assert seen == [1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert scheduler.get_last_lr() == [0.0]


def test_cooldown_follows_a_deadline_pushed_back_and_is_off_by_default() -> None:
    optimizer, clock, deadline = _optimizer(), FakeClock(), [100.0]
    inner = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    scheduler = translator.TimedCooldown(inner, lambda: deadline[0], 100.0, 0.5, clock=clock)
    clock.now, deadline[0] = 75.0, 125.0  # 25 s of scoring left out of the clock
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
    smoke = translator.PRESETS["smoke"]
    assert smoke.cooldown == 0 and translator.with_cooldown(inner, smoke, lambda: None) is inner
    timed = dataclasses.replace(smoke, max_minutes=1.0, cooldown=0.5)
    assert isinstance(translator.with_cooldown(inner, timed, lambda: 60.0), translator.TimedCooldown)
    with pytest.raises(ValueError, match="fraction"):
        translator.TimedCooldown(inner, lambda: 1.0, 1.0, 1.5)
