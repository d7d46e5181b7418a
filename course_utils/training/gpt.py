"""Train a character-level GPT on Tiny Shakespeare (chapter 10) from the command line or a notebook.

    python -m course_utils.training.gpt --preset cpu

writes ``checkpoints/gpt-cpu/model.pt`` (weights, settings, vocabulary), ``metrics.json`` (the
validation loss in nats and bits per character on the whole validation split, the curve of
validation loss against training time, steps, wall time, hardware, versions) and ``samples.txt``
(text sampled as training went, and at the end). ``checkpoints/`` is git-ignored. Presets
(:data:`PRESETS`):

========  ===================================================================================
smoke     a tiny model for 30 steps: checks the whole pipeline in seconds (the tests run it).
cpu       a laptop run on 2 CPU cores: 4 layers, 4 heads, d_model 128, block 128, batches of 32,
          learning rate 6e-3, 15 minutes of training.
cpu-short the same model with block 64 for 130 seconds: the time nanoGPT's CPU example takes on
          2 cores (what chapter 10 trains in full mode).
gpu       nanoGPT's ``shakespeare_char`` model (6 layers, 6 heads, d_model 384, block 256,
          dropout 0.2), 5,000 steps.
========  ===================================================================================

Any setting can be overridden (``--max-seconds 130 --lr 3e-3 --out /tmp/run``). The recipe: AdamW
with weight decay on weight matrices only (not on biases and LayerNorm gains), a linear warm-up then
a cosine decay of the learning rate, gradient clipping at norm 1. The cosine runs over the run's
budget, whichever comes first of ``max_steps`` and ``max_seconds`` of training, so a time-limited
run ends its schedule exactly when its time is up. Evaluations and samples are not counted as
training time (their time is reported separately).

The same command runs on several processes or machines under PyTorch's launcher, data-parallel
(:mod:`course_utils.training.distributed`; the README's "Training on several processes or machines")::

    torchrun --standalone --nproc_per_node=2 -m course_utils.training.gpt --preset cpu

Each process draws its own ``batch_size`` windows per step (its sampler seeded ``seed + rank``), so
a step's global batch is ``nproc * batch_size`` windows; DDP averages the gradients. Every window
has ``block_size`` targets, so this average is exactly the mean per target token of the whole
step. Rank 0's training clock drives the cosine schedule and the time limit on every rank, and only
rank 0 evaluates, samples, logs and writes the checkpoint, which loads in a single process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from course_utils.training import distributed
from course_utils.training.cli import hardware_info, library_versions, parse_with_presets
from course_utils.data.shakespeare import encode_splits, load_shakespeare
from course_utils.notebook.device import default_device
from course_utils.reference.gpt import GPT, CharTokenizer, generate_cached, get_batch

__all__ = ["CHECKPOINT_DIR", "GPTCheckpoint", "GPTPreset", "PRESETS", "TrainLog", "configure_optimizer",
           "estimate_loss", "learning_rate", "load_gpt_checkpoint", "main", "train_gpt", "validation_loss"]

CHECKPOINT_DIR = Path(__file__).resolve().parents[2] / "checkpoints"
LN2 = math.log(2)


@dataclass(frozen=True)
class GPTPreset:
    """Every setting of a training run (model size, optimisation, budget, evaluation)."""

    name: str
    block_size: int = 128
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    dropout: float = 0.0
    batch_size: int = 32
    lr: float = 6e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    max_steps: int = 100_000
    max_seconds: float | None = 900.0
    weight_decay: float = 0.1
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_every_seconds: float = 30.0
    eval_batches: int = 8
    sample_every_seconds: float = 150.0
    seed: int = 1337

    def model_kwargs(self, vocab_size: int) -> dict[str, Any]:
        return {"vocab_size": vocab_size, "block_size": self.block_size, "d_model": self.d_model,
                "num_layers": self.num_layers, "num_heads": self.num_heads, "dropout": self.dropout}


PRESETS: dict[str, GPTPreset] = {
    "smoke": GPTPreset("smoke", block_size=32, d_model=32, num_layers=1, num_heads=2, batch_size=8,
                       warmup_steps=5, max_steps=30, max_seconds=None, eval_every_seconds=1e9, eval_batches=2,
                       sample_every_seconds=1e9),
    "cpu": GPTPreset("cpu", eval_every_seconds=60.0, sample_every_seconds=300.0),
    "cpu-short": GPTPreset("cpu-short", block_size=64, warmup_steps=50, max_seconds=130.0, eval_every_seconds=10.0,
                           sample_every_seconds=65.0),
    "gpu": GPTPreset("gpu", block_size=256, d_model=384, num_layers=6, num_heads=6, dropout=0.2, batch_size=64,
                     lr=1e-3, warmup_steps=100, max_steps=5000, max_seconds=None, eval_every_seconds=60.0,
                     eval_batches=50, sample_every_seconds=300.0),
}


def configure_optimizer(model: nn.Module, lr: float, weight_decay: float,
                        betas: tuple[float, float] = (0.9, 0.99)) -> torch.optim.AdamW:
    """AdamW that decays the weight matrices (and embeddings) only, not biases and LayerNorm parameters.

    Decay pulls weights towards 0; for a LayerNorm gain that means towards switching the layer off,
    and for a bias it regularises nothing useful (Loshchilov & Hutter, 2019; nanoGPT does the same).
    A tied weight appears once in ``model.parameters()``, so it is decayed once.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def learning_rate(step: int, progress: float, preset: GPTPreset) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay from ``lr`` to ``lr * min_lr_ratio``.

    ``progress`` in [0, 1] is the fraction of the budget used (steps or seconds, whichever is further).
    """
    if step < preset.warmup_steps:
        return preset.lr * (step + 1) / preset.warmup_steps
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return preset.lr * (preset.min_lr_ratio + (1 - preset.min_lr_ratio) * cosine)


@torch.no_grad()
def estimate_loss(model: nn.Module, data: Tensor, block_size: int, batch_size: int, batches: int,
                  seed: int = 0) -> float:
    """Mean cross-entropy (nats per character) on ``batches`` fixed random windows of ``data``.

    The windows depend only on ``seed``, so successive evaluations of one run compare like with like.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    total = 0.0
    for _ in range(batches):
        x, y = get_batch(data, block_size, batch_size, generator)
        logits = model(x.to(device))
        total += nn.functional.cross_entropy(logits.flatten(0, 1), y.to(device).flatten()).item()
    model.train(was_training)
    return total / batches


@torch.no_grad()
def validation_loss(model: nn.Module, data: Tensor, block_size: int, batch_size: int = 64) -> float:
    """Mean cross-entropy (nats per character) over the WHOLE of ``data``, in non-overlapping windows.

    Every character after the first is predicted once, from the characters before it in its window
    (0 to block_size - 1 of them, as in training): a figure with no sampling noise.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = (len(data) - 1) // block_size
    x_all = data[: n * block_size].view(n, block_size)
    y_all = data[1: n * block_size + 1].view(n, block_size)
    total = 0.0
    for i in range(0, n, batch_size):
        logits = model(x_all[i:i + batch_size].to(device))
        total += nn.functional.cross_entropy(logits.flatten(0, 1), y_all[i:i + batch_size].to(device).flatten(),
                                             reduction="sum").item()
    model.train(was_training)
    return total / (n * block_size)


@dataclass
class TrainLog:
    """What a run recorded: per-step losses, the evaluation curve, samples and times."""

    steps: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    curve: list[dict[str, float]] = field(default_factory=list)  # {step, train_seconds, train_loss, val_loss}
    samples: list[tuple[int, str]] = field(default_factory=list)


def train_gpt(model: nn.Module, train_data: Tensor, val_data: Tensor, preset: GPTPreset, *,
              tokenizer: CharTokenizer | None = None, batch_fn: Callable[..., tuple[Tensor, Tensor]] = get_batch,
              progress: bool = True, log: Callable[[str], None] = print,
              sample_fn: Callable[[nn.Module, Tensor, int], Tensor] | None = None,
              ctx: distributed.Context | None = None) -> TrainLog:
    """Train ``model`` (a GPT: ``forward(idx (B, T)) -> logits (B, T, V)``) on random windows of ``train_data``.

    Args:
        batch_fn: ``get_batch(data, block_size, batch_size, generator) -> (x, y)``, both
            ``(batch_size, block_size)``; yours in the notebook.
        tokenizer: to print samples as training goes (none without it).
        sample_fn: ``(model, prompt (1, T), n) -> ids`` for those samples (default: the reference's
            cached sampling at temperature 0.8).
        log: where evaluation lines and samples go.
        ctx: this process's place in a ``torchrun`` job (:func:`course_utils.training.distributed.session`;
            ``model`` already on ``ctx.device``); default one process, which trains exactly as
            without it. With several, every rank trains its own windows in DDP; only rank 0
            evaluates, samples, logs and shows progress.

    The learning rate follows :func:`learning_rate`; evaluations (``preset.eval_batches`` fixed
    windows of the validation data) every ``preset.eval_every_seconds`` of training, and at the end.
    The recorded losses are each step's mean over every rank's windows.
    """
    from tqdm import tqdm

    device = next(model.parameters()).device
    ctx = ctx if ctx is not None else distributed.single_process(device)
    distributed.seed_per_rank(preset.seed, ctx)  # own dropout masks per rank (nothing changes with one)
    trained = distributed.wrap(model, ctx)  # DDP averages the gradients; `model` is what is evaluated and saved
    optimizer = configure_optimizer(model, preset.lr, preset.weight_decay, (0.9, preset.beta2))
    # Each rank its own windows (rank 0 draws what a single process draws): the global batch of a
    # step is reproducible from the seed and the number of processes.
    generator = torch.Generator().manual_seed(preset.seed + ctx.rank)
    if not ctx.is_main:
        progress, log = False, (lambda message: None)
    sample_fn = sample_fn or (lambda m, prompt, n: generate_cached(m, prompt, n, temperature=0.8))
    result = TrainLog()
    timed = preset.max_seconds is not None
    # On stdout, like the evaluation lines (a notebook keeps stderr for errors and warnings); tqdm.write
    # prints those lines above the bar instead of through it.
    bar = tqdm(total=round(preset.max_seconds) if timed else preset.max_steps, desc="training",
               unit="s" if timed else "step", disable=not progress, leave=False, dynamic_ncols=True,
               file=sys.stdout, bar_format="{l_bar}{bar}| {n:.0f}/{total} {unit} [{elapsed}<{remaining}{postfix}]")
    if progress:
        plain_log = log
        log = lambda message: tqdm.write(message, file=sys.stdout) if plain_log is print else plain_log(message)  # noqa: E731
    next_eval = next_sample = 0.0

    def evaluate(step: int) -> None:
        if not ctx.is_main:
            return
        start = time.perf_counter()
        val = estimate_loss(model, val_data, preset.block_size, preset.batch_size, preset.eval_batches)
        recent = result.losses[-20:]
        train_loss = sum(recent) / len(recent) if recent else float("nan")
        result.curve.append({"step": step, "train_seconds": round(result.train_seconds, 2),
                             "train_loss": train_loss, "val_loss": val})
        log(f"step {step:5d} | {result.train_seconds:6.1f} s | train {train_loss:.3f} | val {val:.3f} nats "
            f"({val / LN2:.3f} bits/char)")
        result.eval_seconds += time.perf_counter() - start

    def sample(step: int) -> None:
        if tokenizer is None or not ctx.is_main:
            return
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        prompt = torch.tensor([tokenizer.encode("\n")], device=device)
        text = tokenizer.decode(sample_fn(model, prompt, 200)[0, 1:].tolist())
        model.train(was_training)
        result.samples.append((step, text))
        log(f"--- sample after {step} steps ---\n{text}\n---")
        result.eval_seconds += time.perf_counter() - start

    model.train()
    step = 0
    while True:
        # Rank 0's clock for every rank (the others' also count their waits while rank 0 evaluates):
        # the same learning rate everywhere, and every rank stops at the same step.
        result.train_seconds = distributed.broadcast_float(result.train_seconds, ctx)
        progress_fraction = step / preset.max_steps
        if preset.max_seconds is not None:
            progress_fraction = max(progress_fraction, result.train_seconds / preset.max_seconds)
        if progress_fraction >= 1.0:
            break
        if result.train_seconds >= next_eval:
            evaluate(step)
            next_eval += preset.eval_every_seconds
        if result.train_seconds >= next_sample:
            sample(step)
            next_sample += preset.sample_every_seconds
        start = time.perf_counter()
        lr = learning_rate(step, progress_fraction, preset)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = batch_fn(train_data, preset.block_size, preset.batch_size, generator)
        x, y = x.to(device), y.to(device)
        logits = trained(x)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # under DDP: the gradients, averaged over the ranks (all-reduced)
        torch.nn.utils.clip_grad_norm_(model.parameters(), preset.grad_clip)
        optimizer.step()
        step += 1
        # Every rank has batch_size * block_size targets, so the mean of the ranks' means is the
        # step's mean per target token (no token counts to all-reduce, unlike the translator's).
        step_loss = (distributed.all_reduce_sum(loss.detach(), ctx) / ctx.world_size).item()
        result.losses.append(step_loss)
        elapsed = time.perf_counter() - start
        result.train_seconds += elapsed
        # The last step overshoots the time budget: never move the bar past its end (tqdm warns on stderr).
        bar.update(min(elapsed, max(bar.total - bar.n, 0)) if timed else 1)
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}", refresh=False)
    bar.close()
    result.steps = step
    evaluate(step)
    sample(step)
    return result


@dataclass
class GPTCheckpoint:
    """A trained model with its tokenizer, settings and metrics."""

    model: nn.Module
    tokenizer: CharTokenizer
    preset: GPTPreset
    metrics: dict[str, Any]


def load_gpt_checkpoint(path: str | Path, model_class: type[nn.Module] | None = None,
                        device: torch.device | str | None = None) -> GPTCheckpoint:
    """Load ``model.pt`` written by ``python -m course_utils.training.gpt`` (a file or its folder).

    ``model_class`` defaults to the reference :class:`GPT`; your chapter 10 ``GPT`` works too when its
    attribute names follow the chapter's (the weights are loaded by name). The model is in eval mode.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: train one first with "
                                f"`python -m course_utils.training.gpt --preset cpu` from the course's root folder")
    device = torch.device(device) if device is not None else default_device()
    saved = torch.load(path, map_location=device, weights_only=False)
    model = (model_class or GPT)(**saved["model_kwargs"])
    missing, unexpected = model.load_state_dict(saved["model_state"], strict=False)
    if missing or unexpected:
        raise RuntimeError(f"the checkpoint's weights do not fit {(model_class or GPT).__name__}: missing "
                           f"{list(missing)[:5]}, unexpected {list(unexpected)[:5]}. Use the chapter's attribute "
                           f"names (token_embedding, position_embedding, blocks, ln1, attn, W_q, ..., ln_f, lm_head).")
    tokenizer = CharTokenizer("".join(saved["vocabulary"]))
    return GPTCheckpoint(model.to(device).eval(), tokenizer, GPTPreset(**saved["config"]), saved["metrics"])


def run(preset: GPTPreset, out_dir: str | Path | None = None, *, device: str | None = None,
        progress: bool = True, log: Callable[[str], None] = print,
        ctx: distributed.Context | None = None) -> dict[str, Any]:
    """Train the reference GPT with ``preset``, write ``model.pt``, ``metrics.json``, ``samples.txt``.

    ``ctx``: this process's place in a ``torchrun`` job (its device replaces ``device``); default
    one process. Every rank trains; only rank 0 logs, evaluates and writes the files, and returns
    the metrics (the other ranks return ``{}``).
    """
    wall_start = time.perf_counter()
    ctx = ctx if ctx is not None else distributed.single_process(device or None)
    device_ = ctx.device
    if not ctx.is_main:
        log, progress = (lambda message: None), False
    out = Path(out_dir) if out_dir is not None else CHECKPOINT_DIR / f"gpt-{preset.name}"
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    text = load_shakespeare()
    tokenizer = CharTokenizer(text)
    train_data, val_data = encode_splits(tokenizer, text)
    torch.manual_seed(preset.seed)  # the same initial weights on every rank
    model = GPT(**preset.model_kwargs(tokenizer.vocab_size)).to(device_)
    parameters = sum(p.numel() for p in model.parameters())
    log(f"{parameters:,} parameters, {len(train_data):,} training and {len(val_data):,} validation characters, "
        f"on {device_.type} with {torch.get_num_threads()} threads"
        + (f" per process; {ctx.describe()}, {ctx.world_size * preset.batch_size} windows per step"
           if ctx.is_distributed else ""))
    history = train_gpt(model, train_data, val_data, preset, tokenizer=tokenizer, progress=progress, log=log,
                        ctx=ctx)
    if not ctx.is_main:
        return {}
    start = time.perf_counter()
    val = validation_loss(model, val_data, preset.block_size)
    val_seconds = time.perf_counter() - start
    log(f"validation loss on the whole validation split: {val:.4f} nats, {val / LN2:.4f} bits per character")
    tokens_seen = history.steps * ctx.world_size * preset.batch_size * preset.block_size  # every rank's
    metrics = {
        "preset": preset.name, "config": dataclasses.asdict(preset), "parameters": parameters,
        "steps": history.steps, "tokens_seen": tokens_seen,
        "processes": {"world_size": ctx.world_size, "backend": ctx.backend,
                      "step_batch_size": ctx.world_size * preset.batch_size},
        "train_tokens_per_second": round(tokens_seen / history.train_seconds, 1) if history.train_seconds else None,
        "train_seconds": round(history.train_seconds, 2), "eval_seconds": round(history.eval_seconds, 2),
        "final_eval_seconds": round(val_seconds, 2), "total_seconds": round(time.perf_counter() - wall_start, 2),
        "val_loss": val, "val_bits_per_char": val / LN2,
        "train_loss_last_100": sum(history.losses[-100:]) / max(1, len(history.losses[-100:])),
        "curve": history.curve, "hardware": hardware_info(device_, ctx), "versions": library_versions(),
    }
    torch.save({"model_state": model.state_dict(), "model_kwargs": preset.model_kwargs(tokenizer.vocab_size),
                "config": dataclasses.asdict(preset), "vocabulary": tokenizer.itos, "metrics": metrics},
               out / "model.pt")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    final = tokenizer.decode(generate_cached(model.eval(), torch.tensor([tokenizer.encode("\n")], device=device_),
                                             500, temperature=0.8)[0, 1:].tolist())
    samples = "".join(f"=== after {step} steps (temperature 0.8) ===\n{s}\n\n" for step, s in history.samples)
    (out / "samples.txt").write_text(samples + f"=== final model, 500 characters (temperature 0.8) ===\n{final}\n",
                                     encoding="utf-8")
    log(f"wrote {out / 'model.pt'}, {out / 'metrics.json'} and {out / 'samples.txt'}")
    return metrics


def _parse(argv: Sequence[str] | None) -> tuple[GPTPreset, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m course_utils.training.gpt",
                                     description="Train a character-level GPT on Tiny Shakespeare.")
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True,
                        help="smoke: seconds, pipeline test; cpu: 15 min on 2 cores; cpu-short: 130 s; "
                             "gpu: nanoGPT's shakespeare_char")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default checkpoints/gpt-<preset>)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    parser.add_argument("--dist-timeout", type=float, default=distributed.DEFAULT_TIMEOUT_MINUTES, metavar="MIN",
                        help="under torchrun: how long a process waits for the others at each step before "
                             f"giving up (default {distributed.DEFAULT_TIMEOUT_MINUTES:g} minutes)")
    return parse_with_presets(parser, argv, PRESETS)


def main(argv: Sequence[str] | None = None) -> int:
    preset, args = _parse(argv)
    changed = {k: v for k, v in dataclasses.asdict(preset).items() if v != getattr(PRESETS[preset.name], k)}
    # Without torchrun, session() is a single process on args.device, exactly as before it existed.
    with distributed.session(args.device, args.dist_timeout) as ctx:
        ctx.log(f"preset {preset.name}" + (f" with {changed}" if changed else "")
                + (f"; {ctx.describe()}" if ctx.is_distributed else ""))
        run(preset, args.out, progress=not args.no_progress, log=ctx.log, ctx=ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
