"""The check harness shared by every chapter's autograders.

A check is a function ``check_<thing>(student_answer, seed=0, **sizes)`` that:

1. refuses the answer key itself (:meth:`Check.refuse_answer_key`);
2. runs the student's code on seeded random inputs through :meth:`Check.call`, which turns
   any exception into an :class:`CheckFailure` that says what was called with what;
3. compares results with :func:`expect_close` (shape, dtype, device, then values, with the
   largest error and where it is, and the likely mistake) and property helpers;
4. repeats on every device in :func:`course_utils.notebook.device.available_devices`;
5. ends with :meth:`Check.passed`, one short line on stdout.

A correct answer writes nothing to stderr: nbgrader scores a grade cell with stderr output
as 0, so warnings raised by student code are caught and reported on stdout instead.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sysconfig
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from course_utils.notebook.device import available_devices, torch_threads
from course_utils.course.guard import ReferenceUsedError, answer_key_name, forbid


class CheckFailure(AssertionError):
    """A check found something to fix. The message says what, and usually why.

    Its first line is a complete, short statement of what is wrong (tools that show one line,
    such as a summary of which pieces fell back to the reference, show that line).

    In a notebook, IPython shows an exception through its ``_render_traceback_`` when it has one:
    a failed check then shows its message first and none of the checker's own frames, only the
    student's where their code raised (see :func:`failure_report`). The cell still ends in an
    error, which is what makes nbgrader score it 0, and nbgrader's feedback HTML shows the same
    lines, since it renders the error output the kernel sent.
    """

    def _render_traceback_(self) -> list[str]:
        return failure_report(self)


#: Frames from these folders are the checker's or PyTorch's, never the student's.
_HIDDEN_FRAME_DIRS = tuple(str(Path(p).resolve()) for p in (
    Path(__file__).parents[1], Path(torch.__file__).parent, sysconfig.get_paths()["purelib"],
    sysconfig.get_paths()["stdlib"]))


def _student_frames(error: BaseException) -> list[traceback.FrameSummary]:
    """The frames of ``error``'s traceback that are in the student's code (not the checker's, not torch's)."""
    frames = traceback.extract_tb(error.__traceback__)
    return [f for f in frames if not str(Path(f.filename).resolve()).startswith(_HIDDEN_FRAME_DIRS)]


def failure_report(failure: BaseException) -> list[str]:
    """What a notebook shows for a failed check, as lines: the message (first line in red, after
    the exception's name), then, when the student's code raised, that error and the lines of the
    student's code it went through."""
    red, bold, reset = "\x1b[0;31m", "\x1b[1m", "\x1b[0m"
    first, *rest = str(failure).split("\n") or [""]
    lines = [f"{red}{type(failure).__name__}{reset}: {bold}{first}{reset}", *rest]
    cause = failure.__cause__ or failure.__context__
    if cause is not None and not isinstance(cause, (CheckFailure, NotImplementedError, ReferenceUsedError)):
        frames = _student_frames(cause)
        if frames:
            lines += ["", f"Where your code raised {type(cause).__name__} (most recent call last):"]
            lines += [line.rstrip("\n") for line in traceback.format_list(frames)]
    lines += ["", "(The checker's own code is hidden: the message above is the whole diagnosis.)"]
    return lines


def fail(message: str) -> NoReturn:
    """Stop the check with a message for the student."""
    raise CheckFailure(message)


def describe(x: Any) -> str:
    """A short description of a value for messages: tensors by shape, dtype and device."""
    if isinstance(x, Tensor):
        return f"tensor of shape {tuple(x.shape)}, {str(x.dtype).replace('torch.', '')}, on {x.device.type}"
    if isinstance(x, (tuple, list)):
        inner = ", ".join(describe(v) for v in x)
        return f"{type(x).__name__} of {len(x)}: ({inner})"
    if x is None:
        return "None"
    if isinstance(x, (torch.device, torch.dtype)):
        return repr(x)  # torch.device(type='cpu'), torch.float32: not just the type's name
    return f"{type(x).__name__} {x!r}" if isinstance(x, (int, float, bool, str)) else type(x).__name__


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch for a block without disturbing the notebook's own random state."""
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def devices() -> list[torch.device]:
    """The devices every check runs on (CPU, and CUDA when present)."""
    return available_devices()


#: Where tensors that the student's code creates without ``device=`` land under :func:`fake_accelerator`.
_FAKE_DEFAULT_DEVICE: list[str] = []


@contextlib.contextmanager
def fake_accelerator() -> Iterator[None]:
    """Run checks as a GPU machine would expose code that only works on the CPU, without a GPU.

    On a GPU, the inputs live on CUDA while a tensor created without ``device=`` lands on the CPU,
    and mixing the two raises. Under this context, every call of student code that is given tensors
    (or a device) runs with ``meta`` as PyTorch's default device: a tensor the student creates
    without ``device=`` (or ``*_like``, ``x.new_*``) lands on ``meta``, away from the CPU inputs, and
    mixing them raises just as on CUDA. Used by the tests; modules are built as usual (their
    parameters and buffers are moved by ``.to(device)``, which the checks do).
    """
    _FAKE_DEFAULT_DEVICE.append("meta")
    try:
        yield
    finally:
        _FAKE_DEFAULT_DEVICE.pop()


def _gives_tensors(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    values = [*args, *kwargs.values()]
    values += [v for x in values if isinstance(x, (tuple, list)) for v in x]
    return any(isinstance(v, (Tensor, torch.device)) for v in values)


def devices_and_dtypes(module: nn.Module | None = None) -> Iterator[tuple[torch.device, torch.dtype, str]]:
    """Every (device, dtype) that checks compare values on: float32 and float64 on each of
    :func:`devices`, CPU float32 first. ``module``, when given, is moved there before each is
    yielded. The third item words the pair for messages: ``" on cpu in float32"``."""
    for device in devices():
        for dtype in (torch.float32, torch.float64):
            if module is not None:
                module.to(device=device, dtype=dtype)
            yield device, dtype, f" on {device.type} in {dtype_name(dtype)}"


def device_names() -> str:
    """``"cpu"`` or ``"cpu/cuda"`` (the devices the check ran on), for success lines; under
    :func:`fake_accelerator`, ``"cpu (strict devices: meta default)"``."""
    names = "/".join(d.type for d in devices())
    return f"{names} (strict devices: meta default)" if _FAKE_DEFAULT_DEVICE else names


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """(atol, rtol) loose enough for a different but correct order of operations."""
    if dtype == torch.float64:
        return 1e-9, 1e-7
    return 2e-5, 1e-4


def dtype_name(dtype: torch.dtype) -> str:
    """A dtype as messages name it: ``"float32"`` for ``torch.float32``."""
    return str(dtype).replace("torch.", "")


def one_thread() -> contextlib.AbstractContextManager[None]:
    """Run a block on one CPU thread, and restore the thread count afterwards.

    The checks' models are tiny: one thread is faster for them, and does not slow down badly
    when other programs (or the notebook kernel's own threads) compete for the cores.
    """
    return torch_threads(1)


def steady(check: Callable[..., None]) -> Callable[..., None]:
    """Decorate a check to run on one CPU thread, with PyTorch's fused attention "fast path" off.

    One thread: the checks' models are tiny, and several threads slow down badly when other programs
    (or the notebook kernel's own threads) compete for the cores, which makes a check take seconds
    instead of a fraction of one. No fast path: the built-in layers the checks compare with then
    compute in eval mode exactly as in training mode (attention, dropout, add, norm), on every device.
    """

    @functools.wraps(check)
    def run(*args: Any, **kwargs: Any) -> None:
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with one_thread():
                check(*args, **kwargs)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)

    return run


@contextlib.contextmanager
def removing_hooks(handles: Iterable[RemovableHandle]) -> Iterator[None]:
    """Keep the hooks of ``handles`` for a block, and remove them afterwards even when it raises."""
    handles = list(handles)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


_DEVICE_HINT = ("a tensor your code created is on another device than the inputs: create new tensors on the "
                "inputs' device (torch.zeros(..., device=x.device), torch.ones_like(x), x.new_full(...)). On a GPU, a "
                "tensor created without device= stays on the CPU.")
_DEVICE_HINTS = {"is not on the expected device": _DEVICE_HINT, "Expected all tensors to be on the same device":
                 _DEVICE_HINT}


class Check:
    """One run of one autograder: calls into student code and reports the outcome.

    Args:
        title: what is checked, as the student named it (``"scaled_dot_product_attention"``).
        answer_key: the :func:`course_utils.course.guard.answer_key` name the student must not use.
    """

    def __init__(self, title: str, answer_key: str | None = None) -> None:
        self.title = title
        self.answer_key = answer_key or title
        self.caught_warnings: list[str] = []

    def refuse_answer_key(self, obj: Any) -> None:
        """Fail when ``obj`` is the answer key itself, a subclass or an instance of it."""
        if answer_key_name(obj) == self.answer_key:
            fail(
                f"this is course_utils' own implementation of {self.answer_key} (imported "
                f"from course_utils.reference); write yours in the exercise cell and run "
                f"that cell before this check."
            )

    def call(self, fn: Callable[..., Any], *args: Any, what: str | None = None,
             on_error: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
        """Call student code; any exception becomes a CheckFailure that a student can act on.

        Args:
            what: how to name the call in messages (default: ``"<title>(...)"``).
            on_error: substrings of an error message mapped to a hint about its usual cause.
        """
        what = what or f"{self.title}(...)"
        on_error = {**(on_error or {}), **_DEVICE_HINTS}
        default_device = (torch.device(_FAKE_DEFAULT_DEVICE[-1]) if _FAKE_DEFAULT_DEVICE and _gives_tensors(args, kwargs)
                          else contextlib.nullcontext())
        with forbid(self.answer_key), warnings.catch_warnings(record=True) as caught, default_device:
            warnings.simplefilter("always")
            try:
                result = fn(*args, **kwargs)
            except NotImplementedError as error:
                # Name the function that raised: it may be a helper (split_heads inside forward).
                origin = traceback.extract_tb(error.__traceback__)[-1].name
                fail(
                    f"{what} is not implemented yet (NotImplementedError raised in {origin}): replace "
                    f"`raise NotImplementedError()` in its exercise cell with your code, run that cell, "
                    f"then run this check again."
                )
            except ReferenceUsedError as error:
                fail(f"{what}: {error}")
            except CheckFailure:
                raise
            except Exception as error:  # noqa: BLE001 - any student error becomes a message
                arguments = [describe(a) for a in args]
                arguments += [f"{k}={describe(v)}" for k, v in kwargs.items()]
                message = (
                    f"{what} raised {type(error).__name__}: {error}\n"
                    f"It was called with: {'; '.join(arguments) or 'no arguments'}."
                )
                for needle, hint in (on_error or {}).items():
                    if needle in str(error):
                        message += f"\nHint: {hint}"
                        break
                fail(message)
        for w in caught:
            text = f"{w.category.__name__}: {w.message}"
            if text not in self.caught_warnings:
                self.caught_warnings.append(text)
        return result

    def passed(self, summary: str) -> None:
        """Print the one success line (and, on stdout, any warnings the student's code raised)."""
        print(f"✓ {self.title}: {summary}")
        for text in self.caught_warnings:
            print(f"  note: your code raised a warning (not an error, no points lost): {text}")


def expect_tensor(x: Any, what: str, shape: tuple[int, ...] | None = None,
                  hint: str | None = None) -> Tensor:
    """Fail unless ``x`` is a tensor (of ``shape`` when given)."""
    if not isinstance(x, Tensor):
        fail(f"{what} should be a torch.Tensor, but it is {describe(x)}.")
    if shape is not None and tuple(x.shape) != tuple(shape):
        message = f"{what} has shape {tuple(x.shape)}, expected {tuple(shape)}."
        fail(message + (f"\nHint: {hint}" if hint else ""))
    return x


def expect_pair(result: Any, what: str, names: tuple[str, str]) -> tuple[Any, Any]:
    """Fail unless ``result`` is a 2-tuple (e.g. ``(output, weights)``)."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        fail(f"{what} should return a tuple ({names[0]}, {names[1]}), but it returned {describe(result)}.")
    return result[0], result[1]


def _largest_error_index(error: Tensor) -> tuple[int, ...]:
    """The index of the largest entry of ``error`` (the first one on ties)."""
    flat = int(error.flatten().argmax())
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), error.shape))


def _matches(actual: Tensor, candidate: Tensor) -> bool:
    if candidate.shape != actual.shape:
        return False
    atol, rtol = tolerance(actual.dtype)
    return bool(torch.allclose(actual.detach(), candidate.detach().to(actual.dtype), atol=atol, rtol=rtol,
                               equal_nan=True))


def expect_close(actual: Any, expected: Tensor, what: str, *,
                 mistakes: Mapping[str, Tensor | Callable[[], Tensor]] | None = None,
                 hint: str | None = None, shape_hint: str | None = None) -> Tensor:
    """Compare a student's tensor with the expected one: shape, dtype, device, then values.

    Args:
        mistakes: known wrong results, each keyed by the explanation to show when ``actual``
            matches it (e.g. ``{"the scores were not divided by sqrt(d_k)": unscaled}``).
            Values may be callables, evaluated only when needed.
        hint: appended to a value mismatch that matches no known mistake.
        shape_hint: appended to a shape mismatch.
    """
    expect_tensor(actual, what, tuple(expected.shape), hint=shape_hint)
    if actual.dtype != expected.dtype:
        fail(
            f"{what} has dtype {actual.dtype}, expected {expected.dtype} (the inputs' dtype). "
            f"Build new tensors from the inputs (e.g. torch.zeros_like, x.new_tensor) rather than "
            f"with a fixed dtype."
        )
    if actual.device != expected.device:
        fail(
            f"{what} is on {actual.device}, but the inputs were on {expected.device}. Create new "
            f"tensors on the inputs' device (device=x.device) or with *_like functions."
        )
    actual_d = actual.detach()
    expected_d = expected.detach()
    bad_nan = torch.isnan(actual_d) & ~torch.isnan(expected_d)
    if bad_nan.any():
        index = tuple(int(i) for i in bad_nan.nonzero()[0])
        message = (f"{what} contains NaN (first at index {index}) where the expected value is "
                   f"{expected_d[index].item():.6g}.")
        # A known mistake can cause the NaNs (an inverted mask leaves rows with no key): name it.
        for explanation, candidate in (mistakes or {}).items():
            value = candidate() if callable(candidate) else candidate
            if value is not None and _matches(actual_d, value):
                fail(message + f"\nLikely mistake: {explanation}")
        fail(message + (f"\nHint: {hint}" if hint else ""))
    atol, rtol = tolerance(expected.dtype)
    error = (actual_d - expected_d).abs().nan_to_num(nan=0.0, posinf=math.inf)
    allowed = atol + rtol * expected_d.abs().nan_to_num(nan=0.0)
    out_of_tolerance = error > allowed
    if not out_of_tolerance.any():
        return actual
    index = _largest_error_index(error)
    message = (
        f"{what} has the right shape {tuple(expected.shape)} but wrong values: "
        f"{int(out_of_tolerance.sum())} of {error.numel()} entries are off; the largest error is "
        f"{error[index].item():.3g} at index {index} (yours {actual_d[index].item():.6g}, "
        f"expected {expected_d[index].item():.6g})."
    )
    for explanation, candidate in (mistakes or {}).items():
        value = candidate() if callable(candidate) else candidate
        if value is not None and _matches(actual_d, value):
            fail(message + f"\nLikely mistake: {explanation}")
    fail(message + (f"\nHint: {hint}" if hint else ""))


def expect_close_within(actual: Tensor, expected: Tensor, what: str, *, atol: float | Tensor,
                        rtol: float = 0.0, mistakes: Mapping[str, Tensor | Callable[[], Tensor]] | None = None,
                        hint: str | None = None,
                        locate: Callable[[tuple[int, ...]], str] | None = None) -> None:
    """Like :func:`expect_close` for values only, with a tolerance of one's choosing.

    Compares in float64 (``actual`` may be float32 or float64) with
    ``|actual - expected| <= atol + rtol * |expected|``; ``atol`` may be a tensor that
    broadcasts to the shape (e.g. growing with the position). ``mistakes`` are matched with
    the same tolerance. ``locate`` turns the index of the largest error into words.
    """
    expect_tensor(actual, what, tuple(expected.shape))
    a = actual.detach().to(device="cpu", dtype=torch.float64)
    e = expected.detach().to(device="cpu", dtype=torch.float64)
    limit = torch.as_tensor(atol, dtype=torch.float64) + rtol * e.abs()

    def off(candidate: Tensor) -> Tensor:
        return ((a - candidate).abs() > limit) | torch.isnan(a)

    bad = off(e)
    if not bad.any():
        return
    error = (a - e).abs().nan_to_num(nan=math.inf)
    index = _largest_error_index(error)
    where = locate(index) if locate else f"index {index}"
    message = (f"{what} has wrong values: {int(bad.sum())} of {bad.numel()} entries are off; the "
               f"largest error is {error[index].item():.3g} at {where} (yours {a[index].item():.6g}, "
               f"expected {e[index].item():.6g}).")
    for explanation, candidate in (mistakes or {}).items():
        value = candidate() if callable(candidate) else candidate
        if value is None or tuple(value.shape) != tuple(a.shape):
            continue
        if not off(value.detach().to(device="cpu", dtype=torch.float64)).any():
            fail(message + f"\nLikely mistake: {explanation}")
    fail(message + (f"\nHint: {hint}" if hint else ""))


def is_close(actual: Any, expected: Tensor) -> bool:
    """Whether ``actual`` is a tensor of ``expected``'s shape and dtype that agrees with it within
    :func:`tolerance`: for property tests (did an output change?) that word their own failures."""
    atol, rtol = tolerance(expected.dtype)
    return (isinstance(actual, Tensor) and actual.shape == expected.shape and actual.dtype == expected.dtype
            and bool(torch.allclose(actual, expected, atol=atol, rtol=rtol)))


def expect_repeatable(run: Callable[[], Any], message: str) -> Any:
    """Call ``run`` twice and fail with ``message`` when it gives two tensors of one shape that
    differ (other results are left to the comparisons that follow). Returns the first result."""
    first, second = run(), run()
    if isinstance(first, Tensor) and isinstance(second, Tensor) and first.shape == second.shape \
            and not torch.equal(first, second):
        fail(message)
    return first


def expect_grad_flows(output: Tensor, inputs: Mapping[str, Tensor], what: str) -> None:
    """Fail when ``output`` is cut off from the autograd graph of ``inputs``."""
    if not output.requires_grad:
        fail(
            f"{what} does not carry gradients back to its inputs: something in it leaves "
            f"the autograd graph (.detach(), .item(), .numpy(), torch.no_grad(), or building a "
            f"new tensor from Python numbers). Keep every step a torch operation on the inputs."
        )


def compare_gradients(student_out: Tensor, expected_out: Tensor,
                      student_inputs: Mapping[str, Tensor], expected_inputs: Mapping[str, Tensor],
                      what: str, seed: int) -> None:
    """Backpropagate the same random upstream gradient through both and compare input grads."""
    expect_grad_flows(student_out, student_inputs, what)
    with seeded(seed):
        upstream = torch.randn(expected_out.shape, dtype=expected_out.dtype).to(expected_out.device)
    student_grads = torch.autograd.grad(student_out, list(student_inputs.values()), upstream,
                                        allow_unused=True)
    expected_grads = torch.autograd.grad(expected_out, list(expected_inputs.values()), upstream,
                                         allow_unused=True)
    for name, got, want in zip(student_inputs, student_grads, expected_grads):
        if got is None:
            fail(f"the gradient of {what} with respect to {name} is missing: {name} is not used, "
                 f"or is used only through an operation that stops gradients.")
        expect_close(got, want, f"the gradient of {what} with respect to {name}")


def leaf_copies(*tensors: Tensor) -> list[Tensor]:
    """Independent leaf copies that require grad (one set for the student, one for the key)."""
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def expect_module_class(obj: Any, name: str) -> type[nn.Module]:
    """Fail unless ``obj`` is an ``nn.Module`` subclass (the class, not an instance)."""
    if isinstance(obj, nn.Module):
        fail(f"pass the class {name} itself to the check, not an instance: check({name}), "
             f"not check({name}(...)).")
    if not isinstance(obj, type) or not issubclass(obj, nn.Module):
        fail(f"{name} should be a class that subclasses nn.Module, but it is {describe(obj)}.")
    return obj


def expect_callable(obj: Any, name: str) -> Callable[..., Any]:
    """Fail unless ``obj`` is a function (or other callable)."""
    if not callable(obj) or isinstance(obj, type):
        fail(f"the check expects your function {name}, but it got {describe(obj)}.")
    return obj


def expect_linear(module: nn.Module, owner: str, attribute: str, in_features: int,
                  out_features: int, bias: bool = True) -> nn.Linear:
    """Fail unless ``module.<attribute>`` is ``nn.Linear(in_features, out_features)``."""
    wanted = f"nn.Linear({in_features}, {out_features})"
    layer = getattr(module, attribute, None)
    if layer is None:
        fail(f"{owner} has no attribute {attribute}: in __init__, create "
             f"self.{attribute} = {wanted}.")
    if not isinstance(layer, nn.Linear):
        fail(f"{owner}.{attribute} should be an {wanted}, but it is {describe(layer)}.")
    if (layer.in_features, layer.out_features) != (in_features, out_features):
        fail(f"{owner}.{attribute} is nn.Linear({layer.in_features}, {layer.out_features}), "
             f"expected {wanted}.")
    if (layer.bias is not None) != bias:
        fail(f"{owner}.{attribute} should {'have' if bias else 'not have'} a bias "
             f"(nn.Linear's default is bias=True).")
    return layer


# --------------------------------------------------------------------------------------
# Dropout, made visible: seeded, recorded, the same for the student's code and the key
# --------------------------------------------------------------------------------------


class DropoutTrace:
    """For a block, every dropout (``nn.Dropout``, ``F.dropout`` and the ``dropout_p`` of
    ``F.scaled_dot_product_attention``) draws its mask from one seeded generator, and is recorded.

    Dropout in training is random, and eval mode hides it. Under a trace, the student's module in
    training mode and the check's own computation (which applies dropout where the paper says,
    through :meth:`drop`) draw the same masks as long as they drop tensors of the same shapes in
    the same order: their outputs are then equal, and they differ when dropout is missing, always
    on, applied twice or to another tensor. ``calls`` lists each call's shape, p and training flag
    for the diagnosis, whichever way the student wrote dropout.

    Args:
        seed: seeds the masks; a trace started again with the same seed draws the same masks.
        quiet: modules whose own dropouts are switched off under the trace (as if p = 0), e.g. a
            layer's sublayers, so that only the layer's own dropout is tested.
    """

    def __init__(self, seed: int, quiet: Iterable[nn.Module] = ()) -> None:
        self.seed = seed
        self.quiet = list(quiet)
        self.calls: list[tuple[tuple[int, ...], float, bool]] = []
        self._depth = 0
        self._generator = torch.Generator().manual_seed(seed)

    def drop(self, x: Tensor, p: float) -> Tensor:
        """Dropout in training with probability ``p``, drawn from the trace's generator."""
        if p <= 0.0:
            return x
        keep = torch.rand(tuple(x.shape), generator=self._generator, device="cpu") >= p
        return x * keep.to(device=x.device, dtype=x.dtype) / (1.0 - p)

    def _dropout(self, input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
        if self._depth:
            return input
        self.calls.append((tuple(input.shape), float(p), bool(training)))
        if not training:
            return input
        out = self.drop(input, float(p))
        return input.copy_(out) if inplace else out

    def _sdpa(self, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
              dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
              **kwargs: Any) -> Tensor:
        if not dropout_p:
            return self._original_sdpa(query, key, value, attn_mask=attn_mask, is_causal=is_causal, scale=scale,
                                       **kwargs)
        scores = query @ key.transpose(-2, -1) * (query.size(-1) ** -0.5 if scale is None else scale)
        if is_causal:
            lq, lk = scores.shape[-2:]
            attn_mask = torch.ones(lq, lk, dtype=torch.bool, device=scores.device).tril()
        if attn_mask is not None:
            scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                      else scores + attn_mask)
        return self._dropout(torch.softmax(scores, dim=-1), dropout_p, True) @ value

    def training_calls(self) -> list[tuple[int, ...]]:
        """The shapes of the tensors dropped in training mode (p > 0), in order."""
        return [shape for shape, p, training in self.calls if training and p > 0]

    def __enter__(self) -> DropoutTrace:
        import torch.nn.functional as F

        def enter(*_: Any) -> None:
            self._depth += 1

        def leave(*_: Any) -> None:
            self._depth -= 1

        self._handles = [h for m in self.quiet for h in (m.register_forward_pre_hook(enter),
                                                         m.register_forward_hook(leave, always_call=True))]
        self._original_dropout, self._original_sdpa = F.dropout, F.scaled_dot_product_attention
        F.dropout, F.scaled_dot_product_attention = self._dropout, self._sdpa
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch.nn.functional as F

        F.dropout, F.scaled_dot_product_attention = self._original_dropout, self._original_sdpa
        for handle in self._handles:
            handle.remove()
        self._depth = 0


def traced(seed: int, run: Callable[[DropoutTrace], Any], quiet: Iterable[nn.Module] = ()) -> tuple[Any, DropoutTrace]:
    """``run(trace)`` under a fresh :class:`DropoutTrace` seeded with ``seed``: its result and the trace."""
    with DropoutTrace(seed, quiet) as trace:
        return run(trace), trace


def count_words(n: int) -> str:
    """``"never"``, ``"once"``, ``"twice"``, ``"3 times"``: how often dropout was applied."""
    return {0: "never", 1: "once", 2: "twice"}.get(n, f"{n} times")
