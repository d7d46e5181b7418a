"""Every check is itself tested: it rejects known-wrong answers with the right diagnosis and
accepts correct answers written differently from the reference, on every call the
chapter's grade cells make (visible and hidden sizes)."""

from __future__ import annotations

import re

import pytest

from course_utils import checks
from tests.support import CHAPTERS, check_calls, load_mutants

MIN_MUTANTS = 4


def _cases() -> list[tuple[str, str, object]]:
    cases = []
    for chapter in CHAPTERS:
        catalogue = load_mutants(chapter).CATALOGUE
        for check_name, entry in catalogue.items():
            for mutant in entry.mutants:
                cases.append(pytest.param(chapter, check_name, mutant,
                                          id=f"{chapter}-{check_name}-{mutant.name}"))
    return cases


def _correct_cases() -> list[tuple[str, str, int]]:
    return [pytest.param(chapter, name, i, id=f"{chapter}-{name}-correct{i}")
            for chapter in CHAPTERS
            for name, entry in load_mutants(chapter).CATALOGUE.items()
            for i in range(len(entry.correct))]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_check_has_a_catalogue(chapter: str) -> None:
    catalogue = load_mutants(chapter).CATALOGUE
    used = {call.check for call in check_calls(chapter)}
    assert used, f"{chapter} has no grade cell calling course_utils.checks"
    for name in used:
        assert name in catalogue, f"tests/mutants/{chapter}.py has no catalogue for {name}"
        entry = catalogue[name]
        assert len(entry.mutants) >= MIN_MUTANTS, f"{name}: only {len(entry.mutants)} mutants"
        assert entry.correct, f"{name}: no correct alternative"


@pytest.mark.parametrize(("chapter", "check_name", "mutant"), _cases())
def test_check_rejects_mutant(chapter: str, check_name: str, mutant, capsys) -> None:
    check = getattr(checks, check_name)
    with pytest.raises(AssertionError) as caught:
        check(mutant.answer)
    message = str(caught.value)
    assert re.search(mutant.expect, message), (
        f"{check_name} rejected mutant {mutant.name!r}, but its message does not match "
        f"{mutant.expect!r}:\n{message}")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("chapter", "check_name", "index"), _correct_cases())
def test_check_accepts_correct_alternative(chapter: str, check_name: str, index: int, capsys) -> None:
    answer = load_mutants(chapter).CATALOGUE[check_name].correct[index]
    calls = [c for c in check_calls(chapter) if c.check == check_name]
    assert calls, f"no grade cell of {chapter} calls {check_name}"
    for call in calls:  # the visible check and every hidden one, with their seeds and sizes
        getattr(checks, check_name)(answer, **call.kwargs)
    captured = capsys.readouterr()
    assert captured.err == "", f"a correct answer wrote to stderr: {captured.err}"
    assert captured.out.count("✓") == len(calls)


def _reference_cases() -> list[tuple[str, str]]:
    return [pytest.param(chapter, name, id=f"{chapter}-{name}")
            for chapter in CHAPTERS for name in load_mutants(chapter).CATALOGUE]


@pytest.mark.parametrize(("chapter", "check_name"), _reference_cases())
def test_check_refuses_the_answer_key(chapter: str, check_name: str) -> None:
    entry = load_mutants(chapter).CATALOGUE[check_name]
    with pytest.raises(AssertionError, match="course_utils' own implementation"):
        getattr(checks, check_name)(entry.reference)
