"""Greedy decoding: generate a target one token at a time, always taking the most likely one.

The encoder runs once; the decoder runs once per output position, each time on everything
generated so far (the causal mask makes position i ignore later positions anyway, so re-running
on the whole prefix gives the same states as an incremental decoder would, only slower).

``greedy_decode(..., use_cache=True)`` is that incremental decoder, an option for speed: a
:class:`DecoderCache` keeps every decoder layer's keys and values of the positions generated so
far (and of the encoder's memory, which never changes), so each step runs the decoder on the
newest position only. Its outputs are the same (``tests/test_kv_cache.py``); the readable
default above is what the chapter teaches. ``benchmarks/decoding.py`` measures the gain.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from course_utils.course.guard import answer_key
from course_utils.reference.attention import scaled_dot_product_attention
from course_utils.reference.masking import create_causal_mask, create_padding_mask
from course_utils.reference.multi_head_attention import MultiHeadAttention, combine_heads, split_heads


@answer_key("greedy_decode")
def greedy_decode(model: nn.Module, src: Tensor, max_len: int, bos_idx: int, eos_idx: int,
                  pad_idx: int = 0, use_cache: bool = False) -> Tensor:
    """Decode a batch greedily with a model that has ``encode``, ``decode`` and ``generator``.

    Args:
        model: a :class:`~course_utils.reference.Transformer`-like model. Put it in ``eval()``
            mode first, or dropout makes the output random.
        src: source token ids ``(B, Ls)``, padded with ``pad_idx``.
        max_len: the most tokens an output may have, ``<bos>`` and ``<eos>`` included.
        bos_idx: the token that starts every output.
        eos_idx: the token that ends an output; a sequence that produced it is finished.
        pad_idx: fills the source and, in the output, every position after ``<eos>``.
        use_cache: decode incrementally with a :class:`DecoderCache` (same output, faster on long
            outputs); needs a model laid out like the course's ``Transformer``.

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
        cache = DecoderCache(model, memory) if use_cache else None
        for _ in range(max_len - 1):
            if cache is None:
                tgt_mask = create_causal_mask(ys.size(1), device=src.device)  # (1, 1, L, L)
                states = model.decode(ys, memory, src_mask, tgt_mask)  # (B, L, d_model)
            else:
                states = cache.decode_next(ys[:, -1:], src_mask)  # (B, 1, d_model): the newest position
            next_token = model.generator(states[:, -1]).argmax(dim=-1)  # (B,)
            # A finished sequence only grows padding.
            next_token = next_token.masked_fill(finished, pad_idx)
            ys = torch.cat([ys, next_token.unsqueeze(1)], dim=1)
            finished |= next_token == eos_idx
            if bool(finished.all()):
                break
    return ys


class DecoderCache:
    """Decode one position at a time, keeping each decoder layer's past keys and values.

    Without a cache, step ``t`` of decoding runs the whole decoder on ``t`` positions, so
    generating ``L`` tokens costs ``O(L^2)`` position-layers. But a position's states never change
    once computed (the causal mask hides later positions from it), so the keys and values that
    self-attention projected from them can be kept: each step then runs the decoder on the new
    position only, whose query attends to the kept keys and values plus its own. The memory's
    keys and values for cross-attention are projected once, at the start.

    The step below is ``DecoderLayer.forward`` (post-norm: ``LayerNorm(x + Dropout(Sublayer(x)))``)
    written for one position, with the layer's own submodules (``self_attn.W_q``, ``norm1``, ...),
    so it needs a model laid out like the course's ``Transformer``: ``model.decoder`` with
    ``embedding``, ``positional_encoding.pe``, ``dropout``, ``d_model`` and ``layers`` of
    ``DecoderLayer``. Use it in ``eval()`` mode, under ``torch.no_grad()``.

    Args:
        model: the Transformer.
        memory: the encoder's output ``(B, Ls, d_model)``.
    """

    def __init__(self, model: nn.Module, memory: Tensor) -> None:
        decoder = getattr(model, "decoder", None)
        needed = ("embedding", "positional_encoding", "dropout", "d_model", "layers")
        if decoder is None or not all(hasattr(decoder, name) for name in needed):
            raise TypeError("use_cache needs a model laid out like course_utils.reference.Transformer "
                            "(model.decoder with embedding, positional_encoding, dropout, d_model, layers)")
        self.decoder = decoder
        self.length = 0  # positions decoded so far
        # Per layer: self-attention keys and values of the positions so far, (B, H, length, d_k).
        self.keys: list[Tensor | None] = [None] * len(decoder.layers)
        self.values: list[Tensor | None] = [None] * len(decoder.layers)
        # Per layer: cross-attention keys and values of the memory, (B, H, Ls, d_k), fixed.
        self.memory_keys = [split_heads(layer.cross_attn.W_k(memory), layer.cross_attn.num_heads)
                            for layer in decoder.layers]
        self.memory_values = [split_heads(layer.cross_attn.W_v(memory), layer.cross_attn.num_heads)
                              for layer in decoder.layers]

    def decode_next(self, token: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """The decoder's states for the next position.

        Args:
            token: ``(B, 1)``, the token at position ``self.length`` (``<bos>`` first).
            src_mask: ``(B, 1, 1, Ls)``, the source padding mask.

        Returns:
            ``(B, 1, d_model)``: what ``model.decode`` would give for that position.
        """
        decoder, position = self.decoder, self.length
        # The Decoder's input for one position: what PositionalEncoding.forward adds at `position`.
        embedded = decoder.embedding(token) * math.sqrt(decoder.d_model)  # (B, 1, d_model)
        pe = decoder.positional_encoding.pe[:, position: position + 1]  # (1, 1, d_model)
        x = decoder.dropout(embedded + pe.to(embedded.dtype))
        for i, layer in enumerate(decoder.layers):
            # Self-attention: the new query against all keys so far, its own included. No mask:
            # every earlier position is visible to the newest one.
            attn = layer.self_attn
            new_keys = split_heads(attn.W_k(x), attn.num_heads)  # (B, H, 1, d_k)
            new_values = split_heads(attn.W_v(x), attn.num_heads)
            self.keys[i] = new_keys if self.keys[i] is None else torch.cat([self.keys[i], new_keys], dim=2)
            self.values[i] = new_values if self.values[i] is None else torch.cat([self.values[i], new_values], dim=2)
            x = layer.norm1(x + layer.dropout(self._attend(attn, x, self.keys[i], self.values[i], None)))
            # Cross-attention: the memory's keys and values, projected once.
            x = layer.norm2(x + layer.dropout(
                self._attend(layer.cross_attn, x, self.memory_keys[i], self.memory_values[i], src_mask)))
            x = layer.norm3(x + layer.dropout(layer.feed_forward(x)))
        self.length += 1
        return x

    @staticmethod
    def _attend(attn: MultiHeadAttention, x: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None) -> Tensor:
        """``attn``'s forward with keys and values already projected and split: ``(B, 1, d_model)``."""
        query = split_heads(attn.W_q(x), attn.num_heads)  # (B, H, 1, d_k)
        context, _ = scaled_dot_product_attention(query, keys, values, mask)  # (B, H, 1, d_k)
        return attn.W_o(combine_heads(context))
