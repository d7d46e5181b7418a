"""The autograders that the notebooks' grade cells call, one module per chapter topic.

Usage in a grade cell::

    from course_utils import checks
    checks.check_scaled_dot_product_attention(scaled_dot_product_attention)

Each check prints one line on success and raises ``AssertionError`` (a
:class:`~course_utils.checks.harness.CheckFailure`) with an actionable message otherwise.
Every ``check_*`` function of every module in this package is exported here, so a new
chapter's module plugs in without editing this file.
"""

import importlib
import pkgutil

from course_utils.checks.harness import CheckFailure

__all__ = ["CheckFailure"]

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
    if _info.name == "harness":
        continue
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    for _name in getattr(_module, "__all__", None) or dir(_module):
        if _name.startswith("check_"):
            globals()[_name] = getattr(_module, _name)
            __all__.append(_name)
