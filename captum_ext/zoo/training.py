"""Train the small CNN on the digits data, with a verified on-disk cache.

The cached file holds the weights and a SHA-256 digest of them; a file that does not load,
has other keys or shapes, or whose digest does not match is reported and retrained, never
used silently.
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from captum_ext.zoo.data import DigitsDataset
from captum_ext.zoo.models import SmallCNN

_CACHE_FORMAT = 1


@dataclass
class TrainingResult:
    """What :func:`train_digits_cnn` returns."""

    model: SmallCNN
    test_accuracy: float
    seconds: float
    from_cache: bool
    path: Path


def default_cache_dir() -> Path:
    """``$CAPTUM_EXT_CACHE`` if set, else ``~/.cache/captum_ext``."""
    env = os.environ.get("CAPTUM_EXT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "captum_ext"


def _state_digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, dataset: DigitsDataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (train/eval mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        images, labels = dataset.tensors()
        correct = 0
        for start in range(0, len(labels), batch_size):
            logits = model(images[start : start + batch_size].to(device))
            correct += (logits.argmax(1).cpu() == labels[start : start + batch_size]).sum().item()
        return correct / len(labels)
    finally:
        model.train(was_training)


def _load_cached(path: Path, model: SmallCNN) -> float | None:
    """Load weights into ``model`` if ``path`` holds a valid cache; the stored accuracy or None."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        state = payload["state_dict"]
        if payload.get("format") != _CACHE_FORMAT or _state_digest(state) != payload["digest"]:
            raise ValueError("digest or format mismatch")
        model.load_state_dict(state, strict=True)
        return float(payload["test_accuracy"])
    except Exception as err:  # any damage means: do not trust the file
        warnings.warn(f"Ignoring corrupted weight cache {path} ({err}); retraining.", stacklevel=3)
        return None


def train_digits_cnn(
    channels: int = 1,
    epochs: int = 4,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> TrainingResult:
    """Train (or load from cache) the small CNN on 32×32 digits.

    Training uses a private generator for initialisation and shuffling, so it is reproducible
    and leaves the global RNG as it was. Four epochs of Adam reach ≥ 95 % test accuracy in
    about a minute on two CPU cores.

    Parameters
    ----------
    channels : {1, 3}
        Input channels of the data and the network.
    epochs, batch_size : int
        Training length and mini-batch size (positive).
    lr : float
        Adam learning rate (positive).
    seed : int
        Seed of the initialisation and the shuffling.
    cache_dir : path-like, optional
        Folder of the weight cache (default :func:`default_cache_dir`); must not be a file.
    use_cache : bool
        Load weights from, and save them to, the cache.
    progress : bool
        Show a tqdm progress bar.
    device : str or torch.device
        Where to train.

    Returns
    -------
    TrainingResult
        The model in eval mode, its test accuracy, the time taken and the cache path.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}.")
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"cache_dir {folder} is a file; pass a folder (it is created if missing).")
    path = folder / f"small_cnn_digits_c{channels}_e{epochs}_b{batch_size}_lr{lr:g}_s{seed}.pt"

    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(in_channels=channels)
    if use_cache:
        accuracy = _load_cached(path, model)
        if accuracy is not None:
            return TrainingResult(
                model.eval().to(device), accuracy, time.perf_counter() - start, True, path
            )

    train, test = DigitsDataset("train", channels), DigitsDataset("test", channels)
    model.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    bar = tqdm(total=epochs * len(loader), desc="training digits CNN", disable=not progress)
    for _ in range(epochs):
        for images, labels in loader:
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(images.to(device)), labels.to(device))
            loss.backward()
            optimiser.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    accuracy = evaluate_accuracy(model, test)
    if use_cache:
        folder.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
        payload = {
            "format": _CACHE_FORMAT,
            "state_dict": state,
            "digest": _state_digest(state),
            "test_accuracy": accuracy,
        }
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)  # atomic: a crash never leaves a half-written cache behind
    return TrainingResult(model, accuracy, time.perf_counter() - start, False, path)
