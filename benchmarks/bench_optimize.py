"""Optimization passes side by side: size, latency at batch 1 and 32, and the metric.

Four models, trained (or seeded) here from bundled data: an MLP and a small CNN on
digits, a scikit-learn MLP on breast_cancer, and a transformer encoder (d_model 256,
4 layers, 64 tokens, seeded weights; compared by cosine similarity with the
original's embeddings). For each, the original and every optimized version are timed
together through onnxruntime (interleaved rounds, the median of 7 samples), one
intra-op thread unless MODELPORT_BENCH_THREADS says otherwise. Full reports (JSON,
Markdown, HTML with the plot) are written under MODELPORT_BENCH_OUT (default: the
system temp directory).

Targets checked at the end: dynamic int8 on the encoder at least 1.5x faster at batch
32 and at most 0.35x the size with a cosine drop under 0.01; structured pruning at
50% on the MLP at least 1.5x faster with an accuracy drop under 1 point.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from modelport.core.config import Settings
from modelport.core.errors import ModelportError
from modelport.optimize import (
    Distill,
    DropLayers,
    GraphOptimize,
    LowRank,
    MeasureSettings,
    OptimizeOptions,
    Prune,
    Quantize,
    save_dataset,
)
from modelport.optimize.pipeline import session
from modelport.optimize.report import Report
from modelport.registry import Registry

THREADS = int(os.environ.get("MODELPORT_BENCH_THREADS", "1"))
OUT = Path(os.environ.get("MODELPORT_BENCH_OUT", Path(tempfile.gettempdir()) / "modelport-bench"))


def _export(module, example, path: Path, input_name: str, output_name: str) -> Path:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


def _fit(module, X: np.ndarray, y: np.ndarray, epochs: int) -> None:
    import torch

    opt = torch.optim.Adam(module.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)
    module.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(xt[idx]), yt[idx]).backward()
            opt.step()
    module.eval()


def _digits(dest: Path, image: bool) -> dict[str, Path]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    if image:
        X = X.reshape(-1, 1, 8, 8)
    idx = np.random.default_rng(0).permutation(len(X))
    parts = {"train": idx[:1200], "calibration": idx[1200:1400], "validation": idx[1400:]}
    return {
        k: save_dataset(dest / f"{k}.npz", {"X": X[v]}, y[v].astype(np.int64))
        for k, v in parts.items()
    }


def digits_mlp(dest: Path) -> tuple[Path, dict[str, Path]]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    data = _digits(dest, image=False)
    z = np.load(data["train"])
    m = nn.Sequential(
        nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )
    _fit(m, z["X"], z["y"], epochs=15)
    return _export(m, torch.zeros(1, 64), dest / "mlp.onnx", "input", "logits"), data


def digits_cnn(dest: Path) -> tuple[Path, dict[str, Path]]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    data = _digits(dest, image=True)
    z = np.load(data["train"])
    m = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 10),
    )
    _fit(m, z["X"], z["y"], epochs=10)
    return _export(m, torch.zeros(1, 1, 8, 8), dest / "cnn.onnx", "image", "logits"), data


def cancer_mlp(dest: Path) -> tuple[Path, dict[str, Path]]:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    idx = np.random.default_rng(0).permutation(len(X))
    parts = {"train": idx[:330], "calibration": idx[330:430], "validation": idx[430:]}
    pipe = make_pipeline(StandardScaler(), MLPClassifier((128, 64), max_iter=400, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        pipe.fit(X[parts["train"]], y[parts["train"]])
    onx = to_onnx(pipe, X[:1], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3})
    (dest / "cancer.onnx").write_bytes(onx.SerializeToString())
    data = {
        k: save_dataset(dest / f"{k}.npz", {"X": X[v]}, y[v].astype(np.int64))
        for k, v in parts.items()
    }
    return dest / "cancer.onnx", data


def encoder(dest: Path) -> tuple[Path, dict[str, Path]]:
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, batch_first=True)
                for _ in range(4)
            )

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x.mean(dim=1)

    m = Encoder().eval()
    rng = np.random.default_rng(1)
    data = {
        k: save_dataset(dest / f"{k}.npz", {"X": rng.standard_normal((n, 64, 256)).astype("f4")})
        for k, n in (("calibration", 64), ("validation", 96))
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on MultiheadAttention's shape checks
        path = _export(m, torch.zeros(1, 64, 256), dest / "encoder.onnx", "tokens", "embedding")
    return path, data


CASES = {
    "mlp (digits, 64-512-512-10)": (
        digits_mlp,
        "accuracy",
        [
            [Quantize("dynamic")],
            [Quantize("static")],
            [Prune(0.5, structured=True)],
            [Prune(0.5, structured=True), Quantize("dynamic")],
            [Prune(0.5)],
            [LowRank(energy=0.9)],
            [Quantize("fp16")],
            [GraphOptimize()],
        ],
    ),
    "cnn (digits, conv 32-64)": (
        digits_cnn,
        "accuracy",
        [
            [Quantize("static", per_channel=True)],
            [Quantize("dynamic")],
            [Prune(0.5, structured=True)],
            [Prune(0.5, structured=True), Quantize("static", per_channel=True)],
            [Distill("cnn:8,16", epochs=20)],
            [Quantize("fp16")],
        ],
    ),
    "tabular (breast_cancer, sklearn MLP 128-64)": (
        cancer_mlp,
        "accuracy",
        [
            [Quantize("dynamic")],
            [Prune(0.5, structured=True)],
            [Distill("tree:depth=4")],
            [Distill("forest:n=20,depth=6")],
        ],
    ),
    "transformer encoder (d256, 4 layers, seq 64)": (
        encoder,
        "cosine",
        [
            [Quantize("dynamic")],
            [Quantize("dynamic", per_channel=True)],
            [Quantize("static")],
            [Prune(0.5, structured=True)],
            [DropLayers(1)],
            [DropLayers(1), Quantize("dynamic")],
            [Quantize("fp16")],
        ],
    ),
}


def run_case(reg: Registry, title: str, root: Path) -> Report:
    build, metric, chains = CASES[title]
    slug = title.split(" ")[0]
    dest = root / slug
    dest.mkdir(parents=True)
    path, data = build(dest)
    version = reg.register(path, slug)
    options = OptimizeOptions(
        data["validation"],
        metric,
        max_drop=0.01,
        calibration=data["calibration"],
        train=data.get("train"),
        report_dir=OUT / "optimize" / slug,
        measure=MeasureSettings(batch_sizes=(1, 32), threads=THREADS, repeats=7),
    )
    failed = []
    with session(reg, version.ref, options) as s:
        results, labels, seconds = [], [], []
        for chain in chains:
            label = " + ".join(p.describe() for p in chain)
            start = time.perf_counter()
            try:
                results.append(s.evaluate(chain))
            except ModelportError as e:
                failed.append(f"{label}: {e}")
                continue
            seconds.append(time.perf_counter() - start)
            labels.append(label)
        entries = s.entries(results, labels)
        report = s.report(entries, None, "passes")
    report.notes += [f"failed: {f}" for f in failed]
    timings = zip(labels, seconds, strict=True)
    report.notes.append("pass seconds: " + ", ".join(f"{lbl}: {t:.1f}" for lbl, t in timings))
    report.write(OUT / "optimize" / slug)
    return report


def show(title: str, report: Report) -> None:
    parent = report.parent_entry
    print(f"\n{title}  [{report.metric.name}, gate: drop ≤ {report.max_drop}]")
    head = (
        f"{'version':<46}{'size':>11}{'params':>10}{'b1 ms':>9}{'b32 ms':>9}"
        f"{'x b1':>7}{'x b32':>7}{report.metric.name:>10}{'drop':>9}  gate"
    )
    print(head)
    for v in report.versions:
        b1, b32 = v.latency_ms(1) or 0.0, v.latency_ms(32) or 0.0
        p1, p32 = parent.latency_ms(1) or 0.0, parent.latency_ms(32) or 0.0
        gate = "" if v.passed_gate is None else ("pass" if v.passed_gate else "FAIL")
        print(
            f"{(v.label if v is not parent else 'original'):<46.46}"
            f"{v.size_bytes / 1024:>9.1f}Ki{v.params:>10,}{b1:>9.3f}{b32:>9.3f}"
            f"{p1 / b1 if b1 else 0:>6.2f}x{p32 / b32 if b32 else 0:>6.2f}x"
            f"{v.metric:>10.4f}{v.metric_drop:>+9.4f}  {gate}"
        )
    for note in report.notes:
        if note.startswith("failed: "):
            print(f"  {note}")


def targets(reports: dict[str, Report]) -> None:
    print("\ntargets")
    enc = reports["transformer encoder (d256, 4 layers, seq 64)"]
    mlp = reports["mlp (digits, 64-512-512-10)"]
    checks = []
    q = enc.entry("quantize dynamic")
    if q is not None:
        speed = (enc.parent_entry.latency_ms(32) or 0) / (q.latency_ms(32) or 1)
        size = q.size_bytes / enc.parent_entry.size_bytes
        checks += [
            ("encoder dynamic int8: speed-up at batch 32 ≥ 1.5x", speed, speed >= 1.5),
            ("encoder dynamic int8: size ratio ≤ 0.35", size, size <= 0.35),
            ("encoder dynamic int8: cosine drop < 0.01", q.metric_drop, q.metric_drop < 0.01),
        ]
    p = mlp.entry("prune 50% structured")
    if p is not None:
        speed = (mlp.parent_entry.latency_ms(32) or 0) / (p.latency_ms(32) or 1)
        checks += [
            ("mlp structured 50%: speed-up at batch 32 ≥ 1.5x", speed, speed >= 1.5),
            ("mlp structured 50%: accuracy drop < 0.01", p.metric_drop, p.metric_drop < 0.01),
        ]
    for name, value, ok in checks:
        print(f"  {name:<52} {value:>8.4f}  {'met' if ok else 'NOT MET'}")


def main() -> None:
    import torch

    torch.set_num_threads(1)  # training these small models: one thread is fastest here
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reg = Registry.from_settings(Settings(home=root / "home"))
        for title in CASES:
            reports[title] = run_case(reg, title, root)
            show(title, reports[title])
        reg.close()
    targets(reports)
    print(f"\nintra-op threads: {THREADS}; reports: {OUT / 'optimize'}")


if __name__ == "__main__":
    main()
