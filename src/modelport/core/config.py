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

from pydantic import Field, SecretStr, field_validator
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

    # ------------------------------------------------------------------ security
    auth_enabled: bool = Field(
        default=False,
        description="Require credentials (API key or JWT) on every route except health. "
        "Serving on an address other than 127.0.0.1 requires it unless --insecure.",
    )
    jwks_file: Path | None = Field(
        default=None,
        description="JSON Web Key Set (file) whose keys verify JWT bearer tokens; "
        "unset: only API keys are accepted.",
    )
    jwt_role_claim: str = Field(
        default="roles", description="JWT claim holding the role name or list of roles."
    )
    jwt_audience: str | None = Field(
        default=None, description="Required JWT 'aud' claim; unset: tokens must carry none."
    )
    jwt_issuer: str | None = Field(default=None, description="Required JWT 'iss' claim.")
    require_signatures: bool = Field(
        default=False,
        description="Refuse to load a model version without a valid signature by a trusted key.",
    )
    trusted_public_keys: list[Path] = Field(
        default_factory=list,
        description="Ed25519 public key files (PEM) whose signatures are trusted, besides "
        "the signing keys kept under home/keys.",
    )
    signing_key: str | None = Field(
        default=None,
        description="Name of the signing key (under home/keys) that signs new versions.",
    )
    master_key_file: Path | None = Field(
        default=None,
        description="File holding the 32-byte master key (base64) that wraps the data keys "
        "of encrypted artifacts.",
    )
    master_key: SecretStr | None = Field(
        default=None,
        description="The master key itself (base64 of 32 bytes), e.g. from a secret store; "
        "takes precedence over master_key_file.",
    )
    fetch_allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts the server may fetch models from (exact names or '*.example.com'); "
        "empty: no server-side fetch at all.",
    )
    fetch_allow_http: bool = Field(
        default=False, description="Also allow plain http:// for server-side fetches."
    )
    fetch_allow_networks: list[str] = Field(
        default_factory=list,
        description="Private networks (CIDR) an operator explicitly opens for fetches, "
        "e.g. an internal object store; loopback and private ranges are refused otherwise.",
    )
    tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate (chain) the server presents on HTTP and gRPC; "
        "with tls_key_file, both listeners speak TLS only.",
    )
    tls_key_file: Path | None = Field(default=None, description="PEM private key of the cert.")
    tls_client_ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle: when set, clients must present a certificate it signed "
        "(mutual TLS).",
    )

    @property
    def auth_dir(self) -> Path:
        """Where API key hashes live (``keys.json``)."""
        return self.home / "auth"

    @property
    def signing_keys_dir(self) -> Path:
        """Where Ed25519 signing keys live."""
        return self.home / "keys"

    @property
    def audit_log(self) -> Path:
        """The append-only, hash-chained audit log."""
        return self.home / "audit" / "audit.log"
