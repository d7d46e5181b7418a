"""The architecture figure of chapters 5-7: every block drawn, the asked-for parts highlighted."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from course_utils.notebook.plotting import ARCHITECTURE_PARTS, plot_architecture  # noqa: E402

BLOCKS = {
    "encoder.embedding", "encoder.positional_encoding", "encoder.layers", "encoder.attention",
    "encoder.norm1", "encoder.feed_forward", "encoder.norm2",
    "decoder.embedding", "decoder.positional_encoding", "decoder.layers", "decoder.self_attention",
    "decoder.norm1", "decoder.cross_attention", "decoder.norm2", "decoder.feed_forward", "decoder.norm3",
    "generator", "softmax",
}
GREY = "#ececec"


def faces(highlight) -> dict[str, str]:
    fig = plot_architecture(highlight)
    try:
        return {patch.get_gid(): to_hex(patch.get_facecolor()) for patch in fig.axes[0].patches
                if patch.get_gid() in BLOCKS}
    finally:
        plt.close(fig)


def test_every_block_is_drawn_in_colour_without_a_highlight() -> None:
    drawn = faces(None)
    assert set(drawn) == BLOCKS
    assert all(colour != GREY for name, colour in drawn.items() if not name.endswith("positional_encoding"))


@pytest.mark.parametrize(("highlight", "lit"), [
    ("encoder", {"encoder.embedding", "encoder.positional_encoding", "encoder.layers", "encoder.attention",
                 "encoder.norm1", "encoder.feed_forward", "encoder.norm2"}),
    ("feed_forward", {"encoder.feed_forward", "decoder.feed_forward"}),
    (("masks", "transformer"), {"decoder.self_attention", "generator"}),
])
def test_only_the_highlighted_blocks_keep_their_colour(highlight, lit: set[str]) -> None:
    drawn = faces(highlight)
    blocks = {name for name in BLOCKS if not name.endswith(("positional_encoding", ".layers"))}
    assert {name for name in blocks if drawn[name] != GREY} == lit & blocks
    assert {name for name in drawn if drawn[name] == GREY} >= blocks - lit


def test_the_decoder_chapter_lights_the_whole_right_half() -> None:
    drawn = faces("decoder")
    decoder = {name for name in BLOCKS if name.startswith("decoder.") and not name.endswith(("_encoding", ".layers"))}
    assert all(drawn[name] != GREY for name in decoder)
    assert all(drawn[name] == GREY for name in BLOCKS - decoder if not name.endswith(("_encoding", ".layers")))


def test_an_unknown_part_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown part.*'encodr'.*choose from"):
        plot_architecture("encodr")
    assert "encoder" in ARCHITECTURE_PARTS and "masks" in ARCHITECTURE_PARTS
