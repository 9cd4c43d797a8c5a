"""Small torch models with random weights, one per shape of problem the backends must handle."""

from __future__ import annotations

import torch


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(),
                                       torch.nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, padding=1, groups=8), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 16, 1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1))
        self.head = torch.nn.Linear(16, 5)

    def forward(self, image):
        return self.head(torch.flatten(self.features(image), 1))


class Encoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(100, 32)
        layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, input_ids):
        return self.encoder(self.embed(input_ids)).mean(dim=1)


class TwoInTwoOut(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(8, 4)
        self.b = torch.nn.Linear(6, 4)

    def forward(self, left, right):
        h = torch.tanh(self.a(left) + self.b(right))
        return {"scores": torch.softmax(h, dim=-1), "embedding": h * 2.0}


def build(name: str) -> tuple[torch.nn.Module, tuple]:
    """The model and example inputs (batch 2) for ``name``."""
    torch.manual_seed(0)
    if name == "mlp":
        return MLP().eval(), (torch.randn(2, 32),)
    if name == "cnn":
        model = CNN().eval()
        with torch.no_grad():  # non-trivial BatchNorm statistics
            model.features[1].running_mean.uniform_(-0.5, 0.5)
            model.features[1].running_var.uniform_(0.5, 2.0)
        return model, (torch.rand(2, 3, 16, 16),)
    if name == "encoder":
        return Encoder().eval(), (torch.randint(1, 100, (2, 12)),)
    if name == "two_in_two_out":
        return TwoInTwoOut().eval(), (torch.randn(2, 8), torch.randn(2, 6))
    raise KeyError(name)


NAMES = ("mlp", "cnn", "encoder", "two_in_two_out")
