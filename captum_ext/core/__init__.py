"""The shared machinery every method in captum_ext stands on.

- :mod:`~captum_ext.core.modified_backward`: one context manager in which autograd follows an
  attribution method's propagation rules (LRP, RectGrad, Pattern rules, CSC all use it).
- :mod:`~captum_ext.core.guard`: snapshot and restore of a model's state (parameters, buffers,
  ``requires_grad`` flags, train/eval mode, hooks) so no method can harm the user's model.
- :mod:`~captum_ext.core.validation`: uniform, actionable errors for bad inputs.
- :mod:`~captum_ext.core.isolation`: the private eval-mode view every call runs on (thread
  safety, train-mode protection).
- :mod:`~captum_ext.core.randomness`: the seed policy and per-sample random draws.
- :mod:`~captum_ext.core.canonization`, :mod:`~captum_ext.core.gradients`,
  :mod:`~captum_ext.core.krylov`, :mod:`~captum_ext.core.modules`: canonizers, gradient hooks,
  Krylov machinery and model facts shared by several methods.
"""

from captum_ext.core.guard import ModelGuard, ModelSnapshot
from captum_ext.core.isolation import TrainModeWarning, isolated, model_view
from captum_ext.core.modified_backward import (
    has_modified_backward,
    modified_backward,
    register_modified_backward,
    supported_methods,
)

__all__ = [
    "ModelGuard",
    "ModelSnapshot",
    "has_modified_backward",
    "TrainModeWarning",
    "isolated",
    "model_view",
    "modified_backward",
    "register_modified_backward",
    "supported_methods",
]
