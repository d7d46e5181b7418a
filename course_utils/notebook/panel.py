"""A generation panel for chapter 10: type a prompt, pick the sampling settings, watch the text appear.

:func:`generation_panel` builds it from ipywidgets (a text box, sliders for the temperature, top-k,
top-p and length, a Generate button, an output area that fills as tokens are sampled, with the key/value
cache). :func:`stream_text` does the same without widgets: it prints the text as it is sampled, so
the chapter works in a plain terminal, in nbconvert, or where widgets are not installed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from course_utils.reference.gpt import cached_attention, sample_next_token, stream_cached

__all__ = ["generation_panel", "stream_text"]


def stream_text(model: nn.Module, tokenizer: Any, prompt: str = "\n", max_new_tokens: int = 300,
                temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None, *,
                sample: Callable[..., torch.Tensor] = sample_next_token,
                attend: Callable[..., torch.Tensor] = cached_attention,
                on_text: Callable[[str], None] | None = None, seed: int | None = None) -> str:
    """Sample ``max_new_tokens`` characters after ``prompt`` and hand each to ``on_text`` as it comes.

    ``sample`` and ``attend`` are your ``sample_next_token`` and ``cached_attention`` in the chapter.
    ``on_text`` defaults to printing without a newline. Returns the prompt followed by the new text.
    """
    printing = on_text is None
    if on_text is None:
        def on_text(piece: str) -> None:
            sys.stdout.write(piece)
            if "\n" in piece:  # flushing every character would send hundreds of tiny messages to Jupyter
                sys.stdout.flush()
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    idx = torch.tensor([tokenizer.encode(prompt or "\n")], device=device)
    pieces = [prompt]
    on_text(prompt)
    for token in stream_cached(model, idx, max_new_tokens, temperature, top_k, top_p, generator, attend, sample):
        piece = tokenizer.decode(token[0].tolist())
        pieces.append(piece)
        on_text(piece)
    if printing:
        print(flush=True)
    return "".join(pieces)


def generation_panel(model: nn.Module, tokenizer: Any, *, sample: Callable[..., torch.Tensor] = sample_next_token,
                     attend: Callable[..., torch.Tensor] = cached_attention, prompt: str = "ROMEO:\n") -> Any:
    """An ipywidgets panel around :func:`stream_text`; returns the widget (display it, or end a cell with it)."""
    import ipywidgets as widgets

    label_style = {"description_width": "initial"}  # the default width cuts the labels short
    prompt_box = widgets.Textarea(value=prompt, description="prompt", layout=widgets.Layout(width="95%", height="60px"))
    temperature = widgets.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.05, description="temperature", style=label_style)
    top_k = widgets.IntSlider(value=0, min=0, max=tokenizer.vocab_size, description="top-k (0: off)", style=label_style)
    top_p = widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p (1: off)", style=label_style)
    length = widgets.IntSlider(value=300, min=10, max=2000, step=10, description="characters", style=label_style)
    button = widgets.Button(description="Generate", button_style="primary")
    text = widgets.Textarea(value="", layout=widgets.Layout(width="95%", height="320px"))
    status = widgets.Label(value="")

    def generate(_: Any) -> None:
        unknown = sorted(set(prompt_box.value) - set(tokenizer.stoi))
        if unknown:
            status.value = f"not in the vocabulary: {unknown}"
            return
        button.disabled, text.value, status.value = True, "", "sampling..."
        shown: list[str] = []

        def show(piece: str) -> None:
            shown.append(piece)
            if len(shown) % 5 == 0 or piece == "\n":  # redrawing on every character would be slow
                text.value = "".join(shown)

        try:
            stream_text(model, tokenizer, prompt_box.value, length.value, temperature.value,
                        top_k.value or None, top_p.value if top_p.value < 1.0 else None,
                        sample=sample, attend=attend, on_text=show)
            text.value = "".join(shown)
            status.value = f"{length.value} characters"
        finally:
            button.disabled = False

    button.on_click(generate)
    return widgets.VBox([prompt_box, widgets.HBox([temperature, top_k]), widgets.HBox([top_p, length]),
                         widgets.HBox([button, status]), text])
