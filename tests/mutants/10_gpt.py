"""Known-wrong and correct answers for chapter 10_gpt's checks.

Each mutant is a realistic student mistake; its ``expect`` pins the diagnosis the check gives (a regular
expression searched in the AssertionError's message). The correct answers are written differently from
the reference (other operations, other random draws) and must pass every visible and hidden call; the
samplers among them draw with other operations than the reference, so they also exercise the
statistical tests' tolerance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import course_utils.reference
from course_utils import reference
from course_utils.reference import MultiHeadAttention, create_causal_mask
from course_utils.reference.gpt import init_gpt_weights
from course_utils.reference.multi_head_attention import combine_heads, split_heads
from tests.support import Bug, Catalogue, Mutant

# --------------------------------------------------------------------------------------
# CharTokenizer
# --------------------------------------------------------------------------------------


class TokenizerCorrect:
    def __init__(self, text: str) -> None:
        self.itos = sorted({*text})
        self.stoi = dict(zip(self.itos, range(len(self.itos))))
        self.vocab_size = len(self.stoi)

    def encode(self, text: str) -> list[int]:
        unknown = set(text) - self.stoi.keys()
        if unknown:
            raise ValueError(f"unknown characters: {sorted(unknown)!r}")
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        return "".join(map(self.itos.__getitem__, ids))


class TokenizerCorrectLoop:
    def __init__(self, text: str) -> None:
        self.itos = []
        for ch in sorted(text):
            if not self.itos or self.itos[-1] != ch:
                self.itos.append(ch)
        self.stoi = {}
        for i, ch in enumerate(self.itos):
            self.stoi[ch] = i
        self.vocab_size = len(self.itos)

    def encode(self, text: str) -> list[int]:
        ids = []
        for ch in text:
            if ch not in self.stoi:
                raise ValueError(f"{ch!r} is not in the vocabulary")
            ids.append(self.stoi[ch])
        return ids

    def decode(self, ids) -> str:
        out = ""
        for i in ids:
            out += self.itos[i]
        return out


class TokenizerStub:
    def __init__(self, text: str) -> None:
        # YOUR CODE HERE
        raise NotImplementedError()


class TokenizerUnsorted(TokenizerCorrect):
    def __init__(self, text: str) -> None:
        self.itos = list(dict.fromkeys(text))
        self.stoi = {ch: i for i, ch in enumerate(self.itos)}
        self.vocab_size = len(self.itos)


class TokenizerFromOne(TokenizerCorrect):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.stoi = {ch: i + 1 for i, ch in enumerate(self.itos)}


class TokenizerSpaces(TokenizerCorrect):
    def decode(self, ids) -> str:
        return " ".join(self.itos[i] for i in ids)


class TokenizerSkipsUnknown(TokenizerCorrect):
    def encode(self, text: str) -> list[int]:
        return [self.stoi[c] for c in text if c in self.stoi]


class TokenizerBareKeyError(TokenizerCorrect):
    def encode(self, text: str) -> list[int]:
        return [self.stoi[c] for c in text]


class TokenizerUnknownIsZero(TokenizerCorrect):
    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(c, 0) for c in text]


class TokenizerWrapsTheReference(reference.CharTokenizer):
    pass


# --------------------------------------------------------------------------------------
# get_batch
# --------------------------------------------------------------------------------------


def batch_unfold(data: Tensor, block_size: int, batch_size: int, generator=None):
    windows = data.unfold(0, block_size + 1, 1)  # (N - block_size, block_size + 1)
    rows = torch.randint(0, windows.size(0), (batch_size,), generator=generator)
    picked = windows[rows.to(data.device)]
    return picked[:, :block_size], picked[:, 1:]


def batch_loop(data: Tensor, block_size: int, batch_size: int, generator=None):
    starts = torch.randperm(len(data) - block_size, generator=generator)  # no repeats while possible
    starts = starts.repeat(batch_size // len(starts) + 1)[:batch_size]
    x = torch.stack([data[s:s + block_size] for s in starts.tolist()])
    y = torch.stack([data[s + 1:s + block_size + 1] for s in starts.tolist()])
    return x, y


def batch_stub(data, block_size, batch_size, generator=None):
    # YOUR CODE HERE
    raise NotImplementedError()


def _starts(data, block_size, batch_size, generator, high=None):
    high = len(data) - block_size if high is None else high
    return torch.randint(high, (batch_size,), generator=generator).tolist()


def batch_not_shifted(data, block_size, batch_size, generator=None):
    s = _starts(data, block_size, batch_size, generator)
    x = torch.stack([data[i:i + block_size] for i in s])
    return x, x.clone()


def batch_shifted_backwards(data, block_size, batch_size, generator=None):
    s = [i + 1 for i in _starts(data, block_size, batch_size, generator)]
    return (torch.stack([data[i:i + block_size] for i in s]), torch.stack([data[i - 1:i + block_size - 1] for i in s]))


def batch_misses_last_start(data, block_size, batch_size, generator=None):
    s = _starts(data, block_size, batch_size, generator, high=len(data) - block_size - 1)
    return torch.stack([data[i:i + block_size] for i in s]), torch.stack([data[i + 1:i + block_size + 1] for i in s])


def batch_one_past_the_end(data, block_size, batch_size, generator=None):
    s = _starts(data, block_size, batch_size, generator, high=len(data) - block_size + 1)
    return torch.stack([data[i:i + block_size] for i in s]), torch.stack([data[i + 1:i + block_size + 1] for i in s])


def batch_ignores_generator(data, block_size, batch_size, generator=None):
    return batch_unfold(data, block_size, batch_size, None)


def batch_float(data, block_size, batch_size, generator=None):
    x, y = batch_unfold(data, block_size, batch_size, generator)
    return x.float(), y.float()


def batch_wraps_the_reference(data, block_size, batch_size, generator=None):
    return course_utils.reference.get_batch(data, block_size, batch_size, generator)


# --------------------------------------------------------------------------------------
# GPTBlock
# --------------------------------------------------------------------------------------


class BlockCorrectTanh(nn.Module):
    """GPT-2's own GELU (the tanh approximation), the MLP as named layers."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * d_model, d_model), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.ln1(x)
        x = x + self.drop(self.attn(h, h, h, create_causal_mask(x.size(1), x.device)))
        return x + self.mlp(self.ln2(x))


class _OwnAttention(nn.Module):
    """A student's own attention with the chapter 2 attribute names, through F.scaled_dot_product_attention."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.h = num_heads
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(d_model, d_model) for _ in range(4))

    def forward(self, q, k, v, mask=None):
        B, T, d = q.shape
        heads = [t.view(B, -1, self.h, d // self.h).transpose(1, 2) for t in (self.W_q(q), self.W_k(k), self.W_v(v))]
        out = F.scaled_dot_product_attention(*heads, attn_mask=mask)
        return self.W_o(out.transpose(1, 2).reshape(B, T, d))


class BlockCorrectOwnAttention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = _OwnAttention(d_model, num_heads)
        self.ln1 = nn.LayerNorm(d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        T = x.size(1)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device))
        h = self.ln1(x)
        x = x + self.resid_drop(self.attn(h, h, h, mask))
        return x + self.resid_drop(self.mlp(self.ln2(x)))


class BlockStub(nn.Module):
    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class _BlockBase(BlockCorrectOwnAttention):
    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__(d_model, num_heads, dropout)
        self.attn = MultiHeadAttention(d_model, num_heads, dropout)

    def causal(self, x: Tensor) -> Tensor:
        return create_causal_mask(x.size(1), x.device)


class BlockNoCausalMask(_BlockBase):
    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h)
        return x + self.mlp(self.ln2(x))


class BlockMaskOffByOne(_BlockBase):
    def forward(self, x):
        T = x.size(1)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril(1)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, mask)
        return x + self.mlp(self.ln2(x))


class BlockPostNorm(_BlockBase):
    def forward(self, x):
        x = self.ln1(x + self.attn(x, x, x, self.causal(x)))
        return self.ln2(x + self.mlp(x))


class BlockReLU(_BlockBase):
    def __init__(self, d_model, num_heads, dropout=0.0):
        super().__init__(d_model, num_heads, dropout)
        self.mlp[1] = nn.ReLU()

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, self.causal(x))
        return x + self.mlp(self.ln2(x))


class BlockNormsSwapped(_BlockBase):
    def forward(self, x):
        h = self.ln2(x)
        x = x + self.attn(h, h, h, self.causal(x))
        return x + self.mlp(self.ln1(x))


class BlockNoResidual(_BlockBase):
    def forward(self, x):
        h = self.ln1(x)
        x = self.attn(h, h, h, self.causal(x))
        return self.mlp(self.ln2(x))


class BlockParallel(_BlockBase):
    def forward(self, x):
        h = self.ln1(x)
        return x + self.attn(h, h, h, self.causal(x)) + self.mlp(self.ln2(x))


class BlockNarrowMLP(_BlockBase):
    def __init__(self, d_model, num_heads, dropout=0.0):
        super().__init__(d_model, num_heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, d_model))


class BlockWrapsTheReference(reference.GPTBlock):
    pass


# --------------------------------------------------------------------------------------
# GPT
# --------------------------------------------------------------------------------------


class GPTCorrect(nn.Module):
    """Built from the reference blocks (as the chapter allows), output through F.linear on the tied weight."""

    def __init__(self, vocab_size, block_size, d_model=384, num_layers=6, num_heads=6, dropout=0.0):
        super().__init__()
        self.block_size, self.num_heads = block_size, num_heads
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(block_size, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([reference.GPTBlock(d_model, num_heads, dropout) for _ in range(num_layers)])
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.token_embedding.weight = self.lm_head.weight  # tied the other way round: the same Parameter
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("W_o.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * num_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx):
        B, T = idx.shape
        x = self.token_embedding(idx) + self.position_embedding.weight[:T]
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.token_embedding.weight)


class GPTCorrectOwnBlocks(GPTCorrect):
    def __init__(self, vocab_size, block_size, d_model=384, num_layers=6, num_heads=6, dropout=0.0):
        super().__init__(vocab_size, block_size, d_model, num_layers, num_heads, dropout)
        self.blocks = nn.ModuleList([BlockCorrectOwnAttention(d_model, num_heads, dropout) for _ in range(num_layers)])
        init_gpt_weights(self, num_layers)


class GPTStub(nn.Module):
    def __init__(self, vocab_size, block_size, d_model=384, num_layers=6, num_heads=6, dropout=0.0):
        super().__init__()
        # YOUR CODE HERE
        raise NotImplementedError()


class GPTNoPositions(GPTCorrect):
    def forward(self, idx):
        x = self.token_embedding(idx)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class GPTUntied(GPTCorrect):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lm_head = nn.Linear(self.lm_head.in_features, self.lm_head.out_features, bias=False)
        nn.init.normal_(self.lm_head.weight, std=0.02)


class GPTTransposedHead(GPTCorrect):
    def __init__(self, vocab_size, block_size, d_model=384, num_layers=6, num_heads=6, dropout=0.0):
        super().__init__(vocab_size, block_size, d_model, num_layers, num_heads, dropout)
        self.lm_head = nn.Linear(vocab_size, d_model, bias=False)


class GPTScaledEmbeddings(GPTCorrect):
    def forward(self, idx):
        T = idx.size(1)
        x = self.token_embedding(idx) * math.sqrt(self.token_embedding.embedding_dim) + self.position_embedding.weight[:T]
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class GPTNoFinalNorm(GPTCorrect):
    def forward(self, idx):
        x = self.token_embedding(idx) + self.position_embedding.weight[: idx.size(1)]
        for block in self.blocks:
            x = block(x)
        return self.lm_head(x)


class GPTDefaultInit(GPTCorrect):
    @staticmethod
    def _init(m: nn.Module) -> None:
        pass

    def __init__(self, vocab_size, block_size, d_model=384, num_layers=6, num_heads=6, dropout=0.0):
        super().__init__(vocab_size, block_size, d_model, num_layers, num_heads, dropout)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.reset_parameters()


class GPTNoResidualScaling(GPTCorrect):
    def __init__(self, vocab_size, block_size, d_model=384, num_layers=6, num_heads=6, dropout=0.0):
        super().__init__(vocab_size, block_size, d_model, num_layers, num_heads, dropout)
        self.apply(self._init)


class GPTSinusoidalPositions(GPTCorrect):
    def __init__(self, vocab_size, block_size, d_model=384, num_layers=6, num_heads=6, dropout=0.0):
        super().__init__(vocab_size, block_size, d_model, num_layers, num_heads, dropout)
        del self.position_embedding
        self.register_buffer("position_embedding", reference.sinusoidal_table(block_size, d_model))


class GPTSoftmax(GPTCorrect):
    def forward(self, idx):
        return super().forward(idx).softmax(-1)


class GPTWrapsTheReference(reference.GPT):
    pass


# --------------------------------------------------------------------------------------
# sample_next_token
# --------------------------------------------------------------------------------------


def sample_inverse_cdf(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """Sorting once, then drawing by the inverse CDF with torch.rand: other random draws than multinomial."""
    if temperature == 0:
        return logits.max(dim=-1, keepdim=True).indices
    scores, order = (logits / temperature).sort(dim=-1, descending=True)
    if top_k is not None:
        scores[..., top_k:] = float("-inf")
    probs = scores.softmax(-1)
    if top_p is not None:
        keep = probs.cumsum(-1) - probs < top_p
        probs = probs * keep
        probs = probs / probs.sum(-1, keepdim=True)
    u = torch.rand(logits.size(0), 1, generator=generator, dtype=probs.dtype).to(logits.device)
    choice = torch.searchsorted(probs.cumsum(-1), u).clamp(max=logits.size(-1) - 1)
    return order.gather(-1, choice)


def sample_gumbel(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """The Gumbel-max trick: argmax(log p + Gumbel noise) is a sample of p."""
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
        logits = torch.where(logits < v[:, [-1]], torch.full_like(logits, float("-inf")), logits)
    if top_p is not None:
        probs = logits.softmax(-1)
        sp, si = probs.sort(-1, descending=True)
        remove = sp.cumsum(-1) > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        logits = logits.masked_fill(torch.zeros_like(remove).scatter(-1, si, remove), float("-inf"))
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).to(logits.device)
    return (logits - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(-1, keepdim=True)


def sample_stub(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    # YOUR CODE HERE
    raise NotImplementedError()


def sample_temperature_after_softmax(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    probs = F.softmax(reference_cut(logits, top_k, top_p), dim=-1) / temperature
    return torch.multinomial(probs, 1, generator=generator)


def reference_cut(logits, top_k, top_p):
    """The kept logits (top-k, then nucleus) at temperature 1, for the mutants below."""
    if top_k is not None:
        kth = torch.topk(logits, top_k).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sp, si = logits.softmax(-1).sort(-1, descending=True)
        drop = sp.cumsum(-1) - sp >= top_p
        logits = logits.masked_fill(drop.scatter(-1, si, drop), float("-inf"))
    return logits


def sample_top_k_plus_one(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k + 1, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(reference_cut(logits, None, top_p).softmax(-1), 1, generator=generator)


def sample_raw_logits(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    return torch.multinomial(reference_cut(logits / temperature, top_k, top_p), 1, generator=generator)


def sample_nucleus_without_crossing(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    logits = reference_cut(logits / temperature, top_k, None)
    if top_p is not None:
        sp, si = logits.softmax(-1).sort(-1, descending=True)
        drop = sp.cumsum(-1) >= top_p
        drop[:, 0] = False
        logits = logits.masked_fill(drop.scatter(-1, si, drop), float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)


def sample_divides_by_zero(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    probs = reference_cut(logits / temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)


def sample_ignores_generator(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return reference.sample_next_token(logits, temperature, top_k, top_p) if False else \
        sample_gumbel(logits, temperature, top_k, top_p, None)


def sample_flat(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return sample_gumbel(logits, temperature, top_k, top_p, generator).squeeze(-1)


def sample_wraps_the_reference(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    return course_utils.reference.sample_next_token(logits, temperature, top_k, top_p, generator)


# --------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------


@torch.no_grad()
def generate_correct(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    for _ in range(max_new_tokens):
        context = idx if idx.size(1) <= model.block_size else idx[:, idx.size(1) - model.block_size:]
        next_id = sample_inverse_cdf(model(context)[:, -1], temperature, top_k, top_p, generator)
        idx = torch.cat((idx, next_id), dim=1)
    return idx


def generate_correct_with_reference_sampler(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                                            generator=None):
    tokens = idx
    model.eval()
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            logits = model(tokens[:, -model.block_size:])
            tokens = torch.cat([tokens, reference.sample_next_token(logits[:, -1, :], temperature, top_k, top_p,
                                                                    generator)], 1)
    return tokens


def generate_stub(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    # YOUR CODE HERE
    raise NotImplementedError()


def generate_no_crop(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    for _ in range(max_new_tokens):
        idx = torch.cat([idx, sample_gumbel(model(idx)[:, -1], temperature, top_k, top_p, generator)], 1)
    return idx


def generate_crops_the_start(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    for _ in range(max_new_tokens):
        logits = model(idx[:, :model.block_size])
        idx = torch.cat([idx, sample_gumbel(logits[:, -1], temperature, top_k, top_p, generator)], 1)
    return idx


def generate_first_position(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    for _ in range(max_new_tokens):
        logits = model(idx[:, -model.block_size:])
        idx = torch.cat([idx, sample_gumbel(logits[:, 0], temperature, top_k, top_p, generator)], 1)
    return idx


def generate_only_new(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    out = generate_correct(model, idx, max_new_tokens, temperature, top_k, top_p, generator)
    return out[:, idx.size(1):]


def generate_ignores_top_k(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    return generate_correct(model, idx, max_new_tokens, temperature, None, top_p, generator)


def generate_ignores_generator(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    return generate_correct(model, idx, max_new_tokens, temperature, top_k, top_p, None)


def generate_wraps_the_reference(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    return course_utils.reference.generate(model, idx, max_new_tokens, temperature, top_k, top_p, generator)


# --------------------------------------------------------------------------------------
# cached_attention
# --------------------------------------------------------------------------------------


def cached_sdpa(attn, x, cache, num_heads):
    B, T_new, d = x.shape
    q, k, v = (p(x).view(B, T_new, num_heads, d // num_heads).transpose(1, 2) for p in (attn.W_q, attn.W_k, attn.W_v))
    if cache.k is not None:
        k, v = torch.cat((cache.k, k), 2), torch.cat((cache.v, v), 2)
    cache.k, cache.v = k, v
    T = k.size(2)
    rows = torch.arange(T - T_new, T, device=x.device)[:, None]
    mask = torch.arange(T, device=x.device)[None, :] <= rows
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.W_o(out.transpose(1, 2).reshape(B, T_new, d))


def cached_einsum(attn, x, cache, num_heads):
    q = split_heads(attn.W_q(x), num_heads)
    k = split_heads(attn.W_k(x), num_heads)
    v = split_heads(attn.W_v(x), num_heads)
    if cache.k is None:
        cache.k, cache.v = k, v
    else:
        cache.k = torch.cat([cache.k, k], dim=-2)
        cache.v = torch.cat([cache.v, v], dim=-2)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, cache.k) / math.sqrt(q.size(-1))
    past = cache.k.size(2) - x.size(1)
    allowed = torch.ones(x.size(1), cache.k.size(2), dtype=torch.bool, device=x.device).tril(past)
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    return attn.W_o(combine_heads(torch.einsum("bhqk,bhkd->bhqd", weights, cache.v)))


def cached_stub(attn, x, cache, num_heads):
    # YOUR CODE HERE
    raise NotImplementedError()


def _attend(attn, q, k, v, allowed, scale=True):
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.size(-1)) if scale else 1.0)
    return attn.W_o(combine_heads(scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v))


def _project(attn, x, num_heads):
    return tuple(split_heads(p(x), num_heads) for p in (attn.W_q, attn.W_k, attn.W_v))


def cached_misses_new_position(attn, x, cache, num_heads):
    q, k, v = _project(attn, x, num_heads)
    if cache.k is None:  # the prefill is right; the steps attend to the past only, then append
        cache.k, cache.v = k, v
        return _attend(attn, q, k, v, torch.ones(x.size(1), x.size(1), dtype=torch.bool, device=x.device).tril())
    out = _attend(attn, q, cache.k, cache.v, torch.ones(x.size(1), cache.k.size(2), dtype=torch.bool,
                                                        device=x.device).tril(cache.k.size(2) - 1))
    cache.k, cache.v = torch.cat([cache.k, k], 2), torch.cat([cache.v, v], 2)
    return out


def cached_ignores_cache(attn, x, cache, num_heads):
    q, k, v = _project(attn, x, num_heads)
    cache.k = k if cache.k is None else torch.cat([cache.k, k], 2)
    cache.v = v if cache.v is None else torch.cat([cache.v, v], 2)
    return _attend(attn, q, k, v, torch.ones(x.size(1), x.size(1), dtype=torch.bool, device=x.device).tril())


def cached_mask_without_offset(attn, x, cache, num_heads):
    q, k, v = _project(attn, x, num_heads)
    cache.k = k if cache.k is None else torch.cat([cache.k, k], 2)
    cache.v = v if cache.v is None else torch.cat([cache.v, v], 2)
    allowed = torch.ones(x.size(1), cache.k.size(2), dtype=torch.bool, device=x.device).tril()
    return _attend(attn, q, cache.k, cache.v, allowed)


def cached_no_mask(attn, x, cache, num_heads):
    q, k, v = _project(attn, x, num_heads)
    cache.k = k if cache.k is None else torch.cat([cache.k, k], 2)
    cache.v = v if cache.v is None else torch.cat([cache.v, v], 2)
    return _attend(attn, q, cache.k, cache.v, torch.ones(x.size(1), cache.k.size(2), dtype=torch.bool,
                                                         device=x.device))


def cached_replaces_cache(attn, x, cache, num_heads):
    q, k, v = _project(attn, x, num_heads)
    keys = k if cache.k is None else torch.cat([cache.k, k], 2)
    values = v if cache.v is None else torch.cat([cache.v, v], 2)
    cache.k, cache.v = k, v
    allowed = torch.ones(x.size(1), keys.size(2), dtype=torch.bool, device=x.device).tril(keys.size(2) - x.size(1))
    return _attend(attn, q, keys, values, allowed)


def cached_no_scaling(attn, x, cache, num_heads):
    q, k, v = _project(attn, x, num_heads)
    cache.k = k if cache.k is None else torch.cat([cache.k, k], 2)
    cache.v = v if cache.v is None else torch.cat([cache.v, v], 2)
    allowed = torch.ones(x.size(1), cache.k.size(2), dtype=torch.bool, device=x.device).tril(cache.k.size(2) - x.size(1))
    return _attend(attn, q, cache.k, cache.v, allowed, scale=False)


def cached_not_stored(attn, x, cache, num_heads):
    q, k, v = _project(attn, x, num_heads)
    return _attend(attn, q, k, v, torch.ones(x.size(1), x.size(1), dtype=torch.bool, device=x.device).tril())


def cached_wraps_the_reference(attn, x, cache, num_heads):
    return course_utils.reference.cached_attention(attn, x, cache, num_heads)


CATALOGUE = {
    "check_char_tokenizer": Catalogue(
        reference=reference.CharTokenizer,
        mutants=[
            Mutant("stub", TokenizerStub, r"CharTokenizer\(text\) is not implemented yet"),
            Mutant("unsorted", TokenizerUnsorted, r"order they first appear; sort them"),
            Mutant("ids_from_one", TokenizerFromOne, r"the ids start at 1"),
            Mutant("decode_with_spaces", TokenizerSpaces, r"joined with a separator"),
            Mutant("skips_unknown", TokenizerSkipsUnknown, r"should raise ValueError naming the character"),
            Mutant("bare_key_error", TokenizerBareKeyError, r"raised a bare KeyError"),
            Mutant("unknown_is_zero", TokenizerUnknownIsZero, r"not skip it or give it some other id"),
            Mutant("wraps_the_reference", TokenizerWrapsTheReference, r"course_utils' own implementation"),
        ],
        correct=[TokenizerCorrect, TokenizerCorrectLoop],
    ),
    "check_get_batch": Catalogue(
        reference=reference.get_batch,
        mutants=[
            Mutant("stub", batch_stub, r"is not implemented yet"),
            Mutant("not_shifted", batch_not_shifted, r"y equals x in row 0"),
            Mutant("shifted_backwards", batch_shifted_backwards, r"y is shifted the wrong way"),
            Mutant("misses_last_start", batch_misses_last_start, r"the last valid start never comes up"),
            Mutant("one_past_the_end", batch_one_past_the_end,
                   r"stack expects each tensor to be equal size(.|\n)*a window ran past the end"),
            Mutant("ignores_generator", batch_ignores_generator, r"generators seeded alike gave different batches"),
            Mutant("float", batch_float, r"dtype torch\.float32, expected torch\.int64"),
            Mutant("wraps_the_reference", batch_wraps_the_reference, r"course_utils\.reference's own get_batch"),
        ],
        correct=[batch_unfold, batch_loop],
    ),
    "check_gpt_block": Catalogue(
        reference=reference.GPTBlock,
        mutants=[
            Mutant("stub", BlockStub, r"is not implemented yet"),
            Mutant("no_causal_mask", BlockNoCausalMask, r"Likely mistake: there is no causal mask"),
            Mutant("mask_off_by_one", BlockMaskOffByOne, r"Likely mistake: the causal mask is shifted by one"),
            Mutant("post_norm", BlockPostNorm, r"Likely mistake: the block is post-norm"),
            Mutant("relu", BlockReLU, r"Likely mistake: the MLP uses ReLU"),
            Mutant("norms_swapped", BlockNormsSwapped, r"Likely mistake: ln1 and ln2 are swapped"),
            Mutant("no_residual", BlockNoResidual, r"Likely mistake: the residual connections are missing"),
            Mutant("parallel", BlockParallel, r"Likely mistake: the MLP reads the block's input x"),
            Mutant("narrow_mlp", BlockNarrowMLP, r"4 times wider"),
            Mutant("wraps_the_reference", BlockWrapsTheReference, r"course_utils' own implementation"),
        ],
        correct=[BlockCorrectTanh, BlockCorrectOwnAttention],
    ),
    "check_gpt": Catalogue(
        reference=reference.GPT,
        mutants=[
            Mutant("stub", GPTStub, r"is not implemented yet"),
            Mutant("no_positions", GPTNoPositions, r"Likely mistake: the position embeddings are not added"),
            Mutant("untied", GPTUntied, r"not tied to the token embedding: they are two different matrices"),
            Mutant("transposed_head", GPTTransposedHead, r"the output layer is transposed"),
            Mutant("scaled_embeddings", GPTScaledEmbeddings, r"scaled by sqrt\(d_model\)"),
            Mutant("no_final_norm", GPTNoFinalNorm, r"the final LayerNorm ln_f is missing"),
            Mutant("default_init", GPTDefaultInit, r"token_embedding\.weight has standard deviation [0-9.]+, expected 0\.0200"),
            Mutant("no_residual_scaling", GPTNoResidualScaling, r"W_o\.weight has standard deviation(.|\n)*"
                                                                r"0\.02 / sqrt\(2 \* num_layers\)"),
            Mutant("sinusoidal_positions", GPTSinusoidalPositions, r"LEARNED table|should be nn\.Embedding\(8, 16\)"),
            Mutant("softmax", GPTSoftmax, r"Likely mistake: the logits went through a softmax"),
            Mutant("wraps_the_reference", GPTWrapsTheReference, r"course_utils' own implementation"),
        ],
        correct=[GPTCorrect, GPTCorrectOwnBlocks],
    ),
    "check_sample_next_token": Catalogue(
        reference=reference.sample_next_token,
        mutants=[
            Mutant("stub", sample_stub, r"is not implemented yet"),
            Mutant("temperature_after_softmax", sample_temperature_after_softmax,
                   r"divide the LOGITS by the temperature before the softmax"),
            Mutant("top_k_plus_one", sample_top_k_plus_one, r"Likely mistake: top-k keeps k \+ 1 tokens"),
            Mutant("raw_logits", sample_raw_logits, r"probability tensor contains|softmax the logits first"),
            Mutant("nucleus_without_crossing", sample_nucleus_without_crossing,
                   r"Likely mistake: the nucleus misses the token that crosses top_p"),
            Mutant("divides_by_zero", sample_divides_by_zero, r"temperature == 0 as argmax|Hint: the probabilities"),
            Mutant("ignores_generator", sample_ignores_generator, r"pass the generator on"),
            Mutant("flat", sample_flat, r"has shape \(5,\), expected \(5, 1\)"),
            Mutant("wraps_the_reference", sample_wraps_the_reference,
                   r"course_utils\.reference's own sample_next_token"),
        ],
        correct=[sample_inverse_cdf, sample_gumbel],
    ),
    "check_generate": Catalogue(
        reference=reference.generate,
        mutants=[
            Mutant("stub", generate_stub, r"is not implemented yet"),
            Mutant("no_crop", generate_no_crop, r"more than its block_size(.|\n)*idx\[:, -model\.block_size:\]"),
            Mutant("crops_the_start", generate_crops_the_start, r"cropped to the FIRST 5 tokens"),
            Mutant("first_position", generate_first_position, r"Likely mistake: the next token comes from the logits of the FIRST position"),
            Mutant("only_new_tokens", generate_only_new, r"return the prompt followed by the new tokens"),
            Mutant("ignores_top_k", generate_ignores_top_k, r"outside the 2 kept by top_k=2"),
            Mutant("ignores_generator", generate_ignores_generator, r"generators seeded alike gave different text"),
            Mutant("wraps_the_reference", generate_wraps_the_reference, r"course_utils\.reference's own generate"),
        ],
        correct=[generate_correct, generate_correct_with_reference_sampler],
    ),
    "check_cached_attention": Catalogue(
        reference=reference.cached_attention,
        mutants=[
            Mutant("stub", cached_stub, r"is not implemented yet"),
            Mutant("misses_new_position", cached_misses_new_position,
                   r"Likely mistake: the new position is missing from the keys"),
            Mutant("ignores_cache", cached_ignores_cache, r"Likely mistake: the cached keys and values are not used"),
            Mutant("mask_without_offset", cached_mask_without_offset,
                   r"Likely mistake: the causal mask of the new queries ignores the cached positions"),
            Mutant("no_mask", cached_no_mask, r"Likely mistake: there is no causal mask inside the new chunk"),
            Mutant("replaces_cache", cached_replaces_cache, r"the cache is replaced by the new keys"),
            Mutant("no_scaling", cached_no_scaling, r"Likely mistake: the scores are not divided by sqrt\(d_k\)"),
            Mutant("not_stored", cached_not_stored, r"cache\.k and cache\.v should hold the keys and values"),
            Mutant("wraps_the_reference", cached_wraps_the_reference,
                   r"course_utils\.reference's own cached_attention"),
        ],
        correct=[cached_sdpa, cached_einsum],
    ),
}

BUG = Bug("sampling_solution", "    logits = logits / temperature\n", "")
