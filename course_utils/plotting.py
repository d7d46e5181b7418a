"""Figures shared by the chapters: attention heatmaps, one map or one per head."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def plot_attention(weights: torch.Tensor, query_labels: Sequence[str] | None = None,
                   key_labels: Sequence[str] | None = None, ax: Axes | None = None,
                   title: str | None = None, annotate: bool = True) -> Axes:
    """Heatmap of one attention map ``(Lq, Lk)``: a row per query, a column per key.

    Args:
        annotate: write each weight in its cell (readable up to about 10 x 10).
    """
    w = weights.detach().float().cpu()
    if w.dim() != 2:
        raise ValueError(f"plot_attention expects (Lq, Lk) weights, got shape {tuple(w.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * w.size(1) + 1.8, 0.6 * w.size(0) + 1.2))
    image = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(w.size(1)), key_labels if key_labels is not None else range(w.size(1)),
                  rotation=45, ha="right")
    ax.set_yticks(range(w.size(0)), query_labels if query_labels is not None else range(w.size(0)))
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if annotate and w.numel() <= 144:
        for i in range(w.size(0)):
            for j in range(w.size(1)):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if w[i, j] > 0.6 else "white")
    if title:
        ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_heads(weights: torch.Tensor, query_labels: Sequence[str] | None = None,
               key_labels: Sequence[str] | None = None, title: str | None = None,
               annotate: bool = False) -> Figure:
    """One heatmap per head, side by side, from weights ``(H, Lq, Lk)``."""
    w = weights.detach().float().cpu()
    if w.dim() != 3:
        raise ValueError(f"plot_heads expects (H, Lq, Lk) weights, got shape {tuple(w.shape)}")
    heads = w.size(0)
    fig, axes = plt.subplots(1, heads, figsize=(4.2 * heads, 4.0), squeeze=False)
    for h, ax in enumerate(axes[0]):
        plot_attention(w[h], query_labels, key_labels, ax=ax, title=f"head {h}", annotate=annotate)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def shade_masked(ax: Axes, mask: torch.Tensor, color: str = "0.8") -> Axes:
    """Hatch the cells of an attention heatmap where ``mask`` ``(Lq, Lk)`` is False (may not attend).

    Draw it over :func:`plot_attention`'s axes to show which weights a mask forced to zero.
    """
    from matplotlib.patches import Rectangle

    m = mask.detach().cpu().bool()
    if m.dim() != 2:
        raise ValueError(f"shade_masked expects an (Lq, Lk) mask, got shape {tuple(m.shape)}")
    for i, j in (~m).nonzero().tolist():
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor=color,
                               linewidth=0))
    return ax


def plot_masks(masks: dict[str, torch.Tensor], labels: Sequence[str] | None = None,
               title: str | None = None) -> Figure:
    """Boolean masks ``(Lq, Lk)`` side by side: allowed (True) cells dark, blocked cells light.

    Args:
        masks: panel title -> mask; each is squeezed to 2-D (a ``(1, 1, L, L)`` mask is fine).
        labels: tick labels for both axes (e.g. the tokens), when queries and keys are the same.
    """
    fig, axes = plt.subplots(1, len(masks), figsize=(3.6 * len(masks), 3.8), squeeze=False)
    for ax, (name, mask) in zip(axes[0], masks.items()):
        m = mask.detach().cpu()
        while m.dim() > 2:
            m = m[0]
        if m.dim() != 2:
            raise ValueError(f"plot_masks: {name!r} should be (Lq, Lk), got shape {tuple(mask.shape)}")
        ax.imshow(m.float(), cmap="Blues", vmin=-0.25, vmax=1.0)
        ticks_q = labels if labels is not None and len(labels) == m.size(0) else range(m.size(0))
        ticks_k = labels if labels is not None and len(labels) == m.size(1) else range(m.size(1))
        ax.set_xticks(range(m.size(1)), ticks_k, rotation=45, ha="right")
        ax.set_yticks(range(m.size(0)), ticks_q)
        for i in range(m.size(0)):
            for j in range(m.size(1)):
                if not m[i, j]:
                    ax.text(j, i, "×", ha="center", va="center", fontsize=8, color="0.45")
        ax.set_xlabel("key (attended to)")
        ax.set_ylabel("query (attending)")
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_batches(batchings: dict[str, Sequence[Sequence[int]]], lengths: Sequence[int],
                 title: str | None = None) -> Figure:
    """Batches drawn as blocks, one row per sentence: dark = tokens, light = padding.

    Args:
        batchings: panel title -> list of batches (lists of indices into ``lengths``); the
            batches are stacked top to bottom, separated by a thin gap.
        lengths: the length of every sentence.
    """
    fig, axes = plt.subplots(1, len(batchings), figsize=(4.2 * len(batchings), 4.6), squeeze=False)
    for ax, (name, batches) in zip(axes[0], batchings.items()):
        width = max(max(lengths[i] for i in b) for b in batches)
        rows = []
        real = padded = 0
        for batch in batches:
            longest = max(lengths[i] for i in batch)
            for i in batch:
                rows.append([1.0] * lengths[i] + [0.35] * (longest - lengths[i]) + [0.0] * (width - longest))
            rows.append([0.0] * width)  # gap between batches
            real += sum(lengths[i] for i in batch)
            padded += len(batch) * longest
        ax.imshow(rows, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        ax.set_title(f"{name}\n{1 - real / padded:.0%} of the computed positions are padding")
        ax.set_xlabel("position")
        ax.set_ylabel("sentences, batch after batch")
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_training_history(history: Sequence[dict], title: str | None = None) -> Figure:
    """Training curves from per-epoch records (``course_utils.train``'s ``history``).

    Each record has ``batch_losses`` (the training loss of every step, label-smoothed) and
    ``val_loss`` (held-out cross-entropy per token); the left panel shows the first against
    steps, the right one the second against epochs, with the perplexity on a second axis.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    losses = [x for record in history for x in record.get("batch_losses", [])]
    if losses:
        left.plot(range(1, len(losses) + 1), losses, lw=0.6, alpha=0.5, label="each batch")
        window = max(1, len(losses) // 50)
        if window > 1:
            smooth = [sum(losses[max(0, i - window + 1): i + 1]) / len(losses[max(0, i - window + 1): i + 1])
                      for i in range(len(losses))]
            left.plot(range(1, len(losses) + 1), smooth, lw=1.5, label=f"mean of {window}")
        left.legend()
    left.set_xlabel("training step")
    left.set_ylabel("training loss (label-smoothed)")
    left.set_title("training loss")
    epochs = [record["epoch"] for record in history]
    val = [record["val_loss"] for record in history]
    right.plot(epochs, val, marker="o")
    right.set_xlabel("epoch")
    right.set_ylabel("validation cross-entropy per token")
    right.set_title("validation loss")
    if epochs:
        right.set_xticks(epochs)
    twin = right.twinx()
    twin.set_ylim(*[2.718281828 ** y for y in right.get_ylim()])
    twin.set_yscale("log")
    twin.set_ylabel("perplexity")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_attention_grid(maps: Sequence[torch.Tensor], query_labels: Sequence[str] | None = None,
                        key_labels: Sequence[str] | None = None, mask: torch.Tensor | None = None,
                        row_label: str = "layer", title: str | None = None) -> Figure:
    """Attention maps of a stack, one row per layer and one column per head, on one colour scale.

    Args:
        maps: one ``(H, Lq, Lk)`` tensor per layer (e.g. each layer's ``self_attn.attention_weights[b]``).
        mask: optional ``(Lq, Lk)`` boolean mask (True = may attend); blocked cells are hatched.
        row_label: how to name the rows (``"layer 0"``, ``"layer 1"``, ...).
    """
    ws = [m.detach().float().cpu() for m in maps]
    if not ws or any(w.dim() != 3 for w in ws):
        raise ValueError("plot_attention_grid expects a list of (H, Lq, Lk) tensors, one per layer")
    rows, cols = len(ws), max(w.size(0) for w in ws)
    lq, lk = ws[0].shape[1:]
    size = 0.28 * max(lq, lk) + 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols + 1.2, size * rows + 0.6), squeeze=False,
                             layout="constrained")
    image = None
    for r, w in enumerate(ws):
        for h, ax in enumerate(axes[r]):
            if h >= w.size(0):
                ax.axis("off")
                continue
            image = ax.imshow(w[h], cmap="viridis", vmin=0.0, vmax=1.0)
            if mask is not None:
                shade_masked(ax, mask)
            ax.set_xticks(range(lk), key_labels if key_labels is not None and r == rows - 1 else
                          [""] * lk if key_labels is not None else range(lk), rotation=90)
            ax.set_yticks(range(lq), query_labels if query_labels is not None and h == 0 else
                          [""] * lq if query_labels is not None else range(lq))
            ax.set_title(f"{row_label} {r}, head {h}", fontsize=10)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02, label="attention weight")
    if title:
        fig.suptitle(title)
    return fig
