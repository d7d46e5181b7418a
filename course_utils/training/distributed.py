"""Training on several processes or machines: what a training CLI needs to run under ``torchrun``.

    torchrun --standalone --nproc_per_node=2 -m course_utils.training.translator --preset cpu

``torchrun`` (PyTorch's launcher) starts one process per GPU or CPU worker and tells each, through
environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``),
who it is and where to meet the others. :func:`session` reads them and joins the process group:
NCCL between GPUs (one GPU per process, ``cuda:LOCAL_RANK``), gloo between CPU processes. Without
``torchrun`` (or with one process) nothing is initialised and a CLI behaves exactly as before.

Data-parallel training, as here, keeps a full copy of the model in every process. Each step,
every process (rank) takes its own batch, computes its gradients, and
:class:`~torch.nn.parallel.DistributedDataParallel` (:func:`wrap`) averages them over the ranks
during the backward pass, so every copy takes the same optimizer step and stays identical. What
this module adds is what makes that *correct* rather than merely running:

- :func:`shard`: every rank gets the same number of batches per epoch (a rank with one batch more
  would wait forever in a gradient all-reduce that nobody else joins);
- :class:`TokenMeanLoss`: the loss is the mean over the real target tokens of the *whole* step,
  all ranks together (token sums and counts all-reduced), not a mean of per-rank means, which
  would give a rank with short sentences as much say as one with long ones;
- :func:`agree`: decisions that depend on a clock (the time limit) are taken by rank 0 and obeyed
  by every rank, so no rank stops a step before the others;
- :attr:`Context.is_main` and :meth:`Context.log`: only rank 0 evaluates, logs and writes files;
- :func:`session` turns a lost peer (a process killed, a machine gone) into a clear message and a
  non-zero exit instead of a hang: gloo notices a closed connection at once, and every collective
  gives up after ``timeout``.

A CLI adopts it in a few lines (``course_utils.training.translator`` is the worked example)::

    with distributed.session(args.device) as ctx:        # ctx.device: cuda:LOCAL_RANK or cpu
        model = build(...).to(ctx.device)
        trained = distributed.wrap(model, ctx)           # DDP when ctx.is_distributed
        for batch in distributed.shard(plan, ctx): ...   # same number of steps on every rank
        if distributed.agree(time_is_up, ctx): break     # rank 0 decides
        if ctx.is_main: save(model.state_dict())         # the unwrapped model: loads anywhere
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from course_utils.notebook.device import default_device

__all__ = ["DEFAULT_TIMEOUT_MINUTES", "Context", "LostPeer", "TokenMeanLoss", "agree", "all_reduce_sum",
           "broadcast_float", "main_first", "seed_per_rank", "session", "shard", "single_process", "wrap"]

T = TypeVar("T")

#: How long a collective (an all-reduce, a barrier) waits for the other ranks before giving up.
#: Rank 0 evaluates alone after each epoch while the others wait in the next collective, so this
#: must exceed an epoch's evaluation; a dead peer is noticed at once, not after this long.
DEFAULT_TIMEOUT_MINUTES = 10.0


@dataclass(frozen=True)
class Context:
    """Who this process is in the job. One process: rank 0 of 1, nothing initialised."""

    rank: int = 0
    """This process's number among all processes of the job, 0 to ``world_size - 1``."""
    world_size: int = 1
    local_rank: int = 0
    """Its number on this machine: which GPU it drives."""
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    """``"nccl"`` (GPUs), ``"gloo"`` (CPUs), or None for a single process."""

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, logs and writes the checkpoint."""
        return self.rank == 0

    def log(self, message: str) -> None:
        """Print ``message`` on rank 0 only (one copy of every line, not ``world_size``)."""
        if self.is_main:
            print(message, flush=True)

    def describe(self) -> str:
        """One line for logs, e.g. ``"2 processes (gloo on cpu)"``."""
        if not self.is_distributed:
            return f"1 process on {self.device.type}"
        return f"{self.world_size} processes ({self.backend} on {self.device.type})"


def single_process(device: torch.device | str | None = None) -> Context:
    """The context of an ordinary run: rank 0 of 1 on ``device`` (default CUDA when present)."""
    return Context(device=torch.device(device) if device is not None else default_device())


class LostPeer(SystemExit):
    """Raised (as an exit with status 1) when a collective fails because another rank is gone."""


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


@contextlib.contextmanager
def session(device: str | None = None, timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES) -> Iterator[Context]:
    """Join the job ``torchrun`` started, or run as a single process when there is none.

    Args:
        device: ``"cpu"`` forces gloo on CPUs; ``"cuda"`` (or None when a GPU is present) uses
            NCCL with ``cuda:LOCAL_RANK``. With one process: the device, as without torchrun.
        timeout_minutes: how long any collective waits for the other ranks.

    Yields:
        the :class:`Context`. On leaving, the process group is destroyed. A collective that fails
        because a peer died becomes :class:`LostPeer`: a message on stderr naming this rank, and
        exit status 1 (torchrun then reports which rank failed first).
    """
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        yield single_process(device)
        return
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    use_cuda = device != "cpu" and (device is not None and device.startswith("cuda") or torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        ctx = Context(rank, world_size, local_rank, torch.device("cuda", local_rank), "nccl")
    else:
        ctx = Context(rank, world_size, local_rank, torch.device("cpu"), "gloo")
    dist.init_process_group(ctx.backend, timeout=datetime.timedelta(minutes=timeout_minutes),
                            device_id=ctx.device if use_cuda else None)
    try:
        yield ctx
    except RuntimeError as error:
        if not _lost_peer(error):
            raise
        cause = _cause(error)
        print(f"\nrank {rank} of {world_size}: lost contact with another process of this job ({cause}). "
              f"Stopping this one too. The process that failed first is the cause: look for its own "
              f"error above (torchrun's summary names its rank).", file=sys.stderr, flush=True)
        raise LostPeer(1) from error
    finally:
        with contextlib.suppress(Exception):  # a broken group may refuse to shut down cleanly
            dist.destroy_process_group()


#: Words of the errors that gloo and NCCL raise when another rank is gone or silent. DDP's gradient
#: all-reduce raises them as plain RuntimeErrors, other collectives as ``torch.distributed.DistError``.
_PEER_ERRORS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Connection refused",
                "Timed out", "timed out", "Timeout", "NCCL", "gloo")


def _lost_peer(error: BaseException) -> bool:
    return isinstance(error, dist.DistError) or any(word in str(error) for word in _PEER_ERRORS)


def _cause(error: BaseException) -> str:
    """The informative part of a gloo or NCCL error: ``"Read error [127.0.0.1]:61646: Connection reset by peer"``."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if text.startswith("[") and "] " in text:  # "[/path/to/gloo/pair.cc:537] Read error ..." -> "Read error ..."
        text = text.split("] ", 1)[1]
    return text.split(". ")[0]


def wrap(model: nn.Module, ctx: Context) -> nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` when distributed, else itself.

    DDP copies rank 0's weights to every rank once, then averages the gradients over the ranks
    during ``backward()``. Save ``model`` (not the wrapper): its state dict has no ``module.``
    prefix and loads in a single process. Buffers (the positional-encoding table) are constants,
    so they are not re-broadcast at every forward pass.
    """
    if not ctx.is_distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)


def shard(batches: Sequence[T], ctx: Context) -> list[T]:
    """This rank's batches of an epoch: every rank gets ``len(batches) // world_size`` of them.

    Step ``s`` of the epoch is made of batches ``s * world_size`` to ``s * world_size +
    world_size - 1`` of ``batches``, one per rank (rank ``r`` takes ``batches[s * world_size +
    r]``), so the global batch of a step is the same whatever the number of processes that share
    it. The last ``len(batches) % world_size`` batches are left out of this epoch: were they
    handed out, some ranks would have one step more and wait forever for the others in the
    gradient all-reduce. With reshuffled batches every epoch, they are different ones each time.
    """
    steps = len(batches) // ctx.world_size
    return [batches[step * ctx.world_size + ctx.rank] for step in range(steps)]


def all_reduce_sum(values: Tensor, ctx: Context) -> Tensor:
    """The sum of ``values`` over all ranks (a new tensor; ``values`` itself as is with one process)."""
    if not ctx.is_distributed:
        return values
    total = values.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def agree(decision: bool, ctx: Context) -> bool:
    """Rank 0's ``decision``, on every rank.

    For choices that depend on a clock, such as "the time limit has passed": each rank's clock
    says something slightly different, and a rank that stops one step before the others leaves
    them waiting in an all-reduce. Every rank must call this at the same point.
    """
    if not ctx.is_distributed:
        return decision
    flag = torch.tensor([int(decision)], device=ctx.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def broadcast_float(value: float, ctx: Context) -> float:
    """Rank 0's ``value`` on every rank (e.g. elapsed training seconds that drive a schedule)."""
    if not ctx.is_distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


@contextlib.contextmanager
def main_first(ctx: Context) -> Iterator[None]:
    """Run the block on each machine's local rank 0 first, then on the other ranks.

    For work whose result is cached on disk (tokenizing the corpus): one process per machine does
    it, the others then read the cache instead of all repeating it at once.
    """
    if not ctx.is_distributed:
        yield
        return
    if ctx.local_rank != 0:
        dist.barrier()
    yield
    if ctx.local_rank == 0:
        dist.barrier()


def seed_per_rank(seed: int, ctx: Context) -> None:
    """Give each rank its own random stream (its own dropout masks), reproducibly from ``seed``.

    Call it after building the model (every rank builds the same initial weights from ``seed``).
    With one process nothing changes, so an ordinary run draws exactly what it drew before.
    """
    if ctx.is_distributed:
        torch.manual_seed(seed * 1_000_003 + 1 + ctx.rank)


class TokenMeanLoss(nn.Module):
    """``criterion``, made the mean per real target token over every rank's batch of the step.

    ``criterion(logits (N, V), targets (N,))`` returns the mean over this rank's real targets
    (those that are not ``pad_idx``). One all-reduce of two numbers, this rank's loss sum and its
    token count, gives the step's global mean ``sum_r loss_r / sum_r tokens_r``:

    - the value returned is that global mean, the same on every rank (for logs and curves);
    - its gradient is that of ``loss_r * tokens_r * world_size / sum_r tokens_r``, which DDP's
      averaging over ``world_size`` ranks turns into the gradient of the global mean, exactly what
      one process would compute on all the step's sentences in one batch.

    With one process it returns ``criterion``'s own output, unchanged. Either way it keeps the
    epoch's totals (:attr:`loss_sum`, :attr:`tokens`; :meth:`reset` between epochs).
    """

    def __init__(self, criterion: Callable[[Tensor, Tensor], Tensor], pad_idx: int, ctx: Context) -> None:
        super().__init__()
        self.criterion = criterion
        self.pad_idx = pad_idx
        self.ctx = ctx
        self.loss_sum = 0.0
        self.tokens = 0

    def reset(self) -> None:
        self.loss_sum, self.tokens = 0.0, 0

    def mean(self) -> float:
        """The mean loss per real target token since the last :meth:`reset`, all ranks together."""
        return self.loss_sum / max(self.tokens, 1)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        local = self.criterion(logits, targets)  # () mean over this rank's real tokens
        tokens = (targets != self.pad_idx).sum()
        # float64: token counts stay exact, and sums of many steps lose nothing.
        stats = all_reduce_sum(torch.stack([local.detach().double() * tokens, tokens.double()]), self.ctx)
        total_loss, total_tokens = stats.tolist()
        self.loss_sum += total_loss
        self.tokens += int(total_tokens)
        if not self.ctx.is_distributed:
            return local
        scaled = local * (float(tokens) * self.ctx.world_size / total_tokens)
        # Value: the global mean; gradient: that of `scaled` (the bracket is exactly 0).
        return torch.tensor(total_loss / total_tokens, dtype=local.dtype, device=local.device) + (
            scaled - scaled.detach())
