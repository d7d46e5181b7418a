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
