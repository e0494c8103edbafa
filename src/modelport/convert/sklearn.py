"""scikit-learn → ONNX with skl2onnx, pipelines included.

Classifiers are converted without ZipMap, so they answer ``label`` and
``probabilities`` as plain tensors (what serving protocols carry), exactly the names
and shapes of the native runtime. Numeric inputs become FP32 tensors, the precision
ONNX's ML operators compute in; the parity check measures what that costs.

Example:
    >>> proto = sklearn_to_onnx(pipeline, version.signature, opset=17)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from modelport.convert.onnx_io import declare_shapes
from modelport.core.errors import InvalidArgument, MissingDependency
from modelport.core.types import ModelSignature

DEFAULT_OPSET = 17
ML_OPSET = 3


def _skl2onnx() -> Any:
    try:
        import skl2onnx
        from skl2onnx.common import data_types
    except ImportError as e:
        raise MissingDependency.for_extra(
            "skl2onnx", "sklearn", "Converting scikit-learn models to ONNX"
        ) from e
    return skl2onnx, data_types


def _final_estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return _final_estimator(steps[-1][1]) if steps else model


def sklearn_to_onnx(model: Any, signature: ModelSignature, opset: int | None) -> Any:
    """Convert an estimator or pipeline; input named and shaped as in ``signature``."""
    skl2onnx, types = _skl2onnx()
    if len(signature.inputs) != 1:
        raise InvalidArgument("scikit-learn conversion takes models with one input")
    spec = signature.inputs[0]
    dims = [None, *(d if d >= 0 else None for d in spec.shape[1:])]
    if spec.datatype == "BYTES":
        initial = [(spec.name, types.StringTensorType(dims))]
    else:
        initial = [(spec.name, types.FloatTensorType(dims))]
    final = _final_estimator(model)
    options: dict[Any, Any] = {}
    if hasattr(final, "predict_proba") or hasattr(final, "classes_"):
        options[id(final)] = {"zipmap": False}
    target = opset or DEFAULT_OPSET
    try:
        proto = skl2onnx.convert_sklearn(
            model,
            initial_types=initial,
            options=options,
            target_opset={"": target, "ai.onnx.ml": ML_OPSET},
        )
    except Exception as e:
        raise InvalidArgument(
            f"skl2onnx cannot convert {type(model).__name__} at opset {target}: {e}"
        ) from e
    return declare_shapes(proto, signature)
