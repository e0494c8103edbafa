"""Offline graph optimization: onnxruntime's fusions, saved as a new model.

onnxruntime rewrites every graph when it loads it (constant folding, removal of
redundant nodes, operator fusions). Doing it once, offline, makes loading faster and
lets the optimized graph be versioned, inspected and measured like any other.
``extended`` fusions may use onnxruntime's own operators (``com.microsoft`` domain):
such a model runs on onnxruntime only. ``all`` adds layout changes tuned to this
machine's CPU, which onnxruntime advises against saving for other machines.

Example:
    >>> GraphOptimize("extended").describe()
    'graph extended'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from modelport.core.errors import InvalidArgument, InvalidModel
from modelport.optimize.measure import describe
from modelport.optimize.onnx_model import load_model
from modelport.optimize.passes import PassContext, PassResult

GRAPH_LEVELS = ("basic", "extended", "all")


@dataclass(frozen=True)
class GraphOptimize:
    """Apply onnxruntime's graph optimizations at ``level`` and save the result."""

    level: str = "extended"
    name: ClassVar[str] = "graph"

    def __post_init__(self) -> None:
        if self.level not in GRAPH_LEVELS:
            raise InvalidArgument(f"graph level {self.level!r}: choose {', '.join(GRAPH_LEVELS)}")

    def describe(self) -> str:
        return f"graph {self.level}"

    def apply(self, src: Path, ctx: PassContext) -> PassResult:
        import onnxruntime as ort

        ctx.progress(f"running onnxruntime graph optimizations ({self.level})")
        out = ctx.new_path(f"graph-{self.level}")
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.level]
        so.optimized_model_filepath = str(out)
        try:
            ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise InvalidModel(f"onnxruntime could not optimize the graph: {e}") from e
        before, after = describe(src).ops, describe(out).ops
        details = {
            "nodes_before": sum(before.values()),
            "nodes_after": sum(after.values()),
            "fused_ops": sorted(set(after) - set(before)),
        }
        notes = []
        domains = {n.domain for n in load_model(out).graph.node}
        if "com.microsoft" in domains:
            notes.append("uses onnxruntime's own fused operators: runs on onnxruntime only")
        if self.level == "all":
            notes.append("level 'all' includes CPU-specific layouts: re-run it on the target")
        return PassResult(out, details, notes)
