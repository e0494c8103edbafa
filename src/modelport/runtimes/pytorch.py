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

import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from modelport.core.errors import (
    InvalidArgument,
    InvalidModel,
    ModelExecutionError,
)
from modelport.core.types import ModelSignature, TensorSpec
from modelport.runtimes._pickles import scan_pickle
from modelport.runtimes.base import Inspection, LoadSpec, RuntimeOptions
from modelport.runtimes.sample import cast_inputs, to_numpy
from modelport.runtimes.torch_tools import (
    NEEDS_SAMPLE,
    TORCH_TO_V2,
    WEIGHT_GLOBALS,
    Caller,
    check_pt2_members,
    forward_params,
    load_program,
    order_sample,
    probe_signature,
    torch_module,
    zip_layout,
)

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
        torch = torch_module()
        try:
            with warnings.catch_warnings():
                # TorchScript is deprecated in favour of torch.export, and still loads
                warnings.filterwarnings("ignore", "`torch.jit", category=DeprecationWarning)
                warnings.filterwarnings("ignore", "`torch.jit", category=FutureWarning)
                return torch.jit.load(str(path), map_location="cpu")
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
            raise InvalidArgument(f"TorchScript models record no input shapes; {NEEDS_SAMPLE}")
        sample, _ = order_sample(sample_input, params, "the TorchScript module")
        call = Caller(module, list(sample), keywords=False)
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


def _program_io(ep: Any) -> tuple[list[str], bool, list[TensorSpec]]:
    """Input names, whether they are keywords, and input specs from an ExportedProgram."""
    torch = torch_module()
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
    torch = torch_module()
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    vals = [a.meta.get("val") for a in out_node.args[0]]
    user_outputs = len(ep.graph_signature.user_outputs)
    vals = vals[len(vals) - user_outputs :]
    specs = []
    for name, val in zip(names, vals, strict=True):
        shape = tuple(-1 if isinstance(d, torch.SymInt) else int(d) for d in val.shape)
        specs.append(TensorSpec(name, TORCH_TO_V2.get(str(val.dtype), "FP32"), shape))
    return specs


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
        risky = check_pt2_members(path, trust)
        ep = load_program(path, trust=True)
        names, keywords, in_specs = _program_io(ep)
        if sample_input is None:
            example = getattr(ep, "example_inputs", None)
            if not example:
                raise InvalidArgument(f"the program stores no example inputs; {NEEDS_SAMPLE}")
            args, kwargs = example
            sample_input = {
                n: to_numpy(t) for n, t in zip(names, [*args, *kwargs.values()], strict=True)
            }
        sample, _ = order_sample(sample_input, names, "the exported program")
        if len(sample) != len(names):
            raise InvalidArgument(
                f"the exported program takes {names}; the sample has {sorted(sample)}"
            )
        sample = dict(zip(names, sample.values(), strict=True))
        call = Caller(ep.module(), names, keywords)
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
        code = [g for g in imports if not WEIGHT_GLOBALS.fullmatch(g)]
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
            raise InvalidArgument(f"pickled modules record no input shapes; {NEEDS_SAMPLE}")
        names = forward_params(module)
        sample, keywords = order_sample(sample_input, names, type(module).__name__)
        signature, extra = probe_signature(Caller(module, list(sample), keywords), sample)
        extra.update(requires_trust=True, keywords=keywords, module=type(module).__qualname__)
        return Inspection(
            self.name, self.framework, signature, {"model.pth": path}, "model.pth", extra
        )

    def _load(self, path: Path) -> Any:
        torch = torch_module()
        try:
            module = torch.load(str(path), weights_only=False, map_location="cpu")
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
            torch_module().set_num_threads(opts.intra_op_threads)
        self.module = module
        self._signature = signature
        self._caller = Caller(module, [t.name for t in signature.inputs], keywords)
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
