"""The compiled V2 decoder agrees with the general decode + validate path.

For every request below — the plain ones it is built for, and malformed or unusual
ones — the fast decoder either declines (None) or returns exactly what
``validate_request(decode_request(...))`` returns; it never accepts a request the
general path refuses.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import numpy as np
import pytest

from modelport.core.errors import ModelportError
from modelport.core.types import InferenceRequest, ModelSignature, TensorSpec
from modelport.protocol import v2
from modelport.protocol.v2_compiled import compile_decoder
from modelport.protocol.validate import validate_request

SIGNATURES = {
    "fp32": ModelSignature((TensorSpec("x", "FP32", (-1, 4)),), ()),
    "int64": ModelSignature((TensorSpec("ids", "INT64", (-1, 3)),), ()),
    "two": ModelSignature(
        (TensorSpec("a", "FP64", (-1,)), TensorSpec("b", "INT32", (2, 3))),
        (),
    ),
    "uint8": ModelSignature((TensorSpec("img", "UINT8", (-1, 2, 2)),), ()),
    "fp16": ModelSignature((TensorSpec("h", "FP16", (-1, 2)),), ()),
    "bool": ModelSignature((TensorSpec("m", "BOOL", (-1,)),), ()),
    "bytes": ModelSignature((TensorSpec("s", "BYTES", (-1,)),), ()),
}


def _general(body: bytes, hlen: int | None, sig: ModelSignature) -> InferenceRequest | None:
    try:
        return validate_request(v2.decode_request(body, hlen, signature=sig), sig)
    except ModelportError:
        return None


def _check(body: bytes, hlen: int | None, sig: ModelSignature) -> InferenceRequest | None:
    """Assert the invariant; return the fast result."""
    fast = compile_decoder(sig)(body, hlen)
    if fast is None:
        return None
    general = _general(body, hlen, sig)
    assert general is not None, f"fast path accepted what the general path refuses: {body!r}"
    assert fast.inputs.keys() == general.inputs.keys()
    for name, arr in fast.inputs.items():
        want = general.inputs[name]
        assert arr.dtype == want.dtype, name
        assert arr.shape == want.shape, name
        np.testing.assert_array_equal(arr, want)
    assert (fast.id, fast.parameters, fast.outputs, fast.binary_output) == (
        general.id,
        general.parameters,
        general.outputs,
        general.binary_output,
    )
    return fast


def _json_body(tensors: list[dict[str, Any]], **head: Any) -> bytes:
    return json.dumps({"inputs": tensors, **head}).encode()


def _binary_body(arrays: dict[str, tuple[str, np.ndarray]], **head: Any) -> tuple[bytes, int]:
    specs, blobs = [], []
    for name, (datatype, arr) in arrays.items():
        raw = arr.tobytes()
        specs.append(
            {
                "name": name,
                "shape": list(arr.shape),
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        blobs.append(raw)
    header = json.dumps({"inputs": specs, **head}).encode()
    return header + b"".join(blobs), len(header)


def _t(name: Any, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


PLAIN_JSON = [
    ("fp32", _json_body([_t("x", "FP32", [2, 4], [1.5, 2, 3, 4, 5, 6, 7, 8.25])])),
    ("fp32", _json_body([_t("x", "FP32", [1, 4], [1, 2, 3, 4])], id="req-7")),
    ("fp32", _json_body([_t("x", "FP32", [1, 4], [1, 2, 3, 4e-3])], id="data")),
    (
        "fp32",
        b'{"inputs" : [ {"data" :\n [1, 2, 3, 4], "name": "x", "shape": [1, 4],'
        b' "datatype": "FP32"} ], "parameters": {"binary_data_output": false}}',
    ),
    ("fp32", _json_body([_t("x", "FP32", [0, 4], [])])),
    ("int64", _json_body([_t("ids", "INT64", [1, 3], [1, -2, 2**62])])),
    (
        "two",
        _json_body(
            [_t("a", "FP64", [2], [0.1, 1e300]), _t("b", "INT32", [2, 3], [1, 2, 3, 4, 5, 6])],
            parameters={"binary_data_output": True},
        ),
    ),
    ("uint8", _json_body([_t("img", "UINT8", [1, 2, 2], [0, 1, 254, 255])])),
]


@pytest.mark.parametrize(("sig", "body"), PLAIN_JSON)
def test_plain_json_requests_take_the_fast_path(sig: str, body: bytes) -> None:
    assert _check(body, None, SIGNATURES[sig]) is not None


def test_plain_binary_requests_take_the_fast_path() -> None:
    rng = np.random.default_rng(0)
    cases = [
        ("fp32", {"x": ("FP32", rng.normal(size=(3, 4)).astype(np.float32))}),
        ("int64", {"ids": ("INT64", rng.integers(0, 9, (2, 3)))}),
        (
            "two",
            {
                "a": ("FP64", rng.normal(size=5)),
                "b": ("INT32", rng.integers(0, 9, (2, 3)).astype(np.int32)),
            },
        ),
        ("fp16", {"h": ("FP16", rng.normal(size=(2, 2)).astype(np.float16))}),
    ]
    for sig, arrays in cases:
        body, hlen = _binary_body(arrays, parameters={"binary_data_output": True})
        fast = _check(body, hlen, SIGNATURES[sig])
        assert fast is not None, sig
        assert fast.binary_output is True, sig


REFUSED_OR_UNUSUAL = [
    # what the general path refuses
    ("fp32", _json_body([_t("x", "FP32", [1, 4], [1, 2, 3])])),  # too few elements
    ("fp32", _json_body([_t("x", "FP32", [1, 5], [1, 2, 3, 4, 5])])),  # fixed dim
    ("fp32", _json_body([_t("x", "FP32", [4], [1, 2, 3, 4])])),  # rank
    ("fp32", _json_body([_t("x", "FP32", [1, 4], [1, 2, True, 4])])),  # a boolean
    ("fp32", _json_body([_t("x", "FP32", [1, 4], [1, 2, "3", 4])])),  # a string
    ("fp32", _json_body([_t("x", "FP32", [1, 4], [1, 2, None, 4])])),  # null
    ("fp32", _json_body([_t("x", "FP32", [1, 4], [1, 2, 3, 1e39])])),  # FP32 range
    ("fp32", _json_body([_t("x", "FP32", [2, 4], [[1, 2, 3, 4], [1, 2, 3]])])),  # ragged
    ("fp32", _json_body([_t("y", "FP32", [1, 4], [1, 2, 3, 4])])),  # unknown name
    ("fp32", _json_body([_t("x", "FP32", [1, -4], [1, 2, 3, 4])])),  # negative dim
    ("fp32", _json_body([_t("x", "FP32", [1, True], [1, 2, 3, 4])])),
    ("fp32", _json_body([_t("x", "FP32", [1, 4], [1, 2, 3, 4])], id=7)),
    ("fp32", _json_body([_t(["x"], "FP32", [1, 4], [1, 2, 3, 4])])),
    ("fp32", _json_body([{**_t("x", "FP32", [1, 4], [1, 2, 3, 4]), "extra": 1}])),
    ("fp32", _json_body([])),
    ("int64", _json_body([_t("ids", "INT64", [1, 3], [1, 2, 3.5])])),  # fraction
    ("int64", _json_body([_t("ids", "INT64", [1, 3], [1, 2, 2**64])])),  # range
    ("uint8", _json_body([_t("img", "UINT8", [1, 2, 2], [0, 1, 2, 256])])),
    ("uint8", _json_body([_t("img", "UINT8", [1, 2, 2], [0, 1, 2, -1])])),
    ("fp16", _json_body([_t("h", "FP16", [1, 2], [1, 2])])),  # no JSON form
    (
        "fp32",
        b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],'
        b'"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[9,9,9,9]}]}',
    ),  # duplicate key
    (
        "fp32",
        b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4],'
        b'"data":[5,6,7,8]}]}',
    ),
    ("fp32", b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,NaN]}]}'),
    ("fp32", b'{"inputs": '),
    ("fp32", b"[]"),
    # unusual but valid: the general path handles them
    ("fp32", _json_body([_t("x", "INT64", [1, 4], [1, 2, 3, 4])])),  # coerced
    ("fp32", _json_body([_t("x", "FP32", [1, 4], [1, 2, 3, 4])], outputs=[{"name": "y"}])),
    ("fp32", _json_body([_t("x", "FP32", [1, 4], [1, 2, 3, 4])], parameters={"timeout": 9})),
    ("fp32", _json_body([_t("x", "FP32", [1, 4], [1, 2, 3, 4])], id="a:b")),
    ("bool", _json_body([_t("m", "BOOL", [2], [True, False])])),
    ("bytes", _json_body([_t("s", "BYTES", [1], ["hi"])])),
]


@pytest.mark.parametrize(("sig", "body"), REFUSED_OR_UNUSUAL)
def test_refused_and_unusual_requests_are_left_to_the_general_path(sig: str, body: bytes) -> None:
    assert compile_decoder(SIGNATURES[sig])(body, None) is None
    _check(body, None, SIGNATURES[sig])


def test_binary_mistakes_are_left_to_the_general_path() -> None:
    sig = SIGNATURES["fp32"]
    arr = np.ones((2, 4), np.float32)
    body, hlen = _binary_body({"x": ("FP32", arr)})
    decode = compile_decoder(sig)
    assert decode(body, hlen) is not None
    assert decode(body + b"\0", hlen) is None  # trailing bytes
    assert decode(body[:-1], hlen) is None  # short
    assert decode(body, 0) is None  # raw binary request
    assert decode(body, len(body)) is None
    wrong = body.replace(b'"FP32"', b'"FP64"')
    assert decode(wrong, hlen) is None
    assert _general(wrong, hlen, sig) is None
    mixed_bool, hl = _binary_body({"m": ("BOOL", np.array([1, 2], np.uint8))})
    assert compile_decoder(SIGNATURES["bool"])(mixed_bool, hl) is None


def test_mutated_requests_never_pass_the_fast_path_wrongly() -> None:
    """Seeded byte-level mutations of valid bodies: the invariant holds for each."""
    rng = random.Random(0)
    alphabet = b'{}[]:,"0123456789.-eE truefalsnul\\x'
    seeds = [(SIGNATURES[s], b, None) for s, b in PLAIN_JSON]
    body, hlen = _binary_body({"x": ("FP32", np.arange(8, dtype=np.float32).reshape(2, 4))})
    seeds.append((SIGNATURES["fp32"], body, hlen))
    large = [_t("x", "FP32", [300, 4], [i / 7 for i in range(1200)])]
    seeds.append((SIGNATURES["fp32"], _json_body(large, id="r-1"), None))
    accepted = 0
    for i in range(int(os.environ.get("MUTATIONS", "3000"))):
        sig, base, hl = seeds[i % len(seeds)]
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(data) if hl is None else hl)
            op = rng.random()
            if op < 0.4:
                data[pos] = rng.choice(alphabet)
            elif op < 0.7:
                del data[pos]
                if hl is not None:
                    hl -= 1
            else:
                data.insert(pos, rng.choice(alphabet))
                if hl is not None:
                    hl += 1
        accepted += _check(bytes(data), hl, sig) is not None
    assert accepted > 0  # some mutations stay valid (e.g. another digit) and are taken


def test_large_json_bodies_skip_their_data_arrays_safely() -> None:
    """Past a few KiB only the text outside the data arrays is counted."""
    sig = ModelSignature((TensorSpec("data", "FP32", (-1, 4)),), ())
    rows = [[float(i), i / 3, -i, 1e-3 * i] for i in range(300)]
    flat = [v for r in rows for v in r]

    def body(data: object, **head: object) -> bytes:
        return _json_body([_t("data", "FP32", [300, 4], data)], **head)

    plain = body(flat, id="data", parameters={"binary_data_output": False})
    assert len(plain) > 4096
    assert _check(plain, None, sig) is not None
    for declined in (
        body(rows),  # nested: the general path
        body(flat, id='say "data"'),  # escapes
        body([*flat[:-1], True]),  # a boolean inside the data
        body(flat).replace(b'"data": [', b'"data": [1, 2], "data": [', 1),  # duplicate
    ):
        assert compile_decoder(sig)(declined, None) is None
        _check(declined, None, sig)
