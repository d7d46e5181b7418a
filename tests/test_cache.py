"""course_utils.cache: the disk cache, and the decoding check's trained copier kept in it."""

from __future__ import annotations

import pytest
import torch

from course_utils import cache
from course_utils.checks import decoding


def test_entries_are_written_whole_and_a_read_only_folder_is_no_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path / "here"))
    assert cache.cache_dir() == tmp_path / "here"
    assert cache.cache_dir(tmp_path / "there") == tmp_path / "there"
    entry = cache.cache_dir() / "a" / "entry.json"
    cache.write_atomically(entry, b"{}")
    assert entry.read_bytes() == b"{}" and [p.name for p in entry.parent.iterdir()] == ["entry.json"]
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    cache.write_atomically(blocked / "entry.json", b"{}")  # mkdir fails: ignored, nothing written
    monkeypatch.delenv(cache.CACHE_DIR_ENV)
    assert cache.cache_dir() == cache.CACHE_DIR


@pytest.fixture
def fresh_copier(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_DIR_ENV, str(tmp_path))
    decoding._copy_model_state.cache_clear()
    yield tmp_path / "checks"
    decoding._copy_model_state.cache_clear()


def test_the_copier_is_trained_once_then_read_and_retrained_when_damaged(fresh_copier, monkeypatch) -> None:
    trained = decoding._copy_model_state()
    [entry] = fresh_copier.iterdir()
    assert f"torch{torch.__version__}" in entry.name
    # A new kernel (the in-process cache cleared) reads the weights instead of training.
    decoding._copy_model_state.cache_clear()
    train = decoding._train_copy_model
    monkeypatch.setattr(decoding, "_train_copy_model", lambda: pytest.fail("trained again"))
    read = decoding._copy_model_state()
    assert read.keys() == trained.keys() and all(torch.equal(read[k], trained[k]) for k in read)
    # A damaged entry (a cut-off write, another torch's format) is trained again and replaced.
    entry.write_bytes(entry.read_bytes()[:1000])
    decoding._copy_model_state.cache_clear()
    monkeypatch.setattr(decoding, "_train_copy_model", train)
    again = decoding._copy_model_state()
    assert all(torch.equal(again[k], trained[k]) for k in again)
    assert decoding._is_copy_model_state(torch.load(entry, weights_only=True))
    # The right file with the wrong content (a tensor changed shape) is not used either.
    wrong = dict(trained, **{"generator.bias": torch.zeros(3, dtype=torch.float64)})
    assert not decoding._is_copy_model_state(wrong)
