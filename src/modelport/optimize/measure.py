"""Measuring models: outputs on a dataset, file size, parameters and latency.

Latency is measured the way the model will be served (onnxruntime through
:class:`~modelport.runtimes.onnx.OnnxRuntime`), with the same thread settings for every
model, in one process. Models are timed in interleaved rounds (parent, candidate,
parent, candidate, …) so a neighbour's load on a shared machine hits all of them
alike; each sample times enough calls to last ``min_sample_s``, and the median of the
samples is reported.

Example:
    >>> stats = measure_latency({"parent": p, "int8": q}, val, MeasureSettings())  # doctest: +SKIP
    >>> stats["int8"][32].median_ms < stats["parent"][32].median_ms                # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.optimize.data import Dataset
from modelport.optimize.onnx_model import count_parameters, file_size, load_model
from modelport.runtimes.base import RuntimeOptions
from modelport.runtimes.onnx import OnnxRuntime

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class MeasureSettings:
    """How latency is measured; recorded in every report."""

    batch_sizes: tuple[int, ...] = (1, 32)
    threads: int = 1
    repeats: int = 7
    warmup: int = 3
    min_sample_s: float = 0.02

    def runtime_options(self) -> RuntimeOptions:
        return RuntimeOptions(
            intra_op_threads=self.threads,
            inter_op_threads=1,
            providers=("CPUExecutionProvider",),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_sizes": list(self.batch_sizes),
            "intra_op_threads": self.threads,
            "repeats": self.repeats,
            "warmup": self.warmup,
            "min_sample_s": self.min_sample_s,
            "provider": "CPUExecutionProvider",
        }


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency of one model at one batch size, over the repeated samples."""

    batch_size: int
    median_ms: float
    min_ms: float
    max_ms: float
    calls_per_sample: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_ms": round(self.median_ms, 6),
            "min_ms": round(self.min_ms, 6),
            "max_ms": round(self.max_ms, 6),
            "calls_per_sample": self.calls_per_sample,
        }


@dataclass(frozen=True)
class ModelFacts:
    """What a model costs to store and how many weights it has."""

    size_bytes: int
    params: int
    nonzero_params: int
    ops: dict[str, int] = field(default_factory=dict)


def describe(path: Path) -> ModelFacts:
    """Size on disk, parameter counts and operator histogram of an ONNX model.

    Example:
        >>> describe(Path("mlp.onnx")).params                 # doctest: +SKIP
        26506
    """
    model = load_model(path)
    total, nonzero = count_parameters(model)
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ModelFacts(file_size(path), total, nonzero, dict(sorted(ops.items())))


def open_runtime(path: Path, settings: MeasureSettings | None = None) -> OnnxRuntime:
    """An onnxruntime session on ``path`` with the measurement thread settings."""
    return OnnxRuntime.from_path(path, (settings or MeasureSettings()).runtime_options())


def predict_all(
    path: Path | OnnxRuntime, data: Dataset, batch_size: int = 256, threads: int = 0
) -> Outputs:
    """Run the model over the whole dataset in batches and concatenate the outputs.

    Example:
        >>> predict_all(Path("mlp.onnx"), val)["logits"].shape   # doctest: +SKIP
        (360, 10)
    """
    rt = (
        path
        if isinstance(path, OnnxRuntime)
        else OnnxRuntime.from_path(path, RuntimeOptions(intra_op_threads=threads))
    )
    parts: dict[str, list[np.ndarray]] = {}
    for batch in data.batches(batch_size):
        for name, value in rt.predict(batch).items():
            parts.setdefault(name, []).append(np.asarray(value))
    return {name: np.concatenate(chunks, axis=0) for name, chunks in parts.items()}


def _timer(rt: OnnxRuntime, batch: dict[str, np.ndarray]) -> Callable[[int], float]:
    def run(calls: int) -> float:
        start = time.perf_counter()
        for _ in range(calls):
            rt.predict(batch)
        return time.perf_counter() - start

    return run


def measure_latency(
    models: Mapping[str, Path],
    data: Dataset,
    settings: MeasureSettings | None = None,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, dict[int, LatencyStats]]:
    """Median per-call latency of each model at each batch size, timed interleaved.

    Example:
        >>> measure_latency({"m": Path("m.onnx")}, val)["m"][1].median_ms  # doctest: +SKIP
        0.021
    """
    settings = settings or MeasureSettings()
    runtimes = {label: open_runtime(path, settings) for label, path in models.items()}
    results: dict[str, dict[int, LatencyStats]] = {label: {} for label in models}
    try:
        for bs in settings.batch_sizes:
            batch = data.batch_of(bs)
            timers = {label: _timer(rt, batch) for label, rt in runtimes.items()}
            calls: dict[str, int] = {}
            for label, run in timers.items():
                run(settings.warmup)
                once = max(run(1), 1e-7)
                calls[label] = max(1, math.ceil(settings.min_sample_s / once))
            samples: dict[str, list[float]] = {label: [] for label in timers}
            for r in range(settings.repeats):
                if on_progress:
                    on_progress(f"batch {bs}: round {r + 1}/{settings.repeats}")
                for label, run in timers.items():
                    samples[label].append(run(calls[label]) / calls[label] * 1000.0)
            for label, ms in samples.items():
                results[label][bs] = LatencyStats(
                    bs, statistics.median(ms), min(ms), max(ms), calls[label]
                )
    finally:
        for rt in runtimes.values():
            rt.close()
    return results
