"""Safe listener defaults: who may reach the server, and over what.

- A server listens on 127.0.0.1 unless told otherwise. Listening on any other address
  without authentication is refused (:func:`check_exposure`) unless the operator says
  ``--insecure`` explicitly — the TorchServe and Ray incidents were exactly
  management APIs on 0.0.0.0 without credentials.
- TLS for both listeners comes from certificate and key files (:class:`TlsFiles`);
  with a client CA the server requires client certificates (mutual TLS). The files
  are checked when the server starts, so a typo fails the start, not the first client.

Example:
    >>> check_exposure("127.0.0.1", auth_enabled=False, insecure=False)
    >>> check_exposure("0.0.0.0", auth_enabled=False, insecure=False)
    Traceback (most recent call last):
    ...
    modelport.core.errors.FailedPrecondition: refusing to serve on 0.0.0.0 without ...
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.core.config import Settings
from modelport.core.errors import FailedPrecondition, InvalidArgument

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether a bind address is reachable from this machine only.

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
        (True, True, False)
    """
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bind_host: str) -> tuple[str, ...] | None:
    """The ``Host`` names to accept: loopback names for a loopback listener, else any."""
    return LOOPBACK_NAMES if is_loopback(bind_host) else None


def check_exposure(host: str, *, auth_enabled: bool, insecure: bool) -> None:
    """Refuse a non-loopback listener without authentication, unless ``insecure``."""
    if is_loopback(host) or auth_enabled or insecure:
        return
    raise FailedPrecondition(
        f"refusing to serve on {host} without authentication: anyone who can reach it "
        "could load, unload and query models. Turn authentication on (--auth, "
        "MODELPORT_AUTH_ENABLED=true, then 'modelport auth create-key') or pass "
        "--insecure if a trusted network guards this server"
    )


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Certificate, key and optional client CA for the server's listeners."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TlsFiles | None:
        """The TLS files the settings name, or ``None`` for plain listeners."""
        cert, key = settings.tls_cert_file, settings.tls_key_file
        if cert is None and key is None:
            if settings.tls_client_ca_file is not None:
                raise InvalidArgument("tls_client_ca_file needs tls_cert_file and tls_key_file")
            return None
        if cert is None or key is None:
            raise InvalidArgument("TLS needs both tls_cert_file and tls_key_file")
        files = cls(
            cert.expanduser(),
            key.expanduser(),
            settings.tls_client_ca_file.expanduser() if settings.tls_client_ca_file else None,
        )
        files.server_context()  # fail at start-up on a bad file or a cert/key mismatch
        return files

    def server_context(self) -> ssl.SSLContext:
        """An ``ssl`` server context (TLS 1.2+, client certificates when a CA is set)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cert, self.key)
            if self.client_ca is not None:
                ctx.load_verify_locations(cafile=self.client_ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as e:
            raise InvalidArgument(f"cannot use the TLS files: {e}") from e
        return ctx

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments for ``uvicorn.Config`` (HTTPS, and mTLS with a client CA)."""
        opts: dict[str, Any] = {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}
        if self.client_ca is not None:
            opts["ssl_ca_certs"] = str(self.client_ca)
            opts["ssl_cert_reqs"] = int(ssl.CERT_REQUIRED)
        return opts

    def grpc_credentials(self) -> Any:
        """``grpc.ssl_server_credentials`` for ``server.add_secure_port``."""
        import grpc

        pair = [(self.key.read_bytes(), self.cert.read_bytes())]
        if self.client_ca is None:
            return grpc.ssl_server_credentials(pair)
        return grpc.ssl_server_credentials(
            pair, root_certificates=self.client_ca.read_bytes(), require_client_auth=True
        )
