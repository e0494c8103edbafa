"""PyTorch helpers shared by the formats, live registration and the converters.

Calling modules with named numpy arrays, probing which axes are dynamic, exporting
(``torch.export``) and tracing live modules, and the member check that runs before
``torch.export.load`` (see :mod:`modelport.runtimes.pytorch` for why).

Example:
    >>> program = export_program(module, {"x": X[:8]}, keywords=False)   # doctest: +SKIP
    >>> save_program(program, Path("model.pt2"))                          # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument, InvalidModel, MissingDependency
from modelport.core.types import ModelSignature
from modelport.runtimes._pickles import scan_pickle, zip_names
from modelport.runtimes.sample import (
    batch_size,
    name_outputs,
    signature_from_arrays,
    with_batch,
)

TORCH_TO_V2 = {
    "torch.float32": "FP32",
    "torch.float64": "FP64",
    "torch.float16": "FP16",
    "torch.bfloat16": "BF16",
    "torch.int64": "INT64",
    "torch.int32": "INT32",
    "torch.int16": "INT16",
    "torch.int8": "INT8",
    "torch.uint8": "UINT8",
    "torch.bool": "BOOL",
}
#: What a state_dict pickle imports: tensor rebuilders, storages, dtypes, ordered dicts.
#: A pickle importing nothing else holds weights without the model's code.
WEIGHT_GLOBALS = re.compile(
    r"collections\.OrderedDict|torch\._utils\.\w+|torch\._tensor\._rebuild_from_type_v2"
    r"|torch\.\w+Storage|torch\.(?:float|int|uint|bfloat|bool|complex)\w*|torch\.(?:device|Size)"
    r"|torch\.nn\.parameter\.Parameter|torch\.serialization\._get_layout"
)
NEEDS_SAMPLE = "give a sample input (--sample-input FILE.npy|.npz, or sample_input= in Python)"


def torch_module() -> Any:
    try:
        import torch
    except ImportError as e:
        raise MissingDependency.for_extra("torch", "torch", "PyTorch models") from e
    return torch


def zip_layout(path: Path) -> str | None:
    """``torchscript``, ``pt2`` or ``pickle`` for PyTorch's zip archives, else None."""
    names = zip_names(path) if path.is_file() else None
    if not names:
        return None
    if any(n.endswith("/archive_format") for n in names) and any(
        "/models/" in n and n.endswith(".json") for n in names
    ):
        return "pt2"
    has_data = any(n.endswith("/data.pkl") for n in names)
    if has_data and any("/code/" in n for n in names):
        return "torchscript"
    if has_data:
        return "pickle"
    return None


def to_tensors(sample: dict[str, np.ndarray]) -> dict[str, Any]:
    torch = torch_module()
    out = {}
    for k, v in sample.items():
        if v.dtype.kind in "OSU":
            raise InvalidArgument(f"input {k!r}: PyTorch models take numeric tensors, not text")
        arr = v if v.flags.writeable and v.flags.c_contiguous else np.array(v, copy=True)
        out[k] = torch.from_numpy(arr)
    return out


class Caller:
    """Calls a module with named arrays: by keyword, or by position in signature order."""

    def __init__(self, module: Any, names: list[str], keywords: bool) -> None:
        self.module = module
        self.names = names
        self.keywords = keywords

    def __call__(self, sample: dict[str, np.ndarray], out_names: list[str] | None = None) -> Any:
        torch = torch_module()
        tensors = to_tensors({n: sample[n] for n in self.names})
        with torch.inference_mode():
            result = self.module(**tensors) if self.keywords else self.module(*tensors.values())
        return name_outputs(result, out_names)


def probe_signature(
    call: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], sample: dict[str, np.ndarray]
) -> tuple[ModelSignature, dict[str, Any]]:
    """Run the model on the sample and on variants to find its dynamic axes.

    The batch axis is dynamic when the model answers for another batch size; any other
    axis is dynamic when shortening it (together with the same axis of every input of
    that length, e.g. token ids and their mask) still runs. Output axes that change
    size between runs are dynamic.
    """
    try:
        base = call(sample)
    except Exception as e:
        raise InvalidArgument(f"the model fails on the sample input: {e}") from e
    din: dict[str, set[int]] = {k: set() for k in sample}
    dout: dict[str, set[int]] = {k: set() for k in base}
    probes: dict[str, str] = {}

    def attempt(variant: dict[str, np.ndarray], axes: dict[str, int], label: str) -> None:
        try:
            out = call(variant)
        except Exception:
            probes[label] = "static"
            return
        if list(out) != list(base):
            probes[label] = "static"
            return
        probes[label] = "dynamic"
        for k, axis in axes.items():
            din[k].add(axis)
        for k, arr in out.items():
            if arr.ndim == base[k].ndim:
                dout[k].update(
                    i
                    for i, (a, b) in enumerate(zip(arr.shape, base[k].shape, strict=True))
                    if a != b
                )

    n = batch_size(sample)
    attempt(with_batch(sample, 1 if n >= 2 else 3), dict.fromkeys(sample, 0), "batch")
    groups: dict[tuple[int, int], list[str]] = {}
    for k, v in sample.items():
        for axis in range(1, v.ndim):
            if v.shape[axis] >= 2:
                groups.setdefault((axis, int(v.shape[axis])), []).append(k)
    for (axis, size), names in groups.items():
        variant = {
            k: np.take(v, np.arange(size - 1), axis=axis) if k in names else v
            for k, v in sample.items()
        }
        attempt(variant, dict.fromkeys(names, axis), f"axis {axis} of {', '.join(names)}")
    return signature_from_arrays(sample, base, din, dout), {"shape_probes": probes}


def order_sample(
    sample: dict[str, np.ndarray], names: list[str], what: str
) -> tuple[dict[str, np.ndarray], bool]:
    """The sample keyed and ordered by the model's argument names; True if they matched."""
    if set(sample) == set(names):
        return {n: sample[n] for n in names}, True
    if len(sample) > len(names) or not sample:
        raise InvalidArgument(f"{what} takes {names}; the sample has {sorted(sample)}")
    return dict(sample), False


def forward_params(module: Any) -> list[str]:
    """Names of the tensor arguments of ``module.forward`` (without ``self``)."""
    import inspect as pyinspect

    try:
        params = pyinspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return []
    return [
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


# -------------------------------------------------------------------------- export archives


def check_pt2_members(path: Path, trust: bool) -> list[str]:
    """Load every pickled member with ``weights_only=True``; list those that need more."""
    torch = torch_module()
    risky: list[str] = []
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            pickled: set[str] = {n for n in names if n.endswith((".pt", ".pkl"))}
            for n in names:
                if not n.endswith("_config.json") or "/data/" not in n:
                    continue
                folder = n.rsplit("/", 1)[0]
                config = json.loads(z.read(n)).get("config", {})
                for meta in config.values():
                    member = f"{folder}/{meta.get('path_name', '')}"
                    if str(meta.get("path_name", "")).startswith(("custom_obj", "opaque_obj")):
                        risky.append(f"{member} (a Python object)")
                    elif meta.get("use_pickle"):
                        pickled.add(member)
            for member in sorted(pickled):
                data = z.read(member)
                try:
                    torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
                except Exception:
                    risky.append(f"{member} (imports {_member_imports(data)})")
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as e:
        raise InvalidModel(f"{path.name} is not a readable torch.export archive: {e}") from e
    if risky and not trust:
        raise InvalidModel(
            f"{path.name} holds members that PyTorch would unpickle with full Python "
            f"powers: {'; '.join(risky)}; register with --trust only if you trust its origin"
        )
    return risky


def _member_imports(data: bytes) -> str:
    """What a pickled member (raw, or a torch.save zip) would import, for messages."""
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                pkl = next(n for n in inner.namelist() if n.endswith("data.pkl"))
                data = inner.read(pkl)
        except (zipfile.BadZipFile, StopIteration, KeyError):
            return "unreadable pickle data"
    return scan_pickle(data).shown(5)


def load_program(path: Path, trust: bool) -> Any:
    """Load a ``.pt2`` after checking its pickled members (see the module docstring)."""
    if zip_layout(path) != "pt2":
        raise InvalidModel(f"{path.name} is not a torch.export archive (.pt2)")
    check_pt2_members(path, trust)
    torch = torch_module()
    try:
        return torch.export.load(str(path))
    except Exception as e:
        raise InvalidModel(f"{path.name}: torch.export cannot load it: {e}") from e


# ----------------------------------------------------------------------------- saving


def distinct_batch(sample: dict[str, np.ndarray]) -> int:
    """A batch size >= 2 that equals no other axis of the sample.

    ``torch.export`` gives equal sizes one symbol: a batch as long as the feature axis
    would be tied to it, and frozen when the feature axis is.
    """
    others = {int(d) for v in sample.values() for d in v.shape[1:]}
    n = max(2, batch_size(sample))
    while n in others:
        n += 1
    return n


def export_program(module: Any, sample: dict[str, np.ndarray], *, keywords: bool) -> Any:
    """``torch.export`` the module, with the axes that :func:`probe_signature` finds dynamic.

    The eager module is probed first (batch, and each other axis shortened), so an axis
    is symbolic in the program only where the model really accepts other sizes.
    """
    torch = torch_module()
    was_training = bool(getattr(module, "training", False))
    module.eval()
    try:
        signature, _ = probe_signature(Caller(module, list(sample), keywords), sample)
        tensors = to_tensors(with_batch(sample, distinct_batch(sample)))
        auto = torch.export.Dim.AUTO
        dynamic = {
            t.name: {i: auto for i, d in enumerate(t.shape) if d == -1} or None
            for t in signature.inputs
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if keywords:
                return torch.export.export(module, (), tensors, dynamic_shapes=dynamic)
            return torch.export.export(
                module, tuple(tensors.values()), dynamic_shapes=tuple(dynamic.values())
            )
    finally:
        if was_training:
            module.train()


def save_program(program: Any, path: Path) -> Path:
    torch_module().export.save(program, str(path))
    return path


def trace_module(module: Any, sample: dict[str, np.ndarray]) -> Any:
    """TorchScript by tracing (positional inputs in sample order), in eval mode."""
    torch = torch_module()
    tensors = tuple(to_tensors(with_batch(sample, distinct_batch(sample))).values())
    was_training = bool(getattr(module, "training", False))
    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return torch.jit.trace(module, tensors, strict=False, check_trace=False)
    finally:
        if was_training:
            module.train()
