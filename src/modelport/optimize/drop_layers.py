"""Dropping whole repeated blocks (transformer layers, residual blocks) from a graph.

Deep models repeat one block many times, and some of those blocks add little: removing
them shortens the model's critical path, which no weight-level pass can do.

How blocks are found, for any exported graph: walk the nodes that depend on the
inputs in graph order and note every *cut* — a point where exactly one tensor is
alive (everything after reads only that tensor). The nodes between two cuts form a
segment; a segment's signature is its operator sequence with the shapes of its
constants. The longest run of a repeated signature pattern (period *p* segments,
repeated *r* ≥ 2 times) gives the blocks, e.g. ``[attention, norm, feed-forward,
norm] × 4`` for a post-norm encoder. Each block maps a tensor to one of the same
shape, so removing it means wiring its input straight to its output.

Which blocks go is decided on the validation data, greedily: at each step every
remaining block is removed in turn, the metric measured, and the block whose removal
hurts least goes.

Example:
    >>> DropLayers(1).describe()
    'drop 1 block(s)'
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from modelport.core.errors import InvalidArgument
from modelport.optimize.measure import predict_all
from modelport.optimize.metrics import score
from modelport.optimize.onnx_model import GraphIndex, load_model, onnx_module, save_model
from modelport.optimize.passes import PassContext, PassResult
from modelport.runtimes.base import RuntimeOptions
from modelport.runtimes.onnx import OnnxRuntime


@dataclass(frozen=True)
class Block:
    """One repeated block: the graph positions of its nodes and its in/out tensors."""

    index: int
    nodes: tuple[int, ...]  # positions in graph.node
    input: str
    output: str


def _segments(model: Any) -> tuple[list[tuple[int, ...]], list[str], list[Any]]:
    """Dynamic-node segments between cuts, the tensor at each cut, segment signatures."""
    g = GraphIndex(model)
    dyn = set(g.inputs)
    order = []
    for pos, node in enumerate(model.graph.node):
        if any(t in dyn for t in node.input):
            dyn.update(node.output)
            order.append(pos)
    nodes = model.graph.node
    last_use: dict[str, int] = {}
    for i, pos in enumerate(order):
        for t in nodes[pos].input:
            if t in dyn:
                last_use[t] = i
    for t in g.outputs:
        last_use[t] = len(order)
    live = set(g.inputs)
    cuts: list[tuple[int, str]] = []
    for i, pos in enumerate(order):
        live = {t for t in live if last_use.get(t, -1) >= i}
        if len(live) == 1:
            cuts.append((i, next(iter(live))))
        live |= {o for o in nodes[pos].output if o in last_use}
    segments, tensors, signatures = [], [], []
    for (start, tensor), (stop, _) in itertools.pairwise(cuts):
        positions = tuple(order[start:stop])
        segments.append(positions)
        tensors.append(tensor)
        signatures.append(
            tuple(
                (
                    nodes[p].op_type,
                    tuple(
                        None if (c := g.const(t)) is None else c.shape
                        for t in nodes[p].input
                        if t not in dyn
                    ),
                )
                for p in positions
            )
        )
    tensors.append(cuts[-1][1] if cuts else "")
    return segments, tensors, signatures


def _longest_repeat(signatures: Sequence[Any]) -> tuple[int, int, int] | None:
    """(start, period, repeats) of the longest repeated run, preferring short periods."""
    best: tuple[int, int, int] | None = None
    n = len(signatures)
    for period in range(1, n // 2 + 1):
        for start in range(n - 2 * period + 1):
            pattern = signatures[start : start + period]
            reps = 1
            while signatures[start + reps * period : start + (reps + 1) * period] == pattern:
                reps += 1
            if reps >= 2 and (best is None or period * reps > best[1] * best[2]):
                best = (start, period, reps)
    return best


def find_blocks(model: Any) -> list[Block]:
    """The repeated blocks of ``model`` (empty when nothing repeats).

    Example:
        >>> len(find_blocks(load_model(Path("encoder.onnx"))))   # doctest: +SKIP
        4
    """
    segments, tensors, signatures = _segments(model)
    found = _longest_repeat(signatures)
    if found is None:
        return []
    start, period, reps = found
    blocks = []
    for r in range(reps):
        first = start + r * period
        positions = tuple(p for seg in segments[first : first + period] for p in seg)
        blocks.append(Block(r, positions, tensors[first], tensors[first + period]))
    return blocks


def remove_blocks(model: Any, blocks: Sequence[Block]) -> Any:
    """A copy of ``model`` without ``blocks`` (each one's input wired to its output)."""
    onnx = onnx_module()
    out = onnx.ModelProto()
    out.CopyFrom(model)
    drop = {p for b in blocks for p in b.nodes}
    kept = [n for i, n in enumerate(out.graph.node) if i not in drop]
    del out.graph.node[:]
    out.graph.node.extend(kept)
    # Adjacent dropped blocks chain: follow the renames back to the first kept tensor.
    rename = {b.output: b.input for b in blocks}

    def resolve(t: str) -> str:
        while t in rename:
            t = rename[t]
        return t

    for node in out.graph.node:
        for i, t in enumerate(node.input):
            node.input[i] = resolve(t)
    for o in out.graph.output:
        if resolve(o.name) != o.name:
            out.graph.node.append(
                onnx.helper.make_node("Identity", [resolve(o.name)], [o.name], name=f"{o.name}_id")
            )
    GraphIndex(out).remove_unused()
    return out


def _evaluate(model: Any, ctx: PassContext) -> float:
    rt = OnnxRuntime(model.SerializeToString(), RuntimeOptions())
    try:
        outputs = predict_all(rt, ctx.validation)
    finally:
        rt.close()
    return score(ctx.metric, outputs, ctx.reference, ctx.validation.labels)


@dataclass(frozen=True)
class DropLayers:
    """Remove the ``count`` least important repeated blocks (judged on validation data)."""

    count: int
    name: ClassVar[str] = "drop_layers"

    def __post_init__(self) -> None:
        if self.count < 1:
            raise InvalidArgument(f"--drop-layers {self.count}: give at least 1")

    def describe(self) -> str:
        return f"drop {self.count} block(s)"

    def apply(self, src: Path, ctx: PassContext) -> PassResult:
        model = load_model(src)
        blocks = find_blocks(model)
        if len(blocks) <= self.count:
            raise InvalidArgument(
                f"--drop-layers {self.count}: the model has {len(blocks)} repeated block(s); "
                "at least one must stay"
                if blocks
                else "--drop-layers: no repeated blocks (like transformer layers) in this model"
            )
        dropped: list[Block] = []
        trail = []
        for step in range(self.count):
            remaining = [b for b in blocks if b not in dropped]
            scores = {}
            for i, b in enumerate(remaining, 1):
                ctx.progress(f"drop step {step + 1}: trying block {b.index} ({i}/{len(remaining)})")
                scores[b.index] = _evaluate(remove_blocks(model, [*dropped, b]), ctx)
            sign = 1.0 if ctx.metric.higher_is_better else -1.0
            best = max(remaining, key=lambda b: sign * scores[b.index])
            dropped.append(best)
            trail.append(
                {
                    "dropped": best.index,
                    ctx.metric.name: round(scores[best.index], 6),
                    "candidates": {str(k): round(v, 6) for k, v in scores.items()},
                }
            )
        result = remove_blocks(model, dropped)
        out = save_model(result, ctx.new_path(f"drop-{self.count}"))
        details = {
            "blocks_found": len(blocks),
            "nodes_per_block": int(np.mean([len(b.nodes) for b in blocks])),
            "dropped_blocks": sorted(b.index for b in dropped),
            "steps": trail,
        }
        return PassResult(out, details)
