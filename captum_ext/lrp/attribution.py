"""``LRP`` and ``LayerLRP``: Captum's classes with rule sets, canonizers and a one-pass backward.

Both subclass their Captum namesakes, so they fit every Captum tool (``NoiseTunnel``, metrics,
visualisation), and both resolve the rule set on every call: repeated calls and
``NoiseTunnel``'s batches use the same rules, and rules a user set as ``module.rule`` win over
the rule set and are never deleted (unlike captum #1059). The model is explained with one
forward pass and one backward pass: each layer's forward hook routes its output through the
rule's relevance function (see :mod:`captum_ext.lrp.rules`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from captum._utils.common import (
    _format_additional_forward_args,
    _format_output,
    _format_tensor_into_tuples,
    _is_tuple,
    _select_targets,
)
from captum.attr import LRP as CaptumLRP
from captum.attr import LayerLRP as CaptumLayerLRP
from captum.log import log_usage
from torch import nn

from captum_ext.core.guard import ModelGuard
from captum_ext.core.isolation import (
    counterpart,
    isolated,
    isolated_call,
    model_view,
    original_module,
)
from captum_ext.core.modified_backward import register_modified_backward
from captum_ext.core.reprs import ReprFromInit
from captum_ext.core.validation import (
    check_finite,
    check_result_finite,
    check_targets,
    resolve_layer,
)
from captum_ext.lrp.canonizers import (
    Canonizer,
    NoInplaceActivations,
    canonized,
    default_canonizers,
)
from captum_ext.lrp.captum_rules import from_captum_rule
from captum_ext.lrp.glue import guarded_forward
from captum_ext.lrp.rule_sets import CaptumDefault, RuleSet
from captum_ext.lrp.rules import GradientRule, LRPRule
from captum_ext.lrp.tracing import (
    GraphMergeBatchNorm,
    TracingError,
    check_conservation,
    resolve_rules,
    trace,
)

__all__ = ["LRP", "LayerLRP"]


class LRP(ReprFromInit, CaptumLRP):
    """Layer-wise relevance propagation with rule sets and canonizers (Bach et al. 2015).

    Parameters
    ----------
    model : nn.Module
        The model to explain; it is left bit-for-bit unchanged.
    rule_set : RuleSet, optional
        Which rule each layer gets. The default, :class:`~captum_ext.lrp.CaptumDefault`, is
        Captum's (LRP-ε with ε = 1e-9, no rule for activations other than ReLU and Tanh): with
        nothing configured the relevance equals :class:`captum.attr.LRP`'s.
        The recommended set for image classifiers is one argument away:
        ``LRP(model, rule_set=EpsilonPlus())`` (or ``EpsilonGammaBox(low, high)``). A rule stored
        as ``module.rule`` overrides the rule set for that module; it may be one of ours or one
        of Captum's (``EpsilonRule``, ``GammaRule``, ``Alpha1_Beta0_Rule``, ``IdentityRule``),
        translated by :func:`captum_ext.lrp.captum_rules.from_captum_rule` so that it gives
        Captum's numbers.
    canonizers : sequence of Canonizer, optional
        Applied for the duration of each call and undone afterwards; given, they select the
        module-hook path (``[]``: hooks without canonizers). Default (``None``): automatic
        canonization (:mod:`captum_ext.lrp.tracing`): the model is traced with torch.fx, every
        functional operation relevance flows through gets a rule, BatchNorms following a
        linear layer are folded; an operation without a rule is refused before computing.
    check_conservation : bool or float
        Raise if ``Σ relevance`` differs from ``f_c(x)`` by more than this relative tolerance
        (``True``: 1e-6 in float64, 1e-4 otherwise). Only meaningful for conservative rules.

    Notes
    -----
    Like Captum, the relevance of the target logit starts as the logit itself, so attributions
    sum to ``f_c(x)`` for conservative rules. Rules are listed in :mod:`captum_ext.lrp.rules`
    (Sixt et al., 2020, Sixt et al. 2020, analyses them).

    Examples
    --------
    >>> from captum_ext.lrp import LRP, EpsilonGammaBox
    >>> lrp = LRP(model, rule_set=EpsilonGammaBox(low=0.0, high=1.0))
    >>> relevance = lrp.attribute(images, target=labels)
    """

    def __init__(
        self,
        model: nn.Module,
        rule_set: RuleSet | None = None,
        canonizers: Sequence[Canonizer] | None = None,
        check_conservation: bool | float = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"LRP explains an nn.Module, got {type(model).__name__}.")
        if rule_set is not None and not isinstance(rule_set, RuleSet):
            raise TypeError(
                f"rule_set must be a captum_ext.lrp.RuleSet (e.g. EpsilonPlus()), got "
                f"{type(rule_set).__name__}."
            )
        # Captum's LRP.__init__ explicitly: in LayerLRP's MRO super() would be Captum's LayerLRP.
        CaptumLRP.__init__(self, model)
        # Captum's defaults, so an unconfigured drop-in agrees with its parent.
        self.rule_set = CaptumDefault() if rule_set is None else rule_set
        self.canonizers = None if canonizers is None else list(canonizers)
        self.check_conservation = check_conservation

    def _rules(self, model: nn.Module | None = None) -> list[tuple[str, nn.Module, LRPRule]]:
        model = self.model if model is None else model
        # Read from the user's modules: a view (or the cached traced copy) holds the rules of
        # the moment it was made, and rules may have been set since.
        user_rules = {
            name: from_captum_rule(rule, module, name)
            for name, module in model.named_modules()
            if (rule := getattr(original_module(module), "rule", None)) is not None
        }
        return resolve_rules(self.rule_set, model, overrides=user_rules)

    @contextmanager
    def rules_installed(self, n_inputs: int | None = None) -> Iterator[nn.Module]:
        """Context yielding a private module whose forward carries the rules.

        By default the model is traced (:mod:`captum_ext.lrp.tracing`, cached per model) and
        every functional operation relevance flows through becomes a module with a rule; with
        ``canonizers=`` the model itself runs under module hooks, and tensor operations its
        forward applies outside the modules are checked (:mod:`captum_ext.lrp.glue`). Either
        way the rules, hooks and folded parameters live on a private view (see
        :mod:`captum_ext.core.isolation`): the user's model is never rewritten.

        ``n_inputs``: how many leading forward arguments are attributed (default: all).
        If the forward cannot be traced, the module-hook path runs with the glue guard, which
        refuses by name any functional operation relevance would reach.
        """
        with isolated(self) as twin, twin._rules_on_view(n_inputs) as model:
            yield model

    def _traced(self, n_inputs: int | None) -> Any:
        if self.canonizers is not None:
            return None
        try:
            traced = trace(self.model, n_inputs)
        except TracingError:
            # Python control flow etc.: the module hooks still cover every module, and the glue
            # guard refuses by name any functional operation relevance would reach.
            return None
        return traced

    @contextmanager
    def _rules_on_view(self, n_inputs: int | None) -> Iterator[nn.Module]:
        traced = self._traced(n_inputs)
        if traced is not None:
            # The traced graph is cached per user model; each call gets its own view of it.
            model, _ = model_view(traced)
            canonizers = [NoInplaceActivations(), GraphMergeBatchNorm(traced.lrp_bn_pairs)]
        else:
            # Fresh copies: a canonizer holds the state of one application, and one LRP
            # instance may serve several threads at once.
            model = self.model
            canonizers = (
                default_canonizers()
                if self.canonizers is None
                else [copy.deepcopy(c) for c in self.canonizers]
            )
        handles = []
        with canonized(model, canonizers) as model:
            had_forward = "forward" in vars(model)
            old_forward = vars(model).get("forward")
            try:
                resolved = self._rules(model)
                if traced is None:
                    covered = {name: module for name, module, _ in resolved}
                    model.forward = guarded_forward(model, covered, type(self).__name__)
                for _, module, rule in resolved:
                    if not isinstance(rule, GradientRule):
                        # Prepended, so the caller's own forward hooks (also ones registered
                        # before this context) see the rule-routed output and can read its
                        # relevance as the gradient.
                        hook = module.register_forward_hook(rule.forward_hook, prepend=True)
                        handles.append(hook)
                yield model
            finally:
                for handle in handles:
                    handle.remove()
                if had_forward:
                    model.forward = old_forward
                else:
                    vars(model).pop("forward", None)

    def _relevance_of(
        self,
        inputs: Any,
        target: Any,
        additional_forward_args: Any,
        capture: Any = None,
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, Any]:
        input_tuple = _format_tensor_into_tuples(inputs)
        check_finite(input_tuple)
        extra = _format_additional_forward_args(additional_forward_args) or ()
        with (
            ModelGuard(self.model),
            self.rules_installed(len(input_tuple)) as model,
            torch.enable_grad(),
        ):
            # Integer inputs (token ids) cannot carry relevance; LayerLRP reads it at a layer.
            leaves = tuple(
                x.detach().requires_grad_() if x.is_floating_point() else x for x in input_tuple
            )
            captured = capture(model) if capture is not None else None
            try:
                output = model(*leaves, *extra)
            finally:
                if captured is not None:
                    captured.remove()
            if captured is not None and not captured.tensors:
                raise ValueError(
                    "LayerLRP: the layer was not called in the forward pass LRP runs. On the "
                    "automatic (traced) path only leaf layers are called as modules: pick a "
                    "leaf layer, or pass canonizers=[...] to use the model itself."
                )
            check_targets(
                target,
                output,
                input_tuple[0].shape[0],
                allow_none=False,
                method=type(self).__name__,
            )
            selected = _select_targets(output, target)
            sources = leaves if captured is None else captured.tensors
            # Relevance starts as the target score itself (Captum's convention).
            grads = torch.autograd.grad(
                selected, sources, grad_outputs=selected.detach(), allow_unused=True
            )
        grads = tuple(torch.zeros_like(s) if g is None else g for s, g in zip(sources, grads))
        check_result_finite(
            grads,
            type(self).__name__,
            "try float64, larger stabilisers (the rule set's epsilon/stabilizer) or check the "
            "model for overflowing activations",
        )
        if self.check_conservation is not False:
            check_conservation(grads, selected.detach(), self.check_conservation)
        return grads, selected.detach(), captured

    @log_usage()
    @isolated_call
    def attribute(
        self,
        inputs: torch.Tensor | tuple[torch.Tensor, ...],
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        verbose: bool = False,
    ) -> Any:
        """Relevance of every input feature for ``target``.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            Model inputs (batch first); never modified.
        target : int, tuple, Tensor or list, optional
            Output index per Captum's convention.
        additional_forward_args : Any, optional
            Extra forward arguments (not attributed).
        return_convergence_delta : bool
            Also return ``f_c(x) − Σ relevance`` per sample.
        verbose : bool
            Print each layer's rule.

        Returns
        -------
        Tensor or tuple of Tensor (and the delta)
            Relevance of the same shape(s) as ``inputs``; sums to ``f_c(x)`` for conservative rules.
        """
        if verbose:
            for name, _, rule in self._rules():
                print(f"{name}: {rule!r}")
        relevance, output, _ = self._relevance_of(inputs, target, additional_forward_args)
        result = _format_output(_is_tuple(inputs), relevance)
        if return_convergence_delta:
            return result, self.compute_convergence_delta(relevance, output)
        return result


class _Capture:
    """Forward hooks that keep the (rule-routed) output or a private alias of a layer's input."""

    def __init__(self, layer: nn.Module, to_input: bool) -> None:
        self.tensors: tuple[torch.Tensor, ...] = ()
        if to_input:
            self.handle = layer.register_forward_pre_hook(self._pre)
        else:
            # Registered last, so it sees the output after the layer's own rule hook.
            self.handle = layer.register_forward_hook(self._post)

    def _pre(self, module: nn.Module, args: tuple) -> tuple:
        if self.tensors:
            raise RuntimeError("LayerLRP: the layer is used more than once in the forward pass.")
        # An alias per call: its gradient is the relevance this layer alone hands down.
        self.tensors = tuple(a.view_as(a) for a in args)
        return self.tensors

    def _post(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if self.tensors:
            raise RuntimeError("LayerLRP: the layer is used more than once in the forward pass.")
        self.tensors = (output,)

    def remove(self) -> None:
        self.handle.remove()


class _Captures:
    """One :class:`_Capture` per layer; ``tensors`` concatenates theirs for a single backward."""

    def __init__(self, layers: list[nn.Module], to_input: bool) -> None:
        self.parts = []
        try:
            for layer in layers:
                self.parts.append(_Capture(layer, to_input))
        except BaseException:
            self.remove()
            raise

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        missing = [i for i, part in enumerate(self.parts) if not part.tensors]
        if missing:
            raise RuntimeError(
                f"LayerLRP: layer(s) at position {missing} of the layer list were not used in "
                "the forward pass."
            )
        return tuple(t for part in self.parts for t in part.tensors)

    def split(self, values: tuple[torch.Tensor, ...]) -> list[tuple[torch.Tensor, ...]]:
        chunks, start = [], 0
        for part in self.parts:
            chunks.append(tuple(values[start : start + len(part.tensors)]))
            start += len(part.tensors)
        return chunks

    def remove(self) -> None:
        for part in self.parts:
            part.remove()


class LayerLRP(LRP, CaptumLayerLRP):
    """Relevance at a layer's output (or input) under a rule set; see :class:`LRP`.

    Parameters
    ----------
    model : nn.Module
        The model.
    layer : nn.Module, str, or a list of them
        The layer whose output (or input) relevance is returned, given as the module or its name
        in ``model.named_modules()``; or a list of layers (one backward pass serves them all;
        the results come as a list, as in Captum).
    rule_set, canonizers
        As in :class:`LRP`.
    """

    _integer_inputs_ok = True  # token ids into an embedding: relevance is read above them

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module | str | list[nn.Module | str],
        rule_set: RuleSet | None = None,
        canonizers: Sequence[Canonizer] | None = None,
        check_conservation: bool | float = False,
    ) -> None:
        if isinstance(layer, list) and not layer:
            raise TypeError(
                "layer must be an nn.Module of the model (or its name) or a non-empty list of "
                "nn.Module."
            )
        LRP.__init__(self, model, rule_set, canonizers, check_conservation)
        self.layer = resolve_layer(model, layer, type(self).__name__)
        self.device_ids = None

    @log_usage()
    @isolated_call
    def attribute(
        self,
        inputs: torch.Tensor | tuple[torch.Tensor, ...],
        target: Any = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        verbose: bool = False,
    ) -> Any:
        """Relevance of ``layer``'s output (``attribute_to_layer_input=False``) or input.

        Returns a tensor (a tuple for a multi-input layer's input), plus the convergence delta
        ``f_c(x) − Σ relevance`` when ``return_convergence_delta``. For a list of layers both are
        lists with one entry per layer.
        """
        layers = self.layer if isinstance(self.layer, list) else [self.layer]
        relevance, output, captured = self._relevance_of(
            inputs,
            target,
            additional_forward_args,
            capture=lambda model: _Captures(
                [counterpart(model, layer) for layer in layers], attribute_to_layer_input
            ),
        )
        results, deltas = [], []
        for chunk in captured.split(relevance):
            results.append(chunk[0] if len(chunk) == 1 else chunk)
            if return_convergence_delta:
                deltas.append(self.compute_convergence_delta(chunk, output))
        if not isinstance(self.layer, list):
            results, deltas = results[0], (deltas[0] if deltas else None)
        if return_convergence_delta:
            return results, deltas
        return results


@register_modified_backward(LRP)
@contextmanager
def _rule_set_backward(method: LRP) -> Iterator[Any]:
    # The same hooks attribute() uses, left in place for the caller's own backward passes.
    with method.rules_installed() as model:

        def forward(*inputs: Any, **kwargs: Any) -> Any:
            # The rules' backward only exists where autograd records a graph: inputs that do not
            # require grad are replaced by copies that do (the caller's tensors stay untouched).
            inputs = tuple(
                x.detach().requires_grad_()
                if isinstance(x, torch.Tensor) and x.is_floating_point() and not x.requires_grad
                else x
                for x in inputs
            )
            with torch.enable_grad():
                return model(*inputs, **kwargs)

        forward.module = model  # type: ignore[attr-defined]
        yield forward
