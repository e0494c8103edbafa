"""Runtimes and model formats, one module per framework, imported lazily.

``formats()`` lists every format the registry can recognise; a framework whose
libraries are missing is still listed and fails with an install hint when used.
"""

from __future__ import annotations

import importlib

from modelport.core.errors import UnsupportedFormat
from modelport.runtimes.base import Inspection, LoadSpec, ModelFormat, Runtime, RuntimeOptions

#: format name → "module:Class" of its ModelFormat, in sniffing order
FORMATS: dict[str, str] = {
    "onnx": "modelport.runtimes.onnx:OnnxFormat",
}


def get_format(name: str) -> ModelFormat:
    """Return the format named ``name`` or raise UnsupportedFormat listing the known ones."""
    target = FORMATS.get(name)
    if target is None:
        raise UnsupportedFormat(
            f"unknown framework/format {name!r}; supported: {', '.join(FORMATS)}"
        )
    module, _, cls = target.partition(":")
    fmt: ModelFormat = getattr(importlib.import_module(module), cls)()
    return fmt


def formats() -> list[ModelFormat]:
    """Every known format, in sniffing order."""
    return [get_format(n) for n in FORMATS]


def load_runtime(
    format_name: str, spec: LoadSpec, options: RuntimeOptions | None = None
) -> Runtime:
    """Load a stored version with the runtime of its format.

    Example:
        >>> rt = load_runtime("onnx", LoadSpec(path, "model.onnx", signature))  # doctest: +SKIP
        >>> rt.predict({"X": batch})                                          # doctest: +SKIP
    """
    return get_format(format_name).load(spec, options or RuntimeOptions())


__all__ = [
    "FORMATS",
    "Inspection",
    "LoadSpec",
    "ModelFormat",
    "Runtime",
    "RuntimeOptions",
    "formats",
    "get_format",
    "load_runtime",
]
