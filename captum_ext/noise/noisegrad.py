"""NoiseGrad and FusionGrad (Bykov et al., AAAI 2022): smoothing by noise on the model weights.

NoiseGrad averages an attribution method over ``n_models`` copies of the model whose parameters
are multiplied element-wise by noise drawn from N(mean, std²) (mean = 1, std = 0.2 by default):

    NG(x) = 1/M Σ_m A(f_{θ ⊙ η_m}, x),   η_m ~ N(1, σ²).

FusionGrad additionally smooths every perturbed model over input noise, as SmoothGrad does:

    FG(x) = 1/(M·N) Σ_m Σ_n A(f_{θ ⊙ η_m}, x + ε_n),   ε_n ~ N(0, σ_x²).

Zhou et al. (2025) compare AdaptGrad with both and combine them (A-NG =
``AdaptGrad(NoiseGrad(...))``).

How the wrapped method is rebound to the perturbed model
--------------------------------------------------------
A Captum attribution object is bound to its model (``forward_func``, and for layer methods also
``layer``). NoiseGrad accepts either

* an attribution *instance* (``NoiseGrad(Saliency(model))``): once per ``attribute`` call the
  method object and its model are deep-copied together (one ``copy.deepcopy`` memo), so
  ``forward_func``, layers and hooks all point into the same private copy; or
* a *factory* plus the model (``NoiseGrad(lambda m: Saliency(m), model=model)``), for methods
  that cannot be deep-copied; the factory is called once per ``attribute`` call on the copy.

Each draw then writes ``θ ⊙ η_m`` into the copy's parameters (computed from the user's untouched
parameters, so draws never compound). The user's model is never written to: its parameters,
buffers, flags and modes stay bit-for-bit the same.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
from captum._utils.common import _format_output, _format_tensor_into_tuples, _is_tuple
from captum.attr._utils.attribution import Attribution, GradientAttribution
from captum.log import log_usage
from torch import Tensor, nn
from tqdm.auto import tqdm

from captum_ext.core.isolation import isolated_call
from captum_ext.core.modules import model_of
from captum_ext.core.progress import show_progress as _show_progress
from captum_ext.core.randomness import make_generator
from captum_ext.core.reprs import ReprFromInit
from captum_ext.core.validation import (
    check_finite,
    check_positive,
    check_positive_int,
    check_result_finite,
)
from captum_ext.noise.tunnel import SeededNoiseTunnel

__all__ = ["FusionGrad", "NoiseGrad"]

Factory = Callable[[nn.Module], Attribution]
_FACTORY_HINT = (
    "Or pass a factory and the model: NoiseGrad(lambda m: Saliency(m), model=model)."
)
ParamFilter = Callable[[str, nn.Parameter], bool]


class NoiseGrad(ReprFromInit, GradientAttribution):
    """NoiseGrad: average attributions over models with multiplicative weight noise.

    Parameters
    ----------
    attribution_method : Attribution or callable
        An attribution instance bound to a model (deep-copied with it), or a factory
        ``model -> Attribution`` (then ``model`` is required).
    model : nn.Module, optional
        The model, only with a factory.
    n_models : int
        M, the number of perturbed models (default 10).
    std : float
        σ of the multiplicative noise η ~ N(mean, σ²) (default 0.2, Bykov et al.). 0 gives the
        wrapped method exactly.
    mean : float
        Mean of the multiplicative noise (default 1).
    param_filter : callable, optional
        ``(name, parameter) -> bool``; only parameters it accepts are perturbed (default: all
        floating-point parameters).
    seed : int, optional
        Random stream of calls that pass neither ``generator`` nor ``seed``; with none at all,
        seed 0 (:mod:`captum_ext.core.randomness`).

    References
    ----------
    K. Bykov, A. Hedström, S. Nakajima, M. M.-C. Höhne. NoiseGrad — enhancing explanations by
    introducing stochasticity to model weights. AAAI 2022. Compared with in Zhou et al. (2025,
    Table 2).

    Examples
    --------
    >>> ng = NoiseGrad(Saliency(model), n_models=10, std=0.2)
    >>> maps = ng.attribute(images, target=labels, seed=0, progress=False)
    """

    # The wrapped method runs the forward passes; check output and target once before sampling.
    _preflight_forward = True

    def __init__(
        self,
        attribution_method: Attribution | Factory,
        model: nn.Module | None = None,
        n_models: int = 10,
        std: float = 0.2,
        mean: float = 1.0,
        param_filter: ParamFilter | None = None,
        seed: int | None = None,
    ) -> None:
        check_positive_int("n_models", n_models)
        check_positive("std", std, allow_zero=True)
        check_positive("mean", mean, allow_zero=True)
        if isinstance(attribution_method, Attribution):
            if model is not None and model is not model_of(attribution_method, _FACTORY_HINT):
                raise ValueError(
                    "model= differs from the model the attribution method is bound to."
                )
            model = model_of(attribution_method, _FACTORY_HINT)
        elif callable(attribution_method):
            if not isinstance(model, nn.Module):
                raise TypeError(
                    "With a factory, pass the model too: NoiseGrad(lambda m: Saliency(m), model=m)."
                )
        else:
            raise TypeError(
                "attribution_method must be a Captum Attribution or a factory model -> "
                f"Attribution, got {type(attribution_method).__name__}."
            )
        super().__init__(model)
        self.model = model
        self.attribution_method = attribution_method
        self.n_models = n_models
        self.std = float(std)
        self.mean = float(mean)
        self.param_filter = param_filter
        self.seed = seed

    @property
    def multiplies_by_inputs(self) -> bool:
        template = self.attribution_method
        return isinstance(template, Attribution) and template.multiplies_by_inputs

    def has_convergence_delta(self) -> bool:
        return False

    @log_usage()
    @isolated_call
    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: Any = None,
        additional_forward_args: Any = None,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        progress: bool | None = None,
        show_progress: bool | None = None,
        **kwargs: Any,
    ) -> Tensor | tuple[Tensor, ...]:
        """Mean attribution over ``n_models`` perturbed copies of the model.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Batch-first inputs; every draw explains the whole batch at once.
        target, additional_forward_args
            As in Captum; forwarded to the wrapped method.
        generator, seed
            This call's random stream (at most one); with neither, the constructor's ``seed``.
            The global RNG is never touched.
        progress : bool, optional
            tqdm bar over the model draws; ``None`` (default) shows it on interactive terminals
            only (:func:`captum_ext.core.progress.show_progress`), as for every long method.
        show_progress : bool, optional
            Deprecated spelling of ``progress``.
        **kwargs
            Further arguments of the wrapped method (``baselines``, ``abs``, ...).

        Returns
        -------
        Tensor or tuple of Tensor
            Same structure as the wrapped method's attributions.
        """
        if kwargs.get("return_convergence_delta", False):
            raise ValueError(f"{type(self).__name__} does not return convergence deltas.")
        if show_progress is not None:
            warnings.warn(
                "show_progress is deprecated; pass progress= (the keyword of every long method).",
                DeprecationWarning,
                stacklevel=3,
            )
            progress = show_progress if progress is None else progress
        formatted = _format_tensor_into_tuples(inputs)
        check_finite(formatted, "inputs")
        device = next(iter(self.model.parameters()), formatted[0]).device
        if generator is None and seed is None:
            seed = self.seed
        rng = make_generator(generator, seed, device)
        method, copy_params, user_params = self._private_copy()
        total: list[Tensor] | None = None
        with torch.no_grad():
            for _ in tqdm(
                range(self.n_models), disable=not _show_progress(progress), desc=type(self).__name__
            ):
                for mine, theirs in zip(copy_params, user_params):
                    noise = torch.randn(
                        theirs.shape, generator=rng, dtype=theirs.dtype, device=rng.device
                    )
                    mine.copy_(theirs * (self.mean + self.std * noise.to(theirs.device)))
                with torch.enable_grad():
                    result = self._one_model(
                        method, inputs, target, additional_forward_args, rng, kwargs
                    )
                parts = _format_tensor_into_tuples(result)
                total = list(parts) if total is None else [t + p for t, p in zip(total, parts)]
        assert total is not None
        averaged = tuple(t / self.n_models for t in total)
        check_result_finite(averaged, type(self).__name__)
        return _format_output(_is_tuple(result), averaged)

    def _one_model(
        self,
        method: Attribution,
        inputs: Tensor | tuple[Tensor, ...],
        target: Any,
        additional_forward_args: Any,
        rng: torch.Generator,
        kwargs: dict[str, Any],
    ) -> Any:
        """Attributions of one perturbed model (FusionGrad adds input noise here)."""
        return method.attribute(
            inputs, target=target, additional_forward_args=additional_forward_args, **kwargs
        )

    def _private_copy(self) -> tuple[Attribution, list[nn.Parameter], list[nn.Parameter]]:
        """The method bound to a deep copy of the model, and the (copy, user) parameter pairs."""
        memo: dict[int, Any] = {}
        model_copy = copy.deepcopy(self.model, memo)
        if isinstance(self.attribution_method, Attribution):
            try:
                method = copy.deepcopy(self.attribution_method, memo)
            except Exception as err:  # noqa: BLE001 - any copy failure gets the same advice
                raise TypeError(
                    f"Cannot deep-copy {type(self.attribution_method).__name__} ({err}); pass a "
                    "factory instead: NoiseGrad(lambda m: Method(m), model=model)."
                ) from err
        else:
            method = self.attribution_method(model_copy)
        pairs = [
            (mine, theirs)
            for (name, theirs), mine in zip(self.model.named_parameters(), model_copy.parameters())
            if theirs.is_floating_point()
            and (self.param_filter is None or self.param_filter(name, theirs))
        ]
        return method, [p for p, _ in pairs], [p for _, p in pairs]


class FusionGrad(NoiseGrad):
    """FusionGrad (NoiseGrad++): NoiseGrad over models and SmoothGrad over inputs, combined.

    For each of ``n_models`` perturbed models (as :class:`NoiseGrad`), the wrapped method is
    smoothed over ``n_samples`` inputs ``x + ε``, ε ~ N(0, input_std²), batched like Captum's
    ``NoiseTunnel`` (same expansion order; noise from the private generator).

    Parameters
    ----------
    attribution_method, model, n_models, std, mean, param_filter, seed
        As :class:`NoiseGrad`.
    n_samples : int
        Noisy inputs per model (default 10).
    input_std : float or Tensor
        σ_x of the input noise, absolute (default 0.2). For SmoothGrad's convention pass
        ``captum_ext.noise.adaptgrad.smoothgrad_std(bounds, alpha)``.
    nt_samples_batch_size : int, optional
        Noisy inputs per forward/backward batch.

    References
    ----------
    K. Bykov et al., NoiseGrad — enhancing explanations by introducing stochasticity to model
    weights, AAAI 2022 (FusionGrad, eq. 6).
    """

    def __init__(
        self,
        attribution_method: Attribution | Factory,
        model: nn.Module | None = None,
        n_models: int = 10,
        std: float = 0.2,
        mean: float = 1.0,
        n_samples: int = 10,
        input_std: float | Tensor = 0.2,
        nt_samples_batch_size: int | None = None,
        param_filter: ParamFilter | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(attribution_method, model, n_models, std, mean, param_filter, seed)
        check_positive_int("n_samples", n_samples)
        if not isinstance(input_std, Tensor):
            check_positive("input_std", input_std, allow_zero=True)
        self.n_samples = n_samples
        self.input_std = input_std
        self.nt_samples_batch_size = nt_samples_batch_size

    def _one_model(
        self,
        method: Attribution,
        inputs: Tensor | tuple[Tensor, ...],
        target: Any,
        additional_forward_args: Any,
        rng: torch.Generator,
        kwargs: dict[str, Any],
    ) -> Any:
        tunnel = SeededNoiseTunnel(method)
        return tunnel.attribute(
            inputs,
            nt_samples=self.n_samples,
            nt_samples_batch_size=self.nt_samples_batch_size,
            stdevs=self.input_std,
            generator=rng,
            target=target,
            additional_forward_args=additional_forward_args,
            **kwargs,
        )
