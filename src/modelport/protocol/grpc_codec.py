"""gRPC ``inference.GRPCInferenceService`` messages ↔ internal request/response types.

The message classes are the ones ``tritonclient`` ships (``tritonclient.grpc.service_pb2``),
so the server and the reference client share one descriptor pool; generating or loading
a second ``inference.*`` proto in the same process fails with "duplicate symbol".

Inputs arrive either as ``raw_input_contents`` (one little-endian blob per input, in
order — what ``tritonclient.grpc`` sends) or as typed ``contents`` (``fp32_contents``
…); a request may not mix the two. FP16 and BF16 have no typed field, so they need raw
contents. Responses always use ``raw_output_contents``, which every client reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument, MissingDependency
from modelport.core.types import InferenceRequest, InferenceResponse, RequestedOutput
from modelport.protocol.dtypes import (
    array_from_buffer,
    array_to_bytes,
    datatype_of,
    element_count,
    numpy_dtype,
)
from modelport.protocol.tensors import classify, select_outputs

try:
    from tritonclient.grpc import service_pb2 as pb
except ImportError as e:  # pragma: no cover - tritonclient is part of the serve extra
    raise MissingDependency.for_extra("tritonclient", "serve", "gRPC serving") from e

#: datatype → the ``InferTensorContents`` field that carries it when typed.
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_INT64 = (-(2**63), 2**63 - 1)


def parameters_from_grpc(params: Mapping[str, Any]) -> dict[str, Any]:
    """``map<string, InferParameter>`` → ``{name: bool | int | float | str}``.

    Example:
        >>> p = pb.ModelInferRequest(parameters={"priority": pb.InferParameter(int64_param=2)})
        >>> parameters_from_grpc(p.parameters)
        {'priority': 2}
    """
    out: dict[str, Any] = {}
    for key, p in params.items():
        which = p.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(p, which)
    return out


def parameter_to_grpc(value: Any) -> Any:
    """A Python scalar as an ``InferParameter`` (ints beyond int64 use ``uint64_param``).

    Example:
        >>> parameter_to_grpc(True).bool_param, parameter_to_grpc(2**63).uint64_param
        (True, 9223372036854775808)
    """
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, (int, np.integer)):
        v = int(value)
        if _INT64[0] <= v <= _INT64[1]:
            return pb.InferParameter(int64_param=v)
        if 0 <= v < 2**64:
            return pb.InferParameter(uint64_param=v)
        raise InvalidArgument(f"parameter value {v} does not fit in 64 bits")
    if isinstance(value, (float, np.floating)):
        return pb.InferParameter(double_param=float(value))
    if isinstance(value, str):
        return pb.InferParameter(string_param=value)
    raise InvalidArgument(f"parameter of type {type(value).__name__} has no gRPC form")


def request_from_grpc(msg: Any) -> InferenceRequest:
    """Decode a ``ModelInferRequest`` (raw or typed contents) into an InferenceRequest.

    The model name and version stay on the message (``msg.model_name``,
    ``msg.model_version``).

    Example:
        >>> m = pb.ModelInferRequest(model_name="iris")
        >>> t = m.inputs.add(name="x", datatype="FP32", shape=[1, 2])
        >>> t.contents.fp32_contents.extend([1.0, 2.0])
        >>> request_from_grpc(m).inputs["x"]
        array([[1., 2.]], dtype=float32)
    """
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidArgument(
            f"{len(raw)} raw_input_contents for {len(msg.inputs)} inputs; "
            "send one per input, in order"
        )
    if not msg.inputs:
        raise InvalidArgument("the request has no inputs")
    inputs: dict[str, np.ndarray] = {}
    for i, t in enumerate(msg.inputs):
        if not t.name:
            raise InvalidArgument("each input needs a name")
        what = f"input {t.name!r}"
        if t.name in inputs:
            raise InvalidArgument(f"{what} appears more than once")
        shape = list(t.shape)
        element_count(shape, what)
        typed = t.HasField("contents") and t.contents.ByteSize() > 0
        if raw:
            if typed:
                raise InvalidArgument(
                    f"{what} has typed contents while the request uses raw_input_contents"
                )
            numpy_dtype(t.datatype, what)
            inputs[t.name] = array_from_buffer(raw[i], t.datatype, shape, what)
        else:
            inputs[t.name] = _from_contents(t, shape, what)
    outputs = None
    if msg.outputs:
        outputs = []
        for o in msg.outputs:
            params = parameters_from_grpc(o.parameters)
            top = params.pop("classification", 0)
            if type(top) is not int or top < 0:
                raise InvalidArgument(
                    f"output {o.name!r}: classification must be a positive integer"
                )
            params.pop("binary_data", None)  # an HTTP notion; gRPC is always binary
            outputs.append(RequestedOutput(o.name, classification=top, parameters=params))
    return InferenceRequest(
        inputs=inputs,
        id=msg.id or None,
        parameters=parameters_from_grpc(msg.parameters),
        outputs=outputs,
    )


def _from_contents(t: Any, shape: list[int], what: str) -> np.ndarray:
    count = element_count(shape, what)
    field = CONTENTS_FIELD.get(t.datatype)
    if field is None:
        numpy_dtype(t.datatype, what)  # unknown datatype → its own message
        raise InvalidArgument(
            f"{what}: {t.datatype} has no typed contents field; use raw_input_contents"
        )
    values = getattr(t.contents, field)
    if len(values) != count:
        raise InvalidArgument(
            f"{what}: {len(values)} values in {field} for shape {shape}, which needs {count}"
        )
    if t.datatype == "BYTES":
        out = np.empty(count, dtype=object)
        out[:] = list(values)
        return out.reshape(shape)
    dtype = numpy_dtype(t.datatype, what)
    narrow_ints = field in ("int_contents", "uint_contents")
    wide = np.array(values, dtype=np.int64 if narrow_ints else dtype)
    if narrow_ints and wide.size:
        info = np.iinfo(dtype)
        if int(wide.min()) < info.min or int(wide.max()) > info.max:
            raise InvalidArgument(f"{what}: a value is out of {t.datatype} range")
    return wide.astype(dtype, copy=False).reshape(shape)


def response_to_grpc(response: InferenceResponse, request: InferenceRequest | None = None) -> Any:
    """Encode a response as ``ModelInferResponse`` with ``raw_output_contents``.

    Example:
        >>> resp = InferenceResponse("m", "1", {"y": np.array([1, 2], np.int64)}, id="r1")
        >>> msg = response_to_grpc(resp)
        >>> msg.outputs[0].datatype, list(msg.outputs[0].shape), len(msg.raw_output_contents[0])
        ('INT64', [2], 16)
    """
    msg = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version or "",
        id=response.id or "",
    )
    for key, value in response.parameters.items():
        msg.parameters[key].CopyFrom(parameter_to_grpc(value))
    for name, array, ro in select_outputs(response, request):
        if ro is not None and ro.classification > 0:
            array = classify(array, ro.classification, f"output {name!r}")
        msg.outputs.add(name=name, datatype=datatype_of(array), shape=array.shape)
        msg.raw_output_contents.append(bytes(array_to_bytes(array)))
    return msg


# ---------------------------------------------------------------------------- client side


def request_to_grpc(
    model_name: str, model_version: str | None, request: InferenceRequest, *, raw: bool = True
) -> Any:
    """Encode an InferenceRequest as ``ModelInferRequest`` (raw or typed contents).

    Example:
        >>> req = InferenceRequest({"x": np.ones((1, 2), np.float32)})
        >>> request_from_grpc(request_to_grpc("m", None, req, raw=False)).inputs["x"].shape
        (1, 2)
    """
    msg = pb.ModelInferRequest(
        model_name=model_name, model_version=model_version or "", id=request.id or ""
    )
    for key, value in request.parameters.items():
        msg.parameters[key].CopyFrom(parameter_to_grpc(value))
    for name, array in request.inputs.items():
        datatype = datatype_of(array)
        t = msg.inputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            msg.raw_input_contents.append(bytes(array_to_bytes(array)))
            continue
        field = CONTENTS_FIELD.get(datatype)
        if field is None:
            raise InvalidArgument(f"input {name!r}: {datatype} needs raw contents")
        flat = array.reshape(-1)
        if datatype == "BYTES":
            values: list[Any] = [x if isinstance(x, bytes) else str(x).encode() for x in flat]
        else:
            values = flat.tolist()
        getattr(t.contents, field).extend(values)
    for ro in request.outputs or ():
        o = msg.outputs.add(name=ro.name)
        if ro.classification:
            o.parameters["classification"].CopyFrom(parameter_to_grpc(ro.classification))
    return msg


def response_from_grpc(msg: Any) -> InferenceResponse:
    """Decode a ``ModelInferResponse`` (raw or typed output contents).

    Example:
        >>> resp = InferenceResponse("m", "1", {"y": np.array([1.5], np.float32)})
        >>> response_from_grpc(response_to_grpc(resp)).outputs["y"]
        array([1.5], dtype=float32)
    """
    raw = msg.raw_output_contents
    outputs: dict[str, np.ndarray] = {}
    for i, t in enumerate(msg.outputs):
        shape = list(t.shape)
        what = f"output {t.name!r}"
        if i < len(raw):
            outputs[t.name] = array_from_buffer(raw[i], t.datatype, shape, what)
        else:
            outputs[t.name] = _from_contents(t, shape, what)
    return InferenceResponse(
        model_name=msg.model_name,
        model_version=msg.model_version,
        outputs=outputs,
        id=msg.id or None,
        parameters=parameters_from_grpc(msg.parameters),
    )
