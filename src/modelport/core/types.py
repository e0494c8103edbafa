"""Shared value types: tensor specs, model signatures and model references.

These are plain frozen dataclasses with no I/O, used by every layer above ``core``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelport.core.errors import InvalidArgument, InvalidName

if TYPE_CHECKING:
    import numpy as np

#: Model and alias names: a letter or digit, then letters, digits, ``.``, ``_`` or ``-``.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

#: Datatypes of the Open Inference Protocol, with their numpy names.
DATATYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
    "BF16": "bfloat16",
    "BYTES": "object",
}


def validate_name(name: str, what: str = "model name") -> str:
    """Return ``name`` if it is a valid model/alias name, else raise :class:`InvalidName`.

    A name is 1–128 characters of letters, digits, ``.``, ``_`` and ``-``, starts with a
    letter or digit (so never ``.``/``..`` nor a hidden file) and never contains a path
    separator.

    Example:
        >>> validate_name("iris-v2.onnx")
        'iris-v2.onnx'
        >>> validate_name("../etc")
        Traceback (most recent call last):
        ...
        modelport.core.errors.InvalidName: invalid model name '../etc': ...
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        shown = name if isinstance(name, str) and len(name) <= 140 else f"{str(name)[:40]}…"
        raise InvalidName(
            f"invalid {what} {shown!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """Name, datatype (Open Inference Protocol name) and shape (-1 = dynamic) of a tensor.

    Example:
        >>> TensorSpec("input", "FP32", (-1, 4)).to_dict()
        {'name': 'input', 'datatype': 'FP32', 'shape': [-1, 4]}
    """

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            raise InvalidArgument(
                f"tensor {self.name!r}: unknown datatype {self.datatype!r}; "
                f"use one of {', '.join(DATATYPES)}"
            )
        if any((not isinstance(d, int)) or d < -1 for d in self.shape):
            raise InvalidArgument(
                f"tensor {self.name!r}: shape {list(self.shape)} must hold integers >= -1"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(str(d["name"]), str(d["datatype"]), tuple(int(x) for x in d["shape"]))


@dataclass(frozen=True, slots=True)
class ModelSignature:
    """The inputs and outputs a model version takes and gives.

    Example:
        >>> sig = ModelSignature(inputs=(TensorSpec("x", "FP32", (-1, 4)),),
        ...                      outputs=(TensorSpec("y", "INT64", (-1,)),))
        >>> ModelSignature.from_dict(sig.to_dict()) == sig
        True
    """

    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSignature:
        return cls(
            inputs=tuple(TensorSpec.from_dict(t) for t in d.get("inputs", [])),
            outputs=tuple(TensorSpec.from_dict(t) for t in d.get("outputs", [])),
        )

    def input(self, name: str) -> TensorSpec:
        for t in self.inputs:
            if t.name == name:
                return t
        raise InvalidArgument(
            f"unknown input {name!r}; the model takes {[t.name for t in self.inputs]}"
        )


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A reference to a model version: ``name`` (latest), ``name:3`` or ``name@alias``.

    Example:
        >>> ModelRef.parse("iris:3")
        ModelRef(name='iris', version=3, alias=None)
        >>> str(ModelRef.parse("iris@production"))
        'iris@production'
        >>> ModelRef.parse("iris").is_latest
        True
    """

    name: str
    version: int | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.version is not None and self.alias is not None:
            raise InvalidArgument("a reference names a version or an alias, not both")
        if self.version is not None and self.version < 1:
            raise InvalidArgument(f"version numbers start at 1, got {self.version}")
        if self.alias is not None:
            validate_name(self.alias, "alias")

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        """Parse ``name``, ``name:N`` or ``name@alias``; raise :class:`InvalidArgument`."""
        if not isinstance(ref, str) or not ref:
            raise InvalidArgument("empty model reference; use NAME, NAME:VERSION or NAME@ALIAS")
        if "@" in ref:
            name, _, alias = ref.partition("@")
            return cls(name, alias=alias)
        if ":" in ref:
            name, _, ver = ref.partition(":")
            if not ver.isdigit() or not ver.isascii():
                raise InvalidArgument(
                    f"invalid version {ver!r} in {ref!r}: use a number, e.g. {name}:3"
                )
            return cls(name, version=int(ver))
        return cls(ref)

    @property
    def is_latest(self) -> bool:
        return self.version is None and self.alias is None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for, with its wire preferences.

    ``binary`` is None when the client did not say (the request default applies);
    ``classification`` > 0 asks for the top-N classes as BYTES ``"score:index"``.
    """

    name: str
    binary: bool | None = None
    classification: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferenceRequest:
    """A decoded inference request: named numpy arrays plus parameters.

    Every wire format (V2 JSON/binary, gRPC, TF Serving) decodes into this; the data
    plane and runtimes never see the wire. ``outputs`` None means "all outputs".
    BYTES tensors are numpy object arrays of ``bytes``.
    """

    inputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None
    binary_output: bool = False  # request-level default for outputs (binary_data_output)


@dataclass(slots=True)
class InferenceResponse:
    """A model's answer: named numpy arrays, the version that produced them, the id."""

    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
