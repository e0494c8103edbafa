"""Triton's model configuration and V2 model metadata, as JSON dicts.

``/v2/models/{m}/config`` (and gRPC ``ModelConfig``) answer with Triton's
``ModelConfig`` message as JSON, field names as in ``model_config.proto``. Tools read
it: ``perf_analyzer`` refuses to run without it, and decides from ``max_batch_size``
whether the first dimension is a batch dimension. As in Triton, when
``max_batch_size > 0`` the batch dimension is *not* listed in ``dims``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from modelport.core.errors import InvalidArgument
from modelport.core.types import ModelSignature, TensorSpec

#: Open Inference Protocol datatype → Triton ``DataType`` enum name (BYTES is TYPE_STRING).
TRITON_TYPES = {
    "BOOL": "TYPE_BOOL",
    "UINT8": "TYPE_UINT8",
    "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32",
    "UINT64": "TYPE_UINT64",
    "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16",
    "INT32": "TYPE_INT32",
    "INT64": "TYPE_INT64",
    "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32",
    "FP64": "TYPE_FP64",
    "BYTES": "TYPE_STRING",
    "BF16": "TYPE_BF16",
}

#: Model format (``runtimes.FORMATS`` name) → (Triton platform, Triton backend).
PLATFORMS = {
    "onnx": ("onnxruntime_onnx", "onnxruntime"),
    "torchscript": ("pytorch_libtorch", "pytorch"),
    "sklearn": ("sklearn", "python"),
    "lightgbm": ("lightgbm", "python"),
    "xgboost": ("xgboost", "python"),
    "python": ("python", "python"),
}


def platform_of(fmt: str) -> tuple[str, str]:
    """Triton's ``(platform, backend)`` for a model format; unknown ones use the python backend.

    Example:
        >>> platform_of("onnx")
        ('onnxruntime_onnx', 'onnxruntime')
    """
    return PLATFORMS.get(fmt, (fmt, "python"))


def batchable(signature: ModelSignature) -> bool:
    """True when every input and output has a variable first dimension (a batch axis).

    Example:
        >>> batchable(ModelSignature((TensorSpec("x", "FP32", (-1, 4)),), ()))
        True
    """
    tensors = signature.inputs + signature.outputs
    return bool(tensors) and all(t.shape and t.shape[0] == -1 for t in tensors)


def model_config(
    name: str,
    signature: ModelSignature,
    *,
    platform: str = "onnxruntime_onnx",
    backend: str = "onnxruntime",
    max_batch_size: int = 0,
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_delay_us: int = 0,
    dynamic_batching: bool | None = None,
    instances: int = 1,
    versions: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Triton ``ModelConfig`` JSON for a model version.

    ``dynamic_batching`` defaults to ``max_batch_size > 0``. ``versions`` None gives
    Triton's default policy (``latest {num_versions: 1}``); a list gives
    ``specific {versions: [...]}``.

    Example:
        >>> sig = ModelSignature((TensorSpec("x", "FP32", (-1, 4)),),
        ...                      (TensorSpec("y", "INT64", (-1,)),))
        >>> cfg = model_config("iris", sig, max_batch_size=64)
        >>> cfg["input"], cfg["output"][0]["dims"]
        ([{'name': 'x', 'data_type': 'TYPE_FP32', 'dims': [4]}], [1])
    """
    if max_batch_size < 0:
        raise InvalidArgument("max_batch_size must be >= 0")
    if max_batch_size > 0 and not batchable(signature):
        raise InvalidArgument(
            "max_batch_size > 0 needs a variable first dimension on every input and output"
        )

    def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
        out = []
        for s in specs:
            dims = list(s.shape[1:] if max_batch_size > 0 else s.shape)
            # a batched rank-1 tensor has no dims left; Triton writes that as [1]
            if max_batch_size > 0 and not dims:
                dims = [1]
            out.append({"name": s.name, "data_type": TRITON_TYPES[s.datatype], "dims": dims})
        return out

    cfg: dict[str, Any] = {
        "name": name,
        "platform": platform,
        "backend": backend,
        "version_policy": (
            {"latest": {"num_versions": 1}}
            if versions is None
            else {"specific": {"versions": [int(v) for v in versions]}}
        ),
        "max_batch_size": max_batch_size,
        "input": tensors(signature.inputs),
        "output": tensors(signature.outputs),
        "instance_group": [{"name": name, "kind": "KIND_CPU", "count": instances}],
    }
    if dynamic_batching if dynamic_batching is not None else max_batch_size > 0:
        cfg["dynamic_batching"] = {
            "preferred_batch_size": [int(b) for b in preferred_batch_sizes],
            "max_queue_delay_microseconds": int(max_queue_delay_us),
        }
    return cfg


def model_metadata(
    name: str, versions: Sequence[str | int], signature: ModelSignature, platform: str
) -> dict[str, Any]:
    """V2 model metadata: ``name``, ``versions``, ``platform``, ``inputs``, ``outputs``.

    Example:
        >>> sig = ModelSignature((TensorSpec("x", "FP32", (-1, 4)),), ())
        >>> model_metadata("iris", [1, 2], sig, "onnxruntime_onnx")["inputs"]
        [{'name': 'x', 'datatype': 'FP32', 'shape': [-1, 4]}]
    """
    return {
        "name": name,
        "versions": [str(v) for v in versions],
        "platform": platform,
        "inputs": [t.to_dict() for t in signature.inputs],
        "outputs": [t.to_dict() for t in signature.outputs],
    }
