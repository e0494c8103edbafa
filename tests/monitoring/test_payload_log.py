"""Payload log: sampling rate, rotation, drops counted, the caller never waits."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from modelport.monitoring.metrics import ServingMetrics
from modelport.monitoring.payload_log import JsonlSink, PayloadLogger, log_files, read_records

X = {"X": np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32)}
Y = {"label": np.array([0], dtype=np.int64)}


class BlockedSink:
    """A sink stuck on a slow disk until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.records: list[dict[str, Any]] = []

    def write(self, records):
        self.release.wait(10)
        self.records.extend(records)

    def close(self) -> None:
        pass


class BrokenSink:
    def write(self, records):
        raise OSError("disk full")

    def close(self) -> None:
        pass


def test_sampling_rate_per_model(tmp_path: Path):
    sink = JsonlSink(tmp_path)
    log = PayloadLogger(
        sink,
        default_rate=0.05,
        rates={"fraud": 0.5, "off": 0.0},
        queue_size=10_000,
        rng=random.Random(7),
    )
    n = 4000
    hits = {
        m: sum(log.maybe_log(m, "1", f"{m}-{i}", X, Y, 0.001) for i in range(n))
        for m in ("iris", "fraud", "off")
    }
    log.close()
    assert log.dropped == {}
    assert 0.035 * n < hits["iris"] < 0.065 * n
    assert 0.45 * n < hits["fraud"] < 0.55 * n
    assert hits["off"] == 0
    records = read_records(log_files(tmp_path))
    assert len(records) == hits["iris"] + hits["fraud"]
    assert log.written == len(records)


def test_record_content(tmp_path: Path):
    log = PayloadLogger(JsonlSink(tmp_path), default_rate=1.0, max_elements=8)
    words = np.array([b"caf\xc3\xa9", b"tea"], dtype=object)
    big = np.arange(20, dtype=np.float32).reshape(2, 10)
    log.maybe_log("iris", "3", "abc", {**X, "note": words}, {**Y, "big": big}, 0.0125)
    log.close()
    (rec,) = read_records([tmp_path / "payloads.jsonl"])
    assert (rec["id"], rec["model"], rec["version"], rec["latency_s"]) == (
        "abc",
        "iris",
        "3",
        0.0125,
    )
    assert rec["inputs"]["X"] == {"datatype": "FP32", "shape": [1, 4], "data": X["X"].tolist()}
    assert rec["inputs"]["note"]["data"] == ["café", "tea"]
    assert rec["outputs"]["label"] == {"datatype": "INT64", "shape": [1], "data": [0]}
    assert rec["outputs"]["big"]["truncated"] is True
    assert rec["outputs"]["big"]["data"] == list(range(8))
    assert rec["ts"].endswith("+00:00")


def test_rotation_keeps_backups(tmp_path: Path):
    sink = JsonlSink(tmp_path, max_bytes=4096, backups=3)
    log = PayloadLogger(sink, default_rate=1.0, queue_size=10_000)
    for i in range(400):
        log.maybe_log("iris", "1", f"r{i}", X, Y, 0.001)
    log.close()
    files = log_files(tmp_path)
    assert [f.name for f in files] == [
        "payloads.jsonl.3",
        "payloads.jsonl.2",
        "payloads.jsonl.1",
        "payloads.jsonl",
    ]
    assert all(f.stat().st_size <= 4096 for f in files)
    records = read_records(files)
    ids = [int(r["id"][1:]) for r in records]
    assert ids == sorted(ids)
    assert ids[-1] == 399
    assert len(ids) < 400


def test_full_queue_drops_and_counts_without_blocking():
    metrics = ServingMetrics(process=False)
    sink = BlockedSink()
    log = PayloadLogger(
        sink,
        default_rate=1.0,
        queue_size=50,
        flush_interval_s=0.01,
        on_dropped=lambda m: metrics.payload_dropped.labels(m).inc(),
        on_logged=lambda m: metrics.payload_records.labels(m).inc(),
    )
    time.sleep(0.05)  # let the writer pick up its (empty) first round
    log.maybe_log("iris", "1", "first", X, Y, 0.001)
    time.sleep(0.1)  # the writer is now stuck in write() with one record
    t0 = time.perf_counter()
    accepted = sum(log.maybe_log("iris", "1", f"r{i}", X, Y, 0.001) for i in range(1000))
    elapsed = time.perf_counter() - t0
    assert accepted == 50
    assert log.dropped == {"iris": 950}
    assert elapsed < 0.5  # 1000 calls while the sink is stuck: no waiting
    sink.release.set()
    assert log.flush()
    log.close()
    assert len(sink.records) == 51
    text = metrics.render(None)[0].decode()
    assert 'modelport_payload_log_dropped_total{model="iris"} 950.0' in text
    assert 'modelport_payload_log_records_total{model="iris"} 51.0' in text


def test_a_broken_sink_counts_drops_and_keeps_running():
    log = PayloadLogger(BrokenSink(), default_rate=1.0, flush_interval_s=0.01)
    for i in range(5):
        log.maybe_log("iris", "1", f"r{i}", X, Y, 0.001)
    assert log.flush()
    assert log.dropped == {"iris": 5}
    log.maybe_log("iris", "1", "later", X, Y, 0.001)
    assert log.flush()
    assert log.dropped == {"iris": 6}
    log.close()


def test_jsonl_sink_appends_across_restarts(tmp_path: Path):
    for run in range(2):
        log = PayloadLogger(JsonlSink(tmp_path), default_rate=1.0)
        log.maybe_log("iris", "1", f"run{run}", X, Y, 0.001)
        log.close()
    lines = (tmp_path / "payloads.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["run0", "run1"]
