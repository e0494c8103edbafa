"""The audit log: a hash chain that reveals edited, removed, reordered and cut-off entries."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from modelport.core.errors import StorageError
from modelport.security.audit import GENESIS, AuditLog


def fill(log: AuditLog, n: int = 5) -> None:
    for i in range(n):
        log.append(f"cli:user{i}", "key.create", f"key:{i:04d}", details={"role": "viewer"})


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit" / "audit.log")


def lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines(keepends=True)


def test_append_and_verify_a_clean_chain(log: AuditLog):
    assert log.verify().ok
    fill(log)
    events = list(log.events())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in itertools.pairwise(events))
    report = log.verify()
    assert report.ok, report.problems
    assert report.entries == 5
    assert report.head == events[-1].hash
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert [e.target for e in log.tail(2)] == ["key:0003", "key:0004"]


def test_edited_entry_is_detected(log: AuditLog):
    fill(log)
    ls = lines(log)
    entry = json.loads(ls[2])
    entry["actor"] = "cli:someone-else"
    ls[2] = json.dumps(entry, sort_keys=True) + "\n"
    log.path.write_text("".join(ls))
    problems = log.verify().problems
    assert any("seq 3" in p and "modified" in p for p in problems)


def test_edit_with_recomputed_hash_breaks_the_next_link(log: AuditLog):
    from modelport.security.audit import entry_hash

    fill(log)
    ls = lines(log)
    entry = json.loads(ls[1])
    entry["outcome"] = "denied"
    entry["hash"] = entry_hash(entry)
    ls[1] = json.dumps(entry, sort_keys=True) + "\n"
    log.path.write_text("".join(ls))
    problems = log.verify().problems
    assert any("seq 3" in p and "does not follow" in p for p in problems)


def test_removed_entry_is_detected(log: AuditLog):
    fill(log)
    ls = lines(log)
    del ls[1]
    log.path.write_text("".join(ls))
    problems = log.verify().problems
    assert any("expected seq 2, found 3" in p for p in problems)


def test_reordered_entries_are_detected(log: AuditLog):
    fill(log)
    ls = lines(log)
    ls[1], ls[2] = ls[2], ls[1]
    log.path.write_text("".join(ls))
    problems = log.verify().problems
    assert any("expected seq 2, found 3" in p for p in problems)
    assert any("does not follow" in p for p in problems)


def test_truncated_tail_is_detected_by_the_head_and_by_an_external_head(log: AuditLog):
    fill(log)
    recorded = log.verify().head
    ls = lines(log)
    log.path.write_text("".join(ls[:-2]))
    problems = log.verify().problems
    assert any("cut off" in p for p in problems)
    # even if the head file is rewritten too, an externally kept head catches it
    log.head_path.unlink()
    assert any("cut off" in p for p in log.verify(expect_head=recorded).problems)


def test_garbage_line_is_reported_and_blocks_appends(log: AuditLog):
    fill(log, 2)
    with open(log.path, "a") as f:
        f.write("not json\n")
    assert any("not a valid audit entry" in p for p in log.verify().problems)
    with pytest.raises(StorageError, match="damaged"):
        log.append("x", "y")


def _append_many(path: str, worker: int) -> None:
    log = AuditLog(Path(path))
    for i in range(10):
        log.append(f"worker{worker}", "test.append", str(i))


def test_concurrent_appenders_keep_one_chain(log: AuditLog):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(log.path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    report = log.verify()
    assert report.ok, report.problems
    assert report.entries == 30


def test_details_are_bounded(log: AuditLog):
    with pytest.raises(Exception, match="exceed"):
        log.append("a", "b", details={"x": "y" * 5000})
    event = log.append("a" * 1000, "b", details={"path": Path("/x")})
    assert len(event.actor) == 256
    assert event.details == {"path": "/x"}
