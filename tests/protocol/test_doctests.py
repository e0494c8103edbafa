"""The examples in the protocol modules' docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "dtypes",
    "jsonio",
    "tensors",
    "v2",
    "validate",
    "tfserving",
    "triton_config",
    "grpc_codec",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    module = importlib.import_module(f"modelport.protocol.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
