"""The contract every optimization pass follows, and what a pass gets to work with.

A pass reads one ONNX file and writes a new one under ``ctx.workdir``; it never edits
its input, so a chain can be cut short or branched (``--auto`` reuses a common prefix
for several candidates). Passes are small frozen dataclasses: their fields are the
parameters recorded in the lineage of the version they produce.

Example:
    >>> from modelport.optimize import Quantize, Prune
    >>> chain = [Prune(0.5, structured=True), Quantize("dynamic")]
    >>> [p.describe() for p in chain]
    ['prune 50% structured', 'quantize dynamic']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelport.optimize.data import Dataset
from modelport.optimize.metrics import MetricSpec

#: Called with a short description of what is happening now.
ProgressFn = Callable[[str], None]


def _quiet(_message: str) -> None:
    return None


@dataclass
class PassContext:
    """Data and settings shared by the passes of one run.

    ``validation`` is the data the gate judges on; ``reference`` holds the parent's
    outputs on it. ``calibration`` falls back to ``train`` when only that was given.
    """

    workdir: Path
    validation: Dataset
    reference: dict[str, np.ndarray]
    metric: MetricSpec
    calibration: Dataset | None = None
    train: Dataset | None = None
    seed: int = 0
    progress: ProgressFn = field(default=_quiet)
    _counter: int = 0

    def new_path(self, stem: str) -> Path:
        """A fresh file name for a pass's output."""
        self._counter += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir / f"{self._counter:02d}-{stem}.onnx"

    @property
    def unlabelled_data(self) -> Dataset | None:
        """Data for statistics that need no labels: calibration, else training data."""
        return self.calibration or self.train


@dataclass
class PassResult:
    """A pass's output file with what it did (recorded in the report).

    ``changed`` is False when the pass found nothing to do (the model is equivalent
    to its input); ``--auto`` does not offer such a candidate.
    """

    path: Path
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    changed: bool = True


class Pass(Protocol):
    """One optimization step from an ONNX file to a new ONNX file."""

    @property
    def name(self) -> str:
        """The pass's command-line name (``quantize``, ``prune``, …)."""

    def apply(self, src: Path, ctx: PassContext) -> PassResult:
        """Write the optimized model to ``ctx.new_path(...)`` and describe what changed."""

    def describe(self) -> str:
        """A short human label, e.g. ``quantize dynamic``."""


def pass_params(p: Pass) -> dict[str, Any]:
    """The pass's name and parameters, as recorded in lineage and reports.

    Example:
        >>> pass_params(Quantize("dynamic"))              # doctest: +SKIP
        {'name': 'quantize', 'mode': 'dynamic', 'per_channel': False, ...}
    """
    params: dict[str, Any] = {"name": p.name}
    if dataclasses.is_dataclass(p) and not isinstance(p, type):
        for f in dataclasses.fields(p):
            value = getattr(p, f.name)
            params[f.name] = list(value) if isinstance(value, tuple) else value
    return params
