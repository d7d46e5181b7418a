"""The subprocess that runs a student's exercise cells and checks: ``python -m course_utils.yours.worker``.

It runs apart from the student's kernel so that a check never prints into the notebook, never
touches the kernel's random state or threads, never sees the GPU (``CUDA_VISIBLE_DEVICES`` is
empty: verdicts are the CPU's), and can be stopped when a student's code hangs where Python's
own time limit cannot reach (a loop inside compiled code). It speaks JSON lines on the stdout it
was started with; student code's output, at the Python and the file-descriptor level, goes to
``/dev/null``.

Arguments: ``--workspace DIR --names A,B --forced C,D --hung KEY:STEP ...`` (see
:class:`course_utils.yours.resolve.Resolver`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def _protocol_stream():
    """Keep the real stdout for the protocol, and send fds 1 and 2 to /dev/null."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    return protocol


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.yours.worker")
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--chapters", default="")
    parser.add_argument("--forced", default="")
    parser.add_argument("--hung", action="append", default=[])
    parser.add_argument("--fingerprint", default=None)
    args = parser.parse_args(argv)
    protocol = _protocol_stream()

    def send(**message) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    import torch

    torch.set_num_threads(1)  # the checks' models are tiny; one thread is the fastest and steadiest
    from course_utils.yours.resolve import Resolver

    resolver = Resolver(args.workspace, set(filter(None, args.forced.split(","))), run_checks=True,
                        hung=set(args.hung), fingerprint=args.fingerprint, on_step=lambda chapter, key, step: send(step=[chapter, key, step]))
    for chapter in filter(None, args.chapters.split(",")):
        resolver.resolve(chapter)
    send(results=[result.to_json() for result in resolver.results.values()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
