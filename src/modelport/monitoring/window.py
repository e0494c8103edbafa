"""The sliding window of recently served rows that drift is computed over.

:meth:`DriftWindow.add` runs on the request path, so it does no numeric work: it keeps
a reference to the request's arrays (and prediction); once it holds a quarter more
than ``capacity`` rows it drops whole requests from the old end while the newer ones
alone fill the window. Memory is therefore bounded by 1.25 × ``capacity`` rows plus
one request; reports use the newest ``capacity`` rows. Tensors of three or more
dimensions (images) are reduced to their per-row mean and standard deviation at once
instead, so the window never pins large tensors. The arrays must not be written to
after they are added (the data plane never reuses request or response buffers).
Predictions are turned into one value per row (``prediction_values``, e.g. an argmax
over class scores) only when the window is read.

Splitting into features and running the tests happens in :meth:`DriftWindow.report`,
off the request path (the monitor's evaluation thread, or a ``/drift`` request).

Example:
    >>> rng = np.random.default_rng(1)
    >>> from modelport.monitoring.drift import build_profile
    >>> profile = build_profile("m", "1", {"X": rng.normal(size=(1000, 3))})
    >>> w = DriftWindow("m", "1", capacity=500)
    >>> for _ in range(60):
    ...     w.add({"X": rng.normal(size=(10, 3))})
    >>> r = w.report(profile)
    >>> r["window"], r["drifted"], [f["name"] for f in r["features"]]
    (500, False, ['X[0]', 'X[1]', 'X[2]'])
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from modelport.monitoring.drift import (
    DriftProfile,
    DriftReport,
    DriftThresholds,
    compare,
    extract_features,
)

Arrays = Mapping[str, np.ndarray]


class DriftWindow:
    """The last ``capacity`` rows served by one version, with their predictions."""

    def __init__(
        self,
        model: str,
        version: str,
        capacity: int = 1000,
        *,
        feature_names: Mapping[str, Sequence[str]] | None = None,
        prediction_values: Callable[[np.ndarray], np.ndarray] | None = None,
        high_dim: bool | None = None,
    ) -> None:
        """``high_dim`` False promises no input has 3+ dimensions (known from the
        signature), sparing that check per request; None checks every request."""
        self.model = model
        self.version = version
        self.capacity = capacity
        self.feature_names = dict(feature_names or {})
        self._prediction_values = prediction_values
        self._high_dim = high_dim
        self._items: deque[tuple[Arrays, np.ndarray | None, int]] = deque()
        self._rows = 0
        # trimmed back to capacity once a quarter over it: one lock per many requests
        self._limit = capacity + max(1, capacity // 4)
        self._lock = threading.Lock()

    @property
    def rows(self) -> int:
        """Rows currently held: at most 1.25 × ``capacity`` plus one request."""
        return self._rows

    def add(self, inputs: Arrays, prediction: np.ndarray | None = None) -> None:
        """Remember a served request's inputs (and prediction); O(1), no copying.

        No lock on the common path: ``deque.append`` is atomic, and the row count
        only decides when to trim (under the lock), so a lost update between two
        threads cannot corrupt the window — :meth:`snapshot` recounts.
        """
        for x in inputs.values():
            n = len(x) if x.ndim else 1
            if self._high_dim is not False and any(v.ndim >= 3 for v in inputs.values()):
                inputs = _reduce(inputs)
            break
        else:
            return
        self._items.append((inputs, prediction, n))
        self._rows += n
        if self._rows >= self._limit:
            self._trim()

    def _trim(self) -> None:
        with self._lock:
            items, rows, removed = self._items, self._rows, 0
            while len(items) > 1 and rows - removed - items[0][2] >= self.capacity:
                removed += items.popleft()[2]
            self._rows -= removed

    def snapshot(self) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """The window's newest ``capacity`` rows as feature columns, and predictions."""
        with self._lock:
            items = list(self._items)
            self._rows = sum(item[2] for item in items)
        if not items:
            return {}, None
        columns: dict[str, list[np.ndarray]] = {}
        preds: list[np.ndarray] = []
        for inputs, prediction, n in items:
            for name, col in extract_features(inputs, self.feature_names).items():
                columns.setdefault(name, []).append(col)
            if prediction is not None:
                p = np.asarray(prediction)
                if self._prediction_values is not None:
                    p = self._prediction_values(p)
                preds.append(p.reshape(-1) if p.size == n else p.reshape(n, -1)[:, 0])
        joined = {k: np.concatenate(v)[-self.capacity :] for k, v in columns.items()}
        pred = np.concatenate(preds)[-self.capacity :] if preds else None
        return joined, pred

    def compare(
        self, profile: DriftProfile, thresholds: DriftThresholds | None = None
    ) -> DriftReport:
        """The drift of the window against ``profile``."""
        columns, pred = self.snapshot()
        report = compare(profile, columns, pred, thresholds)
        if report.model != self.model or report.version != self.version:
            # a profile built for another version of the model (e.g. the parent of a
            # quantized version): label the report with the version that served
            from dataclasses import replace

            report = replace(report, model=self.model, version=self.version)
        return report

    def report(
        self, profile: DriftProfile, thresholds: DriftThresholds | None = None
    ) -> dict[str, Any]:
        """The ``/drift`` JSON: ``{"model", "version", "window", "drifted", "features", …}``."""
        return self.compare(profile, thresholds).to_dict()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._rows = 0


def _reduce(inputs: Arrays) -> dict[str, np.ndarray]:
    """Per-row mean and std of high-dimensional tensors, so the window holds no images."""
    out: dict[str, np.ndarray] = {}
    for name, x in inputs.items():
        if x.ndim >= 3 and x.dtype.kind not in "OSUb":
            flat = x.reshape(x.shape[0], -1).astype(np.float64, copy=False)
            out[f"{name}.mean"] = flat.mean(axis=1)
            out[f"{name}.std"] = flat.std(axis=1)
        elif x.ndim < 3:
            out[name] = x
    return out
