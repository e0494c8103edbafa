"""The model manager: which versions are loaded, which one answers, and live updates.

A served model follows a reference: ``name:3`` is pinned; ``name`` follows the newest
version and ``name@production`` follows the alias. A poller asks the registry (off the
request path) where the reference points; when it moves, the manager loads the new
version, warms it, switches requests to it, then drains and unloads the old one —
availability is preserved, as in TF Serving's availability-preserving policy. A
version that fails to load leaves the model UNAVAILABLE with the reason while other
models keep serving; a failed update leaves the old version serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelport.core.errors import ModelportError, NotFound, Unavailable
from modelport.core.types import DATATYPES, InferenceRequest, ModelRef, ModelSignature
from modelport.monitoring.metrics import RequestMetrics, resident_bytes
from modelport.monitoring.monitor import Monitor, VersionMonitor
from modelport.protocol.dtypes import BF16_DTYPE
from modelport.protocol.triton_config import batchable
from modelport.protocol.v2_compiled import Decoder, compile_decoder
from modelport.protocol.validate import compile_validator
from modelport.registry import AliasInfo, ModelSummary, ModelVersion
from modelport.runtimes import LoadSpec, Runtime, RuntimeOptions, load_runtime
from modelport.security.loading import LoadGuard
from modelport.serving.batcher import INLINE_BELOW_NS, BatchingConfig, Executor
from modelport.serving.config import ModelConfig
from modelport.serving.stats import VersionStats

log = logging.getLogger("modelport.serving")

SAMPLE_INPUT_FILE = "sample_input.npz"
HEAVY_ABOVE_NS = 1_000_000  # batch-1 compute above this gets the runtime's thread pool


class VersionSource(Protocol):
    """What the manager reads versions from: a Registry, or a package (serve --package)."""

    def get(self, ref: ModelRef) -> ModelVersion: ...

    def aliases(self, name: str | None = None) -> list[AliasInfo]: ...

    def list(self) -> list[ModelSummary]: ...

    def open(self, ref: ModelVersion) -> Path: ...

    def signature(self, ref: ModelVersion) -> dict[str, Any] | None: ...

    def close(self) -> None: ...


class State(enum.StrEnum):
    UNKNOWN = "UNKNOWN"
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    UNLOADING = "UNLOADING"


@dataclass(slots=True)
class LoadedVersion:
    """A version in memory: its record, runtime, executor and statistics."""

    record: ModelVersion
    runtime: Runtime
    executor: Executor
    signature: ModelSignature
    batching: BatchingConfig
    stats: VersionStats = field(default_factory=VersionStats)
    load_seconds: float = 0.0
    inflight: int = 0  # requests that resolved to this version and are not answered yet
    monitor: VersionMonitor | None = None
    counters: dict[str, RequestMetrics] = field(default_factory=dict)  # by protocol
    timeout_s: float | None = None  # per-model request timeout (serve config)
    solo: Runtime | None = None  # the copy with the runtime's threads, for a lone request
    validate: Callable[[InferenceRequest], InferenceRequest] = field(init=False, repr=False)
    # decodes-and-validates the common V2 request in one pass (None: the general path)
    decode_v2: Decoder = field(init=False, repr=False)

    version_str: str = field(init=False, repr=False)
    run_inline: bool = field(init=False, repr=False)  # no batching and an inline model

    def close(self) -> None:
        """Release the runtimes."""
        self.runtime.close()
        if self.solo is not None:
            self.solo.close()

    def __post_init__(self) -> None:
        self.validate = compile_validator(self.signature)
        self.decode_v2 = compile_decoder(self.signature)
        self.version_str = str(self.record.version)
        self.run_inline = self.executor.inline and not self.batching.enabled

    @property
    def version(self) -> int:
        return self.record.version


@dataclass(slots=True)
class ServedModel:
    name: str
    ref: ModelRef
    config: ModelConfig
    state: State = State.UNKNOWN
    reason: str = ""
    versions: dict[int, LoadedVersion] = field(default_factory=dict)
    current: int | None = None
    aliases: dict[str, int] = field(default_factory=dict)
    unloaded: bool = False  # explicitly unloaded: the poller leaves it alone


def synth_inputs(signature: ModelSignature) -> dict[str, np.ndarray]:
    """A batch-1 input from the signature (zeros; -1 dims become 1)."""
    out = {}
    for t in signature.inputs:
        shape = tuple(1 if d < 0 else d for d in t.shape)
        if t.datatype == "BYTES":
            out[t.name] = np.full(shape, b"", dtype=object)
        elif t.datatype == "BF16":
            out[t.name] = np.zeros(shape, BF16_DTYPE)
        else:
            out[t.name] = np.zeros(shape, DATATYPES[t.datatype])
    return out


class ModelManager:
    """Owns loaded versions; loads, switches, drains and unloads them."""

    def __init__(
        self,
        registry: VersionSource,
        pool: ThreadPoolExecutor,
        *,
        threads: int = 1,
        drain_timeout_s: float = 30.0,
        guard: LoadGuard | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        self.registry = registry
        self.guard = guard
        self.monitor = monitor
        self.pool = pool
        self.threads = threads  # the pool's size: the default instances per version
        self.drain_timeout_s = drain_timeout_s
        self.models: dict[str, ServedModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._cores = os.cpu_count() or 1

    # ---------------------------------------------------------------- lookup

    def resolve(self, name: str, version: str | None) -> LoadedVersion:
        """The loaded version for a request: none → current, a number, or an alias."""
        model = self.models.get(name)
        if model is None:
            raise NotFound(f"model {name!r} is not served")
        if not version:
            if model.current is None:
                reason = f": {model.reason}" if model.reason else ""
                raise Unavailable(f"model {name!r} is {model.state.value.lower()}{reason}")
            return model.versions[model.current]
        if version.isdigit():
            loaded = model.versions.get(int(version))
            if loaded is None:
                raise NotFound(f"version {version} of model {name!r} is not loaded")
            return loaded
        number = model.aliases.get(version)
        if number is None or number not in model.versions:
            raise NotFound(f"model {name!r} has no served alias {version!r}")
        return model.versions[number]

    # ---------------------------------------------------------------- load

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def add(self, config: ModelConfig) -> ServedModel:
        """Serve the model ``config.ref`` names; a load failure is recorded, not raised."""
        ref = config.parsed_ref()
        async with self._lock(ref.name):
            model = self.models.get(ref.name)
            if model is None:
                model = self.models[ref.name] = ServedModel(ref.name, ref, config)
            else:
                model.ref, model.config = ref, config
            model.unloaded = False
            await self._sync(model)
        return model

    async def _sync(self, model: ServedModel) -> None:
        """Make the model serve what its reference points at now (caller holds the lock)."""
        try:
            record = await asyncio.to_thread(self.registry.get, model.ref)
            aliases = {
                a.alias: a.version
                for a in await asyncio.to_thread(self.registry.aliases, model.name)
            }
        except ModelportError as e:
            if model.current is None:
                model.state, model.reason = State.UNAVAILABLE, str(e)
                if self.monitor is not None:  # nothing to serve: a failed load
                    self.monitor.metrics.model_load_failed(model.name)
            log.warning("cannot resolve %s: %s", model.ref, e)
            return
        model.aliases = aliases
        if model.current == record.version:
            return
        if model.current is None:
            model.state = State.LOADING
        try:
            loaded = await self._load_version(model, record)
        except ModelportError as e:
            log.error("loading %s failed: %s", record.ref, e)
            if self.monitor is not None:
                self.monitor.metrics.model_load_failed(model.name)
            if model.current is None:
                model.state, model.reason = State.UNAVAILABLE, str(e)
            return
        old = model.current
        model.versions[record.version] = loaded
        model.current = record.version
        model.state, model.reason = State.READY, ""
        log.info("serving %s (%s)", record.ref, model.ref)
        if old is not None and old != record.version:
            await self._retire(model, old)

    async def _load_version(self, model: ServedModel, record: ModelVersion) -> LoadedVersion:
        t0 = time.perf_counter()
        directory = await asyncio.to_thread(self.registry.open, record)
        blobs: dict[str, bytes] | None = None
        if self.guard is not None:  # signature, files, decryption into memory
            verified = await asyncio.to_thread(
                self.guard.check, record.manifest(), directory, self._signature(record)
            )
            blobs = verified.files or None
        spec = LoadSpec(
            directory, record.entry, record.signature, record.extra, record.trusted, blobs
        )
        config = model.config
        sig = record.signature
        batching = config.batching()
        if sig.inputs and any(not t.shape or t.shape[0] != -1 for t in sig.inputs):
            batching = dataclasses.replace(batching, max_batch_size=0)
        instances = batching.instances or self.threads  # 0: one per pool thread
        batching = dataclasses.replace(batching, instances=instances)
        # rows along a batch axis are independent: the instances share them out (a big
        # request cut across them, the batcher's queue shared among the idle ones)
        # instead of each run using the runtime's own threads
        split = instances > 1 and bool(sig.inputs and sig.outputs) and batchable(sig)
        by_rows = split or (instances > 1 and batching.enabled)
        sample = await asyncio.to_thread(_sample_input, directory, record.signature, blobs)
        rss0 = resident_bytes()
        runtime = await asyncio.to_thread(
            load_runtime, record.format, spec, RuntimeOptions(intra_op_threads=1)
        )
        latency = await asyncio.to_thread(_warm_up, runtime, sample)
        solo: Runtime | None = None
        if latency > HEAVY_ABOVE_NS and self._cores > 1 and not by_rows:
            runtime.close()  # rows cannot be shared out: the runtime's threads
            runtime = await asyncio.to_thread(load_runtime, record.format, spec, RuntimeOptions())
            latency = await asyncio.to_thread(_warm_up, runtime, sample)
        elif latency > HEAVY_ABOVE_NS and self._cores > 1 and not batching.enabled:
            # One-thread instances give the most requests/s under load, but a request
            # that arrives alone would leave the other cores idle: it runs on a second
            # copy with the runtime's own threads (one more copy of the weights in memory).
            try:
                solo = await asyncio.to_thread(
                    load_runtime, record.format, spec, RuntimeOptions(spinning=True)
                )
                await asyncio.to_thread(_warm_up, solo, sample)
            except Exception as e:  # the version serves without it
                log.warning("%s: no solo copy (%s); all requests use the instances", record.ref, e)
                if solo is not None:
                    solo.close()
                solo = None
        inline = batching.execution == "inline" or (
            batching.execution == "auto" and not batching.enabled and latency < INLINE_BELOW_NS
        )
        stats = VersionStats()
        on_batch = stats.record_batch
        vm = None
        if self.monitor is not None:
            vm = self.monitor.attach(
                model.name,
                str(record.version),
                record.signature,
                record.extra,
                queue_depth=lambda: executor.pending,
            )
            observe_batch = vm.metrics.observe_batch

            def on_batch(rows: int, compute_ns: int) -> None:
                stats.record_batch(rows, compute_ns)
                observe_batch(rows)

        executor = Executor(
            runtime.predict,
            batching,
            self.pool,
            inline=inline,
            split=split,
            on_batch=on_batch,
            run_solo=solo.predict if solo is not None else None,
        )
        loaded = LoadedVersion(
            record,
            runtime,
            executor,
            record.signature,
            batching,
            stats,
            time.perf_counter() - t0,
            timeout_s=config.timeout_s,
            solo=solo,
        )
        if vm is not None and self.monitor is not None:
            loaded.monitor = vm
            loaded.counters = {p: vm.protocol(p) for p in ("rest", "grpc", "tfserving")}
            rss1 = resident_bytes()
            self.monitor.metrics.model_loaded(
                model.name,
                str(record.version),
                load_seconds=loaded.load_seconds,
                memory_bytes=max(0, rss1 - rss0) if rss0 is not None and rss1 is not None else None,
            )
        log.info(
            "loaded %s in %.2fs (batch-1 %.0f µs, %s)",
            record.ref,
            loaded.load_seconds,
            latency / 1000,
            "inline" if inline else "thread pool",
        )
        return loaded

    def _signature(self, record: ModelVersion) -> dict[str, Any] | None:
        """The stored signature document of a version (None: unsigned)."""
        return self.registry.signature(record)

    async def _retire(self, model: ServedModel, number: int) -> None:
        """Drain a version that no longer answers by default, then unload it."""
        loaded = model.versions.get(number)
        if loaded is None:
            return
        end = time.monotonic() + self.drain_timeout_s
        while loaded.inflight and time.monotonic() < end:
            await asyncio.sleep(0.005)
        if loaded.inflight:
            log.warning(
                "%s: drain timed out with %d requests pending", loaded.record.ref, loaded.inflight
            )
        model.versions.pop(number, None)
        loaded.close()
        if self.monitor is not None:
            self.monitor.detach(model.name, str(number))
        log.info("unloaded %s", loaded.record.ref)

    async def refresh(self) -> None:
        """Follow every unpinned reference once (called by the poller)."""
        for model in list(self.models.values()):
            if model.ref.version is not None and model.current == model.ref.version:
                continue
            if model.unloaded or model.state == State.UNLOADING:
                continue
            async with self._lock(model.name):
                await self._sync(model)

    async def poll(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except Exception:  # the poller must survive registry hiccups
                log.exception("registry poll failed")

    async def unload(self, name: str) -> None:
        """Stop serving ``name``: readiness drops at once, in-flight requests finish."""
        model = self.models.get(name)
        if model is None:
            raise NotFound(f"model {name!r} is not served")
        async with self._lock(name):
            model.state, model.current, model.unloaded = State.UNLOADING, None, True
            for number in list(model.versions):
                await self._retire(model, number)
            model.state, model.reason = State.UNAVAILABLE, "unloaded"

    async def load(self, name: str, config: ModelConfig) -> ServedModel:
        """Load (or reload) ``name`` by its configured reference."""
        model = self.models.get(name)
        cfg = model.config if model is not None else config
        if model is not None and model.state == State.UNAVAILABLE:
            model.state = State.LOADING
        return await self.add(cfg)

    async def close(self) -> None:
        for model in list(self.models.values()):
            for loaded in model.versions.values():
                loaded.close()
            model.versions.clear()
            model.current = None


def _sample_input(
    directory: os.PathLike[str] | str,
    signature: ModelSignature,
    blobs: dict[str, bytes] | None = None,
) -> dict[str, np.ndarray]:
    """The stored sample input (decrypted if need be), else zeros from the signature."""
    import io
    from pathlib import Path

    source: Any = None
    if blobs is not None and SAMPLE_INPUT_FILE in blobs:
        source = io.BytesIO(blobs[SAMPLE_INPUT_FILE])
    elif blobs is None and (Path(directory) / SAMPLE_INPUT_FILE).is_file():
        source = Path(directory) / SAMPLE_INPUT_FILE
    if source is not None:
        try:
            with np.load(source, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError):
            arrays = {}
        if arrays and set(arrays) == {t.name for t in signature.inputs}:
            return {k: v[:1] if v.ndim else v for k, v in arrays.items()}
    return synth_inputs(signature)


def _warm_up(runtime: Runtime, sample: dict[str, np.ndarray]) -> float:
    """Run the sample a few times; return the median batch-1 latency in ns."""
    try:
        runtime.predict(sample)
        times = []
        for _ in range(5):
            t = time.perf_counter_ns()
            runtime.predict(sample)
            times.append(time.perf_counter_ns() - t)
    except ModelportError:
        raise
    except Exception as e:
        raise Unavailable(f"warm-up failed: {type(e).__name__}: {e}") from e
    return float(statistics.median(times))
