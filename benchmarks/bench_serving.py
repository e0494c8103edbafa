"""Serving benchmark: modelport against MLServer, a bare ASGI endpoint and in-process ORT.

Same models, same requests, one run, printed side by side:

- models: a logistic regression on breast_cancer (tabular, microseconds of compute) and
  a small transformer encoder over 8 token ids (milliseconds of compute); a wide MLP
  (~1.4 ms at batch 1, memory-bound) joins the dynamic batching comparison only;
- servers, one at a time, each as its own process on 127.0.0.1: modelport (`modelport
  serve`, one process, and ``--workers 2`` to use both cores), the bare endpoint
  (``bare_endpoint.py``: uvicorn + httptools + uvloop + orjson + ONNX Runtime, no
  validation — the Python floor, one process), MLServer 1.7.1 with an
  ONNX Runtime model class (installed into ``benchmarks/.venvs/mlserver`` on first
  use), and in-process ONNX Runtime calls (the limit);
- load: ``wrk`` (closed loop, keep-alive, one thread) at concurrency 1/8/32, batch
  1/64, V2 JSON and binary bodies. Prints req/s, rows/s, p50 and p99 and the ratios;
  then dynamic batching on/off for the transformer and the MLP at concurrency 32 (with
  the model's own gain from batch 64 in process beside it), and memory:
  idle RSS with one small model and RSS after 50 load/unload cycles.

Environment: MODELPORT_BENCH_SECONDS (default 3) per point, after
MODELPORT_BENCH_WARMUP (default 1) seconds of the same load that are not measured;
MODELPORT_BENCH_QUICK=1
for a reduced matrix. Results also go to benchmarks/results/serving.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

from benchmarks.app_cost import app_cost, report

HERE = Path(__file__).resolve().parent
SECONDS = float(os.environ.get("MODELPORT_BENCH_SECONDS", "3"))
WARMUP = int(os.environ.get("MODELPORT_BENCH_WARMUP", "1"))  # whole seconds (wrk's unit)
QUICK = os.environ.get("MODELPORT_BENCH_QUICK") == "1"
MLSERVER_VENV = HERE / ".venvs" / "mlserver"
CONCURRENCY = [1, 8, 32]
BATCHES = [1, 64]
ENCODINGS = ["json", "binary"]
#: The matrix's models; the wide MLP is only in the dynamic batching comparison.
MATRIX = ("tabular", "transformer")
MLP_IN, MLP_WIDTH = 512, 2048
#: Models in the dynamic batching comparison.
BATCHED = ("transformer", "mlp")
#: Alternating rounds of the headline points and of batching on/off.
ROUNDS = int(os.environ.get("MODELPORT_BENCH_ROUNDS", "5"))
BATCH_ROUNDS = 3


@dataclass
class Point:
    server: str
    model: str
    batch: int
    encoding: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.batch


# ------------------------------------------------------------------------- models


def build_models(root: Path) -> dict[str, Path]:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    lr = LogisticRegression(max_iter=2000).fit(X, y)
    tab = root / "tabular.onnx"
    tab.write_bytes(
        to_onnx(lr, X[:1], options={id(lr): {"zipmap": False}}, target_opset=17).SerializeToString()
    )
    import torch

    torch.manual_seed(0)

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = 384
            self.emb = torch.nn.Embedding(1000, d)
            layer = torch.nn.TransformerEncoderLayer(d, 6, 4 * d, batch_first=True, dropout=0.0)
            self.enc = torch.nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)
            self.head = torch.nn.Linear(d, 2)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.enc(self.emb(ids)).mean(1))

    def export(
        module: torch.nn.Module, example: torch.Tensor, name: str, io: tuple[str, str]
    ) -> Path:
        """``module`` as ``root/name.onnx``, batch axis dynamic on its input and output."""
        path = root / f"{name}.onnx"
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[io[0]],
            output_names=[io[1]],
            dynamic_axes={io[0]: {0: "batch"}, io[1]: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        return path

    tr = export(
        Encoder().eval(),
        torch.zeros(1, 8, dtype=torch.long),
        "transformer",
        ("input_ids", "logits"),
    )
    # A wide MLP (deep tabular / recommendation tower): at batch 1 its call streams
    # ~36 MB of weights for little arithmetic, so merging requests pays on a CPU.
    mlp = torch.nn.Sequential(
        torch.nn.Linear(MLP_IN, MLP_WIDTH),
        torch.nn.ReLU(),
        torch.nn.Linear(MLP_WIDTH, MLP_WIDTH),
        torch.nn.ReLU(),
        torch.nn.Linear(MLP_WIDTH, MLP_WIDTH),
        torch.nn.ReLU(),
        torch.nn.Linear(MLP_WIDTH, 2),
    ).eval()
    wide = export(mlp, torch.zeros(1, MLP_IN), "mlp", ("features", "scores"))
    return {"tabular": tab, "transformer": tr, "mlp": wide}


def inputs_for(model: str, batch: int) -> tuple[str, str, np.ndarray]:
    rng = np.random.default_rng(0)
    if model == "tabular":
        return "X", "FP32", rng.normal(10, 5, (batch, 30)).astype(np.float32)
    if model == "mlp":
        return "features", "FP32", rng.normal(0, 1, (batch, MLP_IN)).astype(np.float32)
    return "input_ids", "INT64", rng.integers(0, 1000, (batch, 8)).astype(np.int64)


def request_body(model: str, batch: int, encoding: str) -> tuple[bytes, dict[str, str]]:
    name, dtype, arr = inputs_for(model, batch)
    spec = {"name": name, "shape": list(arr.shape), "datatype": dtype}
    if encoding == "json":
        spec["data"] = arr.ravel().tolist()
        return json.dumps({"inputs": [spec]}).encode(), {"Content-Type": "application/json"}
    raw = arr.tobytes()
    spec["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps({"inputs": [spec], "parameters": {"binary_data_output": True}}).encode()
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


# ------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RUNNING: list[Server] = []


class Server:
    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        env: dict[str, str],
        ready_path: str = "/v2/health/ready",
    ) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self.log, stderr=self.log, cwd=env.get("_CWD")
        )
        RUNNING.append(self)
        end = time.monotonic() + 180
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"{name} exited: {self.log.read()[-2000:].decode()}")
            try:
                if httpx.get(self.url + ready_path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready")

    def rss_mb(self) -> float:
        import psutil

        return float(psutil.Process(self.proc.pid).memory_info().rss) / 2**20

    def stop(self) -> None:
        if self in RUNNING:
            RUNNING.remove(self)
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def start_modelport(
    home: Path, refs: list[str], extra: list[str] | None = None, name: str = "modelport"
) -> Server:
    port = free_port()
    env = {**os.environ, "MODELPORT_HOME": str(home)}
    argv = [
        sys.executable,
        "-m",
        "modelport.cli",
        "serve",
        *refs,
        "--no-grpc",
        "--http-port",
        str(port),
        *(extra or []),
    ]
    return Server(name, argv, port, env)


def start_bare(models: dict[str, Path]) -> Server:
    port = free_port()
    argv = [
        sys.executable,
        str(HERE / "bare_endpoint.py"),
        str(port),
        *[f"{n}={p}" for n, p in models.items()],
    ]
    return Server("bare", argv, port, dict(os.environ), ready_path="/health")


def ensure_mlserver() -> Path | None:
    """MLServer in its own virtual environment (its pins clash with modelport's)."""
    python = MLSERVER_VENV / "bin" / "python"
    if (MLSERVER_VENV / ".ok").exists():
        return python
    print("installing MLServer 1.7.1 into benchmarks/.venvs/mlserver (first run only)…", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "mlserver==1.7.1",
                "uvloop<0.22",
                "onnxruntime",
                "numpy<2.3",
            ],
            check=True,
            timeout=900,
        )
    except (subprocess.SubprocessError, OSError) as e:
        print(f"(MLServer unavailable: {e})")
        return None
    (MLSERVER_VENV / ".ok").touch()
    return python


def start_mlserver(
    python: Path, models: dict[str, Path], work: Path, *, tuned: bool = True
) -> Server:
    """MLServer with inference in its own process (``tuned``: parallel_workers=0, its
    fastest setting for a microsecond model), or with its default settings (one
    parallel worker process, metrics on)."""
    port = free_port()
    repo = work / "mlserver"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    shutil.copy(HERE / "mlserver_runtime.py", repo / "mlserver_runtime.py")
    settings: dict[str, object] = {
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "host": "127.0.0.1",
    }
    if tuned:
        settings |= {"parallel_workers": 0, "debug": False, "metrics_endpoint": None}
    (repo / "settings.json").write_text(json.dumps(settings))
    for name, path in models.items():
        d = repo / name
        d.mkdir()
        (d / "model-settings.json").write_text(
            json.dumps(
                {
                    "name": name,
                    "implementation": "mlserver_runtime.OnnxModel",
                    "parameters": {"uri": str(path)},
                }
            )
        )
    env = {**os.environ, "_CWD": str(repo), "PYTHONPATH": str(repo)}
    argv = [str(python.parent / "mlserver"), "start", str(repo)]
    return Server("mlserver" if tuned else "mls-default", argv, port, env)


# ------------------------------------------------------------------------- load


def wrk(
    url: str,
    body: bytes,
    headers: dict[str, str],
    concurrency: int,
    work: Path,
    seconds: float | None = None,
) -> tuple[float, float, float, int]:
    body_file = work / "body.bin"
    body_file.write_bytes(body)
    lines = [
        'wrk.method = "POST"',
        f'local f = io.open("{body_file}", "rb")',
        "wrk.body = f:read('*all')",
        "f:close()",
    ]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script = work / "post.lua"
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{seconds or SECONDS:g}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=(seconds or SECONDS) + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"\s(50|99)%\s+([\d.]+\w+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if errs:
        errors += sum(int(x) for x in errs.groups())
    return rps, _ms(lat.get("50", "0ms")), _ms(lat.get("99", "0ms")), errors


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def measure(
    server: Server,
    work: Path,
    models: list[str],
    encodings: list[str],
    path: str = "/v2/models/{m}/infer",
) -> list[Point]:
    points = []
    for model in models:
        for batch in BATCHES:
            for enc in encodings:
                body, headers = request_body(model, batch, enc)
                r = httpx.post(
                    server.url + path.format(m=model), content=body, headers=headers, timeout=120
                )
                if r.status_code != 200:
                    print(
                        f"  {server.name} {model} b{batch} {enc}: HTTP {r.status_code} "
                        f"{r.text[:120]} — skipped"
                    )
                    continue
                for c in CONCURRENCY:
                    if WARMUP:  # the same load, not measured: the last point's wake settles
                        wrk(server.url + path.format(m=model), body, headers, c, work, WARMUP)
                    rps, p50, p99, errors = wrk(
                        server.url + path.format(m=model), body, headers, c, work
                    )
                    points.append(Point(server.name, model, batch, enc, c, rps, p50, p99, errors))
                    print(
                        f"  {server.name:<9} {model:<11} b{batch:<3} {enc:<6} c{c:<3} "
                        f"{rps:>9.0f} req/s  p50 {p50:>7.2f} ms  p99 {p99:>7.2f} ms"
                        + (f"  errors {errors}" if errors else ""),
                        flush=True,
                    )
    return points


def alternate(
    servers: list[Server], model: str, batch: int, enc: str, c: int, work: Path, rounds: int
) -> dict[str, list[tuple[float, float, int]]]:
    """(req/s, p99 ms, errors) of each server in ``rounds`` rounds, the servers taking turns
    (the first one moving each round), so that a slow spell of the machine falls on
    all of them rather than on one."""
    body, headers = request_body(model, batch, enc)
    runs: dict[str, list[tuple[float, float, int]]] = {s.name: [] for s in servers}
    for r in range(rounds):
        k = r % len(servers)
        for s in servers[k:] + servers[:k]:
            url = s.url + f"/v2/models/{model}/infer"
            if WARMUP:
                wrk(url, body, headers, c, work, WARMUP)
            rps, _, p99, errors = wrk(url, body, headers, c, work)
            runs[s.name].append((rps, p99, errors))
    return runs


def summarise(runs: dict[str, list[tuple[float, float, int]]], prefix: str) -> dict[str, float]:
    """Print each server's median req/s and p99 with their ranges; the median req/s."""
    medians = {}
    for name, values in runs.items():
        rps, p99, errors = (list(column) for column in zip(*values, strict=True))
        medians[name] = float(np.median(rps))
        print(
            f"  {prefix}{name:<9} {medians[name]:>8.0f} req/s [{min(rps):.0f}–{max(rps):.0f}]"
            f"  p99 {float(np.median(p99)):.2f} ms [{min(p99):.2f}–{max(p99):.2f}]"
            + (f"  errors {sum(errors)}" if sum(errors) else "")
        )
    return medians


def in_process(models: dict[str, Path]) -> dict[tuple[str, int], float]:
    """Calls/s of ONNX Runtime alone (1 thread), the limit for any server."""
    import onnxruntime as ort

    out = {}
    for model, path in models.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        for batch in BATCHES:
            name, _, arr = inputs_for(model, batch)
            sess.run(None, {name: arr})
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < min(SECONDS, 2.0):
                sess.run(None, {name: arr})
                n += 1
            out[(model, batch)] = n / (time.perf_counter() - t0)
    return out


def memory(home: Path) -> dict[str, float]:
    server = start_modelport(home, ["tabular"])
    try:
        time.sleep(1.0)
        idle = server.rss_mb()
        body, headers = request_body("tabular", 1, "json")
        with httpx.Client(base_url=server.url) as c:
            for _ in range(20):
                c.post("/v2/models/tabular/infer", content=body, headers=headers)
            start = server.rss_mb()
            for _ in range(50):
                c.post("/v2/repository/models/tabular/unload").raise_for_status()
                c.post("/v2/repository/models/tabular/load").raise_for_status()
                c.post("/v2/models/tabular/infer", content=body, headers=headers)
            end = server.rss_mb()
    finally:
        server.stop()
    return {"idle_rss_mb": idle, "rss_before_cycles_mb": start, "rss_after_50_cycles_mb": end}


# ------------------------------------------------------------------------- report


def table(points: list[Point], limit: dict[tuple[str, int], float]) -> None:
    by = {(p.server, p.model, p.batch, p.encoding, p.concurrency): p for p in points}
    servers = [
        s
        for s in ("modelport", "mp-2w", "bare", "mlserver", "mls-default")
        if any(p.server == s for p in points)
    ]
    head = f"{'model':<11} {'b':>3} {'enc':<6} {'c':>3} |"
    for s in servers:
        head += f" {s + ' req/s':>15} {'p50':>6} {'p99':>6} |"
    head += f" {'mp/bare':>7} {'mp/mls':>7} {'mp/mlsd':>7} {'2w/bare':>7} {'2w/mls':>7}"
    head += f" {'rows/s mp':>10} {'ORT rows/s':>10}"
    print("\n" + head)
    print("-" * len(head))
    keys = sorted(
        {(p.model, p.batch, p.encoding, p.concurrency) for p in points},
        key=lambda k: (k[0], k[1], ENCODINGS.index(k[2]), k[3]),
    )
    for model, batch, enc, c in keys:
        row = f"{model:<11} {batch:>3} {enc:<6} {c:>3} |"
        for s in servers:
            p = by.get((s, model, batch, enc, c))
            row += (
                f" {p.rps:>15.0f} {p.p50_ms:>6.2f} {p.p99_ms:>6.2f} |"
                if p
                else f" {'n/a':>15} {'':>6} {'':>6} |"
            )
        mp = by.get(("modelport", model, batch, enc, c))
        bare = by.get(("bare", model, batch, enc, c))
        mls = by.get(("mlserver", model, batch, enc, c))
        ratio = lambda a, b: f"{a.rps / b.rps:>7.2f}" if a and b and b.rps else f"{'':>7}"  # noqa: E731
        mp2 = by.get(("mp-2w", model, batch, enc, c))
        mlsd = by.get(("mls-default", model, batch, enc, c))
        row += f" {ratio(mp, bare)} {ratio(mp, mls)} {ratio(mp, mlsd)} {ratio(mp2, bare)}"
        row += f" {ratio(mp2, mls)}"
        row += f" {mp.rows_per_s if mp else 0:>10.0f} {limit.get((model, batch), 0) * batch:>10.0f}"
        print(row)


def main() -> None:
    global CONCURRENCY, BATCHES
    if shutil.which("wrk") is None:
        sys.exit("the serving benchmark needs wrk: apt-get install wrk")
    if QUICK:
        CONCURRENCY, BATCHES = [1, 32], [1, 64]
    work = Path(tempfile.mkdtemp(prefix="mp-bench-"))
    try:
        models = build_models(work)
        matrix = {m: models[m] for m in MATRIX}
        home = work / "home"
        env_home = {**os.environ, "MODELPORT_HOME": str(home)}
        for name, path in models.items():
            subprocess.run(
                [sys.executable, "-m", "modelport.cli", "register", str(path), "--name", name],
                env=env_home,
                check=True,
                capture_output=True,
            )
        points: list[Point] = []
        print("in-process ONNX Runtime (1 thread):")
        limit = in_process(models)
        for (m, b), v in limit.items():
            print(f"  {m:<11} b{b:<3} {v:>9.0f} calls/s  {v * b:>10.0f} rows/s")
        kinds = [("json", 1), ("binary", 1), ("json", 64), ("binary", 64)]
        report(
            app_cost(
                home,
                models["tabular"],
                {f"{e} b{b}": request_body("tabular", b, e) for e, b in kinds},
            )
        )
        print("modelport:")
        s = start_modelport(home, list(matrix))
        points += measure(s, work, list(matrix), ENCODINGS)
        s.stop()
        print("modelport --workers 2 (both cores):")
        s = start_modelport(home, list(matrix), ["--workers", "2"], name="mp-2w")
        points += measure(s, work, list(matrix), ENCODINGS)
        s.stop()
        print("bare endpoint:")
        s = start_bare(matrix)
        points += measure(s, work, list(matrix), ENCODINGS)
        s.stop()
        python = ensure_mlserver()
        if python is not None:
            for tuned, label in (
                (True, "parallel_workers=0, its fastest here"),
                (False, "default settings"),
            ):
                print(f"MLServer 1.7.1 ({label}; binary tensors unsupported → JSON only):")
                try:
                    s = start_mlserver(python, matrix, work, tuned=tuned)
                    points += measure(s, work, list(matrix), ["json"])
                    s.stop()
                except RuntimeError as e:
                    print(f"  MLServer failed to start: {e}")
        table(points, limit)

        headline: dict[str, dict[str, object]] = {}
        if python is not None:
            print(
                f"\nalternating, tabular batch 1 JSON ({ROUNDS} rounds of {SECONDS:g} s each;"
                " median [min–max]):"
            )
            try:
                trio = [
                    start_modelport(home, list(matrix)),
                    start_bare(matrix),
                    start_mlserver(python, matrix, work, tuned=True),
                ]
            except RuntimeError as e:
                print(f"  a server failed to start: {e}")
                trio = []
            for c in (1, 32) if trio else ():
                runs = alternate(trio, "tabular", 1, "json", c, work, ROUNDS)
                med = summarise(runs, f"c{c:<3} ")
                print(
                    f"  c{c:<3} modelport/MLServer {med['modelport'] / med['mlserver']:.2f}×"
                    f"  modelport/bare {med['modelport'] / med['bare']:.2f}×"
                )
                headline[f"c{c}"] = {"runs": runs, "median_rps": med}
            for server in trio:
                server.stop()

        batching: dict[str, dict[str, object]] = {}
        for model in BATCHED:
            print(
                f"\ndynamic batching, {model}, batch 1, binary, concurrency 32"
                f" ({BATCH_ROUNDS} alternating rounds; median [min–max]):"
            )
            pair = [
                start_modelport(home, [model], name="off"),
                start_modelport(
                    home,
                    [model],
                    ["--max-batch-size", "32", "--max-queue-delay-us", "2000"],
                    name="on",
                ),
            ]
            runs = alternate(pair, model, 1, "binary", 32, work, BATCH_ROUNDS)
            for server in pair:
                server.stop()
            med = summarise(runs, "batching ")
            ceiling = limit[(model, 64)] * 64 / limit[(model, 1)]
            print(
                f"  ratio on/off: {med['on'] / med['off']:.2f}×  (in process, 1 thread, rows/s"
                f" at batch 64 against batch 1: {ceiling:.2f}×)"
            )
            batching[model] = {"runs": runs, "median_rps": med, "in_process_gain": ceiling}

        print("\nmemory (modelport, one small model):")
        mem = memory(home)
        print(
            f"  idle RSS {mem['idle_rss_mb']:.0f} MB; 50 load/unload cycles: "
            f"{mem['rss_before_cycles_mb']:.0f} → {mem['rss_after_50_cycles_mb']:.0f} MB "
            f"({(mem['rss_after_50_cycles_mb'] / mem['rss_before_cycles_mb'] - 1) * 100:+.1f}%)"
        )
        results = HERE / "results"
        results.mkdir(exist_ok=True)
        (results / "serving.json").write_text(
            json.dumps(
                {
                    "points": [asdict(p) for p in points],
                    "ort_limit": {f"{m}/b{b}": v for (m, b), v in limit.items()},
                    "batching": batching,
                    "alternating": headline,
                    "memory": mem,
                    "seconds_per_point": SECONDS,
                },
                indent=2,
            )
        )
    finally:
        for server in list(RUNNING):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
