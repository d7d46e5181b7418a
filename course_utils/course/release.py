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

from course_utils.course.chapters import ROOT, chapters, source_notebook


def generate_release(course_root: Path = ROOT, extra: tuple[str, ...] = ()) -> None:
    """``nbgrader generate_assignment --no-db --force`` for every chapter under ``course_root``.

    One process runs nbgrader's own converter once per chapter (what the command does), so that
    nbgrader and its configuration load once instead of once per chapter (a second per chapter).
    """
    code = ("import sys; from course_utils.course.release import _generate_here; "
            "_generate_here(sys.argv[1].split(','), sys.argv[2:])")
    subprocess.run([sys.executable, "-c", code, ",".join(chapters(course_root / "solutions")),
                    "--no-db", "--force", "--log-level=WARN", *extra], cwd=course_root, check=True)


def _generate_here(chapter_ids: list[str], argv: list[str]) -> None:
    """In the course directory: ``nbgrader generate_assignment <argv> <chapter>`` for each chapter."""
    from nbgrader.apps.generateassignmentapp import GenerateAssignmentApp
    from nbgrader.converters.generate_assignment import GenerateAssignment
    from nbgrader.utils import temp_attrs

    app = GenerateAssignmentApp()
    app.initialize(argv)
    for chapter in chapter_ids:
        with temp_attrs(app.coursedir, assignment_id=chapter):
            converter = GenerateAssignment(coursedir=app.coursedir, parent=app)
            converter.force = True
            converter.start()


def collapse_carriage_returns(text: str) -> str:
    r"""What a terminal shows of ``text``: each line as its last ``\r``-separated version.

    Progress bars (tqdm) redraw a line with ``\r`` thousands of times; a front end shows the
    last state only, but the saved output would keep every one of them.
    """
    lines = []
    for line in text.split("\n"):
        versions = [v for v in line.split("\r") if v.strip()]
        lines.append(versions[-1] if versions else "")
    return "\n".join(lines)


def collapse_progress_bars(notebook: nbformat.NotebookNode) -> None:
    """Merge each cell's consecutive outputs to the same stream, as a front end shows them, and
    keep only the last state of every line (:func:`collapse_carriage_returns`)."""
    for cell in notebook.cells:
        merged: list[nbformat.NotebookNode] = []
        for output in cell.get("outputs", []):
            previous = merged[-1] if merged else None
            if (output.get("output_type") == "stream" and previous is not None
                    and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
                previous["text"] += output["text"]
            else:
                merged.append(output)
        for output in merged:
            if output.get("output_type") == "stream" and "\r" in output.get("text", ""):
                output["text"] = collapse_carriage_returns(output["text"])
        if cell.get("cell_type") == "code":
            cell["outputs"] = merged


def execute_in_place(path: Path, timeout: int = 1800) -> None:
    """Execute a notebook with its own folder as working directory and save its outputs."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    collapse_progress_bars(notebook)
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
