"""The student's workspace: ``make lab`` copies released chapters into ``work/``.

Students work in ``work/``, never in ``notebooks/``, so that pulling course updates cannot
touch their answers: new chapters (and new files of a chapter) are copied in, and a file
that already exists in ``work/`` is never overwritten.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from course_utils.course.chapters import RELEASE_DIR, WORK_DIR


def sync_workspace(release_dir: Path = RELEASE_DIR, work_dir: Path = WORK_DIR
                   ) -> tuple[list[Path], list[Path]]:
    """Copy every released file missing from ``work_dir``; keep every file already there.

    Returns:
        ``(copied, kept)``: paths relative to ``work_dir``.
    """
    copied: list[Path] = []
    kept: list[Path] = []
    for source in sorted(release_dir.rglob("*")):
        if not source.is_file() or ".ipynb_checkpoints" in source.parts:
            continue
        relative = source.relative_to(release_dir)
        target = work_dir / relative
        if target.exists():
            kept.append(relative)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied.append(relative)
    return copied, kept


def main() -> None:
    copied, kept = sync_workspace()
    for path in copied:
        print(f"new in work/: {path}")
    print(f"work/ is ready: {len(copied)} file(s) copied, {len(kept)} of yours left untouched.")


if __name__ == "__main__":
    main()
