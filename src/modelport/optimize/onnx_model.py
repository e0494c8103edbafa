"""Reading, editing and saving ONNX graphs: the shared toolkit of the graph passes.

Passes edit a ``ModelProto`` in place through :class:`GraphIndex`, which knows who
produces and who consumes each tensor, which tensors are constants, and how to swap a
weight without touching another node that shares it. :func:`save_model` clears stale
shape annotations (the runtime infers them again) and writes external data when a
model outgrows the 2 GB protobuf limit.

Example:
    >>> model = load_model(Path("mlp.onnx"))            # doctest: +SKIP
    >>> g = GraphIndex(model)                            # doctest: +SKIP
    >>> [n.op_type for n in g.consumers("x")]           # doctest: +SKIP
    ['Gemm']
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from modelport.core.errors import InvalidModel, MissingDependency

#: Above this many bytes of weights a model is saved with external data.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
#: Initializer dtypes that count as parameters (float, fp16, bf16, int8, uint8).
PARAM_DTYPES = frozenset({1, 2, 3, 10, 11, 16})


def onnx_module() -> Any:
    """The ``onnx`` module (a core dependency, imported lazily)."""
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - onnx is a core dependency
        raise MissingDependency.for_extra("onnx", "optimize", "Optimization passes") from e
    return onnx


def load_model(path: Path) -> Any:
    """Load an ONNX model with its external data.

    Example:
        >>> load_model(Path("model.onnx")).graph.name    # doctest: +SKIP
        'main_graph'
    """
    onnx = onnx_module()
    try:
        return onnx.load_model(str(path), load_external_data=True)
    except Exception as e:
        raise InvalidModel(f"{path.name} is not a readable ONNX model: {e}") from e


def save_model(model: Any, path: Path) -> Path:
    """Save ``model`` at ``path`` with stale intermediate shapes removed.

    Example:
        >>> save_model(model, Path("out/model.onnx"))     # doctest: +SKIP
        PosixPath('out/model.onnx')
    """
    onnx = onnx_module()
    del model.graph.value_info[:]
    path.parent.mkdir(parents=True, exist_ok=True)
    big = sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_DATA_THRESHOLD
    if big:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=path.name + ".data",
        )
    else:
        onnx.save_model(model, str(path))
    return path


def model_files(path: Path) -> list[Path]:
    """The model file and the external-data files it references."""
    onnx = onnx_module()
    model = onnx.load_model(str(path), load_external_data=False)
    found = {path}
    for t in onnx.external_data_helper._get_all_tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for e in t.external_data:
                if e.key == "location":
                    found.add(path.parent / e.value)
    return sorted(found)


def file_size(path: Path) -> int:
    """Bytes on disk of a model including its external data.

    Example:
        >>> file_size(Path("model.onnx"))                 # doctest: +SKIP
        213456
    """
    return sum(p.stat().st_size for p in model_files(path))


def count_parameters(model: Any) -> tuple[int, int]:
    """(total, non-zero) weights: initializer elements (float and 8-bit types) plus the
    numeric attributes of ``ai.onnx.ml`` operators (tree thresholds and leaf values).

    Example:
        >>> count_parameters(load_model(Path("mlp.onnx")))  # doctest: +SKIP
        (26506, 26506)
    """
    numpy_helper = onnx_module().numpy_helper
    total = nonzero = 0
    for t in model.graph.initializer:
        if t.data_type not in PARAM_DTYPES:
            continue
        arr = numpy_helper.to_array(t)
        if arr.size <= 1:  # scales and zero points of quantized tensors
            continue
        total += int(arr.size)
        nonzero += int(np.count_nonzero(arr))
    for node in model.graph.node:
        if node.domain != "ai.onnx.ml":
            continue
        for a in node.attribute:  # trees and scalers keep their numbers in attributes
            if a.floats:
                total += len(a.floats)
                nonzero += sum(1 for v in a.floats if v != 0.0)
    return total, nonzero


def attribute(node: Any, name: str, default: Any = None) -> Any:
    """The value of a node attribute, or ``default``."""
    helper = onnx_module().helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def set_attribute(node: Any, name: str, value: Any) -> None:
    """Set (or replace) a node attribute."""
    helper = onnx_module().helper
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


class GraphIndex:
    """Producers, consumers and constants of one graph, kept in step with edits.

    Call :meth:`refresh` after structural edits made outside this class.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.graph = model.graph
        self._counter = itertools.count()
        self.refresh()

    def refresh(self) -> None:
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.producers: dict[str, Any] = {}
        self.consumer_map: dict[str, list[Any]] = {}
        self.constants: dict[str, Any] = {}
        for node in self.graph.node:
            for out in node.output:
                self.producers[out] = node
            for inp in node.input:
                if inp:
                    self.consumer_map.setdefault(inp, []).append(node)
            if node.op_type == "Constant" and node.output:
                self.constants[node.output[0]] = node
        self.outputs = {o.name for o in self.graph.output}
        self.inputs = [i.name for i in self.graph.input if i.name not in self.initializers]
        self._names = {*self.producers, *self.initializers, *self.inputs}

    # ----------------------------------------------------------------- lookups

    def consumers(self, tensor: str) -> list[Any]:
        return list(self.consumer_map.get(tensor, []))

    def producer(self, tensor: str) -> Any | None:
        return self.producers.get(tensor)

    def is_output(self, tensor: str) -> bool:
        return tensor in self.outputs

    def const(self, tensor: str) -> np.ndarray | None:
        """The value of an initializer, a ``Constant`` node or an Identity of one, else None."""
        numpy_helper = onnx_module().numpy_helper
        init = self.initializers.get(tensor)
        if init is not None:
            arr: np.ndarray = numpy_helper.to_array(init)
            return arr
        node = self.constants.get(tensor)
        if node is not None:
            value = attribute(node, "value")
            if value is not None:
                out: np.ndarray = numpy_helper.to_array(value)
                return out
        producer = self.producers.get(tensor)
        if producer is not None and producer.op_type == "Identity" and producer.input:
            return self.const(producer.input[0])  # exporters alias shared weights this way
        return None

    def require_const(self, tensor: str) -> np.ndarray:
        """Like :meth:`const` for a tensor already known to be constant."""
        value = self.const(tensor)
        if value is None:
            raise InvalidModel(f"tensor {tensor!r} was expected to be a constant")
        return value

    def unique_name(self, base: str) -> str:
        while True:
            name = f"{base}_mp{next(self._counter)}"
            if name not in self._names:
                self._names.add(name)
                return name

    # ----------------------------------------------------------------- edits

    def add_initializer(self, base: str, value: np.ndarray) -> str:
        """Add ``value`` as a new initializer named after ``base``; return its name."""
        numpy_helper = onnx_module().numpy_helper
        name = self.unique_name(base)
        self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        self.initializers[name] = self.graph.initializer[-1]
        return name

    def set_input_const(self, node: Any, index: int, value: np.ndarray) -> str:
        """Give ``node`` a new constant at input ``index`` without touching other users."""
        old = node.input[index]
        name = self.add_initializer(old or "const", value)
        users = self.consumer_map.get(old, [])
        if node in users:
            users.remove(node)
        node.input[index] = name
        self.consumer_map.setdefault(name, []).append(node)
        return name

    def rename_input(self, node: Any, old: str, new: str) -> None:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        users = self.consumer_map.get(old, [])
        if node in users:
            users.remove(node)
        self.consumer_map.setdefault(new, []).append(node)

    def remove_unused(self) -> int:
        """Drop nodes whose outputs nobody reads and initializers nobody uses."""
        removed = 0
        while True:
            used = {i for n in self.graph.node for i in n.input} | self.outputs
            dead = [n for n in self.graph.node if not any(o in used for o in n.output)]
            if not dead:
                break
            for n in dead:
                self.graph.node.remove(n)
            removed += len(dead)
        used = {i for n in self.graph.node for i in n.input} | self.outputs
        for t in list(self.graph.initializer):
            if t.name not in used:
                self.graph.initializer.remove(t)
        inputs = [i for i in self.graph.input if i.name in used or i.name not in self.initializers]
        if len(inputs) != len(self.graph.input):
            del self.graph.input[:]
            self.graph.input.extend(inputs)
        self.refresh()
        return removed


def capture_tensors(
    model: Any, names: Iterable[str], inputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run ``model`` on ``inputs`` and return the values of intermediate ``names``.

    The model is copied with the tensors added as graph outputs; the original is left
    untouched.

    Example:
        >>> capture_tensors(model, ["relu_out"], {"x": batch})["relu_out"].shape  # doctest: +SKIP
        (64, 128)
    """
    import onnxruntime as ort

    onnx = onnx_module()
    wanted = [n for n in dict.fromkeys(names)]
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.value_info[:]
    present = {o.name for o in probe.graph.output}
    for name in wanted:
        if name not in present:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            probe.SerializeToString(), so, providers=["CPUExecutionProvider"]
        )
        values = session.run(wanted, inputs)
    except Exception as e:
        raise InvalidModel(f"could not run the model to read intermediate values: {e}") from e
    return dict(zip(wanted, values, strict=True))
