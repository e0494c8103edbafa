"""Measuring what one replica of a model version needs and delivers, and keeping it.

:func:`measure` loads a materialised version (``Registry.open``) with its runtime and
records, per thread count and batch size: p50/p95/p99 latency, requests/s and rows/s
of one caller, and the memory the process holds once the model is loaded and warm.
Inputs are generated from the signature (seeded); the first axis is the batch axis.

Profiles live next to the registry data, one JSON file per version with one entry per
*node class* — ``default`` for this machine, others measured elsewhere and imported, or
derived by a speed factor (:meth:`ModelProfile.scaled`)::

    <MODELPORT_HOME>/profiles/<name>/<version>.json

Placement reads them for deployments that give no profile of their own
(:meth:`ProfileStore.lookup`). The replica profile placement uses is conservative: the
fastest thread count at batch size 1, one request at a time — dynamic batching only
adds headroom.

Example:
    >>> p = measure(registry.open("iris:3"), batch_sizes=(1, 8), threads=(1,))  # doctest: +SKIP
    >>> ProfileStore.from_settings(settings).save(p)                            # doctest: +SKIP
    >>> p.replica_profile()                                                     # doctest: +SKIP
    ReplicaProfile(cpu=1, memory_mb=162.0, rps_per_replica=21000.0, latency_ms=0.08, ...)
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from modelport.core.config import Settings
from modelport.core.errors import FailedPrecondition, InvalidArgument, StorageError
from modelport.core.types import DATATYPES, ModelSignature, TensorSpec, validate_name
from modelport.deploy.model import ReplicaProfile
from modelport.runtimes import LoadSpec, RuntimeOptions, load_runtime
from modelport.security.verify import read_manifest

PROFILE_SCHEMA = "modelport.profile/v1"
DEFAULT_CLASS = "default"
#: Per-request cost of the server around the model (HTTP, validation, encoding) on one
#: core: about what modelport's front end measures for a tiny model.
SERVER_OVERHEAD_MS = 0.1


@dataclass(frozen=True, slots=True)
class Measurement:
    """Latency and throughput of one caller at one batch size and thread count."""

    batch_size: int
    threads: int
    runs: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    requests_per_s: float
    rows_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "threads": self.threads,
            "runs": self.runs,
            "p50_ms": round(self.p50_ms, 6),
            "p95_ms": round(self.p95_ms, 6),
            "p99_ms": round(self.p99_ms, 6),
            "mean_ms": round(self.mean_ms, 6),
            "requests_per_s": round(self.requests_per_s, 3),
            "rows_per_s": round(self.rows_per_s, 3),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Measurement:
        return cls(
            int(d["batch_size"]),
            int(d["threads"]),
            int(d["runs"]),
            float(d["p50_ms"]),
            float(d["p95_ms"]),
            float(d["p99_ms"]),
            float(d["mean_ms"]),
            float(d["requests_per_s"]),
            float(d["rows_per_s"]),
        )


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """A version's profile on one node class.

    ``memory_mb`` is the resident memory of the process with the model loaded and warm
    (what a replica needs); ``model_memory_mb`` the part loading the model added.
    ``source`` is ``measured``, ``imported`` or ``scaled`` (by ``speed`` from
    ``scaled_from``).
    """

    model: str
    version: int
    node_class: str
    memory_mb: float
    model_memory_mb: float
    load_seconds: float
    measurements: tuple[Measurement, ...]
    machine: Mapping[str, Any] = field(default_factory=dict)
    measured_at: str = ""
    source: str = "measured"
    speed: float = 1.0
    scaled_from: str | None = None
    notes: tuple[str, ...] = ()
    cpu: float | None = None  # cores per replica when set; else the thread count

    def best(self, batch_size: int = 1) -> Measurement:
        """The fewest threads whose p99 at ``batch_size`` is within 10% of the best:
        more threads must earn their cores."""
        at = [m for m in self.measurements if m.batch_size == batch_size]
        if not at:
            raise InvalidArgument(f"{self.model}:{self.version} has no batch-{batch_size} data")
        fastest = min(m.p99_ms for m in at)
        return min((m for m in at if m.p99_ms <= 1.1 * fastest), key=lambda m: m.threads)

    def replica_profile(self, overhead_ms: float = SERVER_OVERHEAD_MS) -> ReplicaProfile:
        """What placement uses: cores = threads, memory, and one caller's rate and p99
        at the smallest batch size, each request paying ``overhead_ms`` of serving on
        top of the model (parsing, validation, the response)."""
        batch = min(m.batch_size for m in self.measurements)
        m = self.best(batch)
        extra = overhead_ms if m.runs else 0.0  # declared (imported) figures are final
        return ReplicaProfile(
            cpu=float(self.cpu if self.cpu is not None else m.threads),
            memory_mb=float(math.ceil(self.memory_mb)),
            rps_per_replica=1000.0 / (1000.0 / m.requests_per_s + extra),
            latency_ms=m.p99_ms + extra,
        )

    def scaled(self, node_class: str, speed: float) -> ModelProfile:
        """The same model on a node class ``speed`` times as fast as this one."""
        if speed <= 0:
            raise InvalidArgument(f"speed must be > 0, got {speed}")
        validate_name(node_class, "node class")
        ms = tuple(
            replace(
                m,
                p50_ms=m.p50_ms / speed,
                p95_ms=m.p95_ms / speed,
                p99_ms=m.p99_ms / speed,
                mean_ms=m.mean_ms / speed,
                requests_per_s=m.requests_per_s * speed,
                rows_per_s=m.rows_per_s * speed,
            )
            for m in self.measurements
        )
        return replace(
            self,
            node_class=node_class,
            measurements=ms,
            source="scaled",
            speed=speed,
            scaled_from=self.node_class,
            measured_at=_now(),
        )

    def to_dict(self) -> dict[str, Any]:
        r = self.replica_profile()
        return {
            "model": self.model,
            "version": self.version,
            "node_class": self.node_class,
            "source": self.source,
            "speed": self.speed,
            "scaled_from": self.scaled_from,
            "measured_at": self.measured_at,
            "machine": dict(self.machine),
            "memory_mb": round(self.memory_mb, 2),
            "model_memory_mb": round(self.model_memory_mb, 2),
            "load_seconds": round(self.load_seconds, 4),
            "replica": {
                "cpu": r.cpu,
                "memory_mb": r.memory_mb,
                "rps_per_replica": round(r.rps_per_replica, 2),
                "latency_ms": round(r.latency_ms, 4),
            },
            "measurements": [m.to_dict() for m in self.measurements],
            "notes": list(self.notes),
            "cpu": self.cpu,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelProfile:
        try:
            return cls(
                model=str(d["model"]),
                version=int(d["version"]),
                node_class=str(d.get("node_class", DEFAULT_CLASS)),
                memory_mb=float(d["memory_mb"]),
                model_memory_mb=float(d.get("model_memory_mb", 0.0)),
                load_seconds=float(d.get("load_seconds", 0.0)),
                measurements=tuple(Measurement.from_dict(m) for m in d["measurements"]),
                machine=dict(d.get("machine", {})),
                measured_at=str(d.get("measured_at", "")),
                source=str(d.get("source", "measured")),
                speed=float(d.get("speed", 1.0)),
                scaled_from=d.get("scaled_from"),
                notes=tuple(d.get("notes", ())),
                cpu=None if d.get("cpu") is None else float(d["cpu"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgument(f"malformed profile: {type(e).__name__}: {e}") from e


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _rss_mb() -> float:
    """Resident memory of this process (Linux /proc, else psutil, else peak RSS)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        pass
    try:  # pragma: no cover - not Linux
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:  # pragma: no cover - not Linux, no psutil
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_info() -> dict[str, Any]:
    """What the measurements were taken on."""
    return {
        "hostname": platform.node(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.system(),
    }


def sample_inputs(
    signature: ModelSignature,
    batch: int,
    dims: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Random inputs of the signature's shapes with ``batch`` rows.

    The first axis is the batch axis (a fixed first dimension must equal ``batch``);
    other dynamic dimensions are 1 unless ``dims`` gives the non-batch shape.

    Example:
        >>> sig = ModelSignature((TensorSpec("x", "FP32", (-1, 4)),))
        >>> sample_inputs(sig, 8)["x"].shape
        (8, 4)
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    if not signature.inputs:
        raise InvalidArgument("the model's signature lists no inputs to generate")
    for t in signature.inputs:
        given = (dims or {}).get(t.name)
        rest = tuple(given) if given is not None else tuple(max(d, 1) for d in t.shape[1:])
        if t.shape and t.shape[0] not in (-1, batch):
            raise InvalidArgument(f"input {t.name!r} has a fixed batch size of {t.shape[0]}")
        shape = (batch, *rest) if t.shape else ()
        out[t.name] = _values(t, shape, rng)
    return out


def _values(t: TensorSpec, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    kind = DATATYPES[t.datatype]
    if t.datatype == "BYTES":
        return np.full(shape, b"x", dtype=object)
    if t.datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    if t.datatype == "BF16":
        raise InvalidArgument(f"input {t.name!r}: BF16 inputs cannot be generated")
    if kind.startswith("float"):
        return rng.standard_normal(shape).astype(kind)
    return rng.integers(0, 4, size=shape).astype(kind)


def measure(
    model_dir: str | os.PathLike[str],
    *,
    batch_sizes: Sequence[int] = (1, 8, 32),
    threads: Sequence[int] = (1,),
    duration_s: float = 1.0,
    min_runs: int = 20,
    max_runs: int = 100_000,
    dims: Mapping[str, Sequence[int]] | None = None,
    node_class: str = DEFAULT_CLASS,
    seed: int = 0,
) -> ModelProfile:
    """Profile the materialised version in ``model_dir`` on this machine.

    Each (threads, batch size) pair runs for ``duration_s`` seconds and at least
    ``min_runs`` times, after a warm-up. Batch sizes the model cannot take (a fixed
    first dimension) are skipped with a note.
    """
    root = Path(model_dir)
    manifest = read_manifest(root)
    if "encryption" in (manifest.get("extra") or {}):
        raise FailedPrecondition(
            f"{manifest['name']}:{manifest['version']} is encrypted; profile it where the "
            "server holds the key, or profile the plaintext version it was made from"
        )
    validate_name(node_class, "node class")
    if not batch_sizes or min(batch_sizes) < 1 or not threads or min(threads) < 1:
        raise InvalidArgument("batch sizes and thread counts must be positive")
    signature = ModelSignature.from_dict(manifest["signature"])
    spec = LoadSpec(
        root,
        str(manifest["entry"]),
        signature,
        dict(manifest.get("extra") or {}),
        bool(manifest.get("trusted", False)),
    )
    fmt = str(manifest["format"])
    # A first load pulls in the runtime's libraries, so the second measures the model.
    load_runtime(fmt, spec, RuntimeOptions(intra_op_threads=1)).close()
    gc.collect()
    before = _rss_mb()
    started = time.perf_counter()
    runtime = load_runtime(fmt, spec, RuntimeOptions(intra_op_threads=threads[0]))
    load_seconds = time.perf_counter() - started
    results: list[Measurement] = []
    notes: list[str] = []
    after = before
    try:
        for k, t in enumerate(dict.fromkeys(threads)):
            if k:
                runtime.close()
                runtime = load_runtime(fmt, spec, RuntimeOptions(intra_op_threads=t))
            for b in sorted(set(batch_sizes)):
                try:
                    inputs = sample_inputs(signature, b, dims, seed)
                except InvalidArgument as e:
                    notes.append(f"batch {b}: skipped ({e})")
                    continue
                results.append(_time(runtime.predict, inputs, b, t, duration_s, min_runs, max_runs))
                if k == 0:
                    after = max(after, _rss_mb())
    finally:
        runtime.close()
    if not results:
        raise InvalidArgument("no batch size could be measured: " + "; ".join(notes))
    return ModelProfile(
        model=str(manifest["name"]),
        version=int(manifest["version"]),
        node_class=node_class,
        memory_mb=after,
        model_memory_mb=max(0.0, after - before),
        load_seconds=load_seconds,
        measurements=tuple(results),
        machine=machine_info(),
        measured_at=_now(),
        notes=tuple(notes),
    )


def _time(
    predict: Callable[[dict[str, np.ndarray]], Any],
    inputs: dict[str, np.ndarray],
    batch: int,
    threads: int,
    duration_s: float,
    min_runs: int,
    max_runs: int,
) -> Measurement:
    for _ in range(3):
        predict(inputs)
    times: list[float] = []
    clock = time.perf_counter
    start = clock()
    while len(times) < max_runs and (len(times) < min_runs or clock() - start < duration_s):
        t0 = clock()
        predict(inputs)
        times.append(clock() - t0)
    total = clock() - start
    ms = np.array(times) * 1000
    p50, p95, p99 = (float(x) for x in np.percentile(ms, [50, 95, 99]))
    rate = len(times) / total
    return Measurement(
        batch, threads, len(times), p50, p95, p99, float(ms.mean()), rate, rate * batch
    )


class ProfileStore:
    """Profiles as JSON files under ``<home>/profiles/<name>/<version>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_settings(cls, settings: Settings) -> ProfileStore:
        return cls(settings.home / "profiles")

    def path(self, name: str, version: int) -> Path:
        return self.root / validate_name(name) / f"{int(version)}.json"

    def load(self, name: str, version: int) -> dict[str, ModelProfile]:
        """Every stored node class of ``name:version`` (empty when none)."""
        p = self.path(name, version)
        try:
            doc = json.loads(p.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise StorageError(f"cannot read profile {p}: {e}") from e
        if doc.get("schema") != PROFILE_SCHEMA:
            raise StorageError(f"{p}: not a {PROFILE_SCHEMA} file")
        return {c: ModelProfile.from_dict(d) for c, d in dict(doc["classes"]).items()}

    def save(self, profile: ModelProfile) -> Path:
        """Store (or replace) one node class of a version, atomically."""
        classes = self.load(profile.model, profile.version)
        classes[profile.node_class] = profile
        p = self.path(profile.model, profile.version)
        doc = {
            "schema": PROFILE_SCHEMA,
            "model": profile.model,
            "version": profile.version,
            "classes": {c: classes[c].to_dict() for c in sorted(classes)},
        }
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
            os.replace(tmp, p)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"cannot write profile {p}: {e.strerror or e}") from e
        return p

    def lookup(
        self, resolve: Callable[[str], tuple[str, int]]
    ) -> Callable[[str], dict[str, ReplicaProfile] | None]:
        """A profile lookup for :func:`~modelport.deploy.fleet.load_problem`; ``resolve``
        turns a model reference into its name and version (the registry does)."""

        def find(ref: str) -> dict[str, ReplicaProfile] | None:
            name, version = resolve(ref)
            classes = self.load(name, version)
            return {c: p.replica_profile() for c, p in classes.items()} or None

        return find


def import_profile(
    data: Mapping[str, Any], model: str, version: int, node_class: str
) -> ModelProfile:
    """A profile measured elsewhere (``modelport profile --json`` output, or a bare
    ``{cpu, memory_mb, rps_per_replica, latency_ms}``) as node class ``node_class``."""
    validate_name(node_class, "node class")
    if "measurements" in data:
        p = ModelProfile.from_dict(data)
        if (p.model, p.version) != (model, version):
            raise InvalidArgument(f"the profile is of {p.model}:{p.version}, not {model}:{version}")
        return replace(p, node_class=node_class, source="imported")
    try:
        r = ReplicaProfile(
            float(data["cpu"]),
            float(data["memory_mb"]),
            float(data["rps_per_replica"]),
            float(data.get("latency_ms", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidArgument(
            "a profile file needs cpu, memory_mb, rps_per_replica and latency_ms "
            f"(or a full `modelport profile --json` output): {e}"
        ) from e
    m = Measurement(
        1,
        max(1, math.ceil(r.cpu)),
        0,
        r.latency_ms,
        r.latency_ms,
        r.latency_ms,
        r.latency_ms,
        r.rps_per_replica,
        r.rps_per_replica,
    )
    return ModelProfile(
        model,
        version,
        node_class,
        r.memory_mb,
        0.0,
        0.0,
        (m,),
        measured_at=_now(),
        source="imported",
        cpu=r.cpu,
    )
