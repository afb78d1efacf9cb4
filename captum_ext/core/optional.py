"""Optional dependencies: imported when a feature first needs them, with the install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, purpose: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` naming the extra that installs it.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"matplotlib.pyplot"``.
    purpose : str
        What needs it, used as the start of the message (``"plot()"``).
    extra : str
        The ``captum-ext`` extra that declares the dependency.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{purpose} needs {module.split('.')[0]}; install it with "
            f"`pip install 'captum-ext[{extra}]'`."
        ) from err
