"""Structured pruning of PyTorch modules before export.

The same idea as :mod:`modelport.optimize.prune` on the framework's own objects: in a
sequential stack, every Linear/Conv layer followed (through activations, dropout,
batch norm, pooling or a Flatten) by another Linear/Conv layer loses the fraction
``sparsity`` of its output channels, and the next layer the matching inputs. The
result is a genuinely smaller ``nn.Sequential`` that trains, fine-tunes and exports
like any other module. With sample ``data``, importance is measured on activations
and Linear consumers are refitted by least squares to their original outputs.

Example:
    >>> small = prune_module(mlp, 0.5, data=torch.from_numpy(X_cal))   # doctest: +SKIP
    >>> small[0].out_features                                           # doctest: +SKIP
    64
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument, MissingDependency
from modelport.optimize.prune import keep_count, least_squares

_PASS_THROUGH = (
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "GELU",
    "SiLU",
    "Tanh",
    "Sigmoid",
    "ELU",
    "SELU",
    "Mish",
    "Hardswish",
    "Hardsigmoid",
    "Softplus",
    "Identity",
    "Dropout",
    "Dropout1d",
    "Dropout2d",
)
_POOLS = ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d",
          "AdaptiveAvgPool2d", "AdaptiveMaxPool2d")  # fmt: skip
_NORMS = ("BatchNorm1d", "BatchNorm2d")


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise MissingDependency.for_extra("torch", "torch", "Pruning PyTorch modules") from e
    return torch


def flatten_sequential(module: Any) -> list[Any]:
    """The leaf layers of nested ``nn.Sequential`` containers, in order."""
    torch = _torch()
    if isinstance(module, torch.nn.Sequential):
        return [leaf for child in module for leaf in flatten_sequential(child)]
    if len(list(module.children())) and not isinstance(module, torch.nn.Sequential):
        kinds = {type(c).__name__ for c in module.children()}
        if not kinds <= {*_PASS_THROUGH, *_POOLS, *_NORMS, "Linear", "Conv1d", "Conv2d"}:
            raise InvalidArgument(
                f"{type(module).__name__} is not a sequential stack; prune its exported ONNX "
                "graph with Prune(sparsity, structured=True) instead"
            )
    return [module]


@dataclass
class _Chain:
    producer: int
    consumer: int
    norms: list[int]
    group: int


def _is_weight_layer(layer: Any) -> bool:
    name = type(layer).__name__
    return name == "Linear" or (name in ("Conv1d", "Conv2d") and layer.groups == 1)


def _chains(layers: list[Any], shapes: list[tuple[int, ...]]) -> list[_Chain]:
    out = []
    for i, layer in enumerate(layers):
        if not _is_weight_layer(layer):
            continue
        conv = type(layer).__name__ != "Linear"
        norms: list[int] = []
        group = 1
        for j in range(i + 1, len(layers)):
            kind = type(layers[j]).__name__
            if _is_weight_layer(layers[j]):
                if group > 1 and kind != "Linear":
                    break
                if kind == "Linear" and conv and group == 1:
                    break  # a Linear reading a feature map without Flatten
                out.append(_Chain(i, j, norms, group))
                break
            if kind in _PASS_THROUGH:
                continue
            if kind in _POOLS and conv and group == 1:
                continue
            if kind in _NORMS and group == 1:
                norms.append(j)
                continue
            if kind == "Flatten" and conv and group == 1 and layers[j].start_dim == 1:
                group = int(np.prod(shapes[j][2:]))
                continue
            break
    return out


def _run_to(layers: list[Any], stop: int, x: Any) -> Any:
    for layer in layers[:stop]:
        x = layer(x)
    return x


def _take(param: Any, keep: Any, dim: int) -> Any:
    torch = _torch()
    return torch.nn.Parameter(param.detach().index_select(dim, keep).clone())


def prune_module(module: Any, sparsity: float, *, example: Any = None, data: Any = None) -> Any:
    """A copy of a sequential ``module`` with ``sparsity`` of its hidden channels removed.

    ``example`` (one input batch) is needed for shapes when there is no ``data``.
    """
    torch = _torch()
    import copy

    if not 0.0 < sparsity < 1.0:
        raise InvalidArgument(f"sparsity {sparsity}: must be between 0 and 1")
    probe = data if data is not None else example
    if probe is None:
        raise InvalidArgument("prune_module needs an example input or sample data")
    layers = [copy.deepcopy(m) for m in flatten_sequential(module)]
    original = [copy.deepcopy(m) for m in layers]
    was_training = module.training
    for m in (*layers, *original):
        m.eval()
    with torch.no_grad():
        shapes, x = [], probe
        for layer in layers:
            shapes.append(tuple(x.shape))
            x = layer(x)
        chains = _chains(layers, shapes)
        if not chains:
            raise InvalidArgument("no prunable Linear/Conv pair in this module")
        for chain in chains:
            prod, cons = layers[chain.producer], layers[chain.consumer]
            channels = prod.weight.shape[0]
            w_cons = cons.weight.detach()
            cols = w_cons.transpose(0, 1).reshape(channels, chain.group, -1)
            weight_norm = cols.pow(2).sum(dim=(1, 2)).sqrt()
            act = _run_to(layers, chain.consumer, data) if data is not None else None
            if act is not None:
                a = act.abs()
                if chain.group > 1 or a.dim() == 2:
                    mean = a.reshape(len(a), channels, chain.group).mean(dim=(0, 2))
                else:
                    mean = a.transpose(0, 1).reshape(channels, -1).mean(dim=1)
                scores = mean * weight_norm
            else:
                scores = prod.weight.detach().reshape(channels, -1).norm(dim=1) * weight_norm
            keep = torch.argsort(scores, descending=True, stable=True)
            keep = torch.sort(keep[: keep_count(channels, sparsity)]).values
            rows = (keep[:, None] * chain.group + torch.arange(chain.group)[None, :]).reshape(-1)
            prod.weight = _take(prod.weight, keep, 0)
            if prod.bias is not None:
                prod.bias = _take(prod.bias, keep, 0)
            _resize(prod, out=len(keep))
            for n in chain.norms:
                _slice_norm(layers[n], keep)
            refit = None
            if act is not None and type(cons).__name__ == "Linear":
                before = _run_to(original, chain.consumer, data)
                x_new = act.reshape(len(act), -1).double().numpy()[:, rows.numpy()]
                target = before.reshape(len(before), -1).double() @ w_cons.double().T
                refit = least_squares(x_new, target.numpy(), with_bias=cons.bias is not None)
            if refit is not None:
                new_w, shift = refit
                cons.weight = torch.nn.Parameter(torch.from_numpy(new_w.T).to(w_cons.dtype))
                if shift is not None and cons.bias is not None:
                    bias = cons.bias.detach() + torch.from_numpy(shift).to(w_cons.dtype)
                    cons.bias = torch.nn.Parameter(bias)
            else:
                cons.weight = _take(cons.weight, rows, 1)
            _resize(cons, inp=len(rows))
    pruned = torch.nn.Sequential(*layers)
    pruned.train(was_training)
    return pruned


def _resize(layer: Any, *, out: int | None = None, inp: int | None = None) -> None:
    if type(layer).__name__ == "Linear":
        layer.out_features = out or layer.out_features
        layer.in_features = inp or layer.in_features
    else:
        layer.out_channels = out or layer.out_channels
        layer.in_channels = inp or layer.in_channels


def _slice_norm(norm: Any, keep: Any) -> None:
    norm.weight = _take(norm.weight, keep, 0)
    norm.bias = _take(norm.bias, keep, 0)
    norm.running_mean = norm.running_mean.index_select(0, keep).clone()
    norm.running_var = norm.running_var.index_select(0, keep).clone()
    norm.num_features = len(keep)
