from __future__ import annotations

import inspect
from http import HTTPStatus

import pytest

from modelport.core import errors
from modelport.core.errors import GrpcCode, ModelportError


def all_error_classes() -> list[type[ModelportError]]:
    return [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, ModelportError)
    ]


def test_every_error_knows_all_three_edges():
    classes = all_error_classes()
    assert len(classes) >= 15
    for cls in classes:
        assert isinstance(cls.http_status, HTTPStatus)
        assert isinstance(cls.grpc_code, GrpcCode)
        assert isinstance(cls.exit_code, int)
        assert cls.exit_code > 0


def test_exports_are_exactly_the_error_classes():
    assert sorted(errors.__all__) == sorted(
        [c.__name__ for c in all_error_classes()] + ["GrpcCode"]
    )


def test_grpc_codes_match_grpc_numbers():
    grpc = pytest.importorskip("grpc")
    for code in GrpcCode:
        assert grpc.StatusCode[code.name].value[0] == code.value


def test_missing_dependency_names_the_install_command():
    e = errors.MissingDependency.for_extra("lightgbm", "lightgbm", "LightGBM models")
    assert "pip install 'modelport[lightgbm]'" in str(e)
    assert e.http_status == HTTPStatus.NOT_IMPLEMENTED


def test_distinct_classes_have_distinct_cli_codes_by_family():
    assert errors.NotFound("x").exit_code != errors.InvalidArgument("x").exit_code
    assert errors.IntegrityError("x").exit_code != errors.StorageError("x").exit_code
