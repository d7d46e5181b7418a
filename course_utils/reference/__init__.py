"""The answer key: one readable, typed, documented module per topic.

Every chapter after the first may import earlier pieces from here, so a student stuck in
one chapter can still finish the next. The autograders refuse these objects as answers to
the exercise that asks for them (see :mod:`course_utils.course.guard`).
"""

from course_utils.reference.attention import attention_scores, scaled_dot_product_attention
from course_utils.reference.bpe import BPETokenizer, apply_merges, count_pairs, learn_merges, merge_pair
from course_utils.reference.decoder import Decoder, DecoderLayer
from course_utils.reference.decoding import greedy_decode
from course_utils.reference.encoder import Encoder, EncoderLayer
from course_utils.reference.feed_forward import FeedForwardNetwork
from course_utils.reference.gpt import (
    GPT,
    CharTokenizer,
    GPTBlock,
    LayerCache,
    cached_attention,
    generate,
    generate_cached,
    get_batch,
    sample_next_token,
)
from course_utils.reference.label_smoothing import LabelSmoothingLoss
from course_utils.reference.masking import create_causal_mask, create_masks, create_padding_mask
from course_utils.reference.modern import (
    ModernBlock,
    ModernConfig,
    ModernGPT,
    RMSNorm,
    RotaryEmbedding,
    SwiGLU,
    apply_rotary,
    fused_causal_attention,
    rotary_tables,
    swiglu_hidden_size,
)
from course_utils.reference.multi_head_attention import (
    MultiHeadAttention,
    combine_heads,
    split_heads,
)
from course_utils.reference.positional_encoding import PositionalEncoding, sinusoidal_table
from course_utils.reference.schedule import NoamScheduler
from course_utils.reference.transformer import Transformer
from course_utils.reference.translation import batch_by_tokens, collate_batch, train_epoch

__all__ = [
    "BPETokenizer",
    "apply_merges",
    "count_pairs",
    "learn_merges",
    "merge_pair",
    "batch_by_tokens",
    "collate_batch",
    "train_epoch",
    "CharTokenizer",
    "GPT",
    "GPTBlock",
    "LayerCache",
    "cached_attention",
    "generate",
    "generate_cached",
    "get_batch",
    "sample_next_token",
    "ModernBlock",
    "ModernConfig",
    "ModernGPT",
    "RMSNorm",
    "RotaryEmbedding",
    "SwiGLU",
    "apply_rotary",
    "fused_causal_attention",
    "rotary_tables",
    "swiglu_hidden_size",
    "Decoder",
    "DecoderLayer",
    "Encoder",
    "EncoderLayer",
    "FeedForwardNetwork",
    "LabelSmoothingLoss",
    "MultiHeadAttention",
    "NoamScheduler",
    "PositionalEncoding",
    "Transformer",
    "attention_scores",
    "combine_heads",
    "create_causal_mask",
    "create_masks",
    "create_padding_mask",
    "greedy_decode",
    "scaled_dot_product_attention",
    "sinusoidal_table",
    "split_heads",
]
