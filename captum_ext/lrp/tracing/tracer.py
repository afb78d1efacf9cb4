"""The torch.fx tracer: source lines, hook boundaries of traced-through modules, and
nn.MultiheadAttention / the TransformerEncoder stack re-expressed with traceable operations."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from captum_ext.core.isolation import original_module
from captum_ext.lrp.tracing.ops import _SHAPE_FUNCS, Routing, TracingError


class _InProjection(nn.Linear):
    """The q/k/v input projection of an ``nn.MultiheadAttention`` as a Linear (shared weight).

    ``weight`` and ``bias`` are views of the attention module's packed parameters, read on every
    call, so nothing is copied and the rules of linear layers apply unchanged.
    """

    def __init__(self, attention: nn.MultiheadAttention, index: int) -> None:
        nn.Module.__init__(self)
        self._attention = (attention,)  # a tuple, so it is not registered as a child
        self.index = index

    @property
    def weight(self) -> torch.Tensor:  # type: ignore[override]
        att = self._attention[0]
        if att._qkv_same_embed_dim:
            return att.in_proj_weight.chunk(3)[self.index]
        return (att.q_proj_weight, att.k_proj_weight, att.v_proj_weight)[self.index]

    @property
    def bias(self) -> torch.Tensor | None:  # type: ignore[override]
        att = self._attention[0]
        return None if att.in_proj_bias is None else att.in_proj_bias.chunk(3)[self.index]

    @property
    def in_features(self) -> int:  # type: ignore[override]
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:  # type: ignore[override]
        return self.weight.shape[0]


def _additive_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A boolean (True = masked) or additive attention mask as an additive float mask."""
    if mask.dtype == torch.bool:
        return torch.zeros_like(like).masked_fill(mask, float("-inf"))
    return mask.to(like.dtype)


fx.wrap("_additive_mask")
_SHAPE_FUNCS.add(_additive_mask)


class HookBoundary(Routing):
    """Entry or exit of a traced-through module: runs that module's forward (pre-)hooks.

    Traced-through modules are never called, so hooks users (and ``LayerLRP``) register on them
    run here, on the tensors that flow through the traced graph.
    """

    def __init__(self, module: nn.Module, exit: bool, n_inputs: int, source: str) -> None:
        super().__init__(
            None, ((), {}), range(n_inputs), op=f"{type(module).__name__} hooks", source=source
        )
        self._module = (module,)  # a tuple, so it is not registered as a child
        self.exit = exit
        self.path = ""  # the traced-through module's name in the user's model (tracer sets it)

    def forward(self, *values: Any) -> Any:
        # The user's module's hooks as they are now (the graph is cached across calls).
        module = original_module(self._module[0])
        if self.exit:
            output, args = values[0], values[1:]
            for hook_id, hook in list(module._forward_hooks.items()):
                if hook_id in module._forward_hooks_with_kwargs:
                    result = hook(module, args, {}, output)
                else:
                    result = hook(module, args, output)
                if result is not None:
                    output = result
            return output
        args = values
        for hook_id, hook in list(module._forward_pre_hooks.items()):
            if hook_id in module._forward_pre_hooks_with_kwargs:
                result = hook(module, args, {})
                result = None if result is None else result[0]
            else:
                result = hook(module, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        return args[0] if len(args) == 1 else args


class _LRPTracer(fx.Tracer):
    """fx tracer recording source lines and re-expressing fused attention with plain ops."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True
        self.extra_modules: dict[nn.Module, str] = {}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, _InProjection):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def path_of_module(self, mod: nn.Module) -> str:
        if mod in self.extra_modules:
            return self.extra_modules[mod]
        return super().path_of_module(mod)

    def call_module(self, m, forward, args, kwargs):
        if isinstance(m, nn.MultiheadAttention):
            return self._attention(m, *args, **kwargs)
        if isinstance(m, nn.TransformerEncoderLayer):
            return self._encoder_layer(m, *args, **kwargs)
        if isinstance(m, nn.TransformerEncoder):
            return self._encoder(m, *args, **kwargs)
        if m in self.extra_modules or self.is_leaf_module(m, self.path_of_module(m)):
            return super().call_module(m, forward, args, kwargs)
        # A traced-through module: its hooks run at boundary nodes (see HookBoundary).
        inputs = tuple(args)
        hookable = bool(inputs) and not kwargs and all(isinstance(a, fx.Proxy) for a in inputs)
        if hookable:
            entered = self._boundary(m, False, inputs)
            args = (entered,) if len(inputs) == 1 else tuple(entered[i] for i in range(len(args)))
        # m.forward, not the module call: the module's own hooks run at the boundaries instead.
        out = super().call_module(m, m.forward, args, kwargs)
        if hookable and isinstance(out, fx.Proxy):
            out = self._boundary(m, True, (out, *args))
        return out

    def _boundary(self, m: nn.Module, exit: bool, values: tuple) -> fx.Proxy:
        path = self.path_of_module(m).replace(".", "_") or "root"
        name = f"fx.{'exit' if exit else 'enter'}_{path}"
        taken = set(self.extra_modules.values())
        base, k = name, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        boundary = HookBoundary(m, exit, len(values), source=path)
        boundary.path = self.path_of_module(m)
        self.extra_modules[boundary] = name
        return self.create_proxy("call_module", name, values, {})

    def _projection(self, attention: nn.MultiheadAttention, index: int) -> nn.Module:
        path = super().path_of_module(attention)
        name = f"{path}.{'qkv'[index]}_proj" if path else f"{'qkv'[index]}_proj"
        for module, known in self.extra_modules.items():
            if known == name:
                return module
        module = _InProjection(attention, index)
        self.extra_modules[module] = name
        return module

    def _attention(
        self,
        m: nn.MultiheadAttention,
        query,
        key,
        value,
        key_padding_mask=None,
        need_weights=True,
        attn_mask=None,
        average_attn_weights=True,
        is_causal=False,
    ):
        if m.bias_k is not None or m.add_zero_attn:
            raise TracingError(
                "LRP's traceable MultiheadAttention supports neither add_bias_kv nor add_zero_attn."
            )
        if is_causal and attn_mask is None:
            raise TracingError(
                "MultiheadAttention(is_causal=True) without attn_mask: pass the causal mask."
            )
        if not m.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        heads, head_dim = m.num_heads, m.head_dim
        q = self._projection(m, 0)(query).unflatten(-1, (heads, head_dim)).transpose(1, 2)
        k = self._projection(m, 1)(key).unflatten(-1, (heads, head_dim)).transpose(1, 2)
        v = self._projection(m, 2)(value).unflatten(-1, (heads, head_dim)).transpose(1, 2)
        scores = (q * (1.0 / math.sqrt(head_dim))) @ k.transpose(-2, -1)
        if attn_mask is not None:
            scores = scores + _additive_mask(attn_mask, scores)
        if key_padding_mask is not None:
            scores = scores + _additive_mask(key_padding_mask[:, None, None, :], scores)
        weights = torch.softmax(scores, dim=-1)
        weights = F.dropout(weights, p=m.dropout, training=m.training)
        out = (weights @ v).transpose(1, 2).flatten(-2)
        out = m.out_proj(out)
        if not m.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, weights.mean(1) if average_attn_weights else weights

    def _encoder_layer(
        self,
        m: nn.TransformerEncoderLayer,
        src,
        src_mask=None,
        src_key_padding_mask=None,
        is_causal=False,
    ):
        x = src
        if m.norm_first:
            x = x + m._sa_block(m.norm1(x), src_mask, src_key_padding_mask, is_causal=is_causal)
            x = x + m._ff_block(m.norm2(x))
        else:
            x = m.norm1(x + m._sa_block(x, src_mask, src_key_padding_mask, is_causal=is_causal))
            x = m.norm2(x + m._ff_block(x))
        return x

    def _encoder(
        self, m: nn.TransformerEncoder, src, mask=None, src_key_padding_mask=None, is_causal=None
    ):
        out = src
        for layer in m.layers:
            out = layer(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask)
        return out if m.norm is None else m.norm(out)
