"""Uniform, actionable errors for bad inputs; shared by every method and metric."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_finite(tensors: torch.Tensor | Sequence[torch.Tensor], name: str = "inputs") -> None:
    """Raise ``ValueError`` naming the tensor and the count if any element is NaN or ±Inf."""
    items = (tensors,) if isinstance(tensors, torch.Tensor) else tuple(tensors)
    for index, tensor in enumerate(items):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name}[{index}] must be a torch.Tensor, got {type(tensor).__name__}.")
        if tensor.is_floating_point() or tensor.is_complex():
            bad = ~torch.isfinite(tensor)
            if bad.any():
                label = name if len(items) == 1 else f"{name}[{index}]"
                raise ValueError(
                    f"{label} contains {int(bad.sum())} non-finite value(s) (NaN or Inf); clean or "
                    "impute them before explaining."
                )


def check_result_finite(tensors: torch.Tensor | Sequence[torch.Tensor], method: str) -> None:
    """Raise ``FloatingPointError`` if a computed attribution came out non-finite."""
    items = (tensors,) if isinstance(tensors, torch.Tensor) else tuple(tensors)
    for tensor in items:
        bad = ~torch.isfinite(tensor)
        if bad.any():
            raise FloatingPointError(
                f"{method} produced {int(bad.sum())} non-finite attribution value(s); try float64, "
                "a larger stabiliser (epsilon) or check the model for overflowing activations."
            )


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0 (≥ 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}.")
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value or value in (float("inf"), float("-inf")):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}.")


def check_positive_int(name: str, value: int, minimum: int = 1) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer ≥ ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}.")


def check_open_unit(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``0 < value < 1``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}.")


def check_targets(target: object, output: torch.Tensor) -> None:
    """Raise ``ValueError`` if targets fall outside the model's outputs or miscount the batch.

    Accepts every form Captum does: an int, a tuple (one index per output dimension after the
    batch), a tensor, and a list of ints or of tuples (one per sample).
    """
    if target is None or output.dim() < 2:
        return
    n_classes = output.shape[1]
    values: list[int] = []
    tuples: list[tuple] = []
    count = None
    if isinstance(target, int):
        values = [target]
    elif isinstance(target, tuple):
        tuples = [target]
    elif isinstance(target, torch.Tensor) and not target.is_floating_point():
        values = target.flatten().tolist()
        count = len(values)
    elif isinstance(target, list):
        count = len(target)
        values = [t for t in target if isinstance(t, int)]
        tuples = [t for t in target if isinstance(t, tuple)]
    bad = [t for t in values if not -n_classes <= t < n_classes]
    for index in tuples:
        shape = output.shape[1:]
        if len(index) != len(shape) or not all(
            isinstance(i, int) and -n <= i < n for i, n in zip(index, shape)
        ):
            raise ValueError(
                f"target {index} does not index an output of shape {tuple(shape)} per sample; "
                "a tuple target needs one in-range index per output dimension after the batch."
            )
    if bad:
        raise ValueError(
            f"target {bad[:5]} out of range for a model with {n_classes} outputs "
            f"(valid: 0..{n_classes - 1})."
        )
    if count is not None and count not in (1, output.shape[0]):
        raise ValueError(
            f"target has {count} entries but the batch has {output.shape[0]} samples; "
            "give one target per sample or a single target for all."
        )
