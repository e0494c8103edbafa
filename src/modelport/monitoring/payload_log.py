"""The payload log: a sampled record of what a model was asked and what it answered.

:meth:`PayloadLogger.maybe_log` runs on the request path. It draws one random number;
for a sampled request it appends a tuple of references to a bounded buffer and returns
— it never formats, serialises, waits or writes. A background thread drains the
buffer in batches into a :class:`PayloadSink`. When the buffer is full (a slow disk,
a burst) the record is dropped and counted (``modelport_payload_log_dropped_total``),
so logging can never slow inference down. The arrays must not be written to after the
call (the data plane never reuses request or response buffers).

The default sink, :class:`JsonlSink`, writes one JSON object per line to
``MODELPORT_HOME/logs/payloads.jsonl`` and rotates it by size
(``payloads.jsonl.1`` … ``.N``, like :class:`logging.handlers.RotatingFileHandler`)::

    {"ts": "2025-01-01T12:00:00.123456+00:00", "id": "9f1c…", "model": "iris",
     "version": "3", "latency_s": 0.0012,
     "inputs": {"X": {"datatype": "FP32", "shape": [1, 4], "data": [[5.1, 3.5, 1.4, 0.2]]}},
     "outputs": {"label": {"datatype": "INT64", "shape": [1], "data": [0]}}}

Tensors with more than ``max_elements`` values are logged with ``"truncated": true``
and the first ``max_elements`` values (flattened).

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> log = PayloadLogger(JsonlSink(d), default_rate=1.0)
    >>> log.maybe_log("iris", "1", "req-1", {"X": np.ones((1, 2))}, {"y": np.array([0])}, 1e-3)
    True
    >>> log.close()
    >>> import json; json.loads((d / "payloads.jsonl").read_text())["id"]
    'req-1'
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson

from modelport.core.types import DATATYPES

log = logging.getLogger("modelport.monitoring")

LOG_FILE = "payloads.jsonl"
_NUMPY_TO_DATATYPE = {v: k for k, v in DATATYPES.items() if k != "BF16"}

Record = tuple[float, str, str, str | None, Mapping[str, Any], Mapping[str, Any], float]


class PayloadSink(Protocol):
    """Where payload records go; ``write`` gets batches of JSON-ready dicts."""

    def write(self, records: Sequence[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """JSON lines in ``directory/payloads.jsonl``, rotated past ``max_bytes``."""

    def __init__(self, directory: Path, *, max_bytes: int = 64 << 20, backups: int = 5) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.backups = backups
        self.path = self.directory / LOG_FILE
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")

    def write(self, records: Sequence[dict[str, Any]]) -> None:
        for r in records:
            # orjson: the writer thread holds the GIL an order of magnitude less than
            # the standard library's encoder on large tensors (NaN is written as null)
            line = orjson.dumps(r, default=str, option=orjson.OPT_APPEND_NEWLINE)
            if self._file.tell() and self._file.tell() + len(line) > self.max_bytes:
                self._rotate()
            self._file.write(line)
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{LOG_FILE}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{LOG_FILE}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{LOG_FILE}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._file = self.path.open("ab")

    def files(self) -> list[Path]:
        """The log files, oldest first."""
        return log_files(self.directory)

    def close(self) -> None:
        self._file.close()


class PayloadLogger:
    """Samples requests into a bounded buffer that a writer thread drains into a sink."""

    def __init__(
        self,
        sink: PayloadSink,
        *,
        default_rate: float = 0.01,
        rates: Mapping[str, float] | None = None,
        queue_size: int = 1024,
        max_elements: int = 4096,
        flush_interval_s: float = 0.2,
        on_logged: Callable[[str], None] | None = None,
        on_dropped: Callable[[str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.sink = sink
        self.default_rate = default_rate
        self.rates = dict(rates or {})
        self.queue_size = queue_size
        self.max_elements = max_elements
        self.flush_interval_s = flush_interval_s
        self.dropped: dict[str, int] = {}
        self.written = 0
        self._on_logged = on_logged
        self._on_dropped = on_dropped
        self._random = (rng or random.Random()).random  # noqa: S311  (sampling, not secrets)
        self._buffer: deque[Record] = deque()
        self._flushed: deque[threading.Event] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="modelport-payload-log", daemon=True)
        self._thread.start()

    def rate(self, model: str) -> float:
        return self.rates.get(model, self.default_rate)

    def maybe_log(
        self,
        model: str,
        version: str,
        request_id: str | None,
        inputs: Mapping[str, Any],
        outputs: Mapping[str, Any],
        latency_s: float,
    ) -> bool:
        """Queue the request for the log with the model's sampling rate; never blocks.

        Returns True when the request was sampled and queued.
        """
        if self._random() >= self.rates.get(model, self.default_rate):
            return False
        if len(self._buffer) >= self.queue_size or self._stop:
            self.dropped[model] = self.dropped.get(model, 0) + 1
            if self._on_dropped is not None:
                self._on_dropped(model)
            return False
        self._buffer.append((time.time(), model, version, request_id, inputs, outputs, latency_s))
        return True

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            stopping = self._stop
            waiters = [self._flushed.popleft() for _ in range(len(self._flushed))]
            self._drain()
            for w in waiters:
                w.set()
            if stopping:
                return

    def _drain(self) -> None:
        batch: list[dict[str, Any]] = []
        models: list[str] = []
        while self._buffer:
            ts, model, version, rid, inputs, outputs, latency = self._buffer.popleft()
            batch.append(
                {
                    "ts": datetime.fromtimestamp(ts, UTC).isoformat(),
                    "id": rid,
                    "model": model,
                    "version": version,
                    "latency_s": latency,
                    "inputs": {k: self._tensor(v) for k, v in inputs.items()},
                    "outputs": {k: self._tensor(v) for k, v in outputs.items()},
                }
            )
            models.append(model)
        if not batch:
            return
        try:
            self.sink.write(batch)
        except Exception:  # a broken sink must not kill the writer (or the server)
            log.exception("payload log: writing %d record(s) failed; dropped", len(batch))
            for m in models:
                self.dropped[m] = self.dropped.get(m, 0) + 1
                if self._on_dropped is not None:
                    self._on_dropped(m)
            return
        self.written += len(batch)
        if self._on_logged is not None:
            for m in models:
                self._on_logged(m)

    def _tensor(self, value: Any) -> dict[str, Any]:
        x = np.asarray(value)
        out: dict[str, Any] = {
            "datatype": _NUMPY_TO_DATATYPE.get(x.dtype.name)
            or ("BYTES" if x.dtype.kind in "OSU" else x.dtype.name),
            "shape": list(x.shape),
        }
        if x.size > self.max_elements:
            x = x.reshape(-1)[: self.max_elements]
            out["truncated"] = True
        if x.dtype.kind in "OS":
            out["data"] = [_text(v) for v in x.reshape(-1)]
            if not out.get("truncated"):
                out["data"] = np.array(out["data"], dtype=object).reshape(x.shape).tolist()
        else:
            out["data"] = x.tolist()
        return out

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued so far is written; False on timeout."""
        if not self._thread.is_alive():
            return not self._buffer
        done = threading.Event()
        self._flushed.append(done)
        self._wake.set()
        return done.wait(timeout_s)

    def close(self) -> None:
        """Write what is queued, stop the writer thread and close the sink."""
        self._stop = True
        self._wake.set()
        self._thread.join()
        self.sink.close()


def _text(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def log_files(directory: Path) -> list[Path]:
    """The payload-log files in ``directory``, oldest first."""
    rotated = [p for p in Path(directory).glob(f"{LOG_FILE}.*") if p.suffix[1:].isdigit()]
    rotated.sort(key=lambda p: int(p.suffix[1:]), reverse=True)
    current = Path(directory) / LOG_FILE
    return [*rotated, current] if current.exists() else rotated


def read_records(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Every record of the given JSONL files, in order (for offline evaluation)."""
    out: list[dict[str, Any]] = []
    for p in paths:
        with p.open("rb") as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
    return out
