"""Python models: a user class ``module:Class`` with ``load()`` and ``predict()``.

For pre- and post-processing around any other model (tokenising text, scaling, mapping
class indices to names), like an MLflow ``pyfunc`` or a Triton Python backend model.
A python model is a directory holding ``python_model.json``, the module with the class
and any files the class needs (an inner ``model.onnx``, vocabularies…)::

    sentiment/
      python_model.json     {"class": "model:Sentiment"}
      model.py              class Sentiment: load(self, path) / predict(self, inputs)
      inner.onnx

``load(path)`` receives the version's directory (or takes no argument);
``predict(inputs)`` receives a dict of named numpy arrays and returns an array, a
tuple, a dict or a dataclass (named like every other runtime's outputs).
``python_model.json`` may also declare ``inputs``/``outputs`` (tensor specs); otherwise
the signature comes from running the sample input.

A python model *is* code: registering or loading one always needs explicit trust.
Calls to ``predict`` are serialised unless the class sets ``thread_safe = True``.

Example:
    >>> reg.register("sentiment/", name="sentiment", trust=True,
    ...              sample_input={"text": np.array([b"great"], dtype=object)})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument, InvalidModel, ModelExecutionError
from modelport.core.types import ModelSignature, TensorSpec
from modelport.runtimes.base import Inspection, LoadSpec, RuntimeOptions
from modelport.runtimes.sample import name_outputs, signature_from_arrays

SPEC_FILE = "python_model.json"
_IMPORT_LOCK = threading.Lock()
_SKIP_DIRS = {"__pycache__", ".git", ".ipynb_checkpoints"}


def read_spec(directory: Path) -> dict[str, Any]:
    """Read and check ``python_model.json``."""
    try:
        spec = json.loads((directory / SPEC_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidModel(f"{directory.name}/{SPEC_FILE} is unreadable: {e}") from e
    target = spec.get("class") if isinstance(spec, dict) else None
    if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
        raise InvalidModel(f'{SPEC_FILE} needs "class": "module:Class", got {target!r}')
    return dict(spec)


def model_files(directory: Path) -> dict[str, Path]:
    """Every regular file of the model directory, by relative name (no links, no caches)."""
    files: dict[str, Path] = {}
    root = directory.resolve()
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if p.is_symlink():
            raise InvalidModel(f"{rel} is a symbolic link; python models hold plain files only")
        if p.is_file() and p.resolve().is_relative_to(root) and p.suffix != ".pyc":
            files[rel.as_posix()] = p
    return files


def import_class(directory: Path, target: str) -> type:
    """Import ``module:Class`` from the model directory (or from installed packages)."""
    module_name, class_name = target.split(":")
    rel = Path(*module_name.split("."))
    file = directory / rel.with_suffix(".py")
    if not file.is_file() and (directory / rel / "__init__.py").is_file():
        file = directory / rel / "__init__.py"
    try:
        if file.is_file():
            digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:12]
            unique = f"modelport_user_{digest}_{module_name.replace('.', '_')}"
            with _IMPORT_LOCK:
                module = sys.modules.get(unique)
                if module is None:
                    spec = importlib.util.spec_from_file_location(unique, file)
                    if spec is None or spec.loader is None:
                        raise InvalidModel(f"cannot import {file.name}")
                    module = importlib.util.module_from_spec(spec)
                    sys.path.insert(0, str(directory))
                    try:
                        spec.loader.exec_module(module)
                    finally:
                        with contextlib.suppress(ValueError):
                            sys.path.remove(str(directory))
                    sys.modules[unique] = module
        else:
            module = importlib.import_module(module_name)
    except InvalidModel:
        raise
    except Exception as e:
        raise InvalidModel(f"importing {module_name} failed: {type(e).__name__}: {e}") from e
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise InvalidModel(f"{module_name} has no class {class_name}")
    if not callable(getattr(cls, "predict", None)):
        raise InvalidModel(f"{target} has no predict(inputs) method")
    return cls


def instantiate(directory: Path, target: str) -> Any:
    """Create the user object and call its ``load`` (with the directory if it takes one)."""
    cls = import_class(directory, target)
    try:
        obj = cls()
        load = getattr(obj, "load", None)
        if callable(load):
            params = inspect.signature(load).parameters
            if params:
                load(directory)
            else:
                load()
    except Exception as e:
        raise InvalidModel(f"{target} failed to load: {type(e).__name__}: {e}") from e
    return obj


class PythonFormat:
    """A directory with ``python_model.json`` naming a user class; always needs trust."""

    name = "python"
    framework = "python"
    default_input = "input"

    def sniff(self, path: Path) -> bool:
        return path.is_dir() and (path / SPEC_FILE).is_file()

    def inspect(
        self,
        path: Path,
        *,
        sample_input: dict[str, np.ndarray] | None = None,
        trust: bool = False,
    ) -> Inspection:
        """Refuse without ``trust``; else load the class and derive the signature."""
        if not self.sniff(path):
            raise InvalidModel(f"{path} is not a directory with {SPEC_FILE}")
        spec = read_spec(path)
        files = model_files(path)
        if not trust:
            raise InvalidModel(
                f"{path.name} is a python model: registering it runs its code "
                f"({spec['class']}); pass --trust if you trust it"
            )
        obj = instantiate(path, spec["class"])
        signature = _declared_signature(spec)
        if sample_input is not None:
            try:
                outputs = name_outputs(obj.predict(dict(sample_input)))
            except Exception as e:
                raise InvalidArgument(f"{spec['class']}.predict fails on the sample: {e}") from e
            signature = signature or signature_from_arrays(sample_input, outputs)
        if signature is None:
            raise InvalidArgument(
                "python models need a sample input (--sample-input) or inputs/outputs in "
                f"{SPEC_FILE}"
            )
        extra = {"class": spec["class"], "requires_trust": True}
        return Inspection(self.name, self.framework, signature, files, SPEC_FILE, extra)

    def load(self, spec: LoadSpec, options: RuntimeOptions) -> PythonRuntime:
        return PythonRuntime(self.load_native(spec), spec.signature)

    def load_native(self, spec: LoadSpec) -> Any:
        """The user's object, loaded."""
        if not spec.trusted:
            raise InvalidModel("python models run their own code and this version is not trusted")
        return instantiate(spec.directory, read_spec(spec.directory)["class"])


def _declared_signature(spec: dict[str, Any]) -> ModelSignature | None:
    if "inputs" not in spec and "outputs" not in spec:
        return None
    try:
        return ModelSignature(
            tuple(TensorSpec.from_dict(t) for t in spec.get("inputs", [])),
            tuple(TensorSpec.from_dict(t) for t in spec.get("outputs", [])),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidModel(f"{SPEC_FILE}: bad inputs/outputs: {e}") from e


class PythonRuntime:
    """A user object behind the Runtime contract (serialised unless it says thread_safe)."""

    def __init__(self, obj: Any, signature: ModelSignature) -> None:
        self.obj = obj
        self._signature = signature
        self._lock = None if getattr(obj, "thread_safe", False) else threading.Lock()
        self._names = [t.name for t in signature.outputs]

    @property
    def signature(self) -> ModelSignature:
        return self._signature

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            if self._lock is None:
                result = self.obj.predict(inputs)
            else:
                with self._lock:
                    result = self.obj.predict(inputs)
        except Exception as e:
            raise ModelExecutionError(f"{type(self.obj).__name__}.predict failed: {e}") from e
        return name_outputs(result, self._names or None)

    def close(self) -> None:
        for name in ("close", "unload"):
            fn = getattr(self.obj, name, None)
            if callable(fn):
                fn()
                break
        self.obj = None
