"""Datatypes on the wire: names, numpy dtypes, sizes and the BYTES element encoding.

The Open Inference Protocol names datatypes ``FP32``, ``INT64``, ``BYTES``…; numpy has a
dtype for each except BF16 (``ml_dtypes.bfloat16`` when installed, which is what
``tritonclient`` uses; otherwise BF16 tensors are carried as their raw ``uint16`` bits)
and BYTES (an ``object`` array of ``bytes``). Binary encodings are little-endian,
row-major; a BYTES element is a 4-byte little-endian length followed by its bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument

try:  # ml_dtypes ships with tritonclient and jax; numpy itself has no bfloat16
    import ml_dtypes

    BF16_DTYPE: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
    #: True when BF16 tensors are ``ml_dtypes.bfloat16`` arrays, False when ``uint16`` bits.
    BF16_NATIVE = True
except ImportError:  # pragma: no cover - exercised only without ml_dtypes
    BF16_DTYPE = np.dtype("<u2")
    BF16_NATIVE = False

#: Largest rank a tensor may have (numpy's own limit).
MAX_RANK = 64

#: Open Inference Protocol datatype → numpy dtype (little-endian, fixed size).
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": BF16_DTYPE,
    "BYTES": np.dtype(object),
}

#: Bytes per element (BYTES has none: its elements are length-prefixed).
ITEM_SIZES: dict[str, int] = {k: v.itemsize for k, v in NUMPY_DTYPES.items() if k != "BYTES"}

_BY_NUMPY: dict[np.dtype[Any], str] = {
    v: k for k, v in NUMPY_DTYPES.items() if k not in ("BYTES", "BF16")
}
_LEN = struct.Struct("<I")


def numpy_dtype(datatype: str, what: str = "tensor") -> np.dtype[Any]:
    """The numpy dtype of a wire datatype; :class:`InvalidArgument` for an unknown one.

    Example:
        >>> numpy_dtype("FP32")
        dtype('float32')
    """
    try:
        return NUMPY_DTYPES[datatype]
    except (KeyError, TypeError):
        raise InvalidArgument(
            f"{what}: unknown datatype {str(datatype)[:40]!r}; use one of {', '.join(NUMPY_DTYPES)}"
        ) from None


def datatype_of(array: np.ndarray) -> str:
    """The wire datatype of a numpy array (object and string arrays are BYTES).

    Example:
        >>> datatype_of(np.zeros(3, np.int64)), datatype_of(np.array([b"a"], dtype=object))
        ('INT64', 'BYTES')
    """
    dt = array.dtype
    name = _BY_NUMPY.get(dt)
    if name is not None:
        return name
    if dt.kind in "OSU":
        return "BYTES"
    if BF16_NATIVE and dt == BF16_DTYPE:
        return "BF16"
    name = _BY_NUMPY.get(dt.newbyteorder("<")) if dt.byteorder == ">" else None
    if name is None:
        raise InvalidArgument(f"numpy dtype {dt} has no Open Inference Protocol datatype")
    return name


def element_count(shape: Any, what: str = "tensor", *, limit: int = 2**63 - 1) -> int:
    """Validate a wire shape (a list of non-negative ints) and return its element count.

    The product is computed with Python integers and checked against ``limit`` as it
    grows, so a shape such as ``[2**40, 2**40]`` is refused without allocating anything.

    Example:
        >>> element_count([64, 30])
        1920
        >>> element_count([2**40, 2**40], limit=2**31)
        Traceback (most recent call last):
        ...
        modelport.core.errors.InvalidArgument: tensor: shape [1099511627776, 1099511627776] ...
    """
    if not isinstance(shape, (list, tuple)):
        raise InvalidArgument(f"{what}: shape must be a list of integers")
    if len(shape) > MAX_RANK:
        raise InvalidArgument(f"{what}: rank {len(shape)} exceeds the maximum of {MAX_RANK}")
    count = 1
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise InvalidArgument(f"{what}: shape {_show(shape)} must hold integers")
        if d < 0:
            raise InvalidArgument(f"{what}: shape {_show(shape)} has a negative dimension")
        count *= int(d)
        if count > limit:
            raise InvalidArgument(f"{what}: shape {_show(shape)} has more than {limit} elements")
    return count


def _show(shape: Any) -> str:
    text = str(list(shape))
    return text if len(text) <= 80 else text[:77] + "..."


def serialize_bytes(array: np.ndarray) -> bytes:
    """Encode a BYTES tensor: each element as a 4-byte LE length, then its bytes.

    ``str`` elements are encoded as UTF-8.

    Example:
        >>> serialize_bytes(np.array([b"ab", "c"], dtype=object))
        b'\\x02\\x00\\x00\\x00ab\\x01\\x00\\x00\\x00c'
    """
    parts: list[bytes] = []
    pack = _LEN.pack
    for item in array.reshape(-1):
        b = item.encode() if isinstance(item, str) else bytes(item)
        parts.append(pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def deserialize_bytes(buf: bytes | memoryview, count: int, what: str = "tensor") -> np.ndarray:
    """Decode ``count`` length-prefixed BYTES elements that fill ``buf`` exactly.

    Every length is checked against what is left, so a lying prefix is an
    :class:`InvalidArgument`, never an out-of-range read.

    Example:
        >>> deserialize_bytes(b"\\x02\\x00\\x00\\x00ab", 1)
        array([b'ab'], dtype=object)
    """
    view = memoryview(buf)
    end = len(view)
    out = np.empty(count, dtype=object)
    unpack = _LEN.unpack_from
    pos = 0
    for i in range(count):
        if pos + 4 > end:
            raise InvalidArgument(
                f"{what}: BYTES data ends after {i} of {count} elements (truncated length prefix)"
            )
        (n,) = unpack(view, pos)
        pos += 4
        if n > end - pos:
            raise InvalidArgument(
                f"{what}: BYTES element {i} claims {n} bytes but only {end - pos} remain"
            )
        out[i] = bytes(view[pos : pos + n])
        pos += n
    if pos != end:
        raise InvalidArgument(f"{what}: {end - pos} bytes left over after {count} BYTES elements")
    return out


def array_from_buffer(
    buf: bytes | memoryview, datatype: str, shape: list[int], what: str = "tensor"
) -> np.ndarray:
    """View raw little-endian tensor bytes as an array of ``shape`` (zero-copy).

    The result is read-only when ``buf`` is ``bytes``. BYTES tensors are decoded from
    length-prefixed elements (a copy). The byte size must match the shape exactly.

    Example:
        >>> array_from_buffer(np.arange(4, dtype=np.float32).tobytes(), "FP32", [2, 2])
        array([[0., 1.],
               [2., 3.]], dtype=float32)
    """
    count = element_count(shape, what)
    if datatype == "BYTES":
        return deserialize_bytes(buf, count, what).reshape(shape)
    dtype = numpy_dtype(datatype, what)
    expected = count * dtype.itemsize
    if len(buf) != expected:
        raise InvalidArgument(
            f"{what}: {len(buf)} bytes of data for shape {_show(shape)} {datatype}, "
            f"which needs {expected}"
        )
    arr = np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)
    if datatype == "BOOL" and count and arr.view(np.uint8).max() > 1:
        raise InvalidArgument(f"{what}: BOOL elements must be the bytes 0 or 1")
    return arr


def array_to_bytes(array: np.ndarray) -> bytes | memoryview:
    """The binary wire form of an array: raw little-endian bytes, or prefixed BYTES.

    C-contiguous little-endian arrays are returned as a memoryview (no copy).

    Example:
        >>> bytes(array_to_bytes(np.array([1, 2], dtype=np.int16)))
        b'\\x01\\x00\\x02\\x00'
    """
    if array.dtype.kind in "OSU":
        return serialize_bytes(array)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    if not array.size:
        return b""
    flat: Any = array.reshape(-1).view(np.uint8)
    return memoryview(flat)
