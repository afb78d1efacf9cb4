"""Uniform, actionable errors for bad inputs; shared by every method and metric."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


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


def check_result_finite(
    tensors: torch.Tensor | Sequence[torch.Tensor], method: str, advice: str | None = None
) -> None:
    """Raise ``FloatingPointError`` if a computed attribution came out non-finite.

    ``advice`` names the method's own remedy (e.g. LRP's stabilisers); the default advice
    only names what every method has (the dtype, the model's activations).
    """
    items = (tensors,) if isinstance(tensors, torch.Tensor) else tuple(tensors)
    for tensor in items:
        bad = ~torch.isfinite(tensor)
        if bad.any():
            remedy = advice or "try float64 or check the model for overflowing activations"
            raise FloatingPointError(
                f"{method} produced {int(bad.sum())} non-finite attribution value(s); {remedy}."
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


_TARGET_TYPES = (
    "an int, a tuple of ints (one multi-dimensional output index), a list of ints or tuples (one "
    "per sample), or an integer torch.Tensor / numpy array of shape () or (B,)"
)


def baseline_args(args: tuple[Any, ...], baselines: Any) -> tuple[Any, ...]:
    """``args`` with its leading entries replaced by detached, broadcast ``baselines``.

    ``baselines`` is ``None`` (zeros), one scalar or tensor, or a tuple of them for the first
    ``len(baselines)`` arguments; the remaining arguments are passed through unchanged, so the
    result is the reference input of a DeepLift-style forward pass.
    """
    if baselines is None:
        baselines = (0.0,)
    elif not isinstance(baselines, tuple):
        baselines = (baselines,)
    if not 1 <= len(baselines) <= len(args):
        raise ValueError(
            f"got {len(baselines)} baselines for {len(args)} positional arguments; give one "
            "baseline per attributed input (the leading arguments)."
        )
    out = []
    for arg, base in zip(args, baselines):
        base = torch.as_tensor(base, dtype=arg.dtype, device=arg.device)
        try:
            base = base.expand_as(arg)
        except RuntimeError as err:
            raise ValueError(
                f"baseline of shape {tuple(base.shape)} does not broadcast to the input of "
                f"shape {tuple(arg.shape)}."
            ) from err
        out.append(base.detach())
    return (*out, *args[len(baselines) :])


def normalize_target(target: object, batch_size: int | None = None) -> object:
    """Check a Captum-style ``target`` and bring numpy values into Captum's types.

    Accepted: ``None``, an int, a tuple of ints (one index into a multi-dimensional output), a
    list of ints or of tuples (one per sample), an integer tensor or numpy array of shape ``()``
    or ``(B,)``. numpy integers and arrays become ints and tensors; everything else raises a
    ``TypeError`` naming the accepted forms, and a per-sample target whose length is neither 1
    nor ``batch_size`` a ``ValueError``.
    """
    if target is None:
        return None
    np_module = type(target).__module__.split(".")[0] == "numpy"
    if np_module:
        import numpy as np

        if isinstance(target, np.generic):
            target = target.item()
        elif isinstance(target, np.ndarray):
            if not np.issubdtype(target.dtype, np.integer):
                raise TypeError(
                    f"target array has dtype {target.dtype}; class indices must be integers "
                    "(use target.astype(int))."
                )
            target = torch.as_tensor(target, dtype=torch.long)
    if isinstance(target, bool):
        raise TypeError(f"target must be {_TARGET_TYPES}; got a bool.")
    if isinstance(target, int):
        return target
    if isinstance(target, float):
        raise TypeError(
            f"target {target!r} is a float; class indices must be integers (e.g. int(target))."
        )
    if isinstance(target, tuple):
        if not target or not all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            raise TypeError(f"a tuple target must hold ints (one output index), got {target!r}.")
        return target
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(
                f"target tensor has dtype {target.dtype}; class indices must be integers "
                "(use target.long())."
            )
        if target.dim() > 1:
            raise ValueError(
                f"target tensor must have shape () or (B,), got {tuple(target.shape)}; for one "
                "multi-dimensional index per sample pass a list of tuples."
            )
        values: list = target.flatten().tolist()
    elif isinstance(target, list):
        if not target:
            raise ValueError("target is an empty list; give one target per sample.")
        items = []
        for item in target:
            if isinstance(item, torch.Tensor) and item.numel() == 1:
                if item.is_floating_point():
                    raise TypeError(f"target list holds float tensor {item!r}; use integers.")
                item = int(item.item())
            elif type(item).__module__.split(".")[0] == "numpy" and hasattr(item, "item"):
                item = item.item()
            if isinstance(item, bool) or not isinstance(item, (int, tuple)):
                raise TypeError(f"target must be {_TARGET_TYPES}; the list holds {item!r}.")
            items.append(normalize_target(item))
        if len({type(i) for i in items}) > 1:
            raise TypeError("a target list must hold only ints or only tuples, not both.")
        target = values = items
    else:
        raise TypeError(f"target must be {_TARGET_TYPES}; got {type(target).__name__}.")
    if batch_size is not None and len(values) not in (1, batch_size):
        raise ValueError(
            f"target has {len(values)} entries but the batch has {batch_size} samples; "
            "give one target per sample or a single target for all."
        )
    return target


def check_model_output(output: object, method: str = "the method") -> torch.Tensor:
    """Return ``output`` if it is a tensor, else raise a ``TypeError`` that names the fix."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list, dict)) or hasattr(output, "keys"):
        kind = type(output).__name__
        example = "'logits'" if isinstance(output, dict) or hasattr(output, "keys") else "0"
        raise TypeError(
            f"the model returns a {kind}, but {method} explains one output tensor. Select it "
            f"with captum_ext.core.validation.SelectOutput(model, {example}) (an nn.Module "
            "wrapper) and explain that model instead."
        )
    raise TypeError(
        f"the model returns {type(output).__name__}, but {method} needs a torch.Tensor output."
    )


class SelectOutput(nn.Module):
    """Wrap a model that returns a tuple, list or dict so it returns one tensor of it.

    Parameters
    ----------
    model : nn.Module
        The wrapped model (registered as a submodule, so hooks and layers stay reachable under
        ``model.<name>``).
    key : int or str
        Index (tuple/list outputs) or key (dict-like outputs such as Hugging Face's
        ``ModelOutput``) of the tensor to explain.

    Examples
    --------
    >>> explained = SelectOutput(detector, "logits")
    >>> LRP(explained).attribute(x, target=3)  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module, key: int | str = 0) -> None:
        super().__init__()
        self.model = model
        self.key = key

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.model(*args, **kwargs)[self.key]


def check_inputs(
    inputs: Sequence[torch.Tensor], model: nn.Module | None, method: str, integer_ok: bool = False
) -> None:
    """Refuse inputs a method cannot explain, with the fix: wrong types, B = 0, dtype mismatch.

    Parameters
    ----------
    inputs : sequence of Tensor
        The formatted input tuple.
    model : nn.Module, optional
        Its first floating-point parameter gives the dtype the inputs must have.
    method : str
        Name used in messages.
    integer_ok : bool
        Whether integer inputs (token ids into an embedding) are allowed.
    """
    batch = None
    model_dtype = None
    if model is not None:
        model_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    for index, x in enumerate(inputs):
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{method}: inputs[{index}] must be a torch.Tensor, got {type(x).__name__}."
            )
        if x.dim() == 0:
            raise ValueError(
                f"{method}: inputs[{index}] is a scalar; inputs need a batch axis first "
                "(x.reshape(1, -1) for one sample)."
            )
        if x.shape[0] == 0:
            raise ValueError(f"{method}: inputs[{index}] has batch size 0; nothing to explain.")
        if batch is not None and x.shape[0] != batch:
            raise ValueError(
                f"{method}: the input tensors have batch sizes {batch} and {x.shape[0]}; every "
                "input tensor needs the same first (batch) axis."
            )
        batch = x.shape[0]
        if not x.is_floating_point():
            if integer_ok:
                continue
            raise TypeError(
                f"{method}: inputs[{index}] has dtype {x.dtype}; gradients exist only for "
                "floating-point inputs. For token ids, explain the embedding layer instead "
                "(e.g. LayerLRP(model, model.embedding) or captum's LayerIntegratedGradients)."
            )
        if model_dtype is not None and x.dtype != model_dtype:
            raise TypeError(
                f"{method}: inputs[{index}] is {x.dtype} but the model's parameters are "
                f"{model_dtype}; convert one of them (x.to({model_dtype}) or "
                f"model.to({x.dtype}))."
            )


def check_targets(
    target: object,
    output: torch.Tensor,
    batch_size: int | None = None,
    allow_none: bool = True,
    method: str = "the method",
) -> None:
    """Check the model output and ``target`` against each other before a target is selected.

    Raises a ``TypeError`` for non-tensor outputs (tuple/dict: see :class:`SelectOutput`), a
    ``ValueError`` if the output's first axis is not the batch (``batch_size``), if
    ``target=None`` leaves more than one output per sample (with ``allow_none=False``, as Captum
    refuses), and if any index is out of range.
    """
    output = check_model_output(output, method)
    if batch_size is not None and (output.dim() == 0 or output.shape[0] != batch_size):
        raise ValueError(
            f"{method}: the model returned shape {tuple(output.shape)} for a batch of "
            f"{batch_size}; inputs must be batch-first and the output must keep that axis. For "
            "one sample add a batch axis (x.unsqueeze(0))."
        )
    if target is None:
        if not allow_none and output.dim() > 1 and output[0].numel() > 1:
            raise ValueError(
                f"{method}: target=None, but the model has {output[0].numel()} outputs per "
                "sample; choose one with target= (an int, or one per sample), as Captum requires."
            )
        return
    target = normalize_target(target, output.shape[0] if output.dim() else None)
    if output.dim() < 2:
        return
    per_sample = target if isinstance(target, list) else [target]
    if isinstance(target, torch.Tensor):
        per_sample = target.flatten().tolist()
    for item in per_sample:
        index = item if isinstance(item, tuple) else (item,)
        dims = output.shape[1:]
        if len(index) > len(dims) or (isinstance(item, tuple) and len(index) != len(dims)):
            raise ValueError(
                f"target {item!r} does not index an output of shape {tuple(dims)} per sample: "
                f"it has {len(index)} indices for {len(dims)} non-batch axes; a tuple target "
                "needs one in-range index per output dimension after the batch."
            )
        for position, (value, size) in enumerate(zip(index, dims)):
            if not -size <= value < size:
                if isinstance(item, tuple):
                    raise ValueError(
                        f"target {item!r} does not index an output of shape {tuple(dims)} per "
                        "sample; a tuple target needs one in-range index per output dimension "
                        f"after the batch (axis {position + 1}: valid 0..{size - 1})."
                    )
                raise ValueError(
                    f"target {item!r} out of range for a model with {size} outputs "
                    f"(valid: 0..{size - 1})."
                )


def resolve_layer(model: nn.Module, layer: object, method: str = "the method") -> Any:
    """The submodule ``layer`` names (a module of ``model`` or its name in ``named_modules``).

    Raises a ``ValueError`` listing valid names for an unknown name or a module that is not
    part of ``model``, and a ``TypeError`` for anything else. Lists are resolved element-wise.
    """
    if isinstance(layer, list):
        return [resolve_layer(model, item, method) for item in layer]
    names = {id(m): name for name, m in model.named_modules()}
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer not in modules:
            raise ValueError(
                f"{method}: the model has no module named {layer!r}; valid names: "
                f"{closest_names(layer, list(modules))}."
            )
        return modules[layer]
    if isinstance(layer, nn.Module):
        if id(layer) not in names:
            raise ValueError(
                f"{method}: layer {type(layer).__name__} is not a submodule of the explained "
                f"model (a copy, or another model's layer?). Pass one of its modules or its "
                f"name: {closest_names('', [n for n in names.values() if n])}."
            )
        return layer
    raise TypeError(
        f"{method}: layer must be an nn.Module of the model or its name, got "
        f"{type(layer).__name__}."
    )


def closest_names(name: str, candidates: list[str], shown: int = 12) -> str:
    """Up to ``shown`` of ``candidates`` as a quoted list, the closest matches to ``name`` first."""
    import difflib

    close = difflib.get_close_matches(name, candidates, n=3) if name else []
    rest = [c for c in candidates if c not in close and c]
    listed = close + rest[: max(0, shown - len(close))]
    more = len(candidates) - len(listed) - (1 if "" in candidates else 0)
    return ", ".join(repr(c) for c in listed) + (f", … ({more} more)" if more > 0 else "")
