"""Model file for the example: a real torchvision classifier with random weights (no download).

TorchServe's eager-model loader imports this file and instantiates the one class it defines.
"""

import torch

ARCH = "mobilenet_v3_small"  # any torchvision classifier builder; the example rewrites it


class Classifier(torch.nn.Module):
    """A torchvision classifier (``ARCH``) with ``weights=None``: random weights, no download."""

    def __init__(self):
        super().__init__()
        import torchvision

        self.net = getattr(torchvision.models, ARCH)(weights=None)

    def forward(self, x):
        return self.net(x)
