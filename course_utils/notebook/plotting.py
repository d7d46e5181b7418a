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
    """Training curves from per-epoch records (``course_utils.training.translator``'s ``history``).

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


# --------------------------------------------------------------------------------------
# The architecture: figure 1 of the paper, redrawn, with the chapter that builds each part
# --------------------------------------------------------------------------------------

#: The groups :func:`plot_architecture` can highlight, and what each one covers.
ARCHITECTURE_PARTS: dict[str, str] = {
    "attention": "every multi-head attention (chapters 1-2)",
    "feed_forward": "the two feed-forward networks (chapter 3)",
    "positional_encoding": "the two positional encodings (chapter 4)",
    "encoder": "the whole encoder: embedding, positions, N layers (chapter 5)",
    "decoder": "the whole decoder: embedding, positions, N layers (chapter 6)",
    "masks": "where the padding and causal masks enter (chapter 7)",
    "transformer": "the wiring of encoder, decoder and generator into one model (chapter 7)",
    "loss": "the softmax, which the course leaves to the loss (chapter 8)",
}

# Face colours close to the paper's figure: attention orange, feed-forward blue, Add & Norm
# yellow, embeddings pink, the output layer violet, the softmax green.
_ARCH_COLOURS = {"attention": "#f9d9b0", "feed_forward": "#c6e2f5", "add_norm": "#f6f1a8",
                 "embedding": "#f5c9d6", "linear": "#ddd0ee", "softmax": "#cdeccb",
                 "positional": "#ffffff", "frame": "#f1f1f1"}
_ARCH_MUTED = "#ececec"
_ARCH_MUTED_TEXT = "#9a9a9a"


def plot_architecture(highlight: str | Sequence[str] | None = None, title: str | None = None,
                      ax: Axes | None = None) -> Figure:
    """The encoder-decoder Transformer (figure 1 of Vaswani et al., 2017), drawn anew.

    Every block names the chapter of this course that builds it. With ``highlight``, the
    blocks of the given groups (:data:`ARCHITECTURE_PARTS`) keep their colours and the rest
    turns grey, so a chapter can show where its piece sits in the whole model.

    Args:
        highlight: one group name or several (``"encoder"``, ``("masks", "transformer")``);
            None: everything in colour.
        title: the figure's title.
        ax: draw into these axes (default: a new figure).

    Returns:
        the figure. Each block is a patch whose ``gid`` is its name (``"encoder.attention"``,
        ``"decoder.cross_attention"``, ``"generator"``, ...), for tests and further styling.
    """
    from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

    groups = {highlight} if isinstance(highlight, str) else set(highlight or ())
    unknown = groups - set(ARCHITECTURE_PARTS)
    if unknown:
        raise ValueError(f"plot_architecture: unknown part(s) {sorted(unknown)}; "
                         f"choose from {sorted(ARCHITECTURE_PARTS)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(8.6, 9.2))
    fig = ax.figure

    def lit(tags: set[str]) -> bool:
        return not groups or bool(groups & tags)

    def arrow(start: tuple[float, float], end: tuple[float, float], tags: set[str], *,
              path: Sequence[tuple[float, float]] = (), head: bool = True) -> None:
        points = [start, *path, end]
        colour = "#333333" if lit(tags) else "#bbbbbb"
        for a, b in zip(points[:-2], points[1:-1]):
            ax.plot([a[0], b[0]], [a[1], b[1]], color=colour, lw=1.3, solid_capstyle="butt", zorder=1)
        ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>" if head else "-",
                                     mutation_scale=11, color=colour, lw=1.3, shrinkA=0, shrinkB=0, zorder=1))

    w, h = 3.3, 0.62

    def block(name: str, x: float, y: float, text: str, chapter: str, kind: str, tags: set[str],
              width: float = w) -> None:
        on = lit(tags)
        ax.add_patch(FancyBboxPatch((x - width / 2, y - h / 2), width, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    facecolor=_ARCH_COLOURS[kind] if on else _ARCH_MUTED,
                                    edgecolor="#333333" if on else "#c4c4c4", lw=1.6 if groups and on else 1.0,
                                    gid=name, zorder=3))
        ax.text(x, y + 0.09, text, ha="center", va="center", fontsize=9.5, zorder=4,
                color="black" if on else _ARCH_MUTED_TEXT)
        ax.text(x, y - 0.17, chapter, ha="center", va="center", fontsize=7.5, zorder=4,
                color="#555555" if on else _ARCH_MUTED_TEXT, style="italic")

    def frame(name: str, x: float, bottom: float, top: float, tags: set[str], side: str) -> None:
        on = lit(tags)
        ax.add_patch(FancyBboxPatch((x - w / 2 - 0.3, bottom), w + 0.6, top - bottom,
                                    boxstyle="round,pad=0.02,rounding_size=0.2", gid=name, zorder=0,
                                    facecolor=_ARCH_COLOURS["frame"] if on else "#fafafa",
                                    edgecolor="#555555" if on else "#d0d0d0", lw=1.6 if groups and on else 1.0))
        ax.text(x - w / 2 - 0.45 if side == "left" else x + w / 2 + 0.45, (bottom + top) / 2, "N ×",
                ha="right" if side == "left" else "left", va="center", fontsize=11,
                color="black" if on else _ARCH_MUTED_TEXT)

    def add_positions(name: str, x: float, y: float, side: str, tags: set[str]) -> None:
        on = lit(tags)
        colour = "#333333" if on else "#bbbbbb"
        ax.add_patch(Circle((x, y), 0.2, facecolor="white", edgecolor=colour, lw=1.3, zorder=3, gid=f"{name}.add"))
        ax.text(x, y, "+", ha="center", va="center", fontsize=12, color=colour, zorder=4)
        # A small sinusoid, as in the paper, with its label beside it.
        cx = x - 1.15 if side == "left" else x + 1.15
        ax.add_patch(Circle((cx, y), 0.3, facecolor="white", edgecolor=colour, lw=1.3, zorder=3, gid=name))
        t = torch.linspace(-1.0, 1.0, 40)
        ax.plot(cx + 0.22 * t, y + 0.14 * torch.sin(3.2 * t), color=colour, lw=1.0, zorder=4)
        ax.plot([cx + (0.3 if side == "left" else -0.3), x + (-0.2 if side == "left" else 0.2)], [y, y],
                color=colour, lw=1.3, zorder=1)
        label_x = cx - 0.42 if side == "left" else cx + 0.42
        ax.text(label_x, y + 0.07, "positional\nencoding", ha="right" if side == "left" else "left",
                va="center", fontsize=8.5, color="black" if on else _ARCH_MUTED_TEXT)
        ax.text(label_x, y - 0.36, "ch. 4", ha="right" if side == "left" else "left", va="center",
                fontsize=7.5, style="italic", color="#555555" if on else _ARCH_MUTED_TEXT)

    def residual(x: float, y_from: float, y_to: float, side: str, tags: set[str]) -> None:
        # The residual path: around the sublayer, into its Add & Norm.
        edge = x - w / 2 - 0.16 if side == "left" else x + w / 2 + 0.16
        arrow((x, y_from), (x - w / 2 if side == "left" else x + w / 2, y_to), tags,
              path=[(edge, y_from), (edge, y_to)])

    def mask_badge(x: float, y: float, text: str) -> None:
        on = lit({"masks"})
        ax.text(x, y, text, ha="center", va="center", fontsize=7.5, zorder=5, gid=f"mask.{text}",
                color="#7a1f1f" if on else _ARCH_MUTED_TEXT,
                bbox={"boxstyle": "round,pad=0.18", "facecolor": "#fde2e2" if on else "#f5f5f5",
                      "edgecolor": "#b55" if on else "#d5d5d5", "lw": 0.8})

    enc, dec = 2.7, 7.9
    encoder, decoder = {"encoder"}, {"decoder"}
    # --- the encoder (left), bottom to top --------------------------------------------
    ax.text(enc, 0.25, "inputs: source token ids (B, Ls)", ha="center", va="center", fontsize=9,
            color="black" if lit(encoder) else _ARCH_MUTED_TEXT)
    block("encoder.embedding", enc, 1.1, "input embedding × √d_model", "ch. 5", "embedding", encoder)
    add_positions("encoder.positional_encoding", enc, 2.05, "left", encoder | {"positional_encoding"})
    frame("encoder.layers", enc, 2.6, 6.55, encoder, "left")
    block("encoder.attention", enc, 3.35, "multi-head attention", "ch. 1–2 (self-attention)", "attention",
          encoder | {"attention"})
    block("encoder.norm1", enc, 4.3, "add & norm", "ch. 5", "add_norm", encoder)
    block("encoder.feed_forward", enc, 5.1, "feed forward", "ch. 3", "feed_forward", encoder | {"feed_forward"})
    block("encoder.norm2", enc, 6.05, "add & norm", "ch. 5", "add_norm", encoder)
    arrow((enc, 0.42), (enc, 1.1 - h / 2), encoder)
    arrow((enc, 1.1 + h / 2), (enc, 2.05 - 0.2), encoder)
    arrow((enc, 2.05 + 0.2), (enc, 3.35 - h / 2), encoder)
    residual(enc, 2.8, 4.3, "left", encoder)
    arrow((enc, 3.35 + h / 2), (enc, 4.3 - h / 2), encoder)
    arrow((enc, 4.3 + h / 2), (enc, 5.1 - h / 2), encoder)
    residual(enc, 4.72, 6.05, "left", encoder)
    arrow((enc, 5.1 + h / 2), (enc, 6.05 - h / 2), encoder)
    mask_badge(enc + 1.2, 2.85, "src_mask")
    # --- the decoder (right), bottom to top --------------------------------------------
    ax.text(dec, 0.25, "outputs, shifted right: <bos> + target ids (B, Lt)", ha="center", va="center", fontsize=9,
            color="black" if lit(decoder) else _ARCH_MUTED_TEXT)
    block("decoder.embedding", dec, 1.1, "output embedding × √d_model", "ch. 6", "embedding", decoder)
    add_positions("decoder.positional_encoding", dec, 2.05, "right", decoder | {"positional_encoding"})
    frame("decoder.layers", dec, 2.6, 9.0, decoder, "right")
    block("decoder.self_attention", dec, 3.35, "masked multi-head attention", "ch. 2, causal mask ch. 7",
          "attention", decoder | {"attention", "masks"})
    block("decoder.norm1", dec, 4.3, "add & norm", "ch. 6", "add_norm", decoder)
    block("decoder.cross_attention", dec, 5.45, "multi-head attention", "ch. 2 (cross-attention), ch. 6",
          "attention", decoder | {"attention"})
    block("decoder.norm2", dec, 6.4, "add & norm", "ch. 6", "add_norm", decoder)
    block("decoder.feed_forward", dec, 7.3, "feed forward", "ch. 3", "feed_forward", decoder | {"feed_forward"})
    block("decoder.norm3", dec, 8.3, "add & norm", "ch. 6", "add_norm", decoder)
    arrow((dec, 0.42), (dec, 1.1 - h / 2), decoder)
    arrow((dec, 1.1 + h / 2), (dec, 2.05 - 0.2), decoder)
    arrow((dec, 2.05 + 0.2), (dec, 3.35 - h / 2), decoder)
    residual(dec, 2.8, 4.3, "right", decoder)
    arrow((dec, 3.35 + h / 2), (dec, 4.3 - h / 2), decoder)
    arrow((dec, 4.3 + h / 2), (dec, 5.45 - h / 2), decoder)
    residual(dec, 4.9, 6.4, "right", decoder)
    arrow((dec, 5.45 + h / 2), (dec, 6.4 - h / 2), decoder)
    arrow((dec, 6.4 + h / 2), (dec, 7.3 - h / 2), decoder)
    residual(dec, 6.95, 8.3, "right", decoder)
    arrow((dec, 7.3 + h / 2), (dec, 8.3 - h / 2), decoder)
    mask_badge(dec - 1.2, 2.85, "tgt_mask")
    mask_badge(dec - 1.2, 4.9, "src_mask")
    # --- the memory: the encoder's output, keys and values of every cross-attention ----
    gap = (enc + w / 2 + 0.3 + dec - w / 2 - 0.3) / 2
    memory = encoder | decoder | {"transformer"}
    arrow((enc, 6.05 + h / 2), (dec - w / 2, 5.45), memory, path=[(enc, 7.0), (gap, 7.0), (gap, 5.45)])
    ax.text(gap - 0.1, 7.2, "memory (B, Ls, d_model)", ha="center", va="bottom", fontsize=8.5,
            color="black" if lit(memory) else _ARCH_MUTED_TEXT)
    ax.text(gap + 0.12, 5.7, "keys,\nvalues", ha="left", va="bottom", fontsize=7.5,
            color="#555555" if lit(memory) else _ARCH_MUTED_TEXT)
    # --- the output layer ---------------------------------------------------------------
    block("generator", dec, 9.75, "linear: the generator", "ch. 7, returns logits (B, Lt, V)", "linear",
          {"transformer"})
    block("softmax", dec, 10.75, "softmax", "in the loss (ch. 8), not in the model", "softmax",
          {"loss"})
    arrow((dec, 8.3 + h / 2), (dec, 9.75 - h / 2), decoder | {"transformer"})
    arrow((dec, 9.75 + h / 2), (dec, 10.75 - h / 2), {"transformer", "loss"})
    arrow((dec, 10.75 + h / 2), (dec, 11.45), {"loss"})
    ax.text(dec, 11.6, "next-token probabilities", ha="center", va="center", fontsize=9,
            color="black" if lit({"loss"}) else _ARCH_MUTED_TEXT)
    ax.text(enc, 8.6, "encoder", ha="center", va="center", fontsize=13,
            color="black" if lit(encoder) else _ARCH_MUTED_TEXT, fontweight="bold")
    ax.text(dec + w / 2 + 0.45, 9.35, "decoder", ha="left", va="center", fontsize=13, rotation=90,
            color="black" if lit(decoder) else _ARCH_MUTED_TEXT, fontweight="bold")
    ax.set_xlim(-0.3, 10.9)
    ax.set_ylim(0.0, 11.9)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig
