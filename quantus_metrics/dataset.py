"""Evaluate explanations over a whole dataset: streaming, resumable, sharded with torch.distributed.

:func:`evaluate_dataset` explains and scores batches as they come from a ``DataLoader`` and
writes one row per (sample, method, metric, layer) to Parquet part files; rank 0 merges them into
``results.parquet`` and a summary with bootstrap confidence intervals. Under ``torchrun
--nproc-per-node N`` each rank takes a disjoint set of sample chunks (gloo on the CPU, NCCL on
GPUs). Re-running the same call skips the samples whose rows are on disk.

Per-sample results do not depend on the number of processes, the batch size or interruptions:
every random draw is keyed to ``(seed, sample id)`` (see ``quantus_metrics._dataset_specs``), the
chunks and the merge order depend only on the sample ids, and model-level randomness uses the run
seed on every rank. Deterministic methods and metrics run on whole batches; their values can then
differ in the last float32 bits between batch compositions (batched kernels sum in another
order). ``exact=True`` computes every sample on its own and makes the results bit-identical.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset
from tqdm.auto import tqdm

from captum_ext.core.randomness import sample_seed
from quantus_metrics._dataset_io import (
    ImageFolderDataset,
    Item,
    KeyedDataset,
    collate,
    done_ranges,
    iter_batches,
    merge_parts,
    missing_runs,
    stack_valid,
    summary_rows,
    write_part,
    write_summary,
)
from quantus_metrics._dataset_specs import (
    MethodSpec,
    MetricSpec,
    keyed_global_rng,
    load_callable,
    resolve_method,
    resolve_metric,
)
from quantus_metrics.explain import explain_func_from

__all__ = ["DatasetResult", "evaluate_dataset", "load_dataset", "MethodSpec", "MetricSpec"]

_FORMAT = 1


@dataclass
class DatasetResult:
    """What :func:`evaluate_dataset` did on this rank.

    Attributes
    ----------
    out : Path
        The output folder.
    complete : bool
        Whether every sample has its rows on disk (then rank 0 has merged them).
    results : Path or None
        ``out / "results.parquet"`` on rank 0 of a complete run.
    summary : list of dict or None
        The summary rows (rank 0 of a complete run).
    n_samples, processed : int
        Samples in the dataset; samples this rank scored in this call.
    seconds, compute_seconds : float
        Wall time of this rank's loop, and the part spent explaining and scoring.
    rank, world_size : int
    """

    out: Path
    complete: bool
    results: Path | None
    summary: list[dict[str, Any]] | None
    n_samples: int
    processed: int
    seconds: float
    compute_seconds: float
    rank: int = 0
    world_size: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def samples_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else math.nan


# ------------------------------------------------------------------------------------------ input


def load_dataset(
    data: Any,
    image_size: int = 224,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Dataset:
    """A map-style dataset from a Dataset, a DataLoader (its dataset), an image folder, a tuple of
    tensors ``(x, y)`` or ``"module:callable"`` returning any of these."""
    if isinstance(data, str) and ":" in data and not Path(data).exists():
        data = load_callable(data, "data")()
    if isinstance(data, (str, os.PathLike)):
        return ImageFolderDataset(data, image_size=image_size, mean=mean, std=std)
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, torch.Tensor):
        data = TensorDataset(data)
    if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) for t in data):
        data = TensorDataset(*data)
    if isinstance(data, IterableDataset):
        raise TypeError(
            "An IterableDataset has no sample ids to shard and resume by; wrap your data in a "
            "map-style torch.utils.data.Dataset (__len__ and __getitem__)."
        )
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise TypeError(
            "data must be a map-style Dataset, a DataLoader, an image folder, tensors (x, y) or "
            f"'module:callable'; got {type(data).__name__}."
        )
    return data


def _model_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------ distributed


def _setup_distributed(device: torch.device | None) -> tuple[int, int, bool, torch.device | None]:
    """Join the process group ``torchrun`` describes (if any): rank, world size, whether this
    call owns the group, and the device of this rank."""
    owns = False
    world_env = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device is not None and device.type == "cuda"
    if cuda and device.index is None and world_env > 1:
        device = torch.device("cuda", local_rank)
    if dist.is_available() and not dist.is_initialized() and world_env > 1:
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        owns = True
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), owns, device
    return 0, 1, owns, device


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


# ----------------------------------------------------------------------------------------- engine


class _Engine:
    def __init__(
        self,
        model: nn.Module,
        methods: list[MethodSpec],
        metrics: list[MetricSpec],
        seed: int,
        exact: bool,
        device: torch.device,
    ) -> None:
        self.model = model
        self.methods = methods
        self.metrics = metrics
        self.seed = seed
        self.exact = exact
        self.device = device
        self.dtype = next((p.dtype for p in model.parameters()), torch.float32)
        self._attributions = {m.name: m.factory(model) for m in methods}
        self._instances: dict[str, Any] = {}
        self.n_classes: int | None = None
        self.compute_seconds = 0.0

    # -- rows ------------------------------------------------------------------------------
    def pairs(self) -> list[tuple[str, str]]:
        """(method, metric) in output order; data-only metrics first with method ``""``."""
        data_only = [("", k.name) for k in self.metrics if not k.uses_method]
        return data_only + [
            (m.name, k.name) for m in self.methods for k in self.metrics if k.uses_method
        ]

    def process(self, items: list[Item], x: torch.Tensor | None) -> dict[str, list]:
        rows: list[tuple] = []
        order = {pair: i for i, pair in enumerate(self.pairs())}
        targets: dict[int, int | None] = {it.index: it.label for it in items}

        def error_rows(it: Item, pairs: Sequence[tuple[str, str]], message: str) -> None:
            for pair in pairs:
                rows.append((it.index, order[pair], 0, it, pair, "", math.nan, message))

        good = [it for it in items if it.error is None]
        for it in items:
            if it.error is not None:
                error_rows(it, self.pairs(), it.error)
        if good:
            start = time.perf_counter()
            good, x, t = self._targets(good, x, error_rows)
            if good:
                for it, target in zip(good, t.tolist()):
                    targets[it.index] = target
                self._score_all(good, x, t, order, rows, error_rows)
            self.compute_seconds += time.perf_counter() - start
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        return {
            "sample": [r[0] for r in rows],
            "key": [r[3].key for r in rows],
            "target": [targets.get(r[0]) for r in rows],
            "method": [r[4][0] for r in rows],
            "metric": [r[4][1] for r in rows],
            "layer": [r[5] for r in rows],
            "value": [r[6] for r in rows],
            "error": [r[7] for r in rows],
        }

    def _targets(self, good: list[Item], x: torch.Tensor, error_rows: Any):
        x = x.to(self.device, self.dtype, non_blocking=True)
        if self.n_classes is None:
            with torch.no_grad():
                self.n_classes = int(self.model(x[:1]).reshape(1, -1).shape[1])
        labels = [it.label for it in good]
        if any(label is None for label in labels):
            with torch.no_grad():  # unlabelled samples: explain the predicted class
                predicted = self.model(x).argmax(1).tolist()
            labels = [p if label is None else label for label, p in zip(labels, predicted)]
        keep = []
        for i, (it, label) in enumerate(zip(good, labels)):
            if not 0 <= label < self.n_classes:
                error_rows(
                    it,
                    self.pairs(),
                    f"label: {label} is outside the model's {self.n_classes} classes",
                )
            else:
                keep.append(i)
        if len(keep) < len(good):
            good = [good[i] for i in keep]
            x = x[keep]
            labels = [labels[i] for i in keep]
        return good, x, torch.as_tensor(labels, dtype=torch.long, device=self.device)

    def _score_all(self, good, x, t, order, rows, error_rows) -> None:
        for metric in self.metrics:
            if metric.uses_method:
                continue
            pair = ("", metric.name)
            self._emit(metric, None, good, x, t, None, pair, order, rows, error_rows)
        for method in self.methods:
            a, failed = self._explain(method, good, x, t)
            ok = [i for i in range(len(good)) if i not in failed]
            pairs = [(method.name, k.name) for k in self.metrics if k.uses_method]
            for i, message in failed.items():
                error_rows(good[i], pairs, f"method: {message}")
            if not ok:
                continue
            sub = [good[i] for i in ok]
            for metric in self.metrics:
                if metric.uses_method:
                    self._emit(
                        metric,
                        method,
                        sub,
                        x[ok],
                        t[ok],
                        a[ok],
                        (method.name, metric.name),
                        order,
                        rows,
                        error_rows,
                    )

    def _emit(self, metric, method, items, x, t, a, pair, order, rows, error_rows) -> None:
        scores, failed = self._score(metric, method, items, x, t, a)
        for i, it in enumerate(items):
            if i in failed:
                error_rows(it, [pair], f"metric: {failed[i]}")
                continue
            for li, (layer, value) in enumerate(scores[i]):
                rows.append((it.index, order[pair], li, it, pair, layer, value, None))

    # -- methods ---------------------------------------------------------------------------
    def _method_seed(self, method: MethodSpec, index: int) -> int:
        return sample_seed(self.seed, index, f"method:{method.name}")

    def _attribute(self, method: MethodSpec, x, t, index: int | None) -> torch.Tensor:
        kwargs = dict(method.attribute_kwargs)
        ctx: Any = contextlib.nullcontext()
        if method.randomness == "seed":
            kwargs["seed"] = self._method_seed(method, index)  # type: ignore[arg-type]
        elif method.randomness == "global":
            ctx = keyed_global_rng(self._method_seed(method, index), self.device)  # type: ignore
        # A private leaf that already requires grad: Captum would otherwise warn on every call
        # that it switched gradients on for the input (nothing the user can act on).
        x = x.detach().requires_grad_() if x.is_floating_point() else x
        with ctx:
            out = self._attributions[method.name].attribute(x, target=t, **kwargs)
        if isinstance(out, tuple):
            out = out[0]
        return out.detach()

    def _explain(self, method: MethodSpec, items, x, t) -> tuple[torch.Tensor, dict[int, str]]:
        """Attributions of the batch (rows of failed samples are zeros) and the failures."""
        failed: dict[int, str] = {}
        if method.randomness == "none" and not self.exact:
            try:
                a = self._attribute(method, x, t, None)
                return a, self._non_finite(a, failed)
            except Exception as err:  # find the sample(s) that fail, keep the others
                if len(items) == 1:
                    return torch.zeros_like(x), {0: _describe(err)}
        parts = []
        for i, it in enumerate(items):
            try:
                parts.append(self._attribute(method, x[i : i + 1], t[i : i + 1], it.index))
            except Exception as err:
                failed[i] = _describe(err)
                parts.append(None)
        shape = next((p.shape[1:] for p in parts if p is not None), x.shape[1:])
        a = torch.stack([p[0] if p is not None else x.new_zeros(shape) for p in parts])
        self._non_finite(a, failed)
        return a, failed

    @staticmethod
    def _non_finite(a: torch.Tensor, failed: dict[int, str]) -> dict[int, str]:
        finite = torch.isfinite(a.reshape(len(a), -1)).all(1).tolist()
        for i, ok in enumerate(finite):
            if not ok and i not in failed:
                failed[i] = "the attribution holds NaN or infinity"
        return failed

    # -- metrics ---------------------------------------------------------------------------
    def _instance(self, metric: MetricSpec) -> Any:
        if metric.name not in self._instances:
            self._instances[metric.name] = metric.factory(self.seed)
        return self._instances[metric.name]

    def _score(self, metric: MetricSpec, method: MethodSpec | None, items, x, t, a):
        per_sample = (
            self.exact
            or metric.randomness in ("sample", "global")
            or (metric.explains and method is not None and method.randomness != "none")
        )
        failed: dict[int, str] = {}
        if not per_sample:
            try:
                return self._call(self._instance(metric), method, x, t, a, None), failed
            except Exception as err:
                if len(items) == 1:
                    return [], {0: _describe(err)}
        scores: list[list[tuple[str, float]]] = []
        stream = f"metric:{metric.name}:{method.name if method else ''}"
        for i, it in enumerate(items):
            s = sample_seed(self.seed, it.index, stream)
            try:
                sampled = metric.randomness == "sample"
                inst = metric.factory(s) if sampled else self._instance(metric)
                ctx: Any = contextlib.nullcontext()
                if metric.randomness == "global" or (
                    method is not None and method.randomness == "global"
                ):
                    ctx = keyed_global_rng(s, self.device)
                with ctx:
                    one = a[i : i + 1] if a is not None else None
                    scores.extend(
                        self._call(inst, method, x[i : i + 1], t[i : i + 1], one, it.index)
                    )
            except Exception as err:
                failed[i] = _describe(err)
                scores.append([])
        return scores, failed

    def _call(self, inst, method, x, t, a, index) -> list[list[tuple[str, float]]]:
        explain = explain_kwargs = None
        if method is not None:
            explain = explain_func_from(method.factory, **method.attribute_kwargs)
            explain_kwargs = {}
            if method.randomness == "seed" and index is not None:
                explain_kwargs["seed"] = self._method_seed(method, index)
        out = inst(
            model=self.model,
            x_batch=x.detach().cpu().numpy(),
            y_batch=t.cpu().numpy(),
            a_batch=None if a is None else a.cpu().numpy(),
            s_batch=None,
            channel_first=True,
            explain_func=explain,
            explain_func_kwargs=explain_kwargs,
            model_predict_kwargs=None,
            softmax=False,
            device=str(self.device),
            batch_size=len(x),
        )
        out = list(out) if not isinstance(out, dict) else _transpose(out, len(x))
        if len(out) != len(x):
            raise ValueError(f"the metric returned {len(out)} scores for {len(x)} samples.")
        return [_layers(score) for score in out]


def _transpose(out: dict, n: int) -> list[dict]:
    return [{k: v[i] for k, v in out.items()} for i in range(n)]


def _layers(score: Any) -> list[tuple[str, float]]:
    if isinstance(score, dict):
        return [(str(k), float(v)) for k, v in score.items()]
    array = np.asarray(score, dtype=np.float64).reshape(-1)
    if array.size == 1:
        return [("", float(array[0]))]
    return [(str(i), float(v)) for i, v in enumerate(array)]


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


# -------------------------------------------------------------------------------- entry point


def evaluate_dataset(
    model: nn.Module | str,
    data: Any,
    methods: Sequence[str | MethodSpec | Any],
    metrics: Sequence[str | MetricSpec | Any],
    out: str | os.PathLike,
    *,
    seed: int = 0,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    bounds: tuple[float, float] | None = None,
    exact: bool = False,
    chunk_size: int = 256,
    max_batches: int | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    figures: bool = True,
    progress: bool = True,
    image_size: int = 224,
) -> DatasetResult:
    """Explain and score every sample of a dataset; rows to Parquet, a summary with CIs.

    Parameters
    ----------
    model : nn.Module or str
        The classifier, or ``"module:callable"`` returning it. Evaluated in eval mode; the
        user's flags are restored afterwards, and with another ``device`` a copy is moved.
    data : Dataset, DataLoader, path, tuple of tensors or str
        Map-style samples ``x`` or ``(x, label, ...)``; an image folder (class sub-folders give
        labels); or ``"module:callable"``. Unlabelled samples explain the predicted class.
    methods : sequence
        Names (ours: ``LRP``, ``RectGrad``, ``SmoothGrad``, ``AdaptGrad``, ``NoiseGrad``,
        ``PatternNet``/``PatternAttribution`` fitted on the first 256 samples; any
        ``captum.attr`` class such as ``Saliency``), ``"module:callable"`` (``model ->
        Attribution``) or :class:`MethodSpec`.
    metrics : sequence
        Names (ours: ``SpectralComplexity``, ``ModelRandomisationSSIM``, ``RandomLogitSSIM``,
        ``CSC``, ``ConvergenceConstants``, ``InherentNoise``), ``"quantus:<Metric>"``,
        ``"module:callable"`` or :class:`MetricSpec`.
    out : path
        Output folder: ``parts/`` while running, then ``results.parquet``, ``summary.csv``,
        ``summary.md``, ``summary.json`` and ``figures/``. Re-running resumes.
    seed : int
        Every random draw is keyed to ``(seed, sample id)``.
    batch_size, num_workers : int
        DataLoader options; they do not change the rows (see the module notes on float32).
    device : str or torch.device, optional
        Where the model runs (default: the model's device). Under ``torchrun`` with ``cuda``
        each rank uses ``cuda:LOCAL_RANK``.
    bounds : (low, high), optional
        Value range of the data (AdaptGrad, InherentNoise).
    exact : bool
        Compute each sample alone: bit-identical rows for any batch size or process count.
    chunk_size : int
        Samples per unit of work handed to a rank (fixed per output folder).
    max_batches : int, optional
        Stop this call after that many batches (the run can be resumed).
    confidence, n_resamples : float, int
        Percentile bootstrap of the mean per (method, metric, layer).
    figures : bool
        Per-layer mean ± CI plots for layered metrics (needs matplotlib).
    progress : bool
        tqdm bar (samples/s and ETA) on rank 0.
    image_size : int
        Square size image folders are resized to.

    Returns
    -------
    DatasetResult
    """
    for name, value in (("batch_size", batch_size), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int ≥ 0, got {num_workers!r}.")
    if max_batches is not None and max_batches < 0:
        raise ValueError(f"max_batches must be ≥ 0, got {max_batches}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    if isinstance(model, str):
        model = load_callable(model, "model")()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}.")
    if not methods and not any(not resolve_metric(m, bounds).uses_method for m in metrics):
        raise ValueError("give at least one method (or a metric of the data alone).")
    if not metrics:
        raise ValueError("give at least one metric.")
    dataset = load_dataset(data, image_size)
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset is empty.")

    wanted = None if device is None else torch.device(device)
    rank, world, owns_group, wanted = _setup_distributed(wanted)
    try:
        settings = _RunSettings(
            Path(out), seed, batch_size, num_workers, wanted, bounds, exact, chunk_size,
            max_batches, confidence, n_resamples, figures, progress, rank, world,
        )  # fmt: skip
        return _run(model, dataset, methods, metrics, settings)
    finally:
        if owns_group:
            dist.destroy_process_group()



@dataclass(frozen=True)
class _RunSettings:
    """The validated options of one :func:`evaluate_dataset` call, and this process's rank."""

    out: Path
    seed: int
    batch_size: int
    num_workers: int
    wanted: torch.device | None
    bounds: tuple[float, float] | None
    exact: bool
    chunk_size: int
    max_batches: int | None
    confidence: float
    n_resamples: int
    figures: bool
    progress: bool
    rank: int
    world: int


def _run(model, dataset, methods, metrics, run: _RunSettings):
    current = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = current if run.wanted is None else run.wanted
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA device is available.")
    if device != current:
        model = copy.deepcopy(model).to(device)  # the user's model stays where it is
    method_specs = [copy.copy(resolve_method(m, run.bounds)) for m in methods]  # specs are set up
    metric_specs = [resolve_metric(m, run.bounds) for m in metrics]
    names = [m.name for m in method_specs]
    if len(set(names)) != len(names) or len({m.name for m in metric_specs}) != len(metric_specs):
        raise ValueError("method and metric names must be unique (they key the rows).")
    n = len(dataset)

    saved_modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        for spec in method_specs:
            spec.resolve_randomness(model)
            if spec.prepare is not None:  # model-level work: once per rank, same on every rank
                spec.factory = spec.prepare(model, dataset)
                spec.prepare = None
        manifest = {
            "format": _FORMAT,
            "n_samples": n,
            "chunk_size": run.chunk_size,
            "seed": run.seed,
            "exact": run.exact,
            "dataset": type(dataset).__name__,
            "model": _model_digest(model),
            "methods": [
                [m.name, repr(sorted(m.attribute_kwargs.items())), m.randomness]
                for m in method_specs
            ],
            "metrics": [[m.name, m.randomness] for m in metric_specs],
        }
        parts = run.out / "parts"
        if run.rank == 0:
            parts.mkdir(parents=True, exist_ok=True)
            path = run.out / "manifest.json"
            if not path.exists():
                path.write_text(json.dumps(manifest, indent=1))
        _barrier(run.world)
        found = json.loads((run.out / "manifest.json").read_text())
        if found != json.loads(json.dumps(manifest)):
            raise ValueError(
                f"{run.out} holds a run with another configuration "
                f"({_diff(found, manifest)}); choose a new output folder or delete it."
            )

        done = done_ranges(parts)
        chunks = range(run.rank, math.ceil(n / run.chunk_size), run.world)
        runs = []
        for c in chunks:
            runs.extend(missing_runs(c * run.chunk_size, min(n, (c + 1) * run.chunk_size), done))
        batches = list(iter_batches(runs, run.batch_size))
        if run.max_batches is not None:
            batches = batches[:run.max_batches]
        todo = sum(len(b) for b in batches)

        engine = _Engine(model, method_specs, metric_specs, run.seed, run.exact, device)
        loader = DataLoader(
            KeyedDataset(dataset),
            batch_sampler=batches,
            num_workers=run.num_workers,
            collate_fn=_collate_and_stack,
            pin_memory=device.type == "cuda",
            # its own generator: a DataLoader otherwise draws its base seed from the global RNG
            generator=torch.Generator().manual_seed(run.seed),
        )
        bar = tqdm(
            total=todo,
            unit="sample",
            disable=not run.progress or run.rank != 0,
            desc=f"evaluate (rank 0 of {run.world})" if run.world > 1 else "evaluate",
        )
        start = time.perf_counter()
        processed = 0
        for (items, x), indices in zip(loader, batches):
            rows = engine.process(items, x)
            write_part(parts, indices.start, indices.stop, rows)
            processed += len(indices)
            bar.update(len(indices))
        seconds = time.perf_counter() - start
        bar.close()
    finally:
        for module, mode in saved_modes:
            module.training = mode

    _barrier(run.world)
    complete = _covered(done_ranges(parts), n)
    result = DatasetResult(
        out=run.out,
        complete=complete,
        results=None,
        summary=None,
        n_samples=n,
        processed=processed,
        seconds=seconds,
        compute_seconds=engine.compute_seconds,
        rank=run.rank,
        world_size=run.world,
    )
    if complete and run.rank == 0:
        _finish(result, engine, dataset, run.seed, run.confidence, run.n_resamples, run.figures)
    _barrier(run.world)
    return result


def _collate_and_stack(items: list[Item]) -> tuple[list[Item], torch.Tensor | None]:
    items = collate(items)
    _, x = stack_valid(items)
    return items, x


def _covered(ranges: list[tuple[int, int]], n: int) -> bool:
    position = 0
    for lo, hi in ranges:
        if lo != position:
            return False
        position = hi
    return position == n


def _diff(found: dict, wanted: dict) -> str:
    keys = [k for k in wanted if found.get(k) != json.loads(json.dumps(wanted[k]))]
    return ", ".join(f"{k}: {found.get(k)!r} on disk, {wanted[k]!r} now" for k in keys)


def _finish(result, engine, dataset, seed, confidence, n_resamples, figures) -> None:
    out = result.out
    values = merge_parts(out / "parts", result.n_samples, out / "results.parquet")
    order = engine.pairs()

    def seed_of(method: str, metric: str, layer: str) -> int:
        return sample_seed(seed, -1, f"bootstrap:{method}:{metric}:{layer}")

    rows = summary_rows(values, order, confidence, n_resamples, seed_of)
    write_summary(rows, out, confidence)
    error_samples = set()
    for key, ids in values.items():
        if key[0] == "errors":
            error_samples.update(ids.tolist())
    info = {
        "n_samples": result.n_samples,
        "samples_with_errors": len(error_samples),
        "confidence": confidence,
        "n_resamples": n_resamples,
        "seed": seed,
        "world_size": result.world_size,
        "last_call_seconds_rank0": round(result.seconds, 3),
        "figures": _figures(rows, out) if figures else [],
    }
    (out / "summary.json").write_text(json.dumps(info, indent=1))
    result.results = out / "results.parquet"
    result.summary = rows
    result.extra.update(info)


def _figures(rows: list[dict[str, Any]], out: Path) -> list[str]:
    """Mean per layer with its bootstrap band, one figure per layered (method, metric)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["metric"]), []).append(r)
    written = []
    for (method, metric), group in groups.items():
        if len(group) < 2:
            continue
        folder = out / "figures"
        folder.mkdir(exist_ok=True)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        pos = np.arange(len(group))
        ax.plot(pos, [r["mean"] for r in group], marker="o", label=method or metric)
        ax.fill_between(pos, [r["ci_low"] for r in group], [r["ci_high"] for r in group], alpha=0.3)
        ax.set_xticks(pos, [r["layer"] for r in group], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(f"{metric} (mean, CI)")
        ax.set_title(f"{metric} · {method}" if method else metric)
        fig.tight_layout()
        name = f"{metric}-{method or 'data'}.png".replace("/", "_").replace(":", "_")
        fig.savefig(folder / name, dpi=120)
        plt.close(fig)
        written.append(f"figures/{name}")
    return written
