"""The autograders that the notebooks' grade cells call, one module per chapter.

Usage in a grade cell::

    from course_utils import checks
    checks.check_scaled_dot_product_attention(scaled_dot_product_attention)

Each check prints one line on success and raises ``AssertionError`` (a
:class:`~course_utils.checks.harness.CheckFailure`) with an actionable message otherwise.
"""

from course_utils.checks.attention import check_attention_scores, check_scaled_dot_product_attention
from course_utils.checks.harness import CheckFailure
from course_utils.checks.multi_head_attention import (
    check_combine_heads,
    check_multi_head_attention,
    check_split_heads,
)

__all__ = [
    "CheckFailure",
    "check_attention_scores",
    "check_combine_heads",
    "check_multi_head_attention",
    "check_scaled_dot_product_attention",
    "check_split_heads",
]
