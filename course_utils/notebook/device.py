"""Which devices to run on: the CPU always, CUDA when PyTorch sees a GPU."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from pathlib import Path

import torch


def available_devices() -> list[torch.device]:
    """Devices an autograder checks on: ``[cpu]`` plus ``cuda`` when one is present."""
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return devices


def default_device() -> torch.device:
    """The device to train on: CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_name() -> str:
    """The processor's name, for reports: ``model name`` of ``/proc/cpuinfo`` where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(num_threads)``, then restore the setting.

    Small models gain little from several CPU threads, and several threads slow down badly when
    other programs compete for the cores; one thread is then the faster, steadier choice.
    ``None`` leaves the setting alone.
    """
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
