"""TensorFlow Serving's REST API: ``:predict`` bodies, model status and metadata JSON.

TF Serving's JSON carries no datatypes or shapes: values are typed by the model's
signature and shaped by their nesting. Two request forms:

- **row** — ``{"instances": [...]}``: one element per example; for a one-input model an
  element is the bare value, otherwise a ``{input_name: value}`` object. Answered with
  ``{"predictions": [...]}`` (one value per example, or one object per example when the
  model has several outputs).
- **columnar** — ``{"inputs": tensor}`` or ``{"inputs": {name: tensor}}``. Answered with
  ``{"outputs": tensor}`` or ``{"outputs": {name: tensor}}``.

Binary strings travel as ``{"b64": "..."}``; outputs whose name ends in ``_bytes`` (and
any that are not UTF-8) are answered that way. ``NaN``/``Infinity`` tokens are accepted
in requests, as TF Serving does.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument, ModelExecutionError
from modelport.core.types import InferenceRequest, InferenceResponse, ModelSignature, TensorSpec
from modelport.protocol import jsonio
from modelport.protocol.tensors import array_from_json

ROW = "row"
COLUMNAR = "columnar"
SIGNATURE_NAME = "serving_default"

#: Open Inference Protocol datatype → TensorFlow ``DataType`` enum name.
TF_DTYPES = {
    "BOOL": "DT_BOOL",
    "UINT8": "DT_UINT8",
    "UINT16": "DT_UINT16",
    "UINT32": "DT_UINT32",
    "UINT64": "DT_UINT64",
    "INT8": "DT_INT8",
    "INT16": "DT_INT16",
    "INT32": "DT_INT32",
    "INT64": "DT_INT64",
    "FP16": "DT_HALF",
    "FP32": "DT_FLOAT",
    "FP64": "DT_DOUBLE",
    "BF16": "DT_BFLOAT16",
    "BYTES": "DT_STRING",
}

#: modelport's model states (repository index) → TF Serving's ``ModelVersionStatus.State``.
TF_STATES = {
    "READY": "AVAILABLE",
    "LOADING": "LOADING",
    "UNLOADING": "UNLOADING",
    "UNAVAILABLE": "END",
    "UNKNOWN": "UNKNOWN",
}


def decode_predict(
    body: bytes | memoryview, signature: ModelSignature, *, max_depth: int = 100
) -> tuple[InferenceRequest, str]:
    """Decode a ``:predict`` body; return the request and its form (``"row"``/``"columnar"``).

    Example:
        >>> sig = ModelSignature((TensorSpec("x", "FP32", (-1, 2)),), ())
        >>> req, form = decode_predict(b'{"instances": [[1, 2], [3, 4]]}', sig)
        >>> form, req.inputs["x"].shape, req.inputs["x"].dtype
        ('row', (2, 2), dtype('float32'))
    """
    doc = jsonio.loads(body, max_depth=max_depth, allow_nan=True)
    if not isinstance(doc, dict):
        raise InvalidArgument("the request body must be a JSON object")
    sig_name = doc.get("signature_name")
    if sig_name not in (None, "", SIGNATURE_NAME):
        raise InvalidArgument(
            f"serving signature name {str(sig_name)[:60]!r} not found; "
            f"the model has {SIGNATURE_NAME!r}"
        )
    has_rows, has_cols = "instances" in doc, "inputs" in doc
    if has_rows == has_cols:
        raise InvalidArgument("the body must have exactly one of 'instances' or 'inputs'")
    if has_rows:
        return InferenceRequest(inputs=_rows(doc["instances"], signature)), ROW
    return InferenceRequest(inputs=_columns(doc["inputs"], signature)), COLUMNAR


def _rows(instances: Any, signature: ModelSignature) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise InvalidArgument("'instances' must be a non-empty array")
    specs = signature.inputs
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not named:
        if len(specs) != 1:
            raise InvalidArgument(
                f"the model takes {len(specs)} inputs {[s.name for s in specs]}: "
                "each instance must be an object naming them"
            )
        return {specs[0].name: _tensor(instances, specs[0])}
    columns: dict[str, list[Any]] = {}
    for i, row in enumerate(instances):
        if not isinstance(row, dict) or _is_b64(row):
            raise InvalidArgument(f"instance {i} must be an object like instance 0")
        if i and row.keys() != columns.keys():
            raise InvalidArgument(f"instance {i} names other inputs than instance 0")
        for name, value in row.items():
            columns.setdefault(name, []).append(value)
    return _named(columns, signature)


def _columns(inputs: Any, signature: ModelSignature) -> dict[str, np.ndarray]:
    specs = signature.inputs
    if isinstance(inputs, dict) and not _is_b64(inputs):
        return _named(inputs, signature)
    if len(specs) != 1:
        raise InvalidArgument(
            f"the model takes {len(specs)} inputs {[s.name for s in specs]}: "
            "'inputs' must be an object naming them"
        )
    return {specs[0].name: _tensor(inputs, specs[0])}


def _named(values: Mapping[str, Any], signature: ModelSignature) -> dict[str, np.ndarray]:
    out = {}
    for name, value in values.items():
        out[name] = _tensor(value, signature.input(name))
    return out


def _tensor(value: Any, spec: TensorSpec) -> np.ndarray:
    what = f"input {spec.name!r}"
    if spec.datatype == "BYTES":
        value = _unb64(value, what)
    return array_from_json(value, spec.datatype, None, what, allow_half=True)


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _unb64(value: Any, what: str) -> Any:
    if isinstance(value, list):
        return [_unb64(v, what) for v in value]
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidArgument(f"{what}: invalid base64 in a b64 value") from None
    return value


def encode_predict(response: InferenceResponse, form: str) -> bytes:
    """Encode outputs as TF Serving does: ``predictions`` (row) or ``outputs`` (columnar).

    Example:
        >>> resp = InferenceResponse("m", "1", {"y": np.array([[0.5], [1.5]], np.float32)})
        >>> encode_predict(resp, "row")
        b'{"predictions":[[0.5],[1.5]]}'
        >>> encode_predict(resp, "columnar")
        b'{"outputs":[[0.5],[1.5]]}'
    """
    outs = {name: _json_value(name, arr) for name, arr in response.outputs.items()}
    if form == COLUMNAR:
        if len(outs) == 1:
            return jsonio.dumps({"outputs": next(iter(outs.values()))})
        return jsonio.dumps({"outputs": outs})
    if len(outs) == 1:
        return jsonio.dumps({"predictions": next(iter(outs.values()))})
    batch = {len(v) if isinstance(v, (list, np.ndarray)) else -1 for v in outs.values()}
    if len(batch) != 1 or -1 in batch:
        raise ModelExecutionError(
            "the model's outputs do not share a batch dimension, so they cannot be "
            "answered as rows; send the request in columnar form ('inputs')"
        )
    n = batch.pop()
    rows = [{name: v[i] for name, v in outs.items()} for i in range(n)]
    return jsonio.dumps({"predictions": rows})


def _json_value(name: str, array: np.ndarray) -> Any:
    if array.dtype.kind in "OSU":
        flat = [_string(name, x) for x in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    if array.dtype.kind == "V" or array.dtype.byteorder == ">":  # bfloat16, big-endian
        array = array.astype(np.float32)
    # onnxruntime's int64 arrays use the C "long long" dtype, whose scalars (row items)
    # are numpy.longlong, which orjson does not know; the equivalent int64 view has
    # numpy.int64 scalars (no copy)
    canonical = np.dtype(array.dtype.str)
    if array.dtype.type is not canonical.type:
        array = array.view(canonical)
    return np.ascontiguousarray(array)


def _string(name: str, item: Any) -> Any:
    raw = item if isinstance(item, bytes) else str(item).encode()
    if not name.endswith("_bytes"):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {"b64": base64.b64encode(raw).decode("ascii")}


def model_status(entries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """TF Serving's model status JSON from repository-index entries.

    Each entry has ``version``, ``state`` (READY, LOADING, UNLOADING, UNAVAILABLE,
    UNKNOWN) and optionally ``reason``.

    Example:
        >>> model_status([{"version": "3", "state": "READY", "reason": ""}])
        {'model_version_status': [{'version': '3', 'state': 'AVAILABLE', 'status': {'error_code': 'OK', 'error_message': ''}}]}
    """  # noqa: E501
    out = []
    for e in entries:
        state = str(e.get("state", "UNKNOWN"))
        reason = str(e.get("reason") or "")
        failed = state == "UNAVAILABLE" and bool(reason)
        out.append(
            {
                "version": str(e.get("version", "")),
                "state": TF_STATES.get(state, "UNKNOWN"),
                "status": {
                    "error_code": "UNKNOWN" if failed else "OK",
                    "error_message": reason if failed else "",
                },
            }
        )
    return {"model_version_status": out}


def model_metadata(name: str, version: str, signature: ModelSignature) -> dict[str, Any]:
    """TF Serving's ``/metadata`` JSON (``signature_def`` with DT_* dtypes, dims as strings).

    Example:
        >>> sig = ModelSignature((TensorSpec("x", "FP32", (-1, 4)),), ())
        >>> md = model_metadata("iris", "1", sig)
        >>> md["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["x"]
        {'dtype': 'DT_FLOAT', 'tensor_shape': {'dim': [{'size': '-1', 'name': ''}, {'size': '4', 'name': ''}], 'unknown_rank': False}, 'name': 'x:0'}
    """  # noqa: E501

    def tensors(specs: tuple[TensorSpec, ...]) -> dict[str, Any]:
        return {
            s.name: {
                "dtype": TF_DTYPES[s.datatype],
                "tensor_shape": {
                    "dim": [{"size": str(d), "name": ""} for d in s.shape],
                    "unknown_rank": False,
                },
                "name": f"{s.name}:0",
            }
            for s in specs
        }

    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    SIGNATURE_NAME: {
                        "inputs": tensors(signature.inputs),
                        "outputs": tensors(signature.outputs),
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }
