"""Course utilities for "Build the Transformer": the answer key, the autograders and helpers.

- :mod:`course_utils.reference`: readable reference implementations (the answer key).
- :mod:`course_utils.checks`: the autograders that the notebooks' grade cells call.
- :mod:`course_utils.device`, :mod:`course_utils.quick`, :mod:`course_utils.plotting`:
  small helpers used across chapters.
"""

__version__ = "0.1.0"
