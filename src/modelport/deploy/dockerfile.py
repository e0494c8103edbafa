"""The Dockerfile, pinned requirements and serve configuration put into a package.

The image is small and locked down: a slim Python base, dependencies installed from the
pinned ``requirements.txt`` without a cache, the package (models included) copied in as
root-owned read-only files, a non-root user, and a ``HEALTHCHECK`` on
``/v2/health/ready``. Its entry point serves the package with digests verified before
anything loads.

Example:
    >>> "HEALTHCHECK" in dockerfile("python:3.11-slim")
    True
    >>> pinned_requirements(["onnx"])[0].startswith("modelport")
    True
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, requires, version
from typing import Any

#: Package directory inside the image; manifests use the same path.
IMAGE_PACKAGE_DIR = "/opt/modelport/package"
USER_ID = 10001
HTTP_PORT = 8000
GRPC_PORT = 8001
#: Extras a served model of each framework needs (beyond the core install).
FRAMEWORK_EXTRAS = {
    "sklearn": "sklearn",
    "skops": "sklearn",
    "torch": "torch",
    "pytorch": "torch",
    "lightgbm": "lightgbm",
    "xgboost": "xgboost",
}
_REQ = re.compile(r"^\s*([A-Za-z0-9._-]+(?:\[[^\]]*\])?)\s*([^;]*?)\s*(?:;\s*(.*))?$")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def default_base_image() -> str:
    """``python:X.Y-slim`` for the running interpreter's version."""
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def pinned_requirements(frameworks: Iterable[str], extras: Iterable[str] = ()) -> list[str]:
    """modelport and the dependencies serving needs, pinned to the installed versions.

    Includes the ``serve`` and ``security`` extras, plus the extras of the given model
    frameworks. A dependency that is not installed here keeps its version range.
    """
    wanted = {"serve", "security", *extras}
    wanted |= {FRAMEWORK_EXTRAS[f] for f in frameworks if f in FRAMEWORK_EXTRAS}
    try:
        lines = [f"modelport=={version('modelport')}"]
        specs = requires("modelport") or []
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return ["modelport"]
    seen: dict[str, str] = {}
    for spec in specs:
        m = _REQ.match(spec)
        if m is None:
            continue
        name, rng, marker = m.group(1), m.group(2), m.group(3) or ""
        extra = _EXTRA.search(marker)
        if marker and (extra is None or extra.group(1) not in wanted):
            continue
        base = name.split("[")[0].lower()
        if base == "modelport" or base in seen:
            continue
        try:
            seen[base] = f"{name}=={version(base)}"
        except PackageNotFoundError:
            seen[base] = f"{name}{rng}"
    return lines + sorted(seen.values(), key=str.lower)


def _healthcheck() -> str:
    probe = (
        "import sys, urllib.request as u; "
        f"sys.exit(0 if u.urlopen('http://127.0.0.1:{HTTP_PORT}/v2/health/ready', "
        "timeout=2).status == 200 else 1)"
    )
    return json.dumps(["python", "-c", probe])


def dockerfile(base_image: str) -> str:
    """A Dockerfile whose build context is an extracted package."""
    return f"""\
# syntax=docker/dockerfile:1
# Built by `modelport package`. Build from the extracted package:
#   modelport unpack PACKAGE.tar.gz --out ctx && docker build -t IMAGE ctx
FROM {base_image}

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    MODELPORT_HOME=/tmp/modelport

RUN groupadd --system --gid {USER_ID} modelport \\
 && useradd --system --uid {USER_ID} --gid {USER_ID} --no-create-home \\
      --home-dir /nonexistent --shell /usr/sbin/nologin modelport

COPY requirements.txt /opt/modelport/requirements.txt
RUN pip install --no-cache-dir -r /opt/modelport/requirements.txt

# The package (models, manifests, serve.yaml) is owned by root and read-only to the
# server, which verifies every digest before loading.
COPY --chown=root:root . {IMAGE_PACKAGE_DIR}

USER {USER_ID}:{USER_ID}
EXPOSE {HTTP_PORT} {GRPC_PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \\
  CMD {_healthcheck()}

ENTRYPOINT ["modelport"]
# Inside a container the listener must leave loopback: bind all addresses. Pass --auth
# (and API keys) instead of --insecure when the network around it is not trusted.
CMD ["serve", "--package", "{IMAGE_PACKAGE_DIR}", "--host", "0.0.0.0", "--insecure"]
"""


DOCKERIGNORE = "**/.git\n**/__pycache__\n"


def serve_config(models: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The package's ``serve.yaml``: every packaged model, pinned to its version."""
    return {
        "http_port": HTTP_PORT,
        "grpc_port": GRPC_PORT,
        "models": [{"ref": f"{m['name']}:{m['version']}"} for m in models],
    }
