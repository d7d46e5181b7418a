"""Wall time of ``make test``, stage by stage.

    python -m benchmarks.test_suite                       # every stage, one pytest run each
    python -m benchmarks.test_suite --stages mutants,nbval
    python -m benchmarks.test_suite --fresh-install       # also time a from-scratch install (network)
    python -m benchmarks.test_suite --tiny                # the plumbing only, for tests

``make test`` is ``pytest`` over ``tests/`` and ``solutions/`` in one process, after making
sure the virtual environment is installed. This script runs the same tests as separate
pytest runs, one per stage, and times each:

========== ====================================================================================
install    ``make .venv/.installed``: a no-op check when the environment is current; with
           ``--fresh-install``, also a new virtual environment in a temporary folder with the
           Makefile's own install steps (needs the network or a warm pip/uv cache)
unit       every other file of ``tests/``: the reference against PyTorch, data, batching, the
           training CLI's smoke run, the workspace, the decoder cache, the benchmarks' tiny runs
mutants    ``tests/test_checks_mutants.py``: every check against its known-wrong answers
release    ``tests/test_release.py``: notebooks/ in sync with solutions/ (runs nbgrader)
round trip the grading tests, which share one autograded class (``tests/grading_fixtures.py``):
           ``tests/test_grading_round_trip.py`` (three students per chapter),
           ``tests/test_sample_class.py``, ``tests/test_grading_equality.py`` (stock nbgrader
           against ``make grade -j 2``) and ``tests/test_grading_parallel.py`` (interruptions)
browser    ``tests/browser/``: JupyterLab and the formgrader in Chromium (needs the graded class)
nbval      ``solutions/``: every solution notebook executed in quick mode
========== ====================================================================================

Each stage pays pytest's start-up (and pytest-xdist's workers) once more than ``make test``
does, and stages cannot overlap as they do in one ``make test`` (``-n auto``: one worker per
core), so the sum is above one ``make test``; ``--whole`` also times one plain ``pytest`` run, the
suite as ``make test`` runs it. ``--durations`` shows each stage's slowest tests.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/test_suite.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, footer, header, markdown_table

#: Test files that form a stage of their own; every other tests/test_*.py is "unit".
OWN_STAGE = {"mutants": ["tests/test_checks_mutants.py"], "release": ["tests/test_release.py"],
             "round trip": ["tests/test_grading_round_trip.py", "tests/test_sample_class.py",
                            "tests/test_grading_equality.py", "tests/test_grading_parallel.py"],
             "browser": ["tests/browser"]}
STAGES = ("install", "unit", "mutants", "release", "round trip", "browser", "nbval")


@dataclass
class Stage:
    name: str
    command: list[str]
    seconds: float = 0.0
    returncode: int = 0
    summary: str = ""
    slowest: list[str] | None = None


def unit_files() -> list[str]:
    """``tests/test_*.py`` minus the files that have a stage of their own."""
    own = {path for paths in OWN_STAGE.values() for path in paths}
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if str(p.relative_to(ROOT)) not in own)


def pytest_command(paths: Sequence[str], durations: int) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--durations={durations}", *paths]


def stage_commands(names: Sequence[str], durations: int, tiny: bool) -> list[Stage]:
    if tiny:  # the plumbing only: a trivial command per stage
        return [Stage(name, [sys.executable, "-c", "print('1 passed in 0.01s')"]) for name in names]
    stages = []
    for name in names:
        if name == "install":
            stages.append(Stage(name, ["make", "--no-print-directory", ".venv/.installed"]))
        elif name == "unit":
            stages.append(Stage(name, pytest_command(unit_files(), durations)))
        elif name == "nbval":
            stages.append(Stage(name, pytest_command(["solutions"], durations)))
        else:
            stages.append(Stage(name, pytest_command(OWN_STAGE[name], durations)))
    return stages


def fresh_install_stage() -> Stage:
    """A new virtual environment in a temporary folder, by the Makefile's own install steps."""
    venv = Path(tempfile.mkdtemp(prefix="course-venv-")) / ".venv"
    script = (f"make --no-print-directory VENV={venv} {venv}/.installed && "
              f"rm -rf {venv.parent}")
    return Stage("install (fresh venv)", ["bash", "-c", script])


def run(stage: Stage) -> Stage:
    print(f"running {stage.name}: `{' '.join(stage.command[:6])}{' ...' if len(stage.command) > 6 else ''}`",
          flush=True)
    start = time.perf_counter()
    result = subprocess.run(stage.command, cwd=ROOT, capture_output=True, text=True)
    stage.seconds = time.perf_counter() - start
    stage.returncode = result.returncode
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    # pytest's last line: "12 passed, 1 skipped in 34.56s"
    summaries = [line.strip("= ") for line in lines if re.search(r"\b(passed|failed|error|no tests ran)\b", line)]
    stage.summary = summaries[-1] if summaries else ("ok" if result.returncode == 0 else "failed")
    # --durations lines: "12.34s call     tests/test_x.py::test_y"
    stage.slowest = [line for line in lines if re.match(r"^\d+\.\d+s (call|setup|teardown)", line)]
    if result.returncode != 0:
        print(f"  {stage.name} failed (exit {result.returncode}); last output:\n" + "\n".join(lines[-15:]), flush=True)
    return stage


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.test_suite", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of: {', '.join(STAGES)}")
    parser.add_argument("--durations", type=int, default=5, help="slowest tests shown per stage")
    parser.add_argument("--fresh-install", action="store_true", help="also time a from-scratch install")
    parser.add_argument("--tiny", action="store_true", help="trivial commands in place of the stages: for tests")
    parser.add_argument("--whole", action="store_true", help="also time the whole suite in one pytest run")
    args = parser.parse_args(argv)
    header("test_suite", "test_suite", argv)
    names = args.stages.split(",")
    unknown = set(names) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s) {sorted(unknown)}; choose from {', '.join(STAGES)}")
    stages = stage_commands(names, args.durations, args.tiny)
    if args.fresh_install and not args.tiny:
        stages.insert(0, fresh_install_stage())
    for stage in stages:
        run(stage)
    total = sum(s.seconds for s in stages if s.name != "install (fresh venv)")
    print()
    print(markdown_table(["stage", "wall time (s)", "share", "result"],
                         [[s.name, f"{s.seconds:.1f}", f"{s.seconds / total:.0%}" if total and s.name != "install (fresh venv)"
                           else "—", s.summary] for s in stages]
                         + [["**total** (stages of `make test`)", f"**{total:.1f}**", "100%", ""]]))
    if args.whole and not args.tiny:
        whole = run(Stage("whole suite", pytest_command([], args.durations)))
        stages.append(whole)
        print(f"\nthe whole suite in one pytest run (as `make test` runs it, the environment installed): "
              f"{whole.seconds:.1f} s, {whole.summary}")
    slowest = [f"- {s.name}: `{line}`" for s in stages for line in (s.slowest or [])]
    if slowest:
        print("\nslowest tests per stage (pytest --durations):\n")
        print("\n".join(slowest))
    footer()
    return 0 if all(s.returncode == 0 for s in stages) else 1


if __name__ == "__main__":
    sys.exit(main())
