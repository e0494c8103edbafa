"""A V2 request decoder compiled for one model signature: the hot path of ``/infer``.

:func:`modelport.protocol.v2.decode_request` followed by
:func:`modelport.protocol.validate.validate_request` handles every request a client
may send and explains every mistake. Most requests are the same few shapes, though:
``{"inputs": [{"name", "shape", "datatype", "data"}]}`` (optionally ``id`` and
``parameters.binary_data_output``), or the same header with ``binary_data_size``
tensors behind it, already of the model's datatypes. :func:`compile_decoder` builds,
once per loaded version, a function that decodes *and* validates exactly those in one
pass with no per-request lookups, and returns ``None`` for anything else — anything
unusual, and every malformed request — so the caller falls back to the general path,
which gives the same answer or the precise error. It never accepts a request the
general path refuses (``tests/protocol/test_v2_compiled.py`` checks both paths on the
same generated requests).

Hand-written for speed: this is where a microsecond model spends most of its time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from modelport.core.types import InferenceRequest, ModelSignature
from modelport.protocol.dtypes import NUMPY_DTYPES
from modelport.protocol.validate import DEFAULT_MAX_ELEMENTS

#: ``decoder(body, header_length)``: header_length as :func:`v2.decode_request` takes it.
Decoder = Callable[[bytes, int | None], InferenceRequest | None]

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_HEAD_KEYS = frozenset(("inputs", "id", "parameters"))
# bodies shorter than this are counted whole; longer ones skip their data arrays
_SMALL = 4096
_JSON_TENSOR_KEYS = frozenset(("name", "shape", "datatype", "data"))
_BINARY_TENSOR_KEYS = frozenset(("name", "shape", "datatype", "parameters"))
# numpy kinds a JSON array may come out as, per target kind: integers widen to float
# (as the general path does); floats never narrow to integers here
_JSON_KINDS = {"f": "iuf", "i": "iu", "u": "iu"}


class _Input:
    __slots__ = ("bounds", "datatype", "dtype", "fixed", "json_ok", "rank")

    def __init__(self, datatype: str, shape: tuple[int, ...]) -> None:
        self.datatype = datatype
        self.dtype: np.dtype[Any] = NUMPY_DTYPES[datatype]
        self.rank = len(shape)
        self.fixed = tuple((i, d) for i, d in enumerate(shape) if d != -1)
        # JSON numbers only for plain numeric types (FP16/BF16 have no JSON form)
        self.json_ok = self.dtype.kind in _JSON_KINDS and datatype not in ("FP16", "BF16")
        # the range JSON numbers must fall in (None: any; integers compared exactly)
        self.bounds: tuple[float, float] | tuple[int, int] | None = None
        if self.dtype.kind == "f" and self.dtype.itemsize < 8:
            limit = _FLOAT32_MAX if datatype == "FP32" else float(np.finfo(self.dtype).max)
            self.bounds = (-limit, limit)
        elif self.dtype.kind in "iu":
            info = np.iinfo(self.dtype)
            self.bounds = (int(info.min), int(info.max))


def compile_decoder(
    signature: ModelSignature, *, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> Decoder:
    """The fast decoder of one signature (see the module docstring).

    Example:
        >>> from modelport.core.types import TensorSpec
        >>> decode = compile_decoder(ModelSignature((TensorSpec("x", "FP32", (-1, 2)),), ()))
        >>> req = decode(b'{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}', None)
        >>> req.inputs["x"]
        array([[1., 2.]], dtype=float32)
        >>> decode(b'{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}', None)
    """  # noqa: E501
    specs: dict[str, _Input] = {}
    for spec in signature.inputs:
        if spec.datatype not in NUMPY_DTYPES or spec.datatype == "BYTES":
            return _never  # BYTES (and unknown) inputs always take the general path
        specs[spec.name] = _Input(spec.datatype, tuple(spec.shape))
    n_inputs = len(specs)
    if not n_inputs:
        return _never
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError

    def decode(body: bytes, header_length: int | None) -> InferenceRequest | None:
        size = len(body)
        binary = header_length is not None
        if binary:
            if not 0 < header_length < size:  # type: ignore[operator]
                return None
            head_raw = body[:header_length]
        else:
            head_raw = body
        try:
            head = loads(head_raw)
        except decode_error:
            return None
        if type(head) is not dict:
            return None
        members = len(head)
        if members > 1 and not head.keys() <= _HEAD_KEYS:
            return None
        raw_inputs = head.get("inputs")
        if type(raw_inputs) is not list or len(raw_inputs) != n_inputs:
            return None
        rid = head.get("id")
        if rid is not None and type(rid) is not str:
            return None
        binary_output = False
        bool_tokens = 0
        params = head.get("parameters")
        if params is not None:
            if type(params) is not dict or params.keys() - {"binary_data_output"}:
                return None
            if params:
                binary_output = params["binary_data_output"]
                if type(binary_output) is not bool:
                    return None
                members += 1
                bool_tokens = 1
        inputs: dict[str, np.ndarray] = {}
        offset = header_length or 0
        for t in raw_inputs:
            if type(t) is not dict or len(t) != 4:
                return None
            name = t.get("name")
            if type(name) is not str:
                return None
            spec = specs.get(name)
            if spec is None or name in inputs or t.get("datatype") != spec.datatype:
                return None
            members += 4
            shape = t.get("shape")
            if type(shape) is not list or len(shape) != spec.rank:
                return None
            count = 1
            for d in shape:
                if type(d) is not int or d < 0:
                    return None
                count *= d
            for i, d in spec.fixed:
                if shape[i] != d:
                    return None
            if count > max_elements:
                return None
            if binary:
                if t.keys() != _BINARY_TENSOR_KEYS:
                    return None
                tparams = t["parameters"]
                if type(tparams) is not dict or len(tparams) != 1:
                    return None
                nbytes = tparams.get("binary_data_size")
                members += 1
                if type(nbytes) is not int or nbytes != count * spec.dtype.itemsize:
                    return None
                if offset + nbytes > size or spec.datatype == "BOOL":
                    return None
                inputs[name] = np.frombuffer(body, spec.dtype, count, offset).reshape(shape)
                offset += nbytes
            else:
                if not spec.json_ok or t.keys() != _JSON_TENSOR_KEYS:
                    return None
                arr = _from_json(t["data"], spec, count, shape)
                if arr is None:
                    return None
                inputs[name] = arr
        if binary and offset != size:
            return None
        if binary or size < _SMALL:
            colons, bools = head_raw.count(b":"), _count_bools(head_raw, 0, len(head_raw))
        else:
            counted = _count_outside_data(head_raw, n_inputs)
            if counted is None:
                return None
            colons, bools = counted
        # a duplicate key (orjson keeps the last) or ':' inside a string; a boolean
        # where there should be none (numpy would read true as 1)
        if colons != members or bools != bool_tokens:
            return None
        return InferenceRequest(inputs, rid, {}, None, binary_output)

    return decode


def _from_json(data: Any, spec: _Input, count: int, shape: list[int]) -> np.ndarray | None:
    if type(data) is not list:
        return None
    try:
        arr = np.array(data)
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.size != count or arr.dtype.kind not in _JSON_KINDS[spec.dtype.kind]:
        return None
    bounds = spec.bounds
    if count and bounds is not None:
        if arr.ndim == 1 and count <= 64:  # Python's max beats two numpy reductions
            hi, lo = max(data), min(data)
        else:
            hi, lo = arr.max(), arr.min()
        if lo < bounds[0] or hi > bounds[1]:
            return None
    return arr.astype(spec.dtype, copy=False).reshape(shape)


def _count_bools(raw: bytes, start: int, end: int) -> int:
    return raw.count(b"true", start, end) + raw.count(b"false", start, end)


def _count_outside_data(raw: bytes, n_tensors: int) -> tuple[int, int] | None:
    """``(colons, boolean tokens)`` of a JSON body outside its tensors' flat ``data``
    arrays, which must hold numbers only; None when that cannot be told cheaply.

    The data arrays are most of a body: they are searched with single-byte scans
    (``t`` or ``f`` would be a boolean) instead of counted.
    """
    if b"\\" in raw:  # escapes: the raw text and the parsed strings may differ
        return None
    colons = bools = pos = 0
    for _ in range(n_tensors):
        key = raw.find(b'"data"', pos)
        while True:
            if key < 0:
                return None
            start = raw.find(b"[", key + 6)
            if start > 0 and raw[key + 6 : start].strip() == b":":
                break  # the key "data" (a string "data" is followed by , or })
            key = raw.find(b'"data"', key + 6)
        end = raw.find(b"]", start)
        if (
            end < 0
            or raw.find(b"[", start + 1, end) >= 0  # nested: the general path
            or raw.find(b"t", start, end) >= 0
            or raw.find(b"f", start, end) >= 0
        ):
            return None
        colons += raw.count(b":", pos, start)
        bools += _count_bools(raw, pos, start)
        pos = end
    return colons + raw.count(b":", pos), bools + _count_bools(raw, pos, len(raw))


def _never(body: bytes, header_length: int | None) -> InferenceRequest | None:
    return None
