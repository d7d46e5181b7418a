"""The GPT trainer on several processes: `python -m course_utils.training.gpt` under `torchrun`, gloo on the CPU.

Two processes must train what one process trains on the same global batches (the same weights
within float tolerance, the same logged losses and evaluations), and one process without torchrun
exactly what it trained before (bit for bit). The ranks must stay identical under a time limit
(rank 0's clock rules), the comparison must catch the recipe's likely breakages (ranks drawing the
same windows, no gradient all-reduce, each rank on its own clock), and a killed rank must stop
the job with a clear message. Every subprocess has a hard timeout and every port is chosen free
at run time.

The loss needs no token counting here, unlike the translator's (tests/test_distributed.py): every
rank's batch has ``batch_size * block_size`` targets, no padding, so the mean of the ranks' means
IS the mean per target token of the step. There is no difference between the two to test.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import torch

from course_utils.training import gpt
from tests import gpt_ranks
from tests.test_distributed import ROOT, TORCHRUN, kill_rank_one_without_agent

RUN_TIMEOUT = 120  # seconds: a hung run fails the test instead of hanging the suite


def assert_same_weights(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """``state`` equals ``expected`` within float tolerance (the order of a sum differs between
    one batch of 16 windows and two ranks' batches of 8 averaged).

    Left out: the key projections' biases. Adding a constant to every key shifts all of a query's
    scores alike, which softmax ignores, so their true gradient is 0 and what is computed is float
    noise; Adam divides by the gradient's own size and turns that noise into full-size steps.
    """
    assert state.keys() == expected.keys()
    compared = [name for name in expected if not name.endswith("W_k.bias")]
    assert len(compared) > 0.8 * len(expected)
    off = {name: (state[name] - expected[name]).abs().max().item() for name in compared
           if not torch.allclose(state[name], expected[name], rtol=1e-3, atol=1e-5)}
    assert not off, f"weights off between 2 processes and 1 (largest errors): {off}"


@pytest.fixture(scope="module")
def replica() -> gpt_ranks.Replica:
    """One process on the global batches of two."""
    return gpt_ranks.one_process_replica(gpt_ranks.tiny_preset(), world_size=2)


def test_one_process_trains_exactly_what_it_trained_before() -> None:
    """Without torchrun: the plain one-process recipe, bit for bit (the same numbers for the same seed)."""
    preset = gpt_ranks.tiny_preset()
    data = gpt_ranks.shakespeare()
    model = gpt_ranks.fresh_model(preset, data)
    log = gpt.train_gpt(model, data.train, data.val, preset, progress=False, log=lambda message: None)
    plain = gpt_ranks.one_process_replica(preset, world_size=1)
    assert log.losses == plain.losses
    assert [point["val_loss"] for point in log.curve] == plain.val_losses
    assert all(torch.equal(tensor, plain.model.state_dict()[name]) for name, tensor in model.state_dict().items())


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, str]:
    """The README's one-machine command, 2 processes."""
    out = tmp_path_factory.mktemp("gpt-two-processes")
    command = [*TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "course_utils.training.gpt", *gpt_ranks.TINY,
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return out, result.stdout


def test_two_processes_train_what_one_process_trains_on_the_same_global_batches(
        two_processes: tuple[Path, str], replica: gpt_ranks.Replica) -> None:
    out, stdout = two_processes
    assert "2 processes (gloo on cpu)" in stdout and "16 windows per step" in stdout
    assert stdout.count("wrote ") == 1 and stdout.count("validation loss on the whole") == 1, "rank 0 alone logs"
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    preset = gpt_ranks.tiny_preset()
    assert metrics["processes"] == {"world_size": 2, "backend": "gloo", "step_batch_size": 16}
    assert metrics["steps"] == preset.max_steps == len(replica.losses)
    assert metrics["tokens_seen"] == preset.max_steps * 16 * preset.block_size
    # The logged training loss is the step's mean over both ranks' windows: the curve's running
    # means (the mean of the last 20 steps, here all of them) are the replica's.
    curve = metrics["curve"]
    assert [point["step"] for point in curve] == list(range(preset.max_steps + 1))
    assert math.isnan(curve[0]["train_loss"])
    running = [sum(replica.losses[:step]) / step for step in range(1, preset.max_steps + 1)]
    assert [point["train_loss"] for point in curve[1:]] == pytest.approx(running, abs=1e-5)
    assert metrics["train_loss_last_100"] == pytest.approx(running[-1], abs=1e-5)
    # Rank 0 evaluated the model of every step: the replica's at the same step.
    assert [point["val_loss"] for point in curve] == pytest.approx(replica.val_losses, abs=1e-5)
    # The checkpoint is an ordinary one: it loads in one process (no DDP `module.` prefixes).
    saved = torch.load(out / "model.pt", weights_only=False)["model_state"]
    assert not [name for name in saved if name.startswith("module.")]
    loaded = gpt.load_gpt_checkpoint(out, device="cpu")
    assert_same_weights(loaded.model.state_dict(), replica.model.state_dict())
    assert "=== final model" in (out / "samples.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One job, four trainings in turn (tests/gpt_ranks.py), every rank's result kept."""
    out = tmp_path_factory.mktemp("gpt-ranks")
    command = [*TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "tests.gpt_ranks", str(out),
               "timed", "same-seed", "no-allreduce", "own-clock"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=ROOT)
    return out, result


def _ranks(out: Path, variant: str) -> list[dict]:
    return [torch.load(out / f"{variant}-rank{rank}.pt", weights_only=False) for rank in (0, 1)]


def test_ranks_stay_identical_under_a_time_limit(rank_results) -> None:
    """Rank 0 evaluates alone, so the ranks' clocks differ: rank 0's rules the schedule and the stop."""
    out, result = rank_results
    assert (out / "timed-rank1.pt").exists(), result.stdout + result.stderr
    zero, one = _ranks(out, "timed")
    assert zero["steps"] == one["steps"] > 10
    assert zero["losses"] == one["losses"], "every rank logs the same all-reduced loss"
    assert all(torch.equal(zero["state"][name], one["state"][name]) for name in zero["state"]), \
        "the ranks' weights drifted apart: different learning rates?"


@pytest.mark.parametrize("variant", ["same-seed", "no-allreduce"])
def test_the_comparison_catches_a_broken_recipe(rank_results, replica: gpt_ranks.Replica, variant: str) -> None:
    """Ranks that draw the same windows, or that never average their gradients, must fail the
    comparison that the real two-process run passes."""
    out, result = rank_results
    assert (out / f"{variant}-rank0.pt").exists(), result.stdout + result.stderr
    with pytest.raises(AssertionError, match="weights off between 2 processes and 1"):
        assert_same_weights(_ranks(out, variant)[0]["state"], replica.model.state_dict())


def test_ranks_on_their_own_clocks_are_caught(rank_results) -> None:
    """Without rank 0's clock, the ranks stop at different steps (the job fails: one rank waits for
    a step the other never takes) or at different learning rates (their weights differ)."""
    out, result = rank_results
    if result.returncode != 0:
        assert "no-allreduce: done" in result.stdout, "the variants before it ran through"
        assert "lost contact with another process of this job" in result.stderr, result.stdout + result.stderr
        return
    zero, one = _ranks(out, "own-clock")
    assert zero["steps"] != one["steps"] or not all(
        torch.equal(zero["state"][name], one["state"][name]) for name in zero["state"])


def test_a_killed_rank_stops_the_other_with_a_clear_message(tmp_path: Path) -> None:
    """Without torchrun's agent (as for a process on another machine): the survivor must notice.
    Rank 1 is killed once rank 0 has evaluated after the first step: in the middle of training."""
    long_run = [*gpt_ranks.TINY, "--max-steps", "1000000", "--max-seconds", "120"]
    kill_rank_one_without_agent(["course_utils.training.gpt", *long_run], tmp_path, ready="step     1 |")
