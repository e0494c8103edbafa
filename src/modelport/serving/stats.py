"""Per-version inference statistics in Triton's statistics-extension shape.

Counters are plain integers updated on the event loop (no locks needed); durations
are nanosecond totals with counts, as Triton reports them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class VersionStats:
    """Statistics of one loaded model version."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)  # ns total; count = successes
    compute_infer: Duration = field(default_factory=Duration)
    inference_count: int = 0  # rows (batch items) inferred
    execution_count: int = 0  # model executions (a batch counts once)
    last_inference_ns: int = 0
    batches: dict[int, Duration] = field(default_factory=dict)

    def record_success(
        self, total_ns: int, queue_ns: int, compute_ns: int, rows: int, batched: bool
    ) -> None:
        """Count one answered request (hot path: plain attribute arithmetic)."""
        s = self.success
        s.count += 1
        s.ns += total_ns
        self.queue.ns += queue_ns
        self.compute_infer.ns += compute_ns
        self.inference_count += rows
        if not batched:  # batched executions are counted once, by record_batch
            self.record_batch(rows, compute_ns)
        self.last_inference_ns = time.time_ns()

    def record_batch(self, rows: int, compute_ns: int) -> None:
        self.execution_count += 1
        d = self.batches.get(rows)
        if d is None:
            d = self.batches[rows] = Duration()
        d.add(compute_ns)

    def record_failure(self, total_ns: int) -> None:
        self.fail.add(total_ns)
        self.last_inference_ns = time.time_ns()

    def to_dict(self, name: str, version: str) -> dict[str, Any]:
        zero = Duration().to_dict()
        n = self.success.count  # queue/compute durations are counted per success
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ns // 1_000_000,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.to_dict(),
                "fail": self.fail.to_dict(),
                "queue": {"count": n, "ns": self.queue.ns},
                "compute_input": {"count": n, "ns": 0},
                "compute_infer": {"count": n, "ns": self.compute_infer.ns},
                "compute_output": {"count": n, "ns": 0},
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": {"count": d.count, "ns": 0},
                    "compute_infer": d.to_dict(),
                    "compute_output": {"count": d.count, "ns": 0},
                }
                for size, d in sorted(self.batches.items())
            ],
            "memory_usage": [],
        }
