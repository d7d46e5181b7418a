"""The GPT trainer on several ranks, each rank's result kept: what tests/test_distributed_gpt.py inspects.

    torchrun --standalone --nproc_per_node=2 -m tests.gpt_ranks OUT VARIANT [VARIANT ...]

The command line (``python -m course_utils.training.gpt``) writes rank 0's model only; here every
rank saves what it trained (``OUT/<variant>-rank<r>.pt``: weights, losses, steps), so a test can
see whether the ranks stayed identical, and whether a broken variant of the recipe is caught:

- ``timed``: the real trainer under a time limit, rank 0 evaluating often (its clock and the
  others' drift apart while the others wait for it): the ranks must take the same steps, at the
  same learning rates, and end with the same weights, bit for bit;
- ``same-seed`` (a mutant): every rank draws the same windows, so a step's global batch is one
  rank's batch twice;
- ``no-allreduce`` (a mutant): no DDP, so each rank trains on its own windows alone;
- ``own-clock`` (a mutant, last: it may break the job): each rank follows its own clock for the
  schedule and the time limit.

It also holds :func:`one_process_replica`, what a single process trains on the same global batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from course_utils.training import distributed, gpt
from course_utils.data.shakespeare import encode_splits, load_shakespeare
from course_utils.reference.gpt import GPT, CharTokenizer, get_batch

#: A few steps of the smoke model, evaluated at every step (so the curve records every step's state).
TINY = ["--preset", "smoke", "--max-steps", "8", "--eval-every-seconds", "0", "--device", "cpu", "--no-progress"]


def tiny_preset() -> gpt.GPTPreset:
    return gpt._parse(TINY)[0]


def timed_preset() -> gpt.GPTPreset:
    """Two seconds of training, rank 0 evaluating every 0.05 s of it while the other ranks wait."""
    return dataclasses.replace(tiny_preset(), max_steps=1_000_000, max_seconds=2.0, eval_every_seconds=0.05)


@dataclass
class Data:
    tokenizer: CharTokenizer
    train: Tensor
    """``(N_train,)`` character ids."""
    val: Tensor


def shakespeare() -> Data:
    text = load_shakespeare()
    tokenizer = CharTokenizer(text)
    return Data(tokenizer, *encode_splits(tokenizer, text))


def fresh_model(preset: gpt.GPTPreset, data: Data) -> GPT:
    """The command line's initial model for ``preset`` (the same on every rank)."""
    torch.manual_seed(preset.seed)
    return GPT(**preset.model_kwargs(data.tokenizer.vocab_size))


@dataclass
class Replica:
    model: GPT
    losses: list[float]
    """Each step's loss: the mean over all ``world_size * batch_size`` windows."""
    val_losses: list[float]
    """``estimate_loss`` before every step and after the last, as the trainer's curve records it."""


def one_process_replica(preset: gpt.GPTPreset, world_size: int) -> Replica:
    """One process trained on the global batches of ``world_size`` ranks, written out plainly.

    Step ``s`` concatenates the windows every rank draws (rank ``r``'s sampler seeded ``seed + r``)
    into one batch and takes the recipe's step on it: AdamW groups, warm-up and cosine over
    ``max_steps``, clipping. With ``world_size=1`` it is the one-process trainer itself.
    """
    assert preset.max_seconds is None, "a step-based schedule: a clock-based one is not repeatable"
    data = shakespeare()
    model = fresh_model(preset, data)
    optimizer = gpt.configure_optimizer(model, preset.lr, preset.weight_decay, (0.9, preset.beta2))
    samplers = [torch.Generator().manual_seed(preset.seed + rank) for rank in range(world_size)]

    def val_loss() -> float:
        return gpt.estimate_loss(model, data.val, preset.block_size, preset.batch_size, preset.eval_batches)

    losses, val_losses = [], []
    model.train()
    for step in range(preset.max_steps):
        val_losses.append(val_loss())
        for group in optimizer.param_groups:
            group["lr"] = gpt.learning_rate(step, step / preset.max_steps, preset)
        windows = [get_batch(data.train, preset.block_size, preset.batch_size, sampler) for sampler in samplers]
        x, y = torch.cat([x for x, _ in windows]), torch.cat([y for _, y in windows])
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), preset.grad_clip)
        optimizer.step()
        losses.append(loss.item())
    val_losses.append(val_loss())
    return Replica(model, losses, val_losses)


@contextlib.contextmanager
def patched(obj: object, name: str, value: object) -> Iterator[None]:
    original = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, original)


def same_windows(preset: gpt.GPTPreset) -> Callable[..., tuple[Tensor, Tensor]]:
    """A batch function that ignores the rank's sampler: every rank draws from one seed."""
    sampler = torch.Generator().manual_seed(preset.seed)
    return lambda data, block_size, batch_size, _generator: get_batch(data, block_size, batch_size, sampler)


def train_variant(name: str, ctx: distributed.Context, data: Data, out: Path) -> None:
    preset = timed_preset() if name in ("timed", "own-clock") else tiny_preset()
    model = fresh_model(preset, data)
    batch_fn = same_windows(preset) if name == "same-seed" else get_batch
    quiet = {"progress": False, "log": lambda message: None}
    if name == "no-allreduce":
        mutation = patched(distributed, "wrap", lambda model, ctx: model)
    elif name == "own-clock":
        mutation = patched(distributed, "broadcast_float", lambda value, ctx: value)
    else:
        mutation = contextlib.nullcontext()
    with mutation:
        log = gpt.train_gpt(model, data.train, data.val, preset, batch_fn=batch_fn, ctx=ctx, **quiet)
    torch.save({"state": model.state_dict(), "losses": log.losses, "steps": log.steps},
               out / f"{name}-rank{ctx.rank}.pt")


def main(argv: list[str]) -> int:
    out, variants = Path(argv[0]), argv[1:]
    out.mkdir(parents=True, exist_ok=True)
    data = shakespeare()
    # Half a minute: a rank left waiting by a broken variant gives up soon instead of after ten.
    with distributed.session("cpu", timeout_minutes=0.5) as ctx:
        for name in variants:
            train_variant(name, ctx, data, out)
            ctx.log(f"{name}: done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
