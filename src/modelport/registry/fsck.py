"""The registry's fsck: versions against their manifests, blobs against their digests.

A pure function over what the registry read from its database and the store's blob
listing, so :meth:`Registry.check` stays a thin reader.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelport.registry.records import CheckReport, ModelVersion
from modelport.registry.store import ArtifactStore, LocalStore


def check_store(
    records: Sequence[ModelVersion],
    alias_rows: Sequence[tuple[str, str, int]],
    store: ArtifactStore,
    *,
    verify_content: bool = True,
) -> CheckReport:
    """Integrity problems (tampered metadata, missing/corrupt blobs, dangling aliases).

    Also counts unreferenced blobs (reclaimable with ``Registry.gc``) and leftovers of
    interrupted writes.
    """
    report = CheckReport()
    referenced: dict[str, str] = {}
    versions = {(r.name, r.version) for r in records}
    for rec in records:
        report.versions_checked += 1
        if rec.compute_manifest_digest() != rec.manifest_digest:
            report.problems.append(f"{rec.ref}: metadata does not match its manifest digest")
        for f in rec.files:
            referenced.setdefault(f.digest, f"{rec.ref}/{f.path}")
    for name, alias, number in alias_rows:
        if (name, number) not in versions:
            report.problems.append(f"{name}@{alias}: points at missing version {number}")
    stored = {b.digest: b for b in store.blobs()}
    for digest, where in sorted(referenced.items(), key=lambda kv: kv[1]):
        if digest not in stored:
            report.problems.append(f"{where}: blob {digest[:12]}… is missing")
            continue
        report.blobs_checked += 1
        if verify_content and not store.verify(digest):
            report.problems.append(f"{where}: blob {digest[:12]}… is corrupt")
    for digest, blob in stored.items():
        if digest not in referenced:
            report.unreferenced_blobs.append(digest)
            report.unreferenced_bytes += blob.size
    if isinstance(store, LocalStore):
        report.temp_files = sum(1 for _ in (store.root / "tmp").iterdir())
    return report
