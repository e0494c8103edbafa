"""Security: who may call what, signed and encrypted models, the audit trail, safe inputs.

- :mod:`.policy` — roles, permissions and THE table between them; ``authorize``.
- :mod:`.keys` — API keys (shown once, stored as SHA-256); :mod:`.tokens` — JWTs (JWKS).
- :mod:`.auth` — one ``Authorization`` value in, one principal out, for REST and gRPC.
- :mod:`.signing` / :mod:`.verify` — Ed25519 signatures over version manifests.
- :mod:`.encryption` — AES-256-GCM envelope encryption with a pluggable key provider.
- :mod:`.audit` — the append-only, hash-chained audit log.
- :mod:`.archive` — safe tar extraction; :mod:`.urls` — SSRF-safe server-side fetches.

Only the policy vocabulary is imported here; the other modules load ``cryptography``
or ``jwt`` lazily and are imported by name.

Example:
    >>> from modelport.security import Permission, Role, authorize
    >>> Role.VIEWER in POLICY[Permission.METRICS]
    True
"""

from __future__ import annotations

from modelport.security.policy import (
    LOCAL_PRINCIPAL,
    POLICY,
    PUBLIC,
    Permission,
    Principal,
    Role,
    authorize,
)

__all__ = [
    "LOCAL_PRINCIPAL",
    "POLICY",
    "PUBLIC",
    "Permission",
    "Principal",
    "Role",
    "authorize",
]
