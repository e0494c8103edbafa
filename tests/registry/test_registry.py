"""Registry behaviour on both backends: SQLite + local files and PostgreSQL + S3."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from modelport.core.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    InvalidModel,
    InvalidName,
    NotFound,
    UnsupportedFormat,
)
from modelport.registry import Lineage, Registry
from modelport.registry.store import sha256_file
from tests.conftest import Backend, make_big_onnx


def blob_count(reg: Registry) -> int:
    return sum(1 for _ in reg.store.blobs())


def test_register_reads_signature_and_stores_by_digest(registry: Registry, iris_onnx: Path):
    v = registry.register(
        iris_onnx, "iris", description="first", tags={"team": "ml"}, metrics={"accuracy": 0.97}
    )
    assert v.ref == "iris:1"
    assert (v.format, v.framework, v.entry) == ("onnx", "onnx", "model.onnx")
    assert [(t.name, t.datatype, t.shape) for t in v.signature.inputs] == [("X", "FP32", (-1, 4))]
    assert [(t.name, t.datatype, t.shape) for t in v.signature.outputs] == [
        ("label", "INT64", (-1,)),
        ("probabilities", "FP32", (-1, 3)),
    ]
    digest, size = sha256_file(iris_onnx)
    assert [(f.path, f.digest, f.size) for f in v.files] == [("model.onnx", digest, size)]
    assert v.lineage.operation == "register"
    assert "onnx" in v.lineage.tool_versions
    assert v.extra["opset"]["ai.onnx"] == 17
    got = registry.get("iris:1")
    assert got == v
    assert got.compute_manifest_digest() == got.manifest_digest
    assert got.tags == {"team": "ml"}
    assert got.metrics == {"accuracy": 0.97}


def test_identical_files_are_stored_once(registry: Registry, iris_onnx: Path, iris_onnx_b: Path):
    registry.register(iris_onnx, "iris")
    registry.register(iris_onnx, "iris")
    registry.register(iris_onnx, "other")
    assert blob_count(registry) == 1
    registry.register(iris_onnx_b, "iris")
    assert blob_count(registry) == 2
    assert [v.version for v in registry.versions("iris")] == [1, 2, 3]


def test_references_resolve(registry: Registry, iris_onnx: Path, iris_onnx_b: Path):
    registry.register(iris_onnx, "iris")
    registry.register(iris_onnx_b, "iris")
    registry.set_alias("iris", "production", 1)
    assert registry.get("iris").version == 2
    assert registry.get("iris@latest").version == 2
    assert registry.get("iris:1").version == 1
    prod = registry.get("iris@production")
    assert prod.version == 1
    assert prod.aliases == ("production",)
    for bad in ("iris:3", "iris@staging", "nope", "nope:1"):
        with pytest.raises(NotFound):
            registry.get(bad)
    for bad in ("iris:x", "iris:0", "iris:-1", "", "iris@../x"):
        with pytest.raises(InvalidArgument):
            registry.get(bad)


@pytest.mark.parametrize(
    "name", ["..", ".", "../x", "a/b", "/etc/passwd", "x\x00y", "", "-x", "a" * 129, "é", "a b"]
)
def test_invalid_names_are_refused_before_any_write(registry: Registry, iris_onnx: Path, name: str):
    with pytest.raises(InvalidName):
        registry.register(iris_onnx, name)
    assert registry.list() == []
    assert blob_count(registry) == 0


def test_corrupt_and_foreign_files_leave_registry_unchanged(
    registry: Registry, iris_onnx: Path, tmp_path: Path
):
    registry.register(iris_onnx, "iris")
    before = (registry.list(), blob_count(registry))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(iris_onnx.read_bytes()[: iris_onnx.stat().st_size // 2])
    with pytest.raises(InvalidModel):
        registry.register(truncated, "iris", framework="onnx")
    with pytest.raises(UnsupportedFormat, match="supported: onnx"):
        registry.register(truncated, "iris")
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a model\n")
    with pytest.raises(UnsupportedFormat):
        registry.register(text_file, "iris")
    with pytest.raises(UnsupportedFormat, match="unknown framework"):
        registry.register(iris_onnx, "iris", framework="caffe")
    with pytest.raises(NotFound):
        registry.register(tmp_path / "missing.onnx", "iris")
    assert (registry.list(), blob_count(registry)) == before
    assert registry.check().ok


def test_onnx_checker_failure_is_invalid_model(registry: Registry, tmp_path: Path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.graph.node[0].input[0] = "undefined_tensor"  # dangling edge
    path = tmp_path / "bad.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(InvalidModel, match="ONNX checker"):
        registry.register(path, "bad")
    assert registry.list() == []


def test_external_data_is_stored_and_confined(registry: Registry, tmp_path: Path):
    import onnx

    src = make_big_onnx(tmp_path / "src.onnx", 4096)
    model = onnx.load_model(str(src))
    out = tmp_path / "ext"
    out.mkdir()
    onnx.save_model(
        model,
        str(out / "m.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    v = registry.register(out / "m.onnx", "ext")
    assert sorted(f.path for f in v.files) == ["model.onnx", "weights.bin"]
    local = registry.open(v)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(local / "model.onnx"))
    assert sess.run(None, {"x": np.ones((1, 16), np.float32)})[0].shape == (1, 256)

    escaped = onnx.load_model(str(out / "m.onnx"), load_external_data=False)
    for t in escaped.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../outside.bin"
    onnx.save_model(escaped, str(out / "evil.onnx"))
    with pytest.raises(InvalidModel, match="relative path inside"):
        registry.register(out / "evil.onnx", "evil")


def test_aliases_move_atomically_and_keep_history(
    registry: Registry, iris_onnx: Path, iris_onnx_b: Path
):
    registry.register(iris_onnx, "iris")
    registry.register(iris_onnx_b, "iris")
    registry.set_alias("iris", "production", 1)
    registry.set_alias("iris", "staging", 2)
    registry.set_alias("iris", "production", 2, expect=1)
    with pytest.raises(Conflict):
        registry.set_alias("iris", "production", 1, expect=1)
    with pytest.raises(NotFound):
        registry.set_alias("iris", "production", 9)
    for bad in ("latest", "123", "../p"):
        with pytest.raises(InvalidArgument):
            registry.set_alias("iris", bad, 1)
    assert [(a.alias, a.version) for a in registry.aliases("iris")] == [
        ("production", 2),
        ("staging", 2),
    ]
    registry.delete_alias("iris", "staging")
    history = [(e.alias, e.from_version, e.to_version) for e in registry.alias_history("iris")]
    assert history == [
        ("production", None, 1),
        ("staging", None, 2),
        ("production", 1, 2),
        ("staging", 2, None),
    ]
    assert registry.list()[0].aliases == {"production": 2}


def test_racing_alias_moves_serialise(registry: Registry, iris_onnx: Path, iris_onnx_b: Path):
    """Eight threads race to move the same alias with compare-and-set: one wins each round."""
    registry.register(iris_onnx, "iris")
    registry.register(iris_onnx_b, "iris")
    registry.set_alias("iris", "production", 1)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def mover(target: int) -> None:
        barrier.wait()
        try:
            registry.set_alias("iris", "production", target, expect=1)
            results.append("moved")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=mover, args=(2,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 7 + ["moved"]
    assert registry.get("iris@production").version == 2
    moves = [e for e in registry.alias_history("iris") if e.alias == "production"]
    assert [(e.from_version, e.to_version) for e in moves] == [(None, 1), (1, 2)]


def test_concurrent_registrations_get_distinct_versions(registry: Registry, iris_onnx: Path):
    errors: list[BaseException] = []

    def reg() -> None:
        try:
            registry.register(iris_onnx, "iris")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=reg) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [v.version for v in registry.versions("iris")] == [1, 2, 3, 4, 5, 6]


def test_delete_refuses_aliased_and_collects_blobs(
    registry: Registry, iris_onnx: Path, iris_onnx_b: Path
):
    registry.register(iris_onnx, "iris")  # v1 shares its blob with v3
    registry.register(iris_onnx_b, "iris")  # v2 has its own blob
    registry.register(iris_onnx, "iris")
    registry.set_alias("iris", "production", 2)
    with pytest.raises(FailedPrecondition, match="aliased"):
        registry.delete("iris:2")
    with pytest.raises(InvalidArgument, match="--all"):
        registry.delete("iris")
    assert registry.delete("iris:1") == ["iris:1"]
    assert blob_count(registry) == 2  # still used by v3
    assert registry.delete("iris@production", force=True) == ["iris:2"]
    assert blob_count(registry) == 1
    assert registry.aliases("iris") == []
    assert registry.alias_history("iris")[-1].to_version is None
    v4 = registry.register(iris_onnx_b, "iris")
    assert v4.version == 4  # numbers are never reused
    with pytest.raises(NotFound):
        registry.delete("iris:2")
    assert registry.delete("iris", all_versions=True) == ["iris:3", "iris:4"]
    assert registry.list() == []
    assert blob_count(registry) == 0
    assert registry.register(iris_onnx, "iris").version == 1  # a new model starts again
    assert registry.check().ok


def test_export_writes_files_and_manifest(registry: Registry, iris_onnx: Path, tmp_path: Path):
    import json

    v = registry.register(iris_onnx, "iris", tags={"k": "v"})
    out = registry.export("iris:1", tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "modelport.json"]
    assert (out / "model.onnx").read_bytes() == iris_onnx.read_bytes()
    manifest = json.loads((out / "modelport.json").read_text())
    assert manifest["manifest_digest"] == v.manifest_digest
    assert manifest["files"][0]["digest"] == v.files[0].digest
    assert manifest["signature"]["inputs"][0]["shape"] == [-1, 4]
    with pytest.raises(FailedPrecondition):
        registry.export("iris:1", out)


def test_open_materialises_verified_files(registry: Registry, iris_onnx: Path):
    registry.register(iris_onnx, "iris")
    path = registry.open("iris")
    assert (path / "model.onnx").read_bytes() == iris_onnx.read_bytes()
    assert registry.open("iris:1") == path  # cached
    assert registry.read_file("iris") == iris_onnx.read_bytes()


def test_check_detects_tampered_metadata_and_corrupt_blobs(
    registry: Registry, backend: Backend, iris_onnx: Path
):
    v = registry.register(iris_onnx, "iris")
    assert registry.check().ok
    with registry.engine.begin() as c:
        c.execute(text("UPDATE versions SET description = 'edited behind our back'"))
    report = registry.check()
    assert any("manifest digest" in p for p in report.problems)
    with registry.engine.begin() as c:
        c.execute(text("UPDATE versions SET description = ''"))
    assert registry.check().ok
    if backend.kind == "sqlite-local":
        blob = registry.store.path(v.files[0].digest)  # type: ignore[attr-defined]
        blob.chmod(0o644)
        blob.write_bytes(b"garbage")
    else:
        store = registry.store
        store._client.put_object(  # type: ignore[attr-defined]
            Bucket=store.bucket,
            Key=store._key(v.files[0].digest),
            Body=b"garbage",  # type: ignore[attr-defined]
        )
    report = registry.check()
    assert any("corrupt" in p for p in report.problems)
    assert registry.check(verify_content=False).ok


def test_gc_respects_grace_period(registry: Registry, iris_onnx: Path, iris_onnx_b: Path):
    registry.register(iris_onnx, "iris")
    digest, _ = sha256_file(iris_onnx_b)
    registry.store.put(iris_onnx_b, digest)  # as left by a crashed registration
    report = registry.check()
    assert report.ok
    assert report.unreferenced_blobs == [digest]
    assert registry.gc().blobs_removed == 0  # younger than the default grace
    assert registry.gc(grace_seconds=0).blobs_removed == 1
    assert blob_count(registry) == 1
    assert registry.check().unreferenced_blobs == []


def test_gc_racing_a_registration_never_breaks_it(registry: Registry, iris_onnx: Path):
    """A blob collected between upload and commit is uploaded again under the lock."""
    steps: list[str] = []

    def on_step(step: str) -> None:
        steps.append(step)
        if step == "uploaded":
            registry.gc(grace_seconds=0)

    registry._on_step = on_step  # type: ignore[attr-defined]
    v = registry.register(iris_onnx, "iris")
    assert steps == ["hashed", "uploaded", "locked", "before-commit", "committed"]
    assert registry.store.exists(v.files[0].digest)
    assert registry.check().ok


def test_failed_registration_removes_its_new_blobs(registry: Registry, iris_onnx: Path):
    def on_step(step: str) -> None:
        if step == "before-commit":
            raise RuntimeError("simulated failure")

    registry._on_step = on_step  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError):
        registry.register(iris_onnx, "iris")
    assert registry.list() == []
    assert blob_count(registry) == 0


def test_lineage_and_tags_validation(registry: Registry, iris_onnx: Path):
    v = registry.register(
        iris_onnx,
        "iris",
        lineage=Lineage(
            "convert", parent="iris-sk:1", params={"opset": 17}, tool_versions={"skl2onnx": "1.0"}
        ),
    )
    assert registry.get(v.ref).lineage.parent == "iris-sk:1"
    with pytest.raises(InvalidArgument):
        registry.register(iris_onnx, "iris", metrics={"acc": "high"})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument):
        registry.register(iris_onnx, "iris", tags={"": "x"})
