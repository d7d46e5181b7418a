"""Marks the answer key so that an autograder can refuse it.

A check must not accept ``course_utils.reference``'s own implementation as a student's
answer, whatever form the borrowing takes: the same object, a subclass, a wrapper
function that calls it, or a module that builds it internally. Identity and subclass
tests catch the first two; the last two are only visible at run time. So every answer-key
function and class is wrapped by :func:`answer_key`, and while a check runs the student's
code inside :func:`forbid`, any call into the forbidden answer key raises
:class:`ReferenceUsedError`.

Other answer-key pieces stay allowed: a student working on chapter 5 may build on the
reference multi-head attention from chapter 2.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any, TypeVar

_forbidden: set[str] = set()

T = TypeVar("T")


class ReferenceUsedError(AssertionError):
    """Raised when student code calls the answer-key piece it was asked to write."""


def answer_key(name: str):
    """Decorate a reference function or ``nn.Module`` class as the answer key for ``name``."""

    def decorate(obj: T) -> T:
        if isinstance(obj, type):
            original_init = obj.__init__

            @functools.wraps(original_init)
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                _refuse_if_forbidden(name)
                original_init(self, *args, **kwargs)

            obj.__init__ = __init__  # type: ignore[misc]
            # Wrap forward only where there is one (an LRScheduler, for one, has none).
            original_forward = getattr(obj, "forward", None)
            if original_forward is not None:

                @functools.wraps(original_forward)
                def forward(self, *args: Any, **kwargs: Any) -> Any:
                    _refuse_if_forbidden(name)
                    return original_forward(self, *args, **kwargs)

                obj.forward = forward  # type: ignore[attr-defined]
            obj.__answer_key__ = name  # type: ignore[attr-defined]
            return obj

        @functools.wraps(obj)  # type: ignore[arg-type]
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _refuse_if_forbidden(name)
            return obj(*args, **kwargs)  # type: ignore[operator]

        wrapper.__answer_key__ = name  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _refuse_if_forbidden(name: str) -> None:
    if name in _forbidden:
        raise ReferenceUsedError(
            f"your code calls course_utils.reference's own {name}. This exercise asks you "
            f"to write {name} yourself: replace the call with your implementation."
        )


@contextlib.contextmanager
def forbid(*names: str) -> Iterator[None]:
    """While active, calling the answer key for any of ``names`` raises ReferenceUsedError."""
    added = [n for n in names if n not in _forbidden]
    _forbidden.update(added)
    try:
        yield
    finally:
        _forbidden.difference_update(added)


def answer_key_name(obj: Any) -> str | None:
    """The answer-key name of ``obj`` (a reference function, class, subclass or instance)."""
    name = getattr(obj, "__answer_key__", None)
    if name is None and not isinstance(obj, type) and hasattr(type(obj), "__answer_key__"):
        name = type(obj).__answer_key__
    return name
