"""The toy copy / reverse / sort tasks (course_utils.data.toy) and the training helpers
(course_utils.training.loop) that chapter 07 uses to prove the assembled Transformer works."""

from __future__ import annotations

import math

import pytest
import torch

from course_utils import data
from course_utils.data.toy import (
    DIGIT_OFFSET,
    TOY_BOS_IDX,
    TOY_EOS_IDX,
    TOY_PAD_IDX,
    TOY_TASKS,
    TOY_TOKENS,
    TOY_VOCAB_SIZE,
    make_toy_batch,
    toy_answer,
    toy_batches,
    toy_to_text,
)
from course_utils.training.loop import exact_match, train_seq2seq, warmup_cosine


def test_vocabulary_is_fixed() -> None:
    assert TOY_TOKENS[:3] == ("<pad>", "<bos>", "<eos>")
    assert (TOY_PAD_IDX, TOY_BOS_IDX, TOY_EOS_IDX) == (0, 1, 2)
    assert TOY_TOKENS[DIGIT_OFFSET:] == tuple("0123456789")
    assert TOY_VOCAB_SIZE == 13
    assert set(TOY_TASKS) == {"copy", "reverse", "sort"}
    assert data.make_toy_batch is make_toy_batch


def test_answers() -> None:
    digits = [3, 1, 4, 1, 5]
    assert toy_answer("copy", digits) == digits
    assert toy_answer("reverse", digits) == [5, 1, 4, 1, 3]
    assert toy_answer("sort", digits) == [1, 1, 3, 4, 5]
    with pytest.raises(ValueError, match="unknown toy task"):
        toy_answer("shuffle", digits)  # type: ignore[arg-type]


@pytest.mark.parametrize("task", TOY_TASKS)
def test_batch_layout(task: str) -> None:
    src, tgt = make_toy_batch(task, 200, generator=torch.Generator().manual_seed(0))
    assert src.dtype == tgt.dtype == torch.long
    assert src.shape[0] == tgt.shape[0] == 200 and tgt.shape[1] == src.shape[1] + 2
    lengths = (src != TOY_PAD_IDX).sum(1)
    assert lengths.min() >= 8 and lengths.max() <= 12 and src.shape[1] == lengths.max()
    assert set(lengths.tolist()) == set(range(8, 13)), "every length from 8 to 12 occurs"
    for row in range(200):
        n = int(lengths[row])
        digits = (src[row, :n] - DIGIT_OFFSET).tolist()
        assert all(0 <= d <= 9 for d in digits)
        assert (src[row, n:] == TOY_PAD_IDX).all()
        expected = [TOY_BOS_IDX, *(d + DIGIT_OFFSET for d in toy_answer(task, digits)), TOY_EOS_IDX]
        assert tgt[row, : n + 2].tolist() == expected
        assert (tgt[row, n + 2:] == TOY_PAD_IDX).all()


def test_lengths_are_configurable_and_checked() -> None:
    src, tgt = make_toy_batch("copy", 50, min_length=3, max_length=3)
    assert src.shape == (50, 3) and tgt.shape == (50, 5)
    with pytest.raises(ValueError):
        make_toy_batch("copy", 2, min_length=5, max_length=4)
    with pytest.raises(ValueError, match="unknown toy task"):
        make_toy_batch("rotate", 2)  # type: ignore[arg-type]


def test_stream_is_reproducible_and_seeds_differ() -> None:
    a = [b for _, b in zip(range(3), toy_batches("reverse", 8, seed=1))]
    b = [b for _, b in zip(range(3), toy_batches("reverse", 8, seed=1))]
    c = next(toy_batches("reverse", 8, seed=2))
    for (s1, t1), (s2, t2) in zip(a, b):
        assert torch.equal(s1, s2) and torch.equal(t1, t2)
    assert not torch.equal(a[0][0], a[1][0]), "successive batches differ"
    assert a[0][0].shape != c[0].shape or not torch.equal(a[0][0], c[0])


def test_to_text() -> None:
    assert toy_to_text([TOY_BOS_IDX, 4, 5, 3, TOY_EOS_IDX, 9, TOY_PAD_IDX]) == "1 2 0"
    assert toy_to_text(torch.tensor([12, 3, TOY_PAD_IDX])) == "9 0"


def test_warmup_cosine() -> None:
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert all(0 <= warmup_cosine(s, 50, 5) <= 1 for s in range(60))


def test_exact_match() -> None:
    eos = TOY_EOS_IDX
    targets = torch.tensor([[1, 4, 5, eos, 0], [1, 6, eos, 0, 0], [1, 7, 8, eos, 0]])
    predictions = torch.tensor([[1, 4, 5, eos, 9, 9], [1, 6, 6, eos, 0, 0], [1, 7, 8, 8, 8, 8]])
    assert exact_match(predictions, targets, eos).tolist() == [True, False, False]


def test_train_seq2seq_learns_a_tiny_copy_task() -> None:
    from course_utils.reference import Transformer

    torch.manual_seed(0)
    model = Transformer(TOY_VOCAB_SIZE, TOY_VOCAB_SIZE, d_model=32, num_layers=1, num_heads=2, d_ff=64,
                        dropout=0.0, max_seq_length=16)
    batches = toy_batches("copy", 32, seed=0, min_length=3, max_length=4)
    log = train_seq2seq(model, batches, steps=60, lr=3e-3, warmup_steps=10)
    assert log.steps == 60 and len(log.learning_rates) == 60 and not log.stopped_early
    assert all(math.isfinite(x) for x in log.losses)
    assert sum(log.losses[-10:]) / 10 < 0.5 * sum(log.losses[:10]) / 10
    assert model.training


def test_train_seq2seq_time_budget() -> None:
    from course_utils.reference import Transformer

    model = Transformer(TOY_VOCAB_SIZE, TOY_VOCAB_SIZE, d_model=8, num_layers=1, num_heads=2, d_ff=8)
    log = train_seq2seq(model, toy_batches("sort", 4), steps=10_000, max_seconds=0.0)
    assert log.steps == 1 and log.stopped_early
