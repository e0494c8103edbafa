"""JSON tensor data ↔ numpy, with safe coercion only, and top-N classification.

Rules for JSON ``data`` (row-major, nested or flat, the element count must equal the
product of the shape):

=============  ===================================================================
target          accepted JSON elements
=============  ===================================================================
BOOL            ``true``/``false`` only (no 0/1)
INT*/UINT*      integers in the type's range; integral floats such as ``3.0`` (JSON
                has one number type); never ``3.5``, booleans or strings
FP32/FP64       integers and floats (a float outside FP32's range is refused, not
                turned into ``inf``); never booleans or strings
FP16/BF16       none: send them with the binary tensor extension (``allow_half`` lets
                TF Serving, whose JSON carries half floats, convert numbers)
BYTES           strings (sent as UTF-8) or already-decoded ``bytes``
=============  ===================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument, ModelExecutionError
from modelport.core.types import InferenceRequest, InferenceResponse, RequestedOutput
from modelport.protocol.dtypes import NUMPY_DTYPES, element_count, numpy_dtype

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def array_from_json(
    data: Any,
    datatype: str,
    shape: list[int] | None,
    what: str = "tensor",
    *,
    may_hold_bools: bool = True,
    allow_half: bool = False,
) -> np.ndarray:
    """Build the array of ``shape`` and ``datatype`` from JSON ``data``.

    ``shape`` None takes the shape from the nesting of ``data`` (TF Serving has no
    shapes on the wire). ``may_hold_bools=False`` is the caller's hint that the body
    holds no boolean tokens inside data arrays; it skips the per-element check that
    tells ``true`` from ``1`` (numpy would silently read ``true`` as 1).

    Example:
        >>> array_from_json([[1, 2], [3, 4.5]], "FP32", [2, 2])
        array([[1. , 2. ],
               [3. , 4.5]], dtype=float32)
        >>> array_from_json(["a", 1], "FP32", [2], "input 'x'")
        Traceback (most recent call last):
        ...
        modelport.core.errors.InvalidArgument: input 'x': expected FP32 numbers, got strings
    """
    count = -1 if shape is None else element_count(shape, what)
    dtype = numpy_dtype(datatype, what)
    if datatype in ("FP16", "BF16") and not allow_half:
        raise InvalidArgument(
            f"{what}: {datatype} data has no JSON form; send it as binary "
            "(binary_data_size, Inference-Header-Content-Length) or use gRPC raw contents"
        )
    if not isinstance(data, list):
        if not shape and data is not None and not isinstance(data, (dict, list)):
            if shape is None:
                one = array_from_json([data], datatype, [1], what, allow_half=allow_half)
                return one.reshape(())
            data = [data]
        else:
            raise InvalidArgument(f"{what}: data must be a JSON array")
    if datatype == "BYTES":
        return _bytes_from_json(data, count, shape, what)
    try:
        arr = np.array(data)
    except (ValueError, TypeError, OverflowError):
        raise InvalidArgument(
            f"{what}: data is ragged or mixes types; expected {datatype} elements"
            + ("" if shape is None else f" for shape {list(shape)}")
        ) from None
    if shape is None:
        shape = list(arr.shape)
    elif arr.size != count:
        raise InvalidArgument(
            f"{what}: {arr.size} elements of data for shape {list(shape)}, which needs {count}"
        )
    kind = arr.dtype.kind
    if kind in "US":
        raise InvalidArgument(f"{what}: expected {_expect(datatype)}, got strings")
    if kind == "O" or kind not in "biuf":
        raise InvalidArgument(f"{what}: expected {_expect(datatype)}, got mixed or null elements")
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidArgument(f"{what}: expected BOOL true/false, got numbers")
        return arr.reshape(shape)
    if kind == "b" or (may_hold_bools and arr.size and _has_bool(data)):
        raise InvalidArgument(f"{what}: expected {_expect(datatype)}, got booleans")
    if dtype.kind == "f":
        if dtype.itemsize < 8 and arr.size:
            limit = _FLOAT32_MAX if datatype == "FP32" else float(np.finfo(dtype).max)
            if arr.ndim == 1 and arr.size <= 64:  # Python's max beats two numpy reductions
                big = max(max(data), -min(data))
            else:
                big = float(np.abs(arr).max())
            if big > limit:
                raise InvalidArgument(f"{what}: a value is out of {datatype} range")
        return arr.astype(dtype).reshape(shape)
    # integer target
    if kind == "f" and arr.size and not bool(np.all(np.mod(arr, 1) == 0)):
        raise InvalidArgument(f"{what}: expected {_expect(datatype)}, got fractional numbers")
    info = np.iinfo(dtype)
    out_of_range = InvalidArgument(
        f"{what}: a value is out of {datatype} range [{info.min}, {info.max}]"
    )
    if kind == "f":
        # numpy made floats (integral ones, or int64 mixed with values past 2**63):
        # convert the JSON numbers again, exactly; numpy raises OverflowError out of range
        try:
            return np.array(data, dtype=dtype).reshape(shape)
        except OverflowError:
            raise out_of_range from None
    if arr.size and (bool(arr.min() < info.min) or bool(arr.max() > info.max)):
        raise out_of_range
    return arr.astype(dtype).reshape(shape)


def _expect(datatype: str) -> str:
    return "BOOL true/false" if datatype == "BOOL" else f"{datatype} numbers"


def _has_bool(data: list[Any]) -> bool:
    if data and isinstance(data[0], list):
        flat = np.array(data, dtype=object).reshape(-1)
        return any(type(x) is bool for x in flat)
    return any(type(x) is bool for x in data)


def _bytes_from_json(data: list[Any], count: int, shape: list[int] | None, what: str) -> np.ndarray:
    if data and isinstance(data[0], list):
        try:
            nested = np.array(data, dtype=object)
        except ValueError:
            raise InvalidArgument(f"{what}: BYTES data is ragged") from None
        items: list[Any] = list(nested.reshape(-1))
        if shape is None:
            shape = list(nested.shape)
    else:
        items = data
        if shape is None:
            shape = [len(items)]
            count = len(items)
    if count < 0:
        count = len(items)
    if len(items) != count:
        raise InvalidArgument(
            f"{what}: {len(items)} elements of data for shape {list(shape)}, which needs {count}"
        )
    out = np.empty(count, dtype=object)
    for i, s in enumerate(items):
        if type(s) is str:
            out[i] = s.encode("utf-8")
        elif type(s) is bytes:
            out[i] = s
        else:
            raise InvalidArgument(f"{what}: BYTES elements must be strings")
    return out.reshape(shape)


def array_to_json(array: np.ndarray) -> Any:
    """The JSON ``data`` of an output: a flat row-major list (or array orjson can write).

    Numeric arrays are returned as contiguous numpy arrays, which
    :func:`modelport.protocol.jsonio.dumps` serialises without a Python list. BYTES
    elements become UTF-8 strings; BF16 is widened to float.

    Example:
        >>> array_to_json(np.array([[b"a"], [b"b"]], dtype=object))
        ['a', 'b']
    """
    if array.dtype.kind in "OSU":
        return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in array.reshape(-1)]
    if array.dtype == NUMPY_DTYPES["BF16"] and array.dtype.kind != "u":
        array = array.astype(np.float32)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).reshape(-1)


def bytes_utf8(array: np.ndarray) -> bool:
    """True when every element of a BYTES array is valid UTF-8 (so JSON can carry it)."""
    try:
        for x in array.reshape(-1):
            if isinstance(x, bytes):
                x.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def classify(array: np.ndarray, top: int, what: str = "output") -> np.ndarray:
    """Triton's classification extension: the top ``top`` classes as ``"score:index"``.

    A rank ≥ 2 output is read as ``[batch, classes…]`` and gives ``[batch, top]``; a
    rank-1 output gives ``[top]``. Scores are printed like C's ``%f``; ``top`` is capped
    at the number of classes. Ties keep the lower index first.

    Example:
        >>> classify(np.array([[0.1, 0.7, 0.2]], dtype=np.float32), 2)
        array([[b'0.700000:1', b'0.200000:2']], dtype=object)
    """
    if array.dtype.kind not in "biuf":
        raise InvalidArgument(f"{what}: classification needs a numeric output, not BYTES")
    if top < 1:
        raise InvalidArgument(f"{what}: classification count must be at least 1")
    rows = array.reshape(1, -1) if array.ndim <= 1 else array.reshape(array.shape[0], -1)
    k = min(top, rows.shape[1])
    order = np.argsort(-rows.astype(np.float64), axis=1, kind="stable")[:, :k]
    out = np.empty(order.shape, dtype=object)
    for r in range(order.shape[0]):
        for c in range(k):
            idx = int(order[r, c])
            out[r, c] = f"{float(rows[r, idx]):f}:{idx}".encode()
    return out.reshape(k) if array.ndim <= 1 else out


def select_outputs(
    response: InferenceResponse, request: InferenceRequest | None
) -> list[tuple[str, np.ndarray, RequestedOutput | None]]:
    """The outputs to send: those the request named, in its order, else all of them.

    Example:
        >>> resp = InferenceResponse("m", "1", {"a": np.zeros(1), "b": np.ones(1)})
        >>> [n for n, _, _ in select_outputs(resp, InferenceRequest({}, outputs=[RequestedOutput("b")]))]
        ['b']
    """  # noqa: E501
    if request is None or request.outputs is None:
        return [(n, a, None) for n, a in response.outputs.items()]
    out: list[tuple[str, np.ndarray, RequestedOutput | None]] = []
    for ro in request.outputs:
        array = response.outputs.get(ro.name)
        if array is None:
            raise ModelExecutionError(f"the model did not produce output {ro.name!r}")
        out.append((ro.name, array, ro))
    return out
