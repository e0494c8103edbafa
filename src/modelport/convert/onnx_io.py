"""Small edits to converted ONNX graphs so they declare what they really do.

Converters are not always precise about shapes: onnxmltools declares a classifier's
``label`` output as ``[1]`` although it returns one label per row, and onnxruntime then
warns on every call. :func:`declare_shapes` rewrites the graph's input and output
shapes from the source model's signature (``-1`` becomes a named dynamic dimension),
where the ranks agree.

Example:
    >>> declare_shapes(model, signature)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from modelport.core.types import ModelSignature, TensorSpec


def _set_dims(value_info: Any, spec: TensorSpec) -> None:
    t = value_info.type
    if t.WhichOneof("value") != "tensor_type":
        return
    shape = t.tensor_type.shape
    if len(shape.dim) != len(spec.shape):
        return
    for i, (dim, want) in enumerate(zip(shape.dim, spec.shape, strict=True)):
        dim.Clear()
        if want == -1:
            dim.dim_param = "batch" if i == 0 else f"{spec.name}_{i}"
        else:
            dim.dim_value = want


def declare_shapes(model: Any, signature: ModelSignature) -> Any:
    """Set the graph's input/output shapes from ``signature`` (matching names and ranks)."""
    specs = {t.name: t for t in (*signature.inputs, *signature.outputs)}
    for vi in (*model.graph.input, *model.graph.output):
        spec = specs.get(vi.name)
        if spec is not None:
            _set_dims(vi, spec)
    return model


def rename_outputs(model: Any, names: dict[str, str]) -> Any:
    """Rename graph outputs (and every node input/output that refers to them)."""
    if not names:
        return model
    for node in model.graph.node:
        for seq in (node.input, node.output):
            for i, n in enumerate(seq):
                if n in names:
                    seq[i] = names[n]
    for vi in model.graph.output:
        if vi.name in names:
            vi.name = names[vi.name]
    return model
