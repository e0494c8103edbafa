"""Wire formats ↔ internal types: pure functions on the hot path, no web framework.

- :mod:`~modelport.protocol.v2` — KServe V2 / Open Inference Protocol REST bodies, JSON
  and Triton's binary tensor extension;
- :mod:`~modelport.protocol.grpc_codec` — ``inference.GRPCInferenceService`` messages
  (imports ``tritonclient``/``grpc``, so it is not imported here);
- :mod:`~modelport.protocol.tfserving` — TF Serving REST ``:predict``, status, metadata;
- :mod:`~modelport.protocol.triton_config` — Triton ModelConfig and V2 model metadata;
- :mod:`~modelport.protocol.validate` — the one check of a request against a signature.

Example:
    >>> from modelport.protocol import v2
    >>> req = v2.decode_request(b'{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[7]}]}')
    >>> req.inputs["x"].tolist()
    [7]
"""  # noqa: E501

from modelport.protocol.validate import validate_request

__all__ = ["validate_request"]
