"""A decoder-only language model, GPT (Radford et al., 2018, section 3.1; 2019, section 2.3).

The pieces of chapter 10, in the order the chapter builds them:

- :class:`CharTokenizer`: characters <-> integer ids, the vocabulary sorted from the training text;
- :func:`get_batch`: random windows of ``block_size`` characters and the same windows shifted by one;
- :class:`GPTBlock`: the pre-norm decoder block of GPT-2, ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``,
  with causal self-attention (chapter 2's ``MultiHeadAttention``, chapter 7's causal mask) and a GELU MLP;
- :class:`GPT`: token and learned position embeddings, blocks, a final LayerNorm, and an output layer
  tied to the token embedding; GPT-2's initialisation;
- :func:`sample_next_token` and :func:`generate`: temperature, top-k and nucleus (top-p) sampling;
- :class:`LayerCache`, :func:`cached_attention` and :func:`generate_cached`: generation with a
  key/value cache, which gives the same tokens while computing only the newest position each step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils.course.guard import answer_key
from course_utils.reference.masking import create_causal_mask
from course_utils.reference.multi_head_attention import MultiHeadAttention, combine_heads, split_heads

__all__ = [
    "CharTokenizer",
    "GPT",
    "GPTBlock",
    "LayerCache",
    "cached_attention",
    "generate",
    "generate_cached",
    "get_batch",
    "sample_next_token",
    "stream_cached",
]


@answer_key("CharTokenizer")
class CharTokenizer:
    """Characters <-> ids. The vocabulary is the sorted set of the characters of ``text``.

    ``stoi`` maps a character to its id, ``itos`` is the list of characters by id.
    """

    def __init__(self, text: str) -> None:
        self.itos: list[str] = sorted(set(text))
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(self.itos)}
        self.vocab_size = len(self.itos)

    def encode(self, text: str) -> list[int]:
        """``text`` -> one id per character. Raises ValueError naming a character outside the vocabulary."""
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError as error:
            raise ValueError(f"character {error.args[0]!r} is not in the vocabulary "
                             f"({self.vocab_size} characters of the training text)") from None

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """ids (a list or a 1-D tensor) -> the text."""
        if isinstance(ids, Tensor):
            ids = ids.tolist()
        return "".join(self.itos[i] for i in ids)


@answer_key("get_batch")
def get_batch(data: Tensor, block_size: int, batch_size: int,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random training windows, as nanoGPT samples them.

    Args:
        data: ``(N,)`` token ids (int64), N > block_size.
        generator: the random generator for the start positions (torch's global one if None).

    Returns:
        ``(x, y)``, both ``(batch_size, block_size)`` int64 on ``data``'s device:
        ``x[b] = data[s_b : s_b + block_size]`` and ``y[b] = data[s_b + 1 : s_b + block_size + 1]``, the
        targets, for starts ``s_b`` drawn uniformly from ``0 .. N - block_size - 1`` (every start whose
        target window still fits).
    """
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator,
                           device=generator.device if generator is not None else "cpu")
    offsets = torch.arange(block_size + 1)
    windows = data[(starts[:, None] + offsets).to(data.device)]  # (B, block_size + 1)
    return windows[:, :-1], windows[:, 1:]


@answer_key("GPTBlock")
class GPTBlock(nn.Module):
    """GPT-2's pre-norm decoder block: ``x = x + attn(ln1(x))``, then ``x = x + mlp(ln2(x))``.

    ``attn`` is causal self-attention (chapter 2's ``MultiHeadAttention`` with chapter 7's causal
    mask); ``mlp`` is ``nn.Sequential(nn.Linear(d, 4d), nn.GELU(), nn.Linear(4d, d))``.
    ``forward(x (B, T, d_model)) -> (B, T, d_model)``.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        mask = create_causal_mask(x.size(1), x.device)  # (1, 1, T, T)
        h = self.ln1(x)
        # Pre-norm: the residual path x is never normalised, so gradients reach every layer
        # unchanged (Radford et al., 2019, section 2.3; Xiong et al., 2020).
        x = x + self.dropout(self.attn(h, h, h, mask))
        return x + self.dropout(self.mlp(self.ln2(x)))


@answer_key("GPT")
class GPT(nn.Module):
    """A decoder-only Transformer language model: ``forward(idx (B, T)) -> logits (B, T, vocab_size)``.

    Attributes: ``token_embedding`` (``nn.Embedding(vocab_size, d_model)``), ``position_embedding``
    (``nn.Embedding(block_size, d_model)``, learned), ``dropout``, ``blocks`` (``nn.ModuleList`` of
    :class:`GPTBlock`), ``ln_f`` (``nn.LayerNorm(d_model)``), ``lm_head`` (``nn.Linear(d_model,
    vocab_size, bias=False)`` whose weight IS ``token_embedding.weight``), ``block_size``, ``num_heads``.
    """

    def __init__(self, vocab_size: int, block_size: int, d_model: int = 384, num_layers: int = 6,
                 num_heads: int = 6, dropout: float = 0.0) -> None:
        super().__init__()
        self.block_size = block_size
        self.num_heads = num_heads
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(block_size, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(GPTBlock(d_model, num_heads, dropout) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        # Weight tying (Press & Wolf, 2017; GPT-2): one matrix reads tokens in and scores them out.
        self.lm_head.weight = self.token_embedding.weight
        init_gpt_weights(self, num_layers)

    def forward(self, idx: Tensor) -> Tensor:
        T = idx.size(1)
        if T > self.block_size:
            raise ValueError(f"the sequence has {T} tokens but the model was built for at most "
                             f"block_size={self.block_size}: crop it to the last {self.block_size}")
        positions = torch.arange(T, device=idx.device)
        x = self.dropout(self.token_embedding(idx) + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def init_gpt_weights(model: nn.Module, num_layers: int) -> None:
    """GPT-2's initialisation: every Linear and Embedding weight ~ N(0, 0.02), biases 0, LayerNorms
    (1, 0); the projections that write into the residual stream (``attn.W_o``, the MLP's last Linear)
    get std 0.02 / sqrt(2 * num_layers), since 2 * num_layers of them add up along the residual path
    (Radford et al., 2019, section 2.3)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
    residual_std = 0.02 / math.sqrt(2 * num_layers)
    for block in getattr(model, "blocks", []):
        nn.init.normal_(block.attn.W_o.weight, mean=0.0, std=residual_std)
        last = [m for m in block.mlp.modules() if isinstance(m, nn.Linear)][-1]
        nn.init.normal_(last.weight, mean=0.0, std=residual_std)


@answer_key("sample_next_token")
def sample_next_token(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per row from ``softmax(logits / temperature)``, restricted to the top-k and/or the nucleus.

    Args:
        logits: ``(B, V)`` unnormalised scores of the next token.
        temperature: > 0 divides the logits before the softmax; 0 means greedy (argmax).
        top_k: keep only the ``top_k`` largest logits (None: all).
        top_p: keep the smallest set of most likely tokens whose probabilities sum to at least
            ``top_p`` (Holtzman et al., 2020), after the temperature and the top-k cut (None: all).
        generator: the random generator for ``torch.multinomial``.

    Returns:
        ``(B, 1)`` int64 token ids.
    """
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens before it already reach top_p: the one that crosses stays.
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


@answer_key("generate")
@torch.no_grad()
def generate(model: nn.Module, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None) -> Tensor:
    """Extend ``idx`` ``(B, T)`` by ``max_new_tokens`` tokens, one at a time: ``(B, T + max_new_tokens)``.

    Each step runs the model on the last ``model.block_size`` tokens at most and samples the next
    token from the logits of the last position with :func:`sample_next_token`.
    """
    for _ in range(max_new_tokens):
        logits = model(idx[:, -model.block_size:])  # (B, T', V)
        next_token = sample_next_token(logits[:, -1, :], temperature, top_k, top_p, generator)
        idx = torch.cat([idx, next_token], dim=1)
    return idx


@dataclass
class LayerCache:
    """The keys and values one attention layer has computed so far, each ``(B, H, T_past, d_k)``."""

    k: Tensor | None = None
    v: Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.size(2)


@answer_key("cached_attention")
def cached_attention(attn: nn.Module, x: Tensor, cache: LayerCache, num_heads: int) -> Tensor:
    """Causal self-attention for new positions, reusing the keys and values of earlier ones.

    Args:
        attn: a chapter 2 ``MultiHeadAttention`` (its ``W_q, W_k, W_v, W_o`` are used).
        x: ``(B, T_new, d_model)``, the (normalised) inputs at positions ``T_past .. T_past + T_new - 1``.
        cache: holds ``k, v`` ``(B, H, T_past, d_k)`` (None when empty); updated in place to
            ``(B, H, T_past + T_new, d_k)``.
        num_heads: ``H``.

    Returns:
        ``(B, T_new, d_model)``: what ``attn(x_all, x_all, x_all, causal_mask)`` gives at the new positions.
    """
    q = split_heads(attn.W_q(x), num_heads)  # (B, H, T_new, d_k)
    k_new = split_heads(attn.W_k(x), num_heads)
    v_new = split_heads(attn.W_v(x), num_heads)
    cache.k = k_new if cache.k is None else torch.cat([cache.k, k_new], dim=2)
    cache.v = v_new if cache.v is None else torch.cat([cache.v, v_new], dim=2)
    t_new, t_all = x.size(1), cache.k.size(2)
    # New query i sits at position t_all - t_new + i and may see keys 0 .. that position.
    mask = torch.ones(t_new, t_all, dtype=torch.bool, device=x.device).tril(diagonal=t_all - t_new)
    scores = q @ cache.k.transpose(-2, -1) / math.sqrt(q.size(-1))
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return attn.W_o(combine_heads(weights @ cache.v))


def forward_cached(model: nn.Module, idx: Tensor, caches: list[LayerCache],
                   attend: Callable[[nn.Module, Tensor, LayerCache, int], Tensor] = cached_attention) -> Tensor:
    """Logits ``(B, T_new, V)`` for new tokens ``idx`` ``(B, T_new)`` at positions after the cached ones.

    Walks the pieces of a :class:`GPT` (its attribute names) in eval mode, calling ``attend`` for
    each block's attention; the caches grow by ``T_new``.
    """
    start = caches[0].length
    positions = torch.arange(start, start + idx.size(1), device=idx.device)
    x = model.token_embedding(idx) + model.position_embedding(positions)
    for block, cache in zip(model.blocks, caches):
        x = x + attend(block.attn, block.ln1(x), cache, model.num_heads)
        x = x + block.mlp(block.ln2(x))
    return model.lm_head(model.ln_f(x))


@torch.no_grad()
def stream_cached(model: nn.Module, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None,
                  generator: torch.Generator | None = None,
                  attend: Callable[[nn.Module, Tensor, LayerCache, int], Tensor] = cached_attention,
                  sample: Callable[..., Tensor] = sample_next_token) -> Iterator[Tensor]:
    """Yield the new tokens ``(B, 1)`` one at a time, with a key/value cache (see :func:`generate_cached`)."""
    caches = [LayerCache() for _ in model.blocks]
    logits = forward_cached(model, idx[:, -model.block_size:], caches, attend)
    for step in range(max_new_tokens):
        next_token = sample(logits[:, -1, :], temperature, top_k, top_p, generator)
        idx = torch.cat([idx, next_token], dim=1)
        yield next_token
        if step == max_new_tokens - 1:
            break
        if caches[0].length < model.block_size:
            logits = forward_cached(model, next_token, caches, attend)
        else:  # the window slides: no cached key is at its position any more
            caches = [LayerCache() for _ in model.blocks]
            logits = forward_cached(model, idx[:, -model.block_size:], caches, attend)


def generate_cached(model: nn.Module, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
                    top_k: int | None = None, top_p: float | None = None,
                    generator: torch.Generator | None = None,
                    attend: Callable[[nn.Module, Tensor, LayerCache, int], Tensor] = cached_attention,
                    sample: Callable[..., Tensor] = sample_next_token) -> Tensor:
    """:func:`generate` with a key/value cache: the same tokens (same ``sample``, same random draws).

    The prompt is run once (prefill); then each step feeds only the newest token. Positions are
    absolute, so once the context fills ``block_size`` the window slides and every position moves:
    from then on each step recomputes the cropped window, exactly as :func:`generate` does.
    """
    new = list(stream_cached(model, idx, max_new_tokens, temperature, top_k, top_p, generator, attend, sample))
    return torch.cat([idx, *new], dim=1)
