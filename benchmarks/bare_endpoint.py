"""The Python floor: a minimal ASGI endpoint calling ONNX Runtime, nothing else.

uvicorn + httptools + uvloop + orjson + onnxruntime; no validation, no routing beyond
the model name, no statistics. It speaks just enough of the V2 protocol (JSON and the
binary tensor extension) for the serving benchmark to send it the same requests.

usage: python bare_endpoint.py PORT NAME=MODEL.onnx [NAME=MODEL.onnx …]
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn

DTYPES = {"FP32": np.float32, "INT64": np.int64, "FP64": np.float64, "INT32": np.int32}
V2 = {np.dtype(v): k for k, v in DTYPES.items()}


def session(path: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def make_app(models: dict[str, ort.InferenceSession]):
    outputs = {n: [o.name for o in s.get_outputs()] for n, s in models.items()}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        parts = scope["path"].split("/")
        if len(parts) < 5:  # health check
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        name = parts[3]
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        hlen = dict(scope["headers"]).get(b"inference-header-content-length")
        if hlen is None:
            req = orjson.loads(body)
            feeds = {
                i["name"]: np.asarray(i["data"], DTYPES[i["datatype"]]).reshape(i["shape"])
                for i in req["inputs"]
            }
            binary = False
        else:
            n = int(hlen)
            req = orjson.loads(body[:n])
            feeds, pos = {}, n
            for i in req["inputs"]:
                size = i["parameters"]["binary_data_size"]
                dtype = DTYPES[i["datatype"]]
                feeds[i["name"]] = np.frombuffer(body[pos : pos + size], dtype).reshape(i["shape"])
                pos += size
            binary = True
        sess = models[name]
        results = sess.run(None, feeds)
        head_out, blobs = [], []
        for oname, arr in zip(outputs[name], results, strict=True):
            entry = {"name": oname, "datatype": V2[arr.dtype], "shape": list(arr.shape)}
            if binary:
                raw = arr.tobytes()
                entry["parameters"] = {"binary_data_size": len(raw)}
                blobs.append(raw)
            else:
                entry["data"] = arr.ravel().tolist()
            head_out.append(entry)
        head = orjson.dumps({"model_name": name, "outputs": head_out})
        headers = [(b"content-type", b"application/json")]
        if binary:
            headers.append((b"inference-header-content-length", str(len(head)).encode()))
            head = head + b"".join(blobs)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": head})

    return app


if __name__ == "__main__":
    port = int(sys.argv[1])
    models = {a.split("=", 1)[0]: session(a.split("=", 1)[1]) for a in sys.argv[2:]}
    uvicorn.run(
        make_app(models),
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
