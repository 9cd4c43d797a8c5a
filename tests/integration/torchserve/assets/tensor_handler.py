"""A custom BaseHandler subclass: JSON tensors in, raw model outputs out."""

import json

import torch
from ts.torch_handler.base_handler import BaseHandler


class TensorHandler(BaseHandler):
    def preprocess(self, data):
        rows = []
        for row in data:
            body = row.get("data") or row.get("body")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            rows.append(torch.tensor(body, dtype=torch.float32))
        return torch.stack(rows)

    def postprocess(self, data):
        return data.tolist()
