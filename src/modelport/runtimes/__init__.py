"""Runtimes and model formats, one module per framework, imported lazily.

``formats()`` lists every format the registry can recognise; a framework whose
libraries are missing is still listed (recognition reads bytes, never imports the
framework) and fails with an install hint when used.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from modelport.core.errors import UnsupportedFormat
from modelport.runtimes.base import Inspection, LoadSpec, ModelFormat, Runtime, RuntimeOptions

#: format name → "module:Class" of its ModelFormat, in sniffing order: formats told by
#: a few header bytes or a zip directory first, ONNX (which parses the file) last.
FORMATS: dict[str, str] = {
    "sklearn": "modelport.runtimes.sklearn:SkopsFormat",
    "torch-export": "modelport.runtimes.pytorch:TorchExportFormat",
    "torchscript": "modelport.runtimes.pytorch:TorchScriptFormat",
    "torch-pickle": "modelport.runtimes.pytorch:TorchPickleFormat",
    "lightgbm": "modelport.runtimes.boosters:LightGBMFormat",
    "xgboost": "modelport.runtimes.boosters:XGBoostFormat",
    "sklearn-pickle": "modelport.runtimes.sklearn:SklearnPickleFormat",
    "python": "modelport.runtimes.python:PythonFormat",
    "onnx": "modelport.runtimes.onnx:OnnxFormat",
}

#: Other names people use for a framework (``--framework torch``).
FRAMEWORK_ALIASES = {"torch": "pytorch", "scikit-learn": "sklearn", "lgbm": "lightgbm"}


def supported() -> str:
    """The supported formats for messages, ONNX (the default) first.

    Example:
        >>> supported().split(", ")[:2]
        ['onnx', 'sklearn']
    """
    return ", ".join(sorted(FORMATS, key=lambda n: n != "onnx"))


def get_format(name: str) -> ModelFormat:
    """Return the format named ``name`` or raise UnsupportedFormat listing the known ones."""
    target = FORMATS.get(name)
    if target is None:
        raise UnsupportedFormat(f"unknown framework/format {name!r}; supported: {supported()}")
    module, _, cls = target.partition(":")
    fmt: ModelFormat = getattr(importlib.import_module(module), cls)()
    return fmt


def formats() -> list[ModelFormat]:
    """Every known format, in sniffing order."""
    return [get_format(n) for n in FORMATS]


def formats_for(name: str) -> list[ModelFormat]:
    """The formats a ``--framework`` value names: one format, or every format of a framework.

    Example:
        >>> [f.name for f in formats_for("pytorch")]
        ['torch-export', 'torchscript', 'torch-pickle']
        >>> [f.name for f in formats_for("sklearn")]
        ['sklearn', 'sklearn-pickle']
    """
    framework = FRAMEWORK_ALIASES.get(name, name)
    found = [f for f in formats() if f.framework == framework]
    if name in FORMATS:  # a format; if also a framework's name, its siblings follow
        exact = get_format(name)
        return [exact, *(f for f in found if f.name != name)]
    if not found:
        frameworks = sorted({f.framework for f in formats()})
        raise UnsupportedFormat(
            f"unknown framework/format {name!r}; frameworks: {', '.join(frameworks)}; "
            f"supported formats: {supported()}"
        )
    return found


def default_input_name(fmt: ModelFormat) -> str:
    """The name a single-array sample input gets for this format (``X`` for sklearn)."""
    return str(getattr(fmt, "default_input", "input"))


def load_runtime(
    format_name: str, spec: LoadSpec, options: RuntimeOptions | None = None
) -> Runtime:
    """Load a stored version with the runtime of its format.

    Example:
        >>> rt = load_runtime("onnx", LoadSpec(path, "model.onnx", signature))  # doctest: +SKIP
        >>> rt.predict({"X": batch})                                          # doctest: +SKIP
    """
    return get_format(format_name).load(spec, options or RuntimeOptions())


def load_native(format_name: str, spec: LoadSpec) -> Any:
    """The framework object of a stored version (estimator, module, program, booster).

    ONNX has no framework object: its ``ModelProto`` is returned.
    """
    fmt = get_format(format_name)
    native = getattr(fmt, "load_native", None)
    if native is None:
        import onnx

        return onnx.load_model(str(spec.directory / spec.entry))
    return native(spec)


def load_file(
    path: str | Path,
    *,
    framework: str | None = None,
    sample_input: Any = None,
    trust: bool = False,
    options: RuntimeOptions | None = None,
) -> Runtime:
    """Load a model file directly, without a registry (for scripts and python models).

    Example:
        >>> rt = load_file("inner.onnx")                  # doctest: +SKIP
        >>> rt.predict({"X": np.zeros((1, 4), np.float32)})  # doctest: +SKIP
    """
    from modelport.runtimes.sample import as_sample

    src = Path(path)
    candidates = formats_for(framework) if framework else formats()
    fmt = next((f for f in candidates if f.sniff(src)), None)
    if fmt is None:
        raise UnsupportedFormat(f"{src.name}: no supported model format; supported: {supported()}")
    sample: dict[str, np.ndarray] | None = None
    if sample_input is not None:
        sample = as_sample(sample_input, default_input_name(fmt))
    insp = fmt.inspect(src, sample_input=sample, trust=trust)
    entry = src.name if src.is_file() else insp.entry
    directory = src.parent if src.is_file() else src
    spec = LoadSpec(directory, entry, insp.signature, insp.extra, trusted=trust)
    return fmt.load(spec, options or RuntimeOptions())


__all__ = [
    "FORMATS",
    "FRAMEWORK_ALIASES",
    "Inspection",
    "LoadSpec",
    "ModelFormat",
    "Runtime",
    "RuntimeOptions",
    "default_input_name",
    "formats",
    "formats_for",
    "get_format",
    "load_file",
    "load_native",
    "load_runtime",
    "supported",
]
