"""Live accuracy from delayed ground truth: predictions joined with labelled feedback.

The data plane calls :meth:`FeedbackStore.remember` for every answered request (not
only the payload-log sample): the request id, the version and a reference to the
prediction output. Predictions wait at most ``ttl_s`` seconds and the newest
``max_predictions`` of them are kept (a ring: each new one takes the oldest's place).
Labels arrive later with :meth:`FeedbackStore.add_feedback`
(``POST /v2/models/{name}/feedback``); each is joined with its prediction and the
rolling figures cover the last ``window`` labelled rows of each version.

Rules, chosen so a client can resend safely:

- **duplicates**: an id counts once. A second label for an id already joined
  *replaces* the first (last label wins — a corrected label is the common reason to
  resend) without adding a row.
- **out of order**: labels may arrive in any order; a label for an id whose
  prediction is not (yet) known is held for ``ttl_s`` and joined when the prediction
  arrives, otherwise it is reported as ``unknown``.
- a request of *n* rows takes a list of *n* labels (a scalar for one row).

Figures (classification): accuracy; precision, recall and F1 are **binary**
(positive class 1) when every label and prediction seen is 0 or 1, otherwise
**macro**-averaged over the classes present in labels or predictions, a class with no
predicted (or no true) rows scoring 0 — equal to scikit-learn's
``precision_score/recall_score/f1_score(average="binary" | "macro", zero_division=0)``.
Regression: MAE and RMSE.

Example:
    >>> store = FeedbackStore("iris")
    >>> store.set_task("1", TaskInfo("classification", "label"))
    >>> for i, p in enumerate([0, 1, 1, 0]):
    ...     store.remember(f"r{i}", "1", np.array([p]))
    >>> store.add_feedback([{"id": "r3", "label": 0}, {"id": "r0", "label": 0},
    ...                     {"id": "r1", "label": 1}, {"id": "r2", "label": 0}])
    {'joined': 4, 'duplicates': 0, 'unknown': 0, 'invalid': 0, 'errors': []}
    >>> perf = store.performance("1")
    >>> perf["count"], perf["accuracy"], perf["average"]
    (4, 0.75, 'binary')
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.monitoring.task import TaskInfo

MAX_PENDING = 10_000
MAX_ERRORS = 10


@dataclass(frozen=True, slots=True)
class _Prediction:
    """A prediction already reduced to one value per row."""

    values: np.ndarray


@dataclass(slots=True)
class _Joined:
    y_true: np.ndarray
    y_pred: np.ndarray


class FeedbackStore:
    """Remembered predictions and joined labels of one model, per version."""

    def __init__(
        self,
        model: str,
        *,
        max_predictions: int = 100_000,
        ttl_s: float = 3600.0,
        window: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.max_predictions = max_predictions
        self.ttl_s = ttl_s
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        # Remembered predictions: a ring of max_predictions slots, the oldest overwritten
        # first, and the slot of each id. Nothing is allocated or evicted in batches per
        # request: a prediction is four slot stores and a dict entry.
        n = max_predictions
        self._slot_of: dict[str, int] = {}
        self._ids: list[str | None] = [None] * n
        self._times = array("d", bytes(8 * n))
        self._versions: list[str | None] = [None] * n
        self._values: list[Any] = [None] * n
        self._next = 0
        self._pending: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._joined: dict[str, OrderedDict[str, _Joined]] = {}
        self._rows: dict[str, int] = {}
        self._tasks: dict[str, TaskInfo] = {}

    def set_task(self, version: str, info: TaskInfo) -> None:
        """How predictions of ``version`` are read (see :mod:`modelport.monitoring.task`)."""
        self._tasks[version] = info

    # ------------------------------------------------------------------ hot path

    def remember(self, request_id: str, version: str, prediction: Any) -> None:
        """Keep a prediction (a reference to the output array) for a later label; O(1).

        Called on the event loop only; the slot it takes held the oldest prediction.
        """
        i = self._next
        self._next = i + 1 if i + 1 < self.max_predictions else 0
        ids, slot_of = self._ids, self._slot_of
        old = ids[i]
        if old is not None and slot_of.get(old) == i:  # not re-remembered since
            del slot_of[old]
        ids[i] = request_id
        self._times[i] = self._clock()
        self._versions[i] = version
        self._values[i] = prediction
        slot_of[request_id] = i
        if self._pending:
            with self._lock:
                waiting = self._pending.pop(request_id, None)
                if waiting is not None:
                    self._join(request_id, version, prediction, waiting[1])

    def _remembered(self, request_id: str, now: float) -> tuple[float, str, Any] | None:
        """The live prediction of an id: ``(time, version, prediction)``, else None."""
        i = self._slot_of.get(request_id)
        if i is None or now - self._times[i] > self.ttl_s:
            return None
        return self._times[i], self._versions[i], self._values[i]  # type: ignore[return-value]

    def _expire(self, now: float) -> None:
        """Forget labels that waited past ``ttl_s`` for their prediction (lock held)."""
        pending = self._pending
        while pending and now - next(iter(pending.values()))[0] > self.ttl_s:
            pending.popitem(last=False)

    # ------------------------------------------------------------------ feedback

    def add_feedback(self, items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Join labels with remembered predictions: ``[{"id": …, "label": …}, …]``.

        Returns how many items were joined, duplicates (relabelled), unknown (held until
        their prediction arrives or ``ttl_s`` passes) and invalid, with the first errors.
        """
        counts = {"joined": 0, "duplicates": 0, "unknown": 0, "invalid": 0}
        errors: list[str] = []
        now = self._clock()
        with self._lock:
            self._expire(now)
            for item in items:
                rid = item.get("id") if isinstance(item, Mapping) else None
                if not isinstance(rid, str) or not rid or "label" not in item:
                    counts["invalid"] += 1
                    if len(errors) < MAX_ERRORS:
                        errors.append(f"item {item!r}: needs a string 'id' and a 'label'")
                    continue
                label = item["label"]
                known = self._remembered(rid, now)
                if known is None:
                    known = self._joined_prediction(rid)
                if known is None:
                    if rid in self._pending:
                        counts["duplicates"] += 1
                    self._pending[rid] = (now, label)
                    self._pending.move_to_end(rid)
                    if len(self._pending) > MAX_PENDING:
                        self._pending.popitem(last=False)
                    counts["unknown"] += 1
                    continue
                outcome = self._join(rid, known[1], known[2], label)
                if outcome.startswith("invalid"):
                    counts["invalid"] += 1
                    if len(errors) < MAX_ERRORS:
                        errors.append(f"id {rid!r}: {outcome.removeprefix('invalid: ')}")
                else:
                    counts[outcome] += 1
        return {**counts, "errors": errors}

    def _joined_prediction(self, rid: str) -> tuple[float, str, Any] | None:
        """An id already joined whose prediction has since expired (to relabel it)."""
        for version, joined in self._joined.items():
            entry = joined.get(rid)
            if entry is not None:
                return (0.0, version, _Prediction(entry.y_pred))
        return None

    def _join(self, rid: str, version: str, prediction: Any, label: Any) -> str:
        info = self._tasks.get(version) or TaskInfo(None, None)
        try:
            if isinstance(prediction, _Prediction):
                y_pred = prediction.values
            else:
                y_pred = info.values(np.asarray(prediction))
            y_true = np.asarray(label).reshape(-1)
        except (TypeError, ValueError) as e:
            return f"invalid: {e}"
        if info.task == "regression" and y_true.dtype.kind not in "biuf":
            return "invalid: a regression label must be a number"
        if y_true.size != y_pred.size:
            return f"invalid: {y_true.size} label(s) for a prediction of {y_pred.size} row(s)"
        if y_true.dtype.kind not in "biufUSO":
            return f"invalid: labels of type {y_true.dtype} are not numbers or strings"
        joined = self._joined.setdefault(version, OrderedDict())
        entry = _Joined(y_true, y_pred)
        old = joined.get(rid)
        if old is not None:
            joined[rid] = entry  # last label wins; the id keeps its place
            self._rows[version] += y_true.size - old.y_true.size
            return "duplicates"
        joined[rid] = entry
        rows = self._rows.get(version, 0) + y_true.size
        while rows - next(iter(joined.values())).y_true.size >= self.window:
            rows -= joined.popitem(last=False)[1].y_true.size
        self._rows[version] = rows
        return "joined"

    # ------------------------------------------------------------------ figures

    def versions(self) -> list[str]:
        with self._lock:
            return sorted(self._joined, key=_version_key)

    def labelled(self, version: str) -> tuple[np.ndarray, np.ndarray]:
        """The joined ``(y_true, y_pred)`` rows of the window of ``version``."""
        with self._lock:
            entries = list(self._joined.get(version, {}).values())
        if not entries:
            return np.array([]), np.array([])
        y_true = np.concatenate([e.y_true for e in entries])[-self.window :]
        y_pred = np.concatenate([e.y_pred for e in entries])[-self.window :]
        return y_true, y_pred

    def performance(self, version: str) -> dict[str, Any]:
        """Rolling figures of ``version``: ``{"version", "count", "accuracy", …}``."""
        y_true, y_pred = self.labelled(version)
        info = self._tasks.get(version)
        task = info.task if info else None
        if task is None and len(y_true):
            task = "classification" if _all_labels(y_true, y_pred) else "regression"
        out: dict[str, Any] = {"model": self.model, "version": version, "task": task}
        if task == "regression":
            out.update(regression_metrics(y_true, y_pred))
        else:
            out.update(classification_metrics(y_true, y_pred))
        return out

    def pending(self) -> int:
        """Remembered predictions still waiting for a label."""
        now = self._clock()
        times, ttl = self._times, self.ttl_s
        return sum(1 for i in list(self._slot_of.values()) if now - times[i] <= ttl)


def _version_key(v: str) -> tuple[int, str]:
    return (int(v), "") if v.isdigit() else (1 << 62, v)


def _all_labels(*arrays: np.ndarray) -> bool:
    return all(a.dtype.kind != "f" or bool(np.all(np.mod(a, 1) == 0)) for a in arrays)


def _normalise(a: np.ndarray) -> np.ndarray:
    """Class labels in one comparable form: int64 when all integral, else strings."""
    if a.dtype.kind in "biu":
        return a.astype(np.int64)
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        return a.astype(np.int64)
    if a.dtype.kind in "OS":
        return np.array(
            [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in a.ravel()]
        )
    return a.astype(str)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy and binary (labels ⊆ {0, 1}) or macro precision, recall, F1.

    Example:
        >>> classification_metrics(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]))["f1"]
        0.6
    """
    t, p = _normalise(np.asarray(y_true)), _normalise(np.asarray(y_pred))
    if t.dtype.kind != p.dtype.kind:
        t, p = t.astype(str), p.astype(str)
    n = int(t.size)
    if n == 0:
        return {"count": 0, "accuracy": None, "precision": None, "recall": None, "f1": None}
    labels = np.unique(np.concatenate([t, p]))
    binary = t.dtype.kind == "i" and set(labels.tolist()) <= {0, 1}
    classes = [1] if binary else labels.tolist()
    precisions, recalls, f1s = [], [], []
    for c in classes:
        tp = int(np.sum((t == c) & (p == c)))
        fp = int(np.sum((t != c) & (p == c)))
        fn = int(np.sum((t == c) & (p != c)))
        precisions.append(tp / (tp + fp) if tp + fp else 0.0)
        recalls.append(tp / (tp + fn) if tp + fn else 0.0)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {
        "count": n,
        "accuracy": float(np.mean(t == p)),
        "precision": float(np.mean(precisions)),
        "recall": float(np.mean(recalls)),
        "f1": float(np.mean(f1s)),
        "average": "binary" if binary else "macro",
        "classes": len(labels),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Mean absolute error and root mean squared error.

    Example:
        >>> regression_metrics(np.array([1.0, 2.0]), np.array([1.5, 1.0]))
        {'count': 2, 'mae': 0.75, 'rmse': 0.7905694150420949}
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.size == 0:
        return {"count": 0, "mae": None, "rmse": None}
    err = p - t
    return {
        "count": int(t.size),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(math.sqrt(np.mean(err * err))),
    }
