"""A custom handler for ONNX models: runs the ONNX Runtime session BaseHandler builds."""

import json

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler


class OnnxHandler(BaseHandler):
    def preprocess(self, data):
        rows = []
        for row in data:
            body = row.get("data") or row.get("body")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            rows.append(np.asarray(body, dtype=np.float32))
        return np.stack(rows)

    def inference(self, data, *args, **kwargs):
        name = self.model.get_inputs()[0].name
        return torch.from_numpy(self.model.run(None, {name: data})[0])

    def postprocess(self, data):
        return data.tolist()
