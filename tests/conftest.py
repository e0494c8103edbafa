"""Shared fixtures: real backends (SQLite + files, PostgreSQL + S3-compatible server) and
small real models trained here from seeded data.

PostgreSQL: ``MODELPORT_TEST_POSTGRES_URL`` (default: the local server as user postgres)
names an admin connection; each test gets its own throwaway database. Without a
reachable server the PostgreSQL cases are skipped with the reason, unless
``MODELPORT_TEST_REQUIRE_POSTGRES=1`` (set by .ci/run), which makes them fail.

S3: a moto server runs on a free 127.0.0.1 port for the whole session; each test gets
its own bucket.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from modelport.core.config import Settings

PG_ADMIN_URL = os.environ.get(
    "MODELPORT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("MODELPORT_TEST_REQUIRE_POSTGRES") == "1"

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ----------------------------------------------------------------------------- postgres


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[object]:
    """An engine on the admin database, or a skip saying why there is none."""
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    except Exception as e:
        msg = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(e).__name__}"
        if REQUIRE_PG:
            pytest.fail(msg + " (MODELPORT_TEST_REQUIRE_POSTGRES=1)")
        pytest.skip(msg + " — PostgreSQL registry tests skipped")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin: object) -> Iterator[str]:
    """A fresh throwaway database, dropped after the test."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = f"modelport_test_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as c:  # type: ignore[attr-defined]
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with pg_admin.connect() as c:  # type: ignore[attr-defined]
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# ----------------------------------------------------------------------------- S3


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible HTTP server (moto) on 127.0.0.1."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    import boto3

    name = f"mp-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


# ----------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class Backend:
    """Settings for one registry backend combination."""

    kind: str
    settings: Settings

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (CLI, crash tests) using this backend."""
        env = dict(os.environ)
        env["MODELPORT_HOME"] = str(self.settings.home)
        for key, value in (
            ("MODELPORT_REGISTRY_URL", self.settings.registry_url),
            ("MODELPORT_STORE_URL", self.settings.store_url),
            ("MODELPORT_S3_ENDPOINT_URL", self.settings.s3_endpoint_url),
        ):
            if value:
                env[key] = value
            else:
                env.pop(key, None)
        return env


@pytest.fixture(params=["sqlite-local", "postgres-s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The embedded default and the server setup; every registry test runs on both."""
    home = tmp_path / "home"
    if request.param == "sqlite-local":
        return Backend("sqlite-local", Settings(home=home))
    pg = request.getfixturevalue("pg_url")
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("s3_endpoint")
    return Backend(
        "postgres-s3",
        Settings(
            home=home,
            registry_url=pg,
            store_url=f"s3://{bucket}/models",
            s3_endpoint_url=endpoint,
        ),
    )


@pytest.fixture
def registry(backend: Backend) -> Iterator[object]:
    from modelport.registry import Registry

    reg = Registry.from_settings(backend.settings)
    yield reg
    reg.close()


# ----------------------------------------------------------------------------- models


def train_iris_onnx(path: Path, seed: int = 0) -> Path:
    """A logistic regression on iris (seeded), exported to ONNX with plain tensor outputs."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(X))
    model = LogisticRegression(max_iter=500, C=1.0 + seed).fit(X[idx], y[idx])
    onx = to_onnx(model, X[:1], options={id(model): {"zipmap": False}}, target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return path


@pytest.fixture(scope="session")
def iris_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_iris_onnx(tmp_path_factory.mktemp("models") / "iris.onnx")


@pytest.fixture(scope="session")
def iris_onnx_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different iris model (other seed and regularisation)."""
    return train_iris_onnx(tmp_path_factory.mktemp("models") / "iris_b.onnx", seed=1)


def make_big_onnx(path: Path, n_floats: int, seed: int = 0) -> Path:
    """A MatMul model with one large initializer, for upload/crash tests."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    cols = 256
    w = rng.standard_normal((n_floats // cols, cols)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, cols])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path
