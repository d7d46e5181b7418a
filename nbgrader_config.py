"""nbgrader settings for this course (read by every `nbgrader` command run from the repo root)."""

import os
import sys

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

# nbgrader runs the `alembic` program by name to create gradebook.db: put this environment's
# bin/ first on PATH, so that `.venv/bin/nbgrader ...` works without activating the environment.
_bin = os.path.dirname(sys.executable)
if _bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")

c.CourseDirectory.course_id = "build-the-transformer"
# solutions/<id>/<id>.ipynb is the single source of truth; notebooks/ is generated from it.
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"

# What students see in place of each ### BEGIN SOLUTION ... ### END SOLUTION block.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Per-cell limit while autograding: bounds an infinite loop in a submission. Quick mode
# (nbgrader sets NBGRADER_EXECUTION) keeps every honest cell far below it.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
# A loop inside compiled code ignores that interrupt, and nbgrader would then drop the whole
# submission (no score, no feedback). BoundedExecute stops such a kernel instead and scores
# the cells it could not run as 0, with a message; see docs/instructors.md ("Pitfalls").
from course_utils.course.grading import HARMLESS_STDERR, autograde_preprocessors, sanitize_preprocessors  # noqa: E402

c.Autograde.autograde_preprocessors = autograde_preprocessors()
# Kill each kernel once its notebook has run instead of waiting for a polite shutdown:
# nothing is left to save, and it takes about a second off every submission.
c.Execute.shutdown_kernel = "immediate"

# A submission whose grade cell was deleted gets it back (with a note) and is graded on it,
# instead of silently losing those points. Edited grade cells are always restored from the
# gradebook by nbgrader.
c.OverwriteCells.add_missing_cells = True
# ... and one whose exercise cell was deleted as well is graded (0 for that cell) instead of
# failing the whole submission with nbgrader's KeyError.
c.Autograde.sanitize_preprocessors = sanitize_preprocessors()

# nbgrader scores a grade cell that wrote anything to stderr as 0. A stderr output made only of
# warnings (Python's warnings or logging.warning) is dropped first, so a right answer that warns
# keeps its points; an error (raised, or other text on stderr) still scores 0.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = HARMLESS_STDERR
