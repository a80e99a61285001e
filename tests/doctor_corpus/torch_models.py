"""A PyTorch model with a frozen layer and an unused branch, for diagnose_model."""

import torch
from torch import nn


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(4, 8)
        self.head = nn.Linear(8, 2)
        self.aux_head = nn.Linear(8, 2)  # never called in forward

    def forward(self, x):  # expect-unused: NO_GRADIENT_VARIABLES
        h = torch.relu(self.encoder(x))  # expect-frozen: NO_GRADIENT_VARIABLES
        return self.head(h)


def frozen_model():
    model = TwoHeads()
    model.encoder.requires_grad_(False)
    return model


def mse(input, target):
    return ((input - target) ** 2).mean()
