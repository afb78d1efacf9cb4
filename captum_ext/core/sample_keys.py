"""Random draws keyed to the sample, so per-sample scores do not depend on batching.

A metric that draws noise for a whole batch from one generator gives sample ``i`` different
draws when the batch size (or the samples before it) change. Here every sample gets its own
generator, seeded from the metric's seed and the sample's position in the data set, so sample
``i``'s draws are the same whether it is scored alone, in a batch of 3 or of 8.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

__all__ = ["keyed_normal", "sample_generators", "sample_seed"]

_MASK = (1 << 64) - 1


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` under ``seed`` (SplitMix64 of the pair; stable)."""
    z = (seed * 0x9E3779B97F4A7C15 + index + 1) & _MASK
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        z = ((z ^ (z >> shift)) * mult) & _MASK
    return (z ^ (z >> 31)) >> 1


def sample_generators(
    seed: int, indices: Iterable[int], device: torch.device | str = "cpu"
) -> list[torch.Generator]:
    """One private generator per sample index (the global RNG is never used)."""
    return [torch.Generator(device=device).manual_seed(sample_seed(seed, int(i))) for i in indices]


def keyed_normal(
    generators: Sequence[torch.Generator],
    per_sample: tuple[int, ...],
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``(B, *per_sample)`` standard normal draws, row ``i`` from ``generators[i]``."""
    return torch.stack(
        [torch.randn(per_sample, generator=g, dtype=dtype, device=g.device) for g in generators]
    )
