"""Which devices to run on: the CPU always, CUDA when PyTorch sees a GPU."""

from __future__ import annotations

import platform
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
