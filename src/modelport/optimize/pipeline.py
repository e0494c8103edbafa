"""Running passes on a registered version, measuring the result and enforcing the gate.

:func:`optimize` takes a version from a model source (the registry), applies the
passes in order, then compares the result with the parent on the validation data:
the metric before and after, parity, size, parameters and latency (both measured in
one process with the same settings). If the metric drops by more than ``max_drop``
nothing is registered and :class:`AccuracyGateFailed` is raised (the report is still
written); otherwise ``publish`` registers the new version with its lineage and the
report.

The optimizer sits beside the registry (both are services), so it does not import
it: it reads through the :class:`ModelSource` protocol, which ``Registry`` satisfies,
and registers through ``publish``, which the composition root (the CLI) builds.

Example:
    >>> from modelport import Lineage, Registry, Settings
    >>> reg = Registry.from_settings(Settings())                       # doctest: +SKIP
    >>> def publish(c):                                                # doctest: +SKIP
    ...     return reg.register(c.path, c.name, lineage=Lineage.from_dict(c.lineage),
    ...                         metrics=c.metrics, extra=c.extra).ref
    >>> outcome = optimize(reg, "mlp:1", [Prune(0.5, structured=True)],
    ...                    OptimizeOptions(Path("val.npz"), "accuracy", 0.01),
    ...                    publish=publish)                             # doctest: +SKIP
    >>> outcome.registered                                             # doctest: +SKIP
    'mlp:2'
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelport.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    InvalidModel,
    UnsupportedFormat,
)
from modelport.core.types import ModelSignature
from modelport.optimize.data import load_dataset
from modelport.optimize.measure import MeasureSettings, describe, measure_latency, predict_all
from modelport.optimize.metrics import MetricSpec, get_metric, metric_drop, parity, score
from modelport.optimize.passes import Pass, PassContext, ProgressFn, pass_params
from modelport.optimize.report import Report, VersionEntry

#: Gate tolerance for float noise (a drop of exactly max_drop passes).
GATE_EPSILON = 1e-9
_TOOLS = ("onnx", "onnxruntime", "numpy", "torch", "scikit-learn", "skl2onnx",
          "onnxconverter-common")  # fmt: skip


class SourceVersion(Protocol):
    """What the optimizer reads of a registered version (``ModelVersion`` fits)."""

    @property
    def name(self) -> str: ...
    @property
    def ref(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def entry(self) -> str: ...
    @property
    def signature(self) -> ModelSignature: ...


class ModelSource(Protocol):
    """Where parent versions come from (``Registry`` fits)."""

    def get(self, ref: str) -> SourceVersion: ...

    def open(self, ref: str) -> Path: ...


@dataclass
class Candidate:
    """A model that passed the gate, with everything needed to register it."""

    path: Path
    name: str
    parent: str
    description: str
    metrics: dict[str, float]
    lineage: dict[str, Any]
    extra: dict[str, Any]
    report: Report


#: Registers a candidate and returns the new version's reference (e.g. ``mlp:2``).
Publish = Callable[[Candidate], str]


@dataclass(frozen=True)
class OptimizeOptions:
    """The data, the gate and the measurement settings of a run."""

    validation: Path
    metric: str
    max_drop: float
    calibration: Path | None = None
    train: Path | None = None
    report_dir: Path | None = None
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    name: str | None = None
    description: str = ""
    seed: int = 0


@dataclass
class Outcome:
    """The result of a run that passed the gate."""

    report: Report
    registered: str | None
    files: dict[str, Path]


class AccuracyGateFailed(FailedPrecondition):
    """The optimized model lost more than ``--max-drop``; nothing was registered."""

    def __init__(self, message: str, report: Report, files: dict[str, Path]) -> None:
        super().__init__(message)
        self.report = report
        self.files = files


def tool_versions(*extra: str) -> dict[str, str]:
    """Installed versions of modelport and the tools the passes use."""
    out = {}
    for p in ("modelport", *_TOOLS, *extra):
        with contextlib.suppress(PackageNotFoundError):
            out[p] = pkg_version(p)
    return out


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ChainResult:
    """A chain of passes applied to the parent, evaluated on the validation data."""

    passes: tuple[Pass, ...]
    path: Path
    steps: list[dict[str, Any]]
    metric: float
    drop: float
    parity: dict[str, Any]

    @property
    def label(self) -> str:
        return " + ".join(p.describe() for p in self.passes)


class Session:
    """One run's shared state: the parent, the data, its outputs and a work directory."""

    def __init__(
        self,
        source: ModelSource,
        ref: str,
        options: OptimizeOptions,
        workdir: Path,
        progress: ProgressFn | None = None,
    ) -> None:
        self.options = options
        self.progress: ProgressFn = progress or (lambda _m: None)
        self.version = source.get(ref)
        if self.version.format != "onnx":
            raise UnsupportedFormat(
                f"{self.version.ref} is a {self.version.format} model; optimization works on "
                "ONNX versions — convert it first (modelport convert)"
            )
        self.path = source.open(self.version.ref) / self.version.entry
        self.metric: MetricSpec = get_metric(options.metric)
        sig = self.version.signature
        self.progress("reading the data files")
        self.validation = load_dataset(
            options.validation, sig, need_labels=self.metric.needs_labels
        )
        self.calibration = load_dataset(options.calibration, sig) if options.calibration else None
        self.train = load_dataset(options.train, sig) if options.train else None
        self.progress(f"running {self.version.ref} on {self.validation.n} validation rows")
        self.reference = predict_all(self.path, self.validation)
        self.parent_metric = score(
            self.metric, self.reference, self.reference, self.validation.labels
        )
        self.ctx = PassContext(
            workdir,
            self.validation,
            self.reference,
            self.metric,
            calibration=self.calibration,
            train=self.train,
            seed=options.seed,
            progress=self.progress,
        )
        self._cache: dict[tuple[Pass, ...], tuple[Path, list[dict[str, Any]]]] = {}

    @property
    def classifier(self) -> bool:
        return self.metric.name in ("accuracy", "f1")

    def apply(self, passes: Sequence[Pass]) -> tuple[Path, list[dict[str, Any]]]:
        """Apply ``passes`` in order, reusing the longest prefix applied before."""
        key = tuple(passes)
        if key in self._cache:
            return self._cache[key]
        if not key:
            return self.path, []
        src, steps = self.apply(key[:-1])
        step = key[-1]
        start = time.perf_counter()
        result = step.apply(src, self.ctx)
        record = {
            "pass": step.describe(),
            "params": pass_params(step),
            "seconds": round(time.perf_counter() - start, 3),
            "details": result.details,
            "notes": result.notes,
            "changed": result.changed,
        }
        self._cache[key] = (result.path, [*steps, record])
        return self._cache[key]

    def evaluate(self, passes: Sequence[Pass]) -> ChainResult:
        path, steps = self.apply(passes)
        self.progress("evaluating on the validation data")
        outputs = predict_all(path, self.validation)
        missing = [n for n in self.reference if n not in outputs]
        if missing:
            raise InvalidModel(f"the optimized model lost output(s) {missing}")
        value = score(self.metric, outputs, self.reference, self.validation.labels)
        drop = metric_drop(self.metric, self.parent_metric, value)
        return ChainResult(
            tuple(passes),
            path,
            steps,
            value,
            drop,
            parity(outputs, self.reference, classifier=self.classifier),
        )

    def passes_gate(self, result: ChainResult) -> bool:
        return (
            bool(np.isfinite(result.drop)) and result.drop <= self.options.max_drop + GATE_EPSILON
        )

    def entries(self, results: Sequence[ChainResult], labels: Sequence[str]) -> list[VersionEntry]:
        """Parent and candidate entries with latency measured together."""
        paths = {
            "parent": self.path,
            **{lbl: r.path for lbl, r in zip(labels, results, strict=True)},
        }
        latency = measure_latency(
            paths, self.validation, self.options.measure, on_progress=self.progress
        )
        facts = describe(self.path)
        entries = [
            VersionEntry(
                "parent",
                [],
                facts.size_bytes,
                facts.params,
                facts.nonzero_params,
                latency["parent"],
                self.parent_metric,
                0.0,
            )
        ]
        for lbl, r in zip(labels, results, strict=True):
            f = describe(r.path)
            entries.append(
                VersionEntry(
                    lbl,
                    [p.describe() for p in r.passes],
                    f.size_bytes,
                    f.params,
                    f.nonzero_params,
                    latency[lbl],
                    r.metric,
                    r.drop,
                    r.parity,
                    self.passes_gate(r),
                    r.steps,
                )
            )
        return entries

    def report(self, entries: list[VersionEntry], chosen: str | None, mode: str) -> Report:
        data: dict[str, Any] = {
            "validation_data": f"{self.options.validation.name} ({self.validation.n} rows)"
        }
        if self.calibration is not None and self.options.calibration:
            data["calibration_data"] = (
                f"{self.options.calibration.name} ({self.calibration.n} rows)"
            )
        if self.train is not None and self.options.train:
            data["train_data"] = f"{self.options.train.name} ({self.train.n} rows)"
        chosen_entry = next((e for e in entries if e.label == chosen), None)
        return Report(
            parent=self.version.ref,
            metric=self.metric,
            max_drop=self.options.max_drop,
            versions=entries,
            chosen=chosen,
            gate_passed=bool(chosen_entry and chosen_entry.passed_gate),
            measurement=self.options.measure.to_dict(),
            data=data,
            tool_versions=tool_versions(),
            created_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
            mode=mode,
        )

    def finish(
        self, report: Report, result: ChainResult | None, publish: Publish | None
    ) -> Outcome:
        """Enforce the gate, register (when given ``publish``) and write the report."""
        files: dict[str, Path] = {}
        if result is None or not report.gate_passed:
            if self.options.report_dir:
                files = report.write(self.options.report_dir)
            where = f" (report: {files['markdown']})" if files else ""
            raise AccuracyGateFailed(
                f"{report.verdict()}; nothing registered{where}", report, files
            )
        if publish is not None:
            report.registered = publish(self.candidate(report, result))
        if self.options.report_dir:
            files = report.write(self.options.report_dir)
        return Outcome(report, report.registered, files)

    def candidate(self, report: Report, result: ChainResult) -> Candidate:
        entry = report.entry(report.chosen)
        parent = report.parent_entry
        if entry is None:
            raise InvalidModel("internal: the chosen candidate has no report entry")
        m = self.metric.name
        metrics = {
            m: entry.metric,
            f"{m}_parent": parent.metric,
            f"{m}_drop": entry.metric_drop,
            "size_ratio": entry.size_bytes / max(parent.size_bytes, 1),
            "params": float(entry.params),
        }
        for b, stats in entry.latency.items():
            metrics[f"latency_ms_b{b}"] = stats.median_ms
            if (p := parent.latency.get(b)) is not None and stats.median_ms > 0:
                metrics[f"speedup_b{b}"] = p.median_ms / stats.median_ms
        labels = [p.describe() for p in result.passes]
        params: dict[str, Any] = {
            "passes": [s["params"] for s in result.steps],
            "metric": m,
            "max_drop": self.options.max_drop,
            "validation_data": {
                "file": self.options.validation.name,
                "sha256": _digest(self.options.validation),
                "rows": self.validation.n,
            },
        }
        if report.mode == "auto":
            params["auto"] = {"candidates_tried": len(report.versions) - 1}
        description = self.options.description or (
            f"optimized from {self.version.ref}: {', '.join(labels)}"
        )
        return Candidate(
            path=result.path,
            name=self.options.name or self.version.name,
            parent=self.version.ref,
            description=description,
            metrics=metrics,
            lineage={
                "operation": "optimize",
                "parent": self.version.ref,
                "params": params,
                "tool_versions": report.tool_versions,
            },
            extra={"optimization": report.to_dict()},
            report=report,
        )


@contextlib.contextmanager
def session(
    source: ModelSource, ref: str, options: OptimizeOptions, progress: ProgressFn | None = None
) -> Iterator[Session]:
    """A :class:`Session` with a temporary work directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="modelport-optimize-") as tmp:
        yield Session(source, ref, options, Path(tmp), progress)


def optimize(
    source: ModelSource,
    ref: str,
    passes: Sequence[Pass],
    options: OptimizeOptions,
    *,
    publish: Publish | None = None,
    progress: ProgressFn | None = None,
) -> Outcome:
    """Apply ``passes`` to version ``ref`` in order, gate the result and publish it.

    Raises AccuracyGateFailed (exit code 5) when the metric drops too much.

    Example:
        >>> opts = OptimizeOptions(Path("val.npz"), "accuracy", max_drop=0.01)   # doctest: +SKIP
        >>> optimize(reg, "mlp:1", [Quantize("dynamic")], opts).report.verdict()  # doctest: +SKIP
        'PASSED: accuracy drop 0 ≤ max 0.01 (0.9824 → 0.9824)'
    """
    if not passes:
        raise InvalidArgument("no optimization pass given (or use --auto)")
    with session(source, ref, options, progress) as s:
        result = s.evaluate(passes)
        entries = s.entries([result], ["optimized"])
        report = s.report(entries, "optimized", "passes")
        return s.finish(report, result, publish)
