"""The checks run on every device PyTorch sees, say which in their success line, and reject code
that only works on the CPU.

Code that only works on the CPU (a tensor created without ``device=``) fails only where the inputs
live elsewhere. Without a GPU, ``checks.harness.fake_accelerator()`` makes such tensors land on
PyTorch's ``meta`` device while the inputs stay on the CPU, which breaks the same code in the same
way; with a GPU, the plain checks run on CUDA too and must reject it by themselves.
"""

from __future__ import annotations

import re

import pytest
import torch

from course_utils import checks
from course_utils.checks import harness
from tests.support import CHAPTERS, check_calls, load_mutants

CUDA = torch.cuda.is_available()


def _device_cases() -> list:
    cases = []
    for chapter in CHAPTERS:
        for check_name, mutants in getattr(load_mutants(chapter), "DEVICE_MUTANTS", {}).items():
            cases += [pytest.param(check_name, m, id=f"{chapter}-{check_name}-{m.name}") for m in mutants]
    return cases


def _visible_kwargs(chapter: str, check_name: str) -> dict:
    return next(c.kwargs for c in check_calls(chapter) if c.check == check_name and not c.hidden)


def test_there_are_device_mutants() -> None:
    assert len(_device_cases()) >= 4


def test_the_checks_take_cuda_when_torch_sees_it(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert harness.devices() == [torch.device("cpu"), torch.device("cuda")]
    assert harness.device_names() == "cpu/cuda"
    assert [d for d, _, _ in harness.devices_and_dtypes()] == [torch.device("cpu")] * 2 + [torch.device("cuda")] * 2


@pytest.mark.parametrize(("check_name", "mutant"), _device_cases())
def test_cpu_only_code_is_rejected_on_the_fake_accelerator(check_name, mutant, capsys) -> None:
    with harness.fake_accelerator(), pytest.raises(AssertionError) as caught:
        getattr(checks, check_name)(mutant.answer)
    assert re.search(mutant.expect, str(caught.value)), str(caught.value)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("check_name", "mutant"), _device_cases())
def test_cpu_only_code_passes_on_the_cpu_alone(check_name, mutant, capsys) -> None:
    """Why the fake (or a GPU) is needed: on the CPU alone this code is right."""
    if CUDA:
        pytest.skip("a GPU is present: the plain check runs on CUDA and rejects it (next test)")
    getattr(checks, check_name)(mutant.answer)
    assert "on cpu" in capsys.readouterr().out


@pytest.mark.skipif(not CUDA, reason="no GPU here: the fake accelerator tests stand in for it")
@pytest.mark.parametrize(("check_name", "mutant"), _device_cases())
def test_cpu_only_code_is_rejected_on_a_real_gpu(check_name, mutant) -> None:
    with pytest.raises(AssertionError):
        getattr(checks, check_name)(mutant.answer)


def _correct_cases() -> list:
    cases = []
    for chapter in CHAPTERS:
        module = load_mutants(chapter)
        for check_name in getattr(module, "DEVICE_MUTANTS", {}):
            for i, answer in enumerate(module.CATALOGUE[check_name].correct):
                cases.append(pytest.param(chapter, check_name, answer, id=f"{chapter}-{check_name}-correct{i}"))
    return cases


@pytest.mark.parametrize(("chapter", "check_name", "answer"), _correct_cases())
def test_correct_answers_pass_on_the_fake_accelerator(chapter, check_name, answer, capsys) -> None:
    with harness.fake_accelerator():
        getattr(checks, check_name)(answer, **_visible_kwargs(chapter, check_name))
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "strict devices" in captured.out, "the success line must say which devices ran"
