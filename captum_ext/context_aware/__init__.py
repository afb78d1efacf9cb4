"""The context-aware family: sparse first- and second-order saliency (Singla et al., 2019).

- :class:`CAFO`, :class:`CASO`: the attributions (batched FISTA, per-sample λ₁ search, smooth
  variants).
- :mod:`~captum_ext.context_aware.hessian`: input Hessians (double-backward products, the closed
  form of ReLU networks, the Krylov cache).
- :mod:`~captum_ext.context_aware.fista`: the batched proximal-gradient solver.
"""

from captum_ext.context_aware.cafo import CAFO, pair_normalize
from captum_ext.context_aware.caso import CASO

__all__ = ["CAFO", "CASO", "pair_normalize"]
