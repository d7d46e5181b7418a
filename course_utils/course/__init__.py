"""Running the course: where chapters live and how they reach students and come back graded.

- :mod:`.chapters`: chapter discovery, source and release notebooks, grade cells;
- :mod:`.release`: ``make release`` (``solutions/`` to ``notebooks/`` with nbgrader);
- :mod:`.workspace`: ``make lab``'s copy of the chapters into ``work/``;
- :mod:`.grading` and :mod:`.grading_parallel`: ``make grade``, a class over several processes;
- :mod:`.guard`: the answer key refuses to stand in for a student's exercise.
"""
