"""One policy for progress bars: ``progress=None`` shows a bar only on an interactive terminal.

Long calls (CASO, NoiseGrad, randomisation SSIM) take a ``progress`` argument (methods) or
Quantus' ``display_progressbar`` (metrics): ``True`` always shows a tqdm bar, ``False`` never,
``None`` (the default of the long calls) shows one when standard error is a terminal, so
notebooks and shells see the bar while logs, CI and tests stay clean.
"""

from __future__ import annotations

import sys

__all__ = ["show_progress"]


def show_progress(progress: bool | None) -> bool:
    """Resolve ``progress`` (``True``/``False``/``None`` = interactive terminals only)."""
    if progress is None:
        stream = sys.stderr
        return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
    return bool(progress)
