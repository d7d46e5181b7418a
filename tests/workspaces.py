"""Student workspaces for tests: the release notebooks with exercise cells filled in.

:func:`make_workspace` copies ``notebooks/`` into a folder as ``make lab`` does, and fills each
exercise cell with the solution's code (without the nbgrader markers, as a student's cell looks)
or with the code given in ``overrides``, keyed by ``(chapter, grade_id)``. ``STUDENT`` holds a
class's worth of overrides: correct pieces written differently from the reference, one wrong,
one left blank, one that loops.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from course_utils.course.chapters import RELEASE_DIR, chapters, nbgrader_meta, release_notebook, source_notebook


def _solution_code(source: str) -> str:
    return "\n".join(line for line in source.split("\n")
                     if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)


def make_workspace(root: Path, overrides: dict[tuple[str, str], str | None] | None = None,
                   only: list[str] | None = None) -> Path:
    """Write ``root/<id>/<id>.ipynb`` for every released chapter (or those in ``only``); returns ``root``.

    An override of ``None`` leaves the cell as released (``raise NotImplementedError()``).
    """
    overrides = overrides or {}
    for chapter in only or chapters(RELEASE_DIR):
        notebook = json.loads(release_notebook(chapter).read_text(encoding="utf-8"))
        solved = {nbgrader_meta(c).get("grade_id"): "".join(c["source"])
                  for c in json.loads(source_notebook(chapter).read_text(encoding="utf-8"))["cells"]}
        for cell in notebook["cells"]:
            grade_id = nbgrader_meta(cell).get("grade_id")
            if not nbgrader_meta(cell).get("solution") or cell["cell_type"] != "code":
                continue
            if (chapter, grade_id) in overrides:
                code = overrides[(chapter, grade_id)]
                if code is None:
                    continue
                cell["source"] = textwrap.dedent(code).strip() + "\n"
            else:
                cell["source"] = _solution_code(solved[grade_id])
        folder = root / chapter
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{chapter}.ipynb").write_text(json.dumps(notebook, indent=1), encoding="utf-8")
    return root


# ---- a student's answers ------------------------------------------------------------------------

#: Correct, but not the reference's code: einsum and a hand-written softmax.
EINSUM_ATTENTION = '''
def scaled_dot_product_attention(query, key, value, mask=None):
    """einsum version (a student's own)."""
    scores = torch.einsum("...qd,...kd->...qk", query, key) / math.sqrt(query.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    scores = scores - scores.amax(dim=-1, keepdim=True)
    weights = scores.exp()
    weights = weights / weights.sum(dim=-1, keepdim=True)
    return torch.einsum("...qk,...kd->...qd", weights, value), weights
'''

#: Correct: the step counter read from the optimizer's own count, the formula written out.
OTHER_NOAM = '''
class NoamScheduler(LRScheduler):
    """A student's own: rates from a closed form in the step number."""

    def __init__(self, optimizer, d_model, warmup_steps, factor=1.0):
        self.scale = factor / math.sqrt(d_model)
        self.warmup = warmup_steps
        super().__init__(optimizer)

    def get_lr(self):
        step = self.last_epoch + 1
        rate = self.scale * min(1 / math.sqrt(step), step / self.warmup ** 1.5)
        return [rate for _ in self.optimizer.param_groups]
'''

#: Wrong: no ReLU.
LINEAR_FFN = '''
class FeedForwardNetwork(nn.Module):
    def __init__(self, d_model, d_ff, dropout=0.1):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.linear2(self.dropout(self.linear1(x)))
'''

#: Loops for ever, in Python, in forward.
LOOPING_DECODER_LAYER = '''
class DecoderLayer(nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.feed_forward = FeedForwardNetwork(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, memory, src_mask=None, tgt_mask=None):
        while True:
            pass
'''

STUDENT: dict[tuple[str, str], str | None] = {
    ("01_attention", "sdpa_solution"): EINSUM_ATTENTION,
    ("03_feed_forward", "ffn_solution"): LINEAR_FFN,
    ("04_positional_encoding", "pe_solution"): None,   # not written yet
    ("06_decoder", "layer_solution"): LOOPING_DECODER_LAYER,
    ("08_scheduler", "schedule_solution"): OTHER_NOAM,
}
