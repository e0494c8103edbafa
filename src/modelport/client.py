"""A small Python client for modelport (and any KServe V2 / Triton HTTP server).

For users who want a few lines instead of ``tritonclient``: numpy in, numpy out,
binary tensors by default (the fast path), JSON on request.

Example:
    >>> from modelport.client import Client
    >>> with Client("http://127.0.0.1:8000") as c:                  # doctest: +SKIP
    ...     out = c.infer("cancer", {"X": batch}, version="production")
    ...     out["probabilities"].shape
    (64, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelport.core.errors import (
    InvalidArgument,
    ModelportError,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from modelport.core.types import InferenceRequest
from modelport.protocol.dtypes import datatype_of, numpy_dtype
from modelport.protocol.v2 import decode_response, encode_request

_BY_STATUS: dict[int, type[ModelportError]] = {
    400: InvalidArgument,
    404: NotFound,
    413: PayloadTooLarge,
    503: Unavailable,
}


class Client:
    """HTTP client for the V2 inference protocol."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        timeout_s: float = 30.0,
        token: str | None = None,
    ) -> None:
        try:
            import httpx
        except ImportError as e:  # pragma: no cover - in the serve extra
            from modelport.core.errors import MissingDependency

            raise MissingDependency.for_extra("httpx", "serve", "The client") from e
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=headers)
        self._inputs: dict[str, list[dict[str, Any]]] = {}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---------------------------------------------------------------- plumbing

    def _check(self, resp: Any) -> Any:
        if resp.status_code >= 400:
            try:
                message = resp.json().get("error", resp.text)
            except ValueError:
                message = resp.text
            cls = _BY_STATUS.get(resp.status_code, ModelportError)
            raise cls(f"server answered {resp.status_code}: {message}")
        return resp

    def _model_path(self, model: str, version: str | None) -> str:
        return f"/v2/models/{model}" + (f"/versions/{version}" if version else "")

    # ---------------------------------------------------------------- API

    def live(self) -> bool:
        return bool(self._http.get("/v2/health/live").status_code == 200)

    def ready(self) -> bool:
        return bool(self._http.get("/v2/health/ready").status_code == 200)

    def metadata(self, model: str, version: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = self._check(self._http.get(self._model_path(model, version))).json()
        return data

    def infer(
        self,
        model: str,
        inputs: dict[str, Any] | np.ndarray | list[Any],
        *,
        version: str | None = None,
        binary: bool = True,
        request_id: str | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ``inputs`` (a dict of arrays, or one array for a single-input model)."""
        arrays = self._arrays(model, version, inputs)
        request = InferenceRequest(arrays, id=request_id, binary_output=binary)
        body, header_length = encode_request(request, binary=binary)
        headers = {"Content-Type": "application/octet-stream" if binary else "application/json"}
        if header_length is not None:
            headers["Inference-Header-Content-Length"] = str(header_length)
        resp = self._check(
            self._http.post(
                self._model_path(model, version) + "/infer", content=body, headers=headers
            )
        )
        hlen = resp.headers.get("inference-header-content-length")
        return decode_response(resp.content, int(hlen) if hlen else None).outputs

    def _arrays(
        self, model: str, version: str | None, inputs: dict[str, Any] | np.ndarray | list[Any]
    ) -> dict[str, np.ndarray]:
        meta = self._inputs.get(model)
        if meta is None:
            meta = self._inputs[model] = self.metadata(model, version)["inputs"]
        dtypes = {m["name"]: m["datatype"] for m in meta}
        if not isinstance(inputs, dict):
            if len(meta) != 1:
                raise InvalidArgument(
                    f"model {model!r} takes {len(meta)} inputs {sorted(dtypes)}: pass a dict"
                )
            inputs = {meta[0]["name"]: inputs}
        out = {}
        for name, value in inputs.items():
            arr = np.asarray(value)
            wanted = dtypes.get(name)
            if wanted and wanted not in ("BYTES", "BF16") and datatype_of(arr) != wanted:
                arr = arr.astype(numpy_dtype(wanted))
            out[name] = np.ascontiguousarray(arr)
        return out

    def load(self, model: str) -> None:
        self._check(self._http.post(f"/v2/repository/models/{model}/load"))

    def unload(self, model: str) -> None:
        self._check(self._http.post(f"/v2/repository/models/{model}/unload"))

    def repository_index(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self._check(self._http.post("/v2/repository/index")).json()
        return data
