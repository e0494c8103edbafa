"""Registry hooks built from settings: signing, the audit trail, the master key."""

from __future__ import annotations

from typing import Any

from modelport.core.config import Settings
from modelport.registry.registration import Auditor, Signer


def signer_from_settings(settings: Settings) -> Signer | None:
    """Signs new versions with ``settings.signing_key`` (under home/keys), if set."""
    if not settings.signing_key:
        return None
    from modelport.security.signing import Keyring

    key = Keyring.from_settings(settings).load(settings.signing_key)
    return lambda manifest: key.sign(manifest).to_dict()


def auditor_from_settings(settings: Settings) -> Auditor:
    """Appends registry events to the hash-chained audit log under home."""
    import getpass

    from modelport.security.audit import AuditLog

    log = AuditLog.from_settings(settings)
    try:
        actor = f"local:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name (some containers)
        actor = "local:unknown"

    def record(action: str, target: str, details: dict[str, Any]) -> None:
        log.append(actor, action, target, "ok", details)

    return record


def key_provider_from_settings(settings: Settings) -> Any:
    """The master-key provider for encrypted registration, or None when none is set."""
    if settings.master_key is None and settings.master_key_file is None:
        return None
    from modelport.security.encryption import key_provider_from_settings as provider

    return provider(settings)
