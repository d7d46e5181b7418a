"""``make release``: regenerate ``notebooks/`` from ``solutions/`` with nbgrader.

``make solutions`` (``--execute-solutions``) first re-runs every solution notebook in
place, in full mode, so the outputs committed with the sources are current.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from course_utils.course import ROOT, chapters, source_notebook


def generate_release(course_root: Path = ROOT, extra: tuple[str, ...] = ()) -> None:
    """Run ``nbgrader generate_assignment --no-db --force`` for every chapter under ``course_root``."""
    for chapter in chapters(course_root / "solutions"):
        subprocess.run(
            [sys.executable, "-m", "nbgrader", "generate_assignment", chapter,
             "--no-db", "--force", "--log-level=WARN", *extra],
            cwd=course_root, check=True,
        )


def execute_in_place(path: Path, timeout: int = 1800) -> None:
    """Execute a notebook with its own folder as working directory and save its outputs."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(notebook, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--execute-solutions", action="store_true",
                        help="re-execute solutions/ in place (full mode) before releasing")
    parser.add_argument("chapters", nargs="*", metavar="CHAPTER",
                        help="with --execute-solutions: only these chapters (default: all)")
    args = parser.parse_args()
    if args.execute_solutions:
        os.environ.pop("COURSE_QUICK", None)
        unknown = set(args.chapters) - set(chapters())
        if unknown:
            parser.error(f"no such chapter: {', '.join(sorted(unknown))}; chapters: {', '.join(chapters())}")
        for chapter in args.chapters or chapters():
            print(f"executing {source_notebook(chapter).relative_to(ROOT)}")
            execute_in_place(source_notebook(chapter))
    generate_release()
    print(f"notebooks/ regenerated for {len(chapters())} chapter(s).")


if __name__ == "__main__":
    main()
