"""Course utilities for "Build the Transformer": the answer key, the autograders and helpers.

One folder per concern; open the one that matches your question:

- :mod:`course_utils.reference`: the answer key, one module per topic (what a correct piece does).
- :mod:`course_utils.checks`: the autograders the grade cells call (why a piece is marked wrong).
- :mod:`course_utils.yours`: which of the student's own pieces later chapters run, and why.
- :mod:`course_utils.data`: the shipped data sets, their checksums, vocabularies and batches.
- :mod:`course_utils.training`: everything that trains or scores a model: the translator's and the
  GPT's command lines (``python -m course_utils.training.translator``, ``... .training.gpt``), the
  toy-task loop, evaluation (BLEU), several processes, the ablations.
- :mod:`course_utils.course`: running the course itself: chapter discovery, ``make release``,
  ``make lab``'s workspace, ``make grade``, the answer-key guard.
- :mod:`course_utils.notebook`: what a chapter uses to show and pace things: plots, the generation
  panel, quick mode, the device line.
- :mod:`course_utils.cache`: the disk cache every concern above may read through.
"""

__version__ = "0.1.0"
