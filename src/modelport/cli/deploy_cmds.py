"""Deploy commands: package, unpack, profile, and deploy plan/render/apply.

They parse options, call :mod:`modelport.deploy` and print; the logic lives there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelport.cli._app import JsonOpt, app, human_size, open_registry, print_json, table
from modelport.core.config import Settings
from modelport.core.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from modelport.deploy.plan import Plan
    from modelport.deploy.profile import ModelProfile
    from modelport.registry import Registry

deploy_app = typer.Typer(
    help="Plan placements on cloud and edge nodes; render and apply Kubernetes/KServe.",
    no_args_is_help=True,
)
app.add_typer(deploy_app, name="deploy")


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InvalidArgument(f"{what} must be numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise InvalidArgument(f"{what} must be positive numbers, got {text!r}")
    return values


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- package


@app.command()
def package(
    refs: Annotated[list[str], typer.Argument(help="Models: NAME, NAME:VERSION or NAME@ALIAS.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The package file (.tar.gz).")],
    base_image: Annotated[
        str | None, typer.Option(help="Docker base image (default: python:X.Y-slim).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a self-contained package of registered models (a .tar.gz).

    It holds the models as stored, their manifests, a serve config, pinned requirements
    and a Dockerfile.

    Serve it with `modelport serve --package FILE` on any machine with modelport.
    """
    from modelport.deploy.package import PackageSource, build_package

    reg = open_registry()
    try:
        sources = []
        for ref in refs:
            v = reg.get(ref)
            sources.append(PackageSource(reg.open(v), (ref,), tuple(v.aliases)))
        info = build_package(sources, out, base_image=base_image)
    finally:
        reg.close()
    if as_json:
        print_json(
            {
                "path": str(info.path),
                "sha256": info.sha256,
                "size": info.size,
                "digest": info.digest,
                "models": list(info.models),
            }
        )
        return
    typer.echo(f"{info.path}  {human_size(info.size)}  sha256:{info.sha256}")
    typer.echo("models: " + ", ".join(info.models))


@app.command()
def unpack(
    package_file: Annotated[Path, typer.Argument(help="A package from `modelport package`.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="New directory to extract into.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a package: safe extraction, then every digest.

    With --out the package stays extracted there, ready as a Docker build context.
    """
    from modelport.deploy.package import open_package, verify_package

    contents = open_package(package_file, out) if out else verify_package(package_file)
    summary: dict[str, Any] = {
        "package": str(package_file),
        "digest": contents.digest,
        "models": [m.ref for m in contents.models],
        "files": len(contents.files) + 1,
        "extracted_to": str(out) if out else None,
    }
    if as_json:
        print_json(summary)
        return
    typer.echo(f"verified {summary['files']} files, models: {', '.join(summary['models'])}")
    if out:
        typer.echo(f"extracted to {out}; build an image with: docker build -t IMAGE {out}")


# ---------------------------------------------------------------------------- profile


@app.command()
def profile(
    ref: Annotated[str, typer.Argument(help="Model: NAME, NAME:VERSION or NAME@ALIAS.")],
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,32",
    threads: Annotated[
        str | None, typer.Option(help="Thread counts, e.g. 2 or 1,2,4 (default: 1 and all cores).")
    ] = None,
    duration: Annotated[float, typer.Option(help="Seconds per batch size and thread count.")] = 1.0,
    shape: Annotated[
        list[str] | None,
        typer.Option(
            help="Non-batch shape of an input with dynamic axes: NAME=128 or NAME=3x224x224."
        ),
    ] = None,
    node_class: Annotated[
        str, typer.Option(help="Store the profile under this node class.")
    ] = "default",
    import_file: Annotated[
        Path | None, typer.Option("--import", help="Store a profile measured elsewhere (JSON).")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Derive --node-class from --from-class at this speed.")
    ] = None,
    from_class: Annotated[str, typer.Option(help="The class --speed scales.")] = "default",
    show: Annotated[bool, typer.Option("--show", help="Print the stored profiles only.")] = False,
    no_store: Annotated[bool, typer.Option("--no-store", help="Measure without storing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure a model on this machine and store the profile with the version.

    Records memory once loaded, latency percentiles and throughput per batch size and thread count.

    --import stores a profile measured elsewhere; --speed derives one for another node class.
    """
    from modelport.deploy.profile import ProfileStore, import_profile, measure

    store = ProfileStore.from_settings(Settings())
    reg = open_registry()
    try:
        v = reg.get(ref)
        if show:
            stored = store.load(v.name, v.version)
            if not stored:
                raise FailedPrecondition(
                    f"{v.ref} has no stored profile; run `modelport profile {ref}`"
                )
            _print_profiles(list(stored.values()), as_json)
            return
        if import_file is not None:
            data = json.loads(import_file.read_text())
            result = import_profile(data, v.name, v.version, node_class)
        elif speed is not None:
            base = store.load(v.name, v.version).get(from_class)
            if base is None:
                raise FailedPrecondition(f"{v.ref} has no stored {from_class!r} profile to scale")
            result = base.scaled(node_class, speed)
        else:
            dims = {}
            for item in shape or []:
                name, sep, value = item.partition("=")
                if not sep:
                    raise InvalidArgument(f"--shape {item!r} must look like NAME=128x16")
                dims[name] = _ints(value.replace("x", ","), f"--shape {name}")
            counts = _ints(threads, "--threads") if threads else (1, os.cpu_count() or 1)
            result = measure(
                reg.open(v),
                batch_sizes=_ints(batch_sizes, "--batch-sizes"),
                threads=tuple(dict.fromkeys(counts)),
                duration_s=duration,
                dims=dims,
                node_class=node_class,
            )
    finally:
        reg.close()
    if not no_store:
        path = store.save(result)
        if not as_json:
            typer.echo(
                f"stored {result.model}:{result.version} [{result.node_class}] in {path}", err=True
            )
    _print_profiles([result], as_json)


def _print_profiles(profiles: list[ModelProfile], as_json: bool) -> None:
    if as_json:
        docs = [p.to_dict() for p in profiles]
        print_json(docs[0] if len(docs) == 1 else docs)
        return
    for p in profiles:
        r = p.replica_profile()
        title = (
            f"{p.model}:{p.version} [{p.node_class}] {p.source}  memory {p.memory_mb:.0f} MB "
            f"(model {p.model_memory_mb:.0f} MB) — replica: {r.cpu:g} cores, "
            f"{r.rps_per_replica:.0f} rps, p99 {r.latency_ms:.3f} ms"
        )
        rows = [
            [
                m.threads,
                m.batch_size,
                m.runs,
                f"{m.p50_ms:.3f}",
                f"{m.p95_ms:.3f}",
                f"{m.p99_ms:.3f}",
                f"{m.requests_per_s:.0f}",
                f"{m.rows_per_s:.0f}",
            ]
            for m in p.measurements
        ]
        table(
            title,
            ["threads", "batch", "runs", "p50 ms", "p95 ms", "p99 ms", "req/s", "rows/s"],
            rows,
        )


# ---------------------------------------------------------------------------- deploy


def _profile_lookup() -> Any:
    """Stored profiles, resolving references in the registry only when needed."""
    from modelport.deploy.profile import ProfileStore

    settings = Settings()
    opened: list[Registry] = []

    def resolve(ref: str) -> tuple[str, int]:
        if not opened:
            opened.append(open_registry())
        v = opened[0].get(ref)
        return v.name, v.version

    return ProfileStore.from_settings(settings).lookup(resolve), opened


@deploy_app.command("plan")
def deploy_plan(
    fleet: Annotated[Path, typer.Option("--fleet", help="fleet.yaml: nodes and client sites.")],
    deployments: Annotated[
        Path, typer.Option("--deployments", help="deploy.yaml: what to run, for whom.")
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write plan.json here.")] = None,
    time_limit: Annotated[float, typer.Option(help="Seconds the solver may use.")] = 30.0,
    gap: Annotated[float, typer.Option(help="Stop at this relative gap (0: prove optimal).")] = 0.0,
    workers: Annotated[int, typer.Option(help="Solver workers (0: automatic).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Place replicas on nodes at the lowest hourly cost, with a proven bound.

    Solved as an integer program with OR-Tools CP-SAT, beside a greedy baseline.

    An impossible plan exits with code 5 and says which deployment and constraint block it.
    """
    from modelport.deploy.fleet import load_problem
    from modelport.deploy.placement import solve

    lookup, opened = _profile_lookup()
    try:
        problem = load_problem(fleet, deployments, lookup)
    finally:
        for reg in opened:
            reg.close()
    result = solve(problem, time_limit=time_limit, workers=workers, gap_limit=gap)
    doc = result.to_dict()
    if out is not None:
        _write_json(out, doc)
    if as_json:
        print_json(doc)
    else:
        _print_plan(result, out)
    if result.status == "infeasible":
        raise FailedPrecondition(str(result.explanation))


def _print_plan(plan: Plan, out: Path | None) -> None:
    if plan.status in ("infeasible", "unknown"):
        typer.echo(f"status: {plan.status}")
        if plan.explanation and plan.status == "unknown":  # infeasible: the error says why
            typer.echo(str(plan.explanation))
        return
    g = plan.greedy
    greedy = f"{g.cost:.4g}/h" if g and g.cost is not None else "fails"
    typer.echo(
        f"status: {plan.status}  cost: {plan.cost:.4g}/h  bound: {plan.bound:.4g}/h  "
        f"gap: {100 * (plan.gap or 0):.2f}%  greedy: {greedy}  ({plan.solve_seconds:.1f} s)"
    )
    table(
        "placements",
        ["deployment", "node", "replicas", "serves (rps)"],
        [
            [
                p.deployment,
                p.node,
                p.replicas,
                ", ".join(f"{s}={v:g}" for s, v in sorted(p.serves.items())),
            ]
            for p in plan.placements
        ],
    )
    table(
        "nodes in use",
        ["node", "kind", "site", "replicas", "cpu %", "memory %", "cost/h"],
        [
            [
                u.node,
                u.kind,
                u.site,
                u.replicas,
                f"{100 * u.cpu_used / u.cpu:.0f}",
                f"{100 * u.memory_mb_used / u.memory_mb:.0f}",
                f"{u.cost_per_hour:g}",
            ]
            for u in plan.utilisation
            if u.used
        ],
    )
    if out is not None:
        typer.echo(f"wrote {out}")


def _read_plan(path: Path) -> Plan:
    from modelport.deploy.fleet import read_document
    from modelport.deploy.plan import Plan

    return Plan.from_dict(read_document(path))


def _options(**kw: Any) -> Any:
    from modelport.deploy.manifests import RenderOptions

    return RenderOptions(**{k: v for k, v in kw.items() if v is not None})


TargetOpt = Annotated[str, typer.Option("--target", help="kubernetes or kserve.")]
ImageOpt = Annotated[
    str | None, typer.Option(help="Image built from the package (modelport package).")
]
NamespaceOpt = Annotated[str | None, typer.Option(help="Kubernetes namespace.")]
DrainOpt = Annotated[int | None, typer.Option(help="The server's drain time in seconds.")]
AuthOpt = Annotated[bool, typer.Option("--auth", help="Require API keys in the pods.")]


@deploy_app.command("render")
def deploy_render(
    plan: Annotated[Path, typer.Option("--plan", help="plan.json from `deploy plan`.")],
    target: TargetOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the manifests.")],
    image: ImageOpt = None,
    namespace: NamespaceOpt = None,
    drain_seconds: DrainOpt = None,
    auth: AuthOpt = False,
) -> None:
    """Write the manifests of a plan, one file per deployment.

    kubernetes: ConfigMap, Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget.

    kserve: ConfigMap and InferenceService (serving.kserve.io/v1beta1).
    """
    from modelport.deploy.manifests import render, write_manifests

    opts = _options(image=image, namespace=namespace, drain_seconds=drain_seconds, auth=auth)
    for path in write_manifests(render(_read_plan(plan), target, opts), out):
        typer.echo(str(path))


@deploy_app.command("apply")
def deploy_apply(
    plan: Annotated[Path, typer.Option("--plan", help="plan.json from `deploy plan`.")],
    target: TargetOpt,
    image: ImageOpt = None,
    namespace: NamespaceOpt = None,
    drain_seconds: DrainOpt = None,
    auth: AuthOpt = False,
    kubeconfig: Annotated[Path | None, typer.Option(help="kube-config file.")] = None,
    context: Annotated[str | None, typer.Option(help="kube-config context.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Let the server validate without persisting.")
    ] = False,
) -> None:
    """Render a plan and apply it to the cluster of your kube-config (server-side apply)."""
    from modelport.deploy.apply import apply_manifests
    from modelport.deploy.manifests import render

    opts = _options(image=image, namespace=namespace, drain_seconds=drain_seconds, auth=auth)
    files = render(_read_plan(plan), target, opts)
    for done in apply_manifests(
        files,
        namespace=namespace or "default",
        kubeconfig=kubeconfig,
        context=context,
        dry_run=dry_run,
    ):
        typer.echo(done.describe())
