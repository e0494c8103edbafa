"""Security commands: auth … (API keys), keys … (signing keys), audit … (the audit log)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelport.cli._app import JsonOpt, app, print_json, table
from modelport.core.config import Settings
from modelport.core.errors import IntegrityError

if TYPE_CHECKING:
    from modelport.security.audit import AuditLog

auth_app = typer.Typer(
    help="API keys for the server: create (shown once), list, revoke.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Ed25519 signing keys for model versions, and master keys for encryption.",
    no_args_is_help=True,
)
audit_app = typer.Typer(help="Show and verify the hash-chained audit log.", no_args_is_help=True)
app.add_typer(auth_app, name="auth")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _audit(settings: Settings) -> AuditLog:
    from modelport.security.audit import AuditLog

    return AuditLog.from_settings(settings)


# ---------------------------------------------------------------------------- auth


@auth_app.command("create-key")
def create_key(
    role: Annotated[
        str, typer.Option("--role", "-r", help="admin, deployer, predictor or viewer.")
    ],
    models: Annotated[
        list[str] | None,
        typer.Option("--models", "-m", help="Limit the key to model names matching this glob."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime, e.g. 30d, 12h, 2w (default: none).")
    ] = None,
    description: Annotated[str, typer.Option(help="What the key is for.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create an API key and print it once: only its hash is kept."""
    from modelport.security.keys import KeyStore, parse_duration

    settings = Settings()
    lifetime = parse_duration(expires) if expires else None
    record, key = KeyStore.from_settings(settings).create(
        role, models=models, expires_in=lifetime, description=description
    )
    _audit(settings).append(
        _actor(),
        "key.create",
        f"key:{record.id}",
        details={"role": record.role.value, "models": models, "expires_at": record.expires_at},
    )
    if as_json:
        print_json({"key": key, **record.to_dict()})
        return
    typer.echo(key)
    scope = ", ".join(models) if models else "all models"
    until = record.expires_at.isoformat() if record.expires_at else "never"
    typer.echo(
        f"created key {record.id}: role {record.role.value}, {scope}, expires {until}.\n"
        "Store it now: it cannot be shown again. Send it as 'Authorization: Bearer <key>'.",
        err=True,
    )


@auth_app.command("list-keys")
def list_keys(as_json: JsonOpt = False) -> None:
    """List API keys (ids, roles, scopes, status; never the keys)."""
    from modelport.security.keys import KeyStore

    keys = [k.to_dict() for k in KeyStore.from_settings(Settings()).list()]
    if as_json:
        print_json(keys)
        return
    rows = [
        [
            k["id"],
            k["role"],
            ", ".join(k["models"]) if k["models"] else "*",
            k["status"],
            (k["expires_at"] or "never")[:10],
            k["description"],
        ]
        for k in keys
    ]
    table("API keys", ["id", "role", "models", "status", "expires", "about"], rows)


@auth_app.command("revoke-key")
def revoke_key(key_id: Annotated[str, typer.Argument(help="Key id (see list-keys).")]) -> None:
    """Revoke an API key; running servers refuse it from their next request."""
    from modelport.security.keys import KeyStore

    settings = Settings()
    record = KeyStore.from_settings(settings).revoke(key_id)
    _audit(settings).append(_actor(), "key.revoke", f"key:{record.id}")
    typer.echo(f"revoked key {record.id}")


# ---------------------------------------------------------------------------- keys


@keys_app.command("create")
def create_signing_key(
    name: Annotated[str, typer.Argument(help="Name of the new key, e.g. release.")],
    as_json: JsonOpt = False,
) -> None:
    """Create an Ed25519 signing key pair under MODELPORT_HOME/keys."""
    from modelport.security.signing import Keyring

    settings = Settings()
    ring = Keyring.from_settings(settings)
    key = ring.create(name)
    _audit(settings).append(_actor(), "signing-key.create", f"signing-key:{key.key_id}")
    pub = ring.directory / f"{name}.pub"
    if as_json:
        print_json({"name": name, "key_id": key.key_id, "public_key_file": str(pub)})
        return
    typer.echo(f"created signing key {name} (id {key.key_id})")
    typer.echo(f"public key: {pub} (give this file to verifiers: trusted_public_keys)", err=True)


@keys_app.command("list")
def list_signing_keys(as_json: JsonOpt = False) -> None:
    """List signing keys and the public keys trusted for verification."""
    from modelport.security.signing import Keyring, TrustStore

    settings = Settings()
    own = [k.to_dict() for k in Keyring.from_settings(settings).list()]
    trusted = sorted(TrustStore.from_settings(settings).keys)
    if as_json:
        print_json({"signing_keys": own, "trusted_key_ids": trusted})
        return
    table(
        "signing keys",
        ["name", "key id", "public key", "created"],
        [[k["name"], k["key_id"], k["public_key_file"], k["created_at"][:19]] for k in own],
    )
    typer.echo(f"trusted key ids: {', '.join(trusted) or 'none'}")


@keys_app.command("sign")
def sign_version(
    path: Annotated[Path, typer.Argument(help="Exported version directory (models export).")],
    key: Annotated[str, typer.Option("--key", "-k", help="Signing key name.")],
) -> None:
    """Check an exported version's files and write its signature (modelport.sig)."""
    from modelport.security.signing import Keyring
    from modelport.security.verify import sign_directory

    settings = Settings()
    sig = sign_directory(path, Keyring.from_settings(settings).load(key))
    _audit(settings).append(
        _actor(), "version.sign", f"{sig.name}:{sig.version}", details={"key_id": sig.key_id}
    )
    typer.echo(f"signed {sig.name}:{sig.version} with key {sig.key_id}")


@keys_app.command("verify")
def verify_version(
    path: Annotated[Path, typer.Argument(help="Exported version directory.")],
    require: Annotated[
        bool, typer.Option("--require/--allow-unsigned", help="Fail when unsigned.")
    ] = True,
) -> None:
    """Verify an exported version: signature by a trusted key, then every file."""
    from modelport.security.signing import TrustStore
    from modelport.security.verify import verify_directory

    trust = TrustStore.from_settings(Settings())
    trust.require = require or trust.require
    sig = verify_directory(path, trust)
    if sig is None:
        typer.echo("files match the manifest; the version is not signed")
    else:
        typer.echo(f"verified {sig.name}:{sig.version}: signed by key {sig.key_id}")


@keys_app.command("create-master-key")
def create_master_key(
    path: Annotated[Path, typer.Argument(help="New key file (mode 0600; never overwritten).")],
) -> None:
    """Create a master key file for encryption at rest (set MODELPORT_MASTER_KEY_FILE)."""
    from modelport.security.encryption import write_master_key_file

    try:
        key_id = write_master_key_file(path)
    except FileExistsError:
        from modelport.core.errors import AlreadyExists

        raise AlreadyExists(f"{path} already exists") from None
    _audit(Settings()).append(_actor(), "master-key.create", key_id)
    typer.echo(f"created master key {key_id} in {path}")


# ---------------------------------------------------------------------------- audit


@audit_app.command("show")
def show_audit(
    limit: Annotated[int, typer.Option("--limit", "-n", help="Newest entries to show.")] = 50,
    action: Annotated[str | None, typer.Option(help="Only entries with this action.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the newest audit entries."""
    log = _audit(Settings())
    events = [e for e in log.events() if action is None or e.action == action][-limit:]
    if as_json:
        print_json([e.to_dict() for e in events])
        return
    rows: list[list[Any]] = [
        [e.seq, e.ts[:19], e.actor, e.action, e.target, e.outcome] for e in events
    ]
    table("audit log", ["seq", "time (UTC)", "actor", "action", "target", "outcome"], rows)


@audit_app.command("verify")
def verify_audit(
    expect_head: Annotated[
        str | None, typer.Option(help="A head hash recorded earlier, which must still be there.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify the hash chain: any edited, removed or reordered entry fails."""
    report = _audit(Settings()).verify(expect_head)
    if as_json:
        print_json(report.to_dict())
    elif report.ok:
        typer.echo(f"audit log intact: {report.entries} entries, head {report.head}")
    else:
        for p in report.problems:
            typer.echo(p, err=True)
    if not report.ok:
        raise IntegrityError(f"audit log verification failed: {len(report.problems)} problem(s)")
