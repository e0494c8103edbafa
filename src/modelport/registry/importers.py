"""Importing models from MLflow model directories and Triton model repositories.

**MLflow** (``MLmodel`` + artifacts): the ``onnx``, ``sklearn`` and ``pytorch`` flavors
are read. The model file goes through the same detection and safety rules as any
registration — MLflow's sklearn and pytorch flavors are (cloud)pickles, so they need
explicit trust unless saved with ``serialization_format: skops``. The signature comes
from a given sample input, else MLflow's input example, else MLflow's tensor or column
signature (zeros of that shape). The run id and model uuid are kept as tags.

**Triton** (``<repo>/<model>/<version>/model.onnx`` + optional
``<repo>/<model>/config.pbtxt``): every numeric version directory becomes a registry
version, oldest first. ``config.pbtxt`` is parsed with protobuf's text format and
Triton's ``ModelConfig`` message when ``tritonclient`` is installed (a small parser of
the same text format otherwise). Its input/output names, datatypes and dims, and
``max_batch_size`` (a leading batch axis), are honoured: they must agree with the
model, and they narrow its signature where the model leaves axes open.

Example:
    >>> import_mlflow(reg, Path("mlruns/0/abc/artifacts/model"), name="iris")  # doctest: +SKIP
    >>> [v.ref for v in import_triton(reg, Path("model_repository"))]          # doctest: +SKIP
    ['densenet:1', 'densenet:2']
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from modelport.core.errors import InvalidArgument, InvalidModel, MissingDependency, NotFound
from modelport.core.types import DATATYPES, ModelSignature, TensorSpec, validate_name
from modelport.registry.records import Lineage, ModelVersion
from modelport.registry.service import Registry
from modelport.runtimes import default_input_name, formats_for
from modelport.runtimes.sample import as_sample
from modelport.runtimes.tools import tool_versions

# ----------------------------------------------------------------------------- MLflow

_MLFLOW_DTYPES = {
    "float32": "float32",
    "float64": "float64",
    "double": "float64",
    "float": "float32",
    "int32": "int32",
    "integer": "int32",
    "int64": "int64",
    "long": "int64",
    "bool": "bool",
    "boolean": "bool",
    "uint8": "uint8",
}


def _yaml_load(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as e:
        raise MissingDependency.for_extra("pyyaml", "mlflow", "Importing MLflow models") from e
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise InvalidModel(f"{path} is not readable YAML: {e}") from e
    if not isinstance(data, dict):
        raise InvalidModel(f"{path} does not describe an MLflow model")
    return data


def _inside(base: Path, rel: str) -> Path:
    """``base/rel``, refusing paths that leave ``base`` (absolute, ``..``, links out)."""
    target = (base / rel).resolve()
    if not target.is_relative_to(base.resolve()):
        raise InvalidModel(f"MLmodel points outside the model directory: {rel!r}")
    if not target.exists():
        raise InvalidModel(f"MLmodel names {rel!r}, which does not exist")
    return target


def _mlflow_sample(directory: Path, meta: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The input example if saved, else zeros shaped by the MLflow signature."""
    info = meta.get("saved_input_example_info") or {}
    example_file = info.get("artifact_path") if isinstance(info, dict) else None
    if example_file:
        try:
            data = json.loads(_inside(directory, str(example_file)).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            values = data.get("inputs", data.get("instances", data.get("data")))
            if isinstance(values, dict):
                return as_sample({k: np.asarray(v) for k, v in values.items()})
            if values is not None:
                arr = np.asarray(values)
                return {"input": arr if arr.ndim > 1 else arr.reshape(1, -1)}
    signature = meta.get("signature") or {}
    raw = signature.get("inputs") if isinstance(signature, dict) else None
    if not raw:
        return None
    try:
        specs = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as e:
        raise InvalidModel(f"MLmodel signature inputs are not JSON: {e}") from e
    tensors = [s for s in specs if s.get("type") == "tensor"]
    if tensors:
        out = {}
        for i, s in enumerate(tensors):
            ts = s.get("tensor-spec", {})
            shape = [2 if j == 0 else (8 if d == -1 else int(d)) for j, d in enumerate(ts["shape"])]
            dtype = _MLFLOW_DTYPES.get(str(ts.get("dtype")), "float32")
            out[str(s.get("name") or ("input" if len(tensors) == 1 else f"input_{i}"))] = np.zeros(
                shape, dtype
            )
        return out
    kinds = [_MLFLOW_DTYPES.get(str(s.get("type")), "float64") for s in specs]
    dtype = "float32" if kinds and all(k == "float32" for k in kinds) else "float64"
    return {"input": np.zeros((2, len(specs)), dtype)}


def _mlflow_model_file(directory: Path, flavors: dict[str, Any]) -> tuple[str, Path, str]:
    """(flavor, model file, framework) for the first supported flavor."""
    if "onnx" in flavors:
        return "onnx", _inside(directory, str(flavors["onnx"].get("data", "model.onnx"))), "onnx"
    if "sklearn" in flavors:
        f = flavors["sklearn"]
        return "sklearn", _inside(directory, str(f.get("pickled_model", "model.pkl"))), "sklearn"
    if "pytorch" in flavors:
        data = _inside(directory, str(flavors["pytorch"].get("model_data", "data")))
        if data.is_file():
            return "pytorch", data, "pytorch"
        for candidate in ("model.pt2", "model.pt", "model.pth"):
            if (data / candidate).is_file():
                return "pytorch", data / candidate, "pytorch"
        raise InvalidModel(f"no model file in the MLflow pytorch data directory {data.name}")
    raise InvalidModel(
        f"MLflow flavors {sorted(flavors)} are not supported; supported: onnx, sklearn, pytorch"
    )


def import_mlflow(
    registry: Registry,
    path: str | Path,
    *,
    name: str,
    sample_input: Any = None,
    trust: bool = False,
    description: str = "",
) -> ModelVersion:
    """Register the model of an MLflow model directory (one holding ``MLmodel``)."""
    validate_name(name)
    directory = Path(path)
    mlmodel = directory / "MLmodel"
    if not mlmodel.is_file():
        raise NotFound(f"{directory} has no MLmodel file; give an MLflow model directory")
    meta = _yaml_load(mlmodel)
    flavors = meta.get("flavors")
    if not isinstance(flavors, dict):
        raise InvalidModel("MLmodel lists no flavors")
    flavor, file, framework = _mlflow_model_file(directory, flavors)
    fmt = registry.detect(file, framework)
    sample = sample_input
    if sample is None and framework != "onnx":
        sample = _mlflow_sample(directory, meta)
        if sample is not None and len(sample) == 1:
            sample = {default_input_name(fmt): next(iter(sample.values()))}
    tags = {
        f"mlflow.{k}": str(meta[k])
        for k in ("run_id", "model_uuid", "mlflow_version")
        if meta.get(k)
    }
    params = {"source": "mlflow", "flavor": flavor, "path": str(directory), **tags}
    return registry.register(
        file,
        name,
        framework=fmt.name,
        sample_input=sample,
        trust=trust,
        description=description or f"imported from MLflow ({flavor} flavor)",
        tags=tags,
        lineage=Lineage("import", params=params, tool_versions=tool_versions()),
    )


# ----------------------------------------------------------------------------- Triton

_TOKEN = re.compile(
    r'\s+|#[^\n]*|"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|[{}\[\]:,;<>]|[^\s{}\[\]:,;<>"\']+'
)


def _tokens(text: str) -> list[str]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise InvalidModel(f"config.pbtxt: cannot parse near {text[pos : pos + 20]!r}")
        tok = m.group(0)
        pos = m.end()
        if not tok.isspace() and not tok.startswith("#"):
            out.append(tok)
    return out


def parse_text_proto(text: str) -> dict[str, list[Any]]:
    """Parse protobuf text format into ``{field: [values…]}`` (messages are dicts).

    Example:
        >>> parse_text_proto('name: "m" max_batch_size: 8 input [{ name: "x" dims: [4] }]')
        {'name': ['m'], 'max_batch_size': ['8'], 'input': [{'name': ['x'], 'dims': ['4']}]}
    """
    toks = _tokens(text)
    pos = 0

    def scalar(tok: str) -> str:
        return tok[1:-1] if tok[:1] in "\"'" else tok

    def message(end: str | None) -> dict[str, list[Any]]:
        nonlocal pos
        out: dict[str, list[Any]] = {}
        while pos < len(toks) and toks[pos] != end:
            key = toks[pos]
            pos += 1
            if pos < len(toks) and toks[pos] == ":":
                pos += 1
            if pos >= len(toks):
                raise InvalidModel(f"config.pbtxt: {key} has no value")
            values = out.setdefault(key, [])
            values.extend(value())
            if pos < len(toks) and toks[pos] in ",;":
                pos += 1
        if end is not None:
            if pos >= len(toks):
                raise InvalidModel("config.pbtxt: unbalanced braces")
            pos += 1
        return out

    def value() -> list[Any]:
        nonlocal pos
        tok = toks[pos]
        if tok in ("{", "<"):
            pos += 1
            return [message("}" if tok == "{" else ">")]
        if tok == "[":
            pos += 1
            items: list[Any] = []
            while pos < len(toks) and toks[pos] != "]":
                if toks[pos] == ",":
                    pos += 1
                    continue
                items.extend(value())
            pos += 1
            return items
        pos += 1
        return [scalar(tok)]

    return message(None)


def read_triton_config(path: Path) -> dict[str, Any]:
    """``config.pbtxt`` as a dict with Triton's field names (lists for repeated fields)."""
    text = path.read_text(encoding="utf-8")
    try:
        from google.protobuf import json_format, text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raw = parse_text_proto(text)

        def flat(msg: dict[str, list[Any]]) -> dict[str, Any]:
            repeated = {"input", "output", "dims"}
            return {
                k: [flat(x) if isinstance(x, dict) else x for x in v]
                if k in repeated
                else (flat(v[-1]) if isinstance(v[-1], dict) else v[-1])
                for k, v in msg.items()
            }

        return flat(raw)
    try:
        config = text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise InvalidModel(f"{path}: {e}") from e
    out: dict[str, Any] = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return out


def _triton_specs(entries: list[dict[str, Any]], batch: bool) -> list[TensorSpec]:
    specs = []
    for e in entries:
        datatype = str(e.get("data_type", "TYPE_FP32")).removeprefix("TYPE_")
        datatype = "BYTES" if datatype == "STRING" else datatype
        if datatype not in DATATYPES:
            raise InvalidModel(f"config.pbtxt: {e.get('name')!r} has datatype {datatype}")
        dims = [int(d) for d in e.get("dims", [])]
        specs.append(TensorSpec(str(e["name"]), datatype, tuple(([-1] if batch else []) + dims)))
    return specs


def _positional(model: tuple[TensorSpec, ...], config: list[TensorSpec]) -> tuple[TensorSpec, ...]:
    """TorchScript tensors have no names: Triton's libtorch backend pairs ``NAME__i`` with
    the i-th input/output (else the config's order). The model's specs take those names."""
    renamed = list(model)
    for order, c in enumerate(config):
        m = re.search(r"__(\d+)$", c.name)
        index = int(m.group(1)) if m else order
        if index >= len(model):
            raise InvalidModel(f"config.pbtxt names {c.name!r} but the model has {len(model)}")
        renamed[index] = replace(model[index], name=c.name)
    return tuple(renamed)


def _merge(
    model: tuple[TensorSpec, ...], config: list[TensorSpec], what: str, positional: bool = False
) -> tuple[TensorSpec, ...]:
    """The model's specs narrowed by the config's; disagreements raise InvalidModel."""
    if positional:
        model = _positional(model, config)
    by_name = {t.name: t for t in model}
    merged = dict(by_name)
    for c in config:
        m = by_name.get(c.name)
        if m is None:
            raise InvalidModel(
                f"config.pbtxt {what} {c.name!r} is not in the model ({list(by_name)})"
            )
        if m.datatype != c.datatype:
            raise InvalidModel(
                f"config.pbtxt {what} {c.name!r} is {c.datatype}, the model says {m.datatype}"
            )
        if len(m.shape) != len(c.shape) or any(
            a != -1 and b != -1 and a != b for a, b in zip(m.shape, c.shape, strict=True)
        ):
            raise InvalidModel(
                f"config.pbtxt {what} {c.name!r} has shape {list(c.shape)} (with max_batch_size), "
                f"the model {list(m.shape)}"
            )
        merged[c.name] = TensorSpec(
            c.name,
            c.datatype,
            tuple(b if b != -1 else a for a, b in zip(m.shape, c.shape, strict=True)),
        )
    return tuple(merged[t.name] for t in model)


_PLATFORM_FILES = {
    "onnxruntime_onnx": ("model.onnx", "onnx"),
    "onnxruntime": ("model.onnx", "onnx"),
    "pytorch_libtorch": ("model.pt", "torchscript"),
    "pytorch": ("model.pt", "torchscript"),
}


def import_triton(
    registry: Registry,
    repository: str | Path,
    *,
    model: str | None = None,
    name: str | None = None,
) -> list[ModelVersion]:
    """Register every version of one model (or of every model) of a Triton repository."""
    repo = Path(repository)
    if not repo.is_dir():
        raise NotFound(f"{repo} is not a directory")
    if model is not None:
        models = [repo / model]
        if not models[0].is_dir():
            raise NotFound(f"{repo} has no model {model!r}")
    else:
        models = sorted(p for p in repo.iterdir() if p.is_dir() and not p.name.startswith("."))
    if name is not None and len(models) != 1:
        raise InvalidArgument("--name needs exactly one model (pass --model)")
    planned = [(m, _plan_model(registry, m, name or m.name)) for m in models]
    if not any(plan for _, plan in planned):
        raise InvalidModel(
            f"{repo}: no model versions with a supported file (model.onnx, model.pt)"
        )
    out = []
    for _, plan in planned:
        for inspection, target, extra, lineage in plan:
            out.append(
                registry.register_inspection(
                    inspection,
                    target,
                    extra=extra,
                    lineage=lineage,
                    description=f"imported from Triton repository {repo.name}",
                )
            )
    return out


def _plan_model(
    registry: Registry, directory: Path, target: str
) -> list[tuple[Any, str, dict[str, Any], Lineage]]:
    """Inspect every version of one model first, so a bad one registers nothing."""
    validate_name(target)
    config: dict[str, Any] = {}
    if (directory / "config.pbtxt").is_file():
        config = read_triton_config(directory / "config.pbtxt")
    max_batch = int(config.get("max_batch_size", 0) or 0)
    platform = str(config.get("platform") or config.get("backend") or "")
    default_file, framework = _PLATFORM_FILES.get(platform, ("model.onnx", "onnx"))
    filename = str(config.get("default_model_filename") or default_file)
    versions = sorted(
        (p for p in directory.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: int(p.name),
    )
    plan = []
    for vdir in versions:
        file = vdir / filename
        if not file.is_file():
            continue
        fmt = formats_for(framework)[0]
        sample = None
        if framework == "torchscript":
            specs = _triton_specs(config.get("input", []), max_batch > 0)
            if not specs:
                raise InvalidModel(
                    f"{directory.name}: TorchScript models need inputs in config.pbtxt"
                )
            sample = {
                s.name: np.zeros([2 if d == -1 else d for d in s.shape], DATATYPES[s.datatype])
                for s in specs
            }
        inspection = fmt.inspect(file, sample_input=sample)
        signature = inspection.signature
        if config:
            batch = max_batch > 0
            positional = framework == "torchscript"
            inputs = _triton_specs(config.get("input", []), batch)
            outputs = _triton_specs(config.get("output", []), batch)
            signature = ModelSignature(
                _merge(signature.inputs, inputs, "input", positional),
                _merge(signature.outputs, outputs, "output", positional),
            )
        extra: dict[str, Any] = {"max_batch_size": max_batch} if config else {}
        if platform:
            extra["triton_platform"] = platform
        params = {
            "source": "triton",
            "repository": str(directory.parent),
            "model": directory.name,
            "triton_version": int(vdir.name),
        }
        lineage = Lineage("import", params=params, tool_versions=tool_versions())
        plan.append((replace(inspection, signature=signature), target, extra, lineage))
    return plan
