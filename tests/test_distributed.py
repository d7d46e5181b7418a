"""Training on several processes: `python -m course_utils.training.translator` under `torchrun`, gloo on the CPU.

Two processes must train exactly what one process trains on the same global batches (the same
weights within float tolerance, the same per-token losses), whatever the launch form (one machine
with --standalone, or the multi-machine form with a rendezvous endpoint, here both "machines" on
localhost); an odd number of batches must not hang; a killed rank must stop the job with a clear
message. Every subprocess has a hard timeout and every port is chosen free at run time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from course_utils.training import distributed, translator
from course_utils.data.batching import TokenBatches
from course_utils.data.multi30k import load_multi30k
from course_utils.data.vocab import PAD_IDX
from course_utils.reference.translation import collate_batch, train_epoch
from tests.support import free_port

# The README's command: the `torchrun` script installed with torch next to this Python.
TORCHRUN = [str(Path(sys.executable).with_name("torchrun"))]
ROOT = Path(__file__).resolve().parents[1]
# A few steps of the smoke model; --train-subset is chosen so that the epoch has an odd number of
# batches (tiny_args): 2 processes must leave the last one out, not hang on it.
TINY = ["--preset", "smoke", "--eval-subset", "10", "--beam-size", "1", "--dropout", "0", "--bf16", "false",
        "--no-progress"]
RUN_TIMEOUT = 120  # seconds: a hung run fails the test instead of hanging the suite

# Both multi-process runs land on one xdist worker: the multi-node form is compared with the standalone run.
pytestmark = pytest.mark.xdist_group(name="distributed")



@functools.cache
def tiny_args() -> list[str]:
    """TINY with the first training subset of at least 600 pairs whose epoch has an odd number of batches."""
    corpus = load_multi30k()
    for pairs in range(600, 1000, 10):
        preset = translator._parse([*TINY, "--train-subset", str(pairs)])[0]
        if len(plan_of(preset, translator.prepare_data(preset, corpus))) % 2 == 1:
            return [*TINY, "--train-subset", str(pairs)]
    raise AssertionError("no subset of 600-1000 pairs makes an odd number of batches")


def tiny_preset() -> translator.Preset:
    return translator._parse(tiny_args())[0]


def plan_of(preset: translator.Preset, data: translator.PreparedData) -> list[list[int]]:
    """The first epoch's batches of a one-process run (pair indices)."""
    return TokenBatches(data.train_data.pairs, preset.max_tokens, shuffle=True, seed=preset.seed).plan(0)


def run(command: Sequence[str], timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@dataclasses.dataclass
class Replica:
    model: torch.nn.Module
    losses: list[float]
    """Each step's loss (the mean per real target token of the merged batch)."""
    mean: float
    """train_epoch's result: the epoch's mean per real target token."""
    tokens: int


def one_process_replica(preset: translator.Preset, world_size: int) -> Replica:
    """What one process trains on the global batches of ``world_size`` processes: every step's
    ``world_size`` batches merged into one, trained with the reference ``train_epoch``."""
    torch.manual_seed(preset.seed)
    data = translator.prepare_data(preset)
    model = translator.build_model(preset, len(data.src_vocab), len(data.tgt_vocab))
    optimizer, scheduler = translator.make_optimizer(model, preset)
    plan = plan_of(preset, data)
    assert len(plan) % world_size == 1, "the tiny run has a batch left over"
    merged = [collate_batch([data.train_data.pairs[i] for b in plan[s * world_size:(s + 1) * world_size] for i in b],
                            PAD_IDX) for s in range(len(plan) // world_size)]
    losses: list[float] = []
    mean = train_epoch(model, merged, optimizer, scheduler, translator.make_criterion(preset), PAD_IDX, preset.clip_norm,
                       on_step=losses.append)
    return Replica(model, losses, mean, sum(int((tgt[:, 1:] != PAD_IDX).sum()) for _, tgt in merged))


@pytest.fixture(scope="module")
def standalone_run(tmp_path_factory) -> Path:
    """The README's one-machine command, 2 processes."""
    out = tmp_path_factory.mktemp("standalone")
    result = run([*TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "course_utils.training.translator", *tiny_args(),
                  "--out", str(out)])
    assert result.stdout.count("wrote ") == 1, "only rank 0 writes (and logs)"
    assert "2 processes (gloo on cpu)" in result.stdout
    return out


def test_shard_gives_every_rank_the_same_number_of_steps() -> None:
    for n in range(12):
        batches = list(range(n))
        for world_size in (1, 2, 3, 4):
            shards = [distributed.shard(batches, distributed.Context(rank, world_size)) for rank in range(world_size)]
            assert {len(s) for s in shards} == {n // world_size}
            # step s holds batches s * world_size ... s * world_size + world_size - 1, one per rank
            steps = [batch for step in zip(*shards) for batch in step]
            assert steps == batches[: n // world_size * world_size]


def test_one_process_is_left_alone() -> None:
    ctx = distributed.single_process("cpu")
    assert not ctx.is_distributed and ctx.is_main and ctx.backend is None
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, ctx) is model
    assert distributed.agree(True, ctx) is True and distributed.broadcast_float(1.5, ctx) == 1.5
    criterion = translator.make_criterion(translator.PRESETS["smoke"])
    wrapped = distributed.TokenMeanLoss(criterion, PAD_IDX, ctx)
    logits, targets = torch.randn(6, 5), torch.tensor([1, 2, PAD_IDX, 3, PAD_IDX, 4])
    assert torch.equal(wrapped(logits, targets), criterion(logits, targets))  # bit for bit
    assert wrapped.tokens == 4 and wrapped.mean() == pytest.approx(criterion(logits, targets).item())


def test_two_processes_train_what_one_process_trains_on_the_same_global_batches(standalone_run: Path) -> None:
    metrics = json.loads((standalone_run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["processes"] == {"world_size": 2, "backend": "gloo", "step_max_tokens": 2000}
    # An odd number of batches: steps of 2, the last batch left out, and the run ended (no rank waited forever).
    replica = one_process_replica(tiny_preset(), world_size=2)
    assert metrics["steps"] == len(replica.losses) == len(metrics["history"][0]["batch_losses"]) >= 4
    # The loss is the mean per real target token over both ranks' batches, as in one merged batch.
    assert metrics["history"][0]["batch_losses"] == pytest.approx(replica.losses, abs=1e-4)
    assert metrics["history"][0]["train_loss"] == pytest.approx(replica.mean, abs=1e-4)
    assert metrics["train_target_tokens"] == replica.tokens
    # The checkpoint loads in one process, and its weights are the one-process run's.
    saved = translator.load_checkpoint(standalone_run, device="cpu")
    expected = replica.model.state_dict()
    # Left out: the key projections' biases. Adding a constant to every key shifts all of a query's
    # scores alike, which softmax ignores, so their true gradient is 0 and what is computed is float
    # noise; Adam divides by the gradient's own size and turns that noise into full-size steps.
    compared = [name for name in expected if not name.endswith("W_k.bias")]
    assert len(compared) > 0.8 * len(expected)
    off = {name: (saved.model.state_dict()[name] - expected[name]).abs().max().item() for name in compared}
    off = {name: error for name, error in off.items()
           if not torch.allclose(saved.model.state_dict()[name], expected[name], rtol=1e-3, atol=1e-4)}
    assert not off, f"weights off between 2 processes and 1 (largest errors): {off}"


def test_the_multi_machine_form_gives_the_same_run(standalone_run: Path, tmp_path: Path) -> None:
    """Two torchrun agents ("machines"), one process each, meeting at a rendezvous endpoint."""
    endpoint = f"127.0.0.1:{free_port()}"
    agents = [subprocess.Popen([*TORCHRUN, "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d",
                                f"--rdzv_endpoint={endpoint}", "--rdzv_id=test", "-m", "course_utils.training.translator", *tiny_args(),
                                "--out", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True) for _ in range(2)]
    try:
        outputs = [agent.communicate(timeout=RUN_TIMEOUT)[0] for agent in agents]
    finally:
        for agent in agents:
            kill_group(agent)
    assert [agent.returncode for agent in agents] == [0, 0], "\n".join(outputs)
    # Repeatable: the same seeds give the same weights, bit for bit, however the job was launched.
    one, other = (torch.load(path / "model.pt", weights_only=False)["model_state"] for path in (standalone_run, tmp_path))
    assert all(torch.equal(one[name], other[name]) for name in one)


def kill_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_for(path: Path, text: str, process: subprocess.Popen, timeout: float = RUN_TIMEOUT) -> None:
    """Wait until ``text`` appears in the file ``path`` (a process's output)."""
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert process.poll() is None, f"ended before printing {text!r}:\n{path.read_text()}"
        assert time.monotonic() < deadline, f"no {text!r} after {timeout} s:\n{path.read_text()}"
        time.sleep(0.1)


LONG = [*TINY, "--train-subset", "2000", "--epochs", "1000", "--max-minutes", "2"]  # trains until stopped


def test_a_killed_rank_stops_the_other_with_a_clear_message(tmp_path: Path) -> None:
    """Without torchrun's agent (as for a process on another machine): the survivor must notice."""
    kill_rank_one_without_agent(["course_utils.training.translator", *LONG], tmp_path, ready="model:", settle=1.0)


def kill_rank_one_without_agent(module_args: Sequence[str], tmp_path: Path, ready: str, settle: float = 0.0) -> None:
    """Start ranks 0 and 1 of ``python -m <module_args> --out tmp_path/out`` as two separate
    processes (no torchrun agent, as on two machines), kill rank 1 ``settle`` seconds after rank 0
    has printed ``ready``; rank 0 must stop at once, with the clear message and exit status 1,
    and write no checkpoint."""
    port, logs, ranks = free_port(), [tmp_path / "rank0.log", tmp_path / "rank1.log"], []
    try:
        for rank in (0, 1):
            env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                   "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
            with logs[rank].open("w") as log:
                ranks.append(subprocess.Popen([sys.executable, "-m", *module_args, "--out", str(tmp_path / "out")],
                                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        wait_for(logs[0], ready, ranks[0])
        time.sleep(settle)
        ranks[1].kill()
        started = time.monotonic()
        assert ranks[0].wait(timeout=60) == 1
        assert time.monotonic() - started < 30
    finally:
        for process in ranks:
            kill_group(process)
    output = logs[0].read_text()
    assert "rank 0 of 2: lost contact with another process of this job" in output, output
    assert "Traceback" not in output.split("lost contact")[1], "the message ends the output, no C++ trace after it"
    assert not (tmp_path / "out" / "model.pt").exists()


def test_a_killed_rank_under_torchrun_ends_the_job(tmp_path: Path) -> None:
    log = tmp_path / "torchrun.log"
    with log.open("w") as handle:
        job = subprocess.Popen([*TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "course_utils.training.translator", *LONG,
                                "--out", str(tmp_path / "out")], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        wait_for(log, "model:", job)
        time.sleep(1.0)
        workers = _children(job.pid)
        [rank1] = [pid for pid in workers if _environment(pid).get("RANK") == "1"]
        os.kill(rank1, signal.SIGKILL)
        started = time.monotonic()
        assert job.wait(timeout=60) != 0
        assert time.monotonic() - started < 30
    finally:
        kill_group(job)
    output = log.read_text()
    # torchrun's own summary names the rank that failed first, and why.
    assert "ChildFailedError" in output and "rank      : 1" in output and "SIGKILL" in output, output


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _environment(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode(errors="replace").split("=", 1) for entry in entries if b"=" in entry)
