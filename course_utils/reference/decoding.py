"""Greedy decoding: generate a target one token at a time, always taking the most likely one.

The encoder runs once; the decoder runs once per output position, each time on everything
generated so far (the causal mask makes position i ignore later positions anyway, so re-running
on the whole prefix gives the same states as an incremental decoder would, only slower).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_utils.guard import answer_key
from course_utils.reference.masking import create_causal_mask, create_padding_mask


@answer_key("greedy_decode")
def greedy_decode(model: nn.Module, src: Tensor, max_len: int, bos_idx: int, eos_idx: int,
                  pad_idx: int = 0) -> Tensor:
    """Decode a batch greedily with a model that has ``encode``, ``decode`` and ``generator``.

    Args:
        model: a :class:`~course_utils.reference.Transformer`-like model. Put it in ``eval()``
            mode first, or dropout makes the output random.
        src: source token ids ``(B, Ls)``, padded with ``pad_idx``.
        max_len: the most tokens an output may have, ``<bos>`` and ``<eos>`` included.
        bos_idx: the token that starts every output.
        eos_idx: the token that ends an output; a sequence that produced it is finished.
        pad_idx: fills the source and, in the output, every position after ``<eos>``.

    Returns:
        token ids ``(B, L)`` with ``L <= max_len``, on ``src``'s device: ``<bos>``, the generated
        tokens, ``<eos>`` (unless ``max_len`` ran out first), then ``pad_idx``. ``L`` is shorter
        than ``max_len`` when every sequence has finished earlier.
    """
    batch = src.size(0)
    with torch.no_grad():
        src_mask = create_padding_mask(src, pad_idx)  # (B, 1, 1, Ls)
        memory = model.encode(src, src_mask)  # (B, Ls, d_model), computed once
        ys = torch.full((batch, 1), bos_idx, dtype=torch.long, device=src.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
        for _ in range(max_len - 1):
            tgt_mask = create_causal_mask(ys.size(1), device=src.device)  # (1, 1, L, L)
            states = model.decode(ys, memory, src_mask, tgt_mask)  # (B, L, d_model)
            next_token = model.generator(states[:, -1]).argmax(dim=-1)  # (B,)
            # A finished sequence only grows padding.
            next_token = next_token.masked_fill(finished, pad_idx)
            ys = torch.cat([ys, next_token.unsqueeze(1)], dim=1)
            finished |= next_token == eos_idx
            if bool(finished.all()):
                break
    return ys
