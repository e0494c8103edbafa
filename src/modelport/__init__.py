"""modelport: from a trained model to a fast, monitored, secured inference service.

The public API is imported lazily, so ``import modelport`` stays light (no
onnxruntime, torch or grpc until they are needed).

Example:
    >>> from modelport import Registry, Settings
    >>> reg = Registry.from_settings(Settings())          # doctest: +SKIP
    >>> reg.register("iris.onnx", name="iris").ref       # doctest: +SKIP
    'iris:1'
    >>> import modelport
    >>> modelport.register(pipeline, name="cancer", sample_input=X[:10]).ref  # doctest: +SKIP
    'cancer:1'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Registry": "modelport.registry.service",
    "ModelVersion": "modelport.registry.records",
    "Lineage": "modelport.registry.records",
    "Settings": "modelport.core.config",
    "ModelRef": "modelport.core.types",
    "ModelSignature": "modelport.core.types",
    "TensorSpec": "modelport.core.types",
    "ModelportError": "modelport.core.errors",
    "register": "modelport.registry.api",
}

__all__ = [
    "Lineage",
    "ModelRef",
    "ModelSignature",
    "ModelVersion",
    "ModelportError",
    "Registry",
    "Settings",
    "TensorSpec",
    "__version__",
    "register",
]

if TYPE_CHECKING:
    from modelport.core.config import Settings
    from modelport.core.errors import ModelportError
    from modelport.core.types import ModelRef, ModelSignature, TensorSpec
    from modelport.registry.api import register
    from modelport.registry.records import Lineage, ModelVersion
    from modelport.registry.service import Registry


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'modelport' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
