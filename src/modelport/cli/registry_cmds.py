"""Registry commands: register, models …, alias …, registry …."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelport.cli._app import (
    JsonOpt,
    app,
    human_size,
    open_registry,
    parse_pairs,
    print_json,
    table,
)
from modelport.core.errors import InvalidArgument

if TYPE_CHECKING:
    from modelport.registry import ModelVersion

models_app = typer.Typer(
    help="List, inspect, export and delete registered models.", no_args_is_help=True
)
alias_app = typer.Typer(
    help="Point aliases (production, staging, …) at versions.", no_args_is_help=True
)
registry_app = typer.Typer(help="Check and clean the registry's storage.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(alias_app, name="alias")
app.add_typer(registry_app, name="registry")


def _show_version(v: ModelVersion) -> None:
    from rich.console import Console

    con = Console()
    con.print(f"[bold]{v.ref}[/bold]  {v.framework}/{v.format}  {human_size(v.size)}")
    if v.aliases:
        con.print("aliases:   " + ", ".join(f"@{a}" for a in v.aliases))
    if v.description:
        con.print(f"about:     {v.description}")
    con.print(f"created:   {v.created_at.isoformat()}")
    parent = f" from {v.lineage.parent}" if v.lineage.parent else ""
    con.print(f"lineage:   {v.lineage.operation}{parent}")
    if v.tags:
        con.print("tags:      " + ", ".join(f"{k}={val}" for k, val in v.tags.items()))
    if v.metrics:
        con.print("metrics:   " + ", ".join(f"{k}={val:g}" for k, val in v.metrics.items()))
    rows: list[list[Any]] = [
        ["input", t.name, t.datatype, list(t.shape)] for t in v.signature.inputs
    ]
    rows += [["output", t.name, t.datatype, list(t.shape)] for t in v.signature.outputs]
    table("signature", ["", "name", "datatype", "shape"], rows)
    table(
        "files",
        ["path", "sha256", "size"],
        [[f.path, f.digest[:16] + "…", human_size(f.size)] for f in v.files],
    )


# ---------------------------------------------------------------------------- register


@app.command()
def register(
    path: Annotated[Path, typer.Argument(help="Model file or directory.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name.")],
    description: Annotated[str, typer.Option(help="What this version is.")] = "",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="key=value, repeatable.")] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", help="name=number, repeatable.")
    ] = None,
    framework: Annotated[
        str | None,
        typer.Option(
            help="Read the file as this framework (sklearn, pytorch, …) or format "
            "(torchscript, torch-export, …) instead of detecting it."
        ),
    ] = None,
    sample_input: Annotated[
        Path | None,
        typer.Option(
            "--sample-input",
            help="Example input (.npy array, or .npz of named arrays) from which the "
            "signature of sklearn, PyTorch and booster models is derived; stored with "
            "the version.",
        ),
    ] = None,
    trust: Annotated[
        bool,
        typer.Option(
            "--trust",
            help="Allow files that run code when loaded (pickle/joblib, pickled torch "
            "modules, python models, skops types outside the policy); recorded in the "
            "version.",
        ),
    ] = False,
    encrypt: Annotated[
        bool,
        typer.Option(
            "--encrypt",
            help="Store the files AES-256-GCM encrypted under the master key "
            "(MODELPORT_MASTER_KEY_FILE); the server decrypts into memory only.",
        ),
    ] = False,
    task: Annotated[
        str | None,
        typer.Option(help="classification or regression (for live accuracy from feedback)."),
    ] = None,
    prediction_output: Annotated[
        str | None, typer.Option(help="The output that holds the prediction.")
    ] = None,
    feature_names: Annotated[
        str | None, typer.Option(help="Comma-separated names of the input's columns (drift).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a model file as the next version of NAME; prints its reference (NAME:N).

    The framework is detected from the content: ONNX, sklearn, PyTorch, LightGBM, XGBoost.

    Pickles (joblib, torch.save) and python models run code: they need --trust.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from modelport.core.types import validate_name

    validate_name(name)
    tags = parse_pairs(tag, "tag")
    metrics = parse_pairs(metric, "metric")
    reg = open_registry()
    fmt = reg.detect(path, framework)
    if not as_json:
        typer.echo(f"detected {fmt.framework} model ({fmt.name}) in {path.name}", err=True)
        if trust:
            typer.echo("--trust: this model may run its own code when loaded", err=True)
    total = sum(
        p.stat().st_size for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()
    )
    show = total >= 16 << 20 and sys.stderr.isatty()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        disable=not show,
        transient=True,
    ) as bar:
        upload = bar.add_task("uploading", total=total)
        version = reg.register(
            path,
            name,
            framework=fmt.name,
            sample_input=sample_input,
            trust=trust,
            description=description,
            tags=tags,
            metrics=metrics,  # type: ignore[arg-type]  # validated to floats by the registry
            progress=lambda n: bar.advance(upload, n),
            encrypt=encrypt,
            extra=monitoring_extra(task, prediction_output, feature_names),
        )
    if as_json:
        print_json(version.to_dict())
    else:
        typer.echo(version.ref)


def monitoring_extra(
    task: str | None, prediction_output: str | None, feature_names: str | None
) -> dict[str, Any]:
    """Version metadata the monitoring reads (task, prediction output, feature names)."""
    extra: dict[str, Any] = {}
    if task is not None:
        if task not in ("classification", "regression"):
            raise InvalidArgument("--task must be classification or regression")
        extra["task"] = task
    if prediction_output is not None:
        extra["prediction_output"] = prediction_output
    if feature_names is not None:
        extra["feature_names"] = [n.strip() for n in feature_names.split(",") if n.strip()]
    return extra


# ---------------------------------------------------------------------------- models


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """List every model with its latest version and aliases."""
    models = open_registry().list()
    if as_json:
        print_json([m.to_dict() for m in models])
        return
    table(
        None,
        ["name", "latest", "versions", "aliases", "created"],
        [
            [
                m.name,
                m.latest_version,
                m.version_count,
                ", ".join(f"{a}→{v}" for a, v in m.aliases.items()),
                m.created_at.strftime("%Y-%m-%d %H:%M"),
            ]
            for m in models
        ],
    )


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one version: signature, files, lineage, tags and metrics."""
    v = open_registry().get(ref)
    if as_json:
        print_json(v.to_dict())
    else:
        _show_version(v)


@models_app.command("versions")
def models_versions(name: str, as_json: JsonOpt = False) -> None:
    """List the versions of a model."""
    versions = open_registry().versions(name)
    if as_json:
        print_json([v.to_dict() for v in versions])
        return
    table(
        name,
        ["version", "framework", "format", "size", "aliases", "lineage", "created"],
        [
            [
                v.version,
                v.framework,
                v.format,
                human_size(v.size),
                ", ".join(v.aliases),
                v.lineage.operation + (f" ← {v.lineage.parent}" if v.lineage.parent else ""),
                v.created_at.strftime("%Y-%m-%d %H:%M"),
            ]
            for v in versions
        ],
    )


@models_app.command("delete")
def models_delete(
    ref: Annotated[str, typer.Argument(help="NAME:VERSION, or NAME with --all.")],
    all_versions: Annotated[bool, typer.Option("--all", help="Delete the whole model.")] = False,
    force: Annotated[bool, typer.Option(help="Also delete aliased versions.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a version (or a whole model) and the blobs nothing else uses."""
    deleted = open_registry().delete(ref, all_versions=all_versions, force=force)
    if as_json:
        print_json({"deleted": deleted})
    else:
        typer.echo("deleted " + ", ".join(deleted))


@models_app.command("export")
def models_export(
    ref: str,
    out: Annotated[Path, typer.Option("--out", "-o", help="New or empty directory.")],
) -> None:
    """Write a version's files and its manifest (modelport.json) into a directory."""
    target = open_registry().export(ref, out)
    typer.echo(str(target))


# ---------------------------------------------------------------------------- aliases


@alias_app.command("set")
def alias_set(
    name: str,
    alias: str,
    version: int,
    expect: Annotated[
        int | None,
        typer.Option(help="Only move if the alias now points at this version (0: unset)."),
    ] = None,
) -> None:
    """Point NAME@ALIAS at VERSION (atomically; the move is kept in the history)."""
    info = open_registry().set_alias(name, alias, version, expect=expect)
    typer.echo(f"{info.model}@{info.alias} → {info.version}")


@alias_app.command("list")
def alias_list(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    history: Annotated[bool, typer.Option(help="Show every move instead (needs NAME).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List aliases, or with --history every move of NAME's aliases."""
    reg = open_registry()
    if history:
        if name is None:
            raise InvalidArgument("--history needs a model NAME")
        events = reg.alias_history(name)
        if as_json:
            print_json([e.to_dict() for e in events])
            return
        table(
            f"{name} alias history",
            ["at", "alias", "from", "to"],
            [
                [e.at.strftime("%Y-%m-%d %H:%M:%S"), e.alias, e.from_version, e.to_version]
                for e in events
            ],
        )
        return
    aliases = reg.aliases(name)
    if as_json:
        print_json([a.to_dict() for a in aliases])
        return
    table(
        None,
        ["model", "alias", "version", "updated"],
        [
            [a.model, a.alias, a.version, a.updated_at.strftime("%Y-%m-%d %H:%M:%S")]
            for a in aliases
        ],
    )


@alias_app.command("delete")
def alias_delete(name: str, alias: str) -> None:
    """Remove NAME@ALIAS."""
    open_registry().delete_alias(name, alias)
    typer.echo(f"deleted {name}@{alias}")


# ---------------------------------------------------------------------------- registry


@registry_app.command("check")
def registry_check(
    quick: Annotated[bool, typer.Option(help="Skip re-hashing blob contents.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify every version against its manifest and blobs (exit 11 on problems)."""
    from modelport.core.errors import IntegrityError

    report = open_registry().check(verify_content=not quick)
    if as_json:
        print_json(report.to_dict())
    else:
        typer.echo(
            f"checked {report.versions_checked} versions, {report.blobs_checked} blobs: "
            + ("ok" if report.ok else f"{len(report.problems)} problem(s)")
        )
        for p in report.problems:
            typer.echo(f"  ✗ {p}")
        if report.unreferenced_blobs:
            typer.echo(
                f"  {len(report.unreferenced_blobs)} unreferenced blob(s), "
                f"{human_size(report.unreferenced_bytes)} (reclaim with: modelport registry gc)"
            )
    if not report.ok:
        raise IntegrityError(f"registry check found {len(report.problems)} problem(s)")


@registry_app.command("gc")
def registry_gc(
    grace: Annotated[
        float | None,
        typer.Option(help="Keep unreferenced blobs younger than this many seconds."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove blobs no version uses and leftovers of interrupted uploads."""
    report = open_registry().gc(grace)
    if as_json:
        print_json(report.to_dict())
    else:
        typer.echo(
            f"removed {report.blobs_removed} blob(s) ({human_size(report.bytes_freed)}), "
            f"{report.temp_files_removed} temp file(s)"
        )
