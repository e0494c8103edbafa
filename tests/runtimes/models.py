"""Small real models, trained here (seeded) on data sets that ship with scikit-learn.

Each trainer is cached for the test session: the models are tiny and trained for a
few epochs / trees, so the whole framework suite stays fast on a busy 2-core machine.
The text model reads each digits image as a "sentence": the pixel intensities in
reading order are tokens, trailing blanks are dropped, so lengths vary (padding plus
an attention mask), and the label is the digit.
"""

from __future__ import annotations

import functools
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@functools.cache
def cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    return X.astype(np.float32), y


@functools.cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


@functools.cache
def pipeline() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = cancer()
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)


@functools.cache
def forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    X, y = cancer()
    return RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0).fit(X, y)


@functools.cache
def boosting() -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    X, y = cancer()
    return GradientBoostingClassifier(n_estimators=8, max_depth=2, random_state=0).fit(X, y)


@functools.cache
def lightgbm_booster() -> Any:
    import lightgbm as lgb

    X, y = digits()
    params = {"objective": "multiclass", "num_class": 10, "num_leaves": 8, "verbose": -1}
    params["num_threads"] = 1  # OpenMP threads fight over 2 busy cores
    return lgb.train({**params, "seed": 0}, lgb.Dataset(X, y), num_boost_round=4)


@functools.cache
def xgboost_booster() -> Any:
    import xgboost as xgb

    X, y = cancer()
    params = {"objective": "binary:logistic", "max_depth": 3, "seed": 0, "nthread": 1}
    return xgb.train(params, xgb.DMatrix(X, y), num_boost_round=4)


def _fit(module: Any, inputs: list[Any], target: Any, epochs: int) -> Any:
    import torch

    torch.manual_seed(0)
    opt = torch.optim.Adam(module.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    module.train()
    for _ in range(epochs):
        for start in range(0, len(target), 256):
            batch = [t[start : start + 256] for t in inputs]
            opt.zero_grad()
            out = module(*batch)
            logits = out["logits"] if isinstance(out, dict) else out
            loss_fn(logits, target[start : start + 256]).backward()
            opt.step()
    return module.eval()


@functools.cache
def mlp() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(0)
    X, y = digits()
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    return _fit(model, [torch.from_numpy(X)], torch.from_numpy(y), epochs=3)


def cnn_class() -> type:
    import torch
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.head = nn.Linear(4 * 8 * 8, 10)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.conv(image)).flatten(1))

    return DigitsCNN


@functools.cache
def cnn() -> Any:
    import torch

    torch.manual_seed(0)
    X, y = digits()
    model = cnn_class()()
    return _fit(model, [torch.from_numpy(X.reshape(-1, 1, 8, 8))], torch.from_numpy(y), epochs=2)


@functools.cache
def token_data(limit: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Digits as variable-length token sequences: (token ids, attention mask, labels)."""
    X, y = digits()
    pixels = np.rint(X[:limit] * 16).astype(np.int64)  # 0..16
    tokens = pixels + 1  # 0 is padding
    lengths = np.array([np.max(np.nonzero(row)[0]) + 1 if row.any() else 1 for row in pixels])
    mask = (np.arange(64)[None, :] < lengths[:, None]).astype(np.int64)
    return tokens * mask, mask, y[:limit]


def text_class() -> type:
    import torch
    from torch import nn

    class DigitsText(nn.Module):
        def __init__(self, vocab: int = 18, width: int = 16) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, width)
            layer = nn.TransformerEncoderLayer(width, 2, 32, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
            self.head = nn.Linear(width, 10)

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor
        ) -> dict[str, torch.Tensor]:
            hidden = self.encoder(self.embed(input_ids), src_key_padding_mask=attention_mask == 0)
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            return {"logits": self.head(pooled), "pooled": pooled}

    return DigitsText


@functools.cache
def text_model() -> Any:
    import torch

    torch.manual_seed(0)
    ids, mask, y = token_data()
    model = text_class()()
    return _fit(
        model,
        [torch.from_numpy(ids), torch.from_numpy(mask)],
        torch.from_numpy(y),
        epochs=2,
    )


def text_sample(rows: int = 6, length: int = 40) -> dict[str, np.ndarray]:
    ids, mask, _ = token_data()
    return {"input_ids": ids[:rows, :length], "attention_mask": mask[:rows, :length]}


@dataclass(frozen=True)
class Case:
    """One framework model: how to get it and a sample input for it."""

    name: str
    build: Any
    sample: Any
    framework: str

    def model(self) -> Any:
        return self.build()

    def inputs(self) -> Any:
        return self.sample()


CASES = [
    Case("pipeline", pipeline, lambda: cancer()[0][:40], "sklearn"),
    Case("forest", forest, lambda: cancer()[0][:40], "sklearn"),
    Case("boosting", boosting, lambda: cancer()[0][:40], "sklearn"),
    Case("lightgbm", lightgbm_booster, lambda: digits()[0][:40], "lightgbm"),
    Case("xgboost", xgboost_booster, lambda: cancer()[0][:40], "xgboost"),
    Case("mlp", mlp, lambda: digits()[0][:16], "pytorch"),
    Case("cnn", cnn, lambda: digits()[0][:16].reshape(-1, 1, 8, 8), "pytorch"),
    Case("text", text_model, text_sample, "pytorch"),
]


class Canary:
    """Unpickling this creates ``path``: proof that a pickle's code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


def malicious_joblib(path: Path, canary: Path) -> Path:
    """A joblib file holding a real estimator and a payload that would create ``canary``."""
    import joblib

    joblib.dump({"payload": Canary(canary), "model": pipeline()}, path)
    return path


def malicious_pickle(path: Path, canary: Path) -> Path:
    """A plain pickle of an estimator after a payload that would create ``canary``."""
    path.write_bytes(pickle.dumps({"model": forest(), "payload": Canary(canary)}, protocol=4))
    return path


def malicious_torch_pickle(path: Path, canary: Path) -> Path:
    """A ``torch.save`` archive of a module plus a payload that would create ``canary``."""
    import torch

    torch.save({"model": mlp(), "payload": Canary(canary)}, str(path))
    return path


def raw_pickle(path: Path, obj: Any) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path
