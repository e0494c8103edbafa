"""Pruning of ONNX models: magnitude (zeros) and structured (smaller layers).

``Prune(S)`` sets the fraction S of smallest-magnitude weights of every large
Gemm/MatMul/Conv weight to zero. The file and the compute stay the same size (dense
kernels multiply zeros too); it prepares a model for sparse runtimes or compression.

``Prune(S, structured=True)`` removes whole neurons and channels, so the layers really
shrink. It finds *chains* in the graph: a producer (Gemm, MatMul or Conv with constant
weights) whose output flows through channel-wise operators only (activations,
per-channel Add/Mul, BatchNormalization, pooling, Flatten) into exactly one consumer
(Gemm, MatMul or Conv). Dropping output channel *c* of the producer and input channel
*c* of the consumer (with every per-channel constant in between) keeps the graph
valid. In each chain the fraction S of least important channels goes; importance is
the mean absolute activation of a channel on sample data times the norm of the
consumer weights reading it (weights only when there is no data). The consumer's
weights are then refitted by least squares so that its output on the sample data
stays as close as possible to the original's (bias compensation for Conv
consumers) — the reconstruction step of channel pruning, which recovers most of the
accuracy without retraining. Transformer feed-forward blocks (MatMul → Add → Relu →
MatMul) are chains too; attention projections are not (they pass through Reshape).

Example:
    >>> Prune(0.5, structured=True).describe()
    'prune 50% structured'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.core.errors import InvalidArgument
from modelport.optimize.onnx_model import (
    GraphIndex,
    attribute,
    capture_tensors,
    load_model,
    onnx_module,
    save_model,
)
from modelport.optimize.passes import PassContext, PassResult

WEIGHT_OPS = ("Gemm", "MatMul", "Conv", "ConvTranspose")
UNARY_OPS = frozenset(
    {
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Sigmoid",
        "Tanh",
        "Elu",
        "Selu",
        "Celu",
        "Softplus",
        "Softsign",
        "HardSigmoid",
        "HardSwish",
        "Gelu",
        "Mish",
        "Identity",
        "Dropout",
        "Clip",
        "Abs",
        "Neg",
    }
)
ELEMENTWISE_BINARY = frozenset({"Add", "Sub", "Mul", "Div"})
SPATIAL_OPS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
#: Rows of sample data used for importance and reconstruction.
SAMPLE_ROWS = 512
#: Ridge term of the least-squares refit, relative to the mean activation energy.
RIDGE = 1e-3


def _check_sparsity(s: float) -> None:
    if not 0.0 < s < 1.0:
        raise InvalidArgument(f"--prune {s}: sparsity must be between 0 and 1 (e.g. 0.5)")


@dataclass
class Chain:
    """A producer → channel-wise ops → consumer path whose channels can be removed."""

    producer: Any
    out_axis: int  # axis of the producer weight that indexes output channels
    consumer: Any
    in_axis: int  # axis of the consumer weight that indexes input channels
    tensor: str  # the activation the consumer reads
    channels: int
    group: int = 1  # consumer weight rows per channel (Flatten of a feature map)
    params: list[tuple[Any, int, int]] = field(default_factory=list)  # (node, input, axis)


def _weight_axis_in(node: Any, g: GraphIndex, tensor: str) -> int | None:
    """Input-channel axis of ``node``'s weight when ``node`` reads ``tensor`` as its data."""
    if not node.input or node.input[0] != tensor or len(node.input) < 2:
        return None
    w = g.const(node.input[1])
    if w is None:
        return None
    if node.op_type == "Gemm" and w.ndim == 2 and not attribute(node, "transA", 0):
        return 1 if attribute(node, "transB", 0) else 0
    if node.op_type == "MatMul" and w.ndim == 2:
        return 0
    if node.op_type == "Conv" and attribute(node, "group", 1) == 1 and w.ndim >= 3:
        return 1
    return None


def _producer(node: Any, g: GraphIndex) -> tuple[int, int, list[tuple[Any, int, int]]] | None:
    """(out_axis, channels, own per-channel params) when ``node`` can lose outputs."""
    if node.op_type not in ("Gemm", "MatMul", "Conv") or len(node.input) < 2:
        return None
    w = g.const(node.input[1])
    if w is None:
        return None
    params: list[tuple[Any, int, int]] = []
    if node.op_type == "Conv":
        if attribute(node, "group", 1) != 1 or w.ndim < 3:
            return None
        axis = 0
    elif w.ndim != 2 or (node.op_type == "Gemm" and attribute(node, "transA", 0)):
        return None
    else:
        axis = 1 if not (node.op_type == "Gemm" and attribute(node, "transB", 0)) else 0
    channels = int(w.shape[axis])
    if len(node.input) > 2 and node.input[2]:
        bias = g.const(node.input[2])
        if bias is None:
            return None
        if bias.size > 1:
            bias_axis = 0 if node.op_type == "Conv" else bias.ndim - 1
            if bias.shape[bias_axis] != channels:
                return None
            params.append((node, 2, bias_axis))
    return axis, channels, params


def _channel_param_axis(c: np.ndarray, neg_axis: int, channels: int) -> int | None:
    """Axis of constant ``c`` along the channels when it broadcasts per channel."""
    if c.ndim < -neg_axis:
        return None
    axis = c.ndim + neg_axis
    if c.shape[axis] != channels or c.size != channels:
        return None
    return axis


def _follow(start: Any, g: GraphIndex, shapes: dict[str, list[int]]) -> Chain | None:
    found = _producer(start, g)
    if found is None:
        return None
    out_axis, channels, params = found
    w = g.require_const(start.input[1])
    neg_axis = -(w.ndim - 1) if start.op_type == "Conv" else -1
    group, cur = 1, start.output[0]
    while True:
        users = g.consumers(cur)
        if g.is_output(cur) or len(users) != 1:
            return None
        node = users[0]
        in_axis = _weight_axis_in(node, g, cur)
        if in_axis is not None:
            if group > 1 and node.op_type == "Conv":
                return None
            return Chain(start, out_axis, node, in_axis, cur, channels, group, params)
        op = node.op_type
        if op in UNARY_OPS or (op in SPATIAL_OPS and neg_axis < -1 and group == 1):
            if op == "PRelu" and (slope := g.const(node.input[1])) is not None and slope.size > 1:
                axis = _channel_param_axis(slope, neg_axis, channels)
                if axis is None:
                    return None
                params.append((node, 1, axis))
        elif op in ELEMENTWISE_BINARY and group == 1:
            idx = 1 if node.input[0] == cur else 0
            other = g.const(node.input[idx])
            if other is None or node.input[1 - idx] != cur:
                return None
            if other.size > 1:
                axis = _channel_param_axis(other, neg_axis, channels)
                if axis is None:
                    return None
                params.append((node, idx, axis))
        elif op == "BatchNormalization" and neg_axis < -1 and group == 1:
            if any(g.const(t) is None for t in node.input[1:5]):
                return None
            params.extend((node, i, 0) for i in range(1, 5))
        elif op == "Flatten" and neg_axis < -1 and group == 1:
            shape = shapes.get(cur)
            if attribute(node, "axis", 1) != 1 or not shape or any(d <= 0 for d in shape[2:]):
                return None
            group, neg_axis = int(np.prod(shape[2:])), -1
        else:
            return None
        cur = node.output[0]


def find_chains(model: Any) -> list[Chain]:
    """Every prunable producer → consumer chain of ``model``, in graph order.

    Example:
        >>> [(c.producer.op_type, c.channels) for c in find_chains(mlp)]  # doctest: +SKIP
        [('Gemm', 128), ('Gemm', 128)]
    """
    onnx = onnx_module()
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    shapes = {
        vi.name: [
            d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim
        ]
        for vi in inferred.graph.value_info
    }
    g = GraphIndex(model)
    chains = []
    for node in model.graph.node:
        chain = _follow(node, g, shapes)
        if chain is not None and chain.channels > 1:
            chains.append(chain)
    return chains


def _rows(x: np.ndarray, neg_axis: int) -> np.ndarray:
    """Move the channel axis last and flatten the rest: (samples, channels)."""
    return np.moveaxis(x, neg_axis, -1).reshape(-1, x.shape[neg_axis]).astype(np.float64)


def _importance(chain: Chain, g: GraphIndex, act: np.ndarray | None) -> np.ndarray:
    wc = g.require_const(chain.consumer.input[1])
    cols = np.moveaxis(wc, chain.in_axis, 0).reshape(chain.channels, chain.group, -1)
    out_norm = np.sqrt((cols.astype(np.float64) ** 2).sum(axis=(1, 2)))
    if act is not None:
        a = np.abs(act.astype(np.float64))
        if chain.group > 1:
            mean = a.reshape(len(a), chain.channels, chain.group).mean(axis=(0, 2))
        else:
            neg_axis = -(wc.ndim - 1) if chain.consumer.op_type == "Conv" else -1
            mean = _rows(a, neg_axis).mean(axis=0)
        return np.asarray(mean * out_norm)
    wp = g.require_const(chain.producer.input[1])
    in_norm = np.sqrt((np.moveaxis(wp, chain.out_axis, 0).reshape(chain.channels, -1) ** 2).sum(1))
    return np.asarray(in_norm * out_norm)


def _expand(keep: np.ndarray, group: int) -> np.ndarray:
    return (keep[:, None] * group + np.arange(group)[None, :]).reshape(-1)


def least_squares(
    x: np.ndarray, target: np.ndarray, *, with_bias: bool
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Ridge least squares ``x @ W (+ b) ≈ target``: (W, b or None), None if singular.

    Example:
        >>> x = np.random.default_rng(0).standard_normal((50, 3))
        >>> w, b = least_squares(x, x @ np.ones((3, 2)) + 1.0, with_bias=True)
        >>> bool(np.allclose(w, 1.0, atol=1e-2) and np.allclose(b, 1.0, atol=1e-2))
        True
    """
    xk = np.hstack([x, np.ones((len(x), 1))]) if with_bias else x
    gram = xk.T @ xk
    ridge = RIDGE * float(np.trace(gram)) / len(gram)
    try:
        sol = np.linalg.solve(gram + ridge * np.eye(len(gram)), xk.T @ target)
    except np.linalg.LinAlgError:
        return None
    return (sol[:-1], sol[-1]) if with_bias else (sol, None)


def _refit(
    chain: Chain, g: GraphIndex, act: np.ndarray, original: np.ndarray, keep: np.ndarray
) -> str | None:
    """Refit the consumer to its original output; None when it was left as it was.

    Gemm/MatMul consumers get least-squares weights on the kept inputs (``act``, from
    the model pruned so far) against the original model's output (from ``original``,
    the consumer's input in the unpruned model); the weight is stored already sliced.
    Conv consumers get bias compensation (the mean contribution of dropped channels).
    """
    node = chain.consumer
    wc = g.require_const(node.input[1])
    if node.op_type == "Conv":
        dropped = np.setdiff1d(np.arange(chain.channels), keep)
        if not len(dropped):
            return None
        means = _rows(act, -(wc.ndim - 1)).mean(axis=0)[dropped]
        kernels = wc[:, dropped].astype(np.float64)
        shift = kernels.sum(axis=tuple(range(2, wc.ndim))) @ means
        bias = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        new_bias = (np.zeros(wc.shape[0]) if bias is None else bias.astype(np.float64)) + shift
        if len(node.input) < 3:
            node.input.append("")
        g.set_input_const(node, 2, new_bias.astype(wc.dtype))
        return "bias-compensated"
    alpha, beta = attribute(node, "alpha", 1.0), attribute(node, "beta", 1.0)
    if node.op_type == "Gemm" and (alpha != 1.0 or beta != 1.0):
        return None
    w = wc.T if chain.in_axis == 1 else wc  # (in, out)
    x = act.reshape(-1, act.shape[-1]).astype(np.float64)
    x0 = original.reshape(-1, original.shape[-1]).astype(np.float64)
    if len(x) > 20000:
        pick = np.linspace(0, len(x) - 1, 20000).astype(np.int64)
        x, x0 = x[pick], x0[pick]
    rows = _expand(keep, chain.group)
    has_bias = node.op_type == "Gemm"
    fitted = least_squares(x[:, rows], x0 @ w.astype(np.float64), with_bias=has_bias)
    if fitted is None:
        return None
    new_w, shift = fitted
    g.set_input_const(node, 1, (new_w.T if chain.in_axis == 1 else new_w).astype(wc.dtype))
    if shift is not None:
        old = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if old is None or old.size == 1:
            bias = shift + (0.0 if old is None else float(old.reshape(-1)[0]))
        else:
            bias = old.astype(np.float64) + shift.reshape(old.shape)
        if len(node.input) < 3:
            node.input.append("")
        g.set_input_const(node, 2, np.asarray(bias, dtype=wc.dtype))
    return "refitted"


def _slice_chain(chain: Chain, g: GraphIndex, keep: np.ndarray, consumer_done: bool) -> None:
    node = chain.producer
    w = g.require_const(node.input[1])
    g.set_input_const(node, 1, np.take(w, keep, axis=chain.out_axis))
    for pnode, idx, axis in chain.params:
        value = g.require_const(pnode.input[idx])
        g.set_input_const(pnode, idx, np.take(value, keep, axis=axis))
    if consumer_done:
        return
    wc = g.require_const(chain.consumer.input[1])
    rows = _expand(keep, chain.group)
    g.set_input_const(chain.consumer, 1, np.take(wc, rows, axis=chain.in_axis))


@dataclass(frozen=True)
class Prune:
    """Magnitude pruning to ``sparsity``; ``structured`` removes whole channels instead.

    ``min_size``: weights with fewer elements are left alone by magnitude pruning.
    """

    sparsity: float
    structured: bool = False
    min_size: int = 256
    name: ClassVar[str] = "prune"

    def __post_init__(self) -> None:
        _check_sparsity(self.sparsity)

    def describe(self) -> str:
        kind = "structured" if self.structured else "magnitude"
        return f"prune {self.sparsity:.0%} {kind}"

    def apply(self, src: Path, ctx: PassContext) -> PassResult:
        return self._structured(src, ctx) if self.structured else self._magnitude(src, ctx)

    def _magnitude(self, src: Path, ctx: PassContext) -> PassResult:
        ctx.progress(f"zeroing the {self.sparsity:.0%} smallest weights")
        model = load_model(src)
        g = GraphIndex(model)
        done: dict[str, float] = {}
        for node in model.graph.node:
            if node.op_type not in WEIGHT_OPS or len(node.input) < 2:
                continue
            name = node.input[1]
            w = g.const(name)
            if name in done or w is None or w.size < self.min_size or w.dtype.kind != "f":
                continue
            k = int(self.sparsity * w.size)
            threshold = np.partition(np.abs(w).ravel(), k)[k] if k else 0.0
            pruned = np.where(np.abs(w) < threshold, 0, w).astype(w.dtype)
            for user in g.consumers(name):
                if len(user.input) > 1 and user.input[1] == name:
                    g.set_input_const(user, 1, pruned)
            done[name] = float(np.mean(pruned == 0))
        g.remove_unused()
        out = save_model(model, ctx.new_path(f"prune-{int(self.sparsity * 100)}"))
        notes = ["zeros only: size and speed stay the same (use --structured to shrink layers)"]
        if not done:
            notes = ["no Gemm/MatMul/Conv weight was large enough to prune"]
        details = {"weights_pruned": len(done), "sparsity": done}
        return PassResult(out, details, notes, changed=bool(done))

    def _structured(self, src: Path, ctx: PassContext) -> PassResult:
        model = load_model(src)
        chains = find_chains(model)
        if not chains:
            ops = {n.op_type for n in model.graph.node}
            quantized = any("Integer" in op or "Quant" in op for op in ops)
            hint = " (it is quantized: put --prune before --quantize)" if quantized else ""
            raise InvalidArgument(
                "structured pruning found no prunable layer chain (Gemm/MatMul/Conv → "
                f"channel-wise ops → Gemm/MatMul/Conv) in this model{hint}"
            )
        data = ctx.unlabelled_data
        notes = []
        if data is None:
            data = ctx.validation
            notes.append("importance and refit used the validation inputs (no --calibration-data)")
        sample = data.subset(0, SAMPLE_ROWS).batch_of(min(data.n, SAMPLE_ROWS))
        original = load_model(src)
        g = GraphIndex(model)
        layers = []
        for i, chain in enumerate(chains, 1):
            ctx.progress(f"pruning layer {i}/{len(chains)} ({chain.producer.op_type})")
            act = capture_tensors(model, [chain.tensor], sample)[chain.tensor]
            scores = _importance(chain, g, act)
            keep_n = keep_count(chain.channels, self.sparsity)
            keep = np.sort(np.argsort(-scores, kind="stable")[:keep_n])
            before = capture_tensors(original, [chain.tensor], sample)[chain.tensor]
            refit = _refit(chain, g, act, before, keep)
            _slice_chain(chain, g, keep, consumer_done=refit == "refitted")
            layers.append(
                {
                    "producer": chain.producer.name or chain.producer.op_type,
                    "consumer": chain.consumer.name or chain.consumer.op_type,
                    "channels": [chain.channels, int(keep_n)],
                    "refit": refit or "none",
                }
            )
        g.remove_unused()
        out = save_model(model, ctx.new_path(f"prune-{int(self.sparsity * 100)}-structured"))
        removed = sum(c["channels"][0] - c["channels"][1] for c in layers)
        return PassResult(out, {"layers": layers, "channels_removed": removed}, notes)


def keep_count(channels: int, sparsity: float) -> int:
    """Channels kept out of ``channels`` at ``sparsity`` (at least one).

    Example:
        >>> keep_count(128, 0.5)
        64
    """
    return max(1, math.floor(channels * (1.0 - sparsity) + 0.5))
