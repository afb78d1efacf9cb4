"""Old module paths kept importable after the package was reorganised into families."""

from __future__ import annotations

import importlib
import sys
import warnings


def alias_module(old: str, new: str) -> None:
    """Make ``import old`` return module ``new``, with a ``DeprecationWarning`` naming it."""
    warnings.warn(
        f"{old} moved to {new}; import it from there (the old path will be removed in 0.3).",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
