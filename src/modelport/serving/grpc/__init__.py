"""The gRPC adapter: ``inference.GRPCInferenceService`` and ``grpc.health.v1`` over grpc.aio.

Importing this package imports ``grpc``; the server imports it only when a gRPC port
is configured.
"""

from modelport.serving.grpc.health import HealthServicer
from modelport.serving.grpc.server import STATUS, InferenceServicer, start_grpc_server

__all__ = ["STATUS", "HealthServicer", "InferenceServicer", "start_grpc_server"]
