"""What a model predicts: its task and which output holds the prediction.

Read from the version's ``extra`` when registration recorded it —
``extra["task"]`` (``"classification"`` or ``"regression"``) and
``extra["prediction_output"]`` (an output name) — and detected from the signature
otherwise:

- an integer or string output of shape ``[-1]``/``[-1, 1]`` (skl2onnx's
  ``output_label``, …) → classification, that output;
- a single float output of shape ``[-1]``/``[-1, 1]`` → regression;
- a single float output of shape ``[-1, C]`` with ``C > 1`` (logits or class
  probabilities) → classification by arg-max.

Example:
    >>> from modelport.core.types import ModelSignature, TensorSpec
    >>> sig = ModelSignature(
    ...     inputs=(TensorSpec("X", "FP32", (-1, 4)),),
    ...     outputs=(TensorSpec("label", "INT64", (-1,)),
    ...              TensorSpec("probabilities", "FP32", (-1, 3))))
    >>> resolve_task(sig, {})
    TaskInfo(task='classification', prediction_output='label', argmax=False, source='detected')
    >>> resolve_task(sig, {"task": "regression", "prediction_output": "probabilities"}).task
    'regression'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from modelport.core.errors import InvalidArgument
from modelport.core.types import ModelSignature, TensorSpec

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = ("classification", "regression")
EXTRA_TASK = "task"
EXTRA_PREDICTION_OUTPUT = "prediction_output"
EXTRA_FEATURE_NAMES = "feature_names"

_LABEL_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "BYTES"}
_FLOAT_TYPES = {"FP16", "FP32", "FP64", "BF16"}


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A version's task, its prediction output, and where that knowledge came from."""

    task: Task | None
    prediction_output: str | None
    argmax: bool = False  # the output holds per-class scores; the prediction is their argmax
    source: Literal["extra", "detected", "unknown"] = "unknown"

    def values(self, output: np.ndarray) -> np.ndarray:
        """One prediction per row from the raw prediction output.

        Example:
            >>> TaskInfo("classification", "y", argmax=True).values(np.array([[.1, .9]]))
            array([1])
        """
        x = np.asarray(output)
        if self.argmax and x.ndim >= 2:
            return np.asarray(np.argmax(x.reshape(x.shape[0], -1), axis=1))
        if x.ndim >= 2:
            return x.reshape(x.shape[0], -1)[:, 0]
        return x.reshape(-1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "prediction_output": self.prediction_output,
            "argmax": self.argmax,
            "source": self.source,
        }


def _is_column(t: TensorSpec) -> bool:
    return len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1)


def resolve_task(signature: ModelSignature, extra: Mapping[str, Any] | None) -> TaskInfo:
    """The task and prediction output of a version (see the module docs for the rules)."""
    extra = extra or {}
    outputs = {t.name: t for t in signature.outputs}
    task = extra.get(EXTRA_TASK)
    output = extra.get(EXTRA_PREDICTION_OUTPUT)
    if task is not None and task not in TASKS:
        raise InvalidArgument(f"extra.task is {task!r}; use 'classification' or 'regression'")
    if output is not None and output not in outputs:
        raise InvalidArgument(
            f"extra.prediction_output {output!r} is not an output; the model gives "
            f"{sorted(outputs)}"
        )
    detected = _detect(signature)
    if task is None and output is None:
        return detected
    if output is None:
        output = detected.prediction_output if detected.task == task else None
        if output is None and len(signature.outputs) == 1:
            output = signature.outputs[0].name
    if task is None:
        task = _detect_for(outputs[output]) if output else None
    argmax = False
    if task == "classification" and output is not None:
        spec = outputs[output]
        argmax = spec.datatype in _FLOAT_TYPES and not _is_column(spec)
    return TaskInfo(task, output, argmax, "extra")


def _detect_for(spec: TensorSpec) -> Task | None:
    if spec.datatype in _LABEL_TYPES and _is_column(spec):
        return "classification"
    if spec.datatype in _FLOAT_TYPES:
        return "regression" if _is_column(spec) else "classification"
    return None


def _detect(signature: ModelSignature) -> TaskInfo:
    for t in signature.outputs:
        if t.datatype in _LABEL_TYPES and _is_column(t):
            return TaskInfo("classification", t.name, False, "detected")
    floats = [t for t in signature.outputs if t.datatype in _FLOAT_TYPES]
    if len(signature.outputs) == 1 and len(floats) == 1:
        t = floats[0]
        if _is_column(t):
            return TaskInfo("regression", t.name, False, "detected")
        if len(t.shape) == 2:
            return TaskInfo("classification", t.name, True, "detected")
    return TaskInfo(None, None, False, "unknown")
