"""The package's one randomness policy.

Every stochastic method and metric takes ``seed: int | None = None`` and ``generator:
torch.Generator | None = None``, at most one of them:

- with neither, the draws come from a private generator seeded with :data:`DEFAULT_SEED` (0):
  results are reproducible unless you ask otherwise;
- ``seed=s`` seeds that private generator with ``s``;
- ``generator=g`` uses ``g`` as it is and advances it; for fresh draws on every call pass a
  generator seeded from the operating system (``g = torch.Generator(); g.seed()``).

The global RNG (``torch.manual_seed``) is never read nor advanced. Draws that must not depend on
how samples are batched derive their own seed from the run's seed and a key with
:func:`derive_seed`.
"""

from __future__ import annotations

import zlib

import torch

__all__ = ["DEFAULT_SEED", "derive_seed", "make_generator"]

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
