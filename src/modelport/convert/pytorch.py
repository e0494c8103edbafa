"""PyTorch → ONNX (``torch.onnx``) and → TorchScript.

**ONNX.** ``torch.export`` programs go straight to the dynamo-based exporter, which
keeps every symbolic axis of the program dynamic in the ONNX graph (the batch axis,
and a sequence axis where the model has one). Pickled modules are exported with
``torch.export`` first, their dynamic axes found by probing (see
:func:`modelport.runtimes.pytorch.export_program`). TorchScript modules can only use
the older TorchScript-based exporter, given the signature's dynamic axes. Input and
output names are the source signature's.

**TorchScript.** From an exported program: its graph is replayed under
``torch.jit.trace`` by an interpreter that reads sizes from the tensors
(``x.size(d)``) and calls operators through their Python bindings, so size
arithmetic is traced rather than frozen into constants: the traced module keeps the
program's dynamic axes. The parity check runs both models on shorter and longer
shapes, so a trace that froze a shape cannot be registered.

Example:
    >>> torch_to_onnx("torch-export", prog, sig, sample, None, Path("m.onnx"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument, MissingDependency
from modelport.core.types import ModelSignature
from modelport.runtimes.sample import with_batch

DEFAULT_OPSET = 18
LEGACY_OPSET = 17


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise MissingDependency.for_extra("torch", "torch", "Converting PyTorch models") from e
    return torch


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence exporter chatter: deprecation warnings and INFO/WARNING log lines."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _tensors(sample: dict[str, np.ndarray], names: list[str]) -> list[Any]:
    from modelport.runtimes.torch_tools import distinct_batch

    torch = _torch()
    resized = with_batch(sample, distinct_batch(sample))
    return [torch.from_numpy(np.array(resized[n], copy=True)) for n in names]


def _program(fmt: str, native: Any, sample: dict[str, np.ndarray], keywords: bool) -> Any:
    from modelport.runtimes.torch_tools import export_program

    if fmt == "torch-export":
        return native
    if fmt == "torch-pickle":
        return export_program(native, sample, keywords=keywords)
    raise InvalidArgument(f"no torch.export program for format {fmt!r}")


def torch_to_onnx(
    fmt: str,
    native: Any,
    signature: ModelSignature,
    sample: dict[str, np.ndarray],
    opset: int | None,
    path: Path,
    *,
    keywords: bool = False,
) -> str:
    """Write ``path`` (ONNX); return the exporter used."""
    torch = _torch()
    in_names = [t.name for t in signature.inputs]
    out_names = [t.name for t in signature.outputs]
    tensors = _tensors(sample, in_names)
    if fmt == "torchscript":
        dynamic = {
            t.name: {i: f"{t.name}_{i}" for i, d in enumerate(t.shape) if d == -1}
            for t in (*signature.inputs, *signature.outputs)
        }
        try:
            with _quiet():
                torch.onnx.export(
                    native,
                    tuple(tensors),
                    str(path),
                    input_names=in_names,
                    output_names=out_names,
                    dynamic_axes={k: v for k, v in dynamic.items() if v},
                    opset_version=opset or LEGACY_OPSET,
                    dynamo=False,
                )
        except Exception as e:
            raise InvalidArgument(f"torch.onnx cannot export this TorchScript module: {e}") from e
        return "torch.onnx (TorchScript-based)"
    program = _program(fmt, native, sample, keywords)
    kwargs_spec = program.call_spec.in_spec.child(1)
    kw_names = list(kwargs_spec.context or [])
    args: tuple[Any, ...] = tuple(tensors) if not kw_names else ()
    kwargs = dict(zip(kw_names, tensors, strict=True)) if kw_names else None
    try:
        with _quiet():
            onnx_program = torch.onnx.export(
                program,
                args,
                kwargs=kwargs,
                input_names=in_names,
                output_names=out_names,
                opset_version=opset or DEFAULT_OPSET,
                dynamo=True,
                verbose=False,
            )
            onnx_program.save(str(path))
    except Exception as e:
        raise InvalidArgument(f"torch.onnx cannot export this program: {e}") from e
    return "torch.onnx (dynamo)"


class _SizeTracingInterpreter:
    """Replays an exported graph so that ``torch.jit.trace`` records size arithmetic."""

    def __init__(self, graph_module: Any) -> None:
        torch = _torch()

        class Interp(torch.fx.Interpreter):  # type: ignore[misc,name-defined]
            def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
                if target is torch.ops.aten.sym_size.int:
                    return args[0].size(args[1])
                if target is torch.ops.aten.sym_numel.default:
                    return args[0].numel()
                if isinstance(target, torch._ops.OpOverload):
                    name = target.overloadpacket.__name__
                    if name.startswith("_assert"):
                        return None
                    fn = getattr(torch, name, None)
                    if fn is None and args and isinstance(args[0], torch.Tensor):
                        method = getattr(args[0], name, None)
                        if method is not None:
                            return method(*args[1:], **kwargs)
                    if fn is not None:
                        return fn(*args, **kwargs)
                return super().call_function(target, args, kwargs)

            def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
                if str(target) == "_guards_fn":
                    return None
                return super().call_module(target, args, kwargs)

        self.interp_cls = Interp
        self.graph_module = graph_module


def program_to_torchscript(program: Any, sample: dict[str, np.ndarray], names: list[str]) -> Any:
    """Trace an exported program into a TorchScript module taking inputs by position."""
    torch = _torch()
    gm = program.module()
    replay = _SizeTracingInterpreter(gm)

    class Replayed(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.program = gm

        def forward(self, *inputs: Any) -> Any:
            result = replay.interp_cls(self.program).run(*inputs)
            return tuple(torch.utils._pytree.tree_leaves(result))

    tensors = tuple(_tensors(sample, names))
    try:
        with _quiet(), torch.no_grad():
            return torch.jit.trace(Replayed(), tensors, strict=False, check_trace=False)
    except Exception as e:
        raise InvalidArgument(f"cannot trace the program into TorchScript: {e}") from e


def torch_to_torchscript(
    fmt: str,
    native: Any,
    signature: ModelSignature,
    sample: dict[str, np.ndarray],
    path: Path,
    *,
    keywords: bool = False,
) -> str:
    """Write ``path`` (TorchScript); return how it was made."""
    if fmt == "torchscript":
        raise InvalidArgument("this version is TorchScript already")
    program = _program(fmt, native, sample, keywords)
    traced = program_to_torchscript(program, sample, [t.name for t in signature.inputs])
    traced.save(str(path))
    return "torch.jit.trace (exported program replay)"
