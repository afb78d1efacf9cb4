"""Performance Information Curves (Kapishnikov, Bolukbasi, Viégas, Terry, ICCV 2019, "XRAI").

Zhou et al. (2025, AdaptGrad Table 2) score Integrated-Gradients maps with an "Information Level"
that they take from Kapishnikov et al. (2019): the area under a *Performance Information Curve*.
An image is first blurred everywhere except for a small random set of pixels; then the top
``t`` fraction of the pixels the attribution ranks highest is revealed (kept sharp, the rest
interpolated from the revealed pixels), for a rising list of fractions ``t``. For each such
"bokeh" image two quantities are recorded:

* its **information**: the size of the losslessly compressed image, an estimate of its entropy,
  normalised to ``[0, 1]`` between the fully blurred image (0) and the original (1);
* the model's **performance** on it, normalised the same way: the softmax probability of the
  target class (Softmax Information Curve, SIC) or whether the prediction equals the target
  (Accuracy Information Curve, AIC).

The curve of performance against information, from ``(0, 0)`` to ``(1, 1)``, is higher when the
attribution reveals the pixels the model needs while spending little information; its area
(AUC, in ``[0, 1]``, higher is better) is the score. The construction follows the public
reference implementation of the authors' group (PAIR-code ``saliency``, ``metrics/pic.py``):
thresholds, the 1 % random seed mask, the clipping of both normalised axes, the running maximum
of the performance ("keep monotonous") and the exclusion of images whose fully blurred version
is not less informative, or not less confidently classified, than the original.

This project's own choices (see ``docs/metrics/information-level.md``): the blur is a batched
pull–push interpolation (Gortler et al., 1996) instead of the reference's Delaunay-linear
interpolation (scipy ``griddata``), so it runs on any device for a whole batch; information is
the WebP-lossless size as in the reference, of the image quantised to 8 bits per channel with a
per-image (or given) value range, while the model sees the unquantised image; the AUC is the
exact area under the piecewise-linear curve through the measured points instead of a
1 000-point resampling; excluded images score NaN (or raise, ``on_invalid="raise"``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from quantus.helpers.enums import DataType, EvaluationCategory, ModelType, ScoreDirection

from captum_ext.core.isolation import model_view
from captum_ext.core.modules import model_device_dtype, unwrap_model
from captum_ext.core.randomness import sample_seed
from quantus_metrics._base import QuantusDefaults, metric_defaults

__all__ = [
    "AccuracyInformationCurve",
    "DEFAULT_THRESHOLDS",
    "PICResult",
    "SoftmaxInformationCurve",
    "compressed_size",
    "information_curves",
    "linear_fill",
    "performance_information_curve",
    "pull_push_fill",
]

DEFAULT_THRESHOLDS = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.21, 0.34, 0.5, 0.75)
"""Fractions of the top-ranked pixels revealed, the reference implementation's example list."""

CURVES = ("softmax", "accuracy")
_INVALID = ("nan", "raise")


def _webp_available() -> bool:
    from PIL import features

    return bool(features.check("webp"))


def compressed_size(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Bytes of each ``uint8`` image, ``(B, C, H, W)``, encoded as lossless WebP by Pillow.

    Three channels are encoded as one RGB image, one channel as a grey image; any other channel
    count as one grey image per channel, sizes summed. This is the information estimate of the
    Performance Information Curves (an upper bound on the image's entropy in bytes).
    """
    from PIL import Image

    if not _webp_available():
        raise RuntimeError(
            "this Pillow build has no WebP codec (PIL.features.check('webp') is False); install "
            "a Pillow wheel with WebP support."
        )
    arr = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) uint8 images, got {arr.dtype} {arr.shape}.")
    sizes = np.empty(len(arr), dtype=np.int64)
    for i, img in enumerate(arr):  # the codec works on one image at a time
        planes = [img.transpose(1, 2, 0)] if img.shape[0] == 3 else list(img)
        total = 0
        for plane in planes:
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(plane)).save(
                buffer, format="WEBP", lossless=True, quality=100
            )
            total += buffer.tell()
        sizes[i] = total
    return sizes


def _sum_pool(t: torch.Tensor) -> torch.Tensor:
    """Sum over 2×2 blocks, zero-padding odd sizes (a padded cell carries no weight)."""
    h, w = t.shape[-2:]
    t = F.pad(t, (0, w % 2, 0, h % 2))
    n, c, hh, ww = t.shape
    return t.reshape(n, c, hh // 2, 2, ww // 2, 2).sum(dim=(3, 5))


def pull_push_fill(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill the unknown pixels of ``images`` from the known ones (``mask`` true), batched.

    Pull–push interpolation (Gortler, Grzeszczuk, Szeliski, Cohen, 1996): the pull phase sums the
    known values and their count over 2×2 blocks up to a single cell; the push phase goes back
    down, each level keeping its own block mean where the block holds at least one known pixel
    (weight ``min(count, 1)``) and taking the bilinearly upsampled coarser level elsewhere. Known
    pixels are returned exactly; every filled value is a convex combination of known values. An
    image without any known pixel is filled with its own per-channel mean (as the reference
    implementation's interpolation falls back to the mean colour).

    Parameters
    ----------
    images : torch.Tensor
        ``(N, C, H, W)`` floating-point images.
    mask : torch.Tensor
        ``(N, H, W)`` or ``(N, 1, H, W)`` boolean, true where the pixel is kept.
    """
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"images must be (N, C, H, W) floating point, got {tuple(images.shape)}.")
    weight = mask.reshape(len(images), 1, *images.shape[-2:]).to(images.dtype)
    values = [images * weight]
    weights = [weight]
    while values[-1].shape[-1] > 1 or values[-1].shape[-2] > 1:
        values.append(_sum_pool(values[-1]))
        weights.append(_sum_pool(weights[-1]))
    fallback = images.mean(dim=(-2, -1), keepdim=True)
    top_w = weights[-1]
    filled = torch.where(top_w > 0, values[-1] / top_w.clamp_min(1e-30), fallback)
    for level in range(len(values) - 2, -1, -1):
        w_level, v_level = weights[level], values[level]
        h, w = v_level.shape[-2:]
        # upsample to the padded size (twice the coarse grid), then drop the padding
        coarse = F.interpolate(filled, scale_factor=2, mode="bilinear", align_corners=False)
        coarse = coarse[..., :h, :w]
        own = v_level / w_level.clamp_min(1e-30)
        alpha = w_level.clamp(max=1.0)
        filled = alpha * own + (1 - alpha) * coarse
    return torch.where(weight > 0, images, filled)


def linear_fill(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fill unknown pixels by Delaunay-linear interpolation of the known ones (per image, CPU).

    The interpolation of the reference implementation (PAIR-code ``saliency``): the four corner
    pixels always count as known, so the triangulation covers the image; every channel is
    interpolated on the same triangulation. Uses ``scipy.interpolate.griddata``; one image at a
    time on the CPU, so it is much slower than :func:`pull_push_fill`.
    """
    from scipy.interpolate import griddata

    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"images must be (N, C, H, W) floating point, got {tuple(images.shape)}.")
    n, c, h, w = images.shape
    known_all = mask.reshape(n, h, w).cpu().numpy().copy()
    known_all[:, [0, 0, h - 1, h - 1], [0, w - 1, 0, w - 1]] = True
    arr = images.detach().cpu().numpy()
    out = arr.copy()
    for i in range(n):  # scipy triangulates one point set at a time
        known = known_all[i]
        if known.all():
            continue
        pts, holes = np.argwhere(known), np.argwhere(~known)
        values = arr[i][:, known].T  # (points, C)
        filled = griddata(pts, values, holes, method="linear")
        out[i][:, holes[:, 0], holes[:, 1]] = filled.T
    return torch.from_numpy(out).to(device=images.device, dtype=images.dtype)


FILLS = {"pullpush": pull_push_fill, "linear": linear_fill}


@dataclass
class PICResult:
    """Performance Information Curves of a batch.

    Attributes
    ----------
    auc : torch.Tensor
        ``(B,)`` area under each curve in ``[0, 1]``; NaN where the image was excluded.
    information : torch.Tensor
        ``(B, T)`` normalised information of the images with the top ``thresholds[k]`` revealed.
    performance : torch.Tensor
        ``(B, T)`` normalised performance on them (the running maximum with ``keep_monotonous``).
    valid : torch.Tensor
        ``(B,)`` boolean, false where the image was excluded.
    reasons : list of str
        Why each image was excluded (``""`` when it was not).
    thresholds : tuple of float
        The revealed fractions.
    """

    auc: torch.Tensor
    information: torch.Tensor
    performance: torch.Tensor
    valid: torch.Tensor
    reasons: list[str]
    thresholds: tuple[float, ...]

    def curve(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index``'s curve points in drawing order, ``(0, 0)`` first, ``(1, 1)`` last."""
        x, y = _with_endpoints(
            self.information[index : index + 1], self.performance[index : index + 1]
        )
        order = _lexsort(x, y)
        return (
            x.gather(1, order)[0].cpu().numpy(),
            y.gather(1, order)[0].cpu().numpy(),
        )


def _with_endpoints(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    zeros, ones = torch.zeros_like(x[:, :1]), torch.ones_like(x[:, :1])
    return torch.cat([zeros, x, ones], 1), torch.cat([zeros, y, ones], 1)


def _lexsort(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row-wise order by ``x``, ties by ``y`` (a stable sort on ``x`` of the ``y`` order)."""
    by_y = torch.argsort(y, dim=1, stable=True)
    by_x = torch.argsort(x.gather(1, by_y), dim=1, stable=True)
    return by_y.gather(1, by_x)


def curve_auc(information: torch.Tensor, performance: torch.Tensor) -> torch.Tensor:
    """Exact area under the piecewise-linear curves through ``(0,0)``, the points, ``(1,1)``.

    Points are joined in the order of their information; points with equal information are
    joined from the lowest to the highest performance (a vertical segment, no area).
    """
    x, y = _with_endpoints(information, performance)
    order = _lexsort(x, y)
    x, y = x.gather(1, order), y.gather(1, order)
    return ((x[:, 1:] - x[:, :-1]) * (y[:, 1:] + y[:, :-1]) / 2).sum(1)


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(t) for t in thresholds)
    if not values:
        raise ValueError("thresholds must hold at least one fraction.")
    if any(not (0.0 < t < 1.0) for t in values):
        raise ValueError(f"thresholds must lie strictly between 0 and 1, got {values}.")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"thresholds must be strictly increasing, got {values}.")
    return values


def _quantise(images: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    scale = (high - low).clamp_min(1e-12)
    q = torch.round((images - low) / scale * 255.0).clamp(0, 255)
    return q.to(torch.uint8)


def _saliency_2d(saliency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    if saliency.dim() == 3:
        saliency = saliency[:, None]
    if saliency.dim() != 4 or saliency.shape[0] != b or saliency.shape[-2:] != (h, w):
        raise ValueError(
            f"attributions of shape {tuple(saliency.shape)} do not match images {tuple(x.shape)}; "
            "give (B, H, W), (B, 1, H, W) or (B, C, H, W) maps at the input resolution."
        )
    if not torch.isfinite(saliency).all():
        raise ValueError("attributions contain NaN or infinite values.")
    return saliency.sum(1)  # the channel sum; take abs first (abs=True) to rank by magnitude


def information_curves(
    model: torch.nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    saliency: torch.Tensor | np.ndarray,
    curves: Sequence[str] = CURVES,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    random_fraction: float = 0.01,
    keep_monotonous: bool = True,
    min_pred_value: float = 0.0,
    value_range: tuple[float, float] | None = None,
    seed: int = 0,
    first_index: int = 0,
    random_mask: torch.Tensor | np.ndarray | None = None,
    fill: str = "pullpush",
) -> dict[str, PICResult]:
    """SIC and/or AIC of a batch from one set of bokeh images (Kapishnikov et al., 2019).

    Every requested curve is measured on the same blurred images and model outputs, so asking
    for both costs one pass. See the module docstring and :func:`performance_information_curve`.

    Parameters
    ----------
    model : torch.nn.Module
        Returns ``(B, classes)`` logits (softmax is applied here for the SIC).
    x : array-like
        ``(B, C, H, W)`` images, channel first.
    y : array-like
        ``(B,)`` target classes.
    saliency : array-like
        ``(B, H, W)``, ``(B, 1, H, W)`` or ``(B, C, H, W)`` attributions; channels are summed,
        higher means more important.
    curves : sequence of {"softmax", "accuracy"}
        SIC (softmax probability of the target) and/or AIC (1 when the arg-max is the target).
    thresholds : sequence of float
        Strictly increasing fractions in ``(0, 1)`` of top-ranked pixels to reveal.
    random_fraction : float
        Fraction of pixels kept at random in every blurred image (the reference's 1 %).
    keep_monotonous : bool
        Replace the performance by its running maximum over the thresholds (as in the paper).
    min_pred_value : float
        Exclude images whose performance on the original is below this (the reference library's
        default is 0.8; 0 keeps every image that passes the other checks).
    value_range : (float, float), optional
        The input range mapped to 0…255 before compression; default each image's own min–max.
    seed, first_index : int
        The random mask of sample ``i`` is drawn from ``sample_seed(seed, first_index + i)``,
        so it does not depend on batching and is the same for every attribution method.
    random_mask : array-like, optional
        ``(B, H, W)`` boolean masks to use instead of drawing them.
    fill : {"pullpush", "linear"}
        How hidden pixels are interpolated: :func:`pull_push_fill` (batched, any device, the
        default) or :func:`linear_fill` (the reference implementation's Delaunay-linear
        interpolation; per image on the CPU).
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {tuple(FILLS)}, got {fill!r}.")
    fill_func = FILLS[fill]
    curves = tuple(curves)
    if not curves or any(c not in CURVES for c in curves):
        raise ValueError(f"curve must be one of {CURVES}, got {curves!r}.")
    thresholds = _check_thresholds(thresholds)
    if not 0.0 <= random_fraction < 1.0:
        raise ValueError(f"random_fraction must lie in [0, 1), got {random_fraction}.")
    device, model_dtype = model_device_dtype(model)
    # an eval-mode private view: BatchNorm statistics and Dropout of the user's model untouched
    view = model_view(model)[0]
    work = torch.float32 if device.type == "mps" else torch.float64
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if next(iter(model.parameters()), None) is None and x.is_floating_point():
        model_dtype = x.dtype  # a parameter-free model computes in the input's precision
    x = x.to(device=device, dtype=work)
    if x.dim() != 4:
        raise ValueError(f"x must be channel-first (B, C, H, W) images, got {tuple(x.shape)}.")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or infinite values.")
    b, _, h, w = x.shape
    target = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    target = target.to(device).long().view(-1)
    if len(target) != b:
        raise ValueError(f"{b} images but {len(target)} targets.")
    s = torch.as_tensor(
        np.asarray(saliency) if not isinstance(saliency, torch.Tensor) else saliency
    ).to(device=device, dtype=work)
    s = _saliency_2d(s, x).reshape(b, h * w)

    if random_mask is None:
        count = int(h * w * random_fraction)
        rand = torch.zeros(b, h * w, dtype=torch.bool)
        for i in range(b):  # one private generator per sample index
            g = torch.Generator().manual_seed(sample_seed(seed, first_index + i, "pic-mask"))
            rand[i, torch.randperm(h * w, generator=g)[:count]] = True
        rand = rand.to(device)
    else:
        rand = torch.as_tensor(np.asarray(random_mask)).to(device=device, dtype=torch.bool)
        if rand.shape != (b, h, w):
            raise ValueError(f"random_mask must be (B, H, W) = {(b, h, w)}, got {rand.shape}.")
        rand = rand.reshape(b, h * w)

    if value_range is None:
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        high = x.amax(dim=(1, 2, 3), keepdim=True)
    else:
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}.")
        low, high = (
            torch.tensor(lo, dtype=work, device=device),
            torch.tensor(hi, dtype=work, device=device),
        )

    def measure(mask: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image = x if mask is None else fill_func(x, mask.reshape(b, h, w))
        info = torch.as_tensor(compressed_size(_quantise(image, low, high)), dtype=work)
        with torch.no_grad():
            logits = view(image.to(model_dtype))
        if logits.dim() != 2:
            raise ValueError(
                f"the model must return (batch, classes) logits, got {tuple(logits.shape)}."
            )
        if not torch.isfinite(logits).all():
            raise ValueError("the model returned NaN or infinite logits on a bokeh image.")
        perf = {
            "softmax": logits.double().softmax(1).gather(1, target[:, None])[:, 0],
            "accuracy": (logits.argmax(1) == target).double(),
        }
        return info.to(device), {c: perf[c].to(work) for c in curves}

    info_orig, perf_orig = measure(None)
    info_blur, perf_blur = measure(rand)
    quantiles = torch.quantile(
        s, torch.tensor([1 - t for t in thresholds], dtype=work, device=device), dim=1
    )
    infos, perfs = [], []
    for k in range(len(thresholds)):
        reveal = (s >= quantiles[k][:, None]) | rand
        info, perf = measure(reveal)
        infos.append(info)
        perfs.append(perf)
    info_t = torch.stack(infos, 1)
    return {
        c: _curve(
            info_orig,
            info_blur,
            info_t,
            perf_orig[c],
            perf_blur[c],
            torch.stack([p[c] for p in perfs], 1),
            min_pred_value,
            keep_monotonous,
            thresholds,
        )  # fmt: skip
        for c in curves
    }


def _curve(
    info_orig: torch.Tensor,
    info_blur: torch.Tensor,
    info_t: torch.Tensor,
    perf_orig: torch.Tensor,
    perf_blur: torch.Tensor,
    perf_t: torch.Tensor,
    min_pred_value: float,
    keep_monotonous: bool,
    thresholds: tuple[float, ...],
) -> PICResult:
    reasons = []
    for i in range(len(info_orig)):
        if perf_orig[i] < min_pred_value:
            reasons.append(
                f"performance on the original {float(perf_orig[i]):.4g} < min_pred_value "
                f"{min_pred_value}"
            )
        elif info_blur[i] >= info_orig[i]:
            reasons.append(
                f"the fully blurred image is not less informative ({int(info_blur[i])} vs "
                f"{int(info_orig[i])} bytes)"
            )
        elif perf_blur[i] >= perf_orig[i]:
            reasons.append(
                f"performance on the fully blurred image {float(perf_blur[i]):.4g} is not below "
                f"the original's {float(perf_orig[i]):.4g}"
            )
        else:
            reasons.append("")
    valid = torch.tensor([r == "" for r in reasons], device=info_orig.device)
    span_i = torch.where(valid, info_orig - info_blur, torch.ones_like(info_orig))
    span_p = torch.where(valid, perf_orig - perf_blur, torch.ones_like(perf_orig))
    information = ((info_t - info_blur[:, None]) / span_i[:, None]).clamp(0, 1)
    performance = ((perf_t - perf_blur[:, None]) / span_p[:, None]).clamp(0, 1)
    if keep_monotonous:
        performance = torch.cummax(performance, dim=1).values
    auc = curve_auc(information, performance)
    nan = torch.full_like(auc, float("nan"))
    return PICResult(
        auc=torch.where(valid, auc, nan),
        information=torch.where(valid[:, None], information, nan[:, None]),
        performance=torch.where(valid[:, None], performance, nan[:, None]),
        valid=valid,
        reasons=reasons,
        thresholds=thresholds,
    )


def performance_information_curve(
    model: torch.nn.Module,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    saliency: torch.Tensor | np.ndarray,
    curve: str = "softmax",
    **kwargs: Any,
) -> PICResult:
    """SIC (``curve="softmax"``) or AIC (``"accuracy"``) of a batch (Kapishnikov et al., 2019).

    Keyword arguments as for :func:`information_curves` (thresholds, random_fraction,
    keep_monotonous, min_pred_value, value_range, seed, first_index, random_mask, fill).
    """
    return information_curves(model, x, y, saliency, curves=(curve,), **kwargs)[curve]


class SoftmaxInformationCurve(QuantusDefaults):
    """Quantus metric: area under the Softmax Information Curve (Kapishnikov et al., 2019).

    The "Information Level" of Zhou et al. (2025, Table 2). Higher is better. See the module
    docstring for the construction and ``docs/metrics/information-level.md`` for the choices
    that are this project's own.

    Parameters
    ----------
    curve : {"softmax", "accuracy"}
        ``"accuracy"`` gives the Accuracy Information Curve (as :class:`AccuracyInformationCurve`).
    thresholds : sequence of float
        Strictly increasing fractions of top-ranked pixels revealed (default the reference's
        13 fractions from 0.5 % to 75 %).
    random_fraction : float
        Fraction of randomly kept pixels in every blurred image (default 0.01).
    keep_monotonous : bool
        Running maximum of the performance (default true, as in the paper).
    min_pred_value : float
        Exclude images whose original performance is below this (default 0).
    value_range : (float, float), optional
        Input range mapped to 8 bits for the compression; default each image's min–max.
    on_invalid : {"nan", "raise"}
        An excluded image (fully blurred version not less informative or not less confidently
        classified than the original, or below ``min_pred_value``) scores NaN, with the reason
        in ``self.reasons``; ``"raise"`` raises ``ValueError`` instead.
    seed : int
        Seed of the random masks; sample ``i`` of a call gets the same mask whatever the batch
        size, so methods scored on the same data are compared on the same masks.
    fill : {"pullpush", "linear"}
        Interpolation of the hidden pixels: batched pull–push (default, any device) or the
        reference implementation's Delaunay-linear interpolation (scipy, per image, CPU).
    **kwargs
        The ``quantus.Metric`` base arguments (``abs``, ``normalise``, ``return_aggregate``,
        ``aggregate_func`` (default ``np.nanmean``), ``display_progressbar``, ...). ``abs=True``
        ranks pixels by attribution magnitude (summed over channels after the absolute value).

    Attributes
    ----------
    reasons : list of str
        Per sample of the last call, why it was excluded (``""`` when it was scored).
    results : list of PICResult
        The curves of the last call, one entry per batch.

    Notes
    -----
    Scores are invariant to any strictly increasing transform of the attributions (only their
    ranking matters). The model must return logits; inputs must be channel-first images.
    """

    name = "Softmax Information Curve AUC"
    curve = "softmax"
    data_applicability = {DataType.IMAGE}
    model_applicability = {ModelType.TORCH}
    score_direction = ScoreDirection.HIGHER
    evaluation_category = EvaluationCategory.FAITHFULNESS

    def __init__(
        self,
        curve: str | None = None,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        random_fraction: float = 0.01,
        keep_monotonous: bool = True,
        min_pred_value: float = 0.0,
        value_range: tuple[float, float] | None = None,
        on_invalid: str = "nan",
        seed: int = 0,
        fill: str = "pullpush",
        **kwargs: Any,
    ) -> None:
        super().__init__(**metric_defaults(kwargs, np.nanmean))
        curve = type(self).curve if curve is None else curve
        if curve not in CURVES:
            raise ValueError(f"curve must be one of {CURVES}, got {curve!r}.")
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {tuple(FILLS)}, got {fill!r}.")
        if on_invalid not in _INVALID:
            raise ValueError(f"on_invalid must be one of {_INVALID}, got {on_invalid!r}.")
        if not 0.0 <= float(random_fraction) < 1.0:
            raise ValueError(f"random_fraction must lie in [0, 1), got {random_fraction}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
        if value_range is not None and not float(value_range[1]) > float(value_range[0]):
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range}.")
        self.curve = curve
        self.thresholds = _check_thresholds(thresholds)
        self.random_fraction = float(random_fraction)
        self.keep_monotonous = bool(keep_monotonous)
        self.min_pred_value = float(min_pred_value)
        self.value_range = value_range
        self.on_invalid = on_invalid
        self.seed = seed
        self.fill = fill
        if curve == "accuracy":
            self.name = "Accuracy Information Curve AUC"
        self.reasons: list[str] = []
        self.results: list[PICResult] = []
        self._offset = 0

    def __call__(self, model: Any, x_batch: Any, y_batch: Any, **kwargs: Any) -> Any:
        """Score ``a_batch`` (or the explanations of ``explain_func``); see ``quantus.Metric``."""
        self.reasons, self.results, self._offset = [], [], 0
        return super().__call__(model, x_batch, y_batch, **kwargs)

    def evaluate_batch(
        self,
        model: Any,
        x_batch: np.ndarray,
        y_batch: np.ndarray,
        a_batch: np.ndarray,
        **kwargs: Any,
    ) -> list[float]:
        """One AUC per sample of the batch (NaN for an excluded image)."""
        module = unwrap_model(model)
        result = performance_information_curve(
            module,
            x_batch,
            y_batch,
            a_batch,
            curve=self.curve,
            thresholds=self.thresholds,
            random_fraction=self.random_fraction,
            keep_monotonous=self.keep_monotonous,
            min_pred_value=self.min_pred_value,
            value_range=self.value_range,
            seed=self.seed,
            first_index=self._offset,
            fill=self.fill,
        )
        self._offset += len(x_batch)
        self.results.append(result)
        self.reasons += result.reasons
        if self.on_invalid == "raise" and not bool(result.valid.all()):
            bad = [
                f"sample {self._offset - len(x_batch) + i}: {r}"
                for i, r in enumerate(result.reasons)
                if r
            ]
            raise ValueError("images the curve cannot score: " + "; ".join(bad))
        return result.auc.cpu().tolist()


class AccuracyInformationCurve(SoftmaxInformationCurve):
    """Quantus metric: area under the Accuracy Information Curve (Kapishnikov et al., 2019).

    As :class:`SoftmaxInformationCurve` with the performance being 1 when the model's arg-max on
    the bokeh image is the target class and 0 otherwise.
    """

    name = "Accuracy Information Curve AUC"
    curve = "accuracy"
