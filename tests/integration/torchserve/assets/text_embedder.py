"""A user's sentence-embedding handler that tokenizes at the sentences' own lengths.

The benchmark's ``SentenceEmbedder`` (``benchmarks/torchserve_text/embedder.py``, shipped beside
this file with ``--extra-files``) pads every sentence to 128 tokens; this one pads a batch only
to its longest sentence (``padding=True``: attention mask zeros over the padding) and truncates
nothing, so a sentence past the model's range reaches the model. It logs each batch's lengths.
"""

import logging

from embedder import SentenceEmbedder

logger = logging.getLogger(__name__)


class VariableLengthEmbedder(SentenceEmbedder):
    """Text in, a 384-float embedding out; tokens as many as each batch needs."""

    def preprocess(self, data):
        texts = []
        for row in data:
            body = row.get("data") or row.get("body")
            if isinstance(body, (bytes, bytearray)):
                body = body.decode("utf-8")
            if not isinstance(body, str) or not body.strip():
                raise ValueError("send the sentence as the request body (UTF-8 text)")
            texts.append(body)
        enc = self.tokenizer(texts, padding=True, return_tensors="pt")
        lengths = enc["attention_mask"].sum(1).tolist()
        logger.info("text_embedder: batch of %d, lengths %s, padded to %d", len(texts), lengths,
                    enc["input_ids"].shape[1])
        return enc["input_ids"], enc["attention_mask"]
