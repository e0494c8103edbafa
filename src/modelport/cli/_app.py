"""The Typer application and the helpers every command module shares.

Command modules (one per area: registry, convert, serve, …) add their commands to
``app`` and are imported by ``modelport.cli``. Commands parse, delegate to the Python
API and print; they hold no logic.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument

if TYPE_CHECKING:
    from modelport.registry import Registry

app = typer.Typer(
    name="modelport",
    help="Register, convert, optimize, serve and monitor ML models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def open_registry() -> Registry:
    from modelport.registry import Registry

    return Registry.from_settings(Settings())


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    Console().print(table)


def parse_pairs(pairs: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{what} {p!r} must look like key=value")
        out[key] = value
    return out


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
