"""The transport-agnostic data plane: every protocol adapter (REST, gRPC) calls this.

It answers health, metadata, configuration, statistics and repository questions from
memory and runs inference: resolve the version, validate the request once against its
signature, execute (batched or not), keep statistics. It never reads the registry on
the request path and never sees JSON, HTTP or gRPC.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

import numpy as np

from modelport import __version__
from modelport.core.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    ModelportError,
    NotFound,
    Unavailable,
)
from modelport.core.types import InferenceRequest, InferenceResponse, ModelSignature
from modelport.monitoring.monitor import Monitor
from modelport.protocol.triton_config import model_config as triton_model_config
from modelport.protocol.triton_config import model_metadata as v2_model_metadata
from modelport.protocol.triton_config import platform_of
from modelport.serving.batcher import Timing
from modelport.serving.config import ServeConfig
from modelport.serving.manager import LoadedVersion, ModelManager, State

EXTENSIONS = [
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "model_repository",
    "statistics",
    "parameters",
]


class DataPlane:
    """Inference and model control over the loaded models of a :class:`ModelManager`."""

    def __init__(
        self,
        manager: ModelManager,
        config: ServeConfig,
        *,
        monitor: Monitor | None = None,
    ) -> None:
        self.monitor = monitor
        self._id_prefix = f"{os.getpid():x}-{int(time.time()):x}-"
        self._ids = itertools.count(1)
        self.manager = manager
        self.config = config
        self._live = True
        self.accepting = True
        self.inflight = 0

    # ---------------------------------------------------------------- health

    def live(self) -> bool:
        return self._live

    def ready(self) -> bool:
        """Ready when accepting traffic and every configured model answers."""
        if not self.accepting:
            return False
        models = self.manager.models.values()
        return all(m.state == State.READY or m.unloaded for m in models)

    def stop_accepting(self) -> None:
        """Readiness fails from now on (first step of a graceful shutdown)."""
        self.accepting = False

    def model_ready(self, name: str, version: str | None = None) -> bool:
        try:
            self.manager.resolve(name, version)
        except ModelportError:
            return False
        return self.accepting

    # ---------------------------------------------------------------- metadata

    def server_metadata(self) -> dict[str, Any]:
        extensions = EXTENSIONS
        if self.config.workers > 1:  # model control would reach one process of several
            extensions = [e for e in EXTENSIONS if e != "model_repository"]
        return {"name": "modelport", "version": __version__, "extensions": extensions}

    def _loaded(self, name: str, version: str | None) -> LoadedVersion:
        return self.manager.resolve(name, version)

    def signature(self, name: str, version: str | None = None) -> ModelSignature:
        return self._loaded(name, version).signature

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        loaded = self._loaded(name, version)
        model = self.manager.models[name]
        versions = [str(v) for v in sorted(model.versions)]
        return v2_model_metadata(
            name, versions, loaded.signature, platform_of(loaded.record.format)[0]
        )

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        loaded = self._loaded(name, version)
        b = loaded.batching
        platform, backend = platform_of(loaded.record.format)
        return triton_model_config(
            name,
            loaded.signature,
            platform=platform,
            backend=backend,
            max_batch_size=b.max_batch_size if b.enabled else 0,
            preferred_batch_sizes=list(b.preferred_batch_sizes),
            max_queue_delay_us=b.max_queue_delay_us if b.enabled else 0,
            instances=b.instances,
            versions=[loaded.version],
        )

    def versions(self, name: str) -> list[LoadedVersion]:
        model = self.manager.models.get(name)
        if model is None:
            raise NotFound(f"model {name!r} is not served")
        return [model.versions[n] for n in sorted(model.versions)]

    # ---------------------------------------------------------------- inference

    async def infer(
        self,
        name: str,
        version: str | None,
        request: InferenceRequest,
        *,
        timeout_s: float | None = None,
        protocol: str = "rest",
        loaded: LoadedVersion | None = None,
        validated: bool = False,
    ) -> InferenceResponse:
        """Validate and run one request; errors are ModelportError subclasses.

        ``loaded`` is the version an adapter resolved just before (with no ``await``
        since), and ``validated`` says its request came from that version's compiled
        decoder, which validates as it decodes.
        """
        if loaded is None:
            loaded = self.manager.resolve(name, version)
        if loaded.run_inline:
            return self.infer_inline(name, loaded, request, protocol, validated)
        t0 = time.perf_counter_ns()
        if request.id is None:  # every answer carries an id, for feedback
            request.id = f"{self._id_prefix}{next(self._ids):x}"
        timing: Timing | None = None
        loaded.inflight += 1  # before any await: a version swap waits for this request
        self.inflight += 1
        try:
            if not validated:
                request = loaded.validate(request)  # once, before any model code
            timeout = (
                timeout_s
                or _timeout_parameter(request)
                or loaded.timeout_s
                or self.config.request_timeout_s
            )
            try:
                async with asyncio.timeout(timeout):
                    outputs, timing = await loaded.executor.submit(request.inputs)
            except TimeoutError as e:
                raise DeadlineExceeded(f"inference did not finish within {timeout:g}s") from e
            response = _response(name, loaded, request, outputs)
        except ModelportError as e:
            self._failed(name, loaded, request, e, t0, timing, protocol)
            raise
        finally:
            self.inflight -= 1
            loaded.inflight -= 1
        self._succeeded(loaded, request, outputs, t0, timing.queue_ns, timing.compute_ns, protocol)
        return response

    def infer_inline(
        self,
        name: str,
        loaded: LoadedVersion,
        request: InferenceRequest,
        protocol: str = "rest",
        validated: bool = False,
    ) -> InferenceResponse:
        """Run a request of an inline model (``loaded.run_inline``: microseconds of
        compute, no batching) now, on the calling thread.

        Nothing here awaits, so no version swap or shutdown can interleave: in-flight
        counting, the queue and the timeout have nothing to guard.
        """
        t0 = time.perf_counter_ns()
        if request.id is None:
            request.id = f"{self._id_prefix}{next(self._ids):x}"
        try:
            if not validated:
                request = loaded.validate(request)
            outputs, compute_ns = loaded.executor.run_inline(request.inputs)
            response = _response(name, loaded, request, outputs)
        except ModelportError as e:
            self._failed(name, loaded, request, e, t0, None, protocol)
            raise
        self._succeeded(loaded, request, outputs, t0, 0, compute_ns, protocol)
        return response

    def _succeeded(
        self,
        loaded: LoadedVersion,
        request: InferenceRequest,
        outputs: dict[str, np.ndarray],
        t0: int,
        queue_ns: int,
        compute_ns: int,
        protocol: str,
    ) -> None:
        total = time.perf_counter_ns() - t0
        rows = _rows(request.inputs)
        batched = loaded.batching.enabled
        loaded.stats.record_success(total, queue_ns, compute_ns, rows, batched)
        vm = loaded.monitor
        if vm is not None:
            vm.observe(
                loaded.counters[protocol],
                request.id,
                request.inputs,
                outputs,  # all of them, whatever the request asked to get back
                200,
                total,
                queue_ns,
                compute_ns,
                0 if batched else rows,  # batched executions are counted by the batcher
            )

    def _failed(
        self,
        name: str,
        loaded: LoadedVersion,
        request: InferenceRequest,
        e: ModelportError,
        t0: int,
        timing: Timing | None,
        protocol: str,
    ) -> None:
        loaded.stats.record_failure(time.perf_counter_ns() - t0)
        vm = loaded.monitor
        if vm is not None:
            vm.observe(
                loaded.counters[protocol],
                request.id,
                request.inputs,
                None,
                int(e.http_status),
                time.perf_counter_ns() - t0,
                timing.queue_ns if timing else None,
                timing.compute_ns if timing else None,
            )
            reason = _REJECTED.get(type(e))
            if reason is not None and self.monitor is not None:
                self.monitor.metrics.observe_rejected(name, reason)

    # ---------------------------------------------------------------- statistics

    def statistics(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        stats = []
        if name is None:
            for model in self.manager.models.values():
                for n in sorted(model.versions):
                    stats.append(model.versions[n].stats.to_dict(model.name, str(n)))
        elif version:
            loaded = self.manager.resolve(name, version)
            stats.append(loaded.stats.to_dict(name, str(loaded.version)))
        else:
            for loaded in self.versions(name):
                stats.append(loaded.stats.to_dict(name, str(loaded.version)))
        return {"model_stats": stats}

    # ---------------------------------------------------------------- repository

    def repository_index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        out = []
        for model in sorted(self.manager.models.values(), key=lambda m: m.name):
            if model.versions:
                for n in sorted(model.versions):
                    out.append(
                        {"name": model.name, "version": str(n), "state": "READY", "reason": ""}
                    )
            elif not ready_only:
                out.append(
                    {
                        "name": model.name,
                        "version": "",
                        "state": model.state.value,
                        "reason": model.reason,
                    }
                )
        return out

    async def load(self, name: str) -> None:
        """Load (or reload) a model by name: its configured reference, else its newest."""
        from modelport.core.types import validate_name

        validate_name(name)
        self._one_process("load")
        known = name in self.manager.models
        model = await self.manager.load(name, self.config.for_model(name))
        if model.current is None:
            if not known:  # nothing to keep for a model that never loaded
                self.manager.models.pop(name, None)
            raise InvalidArgument(f"failed to load model {name!r}: {model.reason}")

    async def unload(self, name: str) -> None:
        self._one_process("unload")
        await self.manager.unload(name)

    def _one_process(self, action: str) -> None:
        """Model control changes this process only: with ``--workers N`` a request
        reaches one of N processes, which would then serve different models."""
        if self.config.workers > 1:
            raise FailedPrecondition(
                f"cannot {action} models at run time on a server of {self.config.workers} "
                "processes (--workers): each request reaches one of them. Move an alias "
                "in the registry (every process follows it) or restart the server with "
                "the models to serve"
            )


def _timeout_parameter(request: InferenceRequest) -> float | None:
    """Triton's per-request ``timeout`` parameter, in microseconds."""
    value = request.parameters.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgument("parameter 'timeout' must be a positive integer (microseconds)")
    return value / 1e6


_REJECTED: dict[type[ModelportError], str] = {
    Unavailable: "queue_full",
    DeadlineExceeded: "deadline",
}


def _response(
    name: str, loaded: LoadedVersion, request: InferenceRequest, outputs: dict[str, np.ndarray]
) -> InferenceResponse:
    if request.outputs is not None:
        outputs = _select(outputs, [o.name for o in request.outputs])
    return InferenceResponse(name, loaded.version_str, outputs, request.id, {})


def _select(outputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    missing = [n for n in names if n not in outputs]
    if missing:
        raise InvalidArgument(f"unknown output(s) {missing}; the model gives {sorted(outputs)}")
    return {n: outputs[n] for n in names}


def _rows(inputs: dict[str, np.ndarray]) -> int:
    for v in inputs.values():
        return int(v.shape[0]) if v.ndim else 1
    return 0
