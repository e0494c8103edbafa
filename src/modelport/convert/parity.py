"""Parity: proof that a converted model answers like its source.

Both models run on the same inputs — the sample stored at registration, validation
data when given, or inputs synthesised from the signature — plus variants that
exercise every dynamic axis (a batch of another size, shorter sequences). Each output
is compared by kind:

- **floating point**: max absolute and max relative error; an element passes when
  ``|converted - source| <= atol + rtol * |source|`` (numpy's ``allclose`` rule). The
  relative error divides by ``max(|source|, atol)``, so values near zero do not inflate
  it. Tolerances depend on the datatypes compared (the looser of the two wins), and can
  be overridden.
- **labels and other exact outputs** (integers, booleans, text): agreement, the share
  of rows equal in both. For a classifier, a row whose source probabilities tie within
  the float tolerance may legitimately flip; such rows are counted as ties, not as
  disagreements.

Example:
    >>> tol = Tolerance()
    >>> tol.for_types("FP32", "FP64")
    (0.0001, 0.001)
    >>> Tolerance.parse({"atol": "1e-5", "labels": "0.99"}).label_agreement
    0.99
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument
from modelport.core.types import ModelSignature
from modelport.runtimes import Runtime
from modelport.runtimes.sample import (
    batch_size,
    cast_inputs,
    numpy_dtype,
    take_rows,
    with_batch,
)

FLOAT_TYPES = frozenset({"FP16", "BF16", "FP32", "FP64"})
#: (atol, rtol) per datatype.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "FP16": (1e-2, 1e-2),
    "BF16": (5e-2, 5e-2),
    "FP32": (1e-4, 1e-3),
    "FP64": (1e-7, 1e-6),
}
#: Rows per model call when checking large validation sets.
CHUNK_ROWS = 1024


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How close is close enough: per-dtype defaults unless ``atol``/``rtol`` are set."""

    atol: float | None = None
    rtol: float | None = None
    label_agreement: float = 1.0

    def for_types(self, *datatypes: str) -> tuple[float, float]:
        known = [DEFAULT_TOLERANCES[d] for d in datatypes if d in DEFAULT_TOLERANCES]
        atol = max((a for a, _ in known), default=DEFAULT_TOLERANCES["FP32"][0])
        rtol = max((r for _, r in known), default=DEFAULT_TOLERANCES["FP32"][1])
        return (
            self.atol if self.atol is not None else atol,
            self.rtol if self.rtol is not None else rtol,
        )

    @classmethod
    def parse(cls, pairs: Mapping[str, str]) -> Tolerance:
        """From ``atol=…``, ``rtol=…``, ``labels=…`` (agreement, 0–1) pairs."""
        values: dict[str, float] = {}
        for key, raw in pairs.items():
            field_name = {"labels": "label_agreement", "label_agreement": "label_agreement"}.get(
                key, key
            )
            if field_name not in ("atol", "rtol", "label_agreement"):
                raise InvalidArgument(
                    f"unknown tolerance {key!r}; use atol=…, rtol=… or labels=… (agreement 0-1)"
                )
            try:
                values[field_name] = float(raw)
            except ValueError as e:
                raise InvalidArgument(f"tolerance {key}={raw!r} is not a number") from e
            if values[field_name] < 0 or (
                field_name == "label_agreement" and values[field_name] > 1
            ):
                raise InvalidArgument(f"tolerance {key}={raw} is out of range")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return {"atol": self.atol, "rtol": self.rtol, "label_agreement": self.label_agreement}


@dataclass(slots=True)
class OutputParity:
    """Comparison figures for one output, accumulated over every batch."""

    name: str
    kind: str  # "float" or "exact"
    atol: float = 0.0
    rtol: float = 0.0
    elements: int = 0
    rows: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    out_of_tolerance: int = 0
    disagreements: int = 0
    ties: int = 0
    problem: str | None = None
    required_agreement: float = 1.0

    @property
    def agreement(self) -> float:
        counted = self.rows - self.ties
        return 1.0 if counted <= 0 else 1.0 - self.disagreements / counted

    @property
    def passed(self) -> bool:
        if self.problem is not None:
            return False
        if self.kind == "float":
            return self.out_of_tolerance == 0
        return self.agreement >= self.required_agreement

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "passed": self.passed}
        if self.kind == "float":
            d.update(
                max_abs_error=self.max_abs_error,
                max_rel_error=self.max_rel_error,
                atol=self.atol,
                rtol=self.rtol,
                elements=self.elements,
                out_of_tolerance=self.out_of_tolerance,
            )
        else:
            d.update(agreement=self.agreement, rows=self.rows, ties=self.ties)
        if self.problem:
            d["problem"] = self.problem
        return d


@dataclass(slots=True)
class ParityReport:
    """Parity of every output over every batch; ``passed`` only if all outputs pass."""

    outputs: list[OutputParity] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    rows: int = 0
    tolerance: Tolerance = field(default_factory=Tolerance)

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(o.passed for o in self.outputs)

    @property
    def max_abs_error(self) -> float:
        return max((o.max_abs_error for o in self.outputs if o.kind == "float"), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((o.max_rel_error for o in self.outputs if o.kind == "float"), default=0.0)

    @property
    def label_agreement(self) -> float | None:
        exact = [o.agreement for o in self.outputs if o.kind == "exact"]
        return min(exact) if exact else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "rows": self.rows,
            "batches": self.batches,
            "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error,
            "label_agreement": self.label_agreement,
            "tolerance": self.tolerance.to_dict(),
            "outputs": [o.to_dict() for o in self.outputs],
        }

    def metrics(self) -> dict[str, float]:
        """Figures to store as version metrics."""
        m = {
            "parity_max_abs_error": self.max_abs_error,
            "parity_max_rel_error": self.max_rel_error,
            "parity_rows": float(self.rows),
            "parity_passed": 1.0 if self.passed else 0.0,
        }
        if self.label_agreement is not None:
            m["parity_label_agreement"] = self.label_agreement
        return m

    def summary(self) -> str:
        """One line per output, e.g. ``probabilities: max abs 3.1e-08 … ✓``."""
        lines = [f"parity on {self.rows} rows ({', '.join(self.batches)}):"]
        for o in self.outputs:
            mark = "ok" if o.passed else "FAILED"
            if o.problem:
                lines.append(f"  {o.name}: {o.problem} — {mark}")
            elif o.kind == "float":
                lines.append(
                    f"  {o.name}: max abs {o.max_abs_error:.3g}, max rel {o.max_rel_error:.3g} "
                    f"(atol {o.atol:g}, rtol {o.rtol:g}; {o.out_of_tolerance} of "
                    f"{o.elements} beyond) — {mark}"
                )
            else:
                tie = f", {o.ties} tie(s) not counted" if o.ties else ""
                lines.append(
                    f"  {o.name}: agreement {o.agreement:.2%} of {o.rows} rows "
                    f"(need {o.required_agreement:.2%}{tie}) — {mark}"
                )
        return "\n".join(lines)


# ----------------------------------------------------------------------------- comparing


def _as_text(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "OSU":
        flat = [x.decode() if isinstance(x, bytes) else str(x) for x in a.ravel()]
        return np.array(flat, dtype=object).reshape(a.shape)
    return a


def _align(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """``dst`` shaped like ``src`` when they differ only by size-1 axes, else None."""
    if src.shape == dst.shape:
        return dst
    if src.size == dst.size and np.squeeze(src).shape == np.squeeze(dst).shape:
        return dst.reshape(src.shape)
    return None


def _tie_rows(probabilities: np.ndarray | None, atol: float) -> np.ndarray | None:
    if probabilities is None or probabilities.ndim != 2 or probabilities.shape[1] < 2:
        return None
    top = np.sort(probabilities.astype(np.float64), axis=1)
    return np.asarray((top[:, -1] - top[:, -2]) <= 2 * atol + 1e-9)


def _compare(acc: OutputParity, src: np.ndarray, dst: np.ndarray, ties: np.ndarray | None) -> None:
    aligned = _align(src, dst)
    if aligned is None:
        acc.problem = f"shape {list(dst.shape)} where the source gives {list(src.shape)}"
        return
    rows = src.shape[0] if src.ndim else 1
    acc.rows += rows
    acc.elements += int(src.size)
    if acc.kind == "float":
        a = src.astype(np.float64)
        b = aligned.astype(np.float64)
        both_nan = np.isnan(a) & np.isnan(b)
        diff = np.where(both_nan, 0.0, np.abs(a - b))
        diff = np.where(np.isnan(diff), np.inf, diff)
        if diff.size:
            acc.max_abs_error = max(acc.max_abs_error, float(diff.max()))
            rel = diff / np.maximum(np.abs(np.nan_to_num(a)), acc.atol)
            acc.max_rel_error = max(acc.max_rel_error, float(rel.max()))
        limit = acc.atol + acc.rtol * np.abs(np.nan_to_num(a))
        acc.out_of_tolerance += int(np.count_nonzero(diff > limit))
        return
    a, b = _as_text(src), _as_text(aligned)
    equal = a == b
    same = equal.reshape(rows, -1).all(axis=1) if src.ndim > 1 else np.asarray(equal).reshape(-1)
    differ = ~same
    if ties is not None and len(ties) == rows:
        acc.ties += int(np.count_nonzero(differ & ties))
        acc.ties += int(np.count_nonzero(same & ties))
        acc.disagreements += int(np.count_nonzero(differ & ~ties))
    else:
        acc.disagreements += int(np.count_nonzero(differ))


def check_parity(
    source: Runtime,
    converted: Runtime,
    batches: Iterable[tuple[str, dict[str, np.ndarray]]],
    tolerance: Tolerance | None = None,
) -> ParityReport:
    """Run both models on every batch and compare their outputs.

    Example:
        >>> report = check_parity(sklearn_rt, onnx_rt, [("sample", {"X": X})])  # doctest: +SKIP
        >>> report.passed, report.max_abs_error < 1e-5                          # doctest: +SKIP
        (True, True)
    """
    tol = tolerance or Tolerance()
    report = ParityReport(tolerance=tol)
    src_types = {t.name: t.datatype for t in source.signature.outputs}
    dst_types = {t.name: t.datatype for t in converted.signature.outputs}
    accs: dict[str, OutputParity] = {}
    for label, inputs in batches:
        a = source.predict(cast_inputs(inputs, source.signature))
        b = converted.predict(cast_inputs(inputs, converted.signature))
        report.batches.append(label)
        report.rows += batch_size(inputs)
        for name, src in a.items():
            acc = accs.get(name)
            if acc is None:
                is_float = src.dtype.kind == "f" or src_types.get(name) in FLOAT_TYPES
                atol, rtol = tol.for_types(src_types.get(name, ""), dst_types.get(name, ""))
                acc = accs[name] = OutputParity(
                    name,
                    "float" if is_float else "exact",
                    atol,
                    rtol,
                    required_agreement=tol.label_agreement,
                )
            if name not in b:
                acc.problem = f"missing from the converted model (it gives {sorted(b)})"
                continue
            probs = a.get("probabilities")
            ties = _tie_rows(probs, tol.for_types(src_types.get("probabilities", ""))[0])
            _compare(acc, src, b[name], ties if acc.kind == "exact" else None)
    report.outputs = list(accs.values())
    return report


# ----------------------------------------------------------------------------- inputs


def synthesise(signature: ModelSignature, rows: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs shaped by the signature (dynamic axes become 8 long).

    Floats are standard normal, integers 0 or 1 (safe as indices and masks), text
    ``b"a"``.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        shape = tuple(rows if i == 0 else (8 if d == -1 else d) for i, d in enumerate(spec.shape))
        if spec.datatype in FLOAT_TYPES:
            out[spec.name] = rng.standard_normal(shape).astype(numpy_dtype(spec.datatype))
        elif spec.datatype == "BYTES":
            out[spec.name] = np.full(shape, b"a", dtype=object)
        elif spec.datatype == "BOOL":
            out[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            out[spec.name] = rng.integers(0, 2, shape).astype(numpy_dtype(spec.datatype))
    return out


def shape_variants(
    signature: ModelSignature, inputs: dict[str, np.ndarray]
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Variants of ``inputs`` that change each dynamic axis: another batch size, and each
    other dynamic axis shortened by one (together across inputs sharing its length)."""
    n = batch_size(inputs)
    variants = [(f"batch of {1 if n >= 2 else 3}", with_batch(inputs, 1 if n >= 2 else 3))]
    groups: dict[tuple[int, int], list[str]] = {}
    for spec in signature.inputs:
        arr = inputs.get(spec.name)
        if arr is None:
            continue
        for axis, d in enumerate(spec.shape):
            if axis > 0 and d == -1 and arr.ndim > axis and arr.shape[axis] >= 2:
                groups.setdefault((axis, int(arr.shape[axis])), []).append(spec.name)
    for (axis, size), names in groups.items():
        variant = {
            k: np.take(v, np.arange(size - 1), axis=axis) if k in names else v
            for k, v in inputs.items()
        }
        variants.append((f"axis {axis} of {'/'.join(names)} at {size - 1}", variant))
    return variants


def parity_batches(
    signature: ModelSignature,
    sample: dict[str, np.ndarray] | None,
    validation: dict[str, np.ndarray] | None = None,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The sample, validation data in chunks (or synthesised inputs), then shape variants."""
    names = [t.name for t in signature.inputs]
    batches: list[tuple[str, dict[str, np.ndarray]]] = []
    if sample is not None:
        batches.append(("sample", {k: sample[k] for k in names if k in sample}))
    if validation is not None:
        missing = [k for k in names if k not in validation]
        if missing:
            raise InvalidArgument(
                f"the validation data lacks input(s) {missing}; it has {sorted(validation)}"
            )
        data = {k: validation[k] for k in names}
        total = batch_size(data)
        for start in range(0, total, chunk_rows):
            stop = min(total, start + chunk_rows)
            batches.append((f"validation[{start}:{stop}]", take_rows(data, slice(start, stop))))
    if not batches:
        batches.append(("synthetic", synthesise(signature)))
    return batches + shape_variants(signature, batches[0][1])
