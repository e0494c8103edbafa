"""An MLServer runtime that runs the same ONNX files through ONNX Runtime.

MLServer has no maintained ONNX runtime, so the serving benchmark gives it this small
custom one (the documented ``MLModel`` extension point): the comparison then measures
the servers, not sklearn against ONNX Runtime. Loaded by MLServer from its own
virtual environment, never imported by modelport.
"""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = self.settings.parameters.uri
        self._session = ort.InferenceSession(
            path, sess_options=so, providers=["CPUExecutionProvider"]
        )
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        for name, arr in feeds.items():
            if arr.dtype == np.float64:
                feeds[name] = arr.astype(np.float32)
        results = self._session.run(None, feeds)
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                NumpyCodec.encode_output(n, r) for n, r in zip(self._outputs, results, strict=True)
            ],
        )
