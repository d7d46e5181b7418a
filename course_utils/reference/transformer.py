"""The full encoder-decoder Transformer (Vaswani et al., 2017, figure 1)."""

from __future__ import annotations

from torch import Tensor, nn

from course_utils.course.guard import answer_key
from course_utils.reference.decoder import Decoder
from course_utils.reference.encoder import Encoder
from course_utils.reference.masking import create_masks


@answer_key("Transformer")
class Transformer(nn.Module):
    """Encoder, decoder and ``generator`` (a linear layer to target-vocabulary logits).

    Args:
        src_vocab_size, tgt_vocab_size: sizes of the source and target vocabularies.
        d_model, num_layers, num_heads, d_ff, dropout, max_seq_length: passed on to the
            :class:`~course_utils.reference.Encoder` and :class:`~course_utils.reference.Decoder`
            (defaults: the paper's base model).
        pad_idx: the padding token of both vocabularies; ``forward`` builds its masks with it.

    ``forward`` is for training (teacher forcing); generation calls ``encode`` once and
    ``decode`` + ``generator`` once per new token (see :func:`~course_utils.reference.greedy_decode`).
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d_model: int = 512,
                 num_layers: int = 6, num_heads: int = 8, d_ff: int = 2048, dropout: float = 0.1,
                 max_seq_length: int = 5000, pad_idx: int = 0) -> None:
        super().__init__()
        self.pad_idx = pad_idx
        self.encoder = Encoder(src_vocab_size, d_model, num_layers, num_heads, d_ff, dropout, max_seq_length)
        self.decoder = Decoder(tgt_vocab_size, d_model, num_layers, num_heads, d_ff, dropout, max_seq_length)
        # Logits, not probabilities: the loss (cross-entropy) applies log-softmax itself.
        self.generator = nn.Linear(d_model, tgt_vocab_size)
        # Glorot initialisation of every matrix, as in the paper's code; it trains faster
        # from scratch than PyTorch's default for these layers.
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def encode(self, src: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """``src`` ``(B, Ls)``, ``src_mask`` ``(B, 1, 1, Ls)`` -> memory ``(B, Ls, d_model)``."""
        return self.encoder(src, src_mask)

    def decode(self, tgt: Tensor, memory: Tensor, src_mask: Tensor | None = None,
               tgt_mask: Tensor | None = None) -> Tensor:
        """``tgt`` ``(B, Lt)``, memory ``(B, Ls, d_model)``, ``src_mask`` ``(B, 1, 1, Ls)``,
        ``tgt_mask`` ``(B, 1, Lt, Lt)`` -> decoder states ``(B, Lt, d_model)`` (before the generator)."""
        return self.decoder(tgt, memory, src_mask, tgt_mask)

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """``src`` ``(B, Ls)``, ``tgt`` ``(B, Lt)`` (the shifted-right target) -> logits ``(B, Lt, V_tgt)``."""
        src_mask, tgt_mask = create_masks(src, tgt, self.pad_idx)
        memory = self.encode(src, src_mask)
        return self.generator(self.decode(tgt, memory, src_mask, tgt_mask))
