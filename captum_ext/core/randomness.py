"""The package's one randomness policy.

Every stochastic method and metric takes ``seed: int | None = None`` and ``generator:
torch.Generator | None = None``, at most one of them:

- with neither, the draws come from a private generator seeded with :data:`DEFAULT_SEED` (0):
  results are reproducible unless you ask otherwise;
- ``seed=s`` seeds that private generator with ``s``;
- ``generator=g`` uses ``g`` as it is and advances it; for fresh draws on every call pass a
  generator seeded from the operating system (``g = torch.Generator(); g.seed()``).

The global RNG (``torch.manual_seed``) is never read nor advanced. Draws that must not depend on
how work is batched or ordered get their own seed from the run's seed and a key: a named unit
(a layer) with :func:`derive_seed`, a sample's index in the data set with :func:`sample_seed`
(:func:`sample_generators`, :func:`keyed_normal`), so sample ``i``'s draws are the same whether it
is scored alone, in a batch of 3 or of 8, on one process or on several.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import numpy as np
import torch

__all__ = [
    "DEFAULT_SEED",
    "derive_seed",
    "keyed_normal",
    "make_generator",
    "sample_generators",
    "sample_seed",
]

DEFAULT_SEED = 0


def make_generator(
    generator: torch.Generator | None = None,
    seed: int | None = None,
    device: torch.device | str = "cpu",
) -> torch.Generator:
    """A private generator following the package's policy (see the module docstring).

    Parameters
    ----------
    generator : torch.Generator, optional
        Returned as it is when given.
    seed : int, optional
        Seed of a new generator; :data:`DEFAULT_SEED` when neither argument is given.
    device : torch.device or str, default "cpu"
        Device of a new generator.
    """
    if generator is not None and seed is not None:
        raise ValueError("Give either generator= or seed=, not both.")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}.")
        return generator
    fresh = torch.Generator(device=device)
    if seed is None:
        seed = DEFAULT_SEED
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
    return fresh.manual_seed(seed)


def derive_seed(seed: int, key: str) -> int:
    """A stable seed for one named unit of work (a layer, a sample) under the run's ``seed``.

    The value depends only on ``seed`` and ``key``, never on how many other units were drawn
    before, so work can be reordered, batched or sharded without changing any draw.
    """
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**63 - 1)


_MASK63 = (1 << 63) - 1


def sample_seed(seed: int, index: int, stream: str = "") -> int:
    """A 63-bit seed for sample ``index`` (and one named ``stream`` of draws) under ``seed``.

    ``numpy.random.SeedSequence`` mixes ``(seed, index, crc32(stream))``, so neighbouring samples
    and streams get unrelated seeds, and the value never depends on batching or sharding.
    """
    entropy = [int(seed) & _MASK63, int(index) & _MASK63, zlib.crc32(stream.encode())]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & _MASK63


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
