"""Small real models for the optimization tests, trained here from bundled datasets.

- an MLP and a small CNN on digits (PyTorch, exported with the TorchScript exporter),
- a scaled MLP classifier on breast_cancer (scikit-learn, exported with skl2onnx),
- a transformer encoder with seeded weights (embeddings: compared by cosine).

Each builder returns the ONNX file plus the data splits as ``.npz`` files in the layout
``modelport optimize`` reads.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelport.optimize.data import save_dataset


@dataclass(frozen=True)
class Built:
    onnx: Path
    train: Path
    calibration: Path
    validation: Path
    module: object | None = None  # the torch module, when there is one


def export(module, example, path: Path, input_name: str, output_name: str) -> Path:
    import torch

    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export but is the
        # quick, dependable one for these small modules; its tracer also warns about
        # the shape checks inside nn.MultiheadAttention, which are constant here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
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


def digits_splits(image: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    if image:
        X = X.reshape(-1, 1, 8, 8)
    idx = np.random.default_rng(0).permutation(len(X))
    parts = {"train": idx[:1200], "calibration": idx[1200:1400], "validation": idx[1400:]}
    return {k: (X[v], y[v].astype(np.int64)) for k, v in parts.items()}


def _fit(module, X: np.ndarray, y: np.ndarray, epochs: int, lr: float = 3e-3) -> None:
    import torch

    torch.manual_seed(0)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)
    module.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(xt[idx]), yt[idx]).backward()
            opt.step()
    module.eval()


def _write_splits(dest: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    return {k: save_dataset(dest / f"{k}.npz", {"X": X}, y) for k, (X, y) in splits.items()}


def digits_mlp(dest: Path, hidden: int = 128) -> Built:
    import torch
    from torch import nn

    torch.manual_seed(0)
    splits = digits_splits(image=False)
    module = nn.Sequential(
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )
    _fit(module, *splits["train"], epochs=12)
    files = _write_splits(dest, splits)
    onnx = export(module, torch.zeros(1, 64), dest / "mlp.onnx", "input", "logits")
    return Built(onnx, files["train"], files["calibration"], files["validation"], module)


def digits_cnn(dest: Path) -> Built:
    import torch
    from torch import nn

    torch.manual_seed(0)
    splits = digits_splits(image=True)
    module = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )
    _fit(module, *splits["train"], epochs=8)
    files = _write_splits(dest, splits)
    onnx = export(module, torch.zeros(1, 1, 8, 8), dest / "cnn.onnx", "image", "logits")
    return Built(onnx, files["train"], files["calibration"], files["validation"], module)


def cancer_mlp(dest: Path) -> Built:
    from skl2onnx import to_onnx
    from sklearn.datasets import load_breast_cancer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    dest.mkdir(parents=True, exist_ok=True)
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    idx = np.random.default_rng(0).permutation(len(X))
    tr, cal, val = idx[:330], idx[330:430], idx[430:]
    pipe = make_pipeline(StandardScaler(), MLPClassifier((64, 32), max_iter=400, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's ConvergenceWarning on a short fit
        pipe.fit(X[tr], y[tr])
    onx = to_onnx(pipe, X[:1], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3})
    path = dest / "cancer.onnx"
    path.write_bytes(onx.SerializeToString())
    files = {
        k: save_dataset(dest / f"cancer-{k}.npz", {"X": X[v]}, y[v].astype(np.int64))
        for k, v in (("train", tr), ("calibration", cal), ("validation", val))
    }
    return Built(path, files["train"], files["calibration"], files["validation"])


def encoder(dest: Path, d_model: int = 32, layers: int = 4, seq: int = 8, quiet_layer: int = 2):
    """A post-norm transformer encoder with seeded weights; layer ``quiet_layer`` adds ~0.

    Its attention output and second feed-forward weights are scaled down, so dropping
    it changes the embeddings least: the block-dropping test knows which to expect.
    """
    import torch
    from torch import nn

    torch.manual_seed(0)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(d_model, 4, 2 * d_model, dropout=0.0, batch_first=True)
                for _ in range(layers)
            )

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x.mean(dim=1)

    dest.mkdir(parents=True, exist_ok=True)
    module = Encoder().eval()
    with torch.no_grad():
        quiet = module.layers[quiet_layer]
        quiet.self_attn.out_proj.weight.mul_(0.01)
        quiet.linear2.weight.mul_(0.01)
    rng = np.random.default_rng(1)
    data = {
        k: rng.standard_normal((n, seq, d_model)).astype(np.float32)
        for k, n in (("train", 256), ("calibration", 64), ("validation", 128))
    }
    files = {k: save_dataset(dest / f"enc-{k}.npz", {"X": v}) for k, v in data.items()}
    onnx = export(
        module, torch.zeros(1, seq, d_model), dest / "encoder.onnx", "tokens", "embedding"
    )
    return Built(onnx, files["train"], files["calibration"], files["validation"], module)


def context(built: Built, metric: str, workdir: Path, *, data: str = "calibration"):
    """A pass context on the model's validation data, as the pipeline builds it."""
    from modelport.optimize import PassContext, load_dataset
    from modelport.optimize.measure import predict_all
    from modelport.optimize.metrics import get_metric
    from modelport.runtimes.onnx import OnnxFormat

    sig = OnnxFormat().inspect(built.onnx).signature
    validation = load_dataset(built.validation, sig)
    extra = {}
    if data == "calibration":
        extra["calibration"] = load_dataset(built.calibration, sig)
    elif data == "train":
        extra["train"] = load_dataset(built.train, sig)
    return PassContext(
        workdir, validation, predict_all(built.onnx, validation), get_metric(metric), **extra
    )


def evaluate(path: Path, ctx) -> float:
    """The context's metric of the model at ``path`` on the validation data."""
    from modelport.optimize.measure import predict_all
    from modelport.optimize.metrics import score

    outputs = predict_all(path, ctx.validation)
    return score(ctx.metric, outputs, ctx.reference, ctx.validation.labels)
