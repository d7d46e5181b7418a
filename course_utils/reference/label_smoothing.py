"""Label smoothing (Vaswani et al., 2017, section 5.4; Szegedy et al., 2016, section 7).

Instead of the one-hot target, the model is trained towards the smoothed distribution

    q(k) = (1 - eps) * [k == y] + eps / V          for every class k = 0 .. V-1,

so the true class ``y`` gets ``1 - eps + eps/V`` and every other class ``eps/V``. The loss is
the cross-entropy with that target, which splits into two familiar terms:

    H(q, p) = (1 - eps) * (-log p_y) + eps * mean_k(-log p_k).

This is the convention of Szegedy et al. (the paper the Transformer cites) and of
``nn.CrossEntropyLoss(label_smoothing=eps)``. Others exist: the Transformer's own code
(tensor2tensor) gives ``eps/(V-1)`` to the wrong classes and exactly ``1 - eps`` to the true
one, and reports the loss minus its minimum (a KL divergence); The Annotated Transformer
gives nothing to the padding class. They differ by ``O(eps/V)`` and train alike.

Padding: positions whose target is ``pad_idx`` are not tokens. They contribute nothing, and
the mean is over the real tokens only (``ignore_index=pad_idx`` in PyTorch). The padding
*class* is still one of the ``V`` classes and receives ``eps/V`` at real positions, as in
PyTorch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from course_utils.course.guard import answer_key


@answer_key("LabelSmoothingLoss")
class LabelSmoothingLoss(nn.Module):
    """Cross-entropy with label smoothing, averaged over the non-padding tokens.

    Equal to ``nn.CrossEntropyLoss(label_smoothing=smoothing, ignore_index=pad_idx)`` applied
    to the flattened logits and targets.

    Args:
        smoothing: ``eps``, the probability mass spread uniformly over all ``V`` classes.
        pad_idx: the target index of padding positions, which are left out of the loss.
    """

    def __init__(self, smoothing: float = 0.1, pad_idx: int = 0) -> None:
        super().__init__()
        if not 0.0 <= smoothing <= 1.0:
            raise ValueError(f"smoothing must be in [0, 1], got {smoothing}")
        self.smoothing = smoothing
        self.pad_idx = pad_idx

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits`` ``(B, L, V)`` or ``(N, V)``, ``target`` ``(B, L)`` or ``(N,)`` -> scalar.

        The result has the logits' dtype; it is NaN when every target is padding (0 / 0),
        as PyTorch's is.
        """
        vocab_size = logits.size(-1)
        log_probs = logits.reshape(-1, vocab_size).log_softmax(dim=-1)  # (N, V)
        target = target.reshape(-1)  # (N,)
        real = target != self.pad_idx  # (N,) True at the tokens that count
        # gather needs a valid index at every position; padded ones are dropped below.
        safe_target = target.masked_fill(~real, 0)
        nll = -log_probs.gather(-1, safe_target.unsqueeze(-1)).squeeze(-1)  # (N,) -log p_y
        uniform = -log_probs.mean(dim=-1)  # (N,) cross-entropy with the uniform distribution
        per_token = (1.0 - self.smoothing) * nll + self.smoothing * uniform  # (N,)
        return per_token[real].mean()
