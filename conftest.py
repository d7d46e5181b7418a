"""Root pytest configuration: every notebook that pytest runs (nbval) runs in quick mode."""

import os

os.environ["COURSE_QUICK"] = "1"
# Figures render without a display; inline kernels ignore this, scripts honour it.
os.environ.setdefault("MPLBACKEND", "Agg")
