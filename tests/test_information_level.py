"""Performance Information Curves (Kapishnikov et al. 2019), the AdaptGrad paper's Information
Level: a slow per-sample reference, constructed cases with known answers, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import quantus
import torch
from PIL import Image
from torch import nn

from quantus_metrics.information_level import (
    DEFAULT_THRESHOLDS,
    AccuracyInformationCurve,
    SoftmaxInformationCurve,
    curve_auc,
    information_curves,
    linear_fill,
    performance_information_curve,
    pull_push_fill,
)

SIZE = 32
REGION = (slice(4, 12), slice(18, 26))  # the only pixels the region model reads


class RegionModel(nn.Module):
    """Class 0's logit grows with the high-frequency energy inside one 8×8 region: a blur of the
    region lowers it, revealing the region's pixels restores it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = x[..., REGION[0], REGION[1]]
        energy = (r[..., :, 1:] - r[..., :, :-1]).pow(2).mean(dim=(1, 2, 3))
        logit = 80.0 * (energy - 0.03)
        return torch.stack([logit, torch.zeros_like(logit), -logit], 1)


class _InfModel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((len(x), 3), float("inf"), dtype=x.dtype)


def _images(n: int = 3, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = np.linspace(0, 1, SIZE)[None, None, None, :] * np.ones((n, channels, SIZE, 1))
    return 0.5 * smooth + 0.5 * rng.uniform(size=(n, channels, SIZE, SIZE))


def _region_saliency(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = 0.01 * rng.uniform(size=(n, 1, SIZE, SIZE))  # strict ranks, the region first
    s[..., REGION[0], REGION[1]] += 1.0
    return s


# ---------------------------------------------------------------- slow reference (numpy, loops)


def _ref_fill(img: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Pull–push written per image with slicing (see docs/metrics/information-level.md)."""
    vals, wts = [img * known], [known.astype(float)[None]]
    while vals[-1].shape[-1] > 1 or vals[-1].shape[-2] > 1:
        nxt = []
        for a in (vals[-1], wts[-1]):
            h, w = a.shape[-2:]
            p = np.zeros(a.shape[:-2] + (h + h % 2, w + w % 2))
            p[..., :h, :w] = a
            nxt.append(
                p[..., 0::2, 0::2] + p[..., 1::2, 0::2] + p[..., 0::2, 1::2] + p[..., 1::2, 1::2]
            )
        vals.append(nxt[0])
        wts.append(nxt[1])
    top = wts[-1]
    cur = vals[-1] / top if top.item() > 0 else img.mean(axis=(1, 2), keepdims=True)
    for level in range(len(vals) - 2, -1, -1):
        h, w = vals[level].shape[-2:]
        up = _ref_upsample(cur)[..., :h, :w]
        alpha = np.minimum(wts[level], 1.0)
        own = np.divide(
            vals[level], wts[level], out=np.zeros_like(vals[level]), where=wts[level] > 0
        )
        cur = alpha * own + (1 - alpha) * up
    return np.where(known[None], img, cur)


def _ref_upsample(a: np.ndarray) -> np.ndarray:
    """×2 bilinear with half-pixel centres: output o samples input (o + 0.5)/2 − 0.5."""

    def axis(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.maximum((np.arange(2 * n) + 0.5) / 2 - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        return i0, i1, src - i0

    r0, r1, rl = axis(a.shape[-2])
    c0, c1, cl = axis(a.shape[-1])
    rows = a[..., r0, :] * (1 - rl)[:, None] + a[..., r1, :] * rl[:, None]
    return rows[..., c0] * (1 - cl) + rows[..., c1] * cl


def _ref_bytes(img: np.ndarray, lo: float, hi: float) -> int:
    q = np.clip(np.round((img - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(q.transpose(1, 2, 0)).save(buf, format="WEBP", lossless=True, quality=100)
    return len(buf.getvalue())


def _ref_pic(model, img, label, sal, rand, thresholds, curve="softmax", monotone=True):
    """One image's PIC AUC from the definition: blur, reveal top-t, WebP size, model score."""
    lo, hi = img.min(), img.max()

    def perf(im):
        with torch.no_grad():
            logits = model(torch.from_numpy(im[None])).double()[0]
        if curve == "softmax":
            return float(torch.softmax(logits, 0)[label])
        return float(int(torch.argmax(logits)) == label)

    e_orig, p_orig = _ref_bytes(img, lo, hi), perf(img)
    blurred = _ref_fill(img, rand)
    e_blur, p_blur = _ref_bytes(blurred, lo, hi), perf(blurred)
    if not (e_blur < e_orig and p_blur < p_orig):
        return float("nan"), None
    points, best = [(0.0, 0.0), (1.0, 1.0)], 0.0
    flat = sal.ravel()
    for t in thresholds:
        known = (sal >= np.quantile(flat, 1 - t)) | rand
        im = _ref_fill(img, known)
        e = min(max((_ref_bytes(im, lo, hi) - e_blur) / (e_orig - e_blur), 0.0), 1.0)
        p = min(max((perf(im) - p_blur) / (p_orig - p_blur), 0.0), 1.0)
        best = max(best, p) if monotone else p
        points.append((e, best))
    points.sort()
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        area += (x1 - x0) * (y0 + y1) / 2
    return area, points


def _masks(n: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(n, SIZE, SIZE)) < 0.01


# ------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("curve", ["softmax", "accuracy"])
@pytest.mark.parametrize("monotone", [True, False])
def test_batched_matches_per_sample_reference(curve, monotone):
    model, x = RegionModel().double(), _images(4)
    y = np.zeros(4, dtype=int)
    rng = np.random.default_rng(3)
    sal = np.stack([_region_saliency(1)[0], rng.normal(size=(1, SIZE, SIZE)),
                    1.02 - _region_saliency(1)[0], rng.uniform(size=(1, SIZE, SIZE))])  # fmt: skip
    rand, thresholds = _masks(4), DEFAULT_THRESHOLDS
    res = performance_information_curve(
        model, x, y, sal, curve=curve, thresholds=thresholds, keep_monotonous=monotone,
        random_mask=rand,
    )  # fmt: skip
    checked = 0
    for i in range(4):
        ref, points = _ref_pic(model, x[i], 0, sal[i, 0], rand[i], thresholds, curve, monotone)
        if np.isnan(ref):
            assert not bool(res.valid[i]) and np.isnan(float(res.auc[i]))
            continue
        checked += 1
        assert abs(float(res.auc[i]) - ref) < 1e-12
        xs, ys = res.curve(i)
        np.testing.assert_allclose(np.c_[xs, ys], np.array(points), atol=1e-12)
    assert checked >= 3


def test_fill_keeps_known_pixels_and_is_convex():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-2, 3, size=(3, 2, 13, 22)))
    known = torch.from_numpy(rng.uniform(size=(3, 13, 22)) < 0.05)
    known[0] = False  # no known pixel: the per-channel mean everywhere
    known[1] = True  # every pixel known: the image itself
    out = pull_push_fill(x, known)
    assert torch.equal(out[1], x[1])
    np.testing.assert_allclose(out[0], x[0].mean(dim=(1, 2), keepdim=True).expand(2, 13, 22))
    kept = known[2][None].expand(2, 13, 22)
    assert torch.equal(out[2][kept], x[2][kept])
    vals = x[2][kept].view(2, -1)
    assert (out[2] >= vals.min(1).values[:, None, None] - 1e-12).all()
    assert (out[2] <= vals.max(1).values[:, None, None] + 1e-12).all()
    for i in (0, 2):  # the batched fill equals the per-image reference (odd and even sizes)
        np.testing.assert_allclose(out[i].numpy(), _ref_fill(x[i].numpy(), known[i].numpy()),
                                   atol=1e-12)  # fmt: skip
    const = torch.full((1, 3, 9, 9), 0.7, dtype=torch.float64)
    assert torch.allclose(pull_push_fill(const, known[2:3, :9, :9] | True), const)


def test_linear_fill_is_exact_on_affine_images():
    # Delaunay-linear interpolation (the reference's) reproduces an affine image exactly
    rows, cols = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    ramp = np.stack([0.3 * rows - 0.1 * cols + 2.0, 0.05 * cols + 0.2 * rows])[None]
    known = torch.from_numpy(_masks(1) | _masks(1, seed=8))
    out = linear_fill(torch.from_numpy(ramp), known)
    np.testing.assert_allclose(out.numpy(), ramp, atol=1e-9)
    noise = torch.from_numpy(_images(1))
    kept = known[0][None].expand(3, SIZE, SIZE)
    assert torch.equal(linear_fill(noise, known)[0][kept], noise[0][kept])


def test_both_curves_in_one_pass_match_separate_calls():
    model, x = RegionModel().double(), _images(3)
    y, s = np.zeros(3, dtype=int), _region_saliency(3)
    both = information_curves(model, x, y, s, seed=4)
    for curve in ("softmax", "accuracy"):
        alone = performance_information_curve(model, x, y, s, curve=curve, seed=4)
        assert torch.equal(both[curve].auc.nan_to_num(-1), alone.auc.nan_to_num(-1))


def test_region_attribution_beats_its_reverse():
    model, x = RegionModel().double(), _images(3)
    y = np.zeros(3, dtype=int)
    good = _region_saliency(3)
    sic = SoftmaxInformationCurve(seed=2)
    aic = AccuracyInformationCurve(seed=2)
    s_good = np.array(sic(model=model, x_batch=x, y_batch=y, a_batch=good))
    s_bad = np.array(sic(model=model, x_batch=x, y_batch=y, a_batch=1.02 - good))
    assert np.isfinite(s_good).all() and np.isfinite(s_bad).all(), sic.reasons
    # the region is 6 % of the pixels: revealing it first restores the score at once
    assert (s_good > 0.75).all() and (s_bad < 0.5).all()
    assert (s_good - s_bad > 0.7).all()  # measured: about 0.81 against 0.02
    a_good = np.array(aic(model=model, x_batch=x, y_batch=y, a_batch=good))
    a_bad = np.array(aic(model=model, x_batch=x, y_batch=y, a_batch=1.02 - good))
    assert (a_good > a_bad).all()


def test_curve_endpoints_and_closed_forms():
    model, x = RegionModel().double(), _images(2)
    res = performance_information_curve(model, x, np.zeros(2, int), _region_saliency(2))
    for i in range(2):
        xs, ys = res.curve(i)
        assert (xs[0], ys[0]) == (0.0, 0.0) and (xs[-1], ys[-1]) == (1.0, 1.0)
        assert ((0 <= xs) & (xs <= 1) & (0 <= ys) & (ys <= 1)).all()
        assert (np.diff(res.performance[i].numpy()) >= 0).all()  # keep_monotonous

    # the diagonal has area 1/2; one early jump to full performance has 1 − x/2
    def t(v):
        return torch.tensor(v, dtype=torch.float64)

    assert float(curve_auc(t([[0.5]]), t([[0.5]]))) == pytest.approx(0.5, abs=1e-15)
    assert float(curve_auc(t([[0.2]]), t([[1.0]]))) == pytest.approx(0.9, abs=1e-15)
    # equal information: joined from the lowest to the highest performance
    area = float(curve_auc(t([[0.0, 0.0]]), t([[0.6, 0.3]])))
    assert area == pytest.approx(0.8, abs=1e-15)


def test_invariant_to_attribution_scale_and_batching():
    model, x = RegionModel().double(), _images(4, seed=4)
    y = np.zeros(4, dtype=int)
    s = np.random.default_rng(9).normal(size=(4, 1, SIZE, SIZE)) + _region_saliency(4)
    metric = SoftmaxInformationCurve(seed=7)
    base = metric(model=model, x_batch=x, y_batch=y, a_batch=s)
    # powers of two scale exactly, so the quantile thresholds select the same pixels
    assert metric(model=model, x_batch=x, y_batch=y, a_batch=8.0 * s) == base
    assert metric(model=model, x_batch=x, y_batch=y, a_batch=0.125 * s) == base
    # sample i's random mask is keyed to its index: batch size does not change any score
    assert metric(model=model, x_batch=x, y_batch=y, a_batch=s, batch_size=1) == base
    other = SoftmaxInformationCurve(seed=8)(model=model, x_batch=x, y_batch=y, a_batch=s)
    assert other != base  # a different seed draws different masks


def test_inside_quantus_evaluate_and_model_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), RegionModel())
    model[0].weight.data.zero_()
    model[0].weight.data[[0, 1, 2], [0, 1, 2], 1, 1] = 1.0
    model = model.double().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _images(3), np.zeros(3, dtype=int)
    out = quantus.evaluate(
        metrics={"SIC": SoftmaxInformationCurve(), "AIC": AccuracyInformationCurve()},
        xai_methods={"region": _region_saliency(3)},
        model=model, x_batch=x, y_batch=y,
    )  # fmt: skip
    assert set(out["region"]) == {"SIC", "AIC"}
    assert len(out["region"]["SIC"]) == 3
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    params = SoftmaxInformationCurve(thresholds=(0.1, 0.5)).get_params
    assert params["thresholds"] == (0.1, 0.5) and params["curve"] is None


def test_excluded_images_nan_or_raise():
    model = RegionModel().double()
    x = _images(2)
    x[1] = 0.3  # a constant image: blurring removes no information
    y = np.zeros(2, dtype=int)
    metric = SoftmaxInformationCurve()
    scores = metric(model=model, x_batch=x, y_batch=y, a_batch=_region_saliency(2))
    assert np.isfinite(scores[0]) and np.isnan(scores[1])
    assert metric.reasons[0] == "" and "not less informative" in metric.reasons[1]
    with pytest.raises(ValueError, match="sample 1"):
        SoftmaxInformationCurve(on_invalid="raise")(
            model=model, x_batch=x, y_batch=y, a_batch=_region_saliency(2)
        )
    strict = SoftmaxInformationCurve(min_pred_value=0.999)
    assert np.isnan(strict(model=model, x_batch=x[:1], y_batch=y[:1],
                           a_batch=_region_saliency(1))[0])  # fmt: skip
    assert "min_pred_value" in strict.reasons[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"thresholds": (0.5, 0.2)}, "increasing"),
        ({"thresholds": (0.0, 0.2)}, "between 0 and 1"),
        ({"thresholds": ()}, "at least one"),
        ({"curve": "logit"}, "curve must be"),
        ({"random_fraction": 1.0}, "random_fraction"),
        ({"on_invalid": "skip"}, "on_invalid"),
        ({"value_range": (1.0, 1.0)}, "value_range"),
        ({"fill": "nearest"}, "fill"),
    ],
)
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SoftmaxInformationCurve(**kwargs)


def test_bad_inputs_raise():
    model, x, y = RegionModel().double(), _images(2), np.zeros(2, dtype=int)
    with pytest.raises(ValueError, match="do not match"):
        performance_information_curve(model, x, y, np.ones((2, 1, SIZE, SIZE - 1)))
    bad = _region_saliency(2)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        performance_information_curve(model, x, y, bad)
    with pytest.raises(ValueError, match="targets"):
        performance_information_curve(model, x, y[:1], _region_saliency(2))
    with pytest.raises(ValueError, match="channel-first"):
        performance_information_curve(model, x[:, 0], y, _region_saliency(2))
    with pytest.raises(ValueError, match="random_mask"):
        performance_information_curve(model, x, y, _region_saliency(2), random_mask=_masks(1))
    with pytest.raises(ValueError, match="infinite logits"):
        performance_information_curve(_InfModel(), x, y, _region_saliency(2))
    with pytest.raises(TypeError, match="seed"):
        SoftmaxInformationCurve(seed=1.5)
