"""Methods, metrics and seeds for :func:`quantus_metrics.dataset.evaluate_dataset`.

A method or metric is given by name (ours, Captum's, ``quantus:<Metric>``) or as
``"module:callable"``; both resolve to a spec that says how its randomness is keyed. The rule of
the dataset evaluation is that every random draw depends only on ``(seed, sample id, stream)``,
never on the rank, the batch composition or the number of processes:

- methods whose ``attribute`` takes ``seed`` (our noise methods) are called one sample at a time
  with that sample's seed;
- Captum's ``NoiseTunnel`` draws from the global RNG, so it is called one sample at a time inside
  :func:`keyed_global_rng` (the global state is saved and restored bit for bit);
- metrics that draw per call (CSC vectors, perturbations, the random other class) are built per
  sample with that sample's seed; Quantus' own metrics draw from the global RNG and are called per
  sample inside :func:`keyed_global_rng`;
- model-level randomness (the randomised copies of the randomisation test) uses the run seed
  itself, so every rank builds the same copies.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@contextmanager
def keyed_global_rng(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed torch's, numpy's and Python's global RNGs for third-party code, then restore them.

    Quantus' metrics and Captum's ``NoiseTunnel`` draw from the global generators; seeding them
    per sample inside this block keys their draws to the sample, and the caller's global state is
    put back exactly afterwards (also on exceptions).
    """
    devices = []
    if device is not None and device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    np_state = np.random.get_state()  # noqa: NPY002
    py_state = random.getstate()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % (2**32))  # noqa: NPY002 - third-party code reads the global state
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)  # noqa: NPY002
            random.setstate(py_state)


def load_callable(spec: str, what: str) -> Any:
    """``"package.module:name"`` → the object; a clear ValueError otherwise."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"{what} must look like 'package.module:callable', got {spec!r}.")
    module_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{what} {spec!r} cannot be loaded: {err}") from err
    return obj


def split_options(spec: str) -> tuple[str, dict[str, Any]]:
    """``"Name(a=1, b='x')"`` → ``("Name", {"a": 1, "b": "x"})``; literal keyword values only."""
    if not spec.endswith(")") or "(" not in spec:
        return spec, {}
    base, _, rest = spec.partition("(")
    try:
        call = ast.parse(f"f({rest}", mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise ValueError("only keyword options")
        options = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError) as err:
        raise ValueError(
            f"{spec!r}: options must be literal keywords, e.g. Name(n_steps=16, mode='x') ({err})."
        ) from err
    if None in options:
        raise ValueError(f"{spec!r}: **options are not supported, name each keyword.")
    return base, options


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list, keeping commas inside parentheses (``A(x=1, y=2),B``)."""
    items, depth, current = [], 0, []
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


# --------------------------------------------------------------------------------------- methods


@dataclass
class MethodSpec:
    """An attribution method for the dataset evaluation.

    Attributes
    ----------
    name : str
        Column value in the results.
    factory : callable
        ``factory(model) -> captum.attr.Attribution``.
    attribute_kwargs : dict
        Passed to every ``attribute`` call.
    randomness : {"none", "seed", "global"}
        ``"seed"``: ``attribute`` takes ``seed`` (called per sample with the sample's seed);
        ``"global"``: draws from the global RNG (called per sample in :func:`keyed_global_rng`);
        ``"none"``: deterministic (called on whole batches). Detected when not given.
    prepare : callable, optional
        Model-level work done once per rank before the loop, the same on every rank:
        ``prepare(model, dataset) -> factory`` (pattern fitting on the first samples).
    """

    name: str
    factory: Callable[[nn.Module], Any]
    attribute_kwargs: dict[str, Any] = field(default_factory=dict)
    randomness: str | None = None
    prepare: Callable[[nn.Module, Any], Callable[[nn.Module], Any]] | None = None

    def resolve_randomness(self, model: nn.Module) -> str:
        if self.randomness is None:
            self.randomness = _detect_method_randomness(self.factory(model))
        if self.randomness not in ("none", "seed", "global"):
            raise ValueError(
                f"method {self.name!r}: randomness must be 'none', 'seed' or 'global', got "
                f"{self.randomness!r}."
            )
        return self.randomness


def _detect_method_randomness(method: Any) -> str:
    from captum.attr import NoiseTunnel

    attribute = getattr(method, "attribute", None)
    if attribute is None:
        raise TypeError(
            f"a method factory must return an object with attribute(...), got "
            f"{type(method).__name__}."
        )
    if "seed" in inspect.signature(attribute).parameters:
        return "seed"
    if isinstance(method, NoiseTunnel):
        return "global"
    return "none"


def _builtin_methods(bounds: tuple[float, float] | None) -> dict[str, MethodSpec]:
    from captum.attr import Saliency

    from captum_ext import (
        LRP,
        AdaptGrad,
        NoiseGrad,
        PatternAttribution,
        PatternNet,
        RectGrad,
        SeededNoiseTunnel,
    )
    from captum_ext.lrp import EpsilonPlus

    def adaptgrad(model: nn.Module) -> Any:
        if bounds is None:
            raise ValueError("AdaptGrad needs the data bounds: pass bounds=(low, high).")
        return AdaptGrad(Saliency(model), bounds=bounds)

    span = 1.0 if bounds is None else bounds[1] - bounds[0]
    patterns = {
        name: MethodSpec(name, cls, prepare=_pattern_fit(cls))
        for name, cls in (("PatternNet", PatternNet), ("PatternAttribution", PatternAttribution))
    }
    return {
        **patterns,
        "LRP": MethodSpec("LRP", lambda m: LRP(m, rule_set=EpsilonPlus())),
        "RectGrad": MethodSpec("RectGrad", RectGrad),
        "SmoothGrad": MethodSpec(
            "SmoothGrad",
            lambda m: SeededNoiseTunnel(Saliency(m)),
            {"nt_samples": 10, "stdevs": 0.15 * span, "abs": False},
        ),
        "AdaptGrad": MethodSpec("AdaptGrad", adaptgrad, {"nt_samples": 10, "abs": False}),
        "NoiseGrad": MethodSpec(
            "NoiseGrad", lambda m: NoiseGrad(Saliency(m), n_models=5), {"abs": False}
        ),
    }


PATTERN_FIT_SAMPLES = 256
"""Pattern methods are fitted on the first samples of the evaluated dataset, in index order."""


def _pattern_fit(cls: type) -> Callable[[nn.Module, Any], Callable[[nn.Module], Any]]:
    def prepare(model: nn.Module, dataset: Any) -> Callable[[nn.Module], Any]:
        from torch.utils.data import DataLoader

        from quantus_metrics._dataset_io import KeyedDataset, stack_valid

        n = min(PATTERN_FIT_SAMPLES, len(dataset))
        loader = DataLoader(
            KeyedDataset(dataset), batch_sampler=[range(0, n)], collate_fn=lambda items: items
        )
        (items,) = list(loader)
        _, x = stack_valid(items)
        if x is None:
            raise ValueError(
                f"none of the first {n} samples could be loaded to fit {cls.__name__}."
            )
        state = cls(model).fit(x, progress=False).patterns_state_dict()
        return lambda m: cls(m).load_patterns(state)

    return prepare


_CAPTUM_SIGNED = {"Saliency": {"abs": False}}


def resolve_method(spec: Any, bounds: tuple[float, float] | None = None) -> MethodSpec:
    """A :class:`MethodSpec` from a spec, a name (ours or Captum's) or ``"module:callable"``.

    ``"Name(key=value, ...)"`` adds literal ``attribute`` options
    (``"IntegratedGradients(n_steps=16)"``); the full string names the rows."""
    if isinstance(spec, MethodSpec):
        return spec
    if isinstance(spec, str) and spec.endswith(")"):
        base, options = split_options(spec)
        resolved = resolve_method(base, bounds)
        return MethodSpec(
            spec,
            resolved.factory,
            {**resolved.attribute_kwargs, **options},
            resolved.randomness,
            resolved.prepare,
        )
    if isinstance(spec, str):
        builtin = _builtin_methods(bounds)
        if spec in builtin:
            return builtin[spec]
        import captum.attr

        cls = getattr(captum.attr, spec, None)
        if isinstance(cls, type) and issubclass(cls, captum.attr.Attribution):
            return MethodSpec(spec, cls, dict(_CAPTUM_SIGNED.get(spec, {})))
        if ":" in spec:
            return MethodSpec(spec, load_callable(spec, "method"))
        raise ValueError(
            f"Unknown method {spec!r}: use one of {sorted(builtin)}, a captum.attr class name "
            "(Saliency, IntegratedGradients, …) or 'module:callable' returning model -> "
            "Attribution."
        )
    if callable(spec):
        return MethodSpec(getattr(spec, "__name__", type(spec).__name__), spec)
    raise TypeError(f"a method must be a name, a MethodSpec or a callable, got {type(spec)}.")


# --------------------------------------------------------------------------------------- metrics


@dataclass
class MetricSpec:
    """A metric for the dataset evaluation.

    Attributes
    ----------
    name : str
        Column value in the results.
    factory : callable
        ``factory(seed) -> quantus.Metric`` (``seed`` is the run seed for ``randomness="model"``,
        the sample's seed for ``"sample"`` and unused otherwise).
    randomness : {"none", "model", "sample", "global"}
        ``"none"``/``"model"``: one instance per rank, called on whole batches; ``"sample"``: a
        fresh instance per sample with the sample's seed; ``"global"``: one instance, called per
        sample inside :func:`keyed_global_rng`.
    uses_method : bool
        ``False`` for metrics of the data alone (one row set per sample, ``method=""``).
    explains : bool
        Whether the metric calls the explanation function itself (then a random method forces
        per-sample calls so its draws stay keyed to the sample).
    """

    name: str
    factory: Callable[[int], Any]
    randomness: str = "global"
    uses_method: bool = True
    explains: bool = True

    def __post_init__(self) -> None:
        if self.randomness not in ("none", "model", "sample", "global"):
            raise ValueError(
                f"metric {self.name!r}: randomness must be 'none', 'model', 'sample' or "
                f"'global', got {self.randomness!r}."
            )


_QUANTUS_OPTIONS = {
    "disable_warnings": True,
    "display_progressbar": False,
    "return_aggregate": False,
}


def _builtin_metrics(
    bounds: tuple[float, float] | None, options: dict[str, Any] | None = None
) -> dict[str, MetricSpec]:
    from quantus_metrics import (
        CSC,
        ConvergenceConstants,
        InherentNoise,
        ModelRandomisationSSIM,
        RandomLogitSSIM,
        SpectralComplexity,
    )

    kw = dict(options or {})

    def inherent_noise(seed: int) -> Any:
        if bounds is None and "bounds" not in kw:
            raise ValueError("InherentNoise needs the data bounds: pass bounds=(low, high).")
        return InherentNoise(**{"bounds": bounds, "n_draws": 64, **kw, "seed": seed})

    return {
        "SpectralComplexity": MetricSpec(
            "SpectralComplexity", lambda s: SpectralComplexity(**kw), "none", explains=False
        ),
        "ModelRandomisationSSIM": MetricSpec(
            "ModelRandomisationSSIM", lambda s: ModelRandomisationSSIM(**kw, seed=s), "model"
        ),
        "RandomLogitSSIM": MetricSpec(
            "RandomLogitSSIM", lambda s: RandomLogitSSIM(**kw, seed=s), "sample"
        ),
        "CSC": MetricSpec("CSC", lambda s: CSC(**{"n_vectors": 5, **kw, "seed": s}), "sample"),
        "ConvergenceConstants": MetricSpec(
            "ConvergenceConstants", lambda s: ConvergenceConstants(**kw, seed=s), "sample"
        ),
        "InherentNoise": MetricSpec(
            "InherentNoise", inherent_noise, "sample", uses_method=False, explains=False
        ),
    }


def resolve_metric(spec: Any, bounds: tuple[float, float] | None = None) -> MetricSpec:
    """A :class:`MetricSpec` from a spec, our metric's name, ``"quantus:<Name>"`` or
    ``"module:callable"`` (a factory; with a ``seed`` parameter it is seeded per sample).

    ``"Name(key=value, ...)"`` passes literal constructor options
    (``"quantus:RandomLogit(num_classes=10)"``); the full string names the rows."""
    if isinstance(spec, MetricSpec):
        return spec
    if isinstance(spec, str):
        base, options = split_options(spec)
        builtin = _builtin_metrics(bounds, options)
        if base in builtin:
            found = builtin[base]
            found.name = spec
            return found
        if base.startswith("quantus:"):
            import quantus

            cls = getattr(quantus, base.partition(":")[2], None)
            if not (isinstance(cls, type) and issubclass(cls, quantus.Metric)):
                raise ValueError(f"{spec!r}: quantus has no metric class of that name.")
            kwargs = {**_QUANTUS_OPTIONS, **options}
            return MetricSpec(spec, lambda s: cls(**kwargs), "global")
        if ":" in base:
            factory = load_callable(base, "metric")
            if options:
                plain = factory
                factory = _with_options(plain, options)
            return _metric_from_callable(spec, factory)
        raise ValueError(
            f"Unknown metric {spec!r}: use one of {sorted(builtin)}, 'quantus:<MetricClass>' "
            "or 'module:callable' returning a quantus.Metric."
        )
    if callable(spec):
        return _metric_from_callable(getattr(spec, "__name__", type(spec).__name__), spec)
    raise TypeError(f"a metric must be a name, a MetricSpec or a callable, got {type(spec)}.")


def _with_options(factory: Callable[..., Any], options: dict[str, Any]) -> Callable[..., Any]:
    if "seed" in _parameters(factory):
        return lambda seed: factory(**options, seed=seed)
    return lambda: factory(**options)


def _parameters(factory: Callable[..., Any]) -> set[str]:
    try:
        return set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return set()


def _metric_from_callable(name: str, factory: Callable[..., Any]) -> MetricSpec:
    if "seed" in _parameters(factory):
        return MetricSpec(name, lambda s: factory(seed=s), "sample")
    return MetricSpec(name, lambda s: factory(), "global")
