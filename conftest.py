"""Root pytest configuration: every notebook that pytest runs (nbval) runs in quick mode, and
each pytest-xdist worker (with the kernels and programs it starts) keeps to its share of the cores."""

import os

os.environ["COURSE_QUICK"] = "1"
# Figures render without a display; inline kernels ignore this, scripts honour it.
os.environ.setdefault("MPLBACKEND", "Agg")

# pytest-xdist sets PYTEST_XDIST_WORKER_COUNT before a worker loads this file, so before torch is
# imported. Without a share, every worker, kernel and graded notebook starts one spinning OpenMP
# thread per core: on 2 cores the suite ran 5 to 10 of them at once.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
if _workers > 1:
    from course_utils.course.grading import share_cores  # what `make grade -j N` gives its kernels

    share_cores(_workers)
