"""benchmarks/check_times.py runs: one chapter, one repeat, and prints its table. No time is asserted
(the benchmark's numbers are measured on an idle machine and kept in benchmarks/RESULTS.md)."""

from __future__ import annotations

from benchmarks import check_times


def test_check_times_prints_one_row_per_grade_cell(capsys) -> None:
    assert check_times.main(["--tiny"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 01_attention")]
    assert [r.split("|")[2].strip() for r in rows] == ["scores_check", "sdpa_check"]
    assert "command: `python -m benchmarks.check_times --tiny`" in out and "CPU:" in out
