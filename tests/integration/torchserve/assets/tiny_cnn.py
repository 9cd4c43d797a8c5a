"""A tiny image classifier (eager model file for TorchServe archives)."""

import torch


class TinyCNN(torch.nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(16, classes)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        return self.fc(x.mean(dim=(2, 3)))
