"""Autograders for chapter 10_gpt's model: the pre-norm block (``GPTBlock``) and ``GPT``.

They compute what the answer should be from the student's own modules (their LayerNorms,
projections and Linear layers) with plain tensor operations, and name the usual mistakes when the
result matches one of them (no causal mask, mask off by one, post-norm, ReLU, positions not added,
untied output layer, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils.checks.harness import (
    Check,
    describe,
    device_names,
    devices_and_dtypes,
    expect_close,
    expect_linear,
    expect_module_class,
    fail,
    one_thread,
    seeded,
)
from course_utils.checks.modules import (
    expect_attribute,
    expect_deterministic,
    expect_layer_norm,
    randomize_norms,
)

__all__ = ["attention_with_mask", "check_gpt", "check_gpt_block"]


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
