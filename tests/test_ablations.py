"""Chapter 11's ablations: each arm really changes the model it claims to, and every comparison runs.

Four comparisons run once, in quick mode, through the benchmark's ``--quick`` path (a few seconds per
arm): one of the reversal task and the three that share chapter 10's arm; their numbers mean nothing
and are not asserted, only their form. Chapter 11's notebook runs every comparison in quick mode under
nbval, so each one's code runs in the suite. The properties that make an
arm what it says (no positions, one head, unscaled scores) are tested on the models themselves.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks import ablations as bench
from course_utils.training import ablations
from course_utils.data.toy import TOY_PAD_IDX
from course_utils.reference import GPT
from course_utils.reference.masking import create_padding_mask
from course_utils.reference.modern import ModernGPT, RMSNorm, SwiGLU


#: The comparisons of the quick benchmark run: both tasks, and the arm that three comparisons share.
QUICK_RUN = ["positions_reversal", "positions", "mlp", "norm"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("ablations")
    import contextlib
    import io

    ablations.clear_cache()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), torch.random.fork_rng():
        assert bench.main(["--quick", "--only", *QUICK_RUN, "--out-dir", str(out)]) == 0
    return out, buffer.getvalue()


def _encoder_states(model, src: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.encode(src, create_padding_mask(src, TOY_PAD_IDX))


def test_without_positions_the_encoder_cannot_see_the_order() -> None:
    src = torch.randint(3, 13, (4, 10), generator=torch.Generator().manual_seed(0))  # no padding
    permutation = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    plain = ablations.reversal_model(0, positions=False)
    states, permuted = _encoder_states(plain, src), _encoder_states(plain, src[:, permutation])
    torch.testing.assert_close(permuted, states[:, permutation], atol=1e-5, rtol=1e-5)
    # The control: the same weights with positions are not permutation-equivariant.
    with_positions = ablations.reversal_model(0)
    states, permuted = _encoder_states(with_positions, src), _encoder_states(with_positions, src[:, permutation])
    assert (permuted - states[:, permutation]).abs().max() > 1e-2


def test_unscaled_attention_computes_plain_dot_products() -> None:
    scaled = ablations.reversal_model(0, **ablations.SCALING)
    unscaled = ablations.reversal_model(0, scaled=False, **ablations.SCALING)
    attention, plain = scaled.encoder.layers[0].self_attn, unscaled.encoder.layers[0].self_attn
    assert attention.d_k == 64 and attention.num_heads == 1
    x = torch.randn(2, 7, 64, generator=torch.Generator().manual_seed(2))
    attention(x, x, x)
    plain(x, x, x)
    q, k = attention.W_q(x), attention.W_k(x)  # one head: (B, L, d_k)
    torch.testing.assert_close(plain.attention_weights[:, 0], torch.softmax(q @ k.transpose(1, 2), dim=-1))
    torch.testing.assert_close(attention.attention_weights[:, 0],
                               torch.softmax(q @ k.transpose(1, 2) / math.sqrt(64), dim=-1))
    assert (plain.attention_weights - attention.attention_weights).abs().max() > 1e-2
    # Same parameters, same names under the wrapper: the two arms start from identical weights.
    assert sum(p.numel() for p in scaled.parameters()) == sum(p.numel() for p in unscaled.parameters())
    torch.testing.assert_close(unscaled.encoder.layers[0].self_attn.W_q.projection.weight,
                               scaled.encoder.layers[0].self_attn.W_q.weight)


def test_language_model_arms_are_the_models_they_name() -> None:
    one_head, eight_heads = ablations.lm_model(0, "gpt", num_heads=1), ablations.lm_model(0, "gpt", num_heads=8)
    assert type(one_head) is GPT and one_head.blocks[0].attn.num_heads == 1 and one_head.blocks[0].attn.d_k == 128
    assert eight_heads.blocks[0].attn.num_heads == 8 and eight_heads.blocks[0].attn.d_k == 16
    modern = ablations.lm_model(0, **ablations.MODERN)
    assert isinstance(modern, ModernGPT) and modern.rotary is not None
    assert isinstance(modern.blocks[0].ln1, RMSNorm) and isinstance(modern.blocks[0].mlp, SwiGLU)
    base = ablations.lm_model(0, **ablations.BASE)
    assert isinstance(base.blocks[0].ln1, torch.nn.LayerNorm) and hasattr(base, "position_embedding")
    post = ablations.lm_model(0, **{**ablations.BASE, "norm_first": False})
    assert not post.blocks[0].norm_first and base.blocks[0].norm_first
    # SwiGLU at the GELU MLP's parameter count (d_model 128: equal).
    swiglu = ablations.lm_model(0, **{**ablations.BASE, "mlp": "swiglu"})
    assert sum(p.numel() for p in swiglu.parameters()) == sum(p.numel() for p in base.parameters())


def test_bf16_arm_runs_under_autocast() -> None:
    model = ablations.lm_model(0, **ablations.MODERN)
    wrapped = ablations._AutocastLM(model, "cpu")
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        plain, autocast = model(idx), wrapped(idx)
    assert autocast.dtype == torch.float32 and list(wrapped.parameters()) == list(model.parameters())
    # bfloat16 keeps about 3 significant digits: close to float32, but not equal.
    assert 0 < (autocast - plain).abs().max() < 0.1
    features = ablations.cpu_features()
    assert {"cpu", "avx512_bf16", "amx_tile", "bf16_is_fast"} <= set(features)


def test_comparisons_run_in_quick_mode_and_write_their_figures(quick_run) -> None:
    out, printed = quick_run
    data = json.loads((out / "ablations.json").read_text(encoding="utf-8"))
    results = data["runs"]["seed0"]
    assert list(results) == QUICK_RUN
    for name, result in results.items():
        assert (out / f"ablation_{name}.png").stat().st_size > 5000, name
        assert result["seed"] == 0 and result["budget"] == "quick" and len(result["arms"]) >= 2
        for arm in result["arms"]:
            assert arm["steps"] > 0 and arm["seconds"] > 0 and arm["tokens_per_second"] > 0, (name, arm["label"])
            assert len(arm["curve"]) >= 2 and arm["curve"][-1]["step"] <= arm["steps"], (name, arm["label"])
            assert math.isfinite(arm["final"]), (name, arm["label"])
            # The curve's clock is the arm's training clock: its last point is the end of training.
            assert abs(arm["curve"][-1]["seconds"] - arm["seconds"]) < 0.1 + 0.05 * arm["seconds"], (name, arm)
        assert f"### {result['title']}" in printed
    assert data["machines"]["seed0"]["budget"] == "quick"
    assert "Summary: what each choice buys" in printed
    # Arms that are the same setting are trained once and shared: chapter 10's choices appear thrice.
    base = [r["arms"][0] for r in (results["positions"], results["mlp"], results["norm"])]
    assert base[0]["curve"] == base[1]["curve"] == base[2]["curve"]


def test_results_print_plot_and_round_trip(quick_run) -> None:
    result = ablations.positions_on_reversal("quick")  # trained by the quick run: reused from the cache
    text = result.table()
    assert "sinusoidal positions" in text and "no positions" in text and "baseline" in text
    again = ablations.Ablation.from_dict(json.loads(json.dumps(result.to_dict())))
    assert json.dumps(again.to_dict()) == json.dumps(result.to_dict())  # (NaN != NaN: compared as text)
    assert [arm.label for arm in again.arms] == [arm.label for arm in result.arms]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = result.plot()
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
    _, ax = plt.subplots()
    assert result.plot(ax) is ax
    plt.close("all")
    summary = ablations.summary_table({"positions_reversal": result})
    assert summary.count("positions_reversal") == 2


def test_the_spread_is_the_gap_between_seeds() -> None:
    def run(seed: int, finals: tuple[float, float]) -> ablations.Ablation:
        arms = [ablations.Arm(label, {}, [], final, 1, 1.0, 1.0, 1) for label, final in zip("ab", finals)]
        return ablations.Ablation("x", "x", "loss", False, arms, seed, "full")

    runs = {"seed0": {"x": run(0, (1.50, 1.60))}, "seed1": {"x": run(1, (1.53, 1.58))}}
    gaps = bench.spread(runs, "x")
    assert gaps == pytest.approx({"a": 0.03, "b": 0.02})
    rows = bench.summary_rows(runs, "seed0")
    assert rows[1][3] == "+0.100" and rows[1][-1] == "0.020 (2 seeds)"
    assert bench.spread({"seed0": runs["seed0"]}, "x") == {}


def test_budget_follows_quick_mode(monkeypatch) -> None:
    monkeypatch.setenv("COURSE_QUICK", "1")
    assert ablations._budget(None).name == "quick"
    monkeypatch.setenv("COURSE_QUICK", "0")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert ablations._budget(None).name == "full"
    with pytest.raises(ValueError, match="budget"):
        ablations._budget("medium")


def test_nothing_trains_while_nbgrader_executes_the_notebook(monkeypatch) -> None:
    """Autograding (or the Validate button) runs the notebook: the ungraded comparisons say so, in milliseconds."""
    monkeypatch.setenv("COURSE_QUICK", "1")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    results = {}
    for name, comparison in ablations.COMPARISONS.items():
        result = comparison()
        assert not result.ran and result.budget == "not run", name
        assert len(result.arms) >= 2 and all(arm.steps == 0 and math.isnan(arm.final) for arm in result.arms)
        assert result.table() == f"{result.title}: {ablations.NOT_RUN_REASON}.", name
        results[name] = result
    assert ablations.summary_table(results).startswith("No comparison ran (nbgrader is executing")
    assert ablations.positions_on_reversal("quick").ran  # an explicit budget still trains
    monkeypatch.delenv("NBGRADER_EXECUTION")
    assert ablations._budget(None).name == "quick"
