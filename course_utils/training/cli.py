"""What the training command lines (``course_utils.training.translator``, ``course_utils.training.gpt``) share.

- :func:`parse_bool`: the ``type`` of a true/false option (``--bf16 false``);
- :func:`hardware_info` and :func:`library_versions`: where and with what a run ran, as recorded
  in its ``metrics.json``, so that a figure can always be traced to its machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from course_utils.training import distributed
from course_utils.notebook.device import cpu_name

__all__ = ["hardware_info", "library_versions", "parse_bool", "parse_with_presets"]


def parse_bool(text: str) -> bool:
    """``"true"``/``"1"``/``"yes"`` -> True, ``"false"``/``"0"``/``"no"`` -> False (any case)."""
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def hardware_info(device: torch.device, ctx: distributed.Context | None = None) -> dict[str, Any]:
    """The device type, threads, cores, CPU model and platform; the processes of a ``torchrun`` job."""
    info: dict[str, Any] = {"device": device.type, "torch_threads": torch.get_num_threads(),
                            "cpu_count": os.cpu_count(), "cpu": cpu_name(), "platform": platform.platform()}
    if ctx is not None and ctx.is_distributed:
        info["processes"] = ctx.world_size
        info["processes_on_this_machine"] = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def library_versions() -> dict[str, str]:
    """Python's, torch's and (where installed) sacrebleu's and spaCy's versions."""
    from importlib import metadata

    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("sacrebleu", "spacy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


#: The option type of each preset field's annotation.
_OPTION_TYPES = {"int": int, "float": float, "bool": parse_bool, "str": str, "int | None": int, "float | None": float}


def parse_with_presets(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                       presets: Mapping[str, Any]) -> tuple[Any, argparse.Namespace]:
    """Add an ``--<field>`` override for every field of the presets' dataclass (but ``name``), parse
    ``argv`` and return the preset named by ``--preset`` with the given overrides applied, and the args."""
    fields = [f for f in dataclasses.fields(next(iter(presets.values()))) if f.name != "name"]
    for f in fields:
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=_OPTION_TYPES[str(f.type)], default=None,
                            help=f"override the preset's {f.name}")
    args = parser.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in fields if getattr(args, f.name) is not None}
    return dataclasses.replace(presets[args.preset], **overrides), args
