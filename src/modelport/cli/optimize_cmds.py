"""``modelport optimize``: passes in command-line order, a measured report, a gate.

The command parses options into pass objects (in the order they were typed), wires
the registry in as the model source and as the publisher of the accepted version,
and prints the report. It holds no optimization logic: see ``modelport.optimize``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelport.cli._app import JsonOpt, app, print_json, table
from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument

if TYPE_CHECKING:
    from modelport.optimize import Candidate, Pass, Report
    from modelport.registry import Registry

#: Options that add a pass, in the order they appear on the command line.
PASS_OPTIONS = (
    "quantize",
    "prune",
    "drop_layers",
    "low_rank",
    "low_rank_energy",
    "distill",
    "graph",
)


def _record_order(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """Click processes options in the order typed; remember the order of the passes."""
    source = ctx.get_parameter_source(param.name or "")
    if source is not None and source.name == "COMMANDLINE" and value not in (None, False):
        ctx.meta.setdefault("modelport.pass_order", []).append(param.name)
    return value


def _passes(ctx: typer.Context, p: dict[str, Any]) -> list[Pass]:
    from modelport.optimize import Distill, DropLayers, GraphOptimize, LowRank, Prune, Quantize

    exclude = tuple(n.strip() for item in p["exclude_nodes"] or [] for n in item.split(",") if n)
    build: dict[str, Callable[[], Pass]] = {
        "quantize": lambda: Quantize(
            p["quantize"],
            per_channel=p["per_channel"],
            exclude_nodes=exclude,
            calibration_method=p["calibration_method"],
        ),
        "prune": lambda: Prune(p["prune"], structured=p["structured"]),
        "drop_layers": lambda: DropLayers(p["drop_layers"]),
        "low_rank": lambda: LowRank(ratio=p["low_rank"]),
        "low_rank_energy": lambda: LowRank(energy=p["low_rank_energy"]),
        "distill": lambda: Distill(
            p["distill"],
            temperature=p["distill_temperature"],
            alpha=p["distill_alpha"],
            epochs=p["distill_epochs"],
        ),
        "graph": lambda: GraphOptimize("extended"),
    }
    order = ctx.meta.get("modelport.pass_order", [])
    if p["low_rank"] is not None and p["low_rank_energy"] is not None:
        raise InvalidArgument("give --low-rank RATIO or --low-rank-energy E, not both")
    if p["structured"] and p["prune"] is None:
        raise InvalidArgument("--structured modifies --prune S; add --prune")
    if p["distill"] and p["train_data"] is None:
        raise InvalidArgument("--distill needs --train-data FILE.npz")
    return [build[name]() for name in order]


def _publisher(registry: Registry) -> Any:
    from modelport.registry import Lineage

    def publish(c: Candidate) -> str:
        v = registry.register(
            c.path,
            c.name,
            framework="onnx",
            description=c.description,
            metrics=c.metrics,
            lineage=Lineage.from_dict(c.lineage),
            extra=c.extra,
        )
        return v.ref

    return publish


def _show(report: Report, files: dict[str, Path]) -> None:
    from rich.console import Console

    columns, rows = report.rows()
    title = f"optimize {report.parent}"
    if len(rows) <= 3:  # parent vs result: one column per version reads best
        fields = [[c, *(r[i] for r in rows)] for i, c in enumerate(columns) if i > 0]
        table(title, ["", *(r[0] for r in rows)], fields)
    else:
        keep = [i for i, c in enumerate(columns) if c not in ("params",)]
        table(title, [columns[i] for i in keep], [[r[i] for i in keep] for r in rows])
    con = Console()
    style = "green" if report.gate_passed else "red"
    con.print(f"[{style}]{report.verdict()}[/{style}]", highlight=False)
    if report.pareto:
        con.print("pareto front: " + ", ".join(report.pareto))
    for note in report.notes:
        con.print(f"note: {note}", highlight=False)
    if report.registered:
        con.print(f"registered: [bold]{report.registered}[/bold]")
    if files:
        con.print("report: " + ", ".join(str(p) for p in files.values()), highlight=False)


FloatOpt = Annotated[float | None, typer.Option(callback=_record_order)]


@app.command()
def optimize(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Version to optimize: NAME, NAME:N or NAME@ALIAS.")],
    validation_data: Annotated[
        Path, typer.Option(help=".npz with one array per input (or X) and y for labels.")
    ],
    metric: Annotated[
        str, typer.Option(help="accuracy | f1 | mse | mae | cosine (cosine needs no labels).")
    ],
    max_drop: Annotated[
        float, typer.Option(help="Largest allowed metric loss, e.g. 0.01 = 1 accuracy point.")
    ],
    quantize: Annotated[
        str | None,
        typer.Option(
            help="dynamic | static | fp16 (int8 or half precision).", callback=_record_order
        ),
    ] = None,
    per_channel: Annotated[bool, typer.Option(help="Per-channel int8 weight scales.")] = False,
    exclude_nodes: Annotated[
        list[str] | None, typer.Option(help="Node names to keep in float (comma-separated).")
    ] = None,
    calibration_data: Annotated[
        Path | None, typer.Option(help=".npz of typical inputs for static quantization.")
    ] = None,
    calibration_method: Annotated[
        str, typer.Option(help="minmax | entropy | percentile.")
    ] = "minmax",
    prune: Annotated[
        float | None,
        typer.Option(help="Prune to this sparsity (0-1), e.g. 0.5.", callback=_record_order),
    ] = None,
    structured: Annotated[
        bool, typer.Option(help="With --prune: remove whole neurons/channels.")
    ] = False,
    drop_layers: Annotated[
        int | None,
        typer.Option(help="Remove the K least important repeated blocks.", callback=_record_order),
    ] = None,
    low_rank: Annotated[
        float | None,
        typer.Option(help="Factorize weights keeping this rank ratio.", callback=_record_order),
    ] = None,
    low_rank_energy: Annotated[
        float | None,
        typer.Option(help="Factorize keeping this energy share, e.g. 0.9.", callback=_record_order),
    ] = None,
    distill: Annotated[
        str | None,
        typer.Option(
            help="Student: mlp:128,64 | cnn:16,32 | tree:depth=6 | forest:n=50,depth=8.",
            callback=_record_order,
        ),
    ] = None,
    train_data: Annotated[Path | None, typer.Option(help=".npz for --distill.")] = None,
    distill_temperature: Annotated[float, typer.Option(help="Soft-label temperature.")] = 4.0,
    distill_alpha: Annotated[float, typer.Option(help="Weight of the true labels.")] = 0.5,
    distill_epochs: Annotated[int, typer.Option(help="Student training epochs.")] = 30,
    graph: Annotated[
        bool,
        typer.Option(help="onnxruntime offline graph optimization.", callback=_record_order),
    ] = False,
    auto: Annotated[
        bool, typer.Option(help="Search pass combinations; register the fastest that passes.")
    ] = False,
    report: Annotated[
        Path | None, typer.Option(help="Report directory (default: MODELPORT_HOME/reports/…).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Register under this model name (default: the same).")
    ] = None,
    description: Annotated[str, typer.Option(help="Description of the new version.")] = "",
    batch_size: Annotated[int, typer.Option(help="The larger batch size timed.")] = 32,
    threads: Annotated[int, typer.Option(help="onnxruntime intra-op threads when timing.")] = 1,
    repeats: Annotated[int, typer.Option(help="Timing samples per model (median).")] = 7,
    as_json: JsonOpt = False,
) -> None:
    """Optimize a version; register the result only if the metric holds (the gate).

    Passes run in the order given, e.g. ``--prune 0.5 --structured --quantize dynamic``.
    """
    from rich.console import Console

    from modelport.optimize import (
        AccuracyGateFailed,
        MeasureSettings,
        OptimizeOptions,
        auto_optimize,
    )
    from modelport.optimize import optimize as run_passes
    from modelport.registry import Registry

    params = dict(ctx.params)
    passes = _passes(ctx, params)
    if auto and passes:
        raise InvalidArgument("--auto chooses the passes itself; drop the pass options")
    if batch_size < 2 or threads < 0 or repeats < 1:
        raise InvalidArgument("--batch-size ≥ 2, --threads ≥ 0 and --repeats ≥ 1")
    settings = Settings()
    registry = Registry.from_settings(settings)
    version = registry.get(ref)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    report_dir = report or settings.home / "reports" / f"{version.name}-{version.version}-{stamp}"
    options = OptimizeOptions(
        validation=validation_data,
        metric=metric,
        max_drop=max_drop,
        calibration=calibration_data,
        train=train_data,
        report_dir=report_dir,
        measure=MeasureSettings(batch_sizes=(1, batch_size), threads=threads, repeats=repeats),
        name=name,
        description=description,
    )
    console = Console(stderr=True)
    try:
        with console.status(f"optimizing {version.ref}…") as status:

            def progress(message: str) -> None:
                status.update(f"{version.ref}: {message}")

            if auto:
                outcome = auto_optimize(
                    registry, version.ref, options, publish=_publisher(registry), progress=progress
                )
            else:
                outcome = run_passes(
                    registry,
                    version.ref,
                    passes,
                    options,
                    publish=_publisher(registry),
                    progress=progress,
                )
    except AccuracyGateFailed as e:
        if as_json:
            print_json(e.report.to_dict())
        else:
            _show(e.report, e.files)
        raise
    finally:
        registry.close()
    if as_json:
        print_json(outcome.report.to_dict())
    else:
        _show(outcome.report, outcome.files)
