"""The model registry: metadata (SQLite/PostgreSQL) plus content-addressed artifacts."""

from modelport.registry.records import (
    AliasEvent,
    AliasInfo,
    CheckReport,
    FileEntry,
    GcReport,
    Lineage,
    ModelSummary,
    ModelVersion,
)
from modelport.registry.service import Registry

__all__ = [
    "AliasEvent",
    "AliasInfo",
    "CheckReport",
    "FileEntry",
    "GcReport",
    "Lineage",
    "ModelSummary",
    "ModelVersion",
    "Registry",
]
