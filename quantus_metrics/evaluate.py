"""``python -m quantus_metrics.evaluate`` (``captum-ext-evaluate``): evaluate a whole dataset.

Examples
--------
One process, the digits CNN on its test split::

    python -m quantus_metrics.evaluate --out runs/digits --methods Saliency,LRP \\
        --metrics SpectralComplexity,RandomLogitSSIM

Two processes on one machine (gloo on the CPU, NCCL with ``--device cuda``)::

    torchrun --standalone --nproc-per-node 2 -m quantus_metrics.evaluate --out runs/digits ...

Interrupt it and run the same command again: finished samples are skipped.
"""

from __future__ import annotations

import argparse
import sys

import torch

from quantus_metrics.dataset import evaluate_dataset


def _digits_model() -> torch.nn.Module:
    from captum_ext.zoo import train_digits_cnn

    return train_digits_cnn(progress=False).model


def _digits_data():
    from captum_ext.zoo import DigitsDataset

    return DigitsDataset("test")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m quantus_metrics.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder (re-running resumes there)")
    p.add_argument(
        "--model",
        default=None,
        help="'module:callable' returning the nn.Module (default: the digits CNN)",
    )
    p.add_argument("--weights", default=None, help="state_dict file loaded into --model")
    p.add_argument(
        "--data",
        default=None,
        help="image folder or 'module:callable' (default: the digits test split)",
    )
    p.add_argument(
        "--methods",
        default="Saliency,LRP",
        help="comma-separated: ours, captum.attr names or module:callable; "
        "Name(key=value, ...) adds attribute options",
    )
    p.add_argument(
        "--metrics",
        default="SpectralComplexity,RandomLogitSSIM",
        help="comma-separated: ours, quantus:<Metric> or module:callable; "
        "Name(key=value, ...) adds constructor options",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: the model's)")
    p.add_argument("--bounds", default=None, help="'low,high' value range of the data")
    p.add_argument("--image-size", type=int, default=224, help="resize for image folders")
    p.add_argument("--mean", default=None, help="per-channel mean for image folders, 'a,b,c'")
    p.add_argument("--std", default=None, help="per-channel std for image folders, 'a,b,c'")
    p.add_argument(
        "--exact",
        action="store_true",
        help="compute each sample alone (bit-identical for any batch size/processes)",
    )
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--max-batches", type=int, default=None, help="stop after N batches")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--n-resamples", type=int, default=10_000)
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _floats(text: str | None) -> list[float] | None:
    return None if text is None else [float(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from quantus_metrics._dataset_specs import load_callable, split_specs
    from quantus_metrics.dataset import load_dataset

    if args.model is None:
        model = _digits_model()
    else:
        model = load_callable(args.model, "--model")()
        if args.weights:
            model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    if args.data is None:
        data = _digits_data()
        bounds = (0.0, 1.0)
    else:
        data = load_dataset(args.data, args.image_size, _floats(args.mean), _floats(args.std))
        bounds = None
    if args.bounds:
        low, high = _floats(args.bounds)  # type: ignore[misc]
        bounds = (low, high)
    result = evaluate_dataset(
        model,
        data,
        split_specs(args.methods),
        split_specs(args.metrics),
        args.out,
        seed=args.seed,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        bounds=bounds,
        exact=args.exact,
        chunk_size=args.chunk_size,
        max_batches=args.max_batches,
        confidence=args.confidence,
        n_resamples=args.n_resamples,
        figures=not args.no_figures,
        progress=not args.no_progress,
    )
    if result.rank == 0:
        rate = result.samples_per_second
        print(
            f"rank 0 of {result.world_size}: {result.processed} samples in "
            f"{result.seconds:.1f} s ({rate:.1f} samples/s on this rank)"
        )
        if result.complete:
            print(
                f"results: {result.results}; summary: {result.out / 'summary.md'} "
                f"({result.extra['samples_with_errors']} samples with errors)"
            )
        else:
            print("incomplete: run the same command again to resume.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
