"""The ``modelport`` command line.

Every command builds :class:`~modelport.core.config.Settings` from the environment,
calls the Python API and prints a table (or JSON with ``--json``). Errors print one
line to stderr and exit with the error class's code (see ``core/errors.py``): that
mapping lives in :func:`main`, the only place that catches errors. Heavy modules
(registry, onnx, onnxruntime) are imported inside the commands, so ``modelport
--help`` stays fast.
"""

from __future__ import annotations

import click
import typer

import modelport.cli.deploy_cmds  # (registers its commands)
import modelport.cli.monitor_cmds  # noqa: F401  (registers its commands)
from modelport.cli import (
    convert_cmds,  # noqa: F401  (registers its commands)
    optimize_cmds,  # noqa: F401
    registry_cmds,  # noqa: F401  (registers its commands)
    security_cmds,  # noqa: F401
    serve_cmds,  # noqa: F401
)
from modelport.cli._app import app
from modelport.core.errors import ModelportError


@app.command()
def version() -> None:
    """Print modelport's version."""
    from modelport import __version__

    typer.echo(__version__)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and map errors to exit codes (see core/errors.py)."""
    try:
        result = app(args=argv, prog_name="modelport", standalone_mode=False)
    except ModelportError as e:
        typer.echo(f"error: {e}", err=True)
        return e.exit_code
    except click.exceptions.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        return 130
    return result if isinstance(result, int) else 0
