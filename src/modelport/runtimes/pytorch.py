"""PyTorch: TorchScript (``.pt``) and ``torch.export`` programs (``.pt2``); pickles with trust.

Three kinds of files, told apart by the layout of the zip archive PyTorch writes:

- **TorchScript** (``torch.jit.save``): ``code/`` plus ``data.pkl``. Loaded by
  TorchScript's own loader, which builds TorchScript types only: no Python runs.
- **torch.export** (``torch.export.save``): ``archive_format`` = ``pt2``, the graph as
  JSON, weights as raw bytes. PyTorch loads some members (pickled weights and
  constants, sample inputs) with ``torch.load(weights_only=False)`` or plain
  ``pickle.loads``; modelport therefore first loads every such member with
  ``weights_only=True`` and refuses the file if one needs more, or holds opaque
  Python objects, unless the user trusts it.
- **pickled modules** (``torch.save(model)``): a pickle of the module's class; loading
  it runs code, so it is refused without explicit trust. A file holding only weights
  (a ``state_dict``) cannot run without its code and is refused with that reason.

The signature of a ``.pt2`` comes from the program itself: input names, dtypes, and
which axes are symbolic. TorchScript and pickled modules carry no shapes, so they need
a sample input; which axes are dynamic is found by running the model on the sample
with the batch axis and each other axis shortened (:func:`probe_signature`).

Example:
    >>> fmt = TorchExportFormat()
    >>> insp = fmt.inspect(Path("text.pt2"))                  # doctest: +SKIP
    >>> [(t.name, t.shape) for t in insp.signature.inputs]    # doctest: +SKIP
    [('input_ids', (-1, -1)), ('attention_mask', (-1, -1))]
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modelport.core.errors import (
    InvalidArgument,
    InvalidModel,
    MissingDependency,
    ModelExecutionError,
)
from modelport.core.types import ModelSignature, TensorSpec
from modelport.runtimes._pickles import scan_pickle, zip_names
from modelport.runtimes.base import Inspection, LoadSpec, RuntimeOptions
from modelport.runtimes.sample import (
    batch_size,
    cast_inputs,
    name_outputs,
    signature_from_arrays,
    to_numpy,
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
#: What ``torch.load(weights_only=True)`` builds from a state_dict: tensors, storages,
#: ordered dicts. A pickle importing only these is weights without code.
_WEIGHT_GLOBALS = ("torch._utils.", "torch.", "collections.OrderedDict", "builtins.set")
_NEEDS_SAMPLE = "give a sample input (--sample-input FILE.npy|.npz, or sample_input= in Python)"


def _torch() -> Any:
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


def _tensors(sample: dict[str, np.ndarray]) -> dict[str, Any]:
    torch = _torch()
    out = {}
    for k, v in sample.items():
        if v.dtype.kind in "OSU":
            raise InvalidArgument(f"input {k!r}: PyTorch models take numeric tensors, not text")
        arr = v if v.flags.writeable and v.flags.c_contiguous else np.array(v, copy=True)
        out[k] = torch.from_numpy(arr)
    return out


class _Caller:
    """Calls a module with named arrays: by keyword, or by position in signature order."""

    def __init__(self, module: Any, names: list[str], keywords: bool) -> None:
        self.module = module
        self.names = names
        self.keywords = keywords

    def __call__(self, sample: dict[str, np.ndarray], out_names: list[str] | None = None) -> Any:
        torch = _torch()
        tensors = _tensors({n: sample[n] for n in self.names})
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


def _order_sample(
    sample: dict[str, np.ndarray], names: list[str], what: str
) -> tuple[dict[str, np.ndarray], bool]:
    """The sample keyed and ordered by the model's argument names; True if they matched."""
    if set(sample) == set(names):
        return {n: sample[n] for n in names}, True
    if len(sample) > len(names) or not sample:
        raise InvalidArgument(f"{what} takes {names}; the sample has {sorted(sample)}")
    return dict(sample), False


# ----------------------------------------------------------------------------- TorchScript


class TorchScriptFormat:
    """TorchScript archives (``torch.jit.save``); safe to load, need a sample for shapes."""

    name = "torchscript"
    framework = "pytorch"
    default_input = "input"

    def sniff(self, path: Path) -> bool:
        return zip_layout(path) == "torchscript"

    def _load(self, path: Path) -> Any:
        if zip_layout(path) != "torchscript":
            raise InvalidModel(f"{path.name} is not a TorchScript archive")
        try:
            with warnings.catch_warnings():
                # TorchScript is deprecated in favour of torch.export, and still loads
                warnings.filterwarnings("ignore", "`torch.jit", category=DeprecationWarning)
                warnings.filterwarnings("ignore", "`torch.jit", category=FutureWarning)
                return _torch().jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise InvalidModel(f"{path.name}: TorchScript cannot load it: {e}") from e

    def inspect(
        self,
        path: Path,
        *,
        sample_input: dict[str, np.ndarray] | None = None,
        trust: bool = False,
    ) -> Inspection:
        """Load with TorchScript and derive the signature from the sample input."""
        module = self._load(path)
        params = [a.name for a in module.forward.schema.arguments[1:]]
        if sample_input is None:
            raise InvalidArgument(f"TorchScript models record no input shapes; {_NEEDS_SAMPLE}")
        sample, _ = _order_sample(sample_input, params, "the TorchScript module")
        call = _Caller(module, list(sample), keywords=False)
        signature, extra = probe_signature(call, sample)
        extra["forward"] = str(module.forward.schema)
        return Inspection(
            self.name, self.framework, signature, {"model.pt": path}, "model.pt", extra
        )

    def load(self, spec: LoadSpec, options: RuntimeOptions) -> TorchRuntime:
        return TorchRuntime(self.load_native(spec), spec.signature, keywords=False, options=options)

    def load_native(self, spec: LoadSpec) -> Any:
        return self._load(spec.directory / spec.entry)


# ----------------------------------------------------------------------------- torch.export


def _check_pt2_members(path: Path, trust: bool) -> list[str]:
    """Load every pickled member with ``weights_only=True``; list those that need more."""
    torch = _torch()
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


def _program_io(ep: Any) -> tuple[list[str], bool, list[TensorSpec]]:
    """Input names, whether they are keywords, and input specs from an ExportedProgram."""
    torch = _torch()
    in_spec = ep.call_spec.in_spec
    args_spec, kwargs_spec = (in_spec.child(i) for i in range(in_spec.num_children))
    keywords = list(kwargs_spec.context or [])
    user = list(ep.graph_signature.user_inputs)
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    specs = []
    names = [*user[: args_spec.num_children], *keywords] if keywords else user
    for node_name, name in zip(user, names, strict=False):
        val = nodes[node_name].meta.get("val")
        if val is None:
            raise InvalidModel(f"exported program input {name!r} has no tensor metadata")
        shape = tuple(-1 if isinstance(d, torch.SymInt) else int(d) for d in val.shape)
        dtype = TORCH_TO_V2.get(str(val.dtype))
        if dtype is None:
            raise InvalidModel(f"input {name!r} has unsupported dtype {val.dtype}")
        specs.append(TensorSpec(name, dtype, shape))
    return names, bool(keywords) and args_spec.num_children == 0, specs


def _program_outputs(ep: Any, names: list[str]) -> list[TensorSpec]:
    torch = _torch()
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    vals = [a.meta.get("val") for a in out_node.args[0]]
    user_outputs = len(ep.graph_signature.user_outputs)
    vals = vals[len(vals) - user_outputs :]
    specs = []
    for name, val in zip(names, vals, strict=True):
        shape = tuple(-1 if isinstance(d, torch.SymInt) else int(d) for d in val.shape)
        specs.append(TensorSpec(name, TORCH_TO_V2.get(str(val.dtype), "FP32"), shape))
    return specs


def load_program(path: Path, trust: bool) -> Any:
    """Load a ``.pt2`` after checking its pickled members (see the module docstring)."""
    if zip_layout(path) != "pt2":
        raise InvalidModel(f"{path.name} is not a torch.export archive (.pt2)")
    _check_pt2_members(path, trust)
    try:
        return _torch().export.load(str(path))
    except Exception as e:
        raise InvalidModel(f"{path.name}: torch.export cannot load it: {e}") from e


class TorchExportFormat:
    """``torch.export`` programs (``.pt2``): shapes and dynamic axes recorded in the file."""

    name = "torch-export"
    framework = "pytorch"
    default_input = "input"

    def sniff(self, path: Path) -> bool:
        return zip_layout(path) == "pt2"

    def inspect(
        self,
        path: Path,
        *,
        sample_input: dict[str, np.ndarray] | None = None,
        trust: bool = False,
    ) -> Inspection:
        """Read inputs and dynamic axes from the program; run the sample to name outputs."""
        risky = _check_pt2_members(path, trust)
        ep = load_program(path, trust=True)
        names, keywords, in_specs = _program_io(ep)
        if sample_input is None:
            example = getattr(ep, "example_inputs", None)
            if not example:
                raise InvalidArgument(f"the program stores no example inputs; {_NEEDS_SAMPLE}")
            args, kwargs = example
            sample_input = {
                n: to_numpy(t) for n, t in zip(names, [*args, *kwargs.values()], strict=True)
            }
        sample, _ = _order_sample(sample_input, names, "the exported program")
        if len(sample) != len(names):
            raise InvalidArgument(
                f"the exported program takes {names}; the sample has {sorted(sample)}"
            )
        sample = dict(zip(names, sample.values(), strict=True))
        call = _Caller(ep.module(), names, keywords)
        try:
            outputs = call(sample)
        except Exception as e:
            raise InvalidArgument(f"the exported program fails on the sample input: {e}") from e
        out_specs = _program_outputs(ep, list(outputs))
        signature = ModelSignature(tuple(in_specs), tuple(out_specs))
        extra: dict[str, Any] = {"keywords": keywords}
        if risky:
            extra.update(requires_trust=True, untrusted_members=risky)
        return Inspection(
            self.name, self.framework, signature, {"model.pt2": path}, "model.pt2", extra
        )

    def load(self, spec: LoadSpec, options: RuntimeOptions) -> TorchRuntime:
        ep = self.load_native(spec)
        keywords = bool(spec.extra.get("keywords", False))
        return TorchRuntime(ep.module(), spec.signature, keywords=keywords, options=options)

    def load_native(self, spec: LoadSpec) -> Any:
        """The ``ExportedProgram``."""
        return load_program(spec.directory / spec.entry, spec.trusted)


# ----------------------------------------------------------------------------- pickles


def _data_pkl_scan(path: Path) -> tuple[str, ...]:
    with zipfile.ZipFile(path) as z:
        member = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        return scan_pickle(z.read(member)).globals


class TorchPickleFormat:
    """Whole modules saved with ``torch.save(model)``: a pickle, loaded only with trust."""

    name = "torch-pickle"
    framework = "pytorch"
    default_input = "input"

    def sniff(self, path: Path) -> bool:
        return zip_layout(path) == "pickle"

    def inspect(
        self,
        path: Path,
        *,
        sample_input: dict[str, np.ndarray] | None = None,
        trust: bool = False,
    ) -> Inspection:
        """Refuse weights-only files and, without ``trust``, every pickled module."""
        if zip_layout(path) != "pickle":
            raise InvalidModel(f"{path.name} is not a torch.save archive")
        imports = _data_pkl_scan(path)
        code = [g for g in imports if not g.startswith(_WEIGHT_GLOBALS)]
        if not code:
            raise InvalidModel(
                f"{path.name} holds only weights (a state_dict), not a model: save the "
                "module with torch.export.save or torch.jit.save, or register the live "
                "module with modelport.register(module, sample_input=...)"
            )
        if not trust:
            raise InvalidModel(
                f"{path.name} is a pickled module (it imports {', '.join(code[:6])}); loading "
                "it runs code: register with --trust only if you trust its origin, or save "
                "it with torch.export.save / torch.jit.save"
            )
        module = self._load(path)
        if sample_input is None:
            raise InvalidArgument(f"pickled modules record no input shapes; {_NEEDS_SAMPLE}")
        names = forward_params(module)
        sample, keywords = _order_sample(sample_input, names, type(module).__name__)
        signature, extra = probe_signature(_Caller(module, list(sample), keywords), sample)
        extra.update(requires_trust=True, keywords=keywords, module=type(module).__qualname__)
        return Inspection(
            self.name, self.framework, signature, {"model.pth": path}, "model.pth", extra
        )

    def _load(self, path: Path) -> Any:
        try:
            module = _torch().load(str(path), weights_only=False, map_location="cpu")
        except Exception as e:
            raise InvalidModel(f"{path.name}: cannot unpickle it: {e}") from e
        if not callable(module):
            raise InvalidModel(f"{path.name} holds a {type(module).__name__}, not a module")
        if hasattr(module, "eval"):
            module.eval()
        return module

    def load(self, spec: LoadSpec, options: RuntimeOptions) -> TorchRuntime:
        keywords = bool(spec.extra.get("keywords", False))
        return TorchRuntime(
            self.load_native(spec), spec.signature, keywords=keywords, options=options
        )

    def load_native(self, spec: LoadSpec) -> Any:
        if not spec.trusted:
            raise InvalidModel(f"{spec.entry} is a pickled module and the version is not trusted")
        return self._load(spec.directory / spec.entry)


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


# ----------------------------------------------------------------------------- runtime


class TorchRuntime:
    """A PyTorch module (eager, TorchScript or exported) behind the Runtime contract.

    Runs under ``torch.inference_mode`` on CPU. Thread-safe for modules whose forward
    does not mutate state (any module in eval mode). ``intra_op_threads`` > 0 sets
    PyTorch's thread count, which is process-wide.
    """

    def __init__(
        self,
        module: Any,
        signature: ModelSignature,
        *,
        keywords: bool = False,
        options: RuntimeOptions | None = None,
    ) -> None:
        opts = options or RuntimeOptions()
        if opts.intra_op_threads > 0:
            _torch().set_num_threads(opts.intra_op_threads)
        self.module = module
        self._signature = signature
        self._caller = _Caller(module, [t.name for t in signature.inputs], keywords)
        self._outputs = [t.name for t in signature.outputs]

    @property
    def signature(self) -> ModelSignature:
        return self._signature

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [t.name for t in self._signature.inputs if t.name not in inputs]
        if missing:
            raise InvalidArgument(f"missing input(s) {missing}")
        try:
            out: dict[str, np.ndarray] = self._caller(
                cast_inputs(inputs, self._signature), self._outputs
            )
        except InvalidArgument:
            raise
        except Exception as e:
            raise ModelExecutionError(f"PyTorch model failed: {e}") from e
        return out

    def close(self) -> None:
        self.module = None


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
    torch = _torch()
    was_training = bool(getattr(module, "training", False))
    module.eval()
    try:
        signature, _ = probe_signature(_Caller(module, list(sample), keywords), sample)
        tensors = _tensors(with_batch(sample, distinct_batch(sample)))
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
    _torch().export.save(program, str(path))
    return path


def trace_module(module: Any, sample: dict[str, np.ndarray]) -> Any:
    """TorchScript by tracing (positional inputs in sample order), in eval mode."""
    torch = _torch()
    tensors = tuple(_tensors(with_batch(sample, distinct_batch(sample))).values())
    was_training = bool(getattr(module, "training", False))
    module.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return torch.jit.trace(module, tensors, strict=False, check_trace=False)
    finally:
        if was_training:
            module.train()
