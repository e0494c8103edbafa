"""Quality metrics of a model's outputs, and parity with its parent.

Plain functions over numpy arrays, no I/O. Classification metrics (``accuracy``,
``f1``) read labels from the model's integer output when it has one, else the
arg-max of its score output. ``mse`` and ``mae`` compare with the labels when the
data has them and with the parent's outputs otherwise; ``cosine`` always compares
with the parent's outputs (embeddings, logits), so it needs no labels.

Example:
    >>> spec = METRICS["accuracy"]
    >>> score(spec, {"y": np.array([[0.1, 0.9], [0.8, 0.2]])}, {}, np.array([1, 1]))
    0.5
    >>> metric_drop(spec, 0.97, 0.95)
    0.02...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name, direction and what it compares against."""

    name: str
    higher_is_better: bool
    needs_labels: bool
    description: str


METRICS: dict[str, MetricSpec] = {
    "accuracy": MetricSpec("accuracy", True, True, "share of correct labels (0-1)"),
    "f1": MetricSpec("f1", True, True, "macro-averaged F1 over the classes (0-1)"),
    "mse": MetricSpec("mse", False, False, "mean squared error vs labels, else vs the parent"),
    "mae": MetricSpec("mae", False, False, "mean absolute error vs labels, else vs the parent"),
    "cosine": MetricSpec("cosine", True, False, "mean cosine similarity with the parent (0-1)"),
}


def get_metric(name: str) -> MetricSpec:
    """The metric called ``name`` or InvalidArgument listing the known ones."""
    spec = METRICS.get(name)
    if spec is None:
        raise InvalidArgument(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    return spec


def metric_drop(spec: MetricSpec, before: float, after: float) -> float:
    """How much worse ``after`` is than ``before`` (positive = worse).

    Example:
        >>> metric_drop(METRICS["mse"], 0.10, 0.25)
        0.15
    """
    return before - after if spec.higher_is_better else after - before


# ---------------------------------------------------------------------- outputs


def score_output(outputs: Outputs) -> str:
    """Name of the main float output (scores, logits, embeddings, regression values)."""
    for name, arr in outputs.items():
        if arr.dtype.kind == "f":
            return name
    raise InvalidArgument(f"the model has no float output among {list(outputs)}")


def label_output(outputs: Outputs) -> str | None:
    """Name of an integer output with one value per row (class labels), if any."""
    for name, arr in outputs.items():
        if arr.dtype.kind in "iu" and arr.ndim >= 1 and arr.reshape(len(arr), -1).shape[1] == 1:
            return name
    return None


def predicted_labels(outputs: Outputs) -> np.ndarray:
    """Class predictions: the integer label output, else the arg-max of the scores."""
    name = label_output(outputs)
    if name is not None:
        return outputs[name].reshape(-1)
    scores = outputs[score_output(outputs)]
    scores = scores.reshape(len(scores), -1)
    if scores.shape[1] == 1:
        col = scores[:, 0]
        threshold = 0.5 if col.min() >= 0.0 and col.max() <= 1.0 else 0.0
        return (col > threshold).astype(np.int64)
    return np.asarray(scores.argmax(axis=1))


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1).astype(np.float64)


def f1_macro(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-averaged F1 over the classes present in either array.

    Example:
        >>> f1_macro(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
        0.733...
    """
    classes = np.union1d(y_true, y_pred)
    scores = []
    for c in classes:
        tp = float(np.sum((y_pred == c) & (y_true == c)))
        fp = float(np.sum((y_pred == c) & (y_true != c)))
        fn = float(np.sum((y_pred != c) & (y_true == c)))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity per row of two equally shaped arrays (1.0 for two zero rows)."""
    fa, fb = _flat(a), _flat(b)
    na, nb = np.linalg.norm(fa, axis=1), np.linalg.norm(fb, axis=1)
    dot = (fa * fb).sum(axis=1)
    out = np.ones(len(fa))
    both = (na > 0) & (nb > 0)
    out[both] = dot[both] / (na[both] * nb[both])
    out[(na > 0) ^ (nb > 0)] = 0.0
    return out


def score(
    spec: MetricSpec, outputs: Outputs, reference: Outputs, labels: np.ndarray | None
) -> float:
    """The metric of ``outputs`` (``reference`` = the parent's outputs on the same data).

    Example:
        >>> out = {"emb": np.ones((2, 3))}
        >>> score(METRICS["cosine"], out, out, None)
        1.0
    """
    if spec.name in ("accuracy", "f1"):
        if labels is None:
            raise InvalidArgument(f"metric {spec.name!r} needs labels: add 'y' to the data file")
        pred = predicted_labels(outputs)
        truth = labels.reshape(-1)
        if len(pred) != len(truth):
            raise InvalidArgument(f"{len(pred)} predictions for {len(truth)} labels")
        if spec.name == "accuracy":
            return float(np.mean(pred == truth.astype(pred.dtype, copy=False)))
        return f1_macro(truth.astype(pred.dtype, copy=False), pred)
    name = score_output(outputs)
    got = _flat(outputs[name])
    if spec.name == "cosine":
        return float(np.mean(cosine_rows(got, reference[name])))
    want = _flat(reference[name]) if labels is None else _flat(labels)
    if want.shape != got.shape:
        raise InvalidArgument(
            f"output {name!r} has shape {list(got.shape)} per batch but the target has "
            f"{list(want.shape)}; {spec.name} needs them equal"
        )
    err = got - want
    return float(np.mean(err**2) if spec.name == "mse" else np.mean(np.abs(err)))


def parity(outputs: Outputs, reference: Outputs, *, classifier: bool = False) -> dict[str, Any]:
    """How closely ``outputs`` follow the parent's: differences, cosine, label agreement.

    ``label_agreement`` (share of rows with the same predicted class) is given for
    classifiers: models with an integer label output, or when ``classifier`` is set.

    Example:
        >>> out = {"y": np.array([[1.0, 0.0]])}
        >>> parity(out, out)["max_abs_diff"]
        0.0
    """
    result: dict[str, Any] = {}
    common = [n for n in reference if n in outputs]
    floats = [n for n in common if reference[n].dtype.kind == "f"]
    if floats:
        name = floats[0]
        a, b = _flat(outputs[name]), _flat(reference[name])
        if a.shape == b.shape:
            diff = np.abs(a - b)
            cos = cosine_rows(a, b)
            result.update(
                output=name,
                max_abs_diff=float(diff.max(initial=0.0)),
                mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
                cosine_mean=float(cos.mean()) if cos.size else 1.0,
                cosine_min=float(cos.min(initial=1.0)),
            )
    if common and (classifier or label_output(reference) is not None):
        try:
            same = predicted_labels(outputs) == predicted_labels(reference)
            result["label_agreement"] = float(np.mean(same))
        except InvalidArgument:
            pass
    return result
