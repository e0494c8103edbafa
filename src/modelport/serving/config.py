"""What to serve and how: the ``serve.yaml`` file and command-line options, validated.

Example ``serve.yaml``::

    host: 127.0.0.1
    http_port: 8000
    grpc_port: 8001
    models:
      - ref: cancer@production        # follows the alias: a move is picked up live
        max_batch_size: 32
        max_queue_delay_us: 2000
      - ref: digits:3                 # pinned version
        instances: 2
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelport.core.errors import InvalidArgument
from modelport.core.types import ModelRef
from modelport.monitoring.config import MonitoringConfig
from modelport.serving.batcher import BatchingConfig


class ModelConfig(BaseModel):
    """One served model: a registry reference plus its batching and queueing."""

    model_config = ConfigDict(extra="forbid")

    ref: str
    max_batch_size: int = Field(default=0, ge=0, le=65536)
    max_queue_delay_us: int = Field(default=500, ge=0, le=10_000_000)
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    max_queue_size: int = Field(default=256, ge=1)
    instances: int = Field(default=0, ge=0, le=64)  # concurrent runs; 0 = one per pool thread
    execution: str = Field(default="auto", pattern="^(auto|inline|thread)$")
    timeout_s: float | None = Field(default=None, gt=0)

    def parsed_ref(self) -> ModelRef:
        return ModelRef.parse(self.ref)

    def batching(self) -> BatchingConfig:
        return BatchingConfig(
            max_batch_size=self.max_batch_size,
            max_queue_delay_us=self.max_queue_delay_us,
            preferred_batch_sizes=tuple(self.preferred_batch_sizes),
            max_queue_size=self.max_queue_size,
            instances=self.instances,
            execution=self.execution,
        )


class ServeConfig(BaseModel):
    """The whole server: listeners, limits and models."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    grpc_port: int | None = Field(default=8001, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    models: list[ModelConfig] = Field(default_factory=list)
    serve_all: bool = False
    max_body_bytes: int = Field(default=64 << 20, ge=1024)
    request_timeout_s: float = Field(default=60.0, gt=0)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    poll_interval_s: float = Field(default=2.0, gt=0)
    threads: int = Field(default=0, ge=0, le=256)  # inference pool size; 0 = cores
    insecure: bool = False  # allow a non-loopback listener without authentication
    default_model: ModelConfig = Field(default_factory=lambda: ModelConfig(ref="default"))
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)

    @classmethod
    def load(cls, path: Path | None, overrides: dict[str, Any]) -> ServeConfig:
        """Read ``serve.yaml`` (if given) and apply command-line overrides on top."""
        data: dict[str, Any] = {}
        if path is not None:
            import yaml

            try:
                loaded = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError) as e:
                raise InvalidArgument(f"cannot read serve config {path}: {e}") from e
            if not isinstance(loaded, dict):
                raise InvalidArgument(f"{path}: expected a mapping at the top level")
            data = loaded
        extra_models = overrides.pop("models", [])
        data.update({k: v for k, v in overrides.items() if v is not None})
        if extra_models:
            given = [
                m.model_dump()
                if isinstance(m, ModelConfig)
                else m
                if isinstance(m, dict)
                else {"ref": str(m)}
                for m in extra_models
            ]
            known = {m.get("ref") for m in data.get("models", []) if isinstance(m, dict)}
            data["models"] = list(data.get("models", [])) + [
                m for m in given if m["ref"] not in known
            ]
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidArgument(f"serve config: {where}: {first['msg']}") from e

    def for_model(self, name: str) -> ModelConfig:
        """The configuration of model ``name`` (a configured entry, else the defaults)."""
        for m in self.models:
            if m.parsed_ref().name == name:
                return m
        return self.default_model.model_copy(update={"ref": name})
