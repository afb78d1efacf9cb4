"""RectGrad: oracles (plain gradient, slow per-layer numpy reference), core path, safety."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import InputXGradient, NoiseTunnel, Saliency
from torch import nn

from captum_ext import ModelSnapshot, RectGrad, modified_backward


def _small_cnn(dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """A small CNN (16×16 inputs) with an in-place ReLU and max-pooling."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(4, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 8 * 8, 32),
            nn.ReLU(),
            nn.Linear(32, 10),
        ).to(dtype)


def _layers(cnn: nn.Module) -> list[nn.Module]:
    return list(cnn)


def _slow_rectgrad(cnn, x, target, q, counts=None):
    """Per-layer backward with a numpy 'nearest' percentile per sample (written from the paper)."""
    acts = [x.detach()]
    with torch.no_grad():
        for layer in _layers(cnn):
            acts.append(layer(acts[-1]))
    grad = F.one_hot(torch.as_tensor(target), acts[-1].shape[1]).to(x.dtype)
    for index in reversed(range(len(_layers(cnn)))):
        layer, inp, out = _layers(cnn)[index], acts[index], acts[index + 1]
        if isinstance(layer, nn.ReLU):
            importance = (out * grad).numpy()
            keep = np.zeros_like(importance, dtype=bool)
            for b in range(importance.shape[0]):
                tau = np.percentile(importance[b].ravel(), q, method="nearest")
                keep[b] = importance[b] > tau
                if counts is not None:
                    ties = int((importance[b] == tau).sum())
                    counts.append((int(keep[b].sum()), importance[b].size, ties))
            grad = grad * torch.from_numpy(keep) * (out > 0)
        else:
            inp = inp.clone().requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(layer(inp), inp, grad)
    return x * grad


def test_disabled_threshold_is_gradient_times_input(dtype):
    cnn = _small_cnn(dtype)
    x = _images(3, dtype, seed=0)
    ours = RectGrad(cnn, threshold=float("-inf")).attribute(x, target=2)
    expected = InputXGradient(cnn).attribute(x, target=2)
    assert torch.equal(ours, expected)
    raw = RectGrad(cnn, threshold=float("-inf"), multiply_by_inputs=False).attribute(x, target=2)
    assert torch.equal(raw, Saliency(cnn).attribute(x, target=2, abs=False))


@pytest.mark.parametrize("batch", [1, 64])
def test_matches_slow_per_layer_reference(batch):
    cnn = _small_cnn()
    x = _images(batch, torch.float64, seed=1)
    target = torch.arange(batch) % 10
    counts: list[tuple[int, int, int]] = []
    expected = _slow_rectgrad(cnn, x, target, 98.0, counts)
    ours = RectGrad(cnn).attribute(x, target=target)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-14)
    assert expected.abs().sum() > 0
    # at most 2 % (+ ties at the threshold, + one for rounding of the rank) of the units pass
    for kept, size, ties in counts:
        assert kept <= math.floor(0.02 * size) + 1 + max(ties - 1, 0)


def test_percentile_pass_rate_in_our_backward(cnn):
    passed: list[tuple[float, int]] = []

    class Recording(RectGrad):
        def _rectify(self, activation, grad):
            out = super()._rectify(activation, grad)
            flat = (out != 0).reshape(out.shape[0], -1)
            passed.extend((float(f), flat.shape[1]) for f in flat.double().mean(1))
            return out

    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    x = x.to(next(cnn.parameters()).dtype)
    Recording(cnn, percentile=98.0).attribute(x, target=0)
    assert len(passed) == 4 * 5  # four samples × five ReLUs
    for fraction, size in passed:
        assert fraction <= 0.02 + 1.0 / size


@pytest.mark.parametrize("q", [0.0, 37.5, 50.0, 98.0, 100.0])
def test_nearest_percentile_matches_numpy(q):
    gen = torch.Generator().manual_seed(3)
    method = RectGrad(nn.Sequential(nn.ReLU()), percentile=q)
    for size in (1, 2, 7, 10, 1001):
        values = torch.randn(5, size, dtype=torch.float64, generator=gen)
        values[:, : size // 3] = values[:, -1:]  # ties
        tau = method._threshold(values).flatten().numpy()
        expected = np.percentile(values.numpy(), q, axis=1, method="nearest")
        np.testing.assert_array_equal(tau, expected)


def test_modified_backward_gives_rectified_propagation(dtype):
    cnn = _small_cnn(dtype)
    x = _images(2, dtype, seed=4)
    before = ModelSnapshot.of(cnn)
    method = RectGrad(cnn, multiply_by_inputs=False)
    with modified_backward(method) as forward:
        xr = x.clone().requires_grad_(True)
        out = forward(xr)
        seed = F.one_hot(torch.tensor([1, 7]), 10).to(out.dtype)
        (grad,) = torch.autograd.grad(out, xr, seed)
    assert not before.diff(ModelSnapshot.of(cnn))
    torch.testing.assert_close(grad, method.attribute(x, target=[1, 7]))
    assert not torch.allclose(grad, Saliency(cnn).attribute(x, target=[1, 7], abs=False))


class _TwoInputs(nn.Module):
    """Two inputs, an extra scalar argument, one ReLU module reused (in place) twice."""

    def __init__(self, shared: bool) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 8), nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)
        self.relu1 = nn.ReLU(inplace=True)
        self.relu2 = self.relu1 if shared else nn.ReLU()

    def forward(self, x1, x2, scale):
        h = self.relu1(self.a(torch.cat([x1, x2], 1)) * scale)
        return self.head(self.relu2(self.b(h)))


def test_tuple_inputs_extra_args_and_reused_inplace_relu(dtype):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        shared = _TwoInputs(shared=True).to(dtype)
    separate = _TwoInputs(shared=False).to(dtype)
    separate.load_state_dict(shared.state_dict())
    gen = torch.Generator().manual_seed(5)
    inputs = (
        torch.randn(64, 2, dtype=dtype, generator=gen),
        torch.randn(64, 4, dtype=dtype, generator=gen),
    )
    ours = RectGrad(shared, percentile=50.0).attribute(
        inputs, target=1, additional_forward_args=2.0
    )
    other = RectGrad(separate, percentile=50.0).attribute(
        inputs, target=1, additional_forward_args=2.0
    )
    assert isinstance(ours, tuple) and ours[0].shape == (64, 2) and ours[1].shape == (64, 4)
    for a, b in zip(ours, other):
        assert torch.equal(a, b)
    plain = RectGrad(shared, threshold=float("-inf")).attribute(
        inputs, target=1, additional_forward_args=2.0
    )
    expected = InputXGradient(separate).attribute(inputs, target=1, additional_forward_args=2.0)
    for a, b in zip(plain, expected):
        torch.testing.assert_close(a, b)


def test_constant_threshold_variant(mlp):
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(6))
    x = x.to(next(mlp.parameters()).dtype)
    zero = RectGrad(mlp, threshold=0.0, multiply_by_inputs=False).attribute(x, target=0)
    big = RectGrad(mlp, threshold=1e9, multiply_by_inputs=False).attribute(x, target=0)
    assert torch.equal(big, torch.zeros_like(big))
    assert zero.abs().sum() > 0


def test_inside_noise_tunnel(dtype):
    cnn = _small_cnn(dtype)
    x = _images(2, dtype)
    plain = RectGrad(cnn).attribute(x, target=3)
    tunnel = NoiseTunnel(RectGrad(cnn)).attribute(x, target=3, nt_samples=3, stdevs=0.0)
    torch.testing.assert_close(tunnel, plain)
    noisy = NoiseTunnel(RectGrad(cnn)).attribute(x, target=3, nt_samples=2, stdevs=0.1)
    assert noisy.shape == x.shape and torch.isfinite(noisy).all()


def test_inside_adaptgrad(dtype):
    cnn = _small_cnn(dtype)
    module = importlib.import_module("captum_ext.noise.adaptgrad")
    x = _images(2, dtype)
    out = module.AdaptGrad(RectGrad(cnn), bounds=(0.0, 1.0))
    out = out.attribute(x, target=3, nt_samples=2, seed=0)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_model_unchanged_after_normal_and_failing_calls(dtype):
    cnn = _small_cnn(dtype)
    before = ModelSnapshot.of(cnn)
    x = _images(2, dtype)
    rng_state = torch.random.get_rng_state()
    RectGrad(cnn).attribute(x, target=0)
    assert torch.equal(rng_state, torch.random.get_rng_state())
    assert not before.diff(ModelSnapshot.of(cnn))
    with pytest.raises(ValueError, match="out of range"):
        RectGrad(cnn).attribute(x, target=10)
    assert not before.diff(ModelSnapshot.of(cnn))
    with pytest.raises(ValueError, match="non-finite"):
        RectGrad(cnn).attribute(x.clone().fill_(float("nan")), target=0)
    assert not before.diff(ModelSnapshot.of(cnn))


def test_bad_arguments_and_functional_relu():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="percentile"):
        RectGrad(model, percentile=101.0)
    with pytest.raises(ValueError, match="NaN"):
        RectGrad(model, threshold=float("nan"))

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            return F.relu(self.lin(x))

    model = Functional()
    before = ModelSnapshot.of(model)
    with pytest.raises(TypeError, match="functional"):
        RectGrad(model).attribute(torch.ones(2, 3), target=0)
    with pytest.raises(TypeError, match="nn.ReLU"):
        with modified_backward(RectGrad(model)):
            pass
    assert not before.diff(ModelSnapshot.of(model))


def _images(batch: int, dtype: torch.dtype, seed: int = 7, size: int = 16) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, size, size, generator=gen).to(dtype)
