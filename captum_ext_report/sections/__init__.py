"""Report sections, discovered automatically.

A section is a module in this package that defines ``ORDER`` (an int: position in the report),
``KEY`` (a short identifier usable with ``--sections``) and ``run(ctx: ReportContext) ->
Section``. Adding a capability to the report means adding one module here; nothing else
changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def discover() -> list[ModuleType]:
    """All section modules, sorted by ``ORDER``."""
    modules = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    ]
    return sorted(modules, key=lambda module: (module.ORDER, module.KEY))
