"""``python -m captum_ext_report`` (``make demo``): the sanity report."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from captum_ext_report.context import ReportContext, Section
from captum_ext_report.render import verdict_text, write_html, write_json, write_markdown
from captum_ext_report.sections import discover


def _load_callable(spec: str, what: str):
    if ":" not in spec:
        raise SystemExit(f"--{what} must look like 'package.module:callable', got {spec!r}.")
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise SystemExit(f"--{what} {spec!r} cannot be loaded: {err}") from err


def _load_folder(folder: Path, size: int) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"}
    )
    if not files:
        raise SystemExit(f"--data folder {folder} holds no .png/.jpg/.jpeg/.bmp images.")
    arrays = [
        np.asarray(Image.open(p).convert("RGB").resize((size, size)), dtype=np.float32) / 255
        for p in files
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise SystemExit(f"{what}: {text!r} is not a comma-separated list of numbers.") from err


def _pair(spec: str, what: str, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``"a,b"`` (one value each for all channels) or ``"a1,a2,a3;b1,b2,b3"`` (per channel)."""
    groups = spec.replace(":", ";").split(";")
    if len(groups) == 1:
        values = _floats(groups[0], what)
        if len(values) != 2:
            raise SystemExit(f"{what} must be 'a,b' or 'a1,…,aC;b1,…,bC', got {spec!r}.")
        first, second = [values[0]] * channels, [values[1]] * channels
    elif len(groups) == 2:
        first, second = _floats(groups[0], what), _floats(groups[1], what)
        if len(first) != channels or len(second) != channels:
            raise SystemExit(
                f"{what} {spec!r} gives {len(first)}/{len(second)} values for {channels} channels."
            )
    else:
        raise SystemExit(f"{what} must be 'a,b' or 'a1,…,aC;b1,…,bC', got {spec!r}.")
    return torch.tensor(first), torch.tensor(second)


def _normalization(spec: str | None, channels: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    if spec is None:
        return None
    if spec.lower() == "imagenet":
        if channels != 3:
            raise SystemExit(f"--normalize imagenet needs 3-channel images, got {channels}.")
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    else:
        mean, std = _pair(spec, "--normalize", channels)
    if not bool((std > 0).all()):
        raise SystemExit(f"--normalize std must be > 0, got {std.tolist()}.")
    return mean, std


def _user_workload(args: argparse.Namespace):
    """Images (normalised if asked), labels or None, and per-channel bounds from the CLI."""
    labels = None
    if Path(args.data).is_dir():
        images = _load_folder(Path(args.data), args.image_size)
    else:
        loaded = _load_callable(args.data, "data")()
        images, labels = loaded if isinstance(loaded, tuple) else (loaded, None)
        images = torch.as_tensor(images, dtype=torch.float32)
    if images.dim() != 4:
        raise SystemExit(f"--data must give (N, C, H, W) images, got shape {tuple(images.shape)}.")
    channels = images.shape[1]
    norm = _normalization(args.normalize, channels)
    if args.bounds:
        low, high = _pair(args.bounds, "--bounds", channels)
    elif norm is not None:  # raw images in [0, 1], as folders are read
        low, high = torch.zeros(channels), torch.ones(channels)
    else:
        low = images.transpose(0, 1).flatten(1).amin(1)
        high = images.transpose(0, 1).flatten(1).amax(1)
    if norm is not None:
        mean, std = norm
        shape = (1, channels, 1, 1)
        images = (images - mean.view(shape)) / std.view(shape)
        if not args.bounds or args.bounds_raw:
            low, high = (low - mean) / std, (high - mean) / std
    if not bool((low < high).all()):
        raise SystemExit(f"--bounds low must be < high per channel, got {low}, {high}.")
    return images, labels, (low, high)


PRESETS = ("efficientnet-lite0", "digits")


@dataclass
class _Workload:
    model: torch.nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    bounds: tuple[torch.Tensor, torch.Tensor]
    name: str
    accuracy: float | None
    fit_data: torch.Tensor | None = None


def _digits_workload(args: argparse.Namespace, device: torch.device) -> _Workload:
    """The small CNN of Sixt et al. (2020) trained on scikit-learn's 8×8 digits (cached)."""
    from captum_ext.zoo import DigitsDataset, train_digits_cnn

    result = train_digits_cnn(
        cache_dir=args.cache_dir, progress=not args.no_progress, device=device
    )
    test = DigitsDataset("test")
    images, labels = test.tensors()
    origin = "cache" if result.from_cache else "trained"
    print(f"digits CNN: {100 * result.test_accuracy:.1f} % test accuracy ({origin})")
    return _Workload(
        model=result.model,
        images=images,
        labels=labels,
        bounds=test.bounds,
        name="small CNN on 8×8 digits",
        accuracy=result.test_accuracy,
        fit_data=DigitsDataset("train").tensors()[0],
    )


def _real_workload() -> _Workload:
    """Pretrained EfficientNet-Lite0 on foolbox's 20 labelled ImageNet photos and two
    scikit-image photos (224×224, TF-Lite input scaling; the `real` extra)."""
    from captum_ext_report.sections._efficientnet import (
        BOUNDS,
        efficientnet_lite0,
        imagenet_photos,
        scikit_image_photos,
    )

    model = efficientnet_lite0()
    images, labels = imagenet_photos(224)
    with torch.no_grad():
        accuracy = float((model(images).argmax(1) == labels).float().mean())
    photos = scikit_image_photos(224)
    with torch.no_grad():
        photo_labels = model(photos).argmax(1)
    images, labels = torch.cat([images, photos]), torch.cat([labels, photo_labels])
    print(f"EfficientNet-Lite0: {100 * accuracy:.0f} % top-1 on the 20 labelled ImageNet photos")
    low, high = (torch.full((3,), value) for value in BOUNDS)
    return _Workload(
        model=model,
        images=images,
        labels=labels,
        bounds=(low, high),
        name="EfficientNet-Lite0 (ImageNet-pretrained) on 20 ImageNet photos + 2 photos",
        accuracy=accuracy,
    )


def _user_model(args: argparse.Namespace, n_images: int) -> _Workload:
    model = _load_callable(args.model, "model")()
    if not isinstance(model, torch.nn.Module):
        raise SystemExit(f"--model {args.model} returned {type(model).__name__}, not an nn.Module.")
    if args.weights:
        model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    if args.data is None:
        raise SystemExit("--model needs --data (a folder of images or 'module:callable').")
    images, labels, bounds = _user_workload(args)
    model.eval()
    images = images[:n_images]
    with torch.no_grad():
        predicted = model(images).argmax(1)
    # no label given (or -1: an unlabelled image): explain the model's own prediction
    labels = predicted if labels is None else torch.as_tensor(labels)[:n_images].long()
    labels = torch.where(labels < 0, predicted, labels)
    return _Workload(model, images, labels, bounds, name=args.model, accuracy=None)


def build_context(args: argparse.Namespace) -> ReportContext:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but no CUDA device is available.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out} is a file; give a folder.")
    n_images = args.n_images or (16 if args.quick else 64)
    preset = args.model or ("digits" if args.quick else "efficientnet-lite0")
    if preset == "digits":
        workload = _digits_workload(args, device)
    elif preset == "efficientnet-lite0":
        workload = _real_workload()
    else:
        workload = _user_model(args, n_images)
    if preset in PRESETS and (args.data or args.weights):
        raise SystemExit(
            f"--data and --weights go with your own --model, not the {preset!r} preset."
        )
    return ReportContext(
        out_dir=out,
        model=workload.model.to(device).eval(),
        images=workload.images[:n_images].to(device),
        labels=workload.labels[:n_images].to(device),
        bounds=(workload.bounds[0].to(device), workload.bounds[1].to(device)),
        model_name=workload.name,
        accuracy=workload.accuracy,
        quick=args.quick,
        device=device,
        progress=not args.no_progress,
        seed=args.seed,
        methods=args.methods.split(",") if args.methods else None,
        metrics=args.metrics.split(",") if args.metrics else None,
        fit_data=workload.fit_data,
        workload=preset if preset in PRESETS else "user",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m captum_ext_report", description=__doc__)
    parser.add_argument("--out", default="report", help="output folder (default: report/)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (about two minutes): small sizes; the digits CNN unless --model is set",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--n-images",
        type=int,
        default=None,
        help="images used (default 64, quick 16; the EfficientNet-Lite0 workload has 22)",
    )
    parser.add_argument("--sections", default=None, help="comma-separated section keys to run")
    parser.add_argument("--methods", default=None, help="comma-separated method names to include")
    parser.add_argument("--metrics", default=None, help="comma-separated metric names to include")
    parser.add_argument(
        "--model",
        default=None,
        help="'module:callable' returning your nn.Module, or a bundled workload: "
        "'efficientnet-lite0' (ImageNet-pretrained, the default) or 'digits' (the small CNN of "
        "Sixt et al. 2020 on 8×8 digits, the default with --quick)",
    )
    parser.add_argument("--weights", default=None, help="state_dict file for --model")
    parser.add_argument("--data", default=None, help="folder of images or 'module:callable'")
    parser.add_argument("--image-size", type=int, default=224, help="resize for --data folders")
    parser.add_argument(
        "--bounds",
        default=None,
        help="value bounds of the data fed to the model: 'low,high' for every channel or "
        "'l1,l2,l3;h1,h2,h3' per channel (default: the data's per-channel min/max; with "
        "--normalize, [0, 1] mapped through the normalisation)",
    )
    parser.add_argument(
        "--normalize",
        default=None,
        help="normalise the loaded images as (x − mean)/std: 'imagenet', 'mean,std' or "
        "'m1,m2,m3;s1,s2,s3'",
    )
    parser.add_argument(
        "--bounds-raw",
        action="store_true",
        help="--bounds are given for the raw images (before --normalize) and are mapped too",
    )
    parser.add_argument("--cache-dir", default=None, help="weight cache folder")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = parser.parse_args(argv)
    if args.n_images is not None and args.n_images < 1:
        parser.error("--n-images must be ≥ 1")
    return args


# Notices Captum prints on every call of some methods; the report's own calls trigger them and a
# report reader cannot act on them (the report hands plain tensors to Captum on purpose).
_CAPTUM_NOTICES = (
    r"Input Tensor \d+ did not already require gradients",
    r"Setting backward hooks on ReLU activations",
    r"Setting forward, backward hooks and attributes on non-linear",
)


@contextlib.contextmanager
def _captum_notices_off() -> Iterator[None]:
    with warnings.catch_warnings():
        for message in _CAPTUM_NOTICES:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    ctx = build_context(args)
    modules = discover()
    if args.sections:
        wanted = set(args.sections.split(","))
        unknown = wanted - {m.KEY for m in modules}
        if unknown:
            raise SystemExit(
                f"Unknown section(s) {sorted(unknown)}; valid: {[m.KEY for m in modules]}."
            )
        modules = [m for m in modules if m.KEY in wanted]
    sections: list[Section] = []
    for module in tqdm(modules, desc="report sections", disable=not ctx.progress):
        t0 = time.perf_counter()
        try:
            with _captum_notices_off():
                section = module.run(ctx)
        except Exception as err:  # one broken section must not hide the others
            traceback.print_exc()
            section = Section(
                key=module.KEY, title=module.KEY, claim="", finding="", error=repr(err)
            )
        section.seconds = time.perf_counter() - t0
        sections.append(section)
        tqdm.write(f"{module.KEY}: {section.seconds:.0f} s, {verdict_text(section)[:70]}")
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    header = {
        "model": ctx.model_name,
        "images": len(ctx.images),
        "device": str(ctx.device),
        "quick": ctx.quick,
        "seconds": round(time.perf_counter() - start, 1),
        "torch": torch.__version__,
    }
    write_markdown(ctx.out_dir / "report.md", sections, header)
    write_html(ctx.out_dir / "index.html", sections, header)
    write_json(ctx.out_dir / "results.json", sections, header)
    print(f"report written to {ctx.out_dir.resolve() / 'index.html'} (and report.md, results.json)")
    failed = [s.key for s in sections if s.error]
    if failed:
        print(f"sections that failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
