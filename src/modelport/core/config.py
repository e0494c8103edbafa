"""Typed settings, read once from the environment (``MODELPORT_*``) at the entry point.

Nothing else in modelport reads ``os.environ``: the CLI or the server builds one
:class:`Settings` and passes it down.

Example:
    >>> s = Settings(home="/tmp/mp")
    >>> s.resolved_registry_url()
    'sqlite:////tmp/mp/registry.db'
    >>> s.resolved_store_url()
    'file:///tmp/mp/artifacts'
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of modelport, with its ``MODELPORT_`` environment variable."""

    model_config = SettingsConfigDict(env_prefix="MODELPORT_", extra="ignore")

    home: Path = Field(
        default=Path("~/.modelport"),
        description="Directory of the embedded registry (SQLite file, artifacts, caches, logs).",
    )
    registry_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata database; default: SQLite under home. "
        "Use postgresql+psycopg://user@host/db for PostgreSQL.",
    )
    store_url: str | None = Field(
        default=None,
        description="Artifact store: a local directory (file://…, default under home) "
        "or S3-compatible storage (s3://bucket/prefix).",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible server (MinIO, moto, …); default: AWS.",
    )
    s3_region: str | None = Field(default=None, description="Region for the S3 client.")
    gc_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="Unreferenced blobs younger than this are kept by garbage collection, "
        "so an upload still in flight is never collected.",
    )

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, v: Path) -> Path:
        return v.expanduser()

    def resolved_registry_url(self) -> str:
        """The metadata database URL, defaulting to ``sqlite:///<home>/registry.db``."""
        return self.registry_url or f"sqlite:///{self.home / 'registry.db'}"

    def resolved_store_url(self) -> str:
        """The artifact store URL, defaulting to ``file://<home>/artifacts``."""
        return self.store_url or f"file://{self.home / 'artifacts'}"

    @property
    def cache_dir(self) -> Path:
        """Where registered versions are materialised for loading."""
        return self.home / "cache"
