"""Quantization: int8 weights (dynamic), int8 weights and activations (static QDQ), fp16.

- ``dynamic``: weights become int8 once; activations are quantized per call from
  their observed range. No calibration data needed; the usual first step for
  transformers and MLPs (MatMul/Gemm-heavy models).
- ``static``: weights and activations are int8, activation ranges come from a
  calibration set (MinMax, Entropy or Percentile), written in QDQ form
  (QuantizeLinear/DequantizeLinear pairs) that any ONNX runtime can fuse.
- ``fp16``: float weights and compute in half precision, inputs and outputs kept in
  float32. Halves the size; fast on GPUs, usually slower on CPUs.

The work is done by onnxruntime's quantization tools and onnxconverter-common; this
module chooses their settings, prepares the calibration data and checks the names.

Example:
    >>> Quantize("static", calibration_method="entropy", per_channel=True).describe()
    'quantize static per-channel entropy'
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from modelport.core.errors import InvalidArgument, InvalidModel, MissingDependency
from modelport.optimize.data import Dataset
from modelport.optimize.onnx_model import load_model, onnx_module, save_model
from modelport.optimize.passes import PassContext, PassResult

QUANT_MODES = ("dynamic", "static", "fp16")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
_QUANT_OPS = (
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeLinear",
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeMatMul",
    "QLinearMatMul",
    "QLinearConv",
)


def _quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as e:  # pragma: no cover - onnxruntime is a core dependency
        raise MissingDependency.for_extra("onnxruntime", "optimize", "Quantization") from e
    return quantization


@contextlib.contextmanager
def _quiet_ort_logging() -> Iterator[None]:
    """onnxruntime's quantizer logs advice through the root logger and prints progress
    to stdout; keep both out of the command's output (which may be JSON)."""
    import io
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _check_nodes(src: Path, names: tuple[str, ...]) -> None:
    if not names:
        return
    present = {n.name for n in load_model(src).graph.node}
    missing = [n for n in names if n not in present]
    if missing:
        sample = ", ".join(sorted(present)[:8])
        raise InvalidArgument(
            f"--exclude-nodes: no node named {missing} in the model (nodes include: {sample}…)"
        )


def _node_histogram(path: Path) -> dict[str, int]:
    hist: dict[str, int] = {}
    for node in load_model(path).graph.node:
        if node.op_type in _QUANT_OPS:
            hist[node.op_type] = hist.get(node.op_type, 0) + 1
    return hist


def calibration_reader(data: Dataset, batch_size: int = 16, limit: int = 256) -> Any:
    """An onnxruntime ``CalibrationDataReader`` over the first ``limit`` rows of ``data``.

    Example:
        >>> reader = calibration_reader(cal)            # doctest: +SKIP
        >>> reader.get_next()["input"].shape            # doctest: +SKIP
        (16, 64)
    """
    q = _quantization()
    rows = data.subset(0, limit)
    if rows.n >= batch_size:  # histogram calibrators need equally sized batches
        rows = rows.subset(0, rows.n // batch_size * batch_size)

    class _Reader(q.CalibrationDataReader):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self._batches = iter(rows.batches(batch_size))

        def get_next(self) -> dict[str, Any] | None:
            return next(self._batches, None)

        def rewind(self) -> None:
            self._batches = iter(rows.batches(batch_size))

    return _Reader()


@dataclass(frozen=True)
class Quantize:
    """Quantize to int8 (``dynamic`` or ``static``) or to ``fp16``.

    ``exclude_nodes`` stay in float32 (useful for a sensitive first or last layer);
    ``calibration_samples`` rows of the calibration data are used by ``static``.
    """

    mode: str = "dynamic"
    per_channel: bool = False
    exclude_nodes: tuple[str, ...] = ()
    calibration_method: str = "minmax"
    calibration_samples: int = 256
    name: ClassVar[str] = "quantize"

    def __post_init__(self) -> None:
        if self.mode not in QUANT_MODES:
            raise InvalidArgument(f"--quantize {self.mode!r}: choose {', '.join(QUANT_MODES)}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise InvalidArgument(
                f"--calibration-method {self.calibration_method!r}: choose "
                + ", ".join(CALIBRATION_METHODS)
            )
        if self.calibration_samples < 1:
            raise InvalidArgument("calibration_samples must be at least 1")

    def describe(self) -> str:
        parts = ["quantize", self.mode]
        if self.per_channel and self.mode != "fp16":
            parts.append("per-channel")
        if self.mode == "static":
            parts.append(self.calibration_method)
        if self.exclude_nodes:
            parts.append(f"excluding {len(self.exclude_nodes)} node(s)")
        return " ".join(parts)

    def apply(self, src: Path, ctx: PassContext) -> PassResult:
        _check_nodes(src, self.exclude_nodes)
        if self.mode == "fp16":
            return self._fp16(src, ctx)
        q = _quantization()
        pre, notes = self._preprocess(src, ctx)
        out = ctx.new_path(f"{self.mode}-int8")
        excluded = list(self.exclude_nodes) or None
        if excluded and self.mode == "dynamic":
            # Dynamic quantization first rewrites Gemm as MatMul + Add, naming the MatMul
            # "<gemm name>_MatMul"; exclude that one too.
            excluded += [f"{n}_MatMul" for n in self.exclude_nodes]
        details: dict[str, Any] = {"weight_type": "int8", "per_channel": self.per_channel}
        # Tensors after ai.onnx.ml operators (Scaler, …) have no inferred type; they are
        # float in every converter's output.
        extra = {"DefaultTensorType": 1}  # onnx.TensorProto.FLOAT
        try:
            with _quiet_ort_logging():
                if self.mode == "dynamic":
                    ctx.progress("quantizing weights to int8 (dynamic)")
                    q.quantize_dynamic(
                        pre,
                        out,
                        per_channel=self.per_channel,
                        weight_type=q.QuantType.QInt8,
                        nodes_to_exclude=excluded,
                        extra_options=extra,
                    )
                    details["activations"] = "uint8, quantized per call"
                else:
                    data = ctx.unlabelled_data
                    if data is None:
                        raise InvalidArgument(
                            "--quantize static needs --calibration-data (an .npz of typical "
                            "inputs; a few hundred rows suffice)"
                        )
                    method = {
                        "minmax": q.CalibrationMethod.MinMax,
                        "entropy": q.CalibrationMethod.Entropy,
                        "percentile": q.CalibrationMethod.Percentile,
                    }[self.calibration_method]
                    rows = min(data.n, self.calibration_samples)
                    ctx.progress(f"calibrating on {rows} rows ({self.calibration_method})")
                    q.quantize_static(
                        pre,
                        out,
                        calibration_reader(data, limit=rows),
                        quant_format=q.QuantFormat.QDQ,
                        per_channel=self.per_channel,
                        activation_type=q.QuantType.QUInt8,
                        weight_type=q.QuantType.QInt8,
                        nodes_to_exclude=excluded,
                        calibrate_method=method,
                        extra_options=extra,
                    )
                    details.update(
                        activations="uint8, ranges from calibration",
                        format="QDQ",
                        calibration_method=self.calibration_method,
                        calibration_rows=rows,
                    )
        except InvalidArgument:
            raise
        except Exception as e:
            raise InvalidModel(f"{self.describe()} failed: {e}") from e
        details["quantized_ops"] = _node_histogram(out)
        if not details["quantized_ops"]:
            notes.append("no operator could be quantized: the model has no MatMul/Gemm/Conv")
        return PassResult(out, details, notes, changed=bool(details["quantized_ops"]))

    def _preprocess(self, src: Path, ctx: PassContext) -> tuple[Path, list[str]]:
        """onnxruntime's recommended pre-processing (shape inference, basic fusions).

        With ``exclude_nodes`` the fusions are skipped, so node names stay as given.
        """
        from onnxruntime.quantization.shape_inference import quant_pre_process

        ctx.progress("preparing the model for quantization")
        pre = ctx.new_path("quant-pre")
        try:
            with _quiet_ort_logging():
                quant_pre_process(
                    src,
                    pre,
                    skip_optimization=bool(self.exclude_nodes),
                    skip_symbolic_shape=True,
                )
        except Exception as e:
            return src, [f"pre-processing skipped ({type(e).__name__}: {e})"]
        return pre, []

    def _fp16(self, src: Path, ctx: PassContext) -> PassResult:
        try:
            from onnxconverter_common import float16
        except ImportError as e:
            raise MissingDependency.for_extra(
                "onnxconverter-common", "optimize", "fp16 conversion"
            ) from e
        ctx.progress("converting weights and compute to fp16")
        model = load_model(src)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            converted = float16.convert_float_to_float16(
                model, keep_io_types=True, node_block_list=list(self.exclude_nodes) or None
            )
        _cast_to_half(model, converted, set(self.exclude_nodes))
        out = save_model(converted, ctx.new_path("fp16"))
        problem = _load_problem(out)
        if problem:
            raise InvalidModel(
                f"fp16 conversion produced a graph onnxruntime cannot load ({problem}); keep "
                "the offending nodes in float32 with --exclude-nodes"
            )
        clipped = sum(1 for w in caught if "truncated" in str(w.message))
        notes = ["fp16 halves the size; CPUs run few fp16 kernels, GPUs gain speed"]
        if clipped:
            notes.append(
                f"{clipped} weight values were too small or too large for fp16 and were "
                "set to its limits"
            )
        return PassResult(out, {"dtype": "float16", "io_types": "float32"}, notes)


def _cast_to_half(original: Any, converted: Any, keep: set[str]) -> None:
    """Make the model's own float Casts produce fp16, as the rest of the graph now does.

    onnxconverter-common converts weights and constants but leaves ``Cast(to=float)``
    nodes alone; in exported transformers such a Cast (of a shape value, for the
    attention scale) then meets fp16 tensors and the graph no longer type-checks.
    """
    helper = onnx_module().helper
    float_casts = {
        n.name
        for n in original.graph.node
        if n.op_type == "Cast" and n.name and helper.get_attribute_value(n.attribute[0]) == 1
    }
    for node in converted.graph.node:
        if node.op_type == "Cast" and node.name in float_casts and node.name not in keep:
            for a in node.attribute:
                if a.name == "to":
                    a.i = 10  # onnx.TensorProto.FLOAT16


_LOAD_CHECK = """
import sys, onnxruntime as ort
try:
    ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
except Exception as e:
    print(str(e).splitlines()[0] if str(e) else type(e).__name__)
    sys.exit(1)
"""


def _load_problem(path: Path) -> str | None:
    """Why onnxruntime cannot load ``path`` with full optimizations, or None.

    Checked in a child process: on some CPUs onnxruntime's fp16 graph rewrites crash
    the process outright instead of raising, which must not take the caller down.
    """
    import subprocess
    import sys

    try:
        proc = subprocess.run(
            [sys.executable, "-c", _LOAD_CHECK, str(path)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        return "loading did not finish within 300 s"
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:
        return f"onnxruntime crashed while optimizing the graph (signal {-proc.returncode})"
    return proc.stdout.strip() or proc.stderr.strip().splitlines()[-1]
