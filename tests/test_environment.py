"""The installed environment: what ``make`` keeps out of it, and why it matters."""

from __future__ import annotations

import subprocess
import sys


def test_nbformat_does_not_load_the_slow_iri_checker() -> None:
    """``requirements-overrides.txt`` keeps rfc3987-syntax out: jsonschema (imported by nbformat)
    would otherwise build its ~35 parsers in every nbgrader, Jupyter and nbclient process (1.5 s
    each here)."""
    loaded = subprocess.run([sys.executable, "-c", "import sys, nbformat, nbgrader.apps; "
                             "print(sorted({'rfc3987_syntax', 'lark'} & set(sys.modules)))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", (f"{loaded} imported: this environment predates requirements-overrides.txt; "
                            f"rebuild it (rm -rf .venv && make)")
