"""Chapter 11's ablations: which choices of the Transformer matter, and by how much, from real runs.

Each function below trains every arm of one comparison for real (seeded, same batches for every arm)
and returns an :class:`Ablation`: per-arm curves (step, training seconds, training loss, the metric),
the final metric, tokens per second, the settings and the seed, with ``.table()`` (a printed table)
and ``.plot(ax=None)`` (the arms' curves side by side). ``budget`` is ``"quick"`` (a few seconds per
arm, for CI: the numbers mean nothing), ``"full"`` (the real runs, about 35 s per arm, all
comparisons together about 11 minutes on 2 cores) or ``None``: quick in quick mode
(:func:`course_utils.notebook.quick.is_quick`), full otherwise, and not run at all while nbgrader executes
the notebook (autograding or the Validate button): nothing in these cells is graded, and training
reference models again for each of 200 submissions would cost the instructor about 15 s each. A
comparison that did not run says so in its ``.table()`` and has ``ran == False``.

============================================  ====================================================
``positions_on_reversal(budget, seed=0)``     chapter 7's reversal task, the reference Transformer
                                              with and without positional encodings: exact-sequence
                                              accuracy (without positions the encoder sees a bag of
                                              digits).
``scaling_on_reversal(budget, seed=0)``       the same task with one head of d_k = 64: attention
                                              with and without the 1/sqrt(d_k) scaling.
``heads_on_shakespeare(budget, seed=0)``      chapter 10's GPT with 1 head against 8 at d_model 128.
``warmup_on_shakespeare(budget, seed=0)``     post-norm against pre-norm at a high learning rate with
                                              no warm-up, and post-norm with warm-up (Xiong et al.).
``positions_on_shakespeare(budget, seed=0)``  learned, sinusoidal and rotary positions.
``mlp_on_shakespeare(budget, seed=0)``        GELU MLP against SwiGLU at the same parameter count.
``norm_on_shakespeare(budget, seed=0)``       LayerNorm against RMSNorm.
``modern_vs_gpt(budget, seed=0)``             the modern GPT (every upgrade) against chapter 10's GPT.
``bf16_autocast(budget, seed=0)``             the modern GPT in float32 and under bfloat16 autocast;
                                              ``.notes`` say what the CPU has (:func:`cpu_features`).
============================================  ====================================================

``run_all(budget, seed=0, names=None)`` runs several (``COMPARISONS`` names them, in order) and
:func:`summary_table` prints what each choice buys. The Tiny Shakespeare comparisons train at equal
wall time (``course_utils.training.gpt.train_gpt`` with the ``cpu-short`` preset's model and recipe:
4 layers, d_model 128, block 64, batches of 32, AdamW at 6e-3 with a 50-step warm-up and a cosine
over the run's seconds), and report the validation loss in nats per character over the whole
validation split. Their common base, "chapter 10's choices", is :class:`ModernGPT` with LayerNorm,
the GELU MLP, learned positions and pre-norm, with the fused attention kernel (the same function,
faster, so every arm gets more steps); an arm that equals one already trained in this process with
the same budget and seed is reused, not trained again (``clear_cache()`` forgets them).

Example (in the notebook)::

    from course_utils.training import ablations
    result = ablations.positions_on_reversal()
    print(result.table())
    result.plot()

``python -m benchmarks.ablations`` runs all of them at the full budget and writes the figures and
``benchmarks/ablations.json``; the numbers are in ``benchmarks/RESULTS.md``, section 10.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from course_utils.data.shakespeare import encode_splits, load_shakespeare
from course_utils.data.toy import TOY_BOS_IDX, TOY_EOS_IDX, TOY_PAD_IDX, TOY_VOCAB_SIZE, make_toy_batch, toy_batches
from course_utils.notebook.device import cpu_name, torch_threads
from course_utils.notebook.quick import is_quick, nbgrader_running
from course_utils.reference import GPT, CharTokenizer, Transformer, greedy_decode
from course_utils.reference.modern import ModernConfig, ModernGPT
from course_utils.reference.multi_head_attention import MultiHeadAttention
from course_utils.training.translator import Autocast, bf16_is_fast
from course_utils.training.gpt import PRESETS, GPTPreset, train_gpt, validation_loss
from course_utils.training.loop import exact_match, train_seq2seq

__all__ = ["Ablation", "Arm", "BUDGETS", "Budget", "COMPARISONS", "bf16_autocast", "clear_cache", "cpu_features",
           "heads_on_shakespeare", "lm_model", "mlp_on_shakespeare", "modern_at_cpu_preset", "modern_vs_gpt",
           "norm_on_shakespeare", "positions_on_reversal", "positions_on_shakespeare", "reversal_model", "run_all",
           "scaling_on_reversal", "summary_table", "unscale_attention", "warmup_on_shakespeare", "without_positions"]


# --------------------------------------------------------------------------------------
# Budgets and results
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """How long each arm trains, and how much held-out data measures it."""

    name: str
    toy_steps: int  # optimiser steps per reversal-task arm
    toy_eval_every: int  # steps between two points of the accuracy curve
    toy_curve_size: int  # held-out sequences behind each point of the curve
    toy_test_size: int  # held-out sequences behind the final accuracy
    lm_seconds: float  # training seconds per Tiny Shakespeare arm (evaluations not counted)
    lm_eval_points: int  # points of each validation curve
    lm_eval_batches: int  # batches of 32 windows behind each point
    lm_val_chars: int | None  # validation characters behind the final loss (None: the whole split)
    run: bool = True  # False: no arm trains (nbgrader is executing the notebook)


BUDGETS: dict[str, Budget] = {
    "quick": Budget("quick", toy_steps=20, toy_eval_every=10, toy_curve_size=64, toy_test_size=128,
                    lm_seconds=0.5, lm_eval_points=1, lm_eval_batches=1, lm_val_chars=4096),
    # Chapter 7 trains its toy model for 1,000 steps (about 35 s on one thread); 35 s per language-model
    # arm keeps the nine comparisons (17 distinct arms) at 11 minutes on 2 cores (measured: 10 min 51 s).
    "full": Budget("full", toy_steps=1000, toy_eval_every=50, toy_curve_size=200, toy_test_size=1000,
                   lm_seconds=35.0, lm_eval_points=10, lm_eval_batches=8, lm_val_chars=None),
    "not run": Budget("not run", toy_steps=0, toy_eval_every=1, toy_curve_size=0, toy_test_size=0, lm_seconds=0.0,
                      lm_eval_points=1, lm_eval_batches=0, lm_val_chars=0, run=False),
}
NOT_RUN_REASON = "not run: nbgrader is executing this notebook, and nothing in this comparison is graded"


def _budget(budget: str | Budget | None) -> Budget:
    if isinstance(budget, Budget):
        return budget
    if budget is None:
        if nbgrader_running():
            return BUDGETS["not run"]
        return BUDGETS["quick" if is_quick() else "full"]
    if budget not in BUDGETS:
        raise ValueError(f"budget={budget!r}: choose 'quick', 'full', None (quick mode decides) or a Budget")
    return BUDGETS[budget]


@dataclass
class Arm:
    """One trained setting of a comparison.

    ``curve`` holds dicts ``{step, seconds, train_loss, metric}`` (``seconds``: training time only);
    ``final`` is the comparison's metric at the end, on more held-out data than the curve's points.
    """

    label: str
    settings: dict[str, Any]
    curve: list[dict[str, float]]
    final: float
    steps: int
    seconds: float
    tokens_per_second: float
    parameters: int

    @property
    def diverged(self) -> bool:
        """True when the final metric is not a number (the run blew up)."""
        return not math.isfinite(self.final)


@dataclass
class Ablation:
    """The result of one comparison: its arms, the first of which is the baseline."""

    name: str
    title: str
    metric: str  # what ``Arm.final`` measures, with its unit
    higher_is_better: bool
    arms: list[Arm]
    seed: int
    budget: str
    notes: list[str] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        """False when no arm trained (the ``"not run"`` budget, while nbgrader executes the notebook)."""
        return self.budget != BUDGETS["not run"].name

    def arm(self, label: str) -> Arm:
        for arm in self.arms:
            if arm.label == label:
                return arm
        raise KeyError(f"{self.name} has no arm {label!r}; its arms are {[a.label for a in self.arms]}")

    def rows(self) -> list[list[str]]:
        """One row per arm: label, final metric, difference and tokens/s against the baseline, steps."""
        base = self.arms[0]
        rows = []
        for arm in self.arms:
            difference = "baseline" if arm is base else f"{arm.final - base.final:+.3f}"
            speed = arm.tokens_per_second / base.tokens_per_second if base.tokens_per_second else float("nan")
            rows.append([arm.label, f"{arm.final:.3f}", difference, f"{arm.tokens_per_second:,.0f}",
                         f"{speed:.2f}", f"{arm.steps:,}", f"{arm.seconds:.1f}", f"{arm.parameters:,}"])
        return rows

    def table(self) -> str:
        """A plain-text table of the arms (also what ``str(result)`` gives)."""
        if not self.ran:
            return f"{self.title}: {NOT_RUN_REASON}."
        headers = ["arm", self.metric, "vs baseline", "tokens/s", "speed vs baseline", "steps", "train s",
                   "parameters"]
        lines = [f"{self.title}  (budget {self.budget}, seed {self.seed})", _plain_table(headers, self.rows())]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    __str__ = table

    def plot(self, ax: Any = None) -> Any:
        """The arms' curves against training seconds: the metric, and (without ``ax``) the training loss.

        With ``ax``, draws the metric's curves there and returns ``ax``; without, returns a new figure
        with two panels side by side.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, (ax, right) = plt.subplots(1, 2, figsize=(11, 3.8))
        else:
            fig, right = None, None
        for arm in self.arms:
            seconds = [point["seconds"] for point in arm.curve]
            line, = ax.plot(seconds, [point["metric"] for point in arm.curve], marker="o", markersize=3,
                            label=f"{arm.label}: {arm.final:.3f}")
            if right is not None:
                right.plot(seconds, [point["train_loss"] for point in arm.curve], color=line.get_color(),
                           label=arm.label)
        ax.set_xlabel("training seconds")
        ax.set_ylabel(self.metric)
        ax.set_title(self.title, fontsize=10)
        ax.legend(fontsize=8, title="final", title_fontsize=8)
        if right is None:
            return ax
        right.set_xlabel("training seconds")
        right.set_ylabel("training loss (nats)")
        right.set_title("training loss", fontsize=10)
        right.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ablation:
        arms = [Arm(**arm) for arm in data["arms"]]
        return cls(**{**data, "arms": arms})


def _plain_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def summary_table(results: dict[str, Ablation]) -> str:
    """What each choice buys: for every comparison, each arm against its baseline (plain text)."""
    headers = ["comparison", "arm", "metric", "final", "vs baseline", "tokens/s vs baseline"]
    rows = []
    ran = [result for result in results.values() if result.ran]
    if not ran:
        return f"No comparison ran ({NOT_RUN_REASON.removeprefix('not run: ')})." if results else "No comparison ran."
    for result in ran:
        for row in result.rows():
            rows.append([result.name, row[0], result.metric, row[1], row[2], row[4]])
    return _plain_table(headers, rows)


_CACHE: dict[tuple, Arm] = {}


def clear_cache() -> None:
    """Forget the arms trained so far (the next comparison trains every arm anew)."""
    _CACHE.clear()


def _cached(key: tuple, train: Callable[[], Arm]) -> Arm:
    if key not in _CACHE:
        _CACHE[key] = train()
    return dataclasses.replace(_CACHE[key])


# --------------------------------------------------------------------------------------
# Chapter 7's reversal task
# --------------------------------------------------------------------------------------

#: Chapter 7's toy model and recipe: the reference Transformer, one thread, Adam at 2e-3.
REVERSAL = {"d_model": 64, "num_layers": 2, "num_heads": 4, "d_ff": 128, "lr": 2e-3, "warmup_steps": 100,
            "batch_size": 64}


def reversal_model(seed: int, *, positions: bool = True, d_model: int = 64, num_heads: int = 4,
                   d_ff: int = 128, num_layers: int = 2, scaled: bool = True) -> Transformer:
    """Chapter 7's toy Transformer (reference pieces), seeded, optionally without positions or scaling."""
    torch.manual_seed(seed)
    model = Transformer(TOY_VOCAB_SIZE, TOY_VOCAB_SIZE, d_model=d_model, num_layers=num_layers,
                        num_heads=num_heads, d_ff=d_ff, dropout=0.0, max_seq_length=32, pad_idx=TOY_PAD_IDX)
    if not positions:
        without_positions(model)
    if not scaled:
        unscale_attention(model)
    return model


def without_positions(model: Transformer) -> Transformer:
    """Remove both positional encodings of a chapter 7 ``Transformer`` (in place; returns it).

    Without them, self-attention and the feed-forward network treat the source as a set: permuting
    the source tokens permutes the encoder's output the same way, so the order is lost.
    """
    # Zeroing the fixed tables (not learned, so they stay zero) keeps the modules, which the cached
    # greedy decoder reads directly.
    model.encoder.positional_encoding.pe.zero_()
    model.decoder.positional_encoding.pe.zero_()
    return model


class _TimesSqrtDk(nn.Module):
    """A query projection whose output is multiplied by sqrt(d_k), cancelling attention's 1/sqrt(d_k)."""

    def __init__(self, projection: nn.Linear, d_k: int) -> None:
        super().__init__()
        self.projection = projection
        self.factor = math.sqrt(d_k)

    def forward(self, x: Tensor) -> Tensor:
        return self.projection(x) * self.factor


def unscale_attention(model: nn.Module) -> nn.Module:
    """Make every chapter 2 ``MultiHeadAttention`` of ``model`` compute softmax(Q K^T) V, unscaled (in place).

    The query projection's output is multiplied by sqrt(d_k), which the reference attention then
    divides by: the scores are the plain dot products, as a function of the same parameters, so
    training sees exactly the unscaled model (gradients included).
    """
    for module in model.modules():
        if isinstance(module, MultiHeadAttention) and not isinstance(module.W_q, _TimesSqrtDk):
            module.W_q = _TimesSqrtDk(module.W_q, module.d_k)
    return model


def _counted(batches: Iterator[tuple[Tensor, Tensor]], counter: list[int],
             on_first: Callable[[], None] = lambda: None) -> Iterator[tuple[Tensor, Tensor]]:
    """The same batches, adding each one's real target tokens (not padding) to ``counter[0]``.

    ``on_first`` is called when training asks for its first batch: the curve's clock starts there, so
    one-off set-up work (the first optimizer of a process imports more of torch) stays off it.
    """
    on_first()
    for src, tgt in batches:
        counter[0] += int((tgt[:, 1:] != TOY_PAD_IDX).sum())
        yield src, tgt


def _accuracy(model: nn.Module, src: Tensor, tgt: Tensor) -> float:
    was_training = model.training
    model.eval()
    # The key/value cache gives the same outputs as chapter 7's decoding, several times faster.
    predictions = greedy_decode(model, src, max_len=tgt.size(1), bos_idx=TOY_BOS_IDX, eos_idx=TOY_EOS_IDX,
                                pad_idx=TOY_PAD_IDX, use_cache=True)
    model.train(was_training)
    return exact_match(predictions, tgt, TOY_EOS_IDX, TOY_PAD_IDX).float().mean().item()


def _not_run(label: str, settings: dict[str, Any]) -> Arm:
    """An arm of the ``"not run"`` budget: no model built, no number measured."""
    nan = float("nan")
    return Arm(label, settings, [], nan, 0, 0.0, nan, 0)


def _train_reversal(label: str, budget: Budget, seed: int, **model_kwargs: Any) -> Arm:
    """Train one reversal-task arm with chapter 7's recipe; its curve is exact-sequence accuracy."""
    if not budget.run:
        return _not_run(label, {**REVERSAL, **model_kwargs})
    model = reversal_model(seed, **model_kwargs)
    # Held-out sequences from generators the training stream never uses.
    curve_src, curve_tgt = make_toy_batch("reverse", budget.toy_curve_size,
                                          generator=torch.Generator().manual_seed(10_000 + seed))
    test_src, test_tgt = make_toy_batch("reverse", budget.toy_test_size,
                                        generator=torch.Generator().manual_seed(12345 + seed))
    curve: list[dict[str, float]] = []
    losses: list[float] = []
    tokens = [0]
    clock = {"start": time.perf_counter(), "eval": 0.0}

    def point(step: int) -> None:
        start = time.perf_counter()
        recent = losses[-budget.toy_eval_every:]
        accuracy = _accuracy(model, curve_src, curve_tgt)
        curve.append({"step": step, "seconds": round(start - clock["start"] - clock["eval"], 3),
                      "train_loss": sum(recent) / len(recent) if recent else float("nan"), "metric": accuracy})
        clock["eval"] += time.perf_counter() - start

    def on_step(step: int, loss: float) -> None:
        losses.append(loss)
        if (step + 1) % budget.toy_eval_every == 0:
            point(step + 1)

    with torch_threads(1):
        point(0)
        clock["eval"] = 0.0
        log = train_seq2seq(model, _counted(toy_batches("reverse", REVERSAL["batch_size"], seed=seed + 1), tokens,
                                            lambda: clock.update(start=time.perf_counter())),
                            steps=budget.toy_steps, lr=REVERSAL["lr"],
                            warmup_steps=min(REVERSAL["warmup_steps"], max(1, budget.toy_steps // 10)),
                            pad_idx=TOY_PAD_IDX, on_step=on_step)
        final = _accuracy(model, test_src, test_tgt)
    seconds = log.seconds - clock["eval"]
    settings = {**{k: v for k, v in REVERSAL.items()}, **model_kwargs, "steps": log.steps, "threads": 1}
    return Arm(label, settings, curve, final, log.steps, round(seconds, 2), tokens[0] / seconds,
               sum(p.numel() for p in model.parameters()))


def positions_on_reversal(budget: str | Budget | None = None, seed: int = 0) -> Ablation:
    """Reversing digits with and without positional encodings (chapter 7's model and recipe).

    Metric: exact-sequence accuracy on held-out sequences (1,000 in full mode).
    """
    b = _budget(budget)
    arms = [_cached(("reversal", "sinusoidal", b, seed), lambda: _train_reversal("sinusoidal positions", b, seed)),
            _cached(("reversal", "none", b, seed),
                    lambda: _train_reversal("no positions", b, seed, positions=False))]
    return Ablation("positions_reversal", "Reversal task: positional encoding or none", "exact-sequence accuracy",
                    True, arms, seed, b.name,
                    ["without positions the encoder's output is a permutation-equivariant function of the source: "
                     "it cannot tell 1 2 3 from 3 2 1"])


#: The large-d_k model of the scaling comparison: chapter 7's model with one head, so d_k = d_model = 64,
#: the paper's own d_k (its base model: 8 heads of 64). d_model 128 would take 2.5 times longer per step.
SCALING = {"d_model": 64, "num_heads": 1, "d_ff": 128}


def scaling_on_reversal(budget: str | Budget | None = None, seed: int = 0) -> Ablation:
    """Attention with and without 1/sqrt(d_k) at d_k = 64 (one head of d_model 64), on the reversal task."""
    b = _budget(budget)
    d_k = SCALING["d_model"] // SCALING["num_heads"]
    arms = [_cached(("reversal", "scaled", b, seed),
                    lambda: _train_reversal(f"1/sqrt(d_k), d_k = {d_k}", b, seed, **SCALING)),
            _cached(("reversal", "unscaled", b, seed),
                    lambda: _train_reversal(f"unscaled, d_k = {d_k}", b, seed, scaled=False, **SCALING))]
    return Ablation("scaling_reversal", f"Reversal task, one head of d_k = {d_k}: scaled or unscaled scores",
                    "exact-sequence accuracy", True, arms, seed, b.name)


# --------------------------------------------------------------------------------------
# Tiny Shakespeare, at equal wall time
# --------------------------------------------------------------------------------------

_DATA: dict[str, Any] = {}


def _shakespeare() -> tuple[CharTokenizer, Tensor, Tensor]:
    """The tokenizer and the encoded 90/10 split, loaded once per process."""
    if not _DATA:
        text = load_shakespeare()
        tokenizer = CharTokenizer(text)
        _DATA["tokenizer"] = tokenizer
        _DATA["train"], _DATA["val"] = encode_splits(tokenizer, text)
    return _DATA["tokenizer"], _DATA["train"], _DATA["val"]


#: The language models' size and recipe: chapter 10's ``cpu-short`` preset.
LM_PRESET: GPTPreset = PRESETS["cpu-short"]

#: Chapter 10's choices, with the fused attention kernel: the base the one-piece switches start from.
BASE = {"norm": "layer", "mlp": "gelu", "positions": "learned", "fused_attention": True, "norm_first": True}

#: Every upgrade of :class:`ModernConfig` (its defaults).
MODERN = {"norm": "rms", "mlp": "swiglu", "positions": "rotary", "fused_attention": True, "norm_first": True}


def lm_model(seed: int, kind: str = "modern", preset: GPTPreset = LM_PRESET, **switches: Any) -> nn.Module:
    """A seeded language model of ``preset``'s size (default ``cpu-short``) for Tiny Shakespeare's characters.

    ``kind="gpt"``: chapter 10's reference ``GPT`` (``switches`` may set ``num_heads``); ``"modern"``:
    :class:`ModernGPT` with ``switches`` passed to :class:`ModernConfig`.
    """
    tokenizer, _, _ = _shakespeare()
    torch.manual_seed(seed)
    size = preset.model_kwargs(tokenizer.vocab_size)
    if kind == "gpt":
        return GPT(**{**size, **switches})
    if kind == "modern":
        return ModernGPT(ModernConfig(**{**size, **switches}))
    raise ValueError(f"kind={kind!r}: 'gpt' or 'modern'")


class _AutocastLM(Autocast):
    """:class:`course_utils.training.translator.Autocast` for a language model: ``forward(idx (B, T)) -> float32 logits``."""

    def forward(self, idx: Tensor) -> Tensor:  # type: ignore[override]
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            logits = self.model(idx)
        return logits.float()


def _train_lm(label: str, budget: Budget, seed: int, kind: str = "modern", *, lr: float | None = None,
              warmup_steps: int | None = None, autocast: bool = False, preset: GPTPreset = LM_PRESET,
              **switches: Any) -> Arm:
    """Train one Tiny Shakespeare arm for ``budget.lm_seconds`` of training time with chapter 10's trainer."""
    if not budget.run:
        return _not_run(label, {"kind": kind, **switches, "preset": preset.name, "bf16_autocast": autocast})
    _, train_data, val_data = _shakespeare()
    model = lm_model(seed, kind, preset, **switches)
    runner = _AutocastLM(model, "cpu") if autocast else model
    base = preset
    preset = dataclasses.replace(
        base, max_seconds=budget.lm_seconds, eval_every_seconds=budget.lm_seconds / budget.lm_eval_points,
        eval_batches=budget.lm_eval_batches, sample_every_seconds=1e12, seed=seed,
        lr=base.lr if lr is None else lr, warmup_steps=base.warmup_steps if warmup_steps is None else warmup_steps)
    log = train_gpt(runner, train_data, val_data, preset, progress=False, log=lambda message: None)
    held_out = val_data if budget.lm_val_chars is None else val_data[:budget.lm_val_chars]
    final = validation_loss(runner, held_out, preset.block_size)
    curve = [{"step": p["step"], "seconds": p["train_seconds"], "train_loss": p["train_loss"], "metric": p["val_loss"]}
             for p in log.curve]
    settings = {"kind": kind, **switches, "preset": base.name, "lr": preset.lr, "warmup_steps": preset.warmup_steps,
                "bf16_autocast": autocast, "max_seconds": preset.max_seconds, "threads": torch.get_num_threads(),
                "block_size": preset.block_size, "batch_size": preset.batch_size}
    tokens = log.steps * preset.batch_size * preset.block_size
    return Arm(label, settings, curve, final, log.steps, round(log.train_seconds, 2),
               tokens / log.train_seconds if log.train_seconds else 0.0, sum(p.numel() for p in model.parameters()))


def _lm_arm(label: str, budget: Budget, seed: int, kind: str = "modern", **options: Any) -> Arm:
    key = ("lm", kind, tuple(sorted(options.items())), budget, seed)
    arm = _cached(key, lambda: _train_lm(label, budget, seed, kind, **options))
    arm.label = label
    return arm


_LM_METRIC = "validation loss (nats/char)"


def heads_on_shakespeare(budget: str | Budget | None = None, seed: int = 0) -> Ablation:
    """Chapter 10's GPT with 8 heads (d_k = 16) against 1 head (d_k = 128), d_model 128, equal wall time."""
    b = _budget(budget)
    arms = [_lm_arm("8 heads", b, seed, "gpt", num_heads=8), _lm_arm("1 head", b, seed, "gpt", num_heads=1)]
    return Ablation("heads", "Tiny Shakespeare: 8 heads against 1 at d_model 128", _LM_METRIC, False, arms, seed,
                    b.name, ["chapter 10's GPT as it is (chapter 2's attention, not the fused kernel)"])


#: The high learning rate of the warm-up comparison (the recipe's 6e-3 is already high; see RESULTS).
WARMUP_LR = 1e-2


def warmup_on_shakespeare(budget: str | Budget | None = None, seed: int = 0) -> Ablation:
    """Post-norm and pre-norm at a high learning rate with no warm-up, and post-norm with warm-up."""
    b = _budget(budget)
    arms = [_lm_arm("pre-norm, no warm-up", b, seed, lr=WARMUP_LR, warmup_steps=0, **BASE),
            _lm_arm("post-norm, no warm-up", b, seed, lr=WARMUP_LR, warmup_steps=0, **{**BASE, "norm_first": False}),
            _lm_arm("post-norm, 100-step warm-up", b, seed, lr=WARMUP_LR, warmup_steps=100,
                    **{**BASE, "norm_first": False})]
    return Ablation("warmup", f"Tiny Shakespeare, learning rate {WARMUP_LR:g}: pre-norm, post-norm, warm-up",
                    _LM_METRIC, False, arms, seed, b.name)


def positions_on_shakespeare(budget: str | Budget | None = None, seed: int = 0) -> Ablation:
    """Learned (chapter 10), sinusoidal (chapter 4) and rotary positions, equal wall time."""
    b = _budget(budget)
    arms = [_lm_arm("learned", b, seed, **BASE), _lm_arm("sinusoidal", b, seed, **{**BASE, "positions": "sinusoidal"}),
            _lm_arm("rotary", b, seed, **{**BASE, "positions": "rotary"})]
    return Ablation("positions", "Tiny Shakespeare: learned, sinusoidal or rotary positions", _LM_METRIC, False,
                    arms, seed, b.name)


def mlp_on_shakespeare(budget: str | Budget | None = None, seed: int = 0) -> Ablation:
    """The 4x GELU MLP against SwiGLU with the same parameter count, equal wall time."""
    b = _budget(budget)
    arms = [_lm_arm("GELU MLP", b, seed, **BASE), _lm_arm("SwiGLU", b, seed, **{**BASE, "mlp": "swiglu"})]
    return Ablation("mlp", "Tiny Shakespeare: GELU MLP or SwiGLU (same parameters)", _LM_METRIC, False, arms, seed,
                    b.name)


def norm_on_shakespeare(budget: str | Budget | None = None, seed: int = 0) -> Ablation:
    """LayerNorm against RMSNorm everywhere, equal wall time."""
    b = _budget(budget)
    arms = [_lm_arm("LayerNorm", b, seed, **BASE), _lm_arm("RMSNorm", b, seed, **{**BASE, "norm": "rms"})]
    return Ablation("norm", "Tiny Shakespeare: LayerNorm or RMSNorm", _LM_METRIC, False, arms, seed, b.name)


def modern_vs_gpt(budget: str | Budget | None = None, seed: int = 0) -> Ablation:
    """Chapter 10's GPT, exactly, against the modern GPT with every upgrade, equal wall time."""
    b = _budget(budget)
    arms = [_lm_arm("chapter 10's GPT", b, seed, "gpt"), _lm_arm("modern GPT", b, seed, **MODERN)]
    return Ablation("modern", "Tiny Shakespeare: chapter 10's GPT or the modern GPT (RMSNorm, SwiGLU, rotary, "
                    "fused attention)", _LM_METRIC, False, arms, seed, b.name)


def cpu_features() -> dict[str, Any]:
    """What this CPU offers bfloat16: its name, AVX512-BF16 and AMX flags, and torch's own verdict."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags, "amx_tile": bool(getattr(torch.cpu, "_is_amx_tile_supported",
                                                                      lambda: False)()),
            "bf16_is_fast": bf16_is_fast(torch.device("cpu")), "torch": torch.__version__}


def bf16_autocast(budget: str | Budget | None = None, seed: int = 0) -> Ablation:
    """The modern GPT in float32 against bfloat16 autocast, equal wall time, with what the CPU has."""
    b = _budget(budget)
    arms = [_lm_arm("float32", b, seed, **MODERN), _lm_arm("bfloat16 autocast", b, seed, autocast=True, **MODERN)]
    features = cpu_features()
    note = (f"CPU {features['cpu']}, {features['cores']} cores: AVX512-BF16 {'yes' if features['avx512_bf16'] else 'no'}, "
            f"AMX {'yes' if features['amx_tile'] else 'no'}; the course trains in bfloat16 on a CPU only with AMX "
            f"(course_utils.training.translator.bf16_is_fast: {features['bf16_is_fast']})")
    return Ablation("bf16", "Tiny Shakespeare, the modern GPT: float32 or bfloat16 autocast", _LM_METRIC, False, arms,
                    seed, b.name, [note])


#: Chapter 10's GPT after the ``cpu`` preset's 15 minutes on 2 cores (AMD EPYC), on the whole validation
#: split: ``benchmarks/RESULTS.md``, section 6.
CHAPTER10_15MIN = {"val_loss": 1.546, "steps": 3596, "train_seconds": 900.0, "cpu": "AMD EPYC, 2 cores"}


def modern_at_cpu_preset(seed: int = 1337, seconds: float | None = None, include_gpt: bool = False) -> Ablation:
    """The modern GPT trained like chapter 10's ``cpu`` preset (block 128, 15 minutes), on the whole split.

    ``seconds`` shortens the run (tests); ``include_gpt`` trains chapter 10's GPT with the same budget
    too (another 15 minutes), otherwise its figure is :data:`CHAPTER10_15MIN`'s, measured in section 6 of
    ``benchmarks/RESULTS.md``. The seed defaults to the preset's own, the one that run used.
    """
    preset = PRESETS["cpu"]
    seconds = preset.max_seconds if seconds is None else seconds
    points = max(2, round(seconds / preset.eval_every_seconds))
    budget = Budget(f"cpu preset, {seconds:g} s", 0, 1, 1, 1, seconds, points, preset.eval_batches, None)
    arms = [_train_lm("modern GPT", budget, seed, preset=preset, **MODERN)]
    notes = []
    if include_gpt:
        arms.insert(0, _train_lm("chapter 10's GPT", budget, seed, "gpt", preset=preset))
    else:
        notes.append(f"chapter 10's GPT with this preset: {CHAPTER10_15MIN['val_loss']} nats after "
                     f"{CHAPTER10_15MIN['train_seconds']:.0f} s ({CHAPTER10_15MIN['steps']:,} steps; "
                     f"{CHAPTER10_15MIN['cpu']}; benchmarks/RESULTS.md, section 6)")
    return Ablation("modern_cpu_preset", f"Tiny Shakespeare, the cpu preset ({seconds:g} s): the modern GPT",
                    _LM_METRIC, False, arms, seed, budget.name, notes)


COMPARISONS: dict[str, Callable[..., Ablation]] = {
    "positions_reversal": positions_on_reversal,
    "scaling_reversal": scaling_on_reversal,
    "heads": heads_on_shakespeare,
    "warmup": warmup_on_shakespeare,
    "positions": positions_on_shakespeare,
    "mlp": mlp_on_shakespeare,
    "norm": norm_on_shakespeare,
    "modern": modern_vs_gpt,
    "bf16": bf16_autocast,
}


def run_all(budget: str | Budget | None = None, seed: int = 0, names: list[str] | None = None,
            on_result: Callable[[Ablation], None] | None = None) -> dict[str, Ablation]:
    """Run the comparisons ``names`` (default: all of :data:`COMPARISONS`, in order), sharing equal arms."""
    unknown = set(names or ()) - set(COMPARISONS)
    if unknown:
        raise ValueError(f"unknown comparisons {sorted(unknown)}; choose from {list(COMPARISONS)}")
    results = {}
    for name in names or list(COMPARISONS):
        results[name] = COMPARISONS[name](budget, seed)
        if on_result is not None:
            on_result(results[name])
    return results
