"""Training-step throughput of the course's GPT against the same model built from PyTorch's own layers.

    python -m benchmarks.gpt_train_step            # the cpu preset's model (4 layers, d_model 128, block 64)
    python -m benchmarks.gpt_train_step --tiny     # seconds; for the test suite

The built-in twin has the same size and the same parameter count: the same token and learned position
embeddings, ``num_layers`` of ``nn.TransformerEncoderLayer(d_model, num_heads, 4 * d_model,
activation="gelu", norm_first=True)`` with a causal mask, a final LayerNorm and an output layer tied to
the token embedding. Both take turns on the same batches of Tiny Shakespeare (the reference first on even
steps, the twin on odd ones), each step being what ``train_gpt`` does: forward, cross-entropy, backward,
clipping, AdamW. The ratio is the reference's tokens per second over the twin's (1.0 = as fast).

What differs is inside the layers: ``nn.TransformerEncoderLayer`` projects queries, keys and values with
one fused matrix product and calls ``F.scaled_dot_product_attention``; the course's block uses chapter 2's
``MultiHeadAttention`` (three products, attention spelled out, its weights kept for plotting).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from benchmarks.common import footer, header, markdown_table, median, set_threads
from course_utils.data.shakespeare import encode_splits, load_shakespeare
from course_utils.reference.gpt import GPT, CharTokenizer, get_batch, init_gpt_weights
from course_utils.training.gpt import PRESETS, configure_optimizer


class BuiltinGPT(nn.Module):
    """The course's GPT with ``nn.TransformerEncoderLayer(norm_first=True)`` blocks and a causal mask."""

    def __init__(self, vocab_size: int, block_size: int, d_model: int, num_layers: int, num_heads: int) -> None:
        super().__init__()
        self.block_size, self.num_heads = block_size, num_heads
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(block_size, d_model)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, num_heads, 4 * d_model, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, idx: Tensor) -> Tensor:
        T = idx.size(1)
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=idx.device)
        x = self.token_embedding(idx) + self.position_embedding(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x, src_mask=mask, is_causal=True)
        return self.lm_head(self.ln_f(x))


def build_pair(vocab_size: int, block_size: int, d_model: int, num_layers: int, num_heads: int
               ) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    reference = GPT(vocab_size, block_size, d_model, num_layers, num_heads)
    builtin = BuiltinGPT(vocab_size, block_size, d_model, num_layers, num_heads)
    n_ref, n_builtin = (sum(p.numel() for p in m.parameters()) for m in (reference, builtin))
    assert n_ref == n_builtin, f"parameter counts differ: {n_ref} vs {n_builtin}"
    return reference, builtin


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpt_train_step", description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model and a few steps (for the tests)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    header("GPT training step: course GPT vs nn.TransformerEncoderLayer(norm_first=True)", "gpt_train_step", argv)
    preset = PRESETS["cpu"]
    sizes = (dict(block_size=16, d_model=16, num_layers=1, num_heads=2, batch=4) if args.tiny else
             dict(block_size=64, d_model=preset.d_model, num_layers=preset.num_layers,
                  num_heads=preset.num_heads, batch=preset.batch_size))
    steps = 3 if args.tiny else args.steps
    text = load_shakespeare()
    tokenizer = CharTokenizer(text)
    train_data, _ = encode_splits(tokenizer, text)
    models = build_pair(tokenizer.vocab_size, sizes["block_size"], sizes["d_model"], sizes["num_layers"],
                        sizes["num_heads"])
    optimizers = [configure_optimizer(m, 1e-3, 0.1) for m in models]
    generator = torch.Generator().manual_seed(0)
    batches = [get_batch(train_data, sizes["block_size"], sizes["batch"], generator) for _ in range(steps + 2)]
    times: list[list[float]] = [[], []]
    import time

    for step, (x, y) in enumerate(batches):
        order = (0, 1) if step % 2 == 0 else (1, 0)
        for i in order:
            model, optimizer = models[i], optimizers[i]
            start = time.perf_counter()
            loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if step >= 2:  # the first two steps warm up allocators and caches
                times[i].append(time.perf_counter() - start)
    tokens = sizes["batch"] * sizes["block_size"]
    ref, builtin = (tokens / median(t) for t in times)
    name = "tiny" if args.tiny else "cpu preset (block 64)"
    params = sum(p.numel() for p in models[0].parameters())
    print(markdown_table(
        ["model", "parameters", "batch x block", "course GPT tokens/s", "built-in tokens/s", "ratio course / built-in"],
        [[name, f"{params:,}", f"{sizes['batch']} x {sizes['block_size']}", f"{ref:,.0f}", f"{builtin:,.0f}",
          f"**{ref / builtin:.2f}**"]]))
    footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
