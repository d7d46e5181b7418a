"""nbgrader settings for this course (read by every `nbgrader` command run from the repo root)."""

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

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
from course_utils.grading import autograde_preprocessors  # noqa: E402

c.Autograde.autograde_preprocessors = autograde_preprocessors()
# Kill each kernel once its notebook has run instead of waiting for a polite shutdown:
# nothing is left to save, and it takes about a second off every submission.
c.Execute.shutdown_kernel = "immediate"

# A submission whose grade cell was deleted gets it back (with a note) and is graded on it,
# instead of silently losing those points. Edited grade cells are always restored from the
# gradebook by nbgrader.
c.OverwriteCells.add_missing_cells = True
