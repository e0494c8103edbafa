"""Datasets for validation, calibration and distillation: ``.npz`` files.

A file holds one array per model input, named like the input, and optionally ``y``
with the labels. A single-input model may call its array ``X`` instead. Arrays are
checked against the model's signature (names, rank, fixed dimensions) and cast to
its datatype, so a float64 export from pandas works as is.

Example:
    >>> save_dataset(Path("val.npz"), {"X": X_val}, y_val)          # doctest: +SKIP
    >>> ds = load_dataset(Path("val.npz"), signature)               # doctest: +SKIP
    >>> ds.n, list(ds.inputs)                                        # doctest: +SKIP
    (360, ['input'])
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelport.core.errors import InvalidArgument, NotFound
from modelport.core.types import DATATYPES, ModelSignature

LABELS_KEY = "y"
SINGLE_INPUT_KEY = "X"


@dataclass(frozen=True)
class Dataset:
    """Named input arrays with the same first dimension, plus optional labels."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        sizes = {len(a) for a in self.inputs.values()}
        if self.labels is not None:
            sizes.add(len(self.labels))
        if len(sizes) > 1:
            raise InvalidArgument(f"{self.source or 'dataset'}: arrays differ in length {sizes}")
        if not self.inputs:
            raise InvalidArgument(f"{self.source or 'dataset'}: no input arrays")

    @property
    def n(self) -> int:
        return len(next(iter(self.inputs.values())))

    def subset(self, start: int, stop: int | None = None) -> Dataset:
        """Rows ``start:stop`` as a new dataset.

        Example:
            >>> ds.subset(0, 100).n                      # doctest: +SKIP
            100
        """
        labels = None if self.labels is None else self.labels[start:stop]
        return Dataset({k: v[start:stop] for k, v in self.inputs.items()}, labels, self.source)

    def batches(self, size: int) -> Iterator[dict[str, np.ndarray]]:
        """Consecutive input batches of at most ``size`` rows."""
        for start in range(0, self.n, size):
            yield {k: v[start : start + size] for k, v in self.inputs.items()}

    def batch_of(self, size: int) -> dict[str, np.ndarray]:
        """Exactly ``size`` rows (repeating the data when it is shorter), for timing.

        Example:
            >>> ds.batch_of(32)["input"].shape              # doctest: +SKIP
            (32, 64)
        """
        idx = np.arange(size) % self.n
        return {k: np.ascontiguousarray(v[idx]) for k, v in self.inputs.items()}


def load_dataset(path: Path, signature: ModelSignature, *, need_labels: bool = False) -> Dataset:
    """Read ``path`` and check it against the model ``signature``.

    Raises InvalidArgument naming the missing or mismatching arrays.
    """
    if not path.is_file():
        raise NotFound(f"no such data file: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise InvalidArgument(f"{path.name}: not a readable .npz file ({e})") from e
    return dataset_from_arrays(arrays, signature, source=path.name, need_labels=need_labels)


def dataset_from_arrays(
    arrays: Mapping[str, np.ndarray],
    signature: ModelSignature,
    *,
    source: str = "arrays",
    need_labels: bool = False,
) -> Dataset:
    """Bind arrays to the model's inputs (see :func:`load_dataset`).

    Example:
        >>> dataset_from_arrays({"X": X, "y": y}, signature).n   # doctest: +SKIP
        360
    """
    arrays = dict(arrays)
    labels = arrays.pop(LABELS_KEY, None)
    names = [t.name for t in signature.inputs]
    if len(names) == 1 and names[0] not in arrays and SINGLE_INPUT_KEY in arrays:
        arrays[names[0]] = arrays.pop(SINGLE_INPUT_KEY)
    missing = [n for n in names if n not in arrays]
    if missing:
        hint = " (or 'X' for a single-input model)" if len(names) == 1 else ""
        raise InvalidArgument(
            f"{source}: missing array(s) {missing} for the model's inputs {names}{hint}; "
            f"found {sorted(arrays)}"
        )
    unknown = sorted(set(arrays) - set(names))
    if unknown:
        raise InvalidArgument(f"{source}: arrays {unknown} match no model input {names}")
    inputs = {}
    for spec in signature.inputs:
        arr = np.asarray(arrays[spec.name])
        if spec.shape and arr.ndim != len(spec.shape):
            raise InvalidArgument(
                f"{source}: {spec.name!r} has shape {list(arr.shape)}, the model takes "
                f"{list(spec.shape)} (rank {len(spec.shape)})"
            )
        for i, (have, want) in enumerate(zip(arr.shape[1:], spec.shape[1:], strict=False), 1):
            if want != -1 and have != want:
                raise InvalidArgument(
                    f"{source}: {spec.name!r} dimension {i} is {have}, the model needs {want}"
                )
        dtype = np.dtype(DATATYPES[spec.datatype])
        if arr.dtype != dtype:
            if arr.dtype.kind != dtype.kind and not (arr.dtype.kind in "iu" and dtype.kind in "iu"):
                raise InvalidArgument(
                    f"{source}: {spec.name!r} is {arr.dtype}, the model takes {dtype}"
                )
            arr = arr.astype(dtype)
        inputs[spec.name] = np.ascontiguousarray(arr)
    if need_labels and labels is None:
        raise InvalidArgument(f"{source}: this needs labels; add an array named 'y'")
    return Dataset(inputs, None if labels is None else np.asarray(labels), source)


def save_dataset(
    path: Path, inputs: Mapping[str, np.ndarray], labels: np.ndarray | None = None
) -> Path:
    """Write a dataset file in the layout :func:`load_dataset` reads.

    Example:
        >>> save_dataset(Path("cal.npz"), {"X": X[:200]})  # doctest: +SKIP
        PosixPath('cal.npz')
    """
    arrays = dict(inputs)
    if labels is not None:
        arrays[LABELS_KEY] = np.asarray(labels)
    with path.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    return path
