"""Conversion of a registered version, with parity proof, into a new version.

:func:`convert` loads the source version's framework object, converts it (ONNX for
scikit-learn, LightGBM, XGBoost and PyTorch; TorchScript for PyTorch), inspects the
result like any registered file, then runs the source and the result side by side
(:mod:`modelport.convert.parity`). Only a conversion that passes is registered — as
the next version of the same model, with lineage naming the parent, the converter,
the library versions, the opset and the parity figures. ``force=True`` registers a
failing conversion anyway and records the failure (lineage ``forced``, tag
``parity=failed``, metric ``parity_passed`` = 0).

Example:
    >>> result = convert(registry, "cancer:1", to="onnx")     # doctest: +SKIP
    >>> result.version.ref, result.parity.passed              # doctest: +SKIP
    ('cancer:2', True)
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from modelport.convert.parity import ParityReport, Tolerance, check_parity, parity_batches
from modelport.core.errors import FailedPrecondition, InvalidArgument, UnsupportedFormat
from modelport.core.types import ModelSignature
from modelport.registry import ModelVersion, Registry
from modelport.registry.records import Lineage
from modelport.runtimes import (
    Inspection,
    LoadSpec,
    RuntimeOptions,
    get_format,
    load_native,
    load_runtime,
)
from modelport.runtimes.sample import SAMPLE_FILE, load_sample_file
from modelport.runtimes.tools import tool_versions

TARGETS = ("onnx", "torchscript")
#: source format → target → (converter, packages recorded in lineage)
ROUTES: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "sklearn": {"onnx": ("skl2onnx", ("skl2onnx", "scikit-learn", "onnx", "onnxruntime"))},
    "sklearn-pickle": {"onnx": ("skl2onnx", ("skl2onnx", "scikit-learn", "onnx", "onnxruntime"))},
    "lightgbm": {"onnx": ("onnxmltools", ("onnxmltools", "lightgbm", "onnx", "onnxruntime"))},
    "xgboost": {"onnx": ("onnxmltools", ("onnxmltools", "xgboost", "onnx", "onnxruntime"))},
    **{
        fmt: {
            "onnx": ("torch.onnx", ("torch", "onnxscript", "onnx", "onnxruntime")),
            "torchscript": ("torch.jit", ("torch",)),
        }
        for fmt in ("torch-export", "torch-pickle", "torchscript")
    },
}
#: Extra keys carried from the source version to the converted one.
_CARRIED = ("classes", "class_labels", "estimator", "task", "num_classes")

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class ConversionResult:
    """The registered version (None only if nothing was registered) and its parity."""

    source: ModelVersion
    version: ModelVersion
    parity: ParityReport
    converter: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source.ref,
            "version": self.version.to_dict(),
            "converter": self.converter,
            "parity": self.parity.to_dict(),
        }


class ParityFailed(FailedPrecondition):
    """A conversion whose outputs differ from the source beyond tolerance."""

    def __init__(self, message: str, report: ParityReport) -> None:
        super().__init__(message)
        self.report = report


def _convert_file(
    src: ModelVersion,
    native: Any,
    target: str,
    sample: dict[str, np.ndarray],
    opset: int | None,
    out: Path,
) -> tuple[Path, str, str]:
    """Write the converted model under ``out``; return (path, format, converter detail)."""
    keywords = bool(src.extra.get("keywords", False))
    if target == "onnx":
        path = out / "model.onnx"
        if src.framework == "sklearn":
            from modelport.convert.sklearn import sklearn_to_onnx

            path.write_bytes(sklearn_to_onnx(native, src.signature, opset).SerializeToString())
            return path, "onnx", "skl2onnx"
        if src.framework in ("lightgbm", "xgboost"):
            from modelport.convert.boosters import booster_to_onnx

            proto = booster_to_onnx(src.framework, native, src.signature, opset)
            path.write_bytes(proto.SerializeToString())
            return path, "onnx", f"onnxmltools ({src.framework})"
        from modelport.convert.pytorch import torch_to_onnx

        how = torch_to_onnx(
            src.format, native, src.signature, sample, opset, path, keywords=keywords
        )
        return path, "onnx", how
    from modelport.convert.pytorch import torch_to_torchscript

    path = out / "model.pt"
    how = torch_to_torchscript(src.format, native, src.signature, sample, path, keywords=keywords)
    return path, "torchscript", how


def _named_like(inspection: Inspection, source: ModelSignature) -> Inspection:
    """Give positional outputs (a traced module's tuple) the source's output names."""
    outs = inspection.signature.outputs
    want = [t.name for t in source.outputs]
    if [t.name for t in outs] == want or len(outs) != len(want):
        return inspection
    renamed = tuple(replace(t, name=n) for t, n in zip(outs, want, strict=True))
    return replace(inspection, signature=replace(inspection.signature, outputs=renamed))


def _opset_of(extra: dict[str, Any]) -> int | None:
    opsets = extra.get("opset")
    if isinstance(opsets, dict):
        value = opsets.get("ai.onnx")
        return int(value) if value is not None else None
    return None


def convert(
    registry: Registry,
    ref: str,
    *,
    to: str = "onnx",
    opset: int | None = None,
    validation_data: str | Path | dict[str, np.ndarray] | None = None,
    tolerance: Tolerance | None = None,
    force: bool = False,
    description: str | None = None,
    progress: Progress | None = None,
) -> ConversionResult:
    """Convert ``ref`` to ``to`` (``onnx`` or ``torchscript``), prove parity, register it.

    Raises :class:`ParityFailed` (a FailedPrecondition, exit 5) with the report when
    the outputs differ beyond ``tolerance`` and ``force`` is not set; nothing is
    registered then.
    """
    step = progress or (lambda _msg: None)
    target = to.lower()
    if target not in TARGETS:
        raise InvalidArgument(f"cannot convert to {to!r}; targets: {', '.join(TARGETS)}")
    if opset is not None and not 7 <= opset <= 25:
        raise InvalidArgument(f"opset {opset} is out of range (7-25)")
    src = registry.get(ref)
    route = ROUTES.get(src.format, {}).get(target)
    if route is None:
        choices = ", ".join(ROUTES.get(src.format, {})) or "none"
        raise UnsupportedFormat(
            f"{src.ref} is {src.framework}/{src.format}; it converts to: {choices}"
        )
    tol = tolerance or Tolerance()
    directory = registry.open(src)
    spec = LoadSpec(directory, src.entry, src.signature, src.extra, src.trusted)
    names = [t.name for t in src.signature.inputs]
    sample = None
    if SAMPLE_FILE in {f.path for f in src.files}:
        sample = load_sample_file(directory / SAMPLE_FILE, names[0])
    validation = None
    if validation_data is not None:
        validation = (
            dict(validation_data)
            if isinstance(validation_data, dict)
            else load_sample_file(Path(validation_data), names[0])
        )
    batches = parity_batches(src.signature, sample, validation)
    export_sample = sample or batches[0][1]
    with tempfile.TemporaryDirectory(prefix="modelport-convert-") as tmp:
        step(f"loading {src.ref} ({src.framework}/{src.format})")
        native = load_native(src.format, spec)
        step(f"converting to {target} with {route[0]}")
        path, fmt_name, how = _convert_file(src, native, target, export_sample, opset, Path(tmp))
        fmt = get_format(fmt_name)
        inspection = _named_like(fmt.inspect(path, sample_input=export_sample), src.signature)
        converted = fmt.load(
            LoadSpec(path.parent, path.name, inspection.signature, inspection.extra),
            RuntimeOptions(),
        )
        source_rt = load_runtime(src.format, spec)
        step(f"checking parity on {len(batches)} batch(es)")
        try:
            report = check_parity(source_rt, converted, batches, tol)
        finally:
            converted.close()
            source_rt.close()
        if not report.passed and not force:
            raise ParityFailed(
                f"converting {src.ref} to {target} failed the parity check; nothing was "
                f"registered (pass --force to register it anyway)\n{report.summary()}",
                report,
            )
        files = dict(inspection.files)
        if sample is not None:
            files[SAMPLE_FILE] = directory / SAMPLE_FILE
        extra = {k: src.extra[k] for k in _CARRIED if k in src.extra}
        if sample is not None:
            extra["sample_input"] = SAMPLE_FILE
        inspection = replace(inspection, files=files, extra={**inspection.extra, **extra})
        used_opset = _opset_of(inspection.extra) if target == "onnx" else None
        params: dict[str, Any] = {
            "to": target,
            "converter": how,
            "opset": used_opset,
            "requested_opset": opset,
            "parity": report.to_dict(),
            "forced": bool(force and not report.passed),
        }
        lineage = Lineage(
            "convert", parent=src.ref, params=params, tool_versions=tool_versions(*route[1])
        )
        tags = dict(src.tags)
        if not report.passed:
            tags["parity"] = "failed"
        step("registering")
        version = registry.register_inspection(
            inspection,
            src.name,
            description=description
            or f"{src.ref} converted to {target}"
            + (f" (opset {used_opset})" if used_opset else ""),
            tags=tags,
            metrics=report.metrics(),
            lineage=lineage,
        )
    return ConversionResult(src, version, report, how)
