"""The audit trail: an append-only, hash-chained log of who did what and when.

One JSON object per line in ``<home>/audit/audit.log``. Each entry carries a sequence
number, the time, the actor, the action, its target and outcome, free-form details, the
hash of the previous entry (``prev``) and its own ``hash``: the SHA-256 of its
canonical JSON without the ``hash`` field. Editing an entry breaks its hash; removing or
reordering entries breaks the sequence and the ``prev`` links, so :meth:`AuditLog.verify`
finds all three.

Removing entries from the *end* leaves a valid, shorter chain. Each append therefore
also records the newest sequence number and hash in ``audit.head`` (written
atomically), and ``verify`` compares the two; for protection against someone who can
rewrite both files, ship the log off the machine or keep the head hash elsewhere and
pass it as ``expect_head``.

Appends take an exclusive file lock (so processes and threads can append concurrently
without forking the chain) and are fsynced before they return.

Example:
    >>> log = AuditLog(Path("/tmp/mp-doc/audit/audit.log"))             # doctest: +SKIP
    >>> log.append("cli:ana", "key.create", "key:3f2a")                 # doctest: +SKIP
    >>> log.verify().ok                                                # doctest: +SKIP
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelport.core.config import Settings
from modelport.core.errors import InvalidArgument, StorageError
from modelport.security._files import atomic_write, file_lock, fsync_dir, private_dir

GENESIS = "0" * 64
MAX_DETAILS_BYTES = 4096
_FIELDS = ("seq", "ts", "actor", "action", "target", "outcome", "details", "prev")


def _canonical(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The hash of an entry: SHA-256 of its canonical JSON without ``hash``."""
    return hashlib.sha256(_canonical({k: entry[k] for k in _FIELDS})).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of the audit log."""

    seq: int
    ts: str
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]
    prev: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "details": self.details,
            "prev": self.prev,
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AuditEvent:
        return cls(
            seq=int(d["seq"]),
            ts=str(d["ts"]),
            actor=str(d["actor"]),
            action=str(d["action"]),
            target=str(d["target"]),
            outcome=str(d["outcome"]),
            details=dict(d["details"]),
            prev=str(d["prev"]),
            hash=str(d["hash"]),
        )


@dataclass(slots=True)
class AuditReport:
    """What :meth:`AuditLog.verify` found; ``ok`` when ``problems`` is empty."""

    entries: int = 0
    head: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head": self.head,
            "problems": self.problems,
        }


class AuditLog:
    """Append to, read and verify one audit log file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        self._lock_path = path.with_name(f".{path.name}.lock")

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog:
        """The log at ``<home>/audit/audit.log``."""
        return cls(settings.audit_log)

    # ------------------------------------------------------------------ append

    def _last_line(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                end = f.seek(0, os.SEEK_END)
                pos, buf = end, b""
                while pos > 0:
                    step = min(65536, pos)
                    pos -= step
                    f.seek(pos)
                    buf = f.read(step) + buf
                    stripped = buf.rstrip(b"\n")
                    cut = stripped.rfind(b"\n")
                    if cut >= 0:
                        return stripped[cut + 1 :]
                stripped = buf.rstrip(b"\n")
                return stripped or None
        except FileNotFoundError:
            return None

    def append(
        self,
        actor: str,
        action: str,
        target: str = "",
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEvent:
        """Add one entry at the end of the chain, durably, and return it.

        Keep secrets out of ``details``: the log is for reading by people.
        """
        if not action:
            raise InvalidArgument("an audit entry needs an action")
        clean = json.loads(json.dumps(dict(details or {}), default=str))
        if len(_canonical(clean)) > MAX_DETAILS_BYTES:
            raise InvalidArgument(f"audit details exceed {MAX_DETAILS_BYTES} bytes")
        private_dir(self.path.parent)
        with file_lock(self._lock_path):
            last = self._last_line()
            if last is None:
                seq, prev = 1, GENESIS
            else:
                try:
                    tail = json.loads(last)
                    seq, prev = int(tail["seq"]) + 1, str(tail["hash"])
                except (ValueError, KeyError, TypeError) as e:
                    raise StorageError(
                        "the audit log's last entry is damaged; run 'modelport audit verify'"
                    ) from e
            entry: dict[str, Any] = {
                "seq": seq,
                "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
                "actor": actor[:256],
                "action": action[:128],
                "target": target[:512],
                "outcome": outcome[:64],
                "details": clean,
                "prev": prev,
            }
            entry["hash"] = entry_hash(entry)
            line = json.dumps(entry, sort_keys=True, ensure_ascii=False).encode() + b"\n"
            try:
                created = not self.path.exists()
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                if created:
                    fsync_dir(self.path.parent)
            except OSError as e:
                raise StorageError(f"cannot append to the audit log: {e.strerror}") from e
            head = {"seq": seq, "hash": entry["hash"]}
            atomic_write(self.head_path, _canonical(head) + b"\n", mode=0o600)
        return AuditEvent.from_dict(entry)

    # ------------------------------------------------------------------ read

    def _lines(self) -> Iterator[tuple[int, bytes]]:
        try:
            with open(self.path, "rb") as f:
                for number, line in enumerate(f, start=1):
                    if line.strip():
                        yield number, line
        except FileNotFoundError:
            return

    def events(self) -> Iterator[AuditEvent]:
        """Every readable entry, oldest first (damaged lines are skipped; see verify)."""
        for _, line in self._lines():
            try:
                yield AuditEvent.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError):
                continue

    def tail(self, n: int) -> list[AuditEvent]:
        """The newest ``n`` entries, oldest first."""
        out: list[AuditEvent] = []
        for e in self.events():
            out.append(e)
            if len(out) > n:
                out.pop(0)
        return out

    # ------------------------------------------------------------------ verify

    def verify(self, expect_head: str | None = None, *, max_problems: int = 50) -> AuditReport:
        """Walk the chain and report every edited, removed, reordered or damaged entry.

        ``expect_head`` is a hash recorded elsewhere (for instance printed by an earlier
        ``verify``): the chain must contain it, or entries were cut off the end.
        """
        report = AuditReport()
        prev, want_seq = GENESIS, 1
        seen: set[str] = set()

        def problem(msg: str) -> None:
            if len(report.problems) < max_problems:
                report.problems.append(msg)

        for number, line in self._lines():
            report.entries += 1
            try:
                entry = json.loads(line)
                seq, stored = int(entry["seq"]), str(entry["hash"])
                computed = entry_hash(entry)
            except (ValueError, KeyError, TypeError):
                problem(f"line {number}: not a valid audit entry")
                want_seq += 1
                continue
            if computed != stored:
                problem(f"line {number} (seq {seq}): entry was modified (hash mismatch)")
            if seq != want_seq:
                problem(f"line {number}: expected seq {want_seq}, found {seq} (removed or moved)")
            if entry["prev"] != prev:
                problem(f"line {number} (seq {seq}): does not follow the previous entry")
            prev, want_seq = stored, seq + 1
            seen.add(stored)
        report.head = prev
        self._check_head(report, prev, want_seq - 1, problem)
        if expect_head is not None and expect_head not in seen and expect_head != GENESIS:
            problem(f"expected head {expect_head[:16]}… is not in the log (entries cut off)")
        return report

    def _check_head(self, report: AuditReport, last_hash: str, last_seq: int, problem: Any) -> None:
        try:
            head = json.loads(self.head_path.read_bytes())
        except FileNotFoundError:
            if report.entries:
                problem("the head file is missing (entries may have been cut off the end)")
            return
        except ValueError:
            problem("the head file is damaged")
            return
        if head.get("hash") != last_hash or head.get("seq") != last_seq:
            problem(
                f"the log ends at seq {last_seq} but the head records seq {head.get('seq')}: "
                "entries were cut off the end or the head was replaced"
            )
