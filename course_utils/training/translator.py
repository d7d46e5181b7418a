"""Train the course's reference Transformer on Multi30k (German -> English) from the command line.

    python -m course_utils.training.translator --preset cpu

writes ``checkpoints/cpu/model.pt`` (weights, settings, vocabularies) and
``checkpoints/cpu/metrics.json`` (BLEU both ways with greedy decoding and with beam search,
perplexity, wall time, parameter count, hardware, library versions, the per-epoch history).
``checkpoints/`` is git-ignored. Presets (:data:`PRESETS`):

========  ===================================================================================
smoke     a tiny model on 1,000 pairs for one epoch, scored on 100 test sentences: checks
          the whole pipeline in well under a minute (the test suite runs it). Its BLEU is ~0.
cpu       a laptop run: at most 15 minutes of training on 2 CPU cores (then a few minutes of
          scoring); target BLEU >= 30.
gpu       a longer run for a GPU; target BLEU >= 38 (the published reference point for a
          3+3-layer, d=256 Transformer is 36.5).
========  ===================================================================================

Any setting can be overridden, e.g. ``--epochs 2 --max-minutes 5 --out /tmp/run``. The
chapter 09 notebook trains the student's own model with the ``cpu`` preset's settings, and
can load a checkpoint written here instead (:func:`load_checkpoint`).

The same command runs on several processes or machines under PyTorch's launcher, data-parallel
(:mod:`course_utils.training.distributed`; the README's "Training on several processes or machines")::

    torchrun --standalone --nproc_per_node=2 -m course_utils.training.translator --preset cpu

Each process trains on its own share of every step's batches (``max_tokens`` positions each, so
a step's global batch is ``nproc * max_tokens``), the gradients are averaged per real target
token over all of them, rank 0 decides when the time is up, and only rank 0 evaluates, logs and
writes the checkpoint, which loads in a single process like any other.

The recipe is the paper's (section 5), scaled down: Adam with betas (0.9, 0.98) and eps
1e-9, the warm-up / inverse-square-root learning rate schedule of chapter 8 (in the ``cpu`` run
cooled down to 0 by the end of its 15 minutes: :class:`TimedCooldown`), label smoothing 0.1,
dropout (except in the short ``cpu`` run, see :data:`PRESETS`) and gradient clipping;
batches of similar-length sentences under a token budget; a bfloat16 forward pass where the
hardware supports it (:func:`for_training`). The model kept is the one of the epoch with the
lowest validation loss.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from course_utils.training import distributed
from course_utils.data.batching import EncodedSplit, TokenBatches, encode_split
from course_utils.data.multi30k import Multi30k, ParallelSplit, load_multi30k
from course_utils.data.vocab import PAD_IDX, Vocab
from course_utils.training.cli import hardware_info, library_versions, parse_with_presets
from course_utils.notebook.device import default_device
from course_utils.reference.bpe import TOKENIZER_FORMAT, BPETokenizer, train_tokenizer
from course_utils.reference.label_smoothing import LabelSmoothingLoss
from course_utils.reference.schedule import NoamScheduler

__all__ = ["PRESETS", "Checkpoint", "Preset", "PreparedData", "ShardedTokenBatches", "build_model", "build_vocabularies",
           "fit", "load_checkpoint", "main", "make_criterion", "make_optimizer", "prepare_data", "train",
           "vocab_from_dict"]

#: Where runs are written by default (git-ignored), one folder per preset.
CHECKPOINT_DIR = Path(__file__).resolve().parents[2] / "checkpoints"


@dataclass(frozen=True)
class Preset:
    """Every setting of a training run. The model follows the paper; only the sizes change."""

    name: str
    # The model: Transformer(src_vocab, tgt_vocab, d_model, num_layers, num_heads, d_ff, dropout).
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    dropout: float
    # The data.
    max_tokens: int
    """Batch budget: positions per batch, padding included."""
    units: str = "words"
    """``"words"``: chapter 9's word vocabularies (spaCy tokens, lowercased, ``min_freq``); ``"subwords"``:
    chapter 12's byte-pair encoding of the raw captions (case kept, never ``<unk>``)."""
    min_freq: int = 2
    lowercase: bool = True
    vocab_size: int = 8000
    """With ``units="subwords"``: ids per tokenizer (specials, 256 bytes, characters, merges)."""
    joint_vocab: bool = True
    """With ``units="subwords"``: one tokenizer learned on both languages (False: one per language)."""
    train_subset: int | None = None
    """Train on the first N pairs only (smoke test)."""
    eval_subset: int | None = None
    """Score on the first N test sentences only (smoke test)."""
    # The optimisation.
    epochs: int = 10
    max_minutes: float | None = None
    """Stop training (mid-epoch if need be) once this much time has passed."""
    cooldown: float = 0.0
    """With ``max_minutes``: over this last fraction of the time budget the learning rate falls
    linearly to 0 (the schedule's own rate times ``remaining / (cooldown * budget)``): a cool-down
    to the end of the budget, whatever the machine's speed (:class:`TimedCooldown`). 0: off."""
    warmup_steps: int = 4000
    lr_factor: float = 1.0
    """Noam schedule: lr = lr_factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)."""
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    seed: int = 0
    threads: int | None = None
    """CPU threads for PyTorch (None: its default, one per core). On a busy machine, fewer
    threads than cores avoids OpenMP threads waiting on each other."""
    bf16: bool = True
    """Run the forward pass under bfloat16 autocast where the hardware multiplies bfloat16
    matrices faster than float32 ones (GPUs with bfloat16; CPUs with AMX tiles). The weights,
    the loss and the optimizer stay in float32; evaluation runs in float32. On a CPU with
    AVX512-BF16 but no AMX, autocast made a step 1.5x *slower* (benchmarks/RESULTS.md), so it
    stays off there."""
    # The evaluation.
    beam_size: int = 4
    length_penalty: float = 0.6

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``Transformer`` besides the vocabulary sizes."""
        return {"d_model": self.d_model, "num_layers": self.num_layers, "num_heads": self.num_heads,
                "d_ff": self.d_ff, "dropout": self.dropout}

    def peak_lr(self) -> float:
        """The highest learning rate of the schedule, reached at ``warmup_steps``."""
        return self.lr_factor * self.d_model ** -0.5 * self.warmup_steps ** -0.5


PRESETS: dict[str, Preset] = {
    # The whole pipeline in seconds: a tiny model, 1,000 pairs, one epoch, 100 test sentences.
    "smoke": Preset("smoke", d_model=32, num_layers=1, num_heads=2, d_ff=64, dropout=0.1,
                    max_tokens=1000, train_subset=1000, eval_subset=100, epochs=1,
                    warmup_steps=20, lr_factor=1.0, threads=1),
    # 15 minutes on 2 CPU cores. The published reference point's size (3+3 layers, d_model 256,
    # 8 heads, d_ff 512), small batches (1,000 positions: twice the updates of 2,000 for the same
    # time), no dropout, and chapter 8's schedule cooled down linearly to 0 over the last 40% of
    # the budget. Chosen by full 15-minute runs on a 2-core AMD EPYC without AVX-512, compared by
    # greedy BLEU on the validation split (benchmarks/RESULTS.md, section 4b): the cool-down
    # raised the validation BLEU from the plain schedule's (see RESULTS) to 37.9 and lowered the
    # validation loss from 1.69 to 1.64; dropout 0.1 on top of it cost 15% of the steps
    # (2,368 against 2,800) and fell to 33.5. Without dropout the model begins to over-fit once
    # the rate is low (validation loss flat from epoch 5 to 7 while the training loss falls);
    # the best epoch by validation loss is kept. Epochs run until the time limit. A larger size
    # on equal terms (d_model 512, d_ff 1024: 2.6x slower steps) reached only 33.6 in the 15
    # minutes on an Intel Xeon (section 4).
    "cpu": Preset("cpu", d_model=256, num_layers=3, num_heads=8, d_ff=512, dropout=0.0,
                  max_tokens=1000, epochs=10, max_minutes=15.0, cooldown=0.4, warmup_steps=500,
                  lr_factor=0.5),
    # Chapter 12: the `cpu` recipe on subwords, one byte-pair encoding learned on the German and English
    # training captions together; its vocabulary size was chosen among full 15-minute runs by validation
    # BLEU (benchmarks/RESULTS.md, section 12).
    "cpu-subwords": Preset("cpu-subwords", d_model=256, num_layers=3, num_heads=8, d_ff=512, dropout=0.0,
                           max_tokens=1000, epochs=10, max_minutes=15.0, cooldown=0.4, warmup_steps=500,
                           lr_factor=0.5, units="subwords", vocab_size=8000),
    # A GPU run, not tuned on a GPU (none was available): a wider model with the dropout that
    # small translation datasets need over many epochs (as fairseq's IWSLT de-en Transformer:
    # d_model 512, d_ff 1024, dropout 0.3), 40 epochs, the best epoch by validation loss.
    "gpu": Preset("gpu", d_model=512, num_layers=3, num_heads=8, d_ff=1024, dropout=0.3,
                  max_tokens=2000, epochs=40, warmup_steps=1000, lr_factor=0.7),
}


def build_model(preset: Preset, src_vocab_size: int, tgt_vocab_size: int,
                model_class: type[nn.Module] | None = None) -> nn.Module:
    """``model_class(src_vocab_size, tgt_vocab_size, **preset.model_kwargs(), pad_idx=0)``.

    ``model_class`` defaults to the course's reference ``Transformer``; pass your own class
    (chapter 7) to train or load yours. Sentences are at most ``MAX_LEN`` tokens, so the
    positional-encoding table is built for 256 positions rather than 5,000.
    """
    if model_class is None:
        from course_utils.reference import Transformer as model_class
    return model_class(src_vocab_size, tgt_vocab_size, **preset.model_kwargs(), max_seq_length=256,
                       pad_idx=PAD_IDX)


def make_optimizer(model: nn.Module, preset: Preset, scheduler_class: type | None = None
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam (betas 0.9/0.98, eps 1e-9, as in the paper) and chapter 8's Noam schedule.

    ``scheduler_class`` defaults to the reference ``NoamScheduler``; chapter 9 passes yours.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.peak_lr(), betas=(0.9, 0.98), eps=1e-9)
    scheduler = (scheduler_class or NoamScheduler)(optimizer, preset.d_model, preset.warmup_steps,
                                                   factor=preset.lr_factor)
    return optimizer, scheduler


def make_criterion(preset: Preset, loss_class: type[nn.Module] | None = None) -> nn.Module:
    """Chapter 8's label-smoothed cross-entropy, which leaves padding out.

    ``loss_class`` defaults to the reference ``LabelSmoothingLoss``; chapter 9 passes yours.
    """
    return (loss_class or LabelSmoothingLoss)(preset.label_smoothing, PAD_IDX)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively (else autocast would be slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # AVX512-BF16 alone is not enough: measured 1.5x slower than float32 at these sizes.
        return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return False


class Autocast(nn.Module):
    """Runs ``model``'s forward pass under bfloat16 autocast and returns float32 logits.

    A thin wrapper for training only: it owns no weights of its own (``parameters()``,
    ``train()`` and ``eval()`` reach the wrapped model), so the optimizer, the clipping and
    the checkpoint all work on the wrapped model as usual.
    """

    def __init__(self, model: nn.Module, device_type: str) -> None:
        super().__init__()
        self.model = model
        self.device_type = device_type

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            logits = self.model(src, tgt)
        return logits.float()


def for_training(model: nn.Module, preset: Preset, device: torch.device | str) -> nn.Module:
    """``model`` wrapped in :class:`Autocast` when ``preset.bf16`` and the device is fast at it."""
    device = torch.device(device)
    return Autocast(model, device.type) if preset.bf16 and bf16_is_fast(device) else model


class TimedCooldown:
    """A learning-rate scheduler whose rates fall linearly to 0 at a deadline.

    Wraps ``scheduler`` (chapter 8's Noam schedule, or any ``LRScheduler``): each :meth:`step`
    lets it set its own rates, then multiplies them by ``min(1, remaining / (fraction * seconds))``,
    where ``remaining = deadline() - clock()`` and ``seconds`` is the whole budget. The budget
    is set in minutes, not steps, so a slow machine and a fast one both end their run at a
    learning rate of 0 (a run that stops while the rate is still high leaves the weights where
    the last noisy updates put them; annealing lets them settle). Before each inner step the
    unscaled rates are put back, so a scheduler that computes its next rate from the current one
    is not scaled twice.

    Args:
        scheduler: the schedule to scale; its optimizer's param groups are changed in place.
        deadline: returns the ``clock()`` time at which training ends (read at every step: the
            training loop may push it back).
        seconds: the length of the whole budget.
        fraction: the cool-down's share of the budget, in (0, 1].
        agree: with several processes, rank 0's value of the remaining fraction for every rank
            (:func:`course_utils.training.distributed.broadcast_float`), so all use the same rate.
    """

    def __init__(self, scheduler: Any, deadline: Callable[[], float], seconds: float, fraction: float, *,
                 clock: Callable[[], float] = time.perf_counter, agree: Callable[[float], float] = float) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"the cool-down is a fraction of the budget in (0, 1], got {fraction}")
        self.scheduler, self.optimizer = scheduler, scheduler.optimizer
        self.deadline, self.seconds, self.fraction = deadline, seconds, fraction
        self.clock, self.agree = clock, agree
        self._unscaled = [group["lr"] for group in self.optimizer.param_groups]

    def factor(self) -> float:
        """The multiplier now: 1 before the cool-down, then linearly down to 0 at the deadline."""
        remaining = self.agree((self.deadline() - self.clock()) / self.seconds)
        return min(1.0, max(0.0, remaining / self.fraction))

    def step(self) -> None:
        groups = self.optimizer.param_groups
        for group, lr in zip(groups, self._unscaled):
            group["lr"] = lr
        self.scheduler.step()
        self._unscaled = [group["lr"] for group in groups]
        factor = self.factor()
        for group in groups:
            group["lr"] *= factor

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]


def with_cooldown(scheduler: Any, preset: Preset, deadline: Callable[[], float | None], **kwargs: Any) -> Any:
    """``scheduler`` wrapped in a :class:`TimedCooldown` when ``preset`` asks for one, else itself."""
    if not preset.cooldown or not preset.max_minutes:
        return scheduler
    return TimedCooldown(scheduler, deadline, 60 * preset.max_minutes, preset.cooldown, **kwargs)


def time_limited(batches: Iterable[tuple[Tensor, Tensor]], deadline: float | None,
                 decide: Callable[[bool], bool] = bool) -> Iterator[tuple[Tensor, Tensor]]:
    """``batches``, cut short once ``time.perf_counter()`` passes ``deadline``.

    ``decide(past_the_deadline)`` has the last word before every batch: with several processes,
    :func:`course_utils.training.distributed.agree` makes every rank follow rank 0's clock, so all stop
    at the same step.
    """
    for batch in batches:
        if deadline is not None and decide(time.perf_counter() > deadline):
            return
        yield batch


def fit(model: nn.Module, batches: TokenBatches, val_batches: TokenBatches, preset: Preset, *,
        train_epoch: Callable[..., float], scheduler_class: type | None = None,
        loss_class: type[nn.Module] | None = None, device: torch.device | str = "cpu",
        log: Callable[[str], Any] = print) -> list[dict[str, Any]]:
    """Chapter 9's training loop for a notebook that has written it once already (chapter 12).

    ``train_epoch`` once per epoch (the student's own), Adam with ``scheduler_class`` (chapter 8's), the
    label-smoothed ``loss_class``, the preset's time limit and cool-down, the validation loss after each
    epoch; the weights of the epoch with the lowest validation loss are put back at the end.

    Returns:
        one record per epoch: ``epoch``, ``steps`` (so far), ``train_loss``, ``val_loss``, ``minutes``.
    """
    from course_utils.reference.translation import evaluate_loss

    optimizer, scheduler = make_optimizer(model, preset, scheduler_class)
    criterion = make_criterion(preset, loss_class)
    trained = for_training(model, preset, device)
    history: list[dict[str, Any]] = []
    best_val, best_state, steps = math.inf, None, 0
    start = time.perf_counter()
    deadline = start + 60 * preset.max_minutes if preset.max_minutes else None
    scheduler = with_cooldown(scheduler, preset, lambda: deadline)

    def counted(batches_of_epoch: Iterable[tuple[Tensor, Tensor]]) -> Iterator[tuple[Tensor, Tensor]]:
        nonlocal steps
        for batch in batches_of_epoch:
            steps += 1
            yield batch

    for epoch in range(1, preset.epochs + 1):
        train_loss = train_epoch(trained, counted(time_limited(batches, deadline)), optimizer, scheduler, criterion,
                                 PAD_IDX, preset.clip_norm)
        val_loss = evaluate_loss(model, val_batches, PAD_IDX)
        minutes = (time.perf_counter() - start) / 60
        history.append({"epoch": epoch, "steps": steps, "train_loss": train_loss, "val_loss": val_loss,
                        "minutes": minutes})
        log(f"epoch {epoch}: train loss {train_loss:.3f}, validation loss {val_loss:.3f}, {steps:,} steps, "
            f"{minutes:.1f} min")
        if val_loss < best_val:
            best_val, best_state = val_loss, copy.deepcopy(model.state_dict())
        if deadline is not None and time.perf_counter() > deadline:
            log(f"stopped: {preset.max_minutes:g} minutes are up")
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


class ShardedTokenBatches(TokenBatches):
    """:class:`TokenBatches` whose every pass holds only this rank's share of the batches.

    All ranks plan the same epoch (same seed), then each keeps every ``world_size``-th batch
    (:func:`course_utils.training.distributed.shard`): equal numbers of steps on every rank, and step
    ``s``'s global batch is batches ``s * world_size ...`` of the one-process plan. With one
    process it is exactly :class:`TokenBatches`.
    """

    def __init__(self, *args: Any, ctx: distributed.Context, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ctx = ctx

    def plan(self, epoch: int | None = None) -> list[list[int]]:
        return distributed.shard(super().plan(epoch), self.ctx)


@dataclass
class PreparedData:
    """The corpus, the splits a preset uses, its vocabularies and the encoded data."""

    corpus: Multi30k
    train_split: ParallelSplit
    val_split: ParallelSplit
    test_split: ParallelSplit
    src_vocab: Vocab | BPETokenizer
    tgt_vocab: Vocab | BPETokenizer
    train_data: EncodedSplit
    val_data: EncodedSplit


def prepare_data(preset: Preset, corpus: Multi30k | None = None) -> PreparedData:
    """Load Multi30k (unless ``corpus`` is given), take the preset's subsets, build the vocabularies
    on the training pairs, encode.

    Deterministic (no random numbers drawn), so every process of a job gets the same data.
    """
    corpus = corpus if corpus is not None else load_multi30k()
    train_split = corpus.train.subset(preset.train_subset) if preset.train_subset else corpus.train
    test_split = corpus.test.subset(preset.eval_subset) if preset.eval_subset else corpus.test
    val_split = corpus.val.subset(preset.eval_subset) if preset.eval_subset else corpus.val
    src_vocab, tgt_vocab = build_vocabularies(preset, train_split)
    return PreparedData(corpus, train_split, val_split, test_split, src_vocab, tgt_vocab,
                        train_data=encode_split(train_split, src_vocab, tgt_vocab, long="drop"),
                        val_data=encode_split(val_split, src_vocab, tgt_vocab, long="truncate"))


def build_vocabularies(preset: Preset, train_split: ParallelSplit) -> tuple[Any, Any]:
    """The source and target vocabularies the preset asks for, learned on the training pairs only:
    word :class:`Vocab` objects, or (``units="subwords"``) BPE tokenizers, joint or one per language."""
    if preset.units == "words":
        return (Vocab.build(train_split.de_tokens, preset.min_freq, preset.lowercase),
                Vocab.build(train_split.en_tokens, preset.min_freq, preset.lowercase))
    if preset.units != "subwords":
        raise ValueError(f"units must be 'words' or 'subwords', not {preset.units!r}")
    if preset.joint_vocab:
        joint = train_tokenizer(train_split.de + train_split.en, preset.vocab_size)
        return joint, joint
    return train_tokenizer(train_split.de, preset.vocab_size), train_tokenizer(train_split.en, preset.vocab_size)


def vocab_from_dict(data: dict[str, Any]) -> Any:
    """A saved vocabulary: a word :class:`Vocab` or a :class:`BPETokenizer`, as its ``format`` says."""
    if data.get("format") == TOKENIZER_FORMAT:
        return BPETokenizer.from_dict(data)
    return Vocab.from_dict(data)


def _progress(total: int | None, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, disable=not enabled, leave=False, dynamic_ncols=True,
                file=sys.stderr, unit="batch")


def train(preset: Preset, out_dir: str | os.PathLike[str] | None = None, *,
          device: torch.device | str | None = None, progress: bool = True,
          log=print, bleu_every_epoch: int = 0, ctx: distributed.Context | None = None,
          score_test: bool = True) -> dict[str, Any]:
    """Run a whole preset: data, vocabularies, training, evaluation, checkpoint and metrics.

    Args:
        preset: the settings.
        out_dir: where ``model.pt`` and ``metrics.json`` go (default ``checkpoints/<name>``).
        device: default CUDA when present, else the CPU (ignored with ``ctx``: its device).
        progress: show tqdm progress bars (on stderr).
        log: where the one-line progress reports go.
        bleu_every_epoch: if N > 0, after every epoch translate the first N validation sentences
            (greedy, with the decoder cache) and record their BLEU in the history as
            ``val_bleu``: a quality-against-time curve (``benchmarks/quality_per_minute.py``). The
            scoring time is left out of the training clock and pushes the time limit back by as
            much, so the training itself is the same as without it.
        score_test: False for a candidate setting being compared with others: only the validation
            split is translated (its BLEU decides), so test2016 stays unseen until the choice is
            made; the test fields of the metrics are then None.
        ctx: this process's place in a ``torchrun`` job (:func:`course_utils.training.distributed.session`);
            default one process. Every rank trains; only rank 0 logs, shows progress, evaluates
            and writes files.

    Returns:
        the metrics (also written to ``metrics.json``); ``{}`` on ranks other than 0.
    """
    from course_utils.training.evaluation import evaluate_translation
    from course_utils.reference.beam_search import beam_search
    from course_utils.reference.decoding import greedy_decode
    from course_utils.reference.translation import evaluate_loss, train_epoch

    started = time.perf_counter()
    ctx = ctx if ctx is not None else distributed.single_process(device)
    device = ctx.device
    if not ctx.is_main:
        log, progress = (lambda message: None), False
    out = Path(out_dir) if out_dir is not None else CHECKPOINT_DIR / preset.name
    torch.manual_seed(preset.seed)
    if preset.threads is not None:
        torch.set_num_threads(preset.threads)

    with distributed.main_first(ctx):  # one process per machine tokenizes; the others read its cache
        data = prepare_data(preset)
    corpus, test_split, val_split = data.corpus, data.test_split, data.val_split
    src_vocab, tgt_vocab, train_data, val_data = data.src_vocab, data.tgt_vocab, data.train_data, data.val_data
    log(f"data: {'cache' if corpus.from_cache else 'tokenized with spaCy'} in {corpus.seconds:.2f} s")
    log(f"vocabularies: {len(src_vocab):,} German, {len(tgt_vocab):,} English types; "
        f"train: {train_data.summary()}")

    model = build_model(preset, len(src_vocab), len(tgt_vocab)).to(device)
    distributed.seed_per_rank(preset.seed, ctx)  # same initial weights everywhere, own dropout masks
    # The same weights, maybe a bfloat16 forward, in DDP when several processes share the work.
    fast = for_training(model, preset, device)
    trained = distributed.wrap(fast, ctx)
    bf16 = fast is not model
    parameters = sum(p.numel() for p in model.parameters())
    optimizer, scheduler = make_optimizer(model, preset)
    criterion = distributed.TokenMeanLoss(make_criterion(preset), PAD_IDX, ctx)
    batches = ShardedTokenBatches(train_data.pairs, preset.max_tokens, shuffle=True, seed=preset.seed, device=device,
                                  ctx=ctx)
    val_batches = TokenBatches(val_data.pairs, preset.max_tokens, shuffle=False, device=device)
    per_epoch = (f"{len(batches)} batches per epoch" if not ctx.is_distributed else
                 f"{len(batches)} steps per epoch on each of {ctx.describe()}, one batch each per step")
    log(f"model: {parameters:,} parameters on {device.type}; {per_epoch} "
        f"({batches.padding_fraction():.1%} padding); peak lr {preset.peak_lr():.2e} at step "
        f"{preset.warmup_steps}; {'bfloat16' if bf16 else 'float32'} forward pass; "
        f"{torch.get_num_threads()} threads" + (" per process" if ctx.is_distributed else ""))

    history: list[dict[str, Any]] = []
    best_state, best_val = None, math.inf
    train_start = time.perf_counter()
    deadline = train_start + 60 * preset.max_minutes if preset.max_minutes else None
    not_training = 0.0  # seconds spent on optional per-epoch BLEU scoring, left out of the clock
    bleu_split = val_split.subset(min(bleu_every_epoch, len(val_split))) if bleu_every_epoch > 0 else None
    steps, stopped_early = 0, False
    train_tokens, step_seconds = 0, 0.0  # real target tokens of every rank; time spent in train_epoch
    decide = functools.partial(distributed.agree, ctx=ctx)  # rank 0's clock rules every rank
    scheduler = with_cooldown(scheduler, preset, lambda: deadline,
                              agree=functools.partial(distributed.broadcast_float, ctx=ctx))
    for epoch in range(1, preset.epochs + 1):
        bar = _progress(len(batches), f"epoch {epoch}/{preset.epochs}", progress)
        losses: list[float] = []

        def on_step(loss: float) -> None:
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")

        criterion.reset()
        epoch_start = time.perf_counter()
        train_loss = train_epoch(trained, time_limited(batches, deadline, decide), optimizer, scheduler, criterion,
                                 PAD_IDX, preset.clip_norm, on_step=on_step)
        epoch_seconds = time.perf_counter() - epoch_start
        bar.close()
        if ctx.is_distributed:  # train_epoch saw this rank's tokens only; the criterion saw them all
            train_loss = criterion.mean()
        steps += len(losses)
        train_tokens += criterion.tokens
        step_seconds += epoch_seconds
        if not ctx.is_main:  # only rank 0 evaluates; the others go on to the next epoch's first step
            if deadline is not None and decide(False):
                break
            continue
        val_loss = evaluate_loss(model, val_batches, PAD_IDX)
        record = {"epoch": epoch, "steps": steps, "train_loss": round(train_loss, 4),
                  "val_loss": round(val_loss, 4), "val_perplexity": round(math.exp(val_loss), 3),
                  "lr": optimizer.param_groups[0]["lr"],
                  "minutes": round((time.perf_counter() - train_start - not_training) / 60, 2),
                  "train_seconds": round(epoch_seconds, 2), "target_tokens": criterion.tokens,
                  "batch_losses": [round(x, 4) for x in losses]}
        history.append(record)
        log(f"epoch {epoch}: train loss {train_loss:.3f} (label-smoothed), val loss {val_loss:.3f}, "
            f"val perplexity {record['val_perplexity']:.2f}, {record['minutes']:.1f} min")
        if bleu_split is not None:
            scoring_start = time.perf_counter()
            scores = evaluate_translation(model, bleu_split, src_vocab, tgt_vocab, device=device,
                                          decoder=functools.partial(greedy_decode, use_cache=True))
            scoring = time.perf_counter() - scoring_start
            record.update(val_bleu=round(scores.bleu, 2), val_bleu_sentences=len(bleu_split),
                          bleu_seconds=round(scoring, 1))
            log(f"epoch {epoch}: BLEU {scores.bleu:.2f} on the first {len(bleu_split)} validation sentences "
                f"(greedy; {scoring:.0f} s, not counted as training time)")
            not_training += scoring
            if deadline is not None:
                deadline += scoring
        if val_loss < best_val:
            best_val, best_state = val_loss, copy.deepcopy(model.state_dict())
        if deadline is not None and decide(time.perf_counter() > deadline):
            stopped_early = epoch < preset.epochs or len(losses) < len(batches)
            log(f"time limit of {preset.max_minutes} min reached after {steps} steps")
            break
    if not ctx.is_main:
        return {}
    train_seconds = time.perf_counter() - train_start - not_training
    if best_state is not None:
        model.load_state_dict(best_state)

    # Candidate settings are compared on the validation split (test2016 stays an honest estimate).
    log(f"translating {len(val_split)} validation sentences (greedy)...")
    val_greedy = evaluate_translation(model, val_split, src_vocab, tgt_vocab, device=device)
    log(f"validation greedy: BLEU {val_greedy.bleu:.2f} (tokenized), sacreBLEU {val_greedy.sacrebleu:.2f}")
    greedy = beam = None
    if score_test:
        log(f"translating {len(test_split)} test sentences (greedy)...")
        greedy = evaluate_translation(model, test_split, src_vocab, tgt_vocab, device=device)
        log(f"test2016 greedy: BLEU {greedy.bleu:.2f} (tokenized), sacreBLEU {greedy.sacrebleu:.2f}, "
            f"perplexity {greedy.perplexity:.2f}")
    if score_test and preset.beam_size > 1:
        log(f"translating {len(test_split)} test sentences (beam {preset.beam_size})...")

        def decoder(model, src, max_len, bos_idx, eos_idx, pad_idx):
            return beam_search(model, src, max_len, bos_idx, eos_idx, pad_idx, beam_size=preset.beam_size,
                               alpha=preset.length_penalty)

        beam = evaluate_translation(model, test_split, src_vocab, tgt_vocab, decoder=decoder, device=device)
        log(f"test2016 beam {preset.beam_size}: BLEU {beam.bleu:.2f} (tokenized), sacreBLEU {beam.sacrebleu:.2f}")

    metrics: dict[str, Any] = {
        "preset": preset.name,
        "test_set": f"test2016 (multi30k/test_2016_flickr), {len(test_split)} sentences" if score_test else None,
        "bleu_tokenized": round(greedy.bleu, 2) if greedy else None,
        "sacrebleu": round(greedy.sacrebleu, 2) if greedy else None,
        "sacrebleu_signature": (greedy or val_greedy).signature,
        "test_perplexity": round(greedy.perplexity, 3) if greedy else None,
        "val_bleu_tokenized": round(val_greedy.bleu, 2),
        "val_sacrebleu": round(val_greedy.sacrebleu, 2),
        "val_perplexity": round(math.exp(best_val), 3) if best_val < math.inf else None,
        "greedy": greedy.as_dict() if greedy else None,
        "beam": None if beam is None else {**beam.as_dict(), "beam_size": preset.beam_size,
                                           "length_penalty": preset.length_penalty,
                                           "bleu_gain_over_greedy": round(beam.bleu - greedy.bleu, 2),
                                           "sacrebleu_gain_over_greedy": round(beam.sacrebleu - greedy.sacrebleu, 2)},
        "train_minutes": round(train_seconds / 60, 2),
        "total_minutes": None,  # filled below
        "epochs_completed": len(history),
        "steps": steps,
        "stopped_by_time_limit": stopped_early,
        "parameters": parameters,
        "processes": {"world_size": ctx.world_size, "backend": ctx.backend,
                      "step_max_tokens": ctx.world_size * preset.max_tokens},
        "train_target_tokens": train_tokens,
        "train_tokens_per_second": round(train_tokens / step_seconds, 1) if step_seconds else None,
        "training_precision": "bfloat16 autocast (forward)" if bf16 else "float32",
        "vocab_sizes": {"de": len(src_vocab), "en": len(tgt_vocab)},
        "units": preset.units,
        "translations_with_unk": {"test_greedy": sum("<unk>" in t for t in greedy.detokenized) if greedy else None,
                                  "val_greedy": sum("<unk>" in t for t in val_greedy.detokenized)},
        "data": {"prepare_seconds": round(corpus.seconds, 2), "from_cache": corpus.from_cache,
                 "train_pairs": len(train_data), "dropped_too_long": train_data.dropped,
                 "train_padding_fraction": round(batches.padding_fraction(), 4)},
        "hardware": hardware_info(device, ctx),
        "versions": library_versions(),
        "config": dataclasses.asdict(preset),
        "examples": [{"de": test_split.de[i], "en": test_split.en[i], "greedy": greedy.detokenized[i],
                      **({"beam": beam.detokenized[i]} if beam is not None else {})}
                     for i in range(min(5, len(test_split)))] if greedy else [],
        "history": history,
    }
    metrics["total_minutes"] = round((time.perf_counter() - started) / 60, 2)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "course_utils.training.translator/1", "config": dataclasses.asdict(preset),
                "model_class": "course_utils.reference.Transformer",
                "model_kwargs": {"src_vocab_size": len(src_vocab), "tgt_vocab_size": len(tgt_vocab),
                                 **preset.model_kwargs(), "max_seq_length": 256, "pad_idx": PAD_IDX},
                "model_state": model.state_dict(), "src_vocab": src_vocab.to_dict(),
                "tgt_vocab": tgt_vocab.to_dict(), "metrics": metrics}, out / "model.pt")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log(f"wrote {out / 'model.pt'} and {out / 'metrics.json'} ({metrics['total_minutes']:.1f} min in all)")
    return metrics


@dataclass
class Checkpoint:
    """A trained model and what it needs to translate: see :func:`load_checkpoint`."""

    model: nn.Module
    src_vocab: Vocab | BPETokenizer
    tgt_vocab: Vocab | BPETokenizer
    preset: Preset
    metrics: dict[str, Any]


def load_checkpoint(path: str | os.PathLike[str], model_class: type[nn.Module] | None = None,
                    device: torch.device | str | None = None) -> Checkpoint:
    """Load a ``model.pt`` written by ``python -m course_utils.training.translator``.

    Args:
        path: the file (``checkpoints/cpu/model.pt``) or its folder.
        model_class: the class to build; default the course's reference ``Transformer``. Your
            own chapter 7 ``Transformer`` works too when its attribute names follow the course
            (``encoder.layers.0.self_attn.W_q``, ...): the weights are loaded by name.
        device: where to put the model (default: CUDA when present, else the CPU).

    Returns:
        a :class:`Checkpoint`, its model in ``eval()`` mode.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: train one first with `python -m course_utils.training.translator --preset cpu` "
            f"(about 15 minutes on a laptop) from the course's root folder")
    device = torch.device(device) if device is not None else default_device()
    saved = torch.load(path, map_location=device, weights_only=False)
    preset = Preset(**saved["config"])
    if model_class is None:
        from course_utils.reference import Transformer as model_class
    model = model_class(**saved["model_kwargs"])
    missing, unexpected = model.load_state_dict(saved["model_state"], strict=False)
    # Buffers are computed, not learned (the positional-encoding table): a class that keeps its
    # table out of the state dict (persistent=False), or in it, loads either way.
    buffers = {name for name, _ in model.named_buffers()}
    missing = [key for key in missing if key not in buffers]
    unexpected = [key for key in unexpected if key not in buffers and not key.endswith(".pe")]
    if missing or unexpected:
        raise RuntimeError(
            f"the checkpoint's weights do not fit {model_class.__name__}: missing {list(missing)[:5]}, "
            f"unexpected {list(unexpected)[:5]}. Use the attribute names of the course "
            f"(encoder, decoder, generator, layers, self_attn, W_q, ...).")
    model.to(device).eval()
    return Checkpoint(model, vocab_from_dict(saved["src_vocab"]), vocab_from_dict(saved["tgt_vocab"]),
                      preset, saved["metrics"])


def _parse(argv: Sequence[str] | None) -> tuple[Preset, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m course_utils.training.translator",
        description="Train the reference Transformer on Multi30k (German -> English) and score it on test2016.")
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True,
                        help="smoke: < 1 min pipeline test; cpu: <= 15 min on 2 cores; cpu-subwords: the same "
                             "on chapter 12's subwords (or --units subwords with any preset); gpu: longer, for a GPU")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default checkpoints/<preset>)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    parser.add_argument("--dist-timeout", type=float, default=distributed.DEFAULT_TIMEOUT_MINUTES, metavar="MIN",
                        help="under torchrun: how long a process waits for the others at each step before "
                             f"giving up (default {distributed.DEFAULT_TIMEOUT_MINUTES:g} minutes)")
    parser.add_argument("--validation-only", action="store_true",
                        help="score the validation split only (comparing candidate settings: test2016 "
                             "stays unseen until one is chosen)")
    parser.add_argument("--bleu-every-epoch", type=int, default=0, metavar="N",
                        help="after every epoch, record the BLEU of the first N validation sentences "
                             "(greedy; not counted as training time); default 0: off")
    return parse_with_presets(parser, argv, PRESETS)


def main(argv: Sequence[str] | None = None) -> int:
    preset, args = _parse(argv)
    changed = {k: v for k, v in dataclasses.asdict(preset).items() if v != getattr(PRESETS[preset.name], k)}
    # Without torchrun, session() is a single process on args.device, exactly as before it existed.
    with distributed.session(args.device, args.dist_timeout) as ctx:
        ctx.log(f"preset {preset.name}" + (f" with {changed}" if changed else "")
                + (f"; {ctx.describe()}" if ctx.is_distributed else ""))
        train(preset, args.out, progress=not args.no_progress, log=ctx.log,
              bleu_every_epoch=args.bleu_every_epoch, ctx=ctx, score_test=not args.validation_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
