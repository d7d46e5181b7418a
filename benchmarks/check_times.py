"""Time to feedback: how long each grade cell's check takes on a correct answer.

    python -m benchmarks.check_times                  # every grade cell's visible and hidden calls
    python -m benchmarks.check_times --repeats 5
    python -m benchmarks.check_times --tiny           # one chapter, one repeat: the plumbing only

A student re-runs a grade cell's visible check after every fix, so its wall time is the time to
feedback; the goal is under 2 s for every visible check. Each call is made as the grade cell makes
it (its keyword arguments, read from ``solutions/``), on the first correct alternative of
``tests/mutants/<chapter>.py`` (the answer key itself is refused by every check), after one
warm-up call; the table gives the median of ``--repeats`` calls. The checks pick their own thread
count (most run on one thread); this script leaves torch's default as a notebook kernel has it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/check_times.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import footer, header, markdown_table, median, seconds

GOAL_S = 2.0


def rows(chapters: Sequence[str], repeats: int) -> list[list[str]]:
    """One row per grade cell: chapter, grade_id, check, visible time, slowest hidden call's time."""
    from course_utils import checks
    from tests.support import check_calls, load_mutants

    table = []
    for chapter in chapters:
        catalogue = load_mutants(chapter).CATALOGUE
        by_cell: dict[str, list] = {}
        for call in check_calls(chapter):
            by_cell.setdefault(call.grade_id, []).append(call)
        for grade_id, calls in by_cell.items():
            visible = [c for c in calls if not c.hidden]
            hidden = [c for c in calls if c.hidden]
            name = calls[0].check
            answer = catalogue[name].correct[0]
            check = getattr(checks, name)

            def timed(call, answer=answer, check=check) -> float:
                with contextlib.redirect_stdout(io.StringIO()):
                    check(answer, **call.kwargs)  # warm-up: imports, first-call allocations
                    return median([seconds(lambda: check(answer, **call.kwargs)) for _ in range(repeats)])

            visible_s = max(timed(c) for c in visible) if visible else float("nan")
            hidden_s = max(timed(c) for c in hidden) if hidden else float("nan")
            verdict = "yes" if visible_s < GOAL_S else "**no**"
            table.append([chapter, grade_id, name, f"{visible_s:.2f}", f"{hidden_s:.2f}", verdict])
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per check call (median)")
    parser.add_argument("--chapters", default="", help="comma-separated chapter ids (default: all)")
    parser.add_argument("--tiny", action="store_true", help="one chapter, one repeat")
    args = parser.parse_args(argv)
    from course_utils.course.chapters import chapters

    chosen = [c for c in args.chapters.split(",") if c] or chapters()
    if args.tiny:
        chosen, args.repeats = chosen[:1], 1
    header("Time to feedback: each grade cell's check on a correct answer", "check_times", argv)
    table = rows(chosen, args.repeats)
    print(markdown_table(["chapter", "grade cell", "check", "visible call (s)", "slowest hidden call (s)",
                          f"visible < {GOAL_S:g} s"], table))
    slow = [r for r in table if r[-1] != "yes"]
    print(f"\n{len(table) - len(slow)} of {len(table)} visible checks under {GOAL_S:g} s"
          + (f"; over: {', '.join(r[1] for r in slow)}" if slow else ""))
    footer()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
