"""The noise family: attributions averaged over perturbed inputs or perturbed models.

- :class:`SeededNoiseTunnel`: Captum's ``NoiseTunnel`` with tensor σ and a private generator.
- :class:`AdaptGrad`: σ adapted to the distance from the input bounds (Zhou et al., 2025).
- :class:`NoiseGrad`, :class:`FusionGrad`: noise on the weights, optionally also on the inputs
  (Bykov et al., 2022).
- :func:`noise_std`, :func:`smoothgrad_std`, :func:`inherent_noise`: the noise statistics the
  methods and the ``InherentNoise`` metric share.
"""

from captum_ext.noise.adaptgrad import AdaptGrad
from captum_ext.noise.noisegrad import FusionGrad, NoiseGrad
from captum_ext.noise.statistics import (
    InherentNoise,
    broadcast_bounds,
    inherent_noise,
    kappa_value,
    noise_std,
    smoothgrad_std,
)
from captum_ext.noise.tunnel import SeededNoiseTunnel, TunnelOptions

__all__ = [
    "AdaptGrad",
    "FusionGrad",
    "InherentNoise",
    "NoiseGrad",
    "SeededNoiseTunnel",
    "TunnelOptions",
    "broadcast_bounds",
    "inherent_noise",
    "kappa_value",
    "noise_std",
    "smoothgrad_std",
]
