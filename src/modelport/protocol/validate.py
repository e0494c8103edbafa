"""Validate a decoded request against the model's signature, once, before any model code.

Names, datatypes, shapes and sizes are checked here and nowhere else; every failure is
an :class:`~modelport.core.errors.InvalidArgument` whose message names the tensor and
what was expected (an over-size request is :class:`PayloadTooLarge`).

Datatype coercion is *safe* only — a value is never changed except by float rounding:

- the same datatype passes untouched (no copy);
- any cast numpy calls ``safe`` (INT32→INT64, FP16→FP32, UINT8→INT16…) is done;
- integer → narrower integer, when every value fits (INT64 ``[1, 2]`` → INT32);
- integer → float, when every value is exactly representable (INT64 → FP32 up to 2²⁴);
- FP64 → FP32 when every value is within FP32's range (rounded, never overflowed);
- refused: float → integer (even ``3.0``: a client that declares FP32 has a bug worth
  hearing about; JSON integral numbers *declared* INT64 are fine), anything → FP16/BF16
  by narrowing, BOOL ↔ numbers, BYTES ↔ numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from modelport.core.errors import InvalidArgument, PayloadTooLarge
from modelport.core.types import InferenceRequest, ModelSignature, TensorSpec
from modelport.protocol.dtypes import NUMPY_DTYPES, datatype_of

#: Default cap on the elements of one input tensor (128 Mi elements = 512 MiB of FP32).
DEFAULT_MAX_ELEMENTS = 1 << 27

# integers a float type holds exactly: 2**(mantissa bits + 1)
_EXACT_INT = {"FP16": 2**11, "BF16": 2**8, "FP32": 2**24, "FP64": 2**53}


def validate_request(
    req: InferenceRequest,
    signature: ModelSignature,
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> InferenceRequest:
    """Check ``req`` against ``signature``; return it with inputs coerced to the model's types.

    Example:
        >>> import numpy as np
        >>> from modelport.core.types import TensorSpec
        >>> sig = ModelSignature((TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("y", "INT64", (-1,)),))
        >>> ok = validate_request(InferenceRequest({"x": np.ones((2, 4), np.int64)}), sig)
        >>> ok.inputs["x"].dtype
        dtype('float32')
        >>> validate_request(InferenceRequest({"x": np.ones((2, 3), np.float32)}), sig)
        Traceback (most recent call last):
        ...
        modelport.core.errors.InvalidArgument: input 'x': shape [2, 3] does not match the model's [-1, 4]
    """  # noqa: E501
    specs = {s.name: s for s in signature.inputs}
    unknown = [n for n in req.inputs if n not in specs]
    if unknown:
        raise InvalidArgument(
            f"unknown input {unknown[0]!r}; the model takes {_names(signature.inputs)}"
        )
    missing = [s for s in signature.inputs if s.name not in req.inputs]
    if missing:
        s = missing[0]
        raise InvalidArgument(
            f"missing input {s.name!r} ({s.datatype} {list(s.shape)}); "
            f"the model takes {_names(signature.inputs)}"
        )
    inputs = {}
    for name, array in req.inputs.items():
        spec = specs[name]
        what = f"input {name!r}"
        if array.size > max_elements:
            raise PayloadTooLarge(f"{what} has {array.size} elements; the limit is {max_elements}")
        check_shape(array.shape, spec, what)
        inputs[name] = coerce(array, spec.datatype, what)
    if req.outputs is not None:
        out_specs = {s.name: s for s in signature.outputs}
        seen: set[str] = set()
        for ro in req.outputs:
            if ro.name in seen:
                raise InvalidArgument(f"output {ro.name!r} is requested more than once")
            seen.add(ro.name)
            out_spec = out_specs.get(ro.name)
            if out_spec is None:
                raise InvalidArgument(
                    f"unknown output {ro.name!r}; the model gives {_names(signature.outputs)}"
                )
            if ro.classification and out_spec.datatype in ("BYTES", "BOOL"):
                raise InvalidArgument(
                    f"output {ro.name!r}: classification needs a numeric output, "
                    f"not {out_spec.datatype}"
                )
    if inputs.keys() == req.inputs.keys() and all(inputs[k] is req.inputs[k] for k in inputs):
        return req
    return dataclasses.replace(req, inputs=inputs)


def compile_validator(
    signature: ModelSignature, *, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> Callable[[InferenceRequest], InferenceRequest]:
    """A validator for one signature with a fast path for the common, correct request.

    The fast path accepts a request whose inputs are exactly the signature's, already of
    the model's dtypes, of the right rank and fixed dimensions, within the element
    limit, asking for all outputs; anything else goes through :func:`validate_request`,
    which gives the same answer (and the precise error). Built once per loaded version.

    Example:
        >>> import numpy as np
        >>> from modelport.core.types import TensorSpec
        >>> check = compile_validator(ModelSignature((TensorSpec("x", "FP32", (-1, 4)),), ()))
        >>> req = InferenceRequest({"x": np.ones((2, 4), np.float32)})
        >>> check(req) is req
        True
    """
    expected = []
    for spec in signature.inputs:
        dtype = NUMPY_DTYPES.get(spec.datatype)
        fixed = tuple((i, d) for i, d in enumerate(spec.shape) if d != -1)
        expected.append((spec.name, dtype, len(spec.shape), fixed))
    names = frozenset(n for n, *_ in expected)

    def check(req: InferenceRequest) -> InferenceRequest:
        inputs = req.inputs
        if req.outputs is None and len(inputs) == len(expected) and inputs.keys() == names:
            for name, dtype, rank, fixed in expected:
                a = inputs[name]
                shape = a.shape
                if (
                    a.dtype != dtype
                    or dtype is None
                    or dtype.kind == "O"
                    or len(shape) != rank
                    or a.size > max_elements
                    or any(shape[i] != d for i, d in fixed)
                ):
                    break
            else:
                return req
        return validate_request(req, signature, max_elements=max_elements)

    return check


def check_shape(shape: tuple[int, ...], spec: TensorSpec, what: str) -> None:
    """Refuse a shape whose rank or fixed dimensions differ from the spec (-1 = any).

    Example:
        >>> check_shape((3, 4), TensorSpec("x", "FP32", (-1, 4)), "input 'x'")
    """
    if len(shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)
    ):
        raise InvalidArgument(
            f"{what}: shape {list(shape)} does not match the model's {list(spec.shape)}"
        )


def coerce(array: np.ndarray, datatype: str, what: str = "tensor") -> np.ndarray:
    """Return ``array`` as ``datatype`` if that is safe (see the module doc), else raise.

    Example:
        >>> coerce(np.array([1, 2], np.int64), "INT32").dtype
        dtype('int32')
        >>> coerce(np.array([1.5]), "INT64", "input 'x'")
        Traceback (most recent call last):
        ...
        modelport.core.errors.InvalidArgument: input 'x': got FP64 data, the model expects INT64
    """
    source = datatype_of(array)
    if datatype == "BYTES" and array.dtype.kind in "SU":  # numpy strings from Python callers
        out = np.empty(array.size, dtype=object)
        out[:] = [x if isinstance(x, bytes) else str(x).encode() for x in array.reshape(-1)]
        return out.reshape(array.shape)
    if source == datatype:
        return array
    target = NUMPY_DTYPES[datatype]
    refuse = InvalidArgument(f"{what}: got {source} data, the model expects {datatype}")
    if datatype == "BYTES":
        raise refuse
    if source in ("BYTES", "BOOL") or datatype == "BOOL" or source == "BF16":
        if not (source == "BF16" and datatype in ("FP32", "FP64")):
            raise refuse
        return array.astype(target)
    src_kind, dst_kind = array.dtype.kind, target.kind
    if np.can_cast(array.dtype, target, casting="safe"):
        return array.astype(target)
    if src_kind in "iu" and dst_kind in "iu":
        if array.size:
            info = np.iinfo(target)
            if bool(array.min() < info.min) or bool(array.max() > info.max):
                raise InvalidArgument(
                    f"{what}: got {source} values outside {datatype}'s range, "
                    f"the model expects {datatype}"
                )
        return array.astype(target)
    if src_kind in "iu" and dst_kind == "f":
        limit = _EXACT_INT[datatype]
        if array.size and (bool(array.min() < -limit) or bool(array.max() > limit)):
            raise InvalidArgument(
                f"{what}: got {source} values that {datatype} cannot hold exactly, "
                f"the model expects {datatype}"
            )
        return array.astype(target)
    if source == "FP64" and datatype == "FP32":
        if array.size:
            big = float(np.abs(array).max())
            if big > float(np.finfo(np.float32).max) and np.isfinite(big):
                raise InvalidArgument(f"{what}: got FP64 values outside FP32's range")
        return array.astype(target)
    raise refuse


def check_body_size(length: int | None, limit: int) -> None:
    """Refuse a declared body length over ``limit`` bytes (:class:`PayloadTooLarge`, 413).

    The REST layer calls it with ``Content-Length`` before reading, and again with the
    running total while reading a chunked or compressed body.

    Example:
        >>> check_body_size(10, 100)
        >>> check_body_size(101, 100)
        Traceback (most recent call last):
        ...
        modelport.core.errors.PayloadTooLarge: request body of 101 bytes exceeds the limit of 100 bytes
    """  # noqa: E501
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the limit of {limit} bytes")


def _names(specs: tuple[TensorSpec, ...]) -> list[str]:
    return [s.name for s in specs]
