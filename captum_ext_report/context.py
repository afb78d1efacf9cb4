"""What a report section receives (the workload) and what it returns (its findings)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class Section:
    """One section of the report: the paper's claim, what this run found, and the evidence.

    ``confirmed`` is ``True``/``False`` when the run tests a claim, ``None`` when it only shows.
    ``verdict`` (a :class:`captum_ext_report.verdicts.Claim`), when set, decides the outcome
    (confirmed / partly confirmed / not confirmed) from pre-registered criteria and overrides
    ``confirmed``; a section that applies its criteria itself states the result in ``outcome``.
    ``figures`` are paths relative to the report folder, ``captions`` (same
    order, optional) say what to look at; ``tables`` are Markdown pipe tables; ``numbers`` go
    verbatim into ``results.json``; ``skipped`` lists "what: reason" for parts that do not
    apply to the model under study.
    """

    key: str
    title: str
    claim: str
    finding: str
    confirmed: bool | None = None
    figures: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    verdict: Any = None
    captions: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    outcome: str | None = None

    def __post_init__(self) -> None:
        if self.verdict is not None:
            self.confirmed = self.verdict.decide().confirmed
        if self.outcome not in (None, "confirmed", "partly confirmed", "not confirmed"):
            raise ValueError(f"unknown outcome {self.outcome!r}")


@dataclass
class ReportContext:
    """The workload shared by all sections.

    Attributes
    ----------
    out_dir : Path
        Report folder; figures go to ``out_dir / "figures"`` (see :meth:`figure_path`).
    model : nn.Module
        The classifier under study, eval mode (default: the ImageNet-pretrained
        EfficientNet-Lite0; with ``--quick`` the small CNN of Sixt et al. 2020 on digits).
    images, labels : torch.Tensor
        Test images ``(N, C, H, W)`` on ``device`` and their labels.
    fit_data : torch.Tensor, optional
        Training images for methods that fit statistics (PatternNet); ``None``: ``images``.
    bounds : tuple of torch.Tensor
        Per-channel ``(low, high)`` value bounds of ``images``.
    quick : bool
        Smoke-run size: sections should use few images, samples and iterations.
    workload : str
        ``"efficientnet-lite0"`` or ``"digits"`` (bundled workloads) or ``"user"``.
    """

    out_dir: Path
    model: nn.Module
    images: torch.Tensor
    labels: torch.Tensor
    bounds: tuple[torch.Tensor, torch.Tensor]
    model_name: str = "small CNN on 8×8 digits"
    accuracy: float | None = None
    quick: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: bool = True
    seed: int = 0
    methods: list[str] | None = None
    metrics: list[str] | None = None
    fit_data: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    workload: str = "user"

    @property
    def pattern_data(self) -> torch.Tensor:
        """Images PatternNet/PatternAttribution fit on: ``fit_data`` (a training split) if
        given, else the report's own images."""
        data = self.fit_data if self.fit_data is not None else self.images
        return data.to(self.device)

    @property
    def is_default_model(self) -> bool:
        """Whether the report runs on a bundled workload (not a user's ``--model``)."""
        return self.workload != "user"

    @property
    def is_digits(self) -> bool:
        """Whether the model is the bundled small CNN on 8×8 digits."""
        return self.workload == "digits"

    @property
    def n_show(self) -> int:
        """How many images heatmap grids show."""
        return min(4 if not self.quick else 3, len(self.images))

    @property
    def large_inputs(self) -> bool:
        """Whether the images are ImageNet-sized (≥ 64×64 pixels): every explanation then costs
        a full network's backward pass, and full-run sizes shrink to fit the report's budget."""
        return self.images.shape[-1] * self.images.shape[-2] >= 64 * 64

    @property
    def pattern_fit(self) -> dict[str, int]:
        """``max_batches``/``batch_size`` of every PatternNet/PatternAttribution fit: the
        statistics of eight batches of 64 on small images, of 8 ImageNet-sized images (the fit
        runs again on every randomised model in the sanity check)."""
        if self.quick:
            return {"max_batches": 1, "batch_size": 32}
        if self.large_inputs:
            return {"max_batches": 1, "batch_size": 8}
        return {"max_batches": 8, "batch_size": 64}

    @property
    def batch_limit(self) -> int:
        """Most images one forward/backward pass may take: bounds the memory of noise tunnels
        and path integrals (an ImageNet network keeps ~50 MB of activations per image)."""
        return 16 if self.large_inputs else 256

    def tunnel_batch(self, n_images: int) -> int:
        """``nt_samples_batch_size`` that keeps a noise tunnel on ``n_images`` within
        :attr:`batch_limit`."""
        return max(1, self.batch_limit // max(1, n_images))

    def size(self, full: int, quick: int, large: int | None = None) -> int:
        """``full`` normally, ``quick`` in a smoke run, ``large`` (if given) in a full run on
        large inputs (see :attr:`large_inputs`)."""
        if self.quick:
            return quick
        return large if large is not None and self.large_inputs else full

    def figure_path(self, name: str) -> Path:
        """Where a section saves figure ``name`` (``.png`` added); returns the absolute path."""
        folder = self.out_dir / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}.png"

    def save_figure(self, fig: Any, name: str, dpi: int = 110, tight: bool = True) -> str:
        """Lay out (``tight``), save and close matplotlib figure ``fig`` as ``name``; returns
        its path relative to the report folder."""
        from captum_ext_report.plotting import pyplot

        path = self.figure_path(name)
        if tight:
            fig.tight_layout()
            fig.savefig(path, dpi=dpi)
        else:  # suptitle/colorbar layouts: crop to the drawn content instead
            fig.savefig(path, dpi=dpi, bbox_inches="tight")
        pyplot().close(fig)
        return self.relative(path)

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.out_dir))

    def wants_method(self, name: str) -> bool:
        return self.methods is None or name.lower() in {m.lower() for m in self.methods}

    def wants_metric(self, name: str) -> bool:
        return self.metrics is None or name.lower() in {m.lower() for m in self.metrics}

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh generator seeded from the report seed (global RNG untouched)."""
        return torch.Generator(device="cpu").manual_seed(self.seed + offset)

    @functools.cached_property
    def natural_images(self) -> torch.Tensor:
        """scikit-image photos at 224×224, ImageNet-normalised, on ``device``."""
        from captum_ext.zoo import natural_image_batch

        size = 112 if self.quick else 224
        return natural_image_batch(size=size).to(self.device)

    def torchvision(self, name: str) -> nn.Module:
        """A random-init torchvision model (seeded) on ``device``, eval mode, built once per run."""
        from captum_ext.zoo import torchvision_model

        cache = self.extra.setdefault("torchvision", {})
        if name not in cache:
            cache[name] = torchvision_model(name, seed=self.seed).to(self.device)
        return cache[name]


def fixed_workload_skip(ctx: ReportContext, key: str, title: str) -> Section | None:
    """A "skipped" section for paper reproductions that run on their own fixed workload.

    Such sections (MNIST MLP, smooth-ReLU digits models, EfficientNet-Lite0 photos) say nothing
    about a user's ``--model``, so a run on the user's model skips them instead of spending
    minutes on them; ``None`` on the bundled model (run them).
    """
    if ctx.is_default_model:
        return None
    reason = "reproduces the paper on its own fixed workload; run the report without --model"
    return Section(
        key=key,
        title=title,
        claim="",
        finding=f"skipped: {reason}.",
        skipped=[f"{title}: {reason}"],
    )
