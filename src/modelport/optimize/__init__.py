"""Optimization: smaller, faster versions of a model, each one measured and gated.

Passes (each writes a new ONNX file, chained in the order given):
:class:`Quantize` (dynamic/static int8, fp16), :class:`Prune` (magnitude or
structured), :class:`DropLayers`, :class:`LowRank`, :class:`Distill`,
:class:`GraphOptimize`. :func:`optimize` runs a chain on a registered version and
:func:`auto_optimize` searches chains; both measure size, parameters, latency and the
metric against the parent, refuse a result that loses more than ``max_drop``
(:class:`AccuracyGateFailed`) and hand the accepted one to ``publish``.
:func:`prune_module` prunes PyTorch modules before export.

Example:
    >>> from modelport.optimize import OptimizeOptions, Prune, Quantize, optimize
    >>> opts = OptimizeOptions(Path("val.npz"), metric="accuracy", max_drop=0.01)  # doctest: +SKIP
    >>> optimize(reg, "mlp:1", [Prune(0.5, structured=True), Quantize("dynamic")],
    ...          opts, publish=publish).registered                             # doctest: +SKIP
    'mlp:2'
"""

from modelport.optimize.auto import auto_optimize
from modelport.optimize.data import Dataset, load_dataset, save_dataset
from modelport.optimize.distill import Distill
from modelport.optimize.drop_layers import DropLayers
from modelport.optimize.graph import GraphOptimize
from modelport.optimize.low_rank import LowRank
from modelport.optimize.measure import MeasureSettings
from modelport.optimize.metrics import METRICS
from modelport.optimize.passes import Pass, PassContext, PassResult
from modelport.optimize.pipeline import (
    AccuracyGateFailed,
    Candidate,
    ModelSource,
    OptimizeOptions,
    Outcome,
    optimize,
)
from modelport.optimize.prune import Prune
from modelport.optimize.prune_torch import prune_module
from modelport.optimize.quantize import Quantize
from modelport.optimize.report import Report

__all__ = [
    "METRICS",
    "AccuracyGateFailed",
    "Candidate",
    "Dataset",
    "Distill",
    "DropLayers",
    "GraphOptimize",
    "LowRank",
    "MeasureSettings",
    "ModelSource",
    "OptimizeOptions",
    "Outcome",
    "Pass",
    "PassContext",
    "PassResult",
    "Prune",
    "Quantize",
    "Report",
    "auto_optimize",
    "load_dataset",
    "optimize",
    "prune_module",
    "save_dataset",
]
