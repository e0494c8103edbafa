"""Packages: built in one home, opened and run in another with only the package file;
tampering and malicious archives are refused with nothing written outside the target."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from modelport.core.config import Settings
from modelport.core.errors import IntegrityError, InvalidArgument, NotFound, PayloadTooLarge
from modelport.deploy.package import (
    PACKAGE_MANIFEST,
    PackageSource,
    build_package,
    open_package,
    verify_package,
)
from modelport.registry import Registry
from modelport.runtimes import LoadSpec, load_runtime
from modelport.security.archive import ArchiveLimits


@pytest.fixture
def built(tmp_path: Path, iris_onnx: Path, iris_onnx_b: Path) -> tuple[Path, Path]:
    """A package of iris:1 (aliased production) and iris:2, built in home A."""
    reg = Registry.from_settings(Settings(home=tmp_path / "home-a"))
    try:
        reg.register(iris_onnx, name="iris")
        reg.register(iris_onnx_b, name="iris")
        reg.set_alias("iris", "production", 1)
        sources = [
            PackageSource(reg.open("iris@production"), ("iris@production",), ("production",)),
            PackageSource(reg.open("iris:2"), ("iris:2",)),
        ]
        out = tmp_path / "out" / "iris.tar.gz"
        info = build_package(sources, out, requirements=["modelport==0.1.0"])
    finally:
        reg.close()
    assert info.models == ("iris:1", "iris:2")
    return out, tmp_path


def test_built_in_one_home_runs_from_another_with_only_the_package(built, iris_onnx: Path):
    out, tmp = built
    elsewhere = tmp / "machine-b"
    elsewhere.mkdir()
    pkg_file = shutil.copy(out, elsewhere / "iris.tar.gz")
    shutil.rmtree(tmp / "home-a")  # the registry it came from is gone
    contents = open_package(pkg_file, elsewhere / "extracted")
    model = contents.resolve("iris@production")
    assert (model.name, model.version) == ("iris", 1)
    assert contents.resolve("iris").version == 2
    assert contents.resolve("iris:2").ref == "iris:2"
    assert contents.serve_config["models"] == [{"ref": "iris:1"}, {"ref": "iris:2"}]
    from modelport.core.types import ModelSignature

    runtime = load_runtime(
        model.manifest["format"],
        LoadSpec(
            model.directory,
            model.manifest["entry"],
            ModelSignature.from_dict(model.manifest["signature"]),
        ),
    )
    x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)
    got = runtime.predict({"X": x})
    import onnxruntime as ort

    want = ort.InferenceSession(str(iris_onnx)).run(None, {"X": x})
    np.testing.assert_array_equal(got["label"], want[0])
    runtime.close()
    with pytest.raises(NotFound, match="holds iris:1, iris:2"):
        contents.resolve("iris:7")


def test_package_contents_and_dockerfile(built):
    out, _ = built
    with tarfile.open(out) as tar:
        names = tar.getnames()
        docker = tar.extractfile("Dockerfile").read().decode()
        listing = json.loads(tar.extractfile(PACKAGE_MANIFEST).read())
    assert names[0] == PACKAGE_MANIFEST
    assert {
        "Dockerfile",
        "requirements.txt",
        "serve.yaml",
        ".dockerignore",
        "models/iris/1/model.onnx",
        "models/iris/1/modelport.json",
    } <= set(names)
    assert "-slim" in docker.split("FROM ", 1)[1].split("\n", 1)[0]
    assert "USER 10001:10001" in docker
    assert "/v2/health/ready" in docker.split("HEALTHCHECK", 1)[1]
    assert all(m["path"].startswith("models/iris/") for m in listing["models"])
    assert listing["models"][0]["aliases"] == ["production"]
    assert {f["path"] for f in listing["files"]} == set(names) - {PACKAGE_MANIFEST}


def test_builds_are_reproducible(built, tmp_path: Path):
    out, _ = built
    again = tmp_path / "again.tar.gz"
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    # rebuild from the extracted model directories: same bytes
    root = tmp_path / "x" / "models" / "iris"
    build_package(
        [
            PackageSource(root / "1", ("iris@production",), ("production",)),
            PackageSource(root / "2", ("iris:2",)),
        ],
        again,
        requirements=["modelport==0.1.0"],
    )
    assert again.read_bytes() == out.read_bytes()


def test_verify_package_checks_without_leaving_anything(built):
    out, _ = built
    contents = verify_package(out)
    assert [m.ref for m in contents.models] == ["iris:1", "iris:2"]
    assert not contents.root.exists()


def test_extracted_directory_is_verified_in_place(built):
    out, tmp = built
    contents = open_package(out, tmp / "dir")
    again = open_package(tmp / "dir")
    assert again.digest == contents.digest
    (tmp / "dir" / "models" / "iris" / "1" / "model.onnx").write_bytes(b"evil")
    with pytest.raises(IntegrityError, match="does not match its digest"):
        open_package(tmp / "dir")


def _rewrite(src: Path, dst: Path, change) -> None:
    """Copy a package, letting ``change(name, bytes)`` alter (or drop: None) members."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            new = change(m.name, data)
            if new is None:
                continue
            info = tarfile.TarInfo(m.name)
            info.size = len(new)
            tout.addfile(info, io.BytesIO(new))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            lambda n, b: b"\x00" + b[1:] if n == "models/iris/1/model.onnx" else b,
            IntegrityError,
            "does not match its digest",
        ),
        (
            lambda n, b: None if n == "requirements.txt" else b,
            IntegrityError,
            "'requirements.txt' is missing",
        ),
        (
            lambda n, b: (
                b.replace(b'"version":1', b'"version":3')
                if n == "models/iris/1/modelport.json"
                else b
            ),
            IntegrityError,
            "does not match its digest",
        ),
        (
            lambda n, b: b"not json" if n == PACKAGE_MANIFEST else b,
            InvalidArgument,
            "malformed modelport-package.json",
        ),
    ],
)
def test_tampered_packages_are_refused_and_removed(built, tmp_path: Path, change, error, message):
    out, _ = built
    bad = tmp_path / "bad.tar.gz"
    _rewrite(out, bad, change)
    dest = tmp_path / "dest"
    with pytest.raises(error, match=message):
        open_package(bad, dest)
    assert not dest.exists()


def test_an_extra_member_is_refused(built, tmp_path: Path):
    out, _ = built
    bad = tmp_path / "extra.tar.gz"
    with tarfile.open(out) as tin, tarfile.open(bad, "w:gz") as tout:
        for m in tin.getmembers():
            tout.addfile(m, tin.extractfile(m))
        info = tarfile.TarInfo("models/iris/1/backdoor.py")
        info.size = 4
        tout.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(IntegrityError, match=r"backdoor\.py' is not listed"):
        open_package(bad, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


# ----------------------------------------------------------------------------- malicious


def _malicious(path: Path, kind: str) -> None:
    with tarfile.open(path, "w:gz") as tar:

        def add(name: str, data: bytes = b"x", **attrs) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in attrs.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)

        add(PACKAGE_MANIFEST, b"{}")
        if kind == "zip-slip":
            add("../escaped.txt", b"pwned")
        elif kind == "absolute":
            add(str(path.parent / "absolute.txt"), b"pwned")
        elif kind == "symlink":
            add("models/link", type=tarfile.SYMTYPE, linkname=str(path.parent), size=0)
            add("models/link/escaped.txt", b"pwned")
        elif kind == "hardlink":
            add("models/hard", type=tarfile.LNKTYPE, linkname="../escaped.txt", size=0)
        elif kind == "device":
            add("models/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3, size=0)
        elif kind == "duplicate":
            add("serve.yaml", b"a: 1")
            add("serve.yaml", b"a: 2")
        elif kind == "oversize":
            add("models/big.bin", b"\x00" * 4096)
        elif kind == "members":
            for k in range(40):
                add(f"models/f{k}", b"")


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("zip-slip", InvalidArgument),
        ("absolute", InvalidArgument),
        ("symlink", InvalidArgument),
        ("hardlink", InvalidArgument),
        ("device", InvalidArgument),
        ("duplicate", InvalidArgument),
        ("oversize", PayloadTooLarge),
        ("members", PayloadTooLarge),
    ],
)
def test_malicious_archives_are_rejected_with_nothing_written_outside(
    tmp_path: Path, kind: str, error: type[Exception]
):
    box = tmp_path / "box"
    box.mkdir()
    archive = box / "evil.tar.gz"
    _malicious(archive, kind)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    limits = ArchiveLimits(max_members=30, max_member_bytes=1024, max_total_bytes=2048)
    dest = box / "target"
    with pytest.raises(error):
        open_package(archive, dest, limits=limits)
    assert not dest.exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "escaped.txt").exists()
    assert not (box / "absolute.txt").exists()
