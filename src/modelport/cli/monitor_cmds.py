"""Monitoring commands: monitor reference | drift | feedback | performance."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelport.cli._app import JsonOpt, app, open_registry, print_json, table
from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument, MissingDependency, NotFound

if TYPE_CHECKING:
    import numpy as np

    from modelport.monitoring.drift import DriftReport
    from modelport.registry import ModelVersion, Registry

monitor_app = typer.Typer(
    help="Drift references and reports, live accuracy from labelled feedback.",
    no_args_is_help=True,
)
app.add_typer(monitor_app, name="monitor")

UrlOpt = Annotated[
    str | None, typer.Option("--url", help="A running server, e.g. http://127.0.0.1:8000.")
]
BATCH_ROWS = 1024
FEEDBACK_CHUNK = 1000


# ---------------------------------------------------------------------------- helpers


def _load_npz(path: Path, version: ModelVersion) -> dict[str, np.ndarray]:
    """The arrays of ``path`` keyed by input name (a lone array feeds a lone input)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"cannot read {path} as .npz: {e}") from e
    names = [t.name for t in version.signature.inputs]
    if all(n in arrays for n in names):
        return arrays
    if len(arrays) == 1 and len(names) == 1:
        return {names[0]: next(iter(arrays.values()))}
    raise InvalidArgument(
        f"{path} holds {sorted(arrays)}; {version.ref} takes inputs {names} "
        "(name the arrays after them: np.savez(file, **{name: array}))"
    )


def _predict(reg: Registry, version: ModelVersion, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """Run the version on ``inputs`` in batches (for the prediction distribution)."""
    import numpy as np

    from modelport.runtimes import LoadSpec, load_runtime

    spec = LoadSpec(
        reg.open(version), version.entry, version.signature, dict(version.extra), version.trusted
    )
    runtime = load_runtime(version.format, spec)
    try:
        feeds = {t.name: inputs[t.name] for t in version.signature.inputs}
        rows = len(next(iter(feeds.values())))
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, rows, BATCH_ROWS):
            batch = {k: v[start : start + BATCH_ROWS] for k, v in feeds.items()}
            for k, v in runtime.predict(batch).items():
                parts.setdefault(k, []).append(np.asarray(v))
        return {k: np.concatenate(v) for k, v in parts.items()}
    finally:
        runtime.close()


def _prediction(
    reg: Registry, version: ModelVersion, arrays: dict[str, np.ndarray], predict: bool
) -> np.ndarray | None:
    from modelport.monitoring.task import resolve_task

    task = resolve_task(version.signature, version.extra)
    if task.prediction_output is None:
        return None
    if task.prediction_output in arrays:
        return task.values(arrays[task.prediction_output])
    if not predict:
        return None
    return task.values(_predict(reg, version, arrays)[task.prediction_output])


def _feature_names(version: ModelVersion) -> dict[str, list[str]]:
    names = version.extra.get("feature_names")
    if isinstance(names, list) and version.signature.inputs:
        return {version.signature.inputs[0].name: [str(n) for n in names]}
    if isinstance(names, dict):
        return {str(k): [str(n) for n in v] for k, v in names.items()}
    return {}


def _show_report(report: DriftReport) -> None:
    def num(x: float | None) -> str:
        return "" if x is None else f"{x:.4g}"

    rows = [
        [f.name, f.kind, f.count, num(f.psi), num(f.ks_pvalue), num(f.chi2_pvalue), f.drifted]
        for f in ([*report.features, report.prediction] if report.prediction else report.features)
    ]
    verdict = "DRIFT" if report.drifted else "no drift"
    table(
        f"{report.model}:{report.version} — {verdict} ({report.window} rows)",
        ["feature", "kind", "rows", "PSI", "KS p", "χ² p", "drifted"],
        rows,
    )


def _http() -> Any:
    try:
        import httpx
    except ImportError as e:
        raise MissingDependency.for_extra("httpx", "serve", "Talking to a server") from e
    return httpx


def _request(method: str, url: str, body: Any = None) -> Any:
    httpx = _http()
    try:
        r = httpx.request(method, url, json=body, timeout=30.0)
    except httpx.HTTPError as e:
        from modelport.core.errors import Unavailable

        raise Unavailable(f"cannot reach {url}: {e}") from e
    try:
        data = r.json()
    except ValueError:
        data = {"error": r.text}
    if r.status_code >= 400:
        from modelport.core import errors

        by_status = {
            cls.http_status: cls
            for cls in (
                errors.InvalidArgument,
                errors.NotFound,
                errors.Conflict,
                errors.FailedPrecondition,
                errors.Unauthenticated,
                errors.PermissionDenied,
                errors.PayloadTooLarge,
                errors.Unavailable,
                errors.DeadlineExceeded,
            )
        }
        message = data.get("error", r.text) if isinstance(data, dict) else r.text
        cls = by_status.get(r.status_code, errors.ModelportError)
        raise cls(f"{url}: HTTP {r.status_code}: {message}")
    return data


def _model_path(url: str, name: str, version: str | None, tail: str) -> str:
    base = url.rstrip("/") + f"/v2/models/{name}"
    return f"{base}/versions/{version}/{tail}" if version else f"{base}/{tail}"


def read_labels(path: Path) -> list[dict[str, Any]]:
    """Feedback items from JSON (a list or ``{"items": [...]}``), JSON lines or CSV
    (columns ``id`` and ``label``)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e}") from e
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        if rows and not {"id", "label"} <= set(rows[0]):
            raise InvalidArgument(f"{path}: a CSV of labels needs the columns id and label")
        return [{"id": r["id"], "label": _csv_value(r["label"])} for r in rows]
    try:
        data = json.loads(text)
    except ValueError:
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as e:
            raise InvalidArgument(f"{path}: not JSON, JSON lines or CSV: {e}") from e
    items = data.get("items") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InvalidArgument(f'{path}: expected a list of items or {{"items": [...]}}')
    return items


def _csv_value(v: str) -> Any:
    try:
        return json.loads(v)
    except ValueError:
        return v


# ---------------------------------------------------------------------------- commands


@monitor_app.command("reference")
def reference(
    ref: Annotated[str, typer.Argument(help="Version: NAME, NAME:N or NAME@ALIAS.")],
    data: Annotated[Path, typer.Option("--data", help=".npz of reference inputs.")],
    predict: Annotated[
        bool, typer.Option(help="Run the model for the prediction distribution.")
    ] = True,
    categorical: Annotated[
        list[str] | None, typer.Option("--categorical", help="Feature to treat as categories.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build and store the drift reference profile of a version from sample data."""
    from modelport.monitoring.drift import build_profile
    from modelport.monitoring.profiles import ProfileStore

    settings = Settings()
    reg = open_registry()
    try:
        version = reg.get(ref)
        arrays = _load_npz(data, version)
        preds = _prediction(reg, version, arrays, predict)
        inputs = {t.name: arrays[t.name] for t in version.signature.inputs}
        profile = build_profile(
            version.name,
            str(version.version),
            inputs,
            preds,
            feature_names=_feature_names(version),
            categorical=categorical or (),
        )
        path = ProfileStore.under_home(settings.home).save(profile)
    finally:
        reg.close()
    if as_json:
        print_json({"ref": version.ref, "path": str(path), **profile.to_dict()})
        return
    kinds = [f.kind for f in profile.features]
    typer.echo(
        f"{version.ref}: reference of {profile.rows} rows, {len(kinds)} features "
        f"({kinds.count('numeric')} numeric, {kinds.count('categorical')} categorical)"
        f"{', with predictions' if profile.prediction else ''} → {path}"
    )


@monitor_app.command("drift")
def drift(
    ref: Annotated[str, typer.Argument(help="Version: NAME, NAME:N or NAME@ALIAS.")],
    data: Annotated[
        Path | None, typer.Option("--data", help=".npz of recent inputs to test.")
    ] = None,
    url: UrlOpt = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML report with plots.")
    ] = None,
    psi_threshold: Annotated[float, typer.Option(help="Flag features at this PSI.")] = 0.2,
    ks_alpha: Annotated[
        float | None, typer.Option(help="Also flag features whose KS p-value is below.")
    ] = None,
    predict: Annotated[bool, typer.Option(help="Run the model for prediction drift.")] = True,
    fail_on_drift: Annotated[
        bool, typer.Option(help="Exit with status 1 when drift is found.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Test data (--data) or a server's live window (--url) against the reference."""
    from modelport.core.types import ModelRef

    if (data is None) == (url is None):
        raise InvalidArgument("give either --data FILE.npz or --url of a running server")
    if url is not None:
        r = ModelRef.parse(ref)
        result = _request(
            "GET", _model_path(url, r.name, str(r.version) if r.version else None, "drift")
        )
        print_json(result)
        if fail_on_drift and result.get("drifted"):
            raise typer.Exit(1)
        return
    assert data is not None
    from modelport.monitoring.drift import DriftThresholds, compare, extract_features
    from modelport.monitoring.profiles import ProfileStore

    reg = open_registry()
    try:
        version = reg.get(ref)
        profile = ProfileStore.under_home(Settings().home).load(version.name, str(version.version))
        if profile is None:
            raise NotFound(
                f"no drift reference for {version.ref}; build one with "
                f"'modelport monitor reference {version.ref} --data FILE.npz'"
            )
        arrays = _load_npz(data, version)
        preds = _prediction(reg, version, arrays, predict) if profile.prediction else None
    finally:
        reg.close()
    inputs = {t.name: arrays[t.name] for t in version.signature.inputs}
    columns = extract_features(inputs, profile.feature_names)
    thresholds = DriftThresholds(psi_threshold, ks_alpha, min_rows=1)
    report = compare(profile, columns, preds, thresholds)
    if html is not None:
        from modelport.monitoring.html_report import render_html

        html.write_text(render_html(profile, report, columns, preds))
    if as_json:
        print_json(report.to_dict())
    else:
        _show_report(report)
        if html is not None:
            typer.echo(f"report → {html}")
    if fail_on_drift and report.drifted:
        raise typer.Exit(1)


@monitor_app.command("feedback")
def feedback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    labels: Annotated[
        Path, typer.Option("--labels", help="Labels: JSON, JSON lines or CSV of id,label.")
    ],
    url: UrlOpt = None,
    log_dir: Annotated[
        Path | None,
        typer.Option("--log-dir", help="Offline: payload-log directory (default: home/logs)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send labels to a server (--url), or join them offline with the payload log.

    Offline evaluation sees only the requests the payload log sampled.
    """
    items = read_labels(labels)
    if url is not None:
        totals: dict[str, Any] = {}
        for start in range(0, len(items), FEEDBACK_CHUNK):
            chunk = items[start : start + FEEDBACK_CHUNK]
            reply = _request("POST", _model_path(url, name, None, "feedback"), {"items": chunk})
            for k, v in reply.items():
                if isinstance(v, int):
                    totals[k] = totals.get(k, 0) + v
                elif isinstance(v, list):
                    totals.setdefault(k, []).extend(v)
        print_json(totals)
        return
    results = _offline_feedback(name, items, log_dir or Settings().home / "logs")
    if as_json:
        print_json(results)
        return
    _show_performance(results["performance"])
    typer.echo(
        f"{results['joined']} joined, {results['duplicates']} duplicate, "
        f"{results['unknown']} without a logged prediction, {results['invalid']} invalid"
    )


def _offline_feedback(name: str, items: list[dict[str, Any]], log_dir: Path) -> dict[str, Any]:
    import numpy as np

    from modelport.monitoring.feedback import FeedbackStore
    from modelport.monitoring.payload_log import log_files, read_records
    from modelport.monitoring.task import resolve_task

    if not (log_dir / "payloads.jsonl").exists():
        raise NotFound(f"no payload log in {log_dir}")
    records = [r for r in read_records(log_files(log_dir)) if r.get("model") == name]
    store = FeedbackStore(name, max_predictions=max(1, len(records)), ttl_s=float("inf"))
    tasks = {}
    reg = open_registry()
    try:
        for v in sorted({str(r["version"]) for r in records}):
            rec = reg.get(f"{name}:{v}")
            tasks[v] = resolve_task(rec.signature, rec.extra)
            store.set_task(v, tasks[v])
    finally:
        reg.close()
    for r in records:
        out = tasks[str(r["version"])].prediction_output
        if r.get("id") and out and out in r["outputs"] and not r["outputs"][out].get("truncated"):
            store.remember(r["id"], str(r["version"]), np.asarray(r["outputs"][out]["data"]))
    result = store.add_feedback(items)
    result["performance"] = [store.performance(v) for v in store.versions()]
    return result


def _show_performance(perfs: list[dict[str, Any]]) -> None:
    keys = ["count", "accuracy", "precision", "recall", "f1", "mae", "rmse"]
    present = [k for k in keys if any(p.get(k) is not None for p in perfs)]
    rows = [[p["version"], p.get("task") or "", *[_fmt(p.get(k)) for k in present]] for p in perfs]
    table("live performance", ["version", "task", *present], rows)


def _fmt(x: Any) -> str:
    if x is None:
        return ""
    return f"{x:.4g}" if isinstance(x, float) else str(x)


@monitor_app.command("performance")
def performance(
    name: Annotated[str, typer.Argument(help="Model name.")],
    url: Annotated[str, typer.Option("--url", help="A running server.")],
    version: Annotated[
        str | None, typer.Option(help="A version (default: the serving one).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Rolling accuracy / F1 (or MAE / RMSE) of a served model from its feedback."""
    data = _request("GET", _model_path(url, name, version, "performance"))
    if as_json:
        print_json(data)
        return
    _show_performance(data if isinstance(data, list) else [data])
