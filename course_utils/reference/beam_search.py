"""Beam search with a length penalty: a better search than greedy decoding, for the same model.

Greedy decoding commits to the single most likely token at every step; a choice that looks
best now can force a poor continuation later. Beam search keeps the ``beam_size`` most
likely partial translations ("beams") at every step, extends each by every possible next
token, and keeps the best ``beam_size`` of the results. A beam that produces ``<eos>`` is
set aside as a finished hypothesis.

Log-probabilities only decrease as a sentence grows, so raw scores favour short outputs.
Finished hypotheses are therefore compared by their score divided by the length penalty of
Wu et al. (2016, "Google's Neural Machine Translation System", eq. 14)::

    lp(n) = ((5 + n) / 6) ** alpha      (n generated tokens, <eos> included)

``alpha = 0`` compares raw log-probabilities; larger ``alpha`` favours longer outputs. The
Transformer paper used a beam of 4 and ``alpha = 0.6`` (section 6.1).

Like :func:`~course_utils.reference.decoding.greedy_decode`, the decoder is re-run on the
whole prefix at every step (no cached keys and values): simple, and exact.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_utils.reference.masking import create_causal_mask, create_padding_mask

__all__ = ["beam_search", "length_penalty"]


def length_penalty(length: int, alpha: float) -> float:
    """``((5 + length) / 6) ** alpha`` (GNMT): divide a hypothesis' log-probability by it."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(model: nn.Module, src: Tensor, max_len: int, bos_idx: int, eos_idx: int,
                pad_idx: int = 0, beam_size: int = 4, alpha: float = 0.6) -> Tensor:
    """Translate a batch with beam search; same interface and output as ``greedy_decode``.

    Args:
        model: a model with ``encode``, ``decode`` and ``generator`` (the course's
            ``Transformer``), in ``eval()`` mode.
        src: source ids ``(B, Ls)``, padded with ``pad_idx``.
        max_len: the most tokens an output may have, ``<bos>`` and ``<eos>`` included.
        bos_idx, eos_idx, pad_idx: the special ids.
        beam_size: beams kept per sentence (1 gives greedy decoding).
        alpha: the length-penalty exponent (see :func:`length_penalty`).

    Returns:
        ``(B, L)`` ids, ``L <= max_len``: for each sentence the finished hypothesis with the best
        length-normalised score, ``<bos> ... <eos>``, then ``pad_idx``. A sentence with no
        finished hypothesis when ``max_len`` is reached gets its best unfinished beam.
    """
    batch, k = src.size(0), beam_size
    device = src.device
    with torch.no_grad():
        src_mask = create_padding_mask(src, pad_idx)  # (B, 1, 1, Ls)
        memory = model.encode(src, src_mask)  # (B, Ls, d_model)
        memory = memory.repeat_interleave(k, dim=0)  # (B*k, Ls, d_model): one copy per beam
        src_mask = src_mask.repeat_interleave(k, dim=0)
        ys = torch.full((batch * k, 1), bos_idx, dtype=torch.long, device=device)
        # Only beam 0 is live at the start: the k copies of <bos> must not give k equal beams.
        scores = torch.full((batch, k), float("-inf"), device=device)
        scores[:, 0] = 0.0
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
        done = [False] * batch
        for step in range(1, max_len):
            tgt_mask = create_causal_mask(ys.size(1), device=device)
            states = model.decode(ys, memory, src_mask, tgt_mask)  # (B*k, t, d_model)
            log_probs = torch.log_softmax(model.generator(states[:, -1]).float(), dim=-1)
            vocab = log_probs.size(-1)
            candidates = (scores.unsqueeze(-1) + log_probs.view(batch, k, vocab)).view(batch, k * vocab)
            top_scores, top_index = candidates.topk(2 * k, dim=-1)  # (B, 2k): enough to refill k
            rows, tokens, new_scores = [], [], []
            for b in range(batch):
                alive: list[tuple[float, int, int]] = []
                if not done[b]:
                    for rank, (score, index) in enumerate(zip(top_scores[b].tolist(), top_index[b].tolist())):
                        beam, token = divmod(index, vocab)
                        if score == float("-inf"):
                            break
                        if token == eos_idx:
                            # Only an <eos> among the k best candidates ends a hypothesis (so that
                            # beam_size=1 is exactly greedy decoding).
                            if rank < k:
                                hypothesis = ys[b * k + beam].tolist() + [eos_idx]
                                finished[b].append((score / length_penalty(step, alpha), hypothesis))
                        else:
                            alive.append((score, beam, token))
                        if len(alive) == k:
                            break
                    # Stop a sentence once it has k finished hypotheses (or no live beam left).
                    done[b] = len(finished[b]) >= k or not alive
                if done[b]:
                    alive = [(float("-inf"), 0, pad_idx)] * k
                alive += [(float("-inf"), 0, pad_idx)] * (k - len(alive))
                for score, beam, token in alive:
                    rows.append(b * k + beam)
                    tokens.append(token)
                    new_scores.append(score)
            if all(done):
                break
            ys = torch.cat([ys[rows], torch.tensor(tokens, device=device).unsqueeze(1)], dim=1)
            scores = torch.tensor(new_scores, device=device).view(batch, k)
        outputs = []
        for b in range(batch):
            if not finished[b]:  # max_len ran out: take the best live beam, without <eos>
                best = int(scores[b].argmax())
                length = ys.size(1) - 1
                finished[b].append((float(scores[b, best]) / length_penalty(length, alpha),
                                    ys[b * k + best].tolist()))
            outputs.append(max(finished[b], key=lambda item: item[0])[1])
    length = max(len(o) for o in outputs)
    result = torch.full((batch, length), pad_idx, dtype=torch.long, device=device)
    for b, output in enumerate(outputs):
        result[b, : len(output)] = torch.tensor(output, device=device)
    return result
