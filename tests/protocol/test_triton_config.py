"""Triton ModelConfig JSON parses as model_config.proto and follows Triton's dims rule."""

from __future__ import annotations

import pytest
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2

from modelport.core.errors import InvalidArgument
from modelport.core.types import ModelSignature, TensorSpec
from modelport.protocol.triton_config import (
    TRITON_TYPES,
    model_config,
    model_metadata,
    platform_of,
)

SIG = ModelSignature(
    (TensorSpec("x", "FP32", (-1, 4)), TensorSpec("s", "BYTES", (-1,))),
    (TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 3))),
)


def test_batched_config_drops_the_batch_dim_and_parses_as_the_proto():
    cfg = model_config(
        "iris",
        SIG,
        max_batch_size=64,
        preferred_batch_sizes=[8, 16],
        max_queue_delay_us=500,
        instances=2,
        versions=[1, 3],
    )
    msg = json_format.ParseDict(cfg, model_config_pb2.ModelConfig())  # unknown fields raise
    assert msg.max_batch_size == 64
    assert [list(i.dims) for i in msg.input] == [[4], [1]]
    assert [list(o.dims) for o in msg.output] == [[1], [3]]
    assert msg.input[1].data_type == model_config_pb2.TYPE_STRING
    assert list(msg.dynamic_batching.preferred_batch_size) == [8, 16]
    assert msg.dynamic_batching.max_queue_delay_microseconds == 500
    assert msg.instance_group[0].count == 2
    assert msg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert list(msg.version_policy.specific.versions) == [1, 3]
    # the gRPC ModelConfigResponse carries the same message
    service_pb2.ModelConfigResponse(config=msg)


def test_unbatched_config_keeps_every_dim():
    cfg = model_config("iris", SIG)
    assert cfg["max_batch_size"] == 0
    assert "dynamic_batching" not in cfg
    assert cfg["input"][0] == {"name": "x", "data_type": "TYPE_FP32", "dims": [-1, 4]}
    assert cfg["version_policy"] == {"latest": {"num_versions": 1}}
    json_format.ParseDict(cfg, model_config_pb2.ModelConfig())


def test_batching_needs_a_variable_first_dim():
    fixed = ModelSignature((TensorSpec("x", "FP32", (1, 4)),), (TensorSpec("y", "FP32", (1,)),))
    with pytest.raises(InvalidArgument, match="variable first dimension"):
        model_config("m", fixed, max_batch_size=8)


def test_every_datatype_has_a_config_enum():
    for name in TRITON_TYPES.values():
        assert model_config_pb2.DataType.Value(name) > 0


def test_v2_metadata_parses_as_the_grpc_response():
    md = model_metadata("iris", [1, 2], SIG, platform_of("onnx")[0])
    msg = json_format.ParseDict(md, service_pb2.ModelMetadataResponse())
    assert msg.platform == "onnxruntime_onnx"
    assert list(msg.versions) == ["1", "2"]
    assert list(msg.inputs[0].shape) == [-1, 4]
