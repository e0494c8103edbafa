"""The two contracts every framework plugs into: a model format and a runtime.

- :class:`ModelFormat` recognises a framework's files by their content, checks them and
  reads (or derives) the :class:`~modelport.core.types.ModelSignature`. The registry
  uses it at registration; it never runs the model.
- :class:`Runtime` loads a registered version and predicts on named numpy arrays. It is
  synchronous, never sees JSON, HTTP or gRPC, and is thread-safe unless it says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelport.core.types import ModelSignature


@dataclass(frozen=True, slots=True)
class Inspection:
    """What a format found in a model: its signature and the files to store.

    ``files`` maps the name a file gets inside the version (relative, ``/``-separated)
    to where it is now; ``entry`` is the file a runtime opens.
    """

    format: str
    framework: str
    signature: ModelSignature
    files: dict[str, Path]
    entry: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Everything a format needs to load a stored version (without the registry).

    ``directory`` holds the version's files (verified); ``entry`` is the main file;
    ``extra`` is the format-specific metadata recorded at registration; ``trusted``
    is True only when the version was registered with explicit trust (pickle).
    """

    directory: Path
    entry: str
    signature: ModelSignature
    extra: dict[str, Any] = field(default_factory=dict)
    trusted: bool = False
    #: decrypted file contents (name → bytes) for encrypted versions; formats that can
    #: load from memory use these instead of the (ciphertext) files in ``directory``
    blobs: dict[str, bytes] | None = None


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Knobs a runtime may honour; unknown ones are ignored."""

    intra_op_threads: int = 0  # 0 = the library's default
    inter_op_threads: int = 0
    graph_optimization: str = "all"  # disable | basic | extended | all
    providers: tuple[str, ...] = ()  # empty = best available
    spinning: bool = False  # let idle intra-op threads spin (burns CPU the server needs)


class ModelFormat(Protocol):
    """A framework's on-disk model format."""

    name: str
    framework: str

    def sniff(self, path: Path) -> bool:
        """True when ``path`` holds this format, judged by content, cheaply."""

    def inspect(
        self,
        path: Path,
        *,
        sample_input: dict[str, np.ndarray] | None = None,
        trust: bool = False,
    ) -> Inspection:
        """Check the model and read (or, from ``sample_input``, derive) its signature.

        Raises InvalidModel if it is broken; formats that would run code on load
        (pickle) refuse unless ``trust``.
        """

    def load(self, spec: LoadSpec, options: RuntimeOptions) -> Runtime:
        """Load a stored version for inference."""


class Runtime(Protocol):
    """A loaded model version."""

    @property
    def signature(self) -> ModelSignature: ...

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...
