"""Fixtures: the four real models (trained once per session) and a registry to publish to."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelport.core.config import Settings
from modelport.optimize import MeasureSettings
from tests.optimize import models

#: Quick timing for tests: the numbers are checked for shape, not for speed.
QUICK = MeasureSettings(batch_sizes=(1, 8), repeats=3, warmup=1, min_sample_s=0.002)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread, and the machine is shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _third_party_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        # onnxruntime's quantizer and torch's TorchScript exporter warn about their own
        # deprecations (not modelport's code paths); tests still fail on any other warning.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\..*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"onnxruntime\..*")
        yield


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("optimize-models")


@pytest.fixture(scope="session")
def mlp(model_dir: Path) -> models.Built:
    return models.digits_mlp(model_dir / "mlp")


@pytest.fixture(scope="session")
def cnn(model_dir: Path) -> models.Built:
    return models.digits_cnn(model_dir / "cnn")


@pytest.fixture(scope="session")
def cancer(model_dir: Path) -> models.Built:
    return models.cancer_mlp(model_dir / "cancer")


@pytest.fixture(scope="session")
def encoder(model_dir: Path) -> models.Built:
    return models.encoder(model_dir / "encoder")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def reg(settings: Settings) -> Iterator[object]:
    from modelport.registry import Registry

    r = Registry.from_settings(settings)
    yield r
    r.close()
