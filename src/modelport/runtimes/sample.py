"""Sample inputs and named outputs: how frameworks without a signature get one.

scikit-learn, PyTorch and the gradient-boosting libraries do not record what their
models take and give. modelport derives a :class:`~modelport.core.types.ModelSignature`
by running the model once on a *sample input* given at registration — a single array
or a dict of named arrays (token ids plus an attention mask, say) — and stores that
sample with the version so a later conversion can check parity on it.

Outputs are named the same way everywhere: a dict gives its keys, a dataclass or
named tuple its field names, a plain tuple ``output_0``, ``output_1``…, a lone array
``output`` (unless the caller names it). Nested containers give dotted names.

Example:
    >>> s = as_sample(np.zeros((2, 4), np.float32), default_name="X")
    >>> list(s), s["X"].shape
    (['X'], (2, 4))
    >>> list(name_outputs({"logits": np.ones((2, 3)), "hidden": np.ones((2, 5))}))
    ['logits', 'hidden']
    >>> list(name_outputs((np.ones(2), np.ones(2))))
    ['output_0', 'output_1']
"""

from __future__ import annotations

import dataclasses
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument
from modelport.core.types import DATATYPES, ModelSignature, TensorSpec

#: Name of the sample file stored with a version.
SAMPLE_FILE = "sample_input.npz"
#: Samples larger than this are used for the signature but not stored.
MAX_STORED_SAMPLE_BYTES = 16 << 20

_NUMPY_TO_V2 = {v: k for k, v in DATATYPES.items() if k not in ("BYTES", "BF16")}


def datatype_of(array: np.ndarray) -> str:
    """The Open Inference Protocol datatype of a numpy array.

    Example:
        >>> datatype_of(np.zeros(2, np.float32)), datatype_of(np.array([b"a"], dtype=object))
        ('FP32', 'BYTES')
    """
    kind = array.dtype.kind
    if kind in "OSU":
        return "BYTES"
    name = _NUMPY_TO_V2.get(array.dtype.name)
    if name is None:
        raise InvalidArgument(f"arrays of dtype {array.dtype} have no tensor datatype")
    return name


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    """The numpy dtype for a tensor datatype (BYTES → object, BF16 → float32)."""
    if datatype == "BF16":
        return np.dtype(np.float32)
    return np.dtype(DATATYPES[datatype])


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array from an array, a torch tensor, a DataFrame, a list or a scalar."""
    if isinstance(value, np.ndarray):
        return value
    detach = getattr(value, "detach", None)
    if callable(detach):  # torch.Tensor, without importing torch
        tensor = detach().cpu()
        if str(getattr(tensor, "dtype", "")) == "torch.bfloat16":
            tensor = tensor.float()
        return np.asarray(tensor.numpy())
    to_np = getattr(value, "to_numpy", None)
    if callable(to_np):  # pandas
        return np.asarray(to_np())
    return np.asarray(value)


def as_sample(value: Any, default_name: str = "input") -> dict[str, np.ndarray]:
    """Normalise a sample input: an array, a tensor, a dict of them, or a .npy/.npz path.

    A single array is named ``default_name``. Every array needs a leading batch axis.

    Example:
        >>> as_sample({"ids": [[1, 2, 3]], "mask": [[1, 1, 0]]})["ids"].dtype
        dtype('int64')
    """
    if isinstance(value, str | Path):
        return load_sample_file(Path(value), default_name)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str) or not k:
                raise InvalidArgument(f"sample input names must be non-empty strings, got {k!r}")
            out[k] = to_numpy(v)
    else:
        out = {default_name: to_numpy(value)}
    if not out:
        raise InvalidArgument("the sample input is empty")
    for k, arr in out.items():
        if arr.ndim == 0:
            raise InvalidArgument(
                f"sample input {k!r} is a scalar; give a batch (the first axis is the batch)"
            )
        if arr.dtype.kind == "U":
            out[k] = np.array([s.encode() for s in arr.ravel()], dtype=object).reshape(arr.shape)
        elif arr.dtype.kind == "O" and not all(isinstance(x, bytes | str) for x in arr.ravel()):
            raise InvalidArgument(f"sample input {k!r} holds Python objects; give numbers or text")
        else:
            datatype_of(arr)  # raises on dtypes without a tensor datatype
    return out


def load_sample_file(path: Path, default_name: str = "input") -> dict[str, np.ndarray]:
    """Read a sample from ``.npy`` (one array) or ``.npz`` (named arrays), never unpickling.

    Example:
        >>> np.savez(tmp / "s.npz", ids=np.zeros((1, 4), np.int64))   # doctest: +SKIP
        >>> load_sample_file(tmp / "s.npz")["ids"].shape               # doctest: +SKIP
        (1, 4)
    """
    if not path.is_file():
        raise InvalidArgument(f"sample input {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # .npy
            data = {default_name: loaded}
        else:  # .npz
            with loaded:
                data = {k: loaded[k] for k in loaded.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise InvalidArgument(
            f"cannot read sample input {path.name}: {e} (give a .npy array or a .npz of "
            "named arrays; object arrays are refused because they would be unpickled)"
        ) from e
    return as_sample(data, default_name)


def save_sample(sample: Mapping[str, np.ndarray], path: Path) -> Path:
    """Write a sample as ``.npz`` (text as fixed-width unicode, so no pickling is needed)."""
    arrays = {}
    for k, v in sample.items():
        if v.dtype.kind == "O":
            v = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in v.ravel()])
            v = v.reshape(sample[k].shape)
        arrays[k] = v
    with path.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    return path


def sample_nbytes(sample: Mapping[str, np.ndarray]) -> int:
    return sum(int(a.nbytes) for a in sample.values())


def batch_size(sample: Mapping[str, np.ndarray]) -> int:
    return int(next(iter(sample.values())).shape[0])


def take_rows(sample: Mapping[str, np.ndarray], rows: slice | np.ndarray) -> dict[str, np.ndarray]:
    """The same rows of every input (inputs share the batch axis)."""
    return {k: v[rows] for k, v in sample.items()}


def with_batch(sample: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The sample with exactly ``n`` rows (cut, or repeated cyclically)."""
    have = batch_size(sample)
    idx = np.arange(n) % have
    return {k: v[idx] for k, v in sample.items()}


# ----------------------------------------------------------------------------- outputs


def _is_namedtuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if obj is None:
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            _flatten(getattr(obj, f.name), f"{prefix}.{f.name}" if prefix else f.name, out)
    elif _is_namedtuple(obj):
        for name, v in zip(obj._fields, obj, strict=True):
            _flatten(v, f"{prefix}.{name}" if prefix else name, out)
    elif isinstance(obj, tuple | list) and not _is_leaf_list(obj):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}_{i}" if prefix else f"output_{i}", out)
    else:
        out[prefix or "output"] = to_numpy(obj)


def _is_leaf_list(obj: Sequence[Any]) -> bool:
    """A list of plain numbers is one tensor, not several outputs."""
    return isinstance(obj, list) and all(isinstance(x, int | float | bool) for x in obj)


def name_outputs(result: Any, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Flatten what a model returned into named arrays.

    With ``names`` (a stored signature's output names) the flattened values are named
    positionally when their count matches, so a TorchScript module that returns a tuple
    still answers with the names its source model gave.

    Example:
        >>> list(name_outputs([np.ones(1), np.ones(1)], names=["a", "b"]))
        ['a', 'b']
    """
    flat: dict[str, np.ndarray] = {}
    _flatten(result, "", flat)
    if names is not None and list(flat) != list(names) and len(flat) == len(names):
        return dict(zip(names, flat.values(), strict=True))
    return flat


# ----------------------------------------------------------------------------- signatures


def tensor_spec(name: str, array: np.ndarray, dynamic: Iterable[int] = (0,)) -> TensorSpec:
    """The spec of ``array`` with the given axes marked dynamic (-1)."""
    dyn = set(dynamic)
    shape = tuple(-1 if i in dyn else int(d) for i, d in enumerate(array.shape))
    return TensorSpec(name, datatype_of(array), shape)


def signature_from_arrays(
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    dynamic_inputs: Mapping[str, Iterable[int]] | None = None,
    dynamic_outputs: Mapping[str, Iterable[int]] | None = None,
) -> ModelSignature:
    """A signature from example inputs and outputs; the batch axis (0) is dynamic by default.

    Example:
        >>> sig = signature_from_arrays({"X": np.zeros((3, 4))}, {"y": np.zeros(3)})
        >>> sig.inputs[0].shape, sig.outputs[0].datatype
        ((-1, 4), 'FP64')
    """
    din = dynamic_inputs or {}
    dout = dynamic_outputs or {}
    return ModelSignature(
        tuple(tensor_spec(k, v, din.get(k, (0,))) for k, v in inputs.items()),
        tuple(tensor_spec(k, v, dout.get(k, (0,) if v.ndim else ())) for k, v in outputs.items()),
    )


def check_sample_matches(sample: Mapping[str, np.ndarray], signature: ModelSignature) -> None:
    """Raise InvalidArgument unless ``sample`` has the signature's inputs with fitting shapes."""
    want = [t.name for t in signature.inputs]
    if sorted(sample) != sorted(want):
        raise InvalidArgument(f"the inputs are {sorted(sample)}, the model takes {want}")
    for spec in signature.inputs:
        arr = sample[spec.name]
        if len(arr.shape) != len(spec.shape) or any(
            d not in (-1, a) for d, a in zip(spec.shape, arr.shape, strict=True)
        ):
            raise InvalidArgument(
                f"input {spec.name!r} has shape {list(arr.shape)}, the model takes "
                f"{list(spec.shape)} (-1 = any)"
            )


def align_sample(
    sample: Mapping[str, np.ndarray], signature: ModelSignature
) -> dict[str, np.ndarray]:
    """The sample keyed like the signature's inputs, then checked against their shapes.

    Names that differ are matched by position when the counts agree (a lone array is
    named by its format's default, the model may call it ``x``).

    Example:
        >>> sig = ModelSignature((TensorSpec("x", "FP32", (-1, 2)),), ())
        >>> list(align_sample({"input": np.zeros((1, 2), np.float32)}, sig))
        ['x']
    """
    names = [t.name for t in signature.inputs]
    if set(sample) != set(names):
        if len(sample) != len(names):
            raise InvalidArgument(
                f"the sample has inputs {sorted(sample)}; the model takes {names}"
            )
        sample = dict(zip(names, sample.values(), strict=True))
    aligned = {n: sample[n] for n in names}
    check_sample_matches(aligned, signature)
    return aligned


def cast_inputs(
    inputs: Mapping[str, np.ndarray], signature: ModelSignature
) -> dict[str, np.ndarray]:
    """The inputs converted to the dtypes the signature declares (text stays text)."""
    out = {}
    for spec in signature.inputs:
        arr = inputs[spec.name]
        if spec.datatype != "BYTES" and arr.dtype.kind not in "OSU":
            arr = arr.astype(numpy_dtype(spec.datatype), copy=False)
        out[spec.name] = arr
    return out


__all__ = [
    "MAX_STORED_SAMPLE_BYTES",
    "SAMPLE_FILE",
    "align_sample",
    "as_sample",
    "batch_size",
    "cast_inputs",
    "check_sample_matches",
    "datatype_of",
    "load_sample_file",
    "name_outputs",
    "numpy_dtype",
    "save_sample",
    "signature_from_arrays",
    "take_rows",
    "tensor_spec",
    "to_numpy",
    "with_batch",
]
