"""LightGBM and XGBoost boosters → ONNX with onnxmltools.

Classifiers are converted without ZipMap (``label`` + ``probabilities`` tensors) and
the graph's shapes are declared from the source signature (onnxmltools declares a
classifier's label as ``[1]``). onnxmltools' tree converters support opsets up to
:data:`MAX_OPSET`; a higher ``--opset`` is refused with that limit.

Example:
    >>> proto = booster_to_onnx("lightgbm", booster, version.signature, None)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Any

from modelport.convert.onnx_io import declare_shapes
from modelport.core.errors import InvalidArgument, MissingDependency
from modelport.core.types import ModelSignature

DEFAULT_OPSET = 15
MAX_OPSET = 15


def _onnxmltools(extra: str) -> Any:
    try:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType
    except ImportError as e:
        raise MissingDependency.for_extra(
            "onnxmltools", extra, f"Converting {extra} models to ONNX"
        ) from e
    return onnxmltools, FloatTensorType


def booster_to_onnx(
    framework: str, booster: Any, signature: ModelSignature, opset: int | None
) -> Any:
    """Convert a ``lightgbm.Booster`` or ``xgboost.Booster``."""
    tools, float_type = _onnxmltools(framework)
    target = opset or DEFAULT_OPSET
    if target > MAX_OPSET:
        raise InvalidArgument(
            f"onnxmltools converts {framework} models up to opset {MAX_OPSET}; got --opset {target}"
        )
    spec = signature.inputs[0]
    initial = [(spec.name, float_type([None, spec.shape[1]]))]
    classifier = any(t.name == "probabilities" for t in signature.outputs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if framework == "lightgbm":
                proto = tools.convert_lightgbm(
                    booster, initial_types=initial, zipmap=False, target_opset=target
                )
            elif framework == "xgboost":
                proto = tools.convert_xgboost(booster, initial_types=initial, target_opset=target)
            else:
                raise InvalidArgument(f"no booster converter for {framework!r}")
    except InvalidArgument:
        raise
    except Exception as e:
        raise InvalidArgument(f"onnxmltools cannot convert this {framework} model: {e}") from e
    names = [o.name for o in proto.graph.output]
    if classifier and names[:2] != ["label", "probabilities"]:
        raise InvalidArgument(f"onnxmltools gave outputs {names}, expected label, probabilities")
    return declare_shapes(proto, signature)
