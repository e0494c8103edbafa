"""KServe V2 / Open Inference Protocol REST bodies, with Triton's binary tensor extension.

Server side: :func:`decode_request` turns an ``/infer`` body into an
:class:`~modelport.core.types.InferenceRequest`; :func:`encode_response` turns the
answer back into ``(body, json_header_length, content_type)``. Client side (used by
modelport's own client and tests): :func:`encode_request` and :func:`decode_response`.

Binary bodies are a JSON header followed by the raw tensors of every input (or output)
that carries ``binary_data_size``, in order; the JSON length travels in the HTTP header
``Inference-Header-Content-Length`` (see :func:`parse_header_length`). Binary input
tensors are zero-copy, read-only views of the body.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument
from modelport.core.types import (
    InferenceRequest,
    InferenceResponse,
    ModelSignature,
    RequestedOutput,
)
from modelport.protocol import jsonio
from modelport.protocol.dtypes import (
    ITEM_SIZES,
    NUMPY_DTYPES,
    array_from_buffer,
    array_to_bytes,
    datatype_of,
    element_count,
)
from modelport.protocol.tensors import (
    array_from_json,
    array_to_json,
    bytes_utf8,
    classify,
    select_outputs,
)

JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"
#: The HTTP header that carries the JSON length of a binary body.
HEADER_LENGTH_HEADER = "Inference-Header-Content-Length"
_INT_MAX = 2**31 - 1
_SCALARS = (str, int, float, bool)


def parse_header_length(value: str | bytes | None, body_length: int) -> int | None:
    """Validate an ``Inference-Header-Content-Length`` header value.

    None when the header is absent; otherwise a decimal integer in ``[0, body_length]``
    (and at most INT_MAX), else :class:`InvalidArgument`.

    Example:
        >>> parse_header_length(b"42", 100)
        42
        >>> parse_header_length("200", 100)
        Traceback (most recent call last):
        ...
        modelport.core.errors.InvalidArgument: Inference-Header-Content-Length 200 is ...
    """
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 10 or int(text) > _INT_MAX:
        raise InvalidArgument(
            f"{HEADER_LENGTH_HEADER} must be a non-negative integer up to {_INT_MAX}"
        )
    n = int(text)
    if n > body_length:
        raise InvalidArgument(
            f"{HEADER_LENGTH_HEADER} {n} is larger than the body ({body_length} bytes)"
        )
    return n


def decode_request(
    body: bytes | memoryview,
    header_length: int | None = None,
    *,
    signature: ModelSignature | None = None,
    max_depth: int = jsonio.DEFAULT_MAX_DEPTH,
) -> InferenceRequest:
    """Decode a V2 ``/infer`` body (JSON, or JSON header + binary tensors).

    ``header_length`` is the parsed ``Inference-Header-Content-Length`` (None: the body
    is all JSON). ``0`` means a raw binary request — the body is the one input of the
    model — which needs the model's ``signature``.

    Example:
        >>> req = decode_request(b'{"inputs":[{"name":"x","shape":[1,2],'
        ...                      b'"datatype":"FP32","data":[1,2]}]}')
        >>> req.inputs["x"]
        array([[1., 2.]], dtype=float32)
    """
    size = len(body)
    if header_length is None:
        header_length = size
    elif header_length < 0 or header_length > size:
        raise InvalidArgument(
            f"{HEADER_LENGTH_HEADER} {header_length} is outside the body (0..{size} bytes)"
        )
    elif header_length == 0:
        if signature is None:
            raise InvalidArgument(f"{HEADER_LENGTH_HEADER}: 0 (raw binary) needs the model")
        return decode_raw_request(body, signature)
    view = memoryview(body)
    head_bytes = view[:header_length] if header_length != size else body
    head = jsonio.loads(head_bytes, max_depth=max_depth, members=_members)
    if not isinstance(head, dict):
        raise InvalidArgument("the request body must be a JSON object")
    bools_in_data: bool | None = None  # computed on the first JSON numeric tensor
    params = _parameters(head.get("parameters"), "request")
    binary_output = params.pop("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InvalidArgument("parameter 'binary_data_output' must be a boolean")
    rid = head.get("id")
    if rid is not None and not isinstance(rid, str):
        raise InvalidArgument("'id' must be a string")

    raw_inputs = head.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidArgument("'inputs' must be a non-empty array of tensors")
    inputs: dict[str, np.ndarray] = {}
    offset = header_length
    for raw in raw_inputs:
        if not isinstance(raw, dict):
            raise InvalidArgument("each input must be a JSON object")
        name = _name(raw.get("name"), "input")
        what = f"input {name!r}"
        if name in inputs:
            raise InvalidArgument(f"{what} appears more than once")
        datatype = raw.get("datatype")
        shape: list[int] = raw.get("shape")  # type: ignore[assignment]  # checked on use
        tparams = _parameters(raw.get("parameters"), what)
        nbytes = tparams.get("binary_data_size")
        if nbytes is not None:
            if "data" in raw:
                raise InvalidArgument(f"{what} has both 'data' and binary_data_size")
            if type(nbytes) is not int or nbytes < 0:
                raise InvalidArgument(f"{what}: binary_data_size must be a non-negative integer")
            if nbytes > size - offset:
                raise InvalidArgument(
                    f"{what}: binary_data_size {nbytes} exceeds the {size - offset} bytes left"
                )
            if not isinstance(datatype, str) or (
                datatype not in ITEM_SIZES and datatype != "BYTES"
            ):
                raise InvalidArgument(f"{what}: unknown datatype {str(datatype)[:40]!r}")
            inputs[name] = array_from_buffer(view[offset : offset + nbytes], datatype, shape, what)
            offset += nbytes
        else:
            if "data" not in raw:
                raise InvalidArgument(f"{what} has neither 'data' nor binary_data_size")
            if not isinstance(datatype, str):
                raise InvalidArgument(f"{what}: 'datatype' must be a string")
            if bools_in_data is None:
                # booleans that may sit inside data arrays (numpy would read true as 1)
                tokens = jsonio.count_bool_tokens(head_bytes)
                bools_in_data = tokens > 0 and tokens > sum(
                    1 for d in _known_dicts(head) for v in d.values() if type(v) is bool
                )
            inputs[name] = array_from_json(
                raw["data"], datatype, shape, what, may_hold_bools=bools_in_data
            )
    if offset != size:
        raise InvalidArgument(
            f"the body has {size - offset} bytes after the last binary tensor "
            "(binary_data_size values do not add up to the body length)"
        )
    return InferenceRequest(
        inputs=inputs,
        id=rid,
        parameters=params,
        outputs=_requested_outputs(head.get("outputs")),
        binary_output=binary_output,
    )


def decode_raw_request(body: bytes | memoryview, signature: ModelSignature) -> InferenceRequest:
    """Decode a raw binary request (``Inference-Header-Content-Length: 0``).

    The body is the single input's bytes. A leading ``-1`` dimension becomes 1 (batch
    of one); one other ``-1`` is inferred from the size. A BYTES input is one element,
    the whole body. All outputs are returned binary.

    Example:
        >>> from modelport.core.types import TensorSpec
        >>> sig = ModelSignature((TensorSpec("x", "FP32", (-1, 2)),), ())
        >>> decode_raw_request(np.ones(2, np.float32).tobytes(), sig).inputs["x"].shape
        (1, 2)
    """
    if len(signature.inputs) != 1:
        raise InvalidArgument("a raw binary request needs a model with exactly one input")
    spec = signature.inputs[0]
    what = f"input {spec.name!r}"
    if spec.datatype == "BYTES":
        arr = np.empty(1, dtype=object)
        arr[0] = bytes(body)
        return InferenceRequest(inputs={spec.name: arr}, binary_output=True)
    dims = list(spec.shape)
    if len(dims) >= 2 and dims[0] == -1:
        dims[0] = 1
    unknown = [i for i, d in enumerate(dims) if d == -1]
    if len(unknown) > 1:
        raise InvalidArgument(f"{what}: a raw binary request allows one variable dimension")
    itemsize = ITEM_SIZES[spec.datatype]
    if unknown:
        known = itemsize * element_count([d for d in dims if d != -1], what)
        if known == 0 or len(body) % known:
            raise InvalidArgument(f"{what}: {len(body)} bytes do not fit shape {list(spec.shape)}")
        dims[unknown[0]] = len(body) // known
    arr = array_from_buffer(body, spec.datatype, dims, what)
    return InferenceRequest(inputs={spec.name: arr}, binary_output=True)


def encode_response(
    response: InferenceResponse, request: InferenceRequest | None = None
) -> tuple[bytes, int | None, str]:
    """Encode a response: ``(body, json_header_length or None, content_type)``.

    Outputs are those the request named (in its order) or all; each is binary when its
    ``binary_data`` says so, else when the request's ``binary_data_output`` does.
    ``classification: N`` turns an output into its top-N ``"score:index"`` BYTES. A
    BYTES output that is not valid UTF-8 is sent binary (JSON cannot carry it).

    Example:
        >>> resp = InferenceResponse("m", "1", {"y": np.array([1.5], np.float32)})
        >>> body, header_length, content_type = encode_response(resp)
        >>> body[-56:], header_length, content_type
        (b'"name":"y","datatype":"FP32","shape":[1],"data":[1.5]}]}', None, 'application/json')
    """
    default_binary = request.binary_output if request is not None else False
    chunks: list[bytes | memoryview] = []
    entries: list[dict[str, Any]] = []
    if request is None or request.outputs is None:
        plain = _plain_outputs(response.outputs, default_binary)
        if plain is not None:
            return _finish(response, *plain)
    for name, array, ro in select_outputs(response, request):
        if ro is not None and ro.classification > 0:
            array = classify(array, ro.classification, f"output {name!r}")
        binary = ro.binary if ro is not None and ro.binary is not None else default_binary
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if not binary and datatype == "BYTES" and not bytes_utf8(array):
            binary = True
        if binary:
            raw = array_to_bytes(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array_to_json(array)
        entries.append(entry)
    return _finish(response, entries, chunks)


def _plain_outputs(
    outputs: dict[str, np.ndarray], binary: bool
) -> tuple[list[dict[str, Any]], list[bytes | memoryview]] | None:
    """The entries and binary chunks of all outputs when each is a contiguous,
    little-endian numeric array (the common answer); None when one is not."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    for name, array in outputs.items():
        datatype = _PLAIN_DATATYPES.get(array.dtype)
        if datatype is None or not array.flags.c_contiguous:
            return None
        if binary:
            raw = array.data.cast("B") if array.ndim else array.tobytes()
            entries.append(
                {
                    "name": name,
                    "datatype": datatype,
                    "shape": list(array.shape),
                    "parameters": {"binary_data_size": len(raw)},
                }
            )
            chunks.append(raw)
        else:
            entries.append(
                {
                    "name": name,
                    "datatype": datatype,
                    "shape": list(array.shape),
                    "data": array.reshape(-1),
                }
            )
    return entries, chunks


def _finish(
    response: InferenceResponse,
    entries: list[dict[str, Any]],
    chunks: list[bytes | memoryview],
) -> tuple[bytes, int | None, str]:
    head: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version:
        head["model_version"] = response.model_version
    if response.id is not None:
        head["id"] = response.id
    if response.parameters:
        head["parameters"] = response.parameters
    head["outputs"] = entries
    head_json = jsonio.dumps(head)
    if not chunks:
        return head_json, None, JSON_CONTENT_TYPE
    return b"".join([head_json, *chunks]), len(head_json), BINARY_CONTENT_TYPE


# numeric outputs written as they are: JSON numbers or raw little-endian bytes
_PLAIN_DATATYPES: dict[np.dtype[Any], str] = {
    dtype: t for t, dtype in NUMPY_DTYPES.items() if t not in ("BYTES", "BF16", "FP16")
}


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"each {what} needs a non-empty string 'name'")
    return value


def _parameters(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what}: 'parameters' must be a JSON object")
    for k, v in value.items():
        if not isinstance(v, _SCALARS):
            raise InvalidArgument(
                f"{what}: parameter {k[:60]!r} must be a string, number or boolean"
            )
    return dict(value)


def _known_dicts(head: Any) -> list[dict[str, Any]]:
    """Every JSON object a valid request has: the body, its tensors and parameters."""
    if not isinstance(head, dict):
        return []
    dicts = [head]
    params = head.get("parameters")
    if isinstance(params, dict):
        dicts.append(params)
    for key in ("inputs", "outputs"):
        tensors = head.get(key)
        if isinstance(tensors, list):
            for t in tensors:
                if isinstance(t, dict):
                    dicts.append(t)
                    p = t.get("parameters")
                    if isinstance(p, dict):
                        dicts.append(p)
    return dicts


def _members(head: Any) -> int:
    return sum(len(d) for d in _known_dicts(head))


def _requested_outputs(value: Any) -> list[RequestedOutput] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidArgument("'outputs' must be an array")
    outs: list[RequestedOutput] = []
    seen: set[str] = set()
    for raw in value:
        if not isinstance(raw, dict):
            raise InvalidArgument("each requested output must be a JSON object")
        name = _name(raw.get("name"), "requested output")
        if name in seen:
            raise InvalidArgument(f"output {name!r} is requested more than once")
        seen.add(name)
        params = _parameters(raw.get("parameters"), f"output {name!r}")
        binary = params.pop("binary_data", None)
        if binary is not None and not isinstance(binary, bool):
            raise InvalidArgument(f"output {name!r}: binary_data must be a boolean")
        top = params.pop("classification", 0)
        if type(top) is not int or top < 0:
            raise InvalidArgument(f"output {name!r}: classification must be a positive integer")
        outs.append(RequestedOutput(name, binary=binary, classification=top, parameters=params))
    return outs


# ---------------------------------------------------------------------------- client side


def encode_request(request: InferenceRequest, *, binary: bool = True) -> tuple[bytes, int | None]:
    """Encode a request body: ``(body, json_header_length or None)``.

    With ``binary`` every input travels as raw bytes after the JSON header (FP16/BF16
    always do); otherwise as JSON ``data``.

    Example:
        >>> body, n = encode_request(InferenceRequest({"x": np.ones((1, 2), np.float32)}))
        >>> n, len(body) - n
        (93, 8)
    """
    chunks: list[bytes | memoryview] = []
    entries = []
    for name, array in request.inputs.items():
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary or datatype in ("FP16", "BF16"):
            raw = array_to_bytes(array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array_to_json(array)
        entries.append(entry)
    head: dict[str, Any] = {}
    if request.id is not None:
        head["id"] = request.id
    params = dict(request.parameters)
    if request.binary_output:
        params["binary_data_output"] = True
    if params:
        head["parameters"] = params
    head["inputs"] = entries
    if request.outputs is not None:
        head["outputs"] = [_requested_output_json(ro) for ro in request.outputs]
    head_json = jsonio.dumps(head)
    if not chunks:
        return head_json, None
    return b"".join([head_json, *chunks]), len(head_json)


def _requested_output_json(ro: RequestedOutput) -> dict[str, Any]:
    params = dict(ro.parameters)
    if ro.binary is not None:
        params["binary_data"] = ro.binary
    if ro.classification:
        params["classification"] = ro.classification
    return {"name": ro.name, "parameters": params} if params else {"name": ro.name}


def decode_response(body: bytes, header_length: int | None = None) -> InferenceResponse:
    """Decode a V2 ``/infer`` response body (JSON or binary) into named arrays.

    Example:
        >>> resp = InferenceResponse("m", "1", {"y": np.arange(3, dtype=np.int64)})
        >>> body, n, _ = encode_response(resp, InferenceRequest({}, binary_output=True))
        >>> decode_response(body, n).outputs["y"]
        array([0, 1, 2])
    """
    size = len(body)
    hl = size if header_length is None else header_length
    if not 0 < hl <= size:
        raise InvalidArgument(f"{HEADER_LENGTH_HEADER} {hl} is outside the body")
    view = memoryview(body)
    head = jsonio.loads(view[:hl] if hl != size else body, what="response body")
    if not isinstance(head, dict) or not isinstance(head.get("outputs", []), list):
        raise InvalidArgument("the response body must be a JSON object with 'outputs'")
    outputs: dict[str, np.ndarray] = {}
    offset = hl
    for raw in head.get("outputs", []):
        name = _name(raw.get("name"), "output")
        what = f"output {name!r}"
        datatype, shape = raw.get("datatype"), raw.get("shape")
        nbytes = (raw.get("parameters") or {}).get("binary_data_size")
        if nbytes is not None:
            if type(nbytes) is not int or not 0 <= nbytes <= size - offset:
                raise InvalidArgument(f"{what}: bad binary_data_size")
            outputs[name] = array_from_buffer(view[offset : offset + nbytes], datatype, shape, what)
            offset += nbytes
        else:
            outputs[name] = array_from_json(raw.get("data"), datatype, shape, what, allow_half=True)
    return InferenceResponse(
        model_name=str(head.get("model_name", "")),
        model_version=str(head.get("model_version", "")),
        outputs=outputs,
        id=head.get("id"),
        parameters=dict(head.get("parameters") or {}),
    )
