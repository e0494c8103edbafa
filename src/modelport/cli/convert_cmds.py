"""Conversion and import commands: ``convert``, ``import mlflow``, ``import triton``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelport.cli._app import JsonOpt, app, open_registry, parse_pairs, print_json

import_app = typer.Typer(
    help="Import models from MLflow model directories and Triton model repositories.",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")


@app.command()
def convert(
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS to convert.")],
    to: Annotated[str, typer.Option("--to", help="Target format: onnx or torchscript.")] = "onnx",
    opset: Annotated[
        int | None, typer.Option(help="ONNX opset (default: 17 sklearn, 15 boosters, 18 torch).")
    ] = None,
    validation_data: Annotated[
        Path | None,
        typer.Option(
            "--validation-data",
            help="Inputs (.npz of named arrays, or .npy) to check parity on, besides the "
            "stored sample.",
        ),
    ] = None,
    tolerance: Annotated[
        list[str] | None,
        typer.Option(
            "--tolerance",
            help="atol=…, rtol=… (float outputs) or labels=… (agreement 0-1); repeatable.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Register even if the parity check fails (recorded)."),
    ] = False,
    description: Annotated[str | None, typer.Option(help="Description of the new version.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Convert a version to ONNX (or TorchScript), check parity, register the result.

    The result is the next version of the same model; its lineage holds the parity figures.

    A failed parity check registers nothing (exit 5) unless --force.
    """
    from modelport.convert import ParityFailed, Tolerance
    from modelport.convert import convert as run_convert

    tol = Tolerance.parse(parse_pairs(tolerance, "tolerance"))
    say = (lambda _m: None) if as_json else (lambda m: typer.echo(m, err=True))
    try:
        result = run_convert(
            open_registry(),
            ref,
            to=to,
            opset=opset,
            validation_data=validation_data,
            tolerance=tol,
            force=force,
            description=description,
            progress=say,
        )
    except ParityFailed as e:
        if as_json:
            print_json({"registered": False, "parity": e.report.to_dict()})
        raise
    if as_json:
        print_json({"registered": True, **result.to_dict()})
        return
    typer.echo(result.parity.summary(), err=True)
    if not result.parity.passed:
        typer.echo("parity FAILED; registered anyway (--force), tagged parity=failed", err=True)
    typer.echo(result.version.ref)


@import_app.command("mlflow")
def import_mlflow(
    path: Annotated[Path, typer.Argument(help="MLflow model directory (holding MLmodel).")],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name.")],
    sample_input: Annotated[
        Path | None,
        typer.Option("--sample-input", help="Example input (.npy/.npz) for the signature."),
    ] = None,
    trust: Annotated[
        bool,
        typer.Option("--trust", help="Allow pickled flavors (sklearn, pytorch): they run code."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Register the model of an MLflow model directory (onnx, sklearn or pytorch flavor)."""
    from modelport.registry.importers import import_mlflow as run_import

    version = run_import(open_registry(), path, name=name, sample_input=sample_input, trust=trust)
    if as_json:
        print_json(version.to_dict())
    else:
        typer.echo(version.ref)


@import_app.command("triton")
def import_triton(
    repository: Annotated[Path, typer.Argument(help="Triton model repository directory.")],
    model: Annotated[str | None, typer.Option(help="Only this model of the repository.")] = None,
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Registry name (default: model name).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register every version of a Triton repository's models (config.pbtxt honoured)."""
    from modelport.registry.importers import import_triton as run_import

    versions = run_import(open_registry(), repository, model=model, name=name)
    if as_json:
        print_json([v.to_dict() for v in versions])
    else:
        for v in versions:
            typer.echo(v.ref)
