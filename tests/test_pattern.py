"""PatternNet / PatternAttribution: estimator oracles, backward rule, BatchNorm, safety."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from captum.attr import NoiseTunnel, Saliency
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from captum_ext import ModelSnapshot, PatternAttribution, PatternNet, modified_backward
from captum_ext.zoo import torchvision_model


def _slow_patterns(x: np.ndarray, w: np.ndarray, b: np.ndarray, relu: bool, y_mean: str):
    """a_j = cov[x, y_j] / (w_jᵀ cov[x, y_j]) unit by unit, written from Kindermans et al."""
    patterns = np.zeros_like(w)
    for j in range(w.shape[0]):
        y = x @ w[j]
        active = (y + b[j] > 0) if relu else np.ones(len(y), dtype=bool)
        if not active.any():
            continue
        xs, ys = x[active], y[active]
        my = ys.mean() if (y_mean == "positive" or not relu) else y.mean()
        cov = (xs * ys[:, None]).mean(0) - xs.mean(0) * my
        denominator = w[j] @ cov
        patterns[j] = cov / (denominator if denominator != 0 else 1.0)
    return patterns


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_haufe_toy_linear_pattern_is_signal_direction():
    gen = _generator()
    y, eps = torch.rand(200_000, 1, generator=gen), torch.rand(200_000, 1, generator=gen)
    x = (y * torch.tensor([1.0, 0.0]) + eps * torch.tensor([1.0, 1.0])).double()
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -1.0]]))
    net = PatternNet(model).fit(x, pattern_type="linear", progress=False, batch_size=50_000)
    pattern = net.patterns_state_dict()[""]
    torch.testing.assert_close(
        pattern, torch.tensor([[1.0, 0.0]], dtype=torch.float64), atol=0.01, rtol=0
    )
    # the filter itself is not the signal direction: the explanation must be the pattern
    signal = net.attribute(x[:3], target=0)
    torch.testing.assert_close(signal, pattern.expand(3, 2))


@pytest.mark.parametrize("y_mean", ["positive", "all"])
def test_two_layer_relu_matches_slow_numpy_estimator(y_mean):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = torch.randn(3000, 5, dtype=torch.float64, generator=_generator(1))
    net = PatternNet(model).fit(
        x, pattern_type="relu", y_mean=y_mean, progress=False, batch_size=700
    )
    w1, b1 = model[0].weight.detach().numpy(), model[0].bias.detach().numpy()
    w2, b2 = model[2].weight.detach().numpy(), model[2].bias.detach().numpy()
    hidden = np.maximum(x.numpy() @ w1.T + b1, 0)
    expected = {
        "0": _slow_patterns(x.numpy(), w1, b1, True, y_mean),
        "2": _slow_patterns(hidden, w2, b2, False, y_mean),  # output layer: linear estimator
    }
    for name, pattern in net.patterns_state_dict().items():
        np.testing.assert_allclose(pattern.numpy(), expected[name], rtol=1e-9, atol=1e-12)


def _patches(x: np.ndarray, conv: nn.Conv2d, group: int) -> np.ndarray:
    """Every output position's receptive field of one group, padding zeros included (slow)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
    )
    per_group = conv.in_channels // conv.groups
    x = x[:, group * per_group : (group + 1) * per_group]
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    height = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    width = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    rows = []
    for n in range(x.shape[0]):
        for i in range(height):
            for j in range(width):
                window = x[n, :, i * sh : i * sh + dh * kh : dh, j * sw : j * sw + dw * kw : dw]
                rows.append(window.reshape(-1))
    return np.stack(rows)


@pytest.mark.parametrize("pattern_type", ["relu", "linear"])
def test_conv_patterns_equal_dense_layer_on_unfolded_patches(pattern_type):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2).double()
        model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(6 * 9, 2)).double()
    x = torch.randn(12, 4, 7, 7, dtype=torch.float64, generator=_generator(2))
    net = PatternNet(model).fit(x, pattern_type=pattern_type, progress=False, batch_size=16)
    ours = net.patterns_state_dict()["0"]
    weight, bias = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    for group in range(2):
        rows = slice(group * 3, (group + 1) * 3)
        dense_w = weight[rows].reshape(3, -1)
        expected = _slow_patterns(
            _patches(x.numpy(), conv, group),
            dense_w,
            bias[rows],
            pattern_type == "relu",
            "positive",
        )
        np.testing.assert_allclose(
            ours[rows].reshape(3, -1).numpy(), expected, rtol=1e-9, atol=1e-12
        )


def _fitted(cls, model, x, **kwargs):
    return cls(model).fit(x, progress=False, **kwargs)


def test_backward_is_pattern_matrix_chain(mlp):
    x = torch.randn(256, 64, generator=_generator(3)).to(next(mlp.parameters()).dtype)
    net = _fitted(PatternNet, mlp, x)
    attribution = _fitted(PatternAttribution, mlp, x)
    patterns = net.patterns_state_dict()
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    names = [n for n, m in mlp.named_modules() if isinstance(m, nn.Linear)]
    sample = x[:5]
    with torch.no_grad():  # ReLU masks of the forward pass
        masks, h = [], sample
        for layer in linears[:-1]:
            h = torch.relu(layer(h))
            masks.append(h > 0)
    for method, use_weight in ((net, False), (attribution, True)):
        r = torch.zeros(5, 10, dtype=x.dtype)
        r[:, 4] = 1
        for index in reversed(range(len(linears))):
            matrix = patterns[names[index]] * (linears[index].weight.detach() if use_weight else 1)
            if index < len(linears) - 1:
                r = r * masks[index]
            r = r @ matrix
        torch.testing.assert_close(method.attribute(sample, target=4), r)


def test_weights_as_patterns_give_the_gradient(cnn):
    # With A = W, PatternNet's backward is the gradient: checks conv, ReLU and max-pool routing.
    weights = {n: m.weight.detach() for n, m in cnn.named_modules() if hasattr(m, "weight")}
    net = PatternNet(cnn).load_patterns(weights)
    x = torch.rand(3, 1, 32, 32, generator=_generator(4)).to(next(cnn.parameters()).dtype)
    torch.testing.assert_close(
        net.attribute(x, target=5), Saliency(cnn).attribute(x, target=5, abs=False)
    )


def _fold(model: nn.Module) -> nn.Module:
    """An independent BatchNorm fold: a copy where every Conv→BN pair becomes one Conv."""
    model = copy.deepcopy(model)
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                with torch.no_grad():
                    conv.weight.mul_(scale.view(-1, 1, 1, 1))
                    conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
                seq[i + 1] = nn.Identity()
    return model


def test_batchnorm_is_folded(vgg_bn):
    x = torch.rand(16, 3, 32, 32, generator=_generator(5)).to(next(vgg_bn.parameters()).dtype)
    before = ModelSnapshot.of(vgg_bn)
    ours = _fitted(PatternAttribution, vgg_bn, x)
    folded = _fitted(PatternAttribution, _fold(vgg_bn), x)
    assert not before.diff(ModelSnapshot.of(vgg_bn))
    for name, pattern in folded.patterns_state_dict().items():
        # float32: the two folds round differently, which can flip a few near-zero ReLU masks
        tol = (
            {"rtol": 0, "atol": 2e-3 * float(pattern.abs().max())}
            if x.dtype == torch.float32
            else {}
        )
        torch.testing.assert_close(ours.patterns_state_dict()[name], pattern, **tol)
    tol = {"rtol": 1e-3, "atol": 1e-5} if x.dtype == torch.float32 else {}
    torch.testing.assert_close(
        ours.attribute(x[:2], target=1), folded.attribute(x[:2], target=1), **tol
    )
    assert not before.diff(ModelSnapshot.of(vgg_bn))


@pytest.mark.slow
def test_torchvision_resnet():
    resnet18 = torchvision_model("resnet18", n_classes=10, seed=0).eval()
    x = torch.rand(4, 3, 32, 32, generator=_generator(6))
    before = ModelSnapshot.of(resnet18)
    fitted = _fitted(PatternAttribution, resnet18, x)
    for method in (fitted, PatternNet(resnet18).load_patterns(fitted.patterns_state_dict())):
        out = method.attribute(x[:2], target=3)
        assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all() and out.abs().sum() > 0
    assert not before.diff(ModelSnapshot.of(resnet18))


def _tiny_cnn(dtype: torch.dtype) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, 10),
        ).to(dtype)


def test_state_dict_roundtrip_dataloader_and_max_batches(dtype):
    cnn = _tiny_cnn(dtype)
    x = torch.rand(48, 1, 16, 16, generator=_generator(7)).to(dtype)
    loader = DataLoader(TensorDataset(x, torch.zeros(48)), batch_size=16)
    from_loader = _fitted(PatternAttribution, cnn, loader, max_batches=2)
    from_tensor = _fitted(PatternAttribution, cnn, x[:32], batch_size=16)
    for name, pattern in from_tensor.patterns_state_dict().items():
        torch.testing.assert_close(from_loader.patterns_state_dict()[name], pattern)
    restored = PatternAttribution(cnn).load_patterns(from_loader.patterns_state_dict())
    assert torch.equal(restored.attribute(x[:2], target=0), from_loader.attribute(x[:2], target=0))
    bad = dict(from_loader.patterns_state_dict())
    bad["0"] = bad["0"][:1]
    with pytest.raises(ValueError, match="shape"):
        PatternNet(cnn).load_patterns(bad)


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.head = nn.Linear(6, 8), nn.Linear(8, 3)
        self.relu = nn.ReLU()

    def forward(self, x1, x2, scale=1.0):
        return self.head(self.relu(self.a(torch.cat([x1, x2], 1)) * scale))


@pytest.mark.parametrize("batch", [1, 64])
def test_tuple_inputs_extra_args_noise_tunnel_and_core(dtype, batch):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = _TwoInputs().to(dtype)
    gen = _generator(8)
    inputs = tuple(torch.randn(batch, n, generator=gen).to(dtype) for n in (2, 4))
    # Fitting sees the model through its first input only; fit an equivalent one-input model.
    net = PatternAttribution(model).load_patterns(
        {"a": model.a.weight.detach() * 0.5, "head": model.head.weight.detach()}
    )
    out = net.attribute(inputs, target=2, additional_forward_args=(2.0,))
    assert isinstance(out, tuple) and [o.shape for o in out] == [(batch, 2), (batch, 4)]
    # by hand: r = (W_a ⊙ A_a)ᵀ (mask ⊙ (W_h ⊙ A_h)ᵀ e_2), with the forward's scale in the gate
    with torch.no_grad():
        mask = (model.a(torch.cat(inputs, 1)) * 2.0) > 0
    head = (model.head.weight.detach() ** 2)[2]
    expected = (mask * head * 2.0) @ (model.a.weight.detach() ** 2 * 0.5)
    torch.testing.assert_close(torch.cat(out, 1), expected)
    tunnel = NoiseTunnel(net).attribute(
        inputs, target=2, additional_forward_args=(2.0,), nt_samples=2, stdevs=0.0
    )
    for a, b in zip(tunnel, out):
        torch.testing.assert_close(a, b)
    with modified_backward(net) as forward:
        leaves = tuple(i.clone().requires_grad_(True) for i in inputs)
        result = forward(*leaves, 2.0)
        seed = torch.zeros_like(result)
        seed[:, 2] = 1
        grads = torch.autograd.grad(result, leaves, seed)
    for a, b in zip(grads, out):
        torch.testing.assert_close(a, b)


def test_errors_and_model_unchanged_after_failing_calls(dtype):
    cnn = _tiny_cnn(dtype)
    before = ModelSnapshot.of(cnn)
    x = torch.rand(8, 1, 16, 16, generator=_generator(9)).to(dtype)
    with pytest.raises(RuntimeError, match="fit"):
        PatternNet(cnn).attribute(x, target=0)
    net = _fitted(PatternNet, cnn, x)
    with pytest.raises(ValueError, match="out of range"):
        net.attribute(x, target=12)
    with pytest.raises(ValueError, match="non-finite"):
        net.attribute(x.clone().fill_(float("inf")), target=0)
    with pytest.raises(ValueError, match="pattern_type"):
        PatternNet(cnn).fit(x, pattern_type="quadratic")
    with pytest.raises(ValueError, match="non-finite"):
        PatternNet(cnn).fit(x.clone().fill_(float("nan")), progress=False)
    assert not before.diff(ModelSnapshot.of(cnn))
    with pytest.raises(TypeError, match=r"'1'.*LayerNorm"):
        PatternNet(nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3)))


@pytest.mark.slow
def test_example_runs(capsys):
    import importlib

    importlib.import_module("examples.rectgrad_and_patterns").main()
    printed = capsys.readouterr().out
    assert "PatternAttribution" in printed and "DeepLift" in printed
