"""Serving commands: serve, predict, and model control of a running server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport.cli._app import JsonOpt, app, print_json
from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument

server_app = typer.Typer(
    help="Control a running server (load, unload, index).", no_args_is_help=True
)
app.add_typer(server_app, name="server")

UrlOpt = Annotated[str, typer.Option("--url", help="Server HTTP address.")]
DEFAULT_URL = "http://127.0.0.1:8000"


@app.command()
def serve(
    refs: Annotated[
        list[str] | None, typer.Argument(help="Models: NAME, NAME:VERSION or NAME@ALIAS.")
    ] = None,
    serve_all: Annotated[bool, typer.Option("--all", help="Serve every registered model.")] = False,
    package: Annotated[
        Path | None,
        typer.Option(
            "--package",
            help="Serve the models of a package (modelport package …) instead of the "
            "registry; digests are verified before loading.",
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="serve.yaml")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port (default 8000).")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port (default 8001).")] = None,
    no_grpc: Annotated[bool, typer.Option("--no-grpc", help="Serve HTTP only.")] = False,
    workers: Annotated[int | None, typer.Option(help="Server processes (share the ports).")] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Dynamic batching for every model (0: off).")
    ] = None,
    max_queue_delay_us: Annotated[int | None, typer.Option(help="Batching wait (µs).")] = None,
    drain_timeout: Annotated[
        float | None, typer.Option(help="Seconds in-flight requests get on shutdown.")
    ] = None,
    shutdown_delay: Annotated[
        float, typer.Option(help="Seconds to keep serving after readiness turns off.")
    ] = 0.0,
    auth: Annotated[
        bool, typer.Option("--auth", help="Require API keys/JWT (modelport auth create-key).")
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", help="Allow a non-loopback address without --auth."),
    ] = False,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    tls_client_ca: Annotated[
        Path | None, typer.Option(help="CA of client certificates (mutual TLS).")
    ] = None,
) -> None:
    """Serve registry versions over HTTP (KServe V2, TF Serving) and gRPC until stopped."""
    import logging

    from modelport.serving.config import ServeConfig
    from modelport.serving.server import serve_forever

    overrides: dict[str, Any] = {
        "host": host,
        "http_port": http_port,
        "workers": workers,
        "drain_timeout_s": drain_timeout,
        "models": list(refs or []),
        "serve_all": serve_all or None,
        "grpc_port": grpc_port,
    }
    defaults = {}
    if max_batch_size is not None:
        defaults["max_batch_size"] = max_batch_size
    if max_queue_delay_us is not None:
        defaults["max_queue_delay_us"] = max_queue_delay_us
    cfg = ServeConfig.load(config, overrides)
    if insecure:
        cfg = cfg.model_copy(update={"insecure": True})
    if no_grpc:
        cfg = cfg.model_copy(update={"grpc_port": None})
    if defaults:
        cfg = cfg.model_copy(
            update={
                "models": [m.model_copy(update=defaults) for m in cfg.models],
                "default_model": cfg.default_model.model_copy(update=defaults),
            }
        )
    source = None
    if package is not None:
        source = _package_source(package, Settings())
        if not cfg.models:
            cfg = cfg.model_copy(update={"serve_all": True})
    if not cfg.models and not cfg.serve_all:
        raise InvalidArgument("nothing to serve: name models (e.g. iris@production) or pass --all")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    scheme = "https" if tls_cert else "http"
    grpc = f", gRPC {cfg.host}:{cfg.grpc_port}" if cfg.grpc_port is not None else ""
    typer.echo(f"modelport serving on {scheme}://{cfg.host}:{cfg.http_port}{grpc}", err=True)
    settings = Settings()
    updates: dict[str, Any] = {"auth_enabled": True} if auth else {}
    for field, value in (
        ("tls_cert_file", tls_cert),
        ("tls_key_file", tls_key),
        ("tls_client_ca_file", tls_client_ca),
    ):
        if value is not None:
            updates[field] = value
    if updates:
        settings = settings.model_copy(update=updates)
    serve_forever(settings, cfg, shutdown_delay_s=shutdown_delay, source=source)


def _package_source(package: Path, settings: Settings) -> Any:
    """Extract (once, by content digest) and verify a package, or verify an extracted
    package directory in place; return a picklable source factory."""
    import functools
    import hashlib
    import shutil

    from modelport.core.errors import NotFound
    from modelport.deploy.package import open_package
    from modelport.deploy.package_source import package_source

    if package.is_dir():  # an extracted package (as in the Dockerfile): verified in place
        package_source(str(package))  # fail now, with a clear error, not in every worker
        typer.echo(f"serving the package in {package}", err=True)
        return functools.partial(package_source, str(package))
    if not package.is_file():
        raise NotFound(f"no such package: {package}")
    h = hashlib.sha256()
    with package.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    dest = settings.home / "packages" / h.hexdigest()[:32]
    if not dest.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        open_package(package, tmp)  # safe extraction + every digest verified
        tmp.rename(dest)
    typer.echo(f"serving package {package.name} ({h.hexdigest()[:12]}…)", err=True)
    return functools.partial(package_source, str(dest))


def _load_data(data: str) -> dict[str, Any] | Any:
    """--data: a .npy/.npz/.json file, or inline JSON."""
    import numpy as np

    path = Path(data)
    if path.suffix in (".npy", ".npz", ".json") and path.is_file():
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        return json.loads(path.read_text())
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise InvalidArgument(
            "--data must be a .npy/.npz/.json file or inline JSON (e.g. '[[1, 2, 3, 4]]')"
        ) from e


@app.command()
def predict(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    data: Annotated[str, typer.Option("--data", "-d", help="FILE (.npy/.npz/.json) or JSON.")],
    url: UrlOpt = DEFAULT_URL,
    as_json: JsonOpt = False,
) -> None:
    """Send one inference request to a running server and print the outputs."""
    from modelport.client import Client
    from modelport.core.types import ModelRef

    r = ModelRef.parse(ref)
    version = str(r.version) if r.version is not None else r.alias
    with Client(url) as client:
        outputs = client.infer(r.name, _load_data(data), version=version)
    result = {k: v.tolist() for k, v in outputs.items()}
    if as_json:
        print_json(result)
        return
    for name, value in result.items():
        typer.echo(f"{name}: {json.dumps(value)}")


@server_app.command("load")
def server_load(name: str, url: UrlOpt = DEFAULT_URL) -> None:
    """Load (or reload) a model on a running server."""
    from modelport.client import Client

    with Client(url) as client:
        client.load(name)
    typer.echo(f"loaded {name}")


@server_app.command("unload")
def server_unload(name: str, url: UrlOpt = DEFAULT_URL) -> None:
    """Unload a model from a running server (in-flight requests finish)."""
    from modelport.client import Client

    with Client(url) as client:
        client.unload(name)
    typer.echo(f"unloaded {name}")


@server_app.command("index")
def server_index(url: UrlOpt = DEFAULT_URL, as_json: JsonOpt = False) -> None:
    """List the models of a running server and their state."""
    from modelport.cli._app import table
    from modelport.client import Client

    with Client(url) as client:
        index = client.repository_index()
    if as_json:
        print_json(index)
        return
    table(
        None,
        ["name", "version", "state", "reason"],
        [[m["name"], m.get("version", ""), m["state"], m.get("reason", "")] for m in index],
    )
