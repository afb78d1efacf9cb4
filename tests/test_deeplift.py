"""DeepLift on the modified-backward core: Captum's attributions, completeness, safety."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum.attr import DeepLift, NoiseTunnel
from torch import nn

from captum_ext import ModelSnapshot, modified_backward


def _small_cnn(dtype: torch.dtype) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(8 * 8 * 8, 16),
            nn.ReLU(),
            nn.Linear(16, 10),
        ).to(dtype)


def _multipliers(model, inputs, seed, baselines=None, extra=None, retain=False):
    with modified_backward(DeepLift(model)) as forward:
        leaves = tuple(x.clone().requires_grad_(True) for x in inputs)
        out = forward(*leaves, *(extra or ()), baselines=baselines)
        grads = torch.autograd.grad(out, leaves, seed, retain_graph=retain)
        if retain:  # a second backward through the same forward must give the same answer
            again = torch.autograd.grad(out, leaves, seed)
            for a, b in zip(grads, again):
                assert torch.equal(a, b)
    return grads


@pytest.mark.parametrize("batch", [1, 64])
def test_core_path_equals_captum_deeplift(dtype, batch):
    model = _small_cnn(dtype)
    gen = torch.Generator().manual_seed(batch)
    x = torch.rand(batch, 1, 16, 16, generator=gen).to(dtype)
    baseline = torch.full_like(x, 0.25)
    target = torch.arange(batch) % 10
    before = ModelSnapshot.of(model)
    seed = F.one_hot(target, 10).to(dtype)
    (grad,) = _multipliers(model, (x,), seed, baselines=baseline, retain=True)
    expected = DeepLift(model).attribute(x, baselines=baseline, target=target)
    tol = {} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-6}
    torch.testing.assert_close((x - baseline) * grad, expected.detach(), **tol)
    assert not before.diff(ModelSnapshot.of(model))


def test_random_relevance_sums_to_output_difference(mlp):
    # Rescale rule on a ReLU net: Σ (x − x⁰)·m = rᵀ(f(x) − f(x⁰)) for any injected r.
    dtype = next(mlp.parameters()).dtype
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 64, generator=gen).to(dtype)
    r = torch.randn(5, 10, generator=gen).to(dtype)
    (grad,) = _multipliers(mlp, (x,), r)
    with torch.no_grad():
        delta = (r * (mlp(x) - mlp(torch.zeros_like(x)))).sum(1)
    tol = {} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    torch.testing.assert_close((x * grad).sum(1), delta, **tol)
    xr = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(mlp(xr), xr, r)
    assert not torch.allclose(grad, gradient)  # DeepLift's multipliers are not the gradient


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.head, self.relu = nn.Linear(6, 8), nn.Linear(8, 3), nn.ReLU()

    def forward(self, x1, x2, scale):
        return self.head(self.relu(self.a(torch.cat([x1, x2], 1)) * scale))


def test_tuple_inputs_and_additional_forward_args(dtype):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _TwoInputs().to(dtype)
    gen = torch.Generator().manual_seed(2)
    inputs = tuple(torch.randn(4, n, generator=gen).to(dtype) for n in (2, 4))
    seed = F.one_hot(torch.tensor([0, 1, 2, 0]), 3).to(dtype)
    zeros = tuple(torch.zeros_like(x) for x in inputs)  # one baseline per input
    grads = _multipliers(model, inputs, seed, baselines=zeros, extra=(2.0,))
    expected = DeepLift(model).attribute(
        inputs, target=torch.tensor([0, 1, 2, 0]), additional_forward_args=(2.0,)
    )
    for x, g, e in zip(inputs, grads, expected):
        torch.testing.assert_close(x * g, e.detach())


def test_default_baseline_is_zero_for_the_first_argument_only(dtype):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _TwoInputs().to(dtype)
    gen = torch.Generator().manual_seed(4)
    inputs = tuple(torch.randn(3, n, generator=gen).to(dtype) for n in (2, 4))
    seed = F.one_hot(torch.tensor([2, 0, 1]), 3).to(dtype)
    grads = _multipliers(model, inputs, seed, extra=(2.0,))
    expected = DeepLift(model).attribute(
        inputs,
        baselines=(0.0, inputs[1]),
        target=torch.tensor([2, 0, 1]),
        additional_forward_args=(2.0,),
    )
    torch.testing.assert_close(inputs[0] * grads[0], expected[0].detach())


def test_model_unchanged_after_failing_call_and_noise_tunnel(dtype):
    model = _small_cnn(dtype)
    before = ModelSnapshot.of(model)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(3)).to(dtype)
    with pytest.raises(RuntimeError, match="boom"):
        with modified_backward(DeepLift(model)) as forward:
            forward(x)  # hooks have recorded activations on the modules
            raise RuntimeError("boom")
    assert not before.diff(ModelSnapshot.of(model))
    with pytest.raises(ValueError, match="baselines"):
        with modified_backward(DeepLift(model)) as forward:
            forward(x, baselines=(x, x))  # more baselines than arguments
    assert not before.diff(ModelSnapshot.of(model))
    tunnel = NoiseTunnel(DeepLift(model)).attribute(x, target=1, nt_samples=2, stdevs=0.0)
    torch.testing.assert_close(tunnel, DeepLift(model).attribute(x, target=1))


def test_intermediate_tensors_keep_the_batch_for_layer_tracing():
    # CSC reads relevance at hooked layers: they must see the caller's batch, not [x; x⁰].
    model = _small_cnn(torch.float64)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    seen: list[torch.Tensor] = []
    handle = model[3].register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        with modified_backward(DeepLift(model)) as forward:
            out = forward(x.clone().requires_grad_(True))
            relevance = torch.randn(3, 10, generator=torch.Generator().manual_seed(6))
            (at_layer,) = torch.autograd.grad(out, seen[-1], relevance.double())
    finally:
        handle.remove()
    assert seen[-1].shape[0] == 3 and at_layer.shape == seen[-1].shape
    assert at_layer.abs().sum() > 0
