"""Training-step throughput: the course's reference ``Transformer`` against ``nn.Transformer``.

    python -m benchmarks.train_step                 # both sizes, float32 and bfloat16 autocast
    python -m benchmarks.train_step --sizes cpu --precisions fp32 --profile 5
    python -m benchmarks.train_step --tiny          # seconds; for the test suite

Both models have the same size (d_model, layers, heads, d_ff, dropout, vocabularies) and the
same parameter count, and do the same work per step: token embeddings times sqrt(d_model),
the course's sinusoidal positional encoding, dropout, a post-norm encoder-decoder stack with
no final LayerNorm (``nn.Transformer`` gets custom encoder and decoder stacks built with
``norm=None`` to match), and a generator to target-vocabulary logits. A step is what
``train_epoch`` does: forward, the label-smoothed loss, backward, gradient clipping, Adam.

Both train on the same batches (Multi30k's training split under the ``cpu`` preset's token
budget of 1,000 positions, so about 35 sentences of 14 words), taking turns batch by batch
(reference first on even batches, ``nn.Transformer`` first on odd ones), so background load
and cache effects hit both alike. Throughput counts the real (non-padding) target tokens
predicted per second; the ratio is the reference's over the built-in's (1.0 = as fast).

What differs is only inside the layers: ``nn.MultiheadAttention`` projects queries, keys and
values with one fused matrix product and calls the fused ``F.scaled_dot_product_attention``;
the reference does three products and spells attention out (``Q K^T``, mask, softmax,
``@ V``), as the students write it.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/train_step.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import Tensor, nn

from benchmarks.common import footer, header, markdown_table, median, set_threads
from course_utils.data.vocab import BOS_IDX, EOS_IDX, PAD_IDX
from course_utils.reference import LabelSmoothingLoss, PositionalEncoding, Transformer


@dataclass(frozen=True)
class Size:
    """A model size and how many steps to time at it."""

    label: str
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    dropout: float
    steps: int
    """Timed steps per model and precision (after ``warmup`` untimed ones)."""
    warmup: int = 2

    def model_kwargs(self) -> dict[str, float]:
        return {"d_model": self.d_model, "num_layers": self.num_layers, "num_heads": self.num_heads,
                "d_ff": self.d_ff, "dropout": self.dropout}

    def describe(self) -> str:
        return (f"{self.label}: d_model {self.d_model}, {self.num_layers}+{self.num_layers} layers, "
                f"{self.num_heads} heads, d_ff {self.d_ff}, dropout {self.dropout}")


SIZES: dict[str, Size] = {
    # The cpu training preset (course_utils/training/translator.py), dropout 0 as there.
    "cpu": Size("cpu preset", 256, 3, 8, 512, 0.0, steps=30),
    # The paper's base model (table 3), dropout 0.1 as there; few steps, each is slow on a CPU.
    "base": Size("paper base", 512, 6, 8, 2048, 0.1, steps=6, warmup=1),
}
TINY = Size("tiny", 32, 1, 2, 64, 0.1, steps=2, warmup=1)

#: The cpu preset's batch budget (positions per batch, padding included).
MAX_TOKENS = 1000


class TorchTransformer(nn.Module):
    """``nn.Transformer`` dressed like the reference: embeddings, positions, generator.

    ``forward(src (B, Ls), tgt (B, Lt)) -> logits (B, Lt, V_tgt)``, as the reference's, with the
    same masks: source padding for the encoder and for cross-attention, target padding plus
    causality for the decoder's self-attention.
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d_model: int, num_layers: int,
                 num_heads: int, d_ff: int, dropout: float, max_seq_length: int = 256,
                 pad_idx: int = PAD_IDX) -> None:
        super().__init__()
        self.pad_idx = pad_idx
        self.d_model = d_model
        self.src_embedding = nn.Embedding(src_vocab_size, d_model)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, d_model)
        self.positional_encoding = PositionalEncoding(d_model, max_seq_length)
        self.dropout = nn.Dropout(dropout)
        # Post-norm (norm_first=False), ReLU: the paper's layers. norm=None: the reference has
        # no final LayerNorm after the stacks, while nn.Transformer's default stacks do.
        encoder_layer = nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout, batch_first=True)
        decoder_layer = nn.TransformerDecoderLayer(d_model, num_heads, d_ff, dropout, batch_first=True)
        self.transformer = nn.Transformer(
            d_model, num_heads, batch_first=True,
            custom_encoder=nn.TransformerEncoder(encoder_layer, num_layers, norm=None, enable_nested_tensor=False),
            custom_decoder=nn.TransformerDecoder(decoder_layer, num_layers, norm=None))
        self.generator = nn.Linear(d_model, tgt_vocab_size)
        for parameter in self.parameters():  # Glorot, as the reference
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def embed(self, ids: Tensor, embedding: nn.Embedding) -> Tensor:
        return self.dropout(self.positional_encoding(embedding(ids) * math.sqrt(self.d_model)))

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        # PyTorch's masks say the opposite of the course's: True = may NOT attend.
        src_padding = src == self.pad_idx  # (B, Ls)
        tgt_padding = tgt == self.pad_idx  # (B, Lt)
        causal = torch.ones(tgt.size(1), tgt.size(1), dtype=torch.bool, device=tgt.device).triu(1)
        states = self.transformer(
            self.embed(src, self.src_embedding), self.embed(tgt, self.tgt_embedding),
            tgt_mask=causal, src_key_padding_mask=src_padding, tgt_key_padding_mask=tgt_padding,
            memory_key_padding_mask=src_padding, tgt_is_causal=True)
        return self.generator(states)


def multi30k_batches(count: int, seed: int = 0) -> tuple[list[tuple[Tensor, Tensor]], int, int]:
    """The first ``count`` shuffled training batches of the cpu preset, and the vocabulary sizes."""
    from course_utils.data.batching import TokenBatches, encode_split
    from course_utils.data.multi30k import load_multi30k
    from course_utils.data.vocab import Vocab

    corpus = load_multi30k()
    src_vocab = Vocab.build(corpus.train.de_tokens, 2, True)
    tgt_vocab = Vocab.build(corpus.train.en_tokens, 2, True)
    pairs = encode_split(corpus.train, src_vocab, tgt_vocab, long="drop").pairs
    batches = []
    for batch in TokenBatches(pairs, MAX_TOKENS, shuffle=True, seed=seed):
        batches.append(batch)
        if len(batches) == count:
            break
    return batches, len(src_vocab), len(tgt_vocab)


def random_batches(count: int, src_vocab: int, tgt_vocab: int, max_tokens: int = MAX_TOKENS,
                   seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """``count`` padded batches of random ids, lengths 8 to 30, under the token budget.

    ``src`` ``(B, Ls)`` and ``tgt`` ``(B, Lt)`` with ``<bos> ... <eos>`` targets and a few padded
    positions per row, like a bucketed Multi30k batch.
    """
    rng = random.Random(seed)
    batches = []
    for _ in range(count):
        length = rng.randint(8, 30)
        rows = max(1, max_tokens // length)
        src = torch.full((rows, length), PAD_IDX, dtype=torch.long)
        tgt = torch.full((rows, length), PAD_IDX, dtype=torch.long)
        for row in range(rows):
            n_src, n_tgt = length - rng.randint(0, 2), length - rng.randint(0, 2)
            src[row, :n_src] = torch.randint(4, src_vocab, (n_src,))
            tgt[row, :n_tgt] = torch.randint(4, tgt_vocab, (n_tgt,))
            tgt[row, 0], tgt[row, n_tgt - 1] = BOS_IDX, EOS_IDX
        batches.append((src, tgt))
    return batches


class Trainer:
    """One model with its optimizer, doing ``train_epoch``'s step on a batch."""

    def __init__(self, model: nn.Module, bf16: bool) -> None:
        self.model = model.train()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
        self.criterion = LabelSmoothingLoss(0.1, PAD_IDX)
        self.bf16 = bf16

    def step(self, src: Tensor, tgt: Tensor) -> float:
        """Forward (under bfloat16 autocast if asked), loss, backward, clip, Adam; returns the loss."""
        tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with autocast:
            logits = self.model(src, tgt_in)
        loss = self.criterion(logits.float().reshape(-1, logits.size(-1)), tgt_out.reshape(-1))
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return loss.item()


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_pair(size: Size, src_vocab: int, tgt_vocab: int) -> tuple[nn.Module, nn.Module]:
    """The reference and the built-in model of ``size``, with equal parameter counts."""
    torch.manual_seed(0)
    reference = Transformer(src_vocab, tgt_vocab, **size.model_kwargs(), max_seq_length=256, pad_idx=PAD_IDX)
    builtin = TorchTransformer(src_vocab, tgt_vocab, **size.model_kwargs())
    assert parameter_count(reference) == parameter_count(builtin), "the two models must be the same size"
    return reference, builtin


def measure(size: Size, batches: Sequence[tuple[Tensor, Tensor]], src_vocab: int, tgt_vocab: int,
            bf16: bool) -> dict[str, float]:
    """Train both models on ``batches`` taking turns; tokens per second of each and their ratio."""
    reference, builtin = build_pair(size, src_vocab, tgt_vocab)
    trainers = {"reference": Trainer(reference, bf16), "torch": Trainer(builtin, bf16)}
    times: dict[str, list[float]] = {"reference": [], "torch": []}
    tokens: list[int] = []
    for index, (src, tgt) in enumerate(batches[: size.warmup + size.steps]):
        order = ["reference", "torch"] if index % 2 == 0 else ["torch", "reference"]
        for name in order:
            start = time.perf_counter()
            trainers[name].step(src, tgt)
            elapsed = time.perf_counter() - start
            if index >= size.warmup:
                times[name].append(elapsed)
        if index >= size.warmup:
            tokens.append(int((tgt[:, 1:] != PAD_IDX).sum()))
    total = sum(tokens)
    ref_rate, torch_rate = total / sum(times["reference"]), total / sum(times["torch"])
    per_step = [t / r for r, t in zip(times["reference"], times["torch"])]
    return {"params": parameter_count(reference), "steps": len(tokens), "tokens_per_step": total / len(tokens),
            "reference": ref_rate, "torch": torch_rate, "ratio": ref_rate / torch_rate,
            "median_step_ratio": median(per_step),
            "ref_ms": 1000 * median(times["reference"]), "torch_ms": 1000 * median(times["torch"])}


def profile(size: Size, batches: Sequence[tuple[Tensor, Tensor]], src_vocab: int, tgt_vocab: int,
            steps: int, rows: int = 18) -> None:
    """Print torch.profiler's busiest operators (self CPU time) for each model, float32."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    reference, builtin = build_pair(size, src_vocab, tgt_vocab)
    for name, model in (("reference", reference), ("nn.Transformer", builtin)):
        trainer = Trainer(model, bf16=False)
        for src, tgt in batches[: size.warmup]:
            trainer.step(src, tgt)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for src, tgt in batches[size.warmup: size.warmup + steps]:
                trainer.step(src, tgt)
        print(f"\n### profile: {name}, {size.label}, {steps} steps, float32\n")
        print("```")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40))
        print("```")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="cpu,base", help="comma-separated: cpu, base (default both)")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="comma-separated: fp32, bf16 (bfloat16 autocast forward, as the cpu preset; "
                             "skipped where the CPU has no native bfloat16)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default per size)")
    parser.add_argument("--data", choices=("multi30k", "random"), default="multi30k",
                        help="Multi30k's training batches (default) or random ids of similar shapes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="also print torch.profiler tables over this many float32 steps per model")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and 3 random batches: for tests")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    header("train_step", "train_step", argv)

    from course_utils.training.translator import bf16_is_fast

    sizes = [TINY] if args.tiny else [SIZES[name] for name in args.sizes.split(",")]
    if args.steps is not None:
        sizes = [Size(**{**s.__dict__, "steps": args.steps}) for s in sizes]
    precisions = args.precisions.split(",")
    if "bf16" in precisions and not bf16_is_fast(torch.device("cpu")):
        print("(bf16 skipped: this CPU has no native bfloat16 matrix products)\n")
        precisions.remove("bf16")
    needed = max(s.warmup + max(s.steps, args.profile) for s in sizes)
    if args.tiny:
        src_vocab, tgt_vocab = 100, 90
        batches = random_batches(needed, src_vocab, tgt_vocab, max_tokens=64)
        data = "random ids, 64-position batches"
    elif args.data == "random":
        src_vocab, tgt_vocab = 7853, 5893  # the cpu preset's vocabularies
        batches = random_batches(needed, src_vocab, tgt_vocab)
        data = f"random ids, {MAX_TOKENS}-position batches"
    else:
        batches, src_vocab, tgt_vocab = multi30k_batches(needed)
        data = f"Multi30k train, {MAX_TOKENS}-position batches (the cpu preset's), shuffled with seed 0"
    print(f"data: {data}; vocabularies {src_vocab:,} / {tgt_vocab:,}\n")

    rows = []
    for size in sizes:
        print(f"- {size.describe()}", flush=True)
        for precision in precisions:
            result = measure(size, batches, src_vocab, tgt_vocab, bf16=precision == "bf16")
            rows.append([size.label, "float32" if precision == "fp32" else "bf16 autocast",
                         f"{result['params'] / 1e6:.2f} M", result["steps"], f"{result['tokens_per_step']:.0f}",
                         f"{result['reference']:,.0f}", f"{result['torch']:,.0f}",
                         f"{result['ref_ms']:.0f} / {result['torch_ms']:.0f}",
                         f"**{result['ratio']:.2f}**", f"{result['median_step_ratio']:.2f}"])
    print()
    print(markdown_table(["size", "precision", "parameters", "timed steps", "target tokens / step",
                          "reference tokens/s", "nn.Transformer tokens/s", "median step ms (ref / torch)",
                          "ratio ref / torch", "median per-step ratio"], rows))
    if args.profile:
        for size in sizes:
            profile(size, batches, src_vocab, tgt_vocab, args.profile)
    footer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
