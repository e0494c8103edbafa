"""Registry operations on the embedded default and on PostgreSQL + S3-compatible storage.

Prints, side by side: register (a 1 KiB and a 64 MiB model), get by alias, list, and
open (materialise + verify). PostgreSQL is used when reachable at
MODELPORT_BENCH_POSTGRES_URL (default: the local server); S3 is a local moto server.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from modelport.core.config import Settings
from modelport.registry import Registry

PG = os.environ.get(
    "MODELPORT_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def small_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
    )
    onnx.save_model(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path)
    )
    return path


def big_model(path: Path, mib: int) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((mib * 1024, 256)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 256])],
        [numpy_helper.from_array(w, "w")],
    )
    onnx.save_model(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path)
    )
    return path


def timed(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


def run_backend(settings: Settings, small: Path, big: Path) -> dict[str, float]:
    reg = Registry.from_settings(settings)
    out = {
        "register 1 KiB (ms)": timed(lambda: reg.register(small, "small"), 20),
        "register 64 MiB (ms)": timed(lambda: reg.register(big, f"big-{uuid.uuid4().hex[:6]}"), 3),
    }
    reg.set_alias("small", "production", 1)
    out["get name@alias (ms)"] = timed(lambda: reg.get("small@production"), 200)
    out["list 4 models (ms)"] = timed(reg.list, 100)
    out["open cached (ms)"] = timed(lambda: reg.open("small:1"), 200)
    reg.close()
    return out


def main() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        small, big = small_model(root / "small.onnx"), big_model(root / "big.onnx", 64)
        results = {"sqlite + local": run_backend(Settings(home=root / "a"), small, big)}
        try:
            from moto.server import ThreadedMotoServer
            from sqlalchemy import create_engine, text

            admin = create_engine(PG, isolation_level="AUTOCOMMIT")
            db = f"modelport_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{db}"'))
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            import boto3

            endpoint = f"http://{host}:{port}"
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
                Bucket="bench"
            )
            url = admin.url.set(database=db).render_as_string(hide_password=False)
            try:
                results["postgres + s3 (moto)"] = run_backend(
                    Settings(
                        home=root / "b",
                        registry_url=url,
                        store_url="s3://bench/m",
                        s3_endpoint_url=endpoint,
                    ),
                    small,
                    big,
                )
            finally:
                server.stop()
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE "{db}" WITH (FORCE)'))
        except Exception as e:  # the table says why the column is missing
            print(f"(postgres + s3 skipped: {type(e).__name__}: {e})")
        names = list(results)
        print(f"{'operation':<24}" + "".join(f"{n:>24}" for n in names))
        for op in results[names[0]]:
            print(f"{op:<24}" + "".join(f"{results[n][op]:>24.2f}" for n in names))


if __name__ == "__main__":
    main()
