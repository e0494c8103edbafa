"""Versions of the libraries that produced a model, for lineage records.

Example:
    >>> "modelport" in tool_versions("numpy")
    True
"""

from __future__ import annotations

import contextlib
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version


def tool_versions(*packages: str) -> dict[str, str]:
    """Installed versions of modelport and the given distributions (missing ones left out)."""
    out = {}
    for p in ("modelport", *packages):
        with contextlib.suppress(PackageNotFoundError):
            out[p] = pkg_version(p)
    return out
