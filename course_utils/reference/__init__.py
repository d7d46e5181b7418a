"""The answer key: one readable, typed, documented module per topic.

Every chapter after the first may import earlier pieces from here, so a student stuck in
one chapter can still finish the next. The autograders refuse these objects as answers to
the exercise that asks for them (see :mod:`course_utils.guard`).
"""

from course_utils.reference.attention import attention_scores, scaled_dot_product_attention
from course_utils.reference.multi_head_attention import (
    MultiHeadAttention,
    combine_heads,
    split_heads,
)

__all__ = [
    "MultiHeadAttention",
    "attention_scores",
    "combine_heads",
    "scaled_dot_product_attention",
    "split_heads",
]
