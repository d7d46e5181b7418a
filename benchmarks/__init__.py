"""Speed and quality benchmarks: the course's reference against PyTorch's own.

Each module is a script (``python -m benchmarks.<name>``, or ``python benchmarks/<name>.py``)
that prints its machine, its command and a Markdown table of numbers measured in one run,
with ratios between the two sides measured side by side (interleaved), so that a machine
that is busy with something else slows both sides alike. ``--tiny`` shrinks every size so
that the test suite can check the scripts run (``tests/test_benchmarks.py``); tiny numbers
mean nothing. ``make bench`` runs them all at their real sizes; the results are in
``benchmarks/RESULTS.md``.
"""
