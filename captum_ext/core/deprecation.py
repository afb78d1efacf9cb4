"""Earlier spellings of argument values, accepted with a ``DeprecationWarning``."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

__all__ = ["renamed_value"]


def renamed_value(value: Any, renames: Mapping[str, str], argument: str) -> Any:
    """``value``, or its current name if it is an old one in ``renames`` (which warns).

    Parameters
    ----------
    value : Any
        What the caller passed; anything not an old name is returned unchanged, for the
        caller's own validation.
    renames : Mapping[str, str]
        Old name → current name.
    argument : str
        The caller's parameter name, used in the warning.
    """
    if isinstance(value, str) and value in renames:
        new = renames[value]
        warnings.warn(
            f"{argument}={value!r} is deprecated; spell it {argument}={new!r}.",
            DeprecationWarning,
            stacklevel=3,
        )
        return new
    return value
