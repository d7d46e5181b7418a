"""Autograders for chapter 10_gpt: the tokenizer, the batch sampler, the pre-norm block, ``GPT``,
sampling (``sample_next_token``, ``generate``) and the key/value cache (``cached_attention``).

The model checks compute what the answer should be from the student's own modules (their LayerNorms,
projections and Linear layers) with plain tensor operations, and name the usual mistakes when the
result matches one of them (no causal mask, mask off by one, post-norm, ReLU, positions not added,
untied output layer, ...). The sampling checks draw many tokens from fixed logits and compare the
frequencies with the intended distribution by a chi-square test whose false-alarm rate is stated
(:data:`FALSE_ALARM`): a correct answer fails it with that probability, whatever its random draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils.checks.harness import (
    Check,
    describe,
    device_names,
    devices,
    devices_and_dtypes,
    expect_callable,
    expect_close,
    expect_linear,
    expect_module_class,
    expect_tensor,
    fail,
    one_thread,
    seeded,
)
from course_utils.checks.modules import expect_attribute, expect_deterministic, expect_layer_norm, randomize_norms
from course_utils.reference.gpt import LayerCache

__all__ = ["FALSE_ALARM", "check_cached_attention", "check_char_tokenizer", "check_generate", "check_get_batch",
           "check_gpt", "check_gpt_block", "check_sample_next_token", "chi_square_threshold",
           "intended_distribution"]

#: Probability that one frequency test rejects a correct sampler (the chi-square test's upper tail).
FALSE_ALARM = 1e-6


def chi_square_threshold(df: int, false_alarm: float = FALSE_ALARM) -> float:
    """The value a chi-square variable with ``df`` degrees of freedom exceeds with probability ``false_alarm``.

    Its survival function is the regularised upper incomplete gamma function, ``Q(df / 2, x / 2)``
    (``torch.special.gammaincc``); the threshold is found by bisection, to 1e-6 relative.
    """
    def tail(x: float) -> float:
        return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                             torch.tensor(x / 2, dtype=torch.float64)))

    low, high = 0.0, 10.0 * df + 100.0
    while high - low > 1e-6 * high:
        mid = (low + high) / 2
        low, high = (mid, high) if tail(mid) > false_alarm else (low, mid)
    return high


# --------------------------------------------------------------------------------------
# CharTokenizer(text): stoi, itos, vocab_size, encode, decode
# --------------------------------------------------------------------------------------

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ \n,.;:!?'-&"


def _random_text(seed: int, length: int) -> str:
    with seeded(seed):
        # a few characters of the alphabet only, in a shuffled order, so sorted != first appearance
        chars = [_ALPHABET[i] for i in torch.randperm(len(_ALPHABET))[:20].tolist()]
        ids = torch.randint(len(chars), (length,)).tolist()
    return "".join(chars[i] for i in ids)


def check_char_tokenizer(CharTokenizer: type, seed: int = 0, length: int = 300) -> None:
    """Check ``CharTokenizer(text)``: ``itos`` the sorted characters, ``stoi`` their ids, ``vocab_size``,
    ``encode(str) -> list[int]``, ``decode(list[int]) -> str`` (a round trip), and a ValueError naming an
    unknown character."""
    if not isinstance(CharTokenizer, type):
        fail(f"pass the class CharTokenizer itself to the check, not {describe(CharTokenizer)}.")
    check = Check("CharTokenizer")
    check.refuse_answer_key(CharTokenizer)
    text = _random_text(seed, length)
    vocab = sorted(set(text))
    tok = check.call(CharTokenizer, text, what="CharTokenizer(text)")
    for name, create in (("itos", "sorted(set(text))"), ("stoi", "{ch: i for i, ch in enumerate(self.itos)}"),
                         ("vocab_size", "len(self.itos)")):
        if not hasattr(tok, name):
            fail(f"CharTokenizer has no attribute {name}: in __init__, create self.{name} = {create}.")
    itos = list(tok.itos) if isinstance(tok.itos, (list, tuple, str)) else tok.itos
    if itos != vocab:
        message = (f"CharTokenizer(text).itos should be the sorted characters of text, {vocab!r}, "
                   f"but it is {itos!r}.")
        if isinstance(itos, list) and sorted(itos) == vocab:
            message += ("\nLikely mistake: the characters are in the order they first appear; sort them "
                        "(sorted(set(text))) so that the ids do not depend on where the text starts, as nanoGPT does.")
        elif isinstance(itos, list) and len(itos) > len(vocab):
            message += "\nLikely mistake: characters repeat; build it from set(text), one entry per character."
        fail(message)
    if tok.vocab_size != len(vocab):
        fail(f"CharTokenizer(text).vocab_size is {describe(tok.vocab_size)}, expected {len(vocab)} (len(itos)).")
    if not isinstance(tok.stoi, dict) or tok.stoi != {ch: i for i, ch in enumerate(vocab)}:
        hint = ""
        if isinstance(tok.stoi, dict) and tok.stoi == {ch: i + 1 for i, ch in enumerate(vocab)}:
            hint = "\nLikely mistake: the ids start at 1; enumerate starts at 0, and id i must be itos[i]."
        fail(f"CharTokenizer(text).stoi should map each character to its index in itos "
             f"({{ch: i for i, ch in enumerate(itos)}}), but it is {describe(tok.stoi)} {tok.stoi!r:.200}.{hint}")
    piece = text[length // 3: length // 3 + 40]
    ids = check.call(tok.encode, piece, what=f"encode({piece!r})")
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        fail(f"encode(...) should return a list of Python ints, but it returned {describe(ids)}.")
    want = [vocab.index(ch) for ch in piece]
    if ids != want:
        fail(f"encode({piece!r}) returned {ids}, expected {want}: one id per character, stoi[ch].")
    back = check.call(tok.decode, want, what="decode(ids)")
    if back != piece:
        hint = ("\nLikely mistake: the characters are joined with a separator; use ''.join(...)."
                if isinstance(back, str) and back.replace(" ", "") == piece.replace(" ", "") else "")
        fail(f"decode(encode(s)) should give s back: s = {piece!r}, decode gave {describe(back)}.{hint}")
    if check.call(tok.decode, [], what="decode([])") != "" or check.call(tok.encode, "", what="encode('')") != []:
        fail("encode('') should be [] and decode([]) should be '' (nothing in, nothing out).")
    unknown = next(ch for ch in "Z#@%0" if ch not in text)
    probe = piece[:3] + unknown + piece[3:6]
    try:
        result = tok.encode(probe)
    except ValueError as error:
        if repr(unknown) not in str(error) and unknown not in str(error):
            fail(f"encode({probe!r}) raised ValueError, but its message does not name the unknown character "
                 f"{unknown!r}: {error}. Say which character is not in the vocabulary.")
    except KeyError:
        fail(f"encode({probe!r}) raised a bare KeyError for {unknown!r}, which is not in the vocabulary. Catch "
             f"it and raise ValueError(f\"character {{ch!r}} is not in the vocabulary\") instead: a clear error "
             f"that names the character.")
    except Exception as error:  # noqa: BLE001
        fail(f"encode({probe!r}) raised {type(error).__name__}: {error}; for a character outside the vocabulary "
             f"it should raise ValueError naming {unknown!r}.")
    else:
        fail(f"encode({probe!r}) returned {describe(result)} {result!r:.80}, but {unknown!r} is not in the vocabulary: "
             f"it should raise ValueError naming the character, not skip it or give it some other id.")
    check.passed(f"itos sorted, stoi, vocab_size, encode/decode round trip, ValueError for {unknown!r}")


# --------------------------------------------------------------------------------------
# get_batch(data, block_size, batch_size, generator=None) -> (x, y)
# --------------------------------------------------------------------------------------


def check_get_batch(get_batch: Callable[..., tuple[Tensor, Tensor]], seed: int = 0, block_size: int = 8,
                    batch_size: int = 4, length: int = 200) -> None:
    """Check ``get_batch``: windows ``x`` of ``data``, targets ``y`` shifted by one, every start from 0 to
    ``len(data) - block_size - 1`` possible, reproducible with the generator, on ``data``'s device."""
    fn = expect_callable(get_batch, "get_batch")
    check = Check("get_batch")
    check.refuse_answer_key(fn)
    T, B = block_size, batch_size
    for device in devices():
        with seeded(seed):
            data = torch.randperm(length).to(device)  # distinct values: each window's start can be read off
        position = {int(v): i for i, v in enumerate(data.tolist())}
        what = f"get_batch(data of {length} tokens on {device.type}, block_size={T}, batch_size={B}, generator)"

        def call(n: int = B, d: Tensor = data, g_seed: int = seed, global_seed: int = 0) -> tuple[Tensor, Tensor]:
            torch.manual_seed(global_seed)
            result = check.call(fn, d, T, n, torch.Generator().manual_seed(g_seed), what=what,
                                on_error={"out of range": "a start is too large: the last start whose target "
                                          "window fits is len(data) - block_size - 1, and torch.randint's upper "
                                          "bound is exclusive: torch.randint(len(data) - block_size, ...).",
                                          "stack expects each tensor to be equal size":
                                          "a window ran past the end of data: starts must stay below "
                                          "len(data) - block_size (torch.randint's bound is exclusive)."})
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                fail(f"{what} should return a tuple (x, y), but it returned {describe(result)}.")
            return result[0], result[1]

        with seeded(seed):
            x, y = call()
        for name, t in (("x", x), ("y", y)):
            expect_tensor(t, f"{name} from {what}", (B, T))
            if t.dtype != torch.long:
                fail(f"{name} from {what} has dtype {t.dtype}, expected torch.int64 (data's dtype): token ids "
                     f"index an nn.Embedding.")
            if t.device != data.device:
                fail(f"{name} from {what} is on {t.device}, but data is on {data.device}: return windows of data "
                     f"itself (data[i:i + block_size]), on its device.")
        for b in range(B):
            s = position[int(x[b, 0])]
            if s + T > length or not torch.equal(x[b], data[s:s + T]):
                fail(f"row {b} of x is not a window of data: it should be data[s:s + block_size] for a random start s, "
                     f"but it is {x[b].tolist()} (starting like data[{s}:]). Likely mistake: indices mixed up.")
            if torch.equal(y[b], x[b]):
                fail(f"y equals x in row {b}: the targets must be the same window shifted by one, "
                     f"data[s + 1:s + block_size + 1], so that position t learns to predict token t + 1.")
            if s + T + 1 > length or not torch.equal(y[b], data[s + 1:s + T + 1]):
                hint = ""
                if s >= 1 and torch.equal(y[b], data[s - 1:s + T - 1]):
                    hint = "\nLikely mistake: y is shifted the wrong way (data[s - 1:...]); it is data[s + 1:s + block_size + 1]."
                fail(f"row {b} of y should be data[s + 1:s + block_size + 1] for the start s = {s} of x, the next "
                     f"token at each position, but it is {y[b].tolist()}.{hint}")
        x2, y2 = call(global_seed=12345)
        if not (torch.equal(x, x2) and torch.equal(y, y2)):
            fail(f"two calls with generators seeded alike gave different batches: draw the starts with the "
                 f"generator argument, torch.randint(..., generator=generator), so that training is reproducible.")
        # Only three starts fit in a short text: all three must turn up among many rows.
        short = data[: T + 3]
        xs, _ = call(n=300, d=short)
        starts = {position[int(v)] for v in xs[:, 0].tolist()}
        if starts != {0, 1, 2}:
            missing = sorted({0, 1, 2} - starts)
            message = (f"with len(data) = block_size + 3 the valid starts are 0, 1 and 2 (the target window must fit), "
                       f"but in 300 rows the starts were {sorted(starts)}.")
            if missing == [2]:
                message += ("\nLikely mistake: the last valid start never comes up: torch.randint(len(data) - "
                            "block_size, ...) already excludes its upper bound, so do not subtract 1 more.")
            fail(message)
    check.passed(f"x (B, T) windows, y shifted by one, every start possible, generator, int64, on {device_names()}")


# --------------------------------------------------------------------------------------
# GPTBlock(d_model, num_heads, dropout): x + attn(ln1(x)), x + mlp(ln2(x))
# --------------------------------------------------------------------------------------


def _projections(attn: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear]:
    return attn.W_q, attn.W_k, attn.W_v, attn.W_o


def attention_with_mask(attn: nn.Module, h: Tensor, num_heads: int, mask: Tensor | None, *,
                        scale: bool = True) -> Tensor:
    """Self-attention of ``h`` ``(B, T, d)`` with ``attn``'s projections and a (T, T) boolean mask (None: none)."""
    W_q, W_k, W_v, W_o = _projections(attn)
    B, T, d = h.shape

    def heads(t: Tensor) -> Tensor:
        return t.view(B, T, num_heads, d // num_heads).transpose(1, 2)

    q, k, v = heads(W_q(h)), heads(W_k(h)), heads(W_v(h))
    scores = q @ k.transpose(-2, -1) / (math.sqrt(d // num_heads) if scale else 1.0)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    out = scores.softmax(dim=-1) @ v
    return W_o(out.transpose(1, 2).reshape(B, T, d))


def _mlp_linears(block: nn.Module, owner: str, d_model: int) -> tuple[nn.Linear, nn.Linear, str]:
    mlp = expect_attribute(block, owner, "mlp", "nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), "
                                                "nn.Linear(4 * d_model, d_model))")
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 2:
        fail(f"{owner}.mlp should hold two nn.Linear layers (d_model -> 4 * d_model -> d_model), but it has "
             f"{len(linears)}.")
    first, second = linears
    if (first.in_features, first.out_features, second.in_features, second.out_features) != (
            d_model, 4 * d_model, 4 * d_model, d_model):
        fail(f"{owner}.mlp's layers are nn.Linear({first.in_features}, {first.out_features}) and "
             f"nn.Linear({second.in_features}, {second.out_features}), expected nn.Linear({d_model}, {4 * d_model}) "
             f"and nn.Linear({4 * d_model}, {d_model}): GPT's MLP is 4 times wider than the model.")
    gelus = [m for m in mlp.modules() if isinstance(m, nn.GELU)]
    approximate = gelus[0].approximate if gelus else "none"
    return first, second, approximate


def _block_variants(block: nn.Module, x: Tensor, num_heads: int, approximate: str) -> dict[str, Tensor]:
    """The right output (key "right") and the known wrong ones, from the block's own modules."""
    first, second, _ = _mlp_linears(block, "GPTBlock", x.size(-1))
    T = x.size(1)
    ones = torch.ones(T, T, dtype=torch.bool, device=x.device)
    causal = ones.tril()

    def mlp(h: Tensor, act: Callable[[Tensor], Tensor] = lambda t: F.gelu(t, approximate=approximate)) -> Tensor:
        return second(act(first(h)))

    def attend(h: Tensor, mask: Tensor | None = causal, scale: bool = True) -> Tensor:
        return attention_with_mask(block.attn, h, num_heads, mask, scale=scale)

    ln1, ln2 = block.ln1, block.ln2

    def pre_norm(attn_fn: Callable[[Tensor], Tensor] = attend, mlp_fn: Callable[[Tensor], Tensor] = mlp) -> Tensor:
        h = x + attn_fn(ln1(x))
        return h + mlp_fn(ln2(h))

    h_post = ln1(x + attend(x))
    variants = {
        "right": pre_norm(),
        "there is no causal mask: every position sees the whole sequence, future included. Pass "
        "create_causal_mask(T, x.device) to the attention.": pre_norm(lambda h: attend(h, None)),
        "the causal mask is shifted by one: position t also sees position t + 1, the token it must predict "
        "(torch.tril(..., diagonal=1) instead of the default diagonal=0).": pre_norm(lambda h: attend(h, ones.tril(1))),
        "the block is post-norm (LayerNorm(x + sublayer(x)), as in chapters 5-6); GPT-2 normalises the input "
        "of each sublayer instead: x = x + attn(ln1(x)), then x = x + mlp(ln2(x)).": ln2(h_post + mlp(h_post)),
        "the MLP uses ReLU; GPT uses GELU (nn.GELU()).": pre_norm(mlp_fn=lambda h: mlp(h, torch.relu)),
        "ln1 and ln2 are swapped: ln1 goes before the attention, ln2 before the MLP.":
            (lambda h: h + mlp(ln1(h)))(x + attend(ln2(x))),
        "the residual connections are missing: x = x + attn(ln1(x)), not x = attn(ln1(x)).":
            (lambda h: mlp(ln2(h)))(attend(ln1(x))),
        "the MLP reads the block's input x instead of the output of the attention step: "
        "h = x + attn(ln1(x)), then h + mlp(ln2(h)).": x + attend(ln1(x)) + mlp(ln2(x)),
        "the attention scores are not divided by sqrt(d_k).": pre_norm(lambda h: attend(h, scale=False)),
    }
    return variants


def check_gpt_block(GPTBlock: type[nn.Module], seed: int = 0, batch: int = 2, length: int = 7, d_model: int = 16,
                    num_heads: int = 4) -> None:
    """Check ``GPTBlock(d_model, num_heads, dropout)``: ``ln1, attn, ln2, mlp``; ``forward(x) =``
    pre-norm causal self-attention then GELU MLP, each with its residual, in float32 and float64."""
    cls = expect_module_class(GPTBlock, "GPTBlock")
    check = Check("GPTBlock")
    check.refuse_answer_key(cls)
    with one_thread():
        with seeded(seed):
            block = check.call(cls, d_model, num_heads, 0.1, what=f"GPTBlock({d_model}, {num_heads}, dropout=0.1)")
        for name in ("ln1", "ln2"):
            expect_layer_norm(block, "GPTBlock", name, d_model)
        attn = expect_attribute(block, "GPTBlock", "attn", "MultiHeadAttention(d_model, num_heads, dropout)")
        for projection in ("W_q", "W_k", "W_v", "W_o"):
            if getattr(attn, projection, None) is None:
                fail(f"GPTBlock.attn has no {projection}: it should be chapter 2's MultiHeadAttention(d_model, "
                     f"num_heads, dropout), yours or the reference.")
            expect_linear(attn, "GPTBlock.attn", projection, d_model, d_model)
        _, _, approximate = _mlp_linears(block, "GPTBlock", d_model)
        randomize_norms([block], seed)
        block.eval()
        for device, dtype, where in devices_and_dtypes(block):
            with seeded(seed + 1):
                x = torch.randn(batch, length, d_model, dtype=dtype).to(device)
            what = f"GPTBlock.forward(x){where}"
            expect_deterministic(lambda: check.call(block, x, what=what), what)
            got = check.call(block, x, what=what,
                             on_error={"positional argument": "GPTBlock.forward takes x only and builds its own "
                                                             "causal mask: create_causal_mask(x.size(1), x.device)."})
            with torch.no_grad():
                variants = _block_variants(block, x, num_heads, approximate)
                if approximate == "none":  # GPT-2's tanh approximation of GELU is right too
                    tanh = _block_variants(block, x, num_heads, "tanh")["right"]
            expected = variants.pop("right")
            if approximate == "none" and isinstance(got, Tensor) and got.shape == tanh.shape and torch.allclose(
                    got.detach(), tanh, atol=1e-4 if dtype == torch.float32 else 1e-9, rtol=1e-4):
                continue
            expect_close(got, expected, what, mistakes=variants,
                         hint="compute h = x + attn(ln1(x), ln1(x), ln1(x), causal_mask), then h + mlp(ln2(h)).")
            if not got.requires_grad:
                fail(f"{what} does not carry gradients: keep every step a torch operation (no torch.no_grad, .detach()).")
    check.passed(f"pre-norm x + attn(ln1(x)), x + mlp(ln2(x)), causal, GELU, float32/float64 on {device_names()}")


# --------------------------------------------------------------------------------------
# GPT(vocab_size, block_size, d_model, num_layers, num_heads, dropout)
# --------------------------------------------------------------------------------------


def _expect_gpt_structure(model: nn.Module, vocab: int, block_size: int, d_model: int, num_layers: int,
                          num_heads: int) -> None:
    tok = expect_attribute(model, "GPT", "token_embedding", "nn.Embedding(vocab_size, d_model)")
    if not isinstance(tok, nn.Embedding) or tuple(tok.weight.shape) != (vocab, d_model):
        fail(f"GPT.token_embedding should be nn.Embedding({vocab}, {d_model}), but it is {describe(tok)}.")
    pos = getattr(model, "position_embedding", None)
    if pos is None:
        fail("GPT has no attribute position_embedding: in __init__, create self.position_embedding = "
             "nn.Embedding(block_size, d_model), a LEARNED table of one vector per position (GPT does not use "
             "chapter 4's fixed sinusoids).")
    if not isinstance(pos, nn.Embedding) or tuple(pos.weight.shape) != (block_size, d_model):
        fail(f"GPT.position_embedding should be nn.Embedding({block_size}, {d_model}) (learned, one row per "
             f"position up to block_size), but it is {describe(pos)}.")
    blocks = expect_attribute(model, "GPT", "blocks", "nn.ModuleList([GPTBlock(...) for _ in range(num_layers)])")
    if not isinstance(blocks, nn.ModuleList) or len(blocks) != num_layers:
        fail(f"GPT.blocks should be an nn.ModuleList of num_layers={num_layers} GPTBlocks, but it is {describe(blocks)}"
             f"{f' of {len(blocks)}' if isinstance(blocks, nn.ModuleList) else ''}.")
    expect_layer_norm(model, "GPT", "ln_f", d_model)
    head = expect_attribute(model, "GPT", "lm_head", "nn.Linear(d_model, vocab_size, bias=False)")
    if not isinstance(head, nn.Linear):
        fail(f"GPT.lm_head should be nn.Linear({d_model}, {vocab}, bias=False), but it is {describe(head)}.")
    if tuple(head.weight.shape) != (vocab, d_model):
        fail(f"GPT.lm_head.weight has shape {tuple(head.weight.shape)}, expected ({vocab}, {d_model}).\nLikely "
             f"mistake: the output layer is transposed: it maps d_model to vocab_size, nn.Linear({d_model}, {vocab}), "
             f"whose weight is (vocab_size, d_model), the shape of the token embedding it is tied to.")
    if head.weight is not tok.weight:
        same = torch.equal(head.weight.detach(), tok.weight.detach())
        fail("GPT.lm_head.weight is not tied to the token embedding: "
             + ("it holds a copy of the same numbers, so the two drift apart in training. "
                if same else "they are two different matrices. ")
             + "Tie them with self.lm_head.weight = self.token_embedding.weight (one Parameter, used twice).")
    if head.bias is not None:
        fail("GPT.lm_head should have no bias (bias=False), like GPT-2's: the tied matrix does the scoring.")
    for name, value in (("block_size", block_size), ("num_heads", num_heads)):
        if getattr(model, name, None) != value:
            fail(f"GPT.{name} should be {value} (self.{name} = {name} in __init__): generation reads it.")


def _expect_gpt_init(cls: type[nn.Module], check: Check, seed: int) -> None:
    vocab, block_size, d_model, num_layers = 50, 32, 64, 2
    with seeded(seed):
        model = check.call(cls, vocab, block_size, d_model, num_layers, 4, 0.0,
                           what=f"GPT({vocab}, {block_size}, {d_model}, {num_layers}, 4)")
    residual = 0.02 / math.sqrt(2 * num_layers)

    def std_of(p: Tensor) -> float:
        return float(p.detach().double().std())

    def expect_std(p: Tensor, want: float, what: str, hint: str) -> None:
        got = std_of(p)
        if not 0.85 * want < got < 1.15 * want or abs(float(p.detach().double().mean())) > 0.2 * want:
            fail(f"{what} has standard deviation {got:.4f}, expected {want:.4f} (GPT-2's initialisation).\n{hint}")

    normal = ("Initialise every nn.Linear and nn.Embedding weight from N(0, 0.02) (nn.init.normal_(w, 0.0, 0.02)) "
              "and every bias to 0, after creating the layers (PyTorch's defaults are N(0, 1) for embeddings and "
              "uniform in +-1/sqrt(fan_in) for Linear layers).")
    expect_std(model.token_embedding.weight, 0.02, "GPT.token_embedding.weight", normal)
    expect_std(model.position_embedding.weight, 0.02, "GPT.position_embedding.weight", normal)
    block = model.blocks[0]
    expect_std(block.attn.W_q.weight, 0.02, "GPT.blocks[0].attn.W_q.weight", normal)
    scaled = (f"The layers that write into the residual stream, attn.W_o and the MLP's second Linear, get std "
              f"0.02 / sqrt(2 * num_layers) = {residual:.4f} (Radford et al., 2019, section 2.3): 2 * num_layers of "
              f"them add up along the residual path.")
    expect_std(block.attn.W_o.weight, residual, "GPT.blocks[0].attn.W_o.weight", scaled)
    last = [m for m in block.mlp.modules() if isinstance(m, nn.Linear)][-1]
    expect_std(last.weight, residual, "the second Linear of GPT.blocks[0].mlp", scaled)
    first = [m for m in block.mlp.modules() if isinstance(m, nn.Linear)][0]
    expect_std(first.weight, 0.02, "the first Linear of GPT.blocks[0].mlp", normal)
    for name, p in model.named_parameters():
        if name.endswith("bias") and "ln" not in name and p.detach().abs().max() > 0:
            fail(f"GPT.{name} is not zero after initialisation: GPT-2 starts every bias at 0. {normal}")


def _gpt_variants(model: nn.Module, idx: Tensor) -> dict[str, Callable[[], Tensor]]:
    T = idx.size(1)
    tok, pos = model.token_embedding, model.position_embedding
    positions = torch.arange(T, device=idx.device)

    def run(x: Tensor, final_norm: bool = True) -> Tensor:
        for block in model.blocks:
            x = block(x)
        return (model.ln_f(x) if final_norm else x) @ tok.weight.t()

    d_model = tok.weight.size(1)
    return {
        "right": lambda: run(tok(idx) + pos(positions)),
        "the position embeddings are not added: without them the model cannot tell 'ab' from 'ba' "
        "(x = token_embedding(idx) + position_embedding(torch.arange(T))).": lambda: run(tok(idx)),
        "the embeddings are scaled by sqrt(d_model), as in the 2017 Transformer (chapter 5); GPT adds the "
        "token and position embeddings as they are.": lambda: run(tok(idx) * math.sqrt(d_model) + pos(positions)),
        "the final LayerNorm ln_f is missing before lm_head.": lambda: run(tok(idx) + pos(positions), False),
        "the logits went through a softmax: forward returns logits, cross_entropy applies the softmax itself.":
            lambda: run(tok(idx) + pos(positions)).softmax(-1),
        "the logits went through a log_softmax: return raw logits.":
            lambda: run(tok(idx) + pos(positions)).log_softmax(-1),
    }


def check_gpt(GPT: type[nn.Module], seed: int = 0, vocab_size: int = 11, block_size: int = 8, d_model: int = 16,
              num_layers: int = 2, num_heads: int = 4, batch: int = 2) -> None:
    """Check ``GPT(vocab_size, block_size, d_model, num_layers, num_heads, dropout)``: its parts, weight
    tying, GPT-2's initialisation, ``forward(idx) -> logits (B, T, V)`` for T < and = block_size, gradients."""
    cls = expect_module_class(GPT, "GPT")
    check = Check("GPT")
    check.refuse_answer_key(cls)
    with one_thread():
        args = (vocab_size, block_size, d_model, num_layers, num_heads, 0.1)
        with seeded(seed):
            model = check.call(cls, *args, what=f"GPT{args}")
        _expect_gpt_structure(model, *args[:5])
        _expect_gpt_init(cls, check, seed)
        randomize_norms([model], seed)
        model.eval()
        for device, dtype, where in devices_and_dtypes(model):
            for T in (block_size - 3, block_size):
                with seeded(seed + T):
                    idx = torch.randint(vocab_size, (batch, T)).to(device)
                what = f"GPT.forward(idx of shape {(batch, T)}){where}"
                expect_deterministic(lambda: check.call(model, idx, what=what), what)
                got = check.call(model, idx, what=what)
                with torch.no_grad():
                    variants = _gpt_variants(model, idx)
                    expected = variants.pop("right")()
                expect_close(got, expected, what, mistakes=variants, shape_hint="forward returns (B, T, vocab_size).",
                             hint="x = token_embedding(idx) + position_embedding(arange(T)); every block; ln_f; lm_head.")
        model.to(device="cpu", dtype=torch.float32).train()
        with seeded(seed):
            idx = torch.randint(vocab_size, (batch, block_size))
        model.zero_grad()
        logits = check.call(model, idx, what="GPT.forward(idx) in training mode")
        logits.float().pow(2).mean().backward()
        for name, p in model.named_parameters():
            if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().max() == 0:
                fail(f"GPT.{name} gets no gradient from the loss: it is not used in forward, or a step cuts the "
                     f"graph (.detach(), torch.no_grad()).")
    check.passed(f"embeddings (learned positions), blocks, ln_f, tied lm_head, GPT-2 init, logits (B, T, V), "
                 f"gradients, on {device_names()}")


# --------------------------------------------------------------------------------------
# sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None) -> (B, 1)
# --------------------------------------------------------------------------------------

_PROBS = [0.35, 0.25, 0.15, 0.1, 0.07, 0.05, 0.02, 0.01]


def _fixed_logits(seed: int) -> Tensor:
    """Log-probabilities of :data:`_PROBS` in a shuffled token order (so sorted order != id order)."""
    with seeded(seed):
        order = torch.randperm(len(_PROBS))
    logits = torch.empty(len(_PROBS), dtype=torch.float64)
    logits[order] = torch.tensor(_PROBS, dtype=torch.float64).log()
    return logits + 1.7  # not normalised: the softmax must do it


def intended_distribution(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None, *,
                          crossing_token: bool = True, temperature_after: bool = False,
                          top_p_first: bool = False) -> Tensor:
    """The distribution ``sample_next_token`` should sample ``logits`` ``(V,)`` from (or a known-wrong one)."""
    scores = logits.double() if temperature_after else logits.double() / temperature

    def cut_k(s: Tensor) -> Tensor:
        if top_k is None:
            return s
        kth = s.topk(min(top_k, len(s))).values[-1]
        return s.masked_fill(s < kth, -math.inf)

    def cut_p(s: Tensor) -> Tensor:
        if top_p is None:
            return s
        p = s.softmax(-1)
        sorted_p, order = p.sort(descending=True)
        before = sorted_p.cumsum(-1) - sorted_p
        drop = before >= top_p if crossing_token else sorted_p.cumsum(-1) >= top_p
        if not crossing_token:
            drop[0] = False
        mask = torch.zeros_like(drop)
        mask[order] = drop
        return s.masked_fill(mask, -math.inf)

    scores = cut_k(cut_p(scores)) if top_p_first else cut_p(cut_k(scores))
    probs = scores.softmax(-1)
    if temperature_after:
        probs = probs / temperature
        probs = probs / probs.sum()
    return probs


def _chi_square(counts: Tensor, probs: Tensor) -> tuple[float, int]:
    """(statistic, degrees of freedom) over the tokens of positive probability; inf if one outside is drawn."""
    support = probs > 0
    if (counts[~support] > 0).any():
        return math.inf, int(support.sum()) - 1
    n = counts.sum().double()
    expected = probs[support] * n
    return float(((counts[support].double() - expected) ** 2 / expected).sum()), int(support.sum()) - 1


def check_sample_next_token(sample_next_token: Callable[..., Tensor], seed: int = 0, samples: int = 20_000) -> None:
    """Check ``sample_next_token``: shape ``(B, 1)`` int64; temperature 0 (and near 0) is greedy; nothing
    outside the top-k or the nucleus; the frequencies of ``samples`` draws match the intended distribution
    (chi-square test, false-alarm rate :data:`FALSE_ALARM` per case); reproducible with a generator."""
    fn = expect_callable(sample_next_token, "sample_next_token")
    check = Check("sample_next_token")
    check.refuse_answer_key(fn)
    hints = {"probability tensor contains": "the probabilities are not valid: divide the LOGITS by the temperature "
                                            "(temperature 0 means greedy: return the argmax without dividing), "
                                            "set removed tokens to -inf, and softmax before torch.multinomial.",
             "invalid multinomial distribution": "torch.multinomial needs probabilities (>= 0): softmax the logits first."}
    base = _fixed_logits(seed)
    V = len(base)
    with one_thread():
        for device in devices():
            for dtype in (torch.float32, torch.float64):
                with seeded(seed + 1):
                    rows = (torch.randn(5, V, dtype=torch.float64) * 2).to(device=device, dtype=dtype)
                for temperature in (0, 1e-4):
                    what = f"sample_next_token(logits (5, {V}), temperature={temperature}) on {device.type} in {dtype}"
                    got = check.call(fn, rows, temperature, what=what, on_error=hints)
                    expect_tensor(got, what, (5, 1), hint="return one token per row, shape (B, 1): keepdim=True, or "
                                                          "torch.multinomial(probs, num_samples=1).")
                    if got.dtype != torch.long or got.device != rows.device:
                        fail(f"{what} returned {describe(got)}: token ids are int64 on the logits' device.")
                    if not torch.equal(got, rows.argmax(-1, keepdim=True)):
                        fail(f"{what} gave {got.flatten().tolist()}, but as the temperature goes to 0 sampling becomes "
                             f"greedy: the argmax of each row, {rows.argmax(-1).tolist()}."
                             + ("\nHint: treat temperature == 0 as argmax (logits / 0 is not a distribution)."
                                if temperature == 0 else
                                "\nHint: divide the LOGITS by the temperature before the softmax; dividing the "
                                "probabilities changes nothing once they are normalised again."))
        cases: list[tuple[float, int | None, float | None]] = [
            (1.0, None, None), (0.7, None, None), (1.5, 3, None), (1.0, None, 0.7), (0.8, 4, 0.8)]
        for temperature, top_k, top_p in cases:
            what = (f"sample_next_token(logits, temperature={temperature}, top_k={top_k}, top_p={top_p}) "
                    f"for {samples} rows of the same logits")
            logits = base.float().expand(samples, V).contiguous()
            got = check.call(fn, logits, temperature, top_k, top_p, torch.Generator().manual_seed(seed),
                             what=what, on_error=hints)
            expect_tensor(got, what, (samples, 1))
            counts = torch.bincount(got.flatten().long(), minlength=V).double()[:V]
            want = intended_distribution(base, temperature, top_k, top_p)
            stat, df = _chi_square(counts, want)
            threshold = chi_square_threshold(max(df, 1))
            if stat <= threshold:
                continue
            freq = (counts / samples).tolist()
            message = (f"{what}: the frequencies {[round(f, 3) for f in freq]} do not match the intended "
                       f"probabilities {[round(p, 3) for p in want.tolist()]} (chi-square {stat:.1f} > {threshold:.1f}, "
                       f"a test a correct sampler fails with probability {FALSE_ALARM:g}).")
            outside = [i for i in range(V) if want[i] == 0 and counts[i] > 0]
            if outside:
                message += (f"\nToken(s) {outside} were drawn although they are outside the "
                            f"{'top-k' if top_k and top_p is None else 'kept set (top-k/nucleus)'}.")
            wrong = {
                "the temperature is applied after the softmax (or not at all): divide the logits by it, then softmax.":
                    intended_distribution(base, temperature, top_k, top_p, temperature_after=True),
                "the temperature multiplies the logits: divide them by it (logits / temperature), so that a "
                "temperature below 1 sharpens the distribution.": intended_distribution(base, 1 / temperature, top_k, top_p),
                "top_k is ignored: keep only the top_k largest logits (torch.topk), set the others to -inf.":
                    intended_distribution(base, temperature, None, top_p),
                "top-k keeps k + 1 tokens: the k-th largest logit is topk(...).values[..., -1]; keep logits >= it.":
                    intended_distribution(base, temperature, (top_k or 0) + 1 if top_k else None, top_p),
                "top-k keeps k - 1 tokens: keep every logit >= the k-th largest (>=, not >).":
                    intended_distribution(base, temperature, top_k - 1 if top_k and top_k > 1 else None, top_p),
                "top_p is ignored: keep the smallest set of most likely tokens whose probabilities sum to >= top_p.":
                    intended_distribution(base, temperature, top_k, None),
                "the nucleus misses the token that crosses top_p: keep a token when the probability BEFORE it "
                "(cumulative minus its own) is below top_p, so the set reaches top_p.":
                    intended_distribution(base, temperature, top_k, top_p, crossing_token=False),
                "the nucleus is cut before the temperature / top-k: apply the temperature, then top-k, then top-p "
                "on the resulting probabilities.": intended_distribution(base, temperature, top_k, top_p, top_p_first=True),
            }
            for explanation, candidate in wrong.items():
                if not torch.allclose(candidate, want, atol=1e-3) and _chi_square(counts, candidate)[0] <= \
                        chi_square_threshold(max(_chi_square(counts, candidate)[1], 1)):
                    fail(message + f"\nLikely mistake: {explanation}")
            fail(message + "\nHint: logits / temperature; top-k; then top-p on the softmax of what is left; -inf "
                           "for removed tokens; softmax; torch.multinomial(probs, 1, generator=generator).")
        logits = base.float().expand(64, V).contiguous()
        torch.manual_seed(1)
        first = check.call(fn, logits, 1.0, None, None, torch.Generator().manual_seed(seed + 7))
        torch.manual_seed(2)
        second = check.call(fn, logits, 1.0, None, None, torch.Generator().manual_seed(seed + 7))
        if not torch.equal(first, second):
            fail("two calls with generators seeded alike drew different tokens: pass the generator on, "
                 "torch.multinomial(probs, 1, generator=generator).")
    check.passed(f"(B, 1) int64, temperature -> 0 is greedy, top-k, nucleus, frequencies match "
                 f"(chi-square, false alarm {FALSE_ALARM:g} per case), generator, on {device_names()}")


# --------------------------------------------------------------------------------------
# generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None)
# --------------------------------------------------------------------------------------


class _ScriptedLM(nn.Module):
    """A fake language model: the next token after (a, b) is (3b + 2a + 1) mod V, with a confident margin.

    Records every input; refuses contexts longer than ``block_size`` with a message about cropping.
    """

    def __init__(self, vocab: int, block_size: int) -> None:
        super().__init__()
        self.vocab, self.block_size = vocab, block_size
        self.scale = nn.Parameter(torch.tensor(6.0))
        self.inputs: list[Tensor] = []

    def forward(self, idx: Tensor) -> Tensor:
        self.inputs.append(idx.detach().clone())
        if idx.size(1) > self.block_size:
            raise ValueError(f"the model got a context of {idx.size(1)} tokens, more than its block_size="
                             f"{self.block_size}")
        prev = torch.cat([idx[:, :1], idx[:, :-1]], dim=1)
        nxt = (3 * idx + 2 * prev + 1) % self.vocab
        return self.scale * F.one_hot(nxt, self.vocab).float()

    @staticmethod
    def next_of(seq: list[int], vocab: int) -> int:
        a = seq[-2] if len(seq) > 1 else seq[-1]
        return (3 * seq[-1] + 2 * a + 1) % vocab


class _FixedLM(nn.Module):
    """A fake language model whose next-token logits never change."""

    def __init__(self, logits: Tensor, block_size: int) -> None:
        super().__init__()
        self.block_size = block_size
        self.logits = nn.Parameter(logits.float().clone())

    def forward(self, idx: Tensor) -> Tensor:
        return self.logits.expand(idx.size(0), idx.size(1), -1)


def check_generate(generate: Callable[..., Tensor], seed: int = 0, batch: int = 3, prompt_len: int = 3,
                   block_size: int = 5, new_tokens: int = 8, vocab: int = 7) -> None:
    """Check ``generate``: the prompt followed by ``max_new_tokens`` tokens, each sampled from the logits of
    the LAST position of the model run on the last ``block_size`` tokens at most; temperature, top-k and
    top-p passed on to the sampling; reproducible with a generator."""
    fn = expect_callable(generate, "generate")
    check = Check("generate")
    check.refuse_answer_key(fn)
    hints = {"more than its block_size": "crop the context to the model's window before each call: "
                                        "idx[:, -model.block_size:] (the LAST block_size tokens)."}
    with one_thread():
        model = _ScriptedLM(vocab, block_size).eval()
        with seeded(seed):
            prompt = torch.randint(vocab, (batch, prompt_len))
        what = f"generate(model, idx {tuple(prompt.shape)}, max_new_tokens={new_tokens}, temperature=0)"
        got = check.call(fn, model, prompt, new_tokens, 0, what=what, on_error=hints)
        expect_tensor(got, what, (batch, prompt_len + new_tokens),
                      hint="return the prompt followed by the new tokens: torch.cat([idx, next_token], dim=1) "
                           "at each step, and return idx.")
        if not torch.equal(got[:, :prompt_len].cpu(), prompt):
            fail(f"{what} should start with the prompt {prompt.tolist()}, but it starts with "
                 f"{got[:, :prompt_len].tolist()}.")
        def simulate(window: Callable[[list[int]], list[int]], position: int = -1) -> Tensor:
            rows = [prompt[b].tolist() for b in range(batch)]
            for _ in range(new_tokens):
                for row in rows:
                    context = window(row)
                    upto = context[: len(context) + position + 1] if position < 0 else context[: position + 1]
                    row.append(_ScriptedLM.next_of(upto, vocab))
            return torch.tensor(rows)

        want = simulate(lambda row: row[-block_size:])
        if not torch.equal(got.cpu(), want):
            if torch.equal(got.cpu(), simulate(lambda row: row[-block_size:], position=0)):
                fail(f"{what} gave {got.tolist()}, expected {want.tolist()} (greedy on the model's logits).\n"
                     f"Likely mistake: the next token comes from the logits of the FIRST position; take the logits of "
                     f"the LAST position, logits[:, -1, :], the one that has read the whole context.")
            if torch.equal(got.cpu(), simulate(lambda row: row[:block_size])):
                fail(f"{what} gave {got.tolist()}, expected {want.tolist()}.\nLikely mistake: the context is cropped "
                     f"to the FIRST {block_size} tokens; crop to the LAST block_size tokens, idx[:, -block_size:], "
                     f"the context of the next one.")
        if len(model.inputs) != new_tokens:
            fail(f"{what} called the model {len(model.inputs)} times, expected {new_tokens}: one call per new token.")
        for step, seen in enumerate(model.inputs):
            length = prompt_len + step
            window = want[:, max(0, length - block_size):length]
            if not torch.equal(seen.cpu(), window):
                fail(f"at step {step} the model should see the last min(T, block_size) tokens {window.tolist()}, but it "
                     f"got {seen.tolist()}: crop with idx[:, -model.block_size:].")
        if not torch.equal(got.cpu(), want):
            fail(f"{what} gave {got.tolist()}, expected {want.tolist()} (greedy on the logits of the last position, "
                 f"appended one at a time).")
        fixed = _FixedLM(_fixed_logits(seed), block_size).eval()
        prompt = torch.zeros(50, 1, dtype=torch.long)
        for kwargs, allowed, name in (
                ({"top_k": 2}, 2, "top_k=2"), ({"top_p": 0.3}, 1, "top_p=0.3"), ({}, None, "no limit")):
            what = f"generate(fixed-logits model, idx (50, 1), 30, temperature=1.0, {name})"
            out = check.call(fn, fixed, prompt, 30, 1.0, kwargs.get("top_k"), kwargs.get("top_p"),
                             torch.Generator().manual_seed(seed), what=what, on_error=hints)
            expect_tensor(out, what, (50, 31))
            drawn = out[:, 1:].flatten()
            order = fixed.logits.detach().argsort(descending=True)
            if allowed is not None:
                outside = sorted(set(drawn.tolist()) - set(order[:allowed].tolist()))
                if outside:
                    fail(f"{what} drew tokens {outside}, which are outside the {allowed} kept by {name}: pass "
                         f"temperature, top_k and top_p on to sample_next_token.")
            elif len(set(drawn.tolist())) < 5:
                fail(f"{what} drew only the tokens {sorted(set(drawn.tolist()))} in 1,500 draws: at temperature 1 "
                     f"with no top-k or top-p it should sample from the whole distribution, not take the argmax.")
        a = check.call(fn, fixed, prompt, 10, 1.0, None, None, torch.Generator().manual_seed(seed + 3))
        torch.manual_seed(99)
        b = check.call(fn, fixed, prompt, 10, 1.0, None, None, torch.Generator().manual_seed(seed + 3))
        if not torch.equal(a, b):
            fail("two calls with generators seeded alike gave different text: pass the generator on to the sampling.")
    check.passed("prompt + new tokens, context cropped to the last block_size, last position's logits, "
                 "temperature/top-k/top-p passed on, generator")


# --------------------------------------------------------------------------------------
# cached_attention(attn, x, cache, num_heads) -> (B, T_new, d_model)
# --------------------------------------------------------------------------------------


def _cache_mistakes(attn: nn.Module, x_all: Tensor, start: int, n: int, num_heads: int) -> dict[str, Tensor]:
    """Outputs at the new positions ``start .. start + n - 1`` of known-wrong caches."""
    T = start + n
    h = x_all[:, :T]
    causal = torch.ones(T, T, dtype=torch.bool, device=x_all.device).tril()

    def with_rows(rows: Tensor) -> Tensor:
        """Attention whose new queries use the (n, T) mask ``rows`` (earlier rows stay causal, unused)."""
        mask = causal.clone()
        mask[start:] = rows
        return attention_with_mask(attn, h, num_heads, mask)[:, start:]

    new_rows = causal[start:]
    out: dict[str, Tensor] = {}
    if start > 0:
        out["the new position is missing from the keys: append the new keys and values to the cache BEFORE "
            "attending, so that each new token also sees itself."] = with_rows(
                new_rows & (torch.arange(T, device=x_all.device) < start))
        out["the cached keys and values are not used: the new queries attend only to the new positions. Attend to "
            "torch.cat([cache.k, k_new], dim=2) (and the same for v)."] = with_rows(
                new_rows & (torch.arange(T, device=x_all.device) >= start))
        out["the causal mask of the new queries ignores the cached positions: new query i sits at position "
            "T_past + i and may see keys 0 .. T_past + i, so the mask is tril(diagonal=T_past) of a (T_new, T_all) "
            "matrix, not tril() with the default diagonal."] = with_rows(
                torch.ones(n, T, dtype=torch.bool, device=x_all.device).tril())
    if n > 1:
        out["there is no causal mask inside the new chunk: in a prefill of several tokens each one sees the ones "
            "after it. New query i may see keys 0 .. T_past + i only."] = with_rows(torch.ones_like(new_rows))
    out["the scores are not divided by sqrt(d_k)."] = \
        attention_with_mask(attn, h, num_heads, causal, scale=False)[:, start:]
    return out


def check_cached_attention(cached_attention: Callable[..., Tensor], seed: int = 0, batch: int = 2, d_model: int = 16,
                           num_heads: int = 4, chunks: Sequence[int] = (4, 1, 1, 3, 1)) -> None:
    """Check ``cached_attention(attn, x, cache, num_heads)`` over a prefill and several steps: each output equals
    causal self-attention over everything so far, at the new positions; the cache grows to ``(B, H, T, d_k)``
    holding the keys and values of every position."""
    fn = expect_callable(cached_attention, "cached_attention")
    check = Check("cached_attention")
    check.refuse_answer_key(fn)
    from course_utils.reference.multi_head_attention import MultiHeadAttention

    total = sum(chunks)
    d_k = d_model // num_heads
    with one_thread():
        with seeded(seed):
            attn = MultiHeadAttention(d_model, num_heads).eval()
        for device, dtype, where in devices_and_dtypes(attn):
            with seeded(seed + 1):
                x_all = torch.randn(batch, total, d_model, dtype=dtype).to(device)
            with torch.no_grad():
                causal = torch.ones(total, total, dtype=torch.bool, device=device).tril()
                expected_all = attention_with_mask(attn, x_all, num_heads, causal)
                k_all = attn.W_k(x_all).view(batch, total, num_heads, d_k).transpose(1, 2)
                v_all = attn.W_v(x_all).view(batch, total, num_heads, d_k).transpose(1, 2)
            cache = LayerCache()
            start = 0
            for n in chunks:
                what = (f"cached_attention(attn, x (B={batch}, T_new={n}), cache holding {start} positions, "
                        f"num_heads={num_heads}){where}")
                with torch.no_grad():
                    got = check.call(fn, attn, x_all[:, start:start + n], cache, num_heads, what=what)
                    mistakes = _cache_mistakes(attn, x_all, start, n, num_heads)
                k, v = getattr(cache, "k", None), getattr(cache, "v", None)
                if not isinstance(k, Tensor) or not isinstance(v, Tensor):
                    fail(f"after {what}, cache.k and cache.v should hold the keys and values so far, but they are "
                         f"{describe(k)} and {describe(v)}: set cache.k = k_new when it is None, else "
                         f"torch.cat([cache.k, k_new], dim=2), and the same for v.")
                if tuple(k.shape) != (batch, num_heads, start + n, d_k) or tuple(v.shape) != tuple(k.shape):
                    hint = ("\nLikely mistake: the cache is replaced by the new keys instead of growing: "
                            "torch.cat([cache.k, k_new], dim=2)." if k.size(-2) == n and start > 0 else "")
                    fail(f"after {what}, cache.k has shape {tuple(k.shape)} and cache.v {tuple(v.shape)}, expected "
                         f"{(batch, num_heads, start + n, d_k)} each: (B, H, positions so far, d_k), after split_heads "
                         f"(concatenate along dim=2, the position axis).{hint}")
                expect_close(got, expected_all[:, start:start + n], what, mistakes=mistakes,
                             hint="q, k_new, v_new = split_heads(attn.W_q(x)), ...; append k_new, v_new to the cache; "
                                  "softmax(q k^T / sqrt(d_k)) with new query i seeing keys 0 .. T_past + i; attn.W_o.")
                expect_close(k.detach(), k_all[:, :, :start + n], f"cache.k after {what}",
                             hint="the cache stores the projected keys split into heads, attn.W_k(x), positions in order.")
                expect_close(v.detach(), v_all[:, :, :start + n], f"cache.v after {what}",
                             mistakes={"cache.v holds the keys: store split_heads(attn.W_v(x)).": k_all[:, :, :start + n]})
                start += n
    check.passed(f"prefill and step-by-step outputs = full causal attention, cache (B, H, T, d_k) grows, "
                 f"float32/float64 on {device_names()}")
