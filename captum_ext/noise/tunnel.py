"""Captum's ``NoiseTunnel`` with per-feature σ tensors and a private random generator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from captum._utils.common import (
    _expand_and_update_additional_forward_args,
    _expand_and_update_baselines,
    _expand_and_update_feature_mask,
    _expand_and_update_target,
    _format_baseline,
    _format_tensor_into_tuples,
    _is_tuple,
)
from captum.attr import NoiseTunnel
from captum.attr._utils.attribution import Attribution
from captum.log import log_usage
from torch import Tensor

from captum_ext.core.isolation import isolated_call
from captum_ext.core.randomness import make_generator
from captum_ext.core.reprs import ReprFromInit
from captum_ext.core.validation import check_finite, check_positive_int, check_result_finite
from captum_ext.noise.statistics import broadcast_sigma

__all__ = ["SeededNoiseTunnel", "TunnelOptions"]


@dataclass(frozen=True)
class TunnelOptions:
    """The options of one smoothed call, as ``NoiseTunnel.attribute`` names them.

    ``generator`` and ``seed`` follow the package's randomness policy
    (:mod:`captum_ext.core.randomness`).
    """

    nt_type: str = "smoothgrad"
    nt_samples: int = 5
    nt_samples_batch_size: int | None = None
    draw_baseline_from_distrib: bool = False
    generator: torch.Generator | None = None
    seed: int | None = None


def _normal(shape: torch.Size, like: Tensor, generator: torch.Generator) -> Tensor:
    """Standard normal draws of ``shape`` from ``generator``, moved to ``like``'s device."""
    noise = torch.randn(shape, generator=generator, dtype=like.dtype, device=generator.device)
    return noise.to(like.device)


class SeededNoiseTunnel(ReprFromInit, NoiseTunnel):
    """Captum's ``NoiseTunnel`` with per-feature σ tensors and a private random generator.

    ``attribute`` takes everything ``NoiseTunnel.attribute`` takes; ``stdevs`` may additionally
    be a tensor broadcastable to the inputs (one per input tensor for tuple inputs), and
    ``generator=``/``seed=`` choose the random stream. With a float σ and ``seed=s`` the draws
    are bit-identical to Captum's ``NoiseTunnel`` run after ``torch.manual_seed(s)``, but the
    global RNG is left untouched (also for ``draw_baseline_from_distrib=True``).

    Only the noise (``_add_noise_to_inputs``) and the baseline draw (``_expand_partial``) are
    replaced; expansion order (``repeat_interleave``), batching and smoothing are Captum's.
    """

    # Captum runs the forward passes; check the output and the target once before sampling.
    _preflight_forward = True

    def __init__(self, attribution_method: Attribution) -> None:
        if not isinstance(attribution_method, Attribution):
            raise TypeError(
                "attribution_method must be a Captum Attribution instance (e.g. Saliency(model)), "
                f"got {type(attribution_method).__name__}."
            )
        super().__init__(attribution_method)
        self._sigmas: tuple[Tensor, ...] | None = None
        self._generator: torch.Generator | None = None

    @log_usage()
    @isolated_call
    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor, ...],
        nt_type: str = "smoothgrad",
        nt_samples: int = 5,
        nt_samples_batch_size: int | None = None,
        stdevs: float | Tensor | tuple[float | Tensor, ...] = 1.0,
        draw_baseline_from_distrib: bool = False,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Smoothed attributions; see ``captum.attr.NoiseTunnel.attribute``.

        Parameters
        ----------
        stdevs : float, Tensor or tuple of them
            σ per input tensor; a tensor is broadcast to the input's shape (≥ 0 everywhere).
        generator, seed
            The random stream, at most one of them (:mod:`captum_ext.core.randomness`); with
            neither, a private generator seeded with 0.
        """
        formatted = self._check_call(inputs, nt_samples, nt_samples_batch_size)
        if not isinstance(stdevs, tuple):
            stdevs = (stdevs,) * len(formatted)
        if len(stdevs) != len(formatted):
            raise ValueError(
                f"stdevs has {len(stdevs)} entries but there are {len(formatted)} input tensors."
            )
        sigmas = tuple(self._sigma_tensor(s, x) for s, x in zip(stdevs, formatted))
        options = TunnelOptions(
            nt_type, nt_samples, nt_samples_batch_size, draw_baseline_from_distrib, generator, seed
        )
        return self._run(inputs, formatted, sigmas, options, kwargs)

    # -- shared plumbing ---------------------------------------------------------------------

    @staticmethod
    def _check_call(
        inputs: Tensor | tuple[Tensor, ...], nt_samples: int, nt_samples_batch_size: int | None
    ) -> tuple[Tensor, ...]:
        check_positive_int("nt_samples", nt_samples)
        if nt_samples_batch_size is not None:
            check_positive_int("nt_samples_batch_size", nt_samples_batch_size)
        formatted = _format_tensor_into_tuples(inputs)
        check_finite(formatted, "inputs")
        if len({x.shape[0] for x in formatted}) > 1:
            raise ValueError(
                "All input tensors must share the batch size (dim 0), got "
                f"{[tuple(x.shape) for x in formatted]}."
            )
        return formatted

    @staticmethod
    def _sigma_tensor(stdev: float | Tensor, x: Tensor) -> Tensor:
        return broadcast_sigma(stdev, x, "stdevs")

    def _run(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        formatted: tuple[Tensor, ...],
        sigmas: tuple[Tensor, ...],
        options: TunnelOptions,
        kwargs: dict[str, Any],
    ) -> Any:
        if "stdevs" in kwargs:
            raise TypeError(f"{type(self).__name__} computes stdevs itself; do not pass stdevs=.")
        self._generator = make_generator(options.generator, options.seed, formatted[0].device)
        self._sigmas = sigmas
        try:
            result = NoiseTunnel.attribute.__wrapped__(  # type: ignore[attr-defined]
                self,
                formatted if _is_tuple(inputs) else formatted[0],
                nt_type=options.nt_type,
                nt_samples=options.nt_samples,
                nt_samples_batch_size=options.nt_samples_batch_size,
                draw_baseline_from_distrib=options.draw_baseline_from_distrib,
                **kwargs,
            )
        finally:
            self._sigmas = None
            self._generator = None
        with_delta = self.is_delta_supported and kwargs.get("return_convergence_delta", False)
        attributions = result[0] if with_delta else result
        check_result_finite(_format_tensor_into_tuples(attributions), type(self).__name__)
        return result

    # -- Captum extension points -------------------------------------------------------------

    def _add_noise_to_inputs(  # type: ignore[override]
        self, nt_samples_partition: int, inputs: tuple[Tensor, ...], stdevs: Any = None
    ) -> tuple[Tensor, ...]:
        if self._sigmas is None or self._generator is None:
            raise RuntimeError("_add_noise_to_inputs is only valid inside attribute().")
        noisy = []
        # same order as Captum (one draw per input tensor, the samples of an example adjacent,
        # i.e. repeat_interleave), but drawn as (N, n, ...) and broadcast: no repeated copies
        for x, sigma in zip(inputs, self._sigmas):
            shape = (x.shape[0], nt_samples_partition, *x.shape[1:])
            noise = _normal(torch.Size(shape), x, self._generator)
            sample = noise.mul_(sigma.unsqueeze(1)).add_(x.unsqueeze(1)).flatten(0, 1)
            noisy.append(sample.requires_grad_() if self.is_gradient_method else sample)
        return tuple(noisy)

    def _expand_partial(  # type: ignore[override]
        self,
        nt_samples_partition: int,
        kwargs_partial: dict[str, Any],
        inputs: tuple[Tensor, ...],
        draw_baseline_from_distrib: bool,
    ) -> None:
        _expand_and_update_additional_forward_args(nt_samples_partition, kwargs_partial)
        _expand_and_update_target(nt_samples_partition, kwargs_partial)
        _expand_and_update_feature_mask(nt_samples_partition, kwargs_partial)
        if not (draw_baseline_from_distrib and "baselines" in kwargs_partial):
            _expand_and_update_baselines(inputs, nt_samples_partition, kwargs_partial, False)
            return
        # Captum draws these indices with np.random; we use the private generator instead
        baselines = _format_baseline(kwargs_partial["baselines"], inputs)
        draws = nt_samples_partition * inputs[0].shape[0]
        assert self._generator is not None
        picked = []
        for baseline in baselines:
            if isinstance(baseline, Tensor):
                index = torch.randint(
                    baseline.shape[0], (draws,), generator=self._generator,
                    device=self._generator.device,
                )  # fmt: skip
                baseline = baseline[index.to(baseline.device)]
            picked.append(baseline)
        kwargs_partial["baselines"] = tuple(picked)
