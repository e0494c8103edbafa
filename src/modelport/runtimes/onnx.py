"""ONNX: the default format and runtime (onnxruntime).

The format reads the signature straight from the graph and runs ``onnx.checker``;
external-data files are stored with the model, and a reference that points outside
the model's directory is refused. The runtime wraps one ``InferenceSession`` (which
is thread-safe for ``run``) and can load from a path or from bytes.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from modelport.core.errors import InvalidModel, MissingDependency, ModelExecutionError
from modelport.core.types import ModelSignature, TensorSpec
from modelport.runtimes.base import Inspection, LoadSpec, RuntimeOptions

# onnx.TensorProto.DataType → Open Inference Protocol datatype
ONNX_TO_V2 = {
    1: "FP32",
    2: "UINT8",
    3: "INT8",
    4: "UINT16",
    5: "INT16",
    6: "INT32",
    7: "INT64",
    8: "BYTES",
    9: "BOOL",
    10: "FP16",
    11: "FP64",
    12: "UINT32",
    13: "UINT64",
    16: "BF16",
}
# onnxruntime's type strings ("tensor(float)") → datatype
ORT_TO_V2 = {
    "tensor(float)": "FP32",
    "tensor(uint8)": "UINT8",
    "tensor(int8)": "INT8",
    "tensor(uint16)": "UINT16",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(string)": "BYTES",
    "tensor(bool)": "BOOL",
    "tensor(float16)": "FP16",
    "tensor(double)": "FP64",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bfloat16)": "BF16",
}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - onnx is a core dependency
        raise MissingDependency.for_extra("onnx", "onnx", "ONNX models") from e
    return onnx


def _tensor_spec(value_info: Any) -> TensorSpec | None:
    t = value_info.type
    if t.WhichOneof("value") != "tensor_type":
        return None  # sequences/maps (e.g. ZipMap) are not tensors
    dtype = ONNX_TO_V2.get(t.tensor_type.elem_type)
    if dtype is None:
        return None
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.tensor_type.shape.dim)
    return TensorSpec(value_info.name, dtype, dims)


def signature_from_graph(model: Any) -> tuple[ModelSignature, list[str]]:
    """Read inputs (minus initializers) and outputs; return also non-tensor outputs."""
    inits = {i.name for i in model.graph.initializer}
    inputs, outputs, skipped = [], [], []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        spec = _tensor_spec(vi)
        if spec is None:
            raise InvalidModel(f"ONNX input {vi.name!r} is not a tensor; only tensor inputs work")
        inputs.append(spec)
    for vi in model.graph.output:
        spec = _tensor_spec(vi)
        if spec is None:
            skipped.append(vi.name)
        else:
            outputs.append(spec)
    return ModelSignature(tuple(inputs), tuple(outputs)), skipped


def _external_files(model: Any, base: Path) -> dict[str, Path]:
    """External-data files the graph references, confined to the model's directory."""
    files: dict[str, Path] = {}
    onnx = _onnx()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        rel = PurePosixPath(location)
        if not location or rel.is_absolute() or ".." in rel.parts or "\\" in location:
            raise InvalidModel(
                f"ONNX external data location {location!r} must be a relative path "
                "inside the model's directory"
            )
        path = (base / rel).resolve()
        if not path.is_relative_to(base.resolve()) or not path.is_file():
            raise InvalidModel(f"ONNX external data file {location!r} is missing or escapes")
        files[rel.as_posix()] = path
    return files


class OnnxFormat:
    """ONNX model files (``.onnx``), recognised by parsing the protobuf."""

    name = "onnx"
    framework = "onnx"

    def sniff(self, path: Path) -> bool:
        if not path.is_file():
            return False
        try:
            model = _onnx().load_model(str(path), load_external_data=False)
        except Exception:
            return False
        return bool(model.ir_version) and len(model.graph.output) > 0

    def inspect(
        self,
        path: Path,
        *,
        sample_input: dict[str, np.ndarray] | None = None,
        trust: bool = False,
    ) -> Inspection:
        """Check with ``onnx.checker`` and read the signature from the graph.

        ``sample_input`` and ``trust`` are accepted for the common contract: ONNX
        carries its own signature and never runs code on load.
        """
        onnx = _onnx()
        if not path.is_file():
            raise InvalidModel(f"{path} is not a file; give the .onnx file")
        try:
            model = onnx.load_model(str(path), load_external_data=False)
        except Exception as e:
            raise InvalidModel(f"{path.name} is not a valid ONNX model: {e}") from e
        if not model.ir_version or not model.graph.output:
            raise InvalidModel(f"{path.name} is not a valid ONNX model (no graph outputs)")
        external = _external_files(model, path.parent)
        try:
            onnx.checker.check_model(str(path))
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InvalidModel(f"{path.name} fails the ONNX checker: {first}") from e
        signature, skipped = signature_from_graph(model)
        entry = "model.onnx"
        files = {entry: path, **external}
        if len(files) != len(external) + 1:
            raise InvalidModel("an ONNX external data file may not be named model.onnx")
        extra: dict[str, Any] = {
            "ir_version": int(model.ir_version),
            "opset": {o.domain or "ai.onnx": int(o.version) for o in model.opset_import},
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
        }
        if skipped:
            extra["non_tensor_outputs"] = skipped
        return Inspection(self.name, self.framework, signature, files, entry, extra)

    def load(self, spec: LoadSpec, options: RuntimeOptions) -> OnnxRuntime:
        if spec.blobs and spec.entry in spec.blobs:  # decrypted in memory, never on disk
            if len(spec.blobs) > 1:
                raise InvalidModel(
                    "an encrypted ONNX model with external data files cannot load from memory"
                )
            return OnnxRuntime(spec.blobs[spec.entry], options)
        return OnnxRuntime.from_path(spec.directory / spec.entry, options)


class OnnxRuntime:
    """An onnxruntime ``InferenceSession`` behind the :class:`Runtime` contract.

    Example:
        >>> rt = OnnxRuntime.from_path(path)          # doctest: +SKIP
        >>> rt.predict({"x": np.ones((1, 4), np.float32)})  # doctest: +SKIP
    """

    def __init__(self, model: str | bytes, options: RuntimeOptions | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - a core dependency
            raise MissingDependency.for_extra("onnxruntime", "onnx", "ONNX models") from e
        opts = options or RuntimeOptions()
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts.intra_op_threads
        so.inter_op_num_threads = opts.inter_op_threads
        if not opts.spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[opts.graph_optimization]
        available = ort.get_available_providers()
        wanted = opts.providers or (
            "TensorrtExecutionProvider",
            "CUDAExecutionProvider",
            "CPUExecutionProvider",
        )
        providers = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(model, sess_options=so, providers=providers)
        except Exception as e:
            raise InvalidModel(f"onnxruntime cannot load the model: {e}") from e
        self._signature = ModelSignature(
            tuple(self._spec(i) for i in self._session.get_inputs()),
            tuple(self._spec(o) for o in self._session.get_outputs() if o.type in ORT_TO_V2),
        )
        self._output_names = [o.name for o in self._signature.outputs]
        self._string_inputs = [t.name for t in self._signature.inputs if t.datatype == "BYTES"]
        # On the CPU, the session's compiled entry point, without the Python wrapper's
        # per-call checks of input names (requests are validated against the signature
        # first): ~2 µs of a microsecond model's request. Other providers keep the
        # wrapper, which falls back to the CPU when an accelerator fails.
        native = getattr(self._session, "_sess", None)
        cpu_only = self._session.get_providers() == ["CPUExecutionProvider"]
        self._run = native.run if native is not None and cpu_only else self._session.run

    @staticmethod
    def _spec(arg: Any) -> TensorSpec:
        dims = tuple(d if isinstance(d, int) else -1 for d in (arg.shape or ()))
        return TensorSpec(arg.name, ORT_TO_V2.get(arg.type, "BYTES"), dims)

    @classmethod
    def from_path(cls, path: Path, options: RuntimeOptions | None = None) -> OnnxRuntime:
        return cls(str(path), options)

    @property
    def signature(self) -> ModelSignature:
        return self._signature

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._string_inputs:  # onnxruntime wants str elements for string tensors
            inputs = dict(inputs)
            for name in self._string_inputs:
                if name in inputs:
                    inputs[name] = _as_str(inputs[name])
        try:
            results = self._run(self._output_names, inputs, None)
        except Exception as e:
            raise ModelExecutionError(f"onnxruntime failed: {e}") from e
        return dict(zip(self._output_names, results, strict=True))

    def close(self) -> None:
        del self._session


def _as_str(array: np.ndarray) -> np.ndarray:
    """BYTES elements (bytes) as UTF-8 str, which onnxruntime expects for strings."""
    out = np.empty(array.shape, dtype=object)
    flat_in, flat_out = array.reshape(-1), out.reshape(-1)
    for i, item in enumerate(flat_in):
        flat_out[i] = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
    return out
