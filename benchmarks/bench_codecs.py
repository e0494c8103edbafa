"""Wire codec cost per request: decode and encode µs, JSON vs binary vs gRPC, side by side.

For an FP32 tensor of 1×4 (a tabular row) and 64×30 (a batch), measures:

- decode: body bytes → validated InferenceRequest (V2 JSON, V2 binary extension, gRPC
  raw contents including protobuf parsing);
- encode: InferenceResponse → body bytes (V2 JSON, V2 binary, gRPC including protobuf
  serialisation).

Numbers are medians of several timed rounds, in microseconds per call, one core.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from modelport.core.types import InferenceRequest, InferenceResponse, ModelSignature, TensorSpec
from modelport.protocol import grpc_codec, v2, validate_request
from modelport.protocol.jsonio import dumps

SHAPES = [(1, 4), (64, 30)]


def per_call_us(fn: Callable[[], object], min_time: float = 0.2, rounds: int = 5) -> float:
    n = 1
    while True:  # calibrate: enough calls for ~min_time/rounds per round
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time / rounds:
            break
        n *= 2
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(samples)


def measure(shape: tuple[int, int]) -> dict[str, tuple[float, float, int]]:
    """{format: (decode µs, encode µs, request body bytes)}."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    sig = ModelSignature(
        (TensorSpec("x", "FP32", (-1, shape[1])),), (TensorSpec("y", "FP32", (-1, shape[1])),)
    )
    req = InferenceRequest({"x": x})
    resp = InferenceResponse("m", "1", {"y": x})
    out: dict[str, tuple[float, float, int]] = {}

    json_body, _ = v2.encode_request(req, binary=False)
    json_req = InferenceRequest({})
    out["V2 JSON"] = (
        per_call_us(lambda: validate_request(v2.decode_request(json_body), sig)),
        per_call_us(lambda: v2.encode_response(resp, json_req)),
        len(json_body),
    )

    bin_body, n = v2.encode_request(req, binary=True)
    bin_req = InferenceRequest({}, binary_output=True)
    out["V2 binary"] = (
        per_call_us(lambda: validate_request(v2.decode_request(bin_body, n), sig)),
        per_call_us(lambda: v2.encode_response(resp, bin_req)),
        len(bin_body),
    )

    pb = grpc_codec.pb
    wire = grpc_codec.request_to_grpc("m", None, req).SerializeToString()
    out["gRPC raw"] = (
        per_call_us(
            lambda: validate_request(
                grpc_codec.request_from_grpc(pb.ModelInferRequest.FromString(wire)), sig
            )
        ),
        per_call_us(lambda: grpc_codec.response_to_grpc(resp).SerializeToString()),
        len(wire),
    )

    # the floor: parsing/serialising the same JSON with nothing else
    out["orjson only"] = (
        per_call_us(lambda: __import__("orjson").loads(json_body)),
        per_call_us(lambda: dumps({"outputs": [{"data": x.reshape(-1)}]})),
        len(json_body),
    )
    return out


def main() -> None:
    results = {shape: measure(shape) for shape in SHAPES}
    formats = list(next(iter(results.values())))
    header = f"{'format':<12}" + "".join(
        f"{'decode ' + 'x'.join(map(str, s)):>16}{'encode':>10}{'bytes':>9}" for s in SHAPES
    )
    print("µs per call (median), FP32 input and output of the shape shown")
    print(header)
    for fmt in formats:
        row = f"{fmt:<12}"
        for shape in SHAPES:
            dec, enc, size = results[shape][fmt]
            row += f"{dec:>16.1f}{enc:>10.1f}{size:>9}"
        print(row)
    big = results[SHAPES[-1]]
    speedup = big["V2 JSON"][0] / big["V2 binary"][0]
    print(f"\nbinary vs JSON at {'x'.join(map(str, SHAPES[-1]))}: decode {speedup:.1f}x faster, ")
    print(
        f"encode {big['V2 JSON'][1] / big['V2 binary'][1]:.1f}x faster, "
        f"{big['V2 JSON'][2] / big['V2 binary'][2]:.1f}x smaller request body"
    )


if __name__ == "__main__":
    main()
