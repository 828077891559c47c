"""Old public names kept for one release: a module's ``__getattr__`` that warns and forwards."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["renamed_attributes"]


def renamed_attributes(module: str, renamed: Mapping[str, str], namespace: Mapping[str, Any],
                       removed_in: str) -> Callable[[str], Any]:  # fmt: skip
    """A module-level ``__getattr__`` serving ``renamed`` old names from ``namespace``.

    Args:
        module: the module's ``__name__`` (for the messages).
        renamed: old name → new name (both attributes of ``module``).
        namespace: the module's ``globals()``, holding the new names.
        removed_in: the version that drops the old names.

    Returns:
        ``__getattr__(name)`` that warns (``DeprecationWarning``) and returns the new object for
        an old name, and raises ``AttributeError`` for any other missing name.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807
        if name not in renamed:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new = renamed[name]
        warnings.warn(
            f"{module}.{name} is deprecated and is removed in {removed_in}; use {module}.{new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return namespace[new]

    return __getattr__
