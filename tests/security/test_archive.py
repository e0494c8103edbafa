"""Safe extraction: zip-slip variants, absolute paths, links, devices, duplicates, bombs."""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from modelport.core.errors import InvalidArgument, PayloadTooLarge
from modelport.security.archive import ArchiveLimits, safe_extract

Member = tuple[tarfile.TarInfo, bytes | None]


def file_member(name: str, data: bytes = b"data") -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def make_tar(path: Path, members: list[Member], gz: bool = True) -> Path:
    mode = "w:gz" if gz else "w"
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


@pytest.fixture
def area(tmp_path: Path) -> Path:
    d = tmp_path / "area"
    d.mkdir()
    return d


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_good_archive_extracts_completely(area: Path, tmp_path: Path):
    d = tarfile.TarInfo("./model/")
    d.type = tarfile.DIRTYPE
    tar = make_tar(
        tmp_path / "ok.tar.gz",
        [(d, None), file_member("./model/model.onnx", b"onnx"), file_member("README", b"hi")],
    )
    files = safe_extract(tar, area / "out")
    assert files == ["model/model.onnx", "README"]
    assert (area / "out" / "model" / "model.onnx").read_bytes() == b"onnx"
    assert snapshot(area) == {"out", "out/model", "out/model/model.onnx", "out/README"}
    # plain (uncompressed) tar and a file object work too
    plain = make_tar(tmp_path / "ok.tar", [file_member("a.bin", b"x" * 10)], gz=False)
    with open(plain, "rb") as f:
        assert safe_extract(f, area / "plain") == ["a.bin"]


UNSAFE: dict[str, Callable[[], list[Member]]] = {
    "dotdot": lambda: [file_member("../evil.txt")],
    "nested dotdot": lambda: [file_member("a/../../evil.txt")],
    "inner dotdot": lambda: [file_member("a/b/../c")],
    "absolute": lambda: [file_member("/tmp/evil.txt")],
    "drive letter": lambda: [file_member("C:/evil.txt")],
    "backslash": lambda: [file_member("..\\evil.txt")],
    "empty component": lambda: [file_member("a//b")],
    "control char": lambda: [file_member("a\nb")],
    "symlink": lambda: [special("link", tarfile.SYMTYPE, "/etc/passwd")],
    "symlink then write through": lambda: [
        special("dir", tarfile.SYMTYPE, "/tmp"),
        file_member("dir/evil.txt"),
    ],
    "hardlink": lambda: [special("hl", tarfile.LNKTYPE, "/etc/passwd")],
    "char device": lambda: [special("null", tarfile.CHRTYPE)],
    "block device": lambda: [special("sda", tarfile.BLKTYPE)],
    "fifo": lambda: [special("fifo", tarfile.FIFOTYPE)],
    "duplicate": lambda: [file_member("model.onnx", b"a"), file_member("model.onnx", b"b")],
    "duplicate after normalisation": lambda: [file_member("m.onnx"), file_member("./m.onnx")],
    "case duplicate": lambda: [file_member("Model.onnx"), file_member("model.onnx")],
    "file then nested": lambda: [file_member("a"), file_member("a/b")],
    "dotdot only": lambda: [file_member("..")],
    "too deep": lambda: [file_member("/".join(["d"] * 40) + "/f")],
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_archives_are_rejected_whole(case: str, area: Path, tmp_path: Path):
    members = [file_member("first.txt", b"ok"), *UNSAFE[case]()]
    tar = make_tar(tmp_path / "bad.tar.gz", members)
    before = snapshot(tmp_path.parent)
    with pytest.raises(InvalidArgument):
        safe_extract(tar, area / "out")
    assert snapshot(area) == set()  # no partial output, no temp dir left
    assert snapshot(tmp_path.parent) == before  # nothing written anywhere near
    assert not Path("/tmp/evil.txt").exists()


def test_bomb_by_ratio(area: Path, tmp_path: Path):
    zeros = b"\0" * (40 << 20)
    tar = make_tar(tmp_path / "bomb.tar.gz", [file_member("zeros.bin", zeros)])
    assert tar.stat().st_size < 200_000
    with pytest.raises(PayloadTooLarge, match="expands more than"):
        safe_extract(tar, area / "out")
    assert snapshot(area) == set()


def test_bomb_by_member_count(area: Path, tmp_path: Path):
    tar = make_tar(tmp_path / "many.tar.gz", [file_member(f"f{i}", b"") for i in range(120)])
    with pytest.raises(PayloadTooLarge, match="more than 100 members"):
        safe_extract(tar, area / "out", ArchiveLimits(max_members=100))
    assert snapshot(area) == set()


def test_over_quota(area: Path, tmp_path: Path):
    tar = make_tar(tmp_path / "big.tar.gz", [file_member(f"f{i}", b"x" * 1000) for i in range(5)])
    with pytest.raises(PayloadTooLarge, match="beyond 3000 bytes"):
        safe_extract(tar, area / "out", ArchiveLimits(max_total_bytes=3000))
    with pytest.raises(PayloadTooLarge, match="larger than 500"):
        safe_extract(tar, area / "out", ArchiveLimits(max_member_bytes=500))
    assert snapshot(area) == set()


def test_truncated_and_garbage_archives(area: Path, tmp_path: Path):
    good = make_tar(tmp_path / "g.tar.gz", [file_member("a", b"x" * 100_000)])
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[:-200])
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(gzip.compress(b"this is not a tar archive" * 40))
    for bad in (cut, junk):
        with pytest.raises(InvalidArgument):
            safe_extract(bad, area / "out")
    assert snapshot(area) == set()


def test_existing_destination_is_refused(area: Path, tmp_path: Path):
    (area / "out").mkdir()
    tar = make_tar(tmp_path / "a.tar.gz", [file_member("a")])
    with pytest.raises(InvalidArgument, match="already exists"):
        safe_extract(tar, area / "out")
