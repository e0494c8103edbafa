"""Package-wide rules: light imports, layers pointing down, a curated public API."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import modelport

SRC = Path(modelport.__file__).parent

# DESIGN.md: cli/api → services → registry → runtimes, protocol, security, monitoring → core.
LAYER = {
    "core": 0,
    "runtimes": 1,
    "protocol": 1,
    "security": 1,
    "monitoring": 1,
    "registry": 2,
    "convert": 3,
    "optimize": 3,
    "deploy": 3,
    "serving": 3,
    "explain": 3,
    "client": 3,
    "cli": 4,
    "api": 4,
    "__init__": 4,
    "__main__": 4,
}
HEAVY = ("onnxruntime", "torch", "grpc")


def module_layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def imported_modelport_layers(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    layers = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "modelport" and len(parts) > 1:
                layers.add(parts[1])
    return layers


def test_imports_point_down_only():
    violations = []
    for path in SRC.rglob("*.py"):
        own = module_layer(path)
        assert own in LAYER, f"{path}: package {own!r} has no layer in this test (add it)"
        for other in imported_modelport_layers(path):
            if other == own:
                continue
            assert other in LAYER, f"{path} imports unknown package {other!r}"
            if LAYER[other] >= LAYER[own]:
                violations.append(f"{path.relative_to(SRC)} ({own}) imports {other}")
    assert violations == []


def test_core_imports_nothing_else_of_modelport():
    for path in (SRC / "core").rglob("*.py"):
        assert imported_modelport_layers(path) <= {"core"}, path


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {m.split(".")[0] for m in out.split()}


def test_import_modelport_is_light():
    loaded = _loaded_after("import modelport")
    assert not loaded & set(HEAVY)
    assert "onnx" not in loaded
    assert "sqlalchemy" not in loaded


def test_cli_help_is_light():
    code = (
        "import sys\nfrom modelport.cli import main\nsys.argv=['modelport','--help']\n"
        "import contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()): main(['--help'])"
    )
    loaded = _loaded_after(code)
    assert not loaded & set(HEAVY)
    assert "onnx" not in loaded


def test_public_api_is_exactly_the_curated_names():
    assert set(modelport.__all__) == {
        "Lineage",
        "ModelRef",
        "ModelSignature",
        "ModelVersion",
        "ModelportError",
        "Registry",
        "Settings",
        "TensorSpec",
        "__version__",
        "register",
    }
    for name in modelport.__all__:
        assert getattr(modelport, name) is not None
