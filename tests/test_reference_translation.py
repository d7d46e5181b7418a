"""The answer key of chapter 09 (collate_batch, batch_by_tokens, train_epoch, evaluate_loss),
beam search, and the BLEU helpers, against PyTorch built-ins, hand-written loops and
properties."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from course_utils.checks.decoding import _copy_model, _copy_sources
from course_utils.training.evaluation import bleu_on_tokens, decode_length, sacrebleu_on_text, translate_ids
from course_utils.reference import Transformer, greedy_decode
from course_utils.reference.beam_search import beam_search, length_penalty
from course_utils.reference.translation import (
    batch_by_tokens,
    batch_cost,
    collate_batch,
    evaluate_loss,
    padding_fraction,
    train_epoch,
)


def test_collate_batch_equals_pad_sequence() -> None:
    rng = random.Random(0)
    pairs = [([rng.randrange(4, 50) for _ in range(rng.randint(1, 9))],
              [rng.randrange(4, 50) for _ in range(rng.randint(2, 7))]) for _ in range(6)]
    src, tgt = collate_batch(pairs, pad_idx=3)
    assert torch.equal(src, pad_sequence([torch.tensor(s) for s, _ in pairs], batch_first=True, padding_value=3))
    assert torch.equal(tgt, pad_sequence([torch.tensor(t) for _, t in pairs], batch_first=True, padding_value=3))
    assert src.dtype == torch.long


@pytest.mark.parametrize("max_tokens", [10, 64, 500])
def test_batch_by_tokens_properties(max_tokens: int) -> None:
    rng = random.Random(max_tokens)
    lengths = [rng.randint(1, 40) for _ in range(400)]
    batches = batch_by_tokens(lengths, max_tokens)
    assert sorted(i for b in batches for i in b) == list(range(400))
    for b in batches:
        assert len(b) == 1 or batch_cost(b, lengths) <= max_tokens
    # Sorted filling: no two consecutive batches could be merged within the budget.
    for a, b in zip(batches, batches[1:]):
        assert batch_cost(a + b, lengths) > max_tokens
    random_batches = [list(range(k, min(k + len(batches[0]), 400))) for k in range(0, 400, len(batches[0]))]
    assert padding_fraction(batches, lengths) <= padding_fraction(random_batches, lengths)


def _tiny_setup(seed: int = 0):
    torch.manual_seed(seed)
    model = Transformer(12, 12, d_model=16, num_layers=1, num_heads=2, d_ff=32, dropout=0.0).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 4))
    return model, optimizer, scheduler


def _batches():
    rng = random.Random(1)
    out = []
    for longest in (3, 5, 2, 6):
        rows = [[rng.randint(4, 11) for _ in range(rng.randint(1, longest))] for _ in range(5)]
        out.append(collate_batch([(r, [2, *r[::-1], 3]) for r in rows], 0))
    return out


def test_train_epoch_equals_a_hand_written_loop() -> None:
    criterion = nn.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1)
    model, optimizer, scheduler = _tiny_setup()
    twin, twin_opt, twin_sched = _tiny_setup()
    batches = _batches()
    got = train_epoch(model, batches, optimizer, scheduler, criterion, pad_idx=0, clip_norm=0.5)
    total, tokens = 0.0, 0
    for src, tgt in batches:
        logits = twin(src, tgt[:, :-1])
        loss = criterion(logits.flatten(0, 1), tgt[:, 1:].flatten())
        twin_opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(twin.parameters(), 0.5)
        twin_opt.step()
        twin_sched.step()
        n = int((tgt[:, 1:] != 0).sum())
        total, tokens = total + loss.item() * n, tokens + n
    assert got == pytest.approx(total / tokens, rel=1e-12)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q)
    assert scheduler.last_epoch == len(batches)


def test_evaluate_loss_is_the_token_mean_cross_entropy() -> None:
    model, _, _ = _tiny_setup()
    batches = _batches()
    got = evaluate_loss(model, batches, pad_idx=0)
    nll, n = 0.0, 0
    with torch.no_grad():
        for src, tgt in batches:
            logits = model(src, tgt[:, :-1])
            nll += nn.functional.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=0,
                                               reduction="sum").item()
            n += int((tgt[:, 1:] != 0).sum())
    assert got == pytest.approx(nll / n) and not model.training


def test_beam_of_one_is_greedy_decoding() -> None:
    model = _copy_model(0, 2, 3, torch.device("cpu"))
    src = _copy_sources(7, 8, 8, 0, 2, 3, torch.device("cpu"))
    assert torch.equal(beam_search(model, src, 9, 2, 3, 0, beam_size=1, alpha=0.6), greedy_decode(model, src, 9, 2, 3, 0))


def test_beam_search_output_format_and_scores() -> None:
    model = _copy_model(0, 2, 3, torch.device("cpu"))
    src = _copy_sources(3, 6, 8, 0, 2, 3, torch.device("cpu"))
    out = beam_search(model, src, 10, 2, 3, 0, beam_size=4, alpha=0.6)
    assert out.dtype == torch.long and out.size(0) == 6 and out.size(1) <= 10
    assert bool((out[:, 0] == 2).all())
    for row in out.tolist():
        if 3 in row:
            assert all(t == 0 for t in row[row.index(3) + 1:])  # padding after <eos>
    # On average over the rows, a wider search finds more probable outputs than greedy decoding.
    greedy = greedy_decode(model, src, 10, 2, 3, 0)
    raw = beam_search(model, src, 10, 2, 3, 0, beam_size=4, alpha=0.0)
    assert _log_prob(model, src, raw).sum() >= _log_prob(model, src, greedy).sum() - 1e-9
    assert length_penalty(1, 0.6) == pytest.approx(1.0) and length_penalty(11, 0.0) == 1.0


def _log_prob(model, src, out):
    """Sum of log-probabilities of each row's tokens up to <eos> (3), under the model."""
    with torch.no_grad():
        logp = torch.log_softmax(model(src, out[:, :-1]), dim=-1).gather(-1, out[:, 1:, None]).squeeze(-1)
    keep = torch.ones_like(out[:, 1:], dtype=torch.bool)
    for i, row in enumerate(out[:, 1:].tolist()):
        if 3 in row:
            keep[i, row.index(3) + 1:] = False
    return (logp * keep).sum(-1)


def test_translate_ids_keeps_the_input_order() -> None:
    model = _copy_model(0, 2, 3, torch.device("cpu"))
    sources = [[2, *range(4, 4 + n), 3] for n in (5, 1, 3, 7, 2)]
    outputs = translate_ids(model, sources, max_tokens=12)
    for source, output in zip(sources, outputs):
        alone = greedy_decode(model, torch.tensor([source]), decode_length(len(source)), 2, 3, 0)[0].tolist()
        assert output == [t for t in alone[1:] if t not in (0, 3)][: len(output)]
        assert 3 not in output and 2 not in output


def test_bleu_helpers() -> None:
    refs = [["A", "dog", "runs", "in", "the", "park", "."], ["Two", "men", "play", "chess", "outside", "."]]
    assert bleu_on_tokens(refs, refs).score == pytest.approx(100.0)
    assert bleu_on_tokens([[t.lower() for t in r] for r in refs], refs).score == pytest.approx(100.0)
    assert bleu_on_tokens([["a"], ["two"]], refs).score < 5
    score, signature = sacrebleu_on_text(["A dog runs in the park.", "Two men play chess outside."],
                                         ["A dog runs in the park.", "Two men play chess outside."])
    assert score.score == pytest.approx(100.0)
    assert signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    lower, _ = sacrebleu_on_text(["a dog runs in the park.", "two men play chess outside."],
                                 ["A dog runs in the park.", "Two men play chess outside."])
    assert lower.score < 100.0  # standard sacreBLEU is case-sensitive
