"""Autograders for chapter 10_gpt's sampling: ``sample_next_token`` (temperature, top-k, top-p) and
``generate``.

They draw many tokens from fixed logits and compare the frequencies with the intended distribution
by a chi-square test whose false-alarm rate is stated (:data:`FALSE_ALARM`): a correct answer fails
it with that probability, whatever its random draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_utils.checks.harness import (
    Check,
    describe,
    device_names,
    devices,
    expect_callable,
    expect_tensor,
    fail,
    one_thread,
    seeded,
)

__all__ = ["FALSE_ALARM", "check_generate", "check_sample_next_token", "chi_square_threshold", "intended_distribution"]


#: Probability that one frequency test rejects a correct sampler (the chi-square test's upper tail).
FALSE_ALARM = 1e-6


def chi_square_threshold(df: int, false_alarm: float = FALSE_ALARM) -> float:
    """The value a chi-square variable with ``df`` degrees of freedom exceeds with probability ``false_alarm``.

    Its survival function is the regularised upper incomplete gamma function, ``Q(df / 2, x / 2)``
    (``torch.special.gammaincc``); the threshold is found by bisection, to 1e-6 relative.
    """
    def tail(x: float) -> float:
        return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                             torch.tensor(x / 2, dtype=torch.float64)))

    low, high = 0.0, 10.0 * df + 100.0
    while high - low > 1e-6 * high:
        mid = (low + high) / 2
        low, high = (mid, high) if tail(mid) > false_alarm else (low, mid)
    return high

# --------------------------------------------------------------------------------------
# sample_next_token(logits, temperature=1.0, top_k=None, top_p=None, generator=None) -> (B, 1)
# --------------------------------------------------------------------------------------

_PROBS = [0.35, 0.25, 0.15, 0.1, 0.07, 0.05, 0.02, 0.01]


def _fixed_logits(seed: int) -> Tensor:
    """Log-probabilities of :data:`_PROBS` in a shuffled token order (so sorted order != id order)."""
    with seeded(seed):
        order = torch.randperm(len(_PROBS))
    logits = torch.empty(len(_PROBS), dtype=torch.float64)
    logits[order] = torch.tensor(_PROBS, dtype=torch.float64).log()
    return logits + 1.7  # not normalised: the softmax must do it


def intended_distribution(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None, *,
                          crossing_token: bool = True, temperature_after: bool = False,
                          top_p_first: bool = False) -> Tensor:
    """The distribution ``sample_next_token`` should sample ``logits`` ``(V,)`` from (or a known-wrong one)."""
    scores = logits.double() if temperature_after else logits.double() / temperature

    def cut_k(s: Tensor) -> Tensor:
        if top_k is None:
            return s
        kth = s.topk(min(top_k, len(s))).values[-1]
        return s.masked_fill(s < kth, -math.inf)

    def cut_p(s: Tensor) -> Tensor:
        if top_p is None:
            return s
        p = s.softmax(-1)
        sorted_p, order = p.sort(descending=True)
        before = sorted_p.cumsum(-1) - sorted_p
        drop = before >= top_p if crossing_token else sorted_p.cumsum(-1) >= top_p
        if not crossing_token:
            drop[0] = False
        mask = torch.zeros_like(drop)
        mask[order] = drop
        return s.masked_fill(mask, -math.inf)

    scores = cut_k(cut_p(scores)) if top_p_first else cut_p(cut_k(scores))
    probs = scores.softmax(-1)
    if temperature_after:
        probs = probs / temperature
        probs = probs / probs.sum()
    return probs


def _chi_square(counts: Tensor, probs: Tensor) -> tuple[float, int]:
    """(statistic, degrees of freedom) over the tokens of positive probability; inf if one outside is drawn."""
    support = probs > 0
    if (counts[~support] > 0).any():
        return math.inf, int(support.sum()) - 1
    n = counts.sum().double()
    expected = probs[support] * n
    return float(((counts[support].double() - expected) ** 2 / expected).sum()), int(support.sum()) - 1


def check_sample_next_token(sample_next_token: Callable[..., Tensor], seed: int = 0, samples: int = 20_000) -> None:
    """Check ``sample_next_token``: shape ``(B, 1)`` int64; temperature 0 (and near 0) is greedy; nothing
    outside the top-k or the nucleus; the frequencies of ``samples`` draws match the intended distribution
    (chi-square test, false-alarm rate :data:`FALSE_ALARM` per case); reproducible with a generator."""
    fn = expect_callable(sample_next_token, "sample_next_token")
    check = Check("sample_next_token")
    check.refuse_answer_key(fn)
    hints = {"probability tensor contains": "the probabilities are not valid: divide the LOGITS by the temperature "
                                            "(temperature 0 means greedy: return the argmax without dividing), "
                                            "set removed tokens to -inf, and softmax before torch.multinomial.",
             "invalid multinomial distribution": "torch.multinomial needs probabilities (>= 0): softmax the logits first."}
    base = _fixed_logits(seed)
    V = len(base)
    with one_thread():
        for device in devices():
            for dtype in (torch.float32, torch.float64):
                with seeded(seed + 1):
                    rows = (torch.randn(5, V, dtype=torch.float64) * 2).to(device=device, dtype=dtype)
                for temperature in (0, 1e-4):
                    what = f"sample_next_token(logits (5, {V}), temperature={temperature}) on {device.type} in {dtype}"
                    got = check.call(fn, rows, temperature, what=what, on_error=hints)
                    expect_tensor(got, what, (5, 1), hint="return one token per row, shape (B, 1): keepdim=True, or "
                                                          "torch.multinomial(probs, num_samples=1).")
                    if got.dtype != torch.long or got.device != rows.device:
                        fail(f"{what} returned {describe(got)}: token ids are int64 on the logits' device.")
                    if not torch.equal(got, rows.argmax(-1, keepdim=True)):
                        fail(f"{what} gave {got.flatten().tolist()}, but as the temperature goes to 0 sampling becomes "
                             f"greedy: the argmax of each row, {rows.argmax(-1).tolist()}."
                             + ("\nHint: treat temperature == 0 as argmax (logits / 0 is not a distribution)."
                                if temperature == 0 else
                                "\nHint: divide the LOGITS by the temperature before the softmax; dividing the "
                                "probabilities changes nothing once they are normalised again."))
        cases: list[tuple[float, int | None, float | None]] = [
            (1.0, None, None), (0.7, None, None), (1.5, 3, None), (1.0, None, 0.7), (0.8, 4, 0.8)]
        for temperature, top_k, top_p in cases:
            what = (f"sample_next_token(logits, temperature={temperature}, top_k={top_k}, top_p={top_p}) "
                    f"for {samples} rows of the same logits")
            logits = base.float().expand(samples, V).contiguous()
            got = check.call(fn, logits, temperature, top_k, top_p, torch.Generator().manual_seed(seed),
                             what=what, on_error=hints)
            expect_tensor(got, what, (samples, 1))
            counts = torch.bincount(got.flatten().long(), minlength=V).double()[:V]
            want = intended_distribution(base, temperature, top_k, top_p)
            stat, df = _chi_square(counts, want)
            threshold = chi_square_threshold(max(df, 1))
            if stat <= threshold:
                continue
            freq = (counts / samples).tolist()
            message = (f"{what}: the frequencies {[round(f, 3) for f in freq]} do not match the intended "
                       f"probabilities {[round(p, 3) for p in want.tolist()]} (chi-square {stat:.1f} > {threshold:.1f}, "
                       f"a test a correct sampler fails with probability {FALSE_ALARM:g}).")
            outside = [i for i in range(V) if want[i] == 0 and counts[i] > 0]
            if outside:
                message += (f"\nToken(s) {outside} were drawn although they are outside the "
                            f"{'top-k' if top_k and top_p is None else 'kept set (top-k/nucleus)'}.")
            wrong = {
                "the temperature is applied after the softmax (or not at all): divide the logits by it, then softmax.":
                    intended_distribution(base, temperature, top_k, top_p, temperature_after=True),
                "the temperature multiplies the logits: divide them by it (logits / temperature), so that a "
                "temperature below 1 sharpens the distribution.": intended_distribution(base, 1 / temperature, top_k, top_p),
                "top_k is ignored: keep only the top_k largest logits (torch.topk), set the others to -inf.":
                    intended_distribution(base, temperature, None, top_p),
                "top-k keeps k + 1 tokens: the k-th largest logit is topk(...).values[..., -1]; keep logits >= it.":
                    intended_distribution(base, temperature, (top_k or 0) + 1 if top_k else None, top_p),
                "top-k keeps k - 1 tokens: keep every logit >= the k-th largest (>=, not >).":
                    intended_distribution(base, temperature, top_k - 1 if top_k and top_k > 1 else None, top_p),
                "top_p is ignored: keep the smallest set of most likely tokens whose probabilities sum to >= top_p.":
                    intended_distribution(base, temperature, top_k, None),
                "the nucleus misses the token that crosses top_p: keep a token when the probability BEFORE it "
                "(cumulative minus its own) is below top_p, so the set reaches top_p.":
                    intended_distribution(base, temperature, top_k, top_p, crossing_token=False),
                "the nucleus is cut before the temperature / top-k: apply the temperature, then top-k, then top-p "
                "on the resulting probabilities.": intended_distribution(base, temperature, top_k, top_p, top_p_first=True),
            }
            for explanation, candidate in wrong.items():
                if not torch.allclose(candidate, want, atol=1e-3) and _chi_square(counts, candidate)[0] <= \
                        chi_square_threshold(max(_chi_square(counts, candidate)[1], 1)):
                    fail(message + f"\nLikely mistake: {explanation}")
            fail(message + "\nHint: logits / temperature; top-k; then top-p on the softmax of what is left; -inf "
                           "for removed tokens; softmax; torch.multinomial(probs, 1, generator=generator).")
        logits = base.float().expand(64, V).contiguous()
        torch.manual_seed(1)
        first = check.call(fn, logits, 1.0, None, None, torch.Generator().manual_seed(seed + 7))
        torch.manual_seed(2)
        second = check.call(fn, logits, 1.0, None, None, torch.Generator().manual_seed(seed + 7))
        if not torch.equal(first, second):
            fail("two calls with generators seeded alike drew different tokens: pass the generator on, "
                 "torch.multinomial(probs, 1, generator=generator).")
    check.passed(f"(B, 1) int64, temperature -> 0 is greedy, top-k, nucleus, frequencies match "
                 f"(chi-square, false alarm {FALSE_ALARM:g} per case), generator, on {device_names()}")


# --------------------------------------------------------------------------------------
# generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None)
# --------------------------------------------------------------------------------------


class _ScriptedLM(nn.Module):
    """A fake language model: the next token after (a, b) is (3b + 2a + 1) mod V, with a confident margin.

    Records every input; refuses contexts longer than ``block_size`` with a message about cropping.
    """

    def __init__(self, vocab: int, block_size: int) -> None:
        super().__init__()
        self.vocab, self.block_size = vocab, block_size
        self.scale = nn.Parameter(torch.tensor(6.0))
        self.inputs: list[Tensor] = []

    def forward(self, idx: Tensor) -> Tensor:
        self.inputs.append(idx.detach().clone())
        if idx.size(1) > self.block_size:
            raise ValueError(f"the model got a context of {idx.size(1)} tokens, more than its block_size="
                             f"{self.block_size}")
        prev = torch.cat([idx[:, :1], idx[:, :-1]], dim=1)
        nxt = (3 * idx + 2 * prev + 1) % self.vocab
        return self.scale * F.one_hot(nxt, self.vocab).float()

    @staticmethod
    def next_of(seq: list[int], vocab: int) -> int:
        a = seq[-2] if len(seq) > 1 else seq[-1]
        return (3 * seq[-1] + 2 * a + 1) % vocab


class _FixedLM(nn.Module):
    """A fake language model whose next-token logits never change."""

    def __init__(self, logits: Tensor, block_size: int) -> None:
        super().__init__()
        self.block_size = block_size
        self.logits = nn.Parameter(logits.float().clone())

    def forward(self, idx: Tensor) -> Tensor:
        return self.logits.expand(idx.size(0), idx.size(1), -1)


def check_generate(generate: Callable[..., Tensor], seed: int = 0, batch: int = 3, prompt_len: int = 3,
                   block_size: int = 5, new_tokens: int = 8, vocab: int = 7) -> None:
    """Check ``generate``: the prompt followed by ``max_new_tokens`` tokens, each sampled from the logits of
    the LAST position of the model run on the last ``block_size`` tokens at most; temperature, top-k and
    top-p passed on to the sampling; reproducible with a generator."""
    fn = expect_callable(generate, "generate")
    check = Check("generate")
    check.refuse_answer_key(fn)
    hints = {"more than its block_size": "crop the context to the model's window before each call: "
                                        "idx[:, -model.block_size:] (the LAST block_size tokens)."}
    with one_thread():
        model = _ScriptedLM(vocab, block_size).eval()
        with seeded(seed):
            prompt = torch.randint(vocab, (batch, prompt_len))
        what = f"generate(model, idx {tuple(prompt.shape)}, max_new_tokens={new_tokens}, temperature=0)"
        got = check.call(fn, model, prompt, new_tokens, 0, what=what, on_error=hints)
        expect_tensor(got, what, (batch, prompt_len + new_tokens),
                      hint="return the prompt followed by the new tokens: torch.cat([idx, next_token], dim=1) "
                           "at each step, and return idx.")
        if not torch.equal(got[:, :prompt_len].cpu(), prompt):
            fail(f"{what} should start with the prompt {prompt.tolist()}, but it starts with "
                 f"{got[:, :prompt_len].tolist()}.")
        def simulate(window: Callable[[list[int]], list[int]], position: int = -1) -> Tensor:
            rows = [prompt[b].tolist() for b in range(batch)]
            for _ in range(new_tokens):
                for row in rows:
                    context = window(row)
                    upto = context[: len(context) + position + 1] if position < 0 else context[: position + 1]
                    row.append(_ScriptedLM.next_of(upto, vocab))
            return torch.tensor(rows)

        want = simulate(lambda row: row[-block_size:])
        if not torch.equal(got.cpu(), want):
            if torch.equal(got.cpu(), simulate(lambda row: row[-block_size:], position=0)):
                fail(f"{what} gave {got.tolist()}, expected {want.tolist()} (greedy on the model's logits).\n"
                     f"Likely mistake: the next token comes from the logits of the FIRST position; take the logits of "
                     f"the LAST position, logits[:, -1, :], the one that has read the whole context.")
            if torch.equal(got.cpu(), simulate(lambda row: row[:block_size])):
                fail(f"{what} gave {got.tolist()}, expected {want.tolist()}.\nLikely mistake: the context is cropped "
                     f"to the FIRST {block_size} tokens; crop to the LAST block_size tokens, idx[:, -block_size:], "
                     f"the context of the next one.")
        if len(model.inputs) != new_tokens:
            fail(f"{what} called the model {len(model.inputs)} times, expected {new_tokens}: one call per new token.")
        for step, seen in enumerate(model.inputs):
            length = prompt_len + step
            window = want[:, max(0, length - block_size):length]
            if not torch.equal(seen.cpu(), window):
                fail(f"at step {step} the model should see the last min(T, block_size) tokens {window.tolist()}, but it "
                     f"got {seen.tolist()}: crop with idx[:, -model.block_size:].")
        if not torch.equal(got.cpu(), want):
            fail(f"{what} gave {got.tolist()}, expected {want.tolist()} (greedy on the logits of the last position, "
                 f"appended one at a time).")
        fixed = _FixedLM(_fixed_logits(seed), block_size).eval()
        prompt = torch.zeros(50, 1, dtype=torch.long)
        for kwargs, allowed, name in (
                ({"top_k": 2}, 2, "top_k=2"), ({"top_p": 0.3}, 1, "top_p=0.3"), ({}, None, "no limit")):
            what = f"generate(fixed-logits model, idx (50, 1), 30, temperature=1.0, {name})"
            out = check.call(fn, fixed, prompt, 30, 1.0, kwargs.get("top_k"), kwargs.get("top_p"),
                             torch.Generator().manual_seed(seed), what=what, on_error=hints)
            expect_tensor(out, what, (50, 31))
            drawn = out[:, 1:].flatten()
            order = fixed.logits.detach().argsort(descending=True)
            if allowed is not None:
                outside = sorted(set(drawn.tolist()) - set(order[:allowed].tolist()))
                if outside:
                    fail(f"{what} drew tokens {outside}, which are outside the {allowed} kept by {name}: pass "
                         f"temperature, top_k and top_p on to sample_next_token.")
            elif len(set(drawn.tolist())) < 5:
                fail(f"{what} drew only the tokens {sorted(set(drawn.tolist()))} in 1,500 draws: at temperature 1 "
                     f"with no top-k or top-p it should sample from the whole distribution, not take the argmax.")
        a = check.call(fn, fixed, prompt, 10, 1.0, None, None, torch.Generator().manual_seed(seed + 3))
        torch.manual_seed(99)
        b = check.call(fn, fixed, prompt, 10, 1.0, None, None, torch.Generator().manual_seed(seed + 3))
        if not torch.equal(a, b):
            fail("two calls with generators seeded alike gave different text: pass the generator on to the sampling.")
    check.passed("prompt + new tokens, context cropped to the last block_size, last position's logits, "
                 "temperature/top-k/top-p passed on, generator")
