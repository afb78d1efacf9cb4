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
from pathlib import Path

import torch
from tqdm.auto import tqdm

from captum_ext_report.context import ReportContext, Section
from captum_ext_report.render import write_html, write_json, write_markdown
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


def build_context(args: argparse.Namespace) -> ReportContext:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but no CUDA device is available.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out} is a file; give a folder.")
    n_images = args.n_images or (16 if args.quick else 64)

    if args.model is None:
        from captum_ext.zoo import DigitsDataset, train_digits_cnn

        result = train_digits_cnn(
            cache_dir=args.cache_dir, progress=not args.no_progress, device=device
        )
        test = DigitsDataset("test")
        images, labels = test.tensors()
        bounds = test.bounds
        model, name, accuracy = result.model, "seed-001 CNN on digits", result.test_accuracy
        origin = "cache" if result.from_cache else "trained"
        print(f"digits CNN: {100 * accuracy:.1f} % test accuracy ({origin})")
    else:
        model = _load_callable(args.model, "model")()
        if not isinstance(model, torch.nn.Module):
            raise SystemExit(
                f"--model {args.model} returned {type(model).__name__}, not an nn.Module."
            )
        if args.weights:
            model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
        if args.data is None:
            raise SystemExit("--model needs --data (a folder of images or 'module:callable').")
        name, accuracy, labels = args.model, None, None
        if Path(args.data).is_dir():
            images = _load_folder(Path(args.data), args.image_size)
        else:
            loaded = _load_callable(args.data, "data")()
            images, labels = loaded if isinstance(loaded, tuple) else (loaded, None)
        if args.bounds:
            low, high = (float(v) for v in args.bounds.split(","))
        else:
            low, high = float(images.min()), float(images.max())
        if not low < high:
            raise SystemExit(f"--bounds low must be < high, got {low}, {high}.")
        channels = images.shape[1]
        bounds = (torch.full((channels,), low), torch.full((channels,), high))
        model.eval()
        if labels is None:
            with torch.no_grad():
                labels = model(images[:n_images]).argmax(1)
    model = model.to(device).eval()
    return ReportContext(
        out_dir=out,
        model=model,
        images=images[:n_images].to(device),
        labels=labels[:n_images].to(device),
        bounds=(bounds[0].to(device), bounds[1].to(device)),
        model_name=name,
        accuracy=accuracy,
        quick=args.quick,
        device=device,
        progress=not args.no_progress,
        seed=args.seed,
        methods=args.methods.split(",") if args.methods else None,
        metrics=args.metrics.split(",") if args.metrics else None,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m captum_ext_report", description=__doc__)
    parser.add_argument("--out", default="report", help="output folder (default: report/)")
    parser.add_argument("--quick", action="store_true", help="smoke-run size (about two minutes)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--n-images", type=int, default=None, help="test images used (default 64, quick 16)"
    )
    parser.add_argument("--sections", default=None, help="comma-separated section keys to run")
    parser.add_argument("--methods", default=None, help="comma-separated method names to include")
    parser.add_argument("--metrics", default=None, help="comma-separated metric names to include")
    parser.add_argument("--model", default=None, help="'module:callable' returning your nn.Module")
    parser.add_argument("--weights", default=None, help="state_dict file for --model")
    parser.add_argument("--data", default=None, help="folder of images or 'module:callable'")
    parser.add_argument("--image-size", type=int, default=224, help="resize for --data folders")
    parser.add_argument("--bounds", default=None, help="'low,high' value bounds of the data")
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
