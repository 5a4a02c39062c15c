"""Argument checks shared by the library's constructors."""

from __future__ import annotations

from typing import Any

__all__ = ["require_positive_ints"]


def require_positive_ints(**values: Any) -> None:
    """Raise ``ValueError`` naming the first value that is not a positive integer (a ``bool`` is
    not one)."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
