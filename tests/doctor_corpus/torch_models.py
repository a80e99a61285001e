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


class ScaledLinear(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.scale = nn.Parameter(torch.ones(n_out))  # never used in forward

    def forward(self, x):  # expect-weight: NO_GRADIENT_VARIABLES
        return self.linear(x)


class Backbone(nn.Module):
    """Two frozen groups called at one line, a layer with an unused weight, a discarded call."""

    def __init__(self):
        super().__init__()
        self.stages = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Linear(8, 8))
        self.project = ScaledLinear(8, 2)
        self.probe = nn.Linear(8, 1)

    def forward(self, x):
        h = self.stages(x)  # expect-frozen: NO_GRADIENT_VARIABLES
        self.probe(h)  # expect-discarded: NO_GRADIENT_VARIABLES
        return self.project(h)


def backbone_model():
    model = Backbone()
    model.stages[0].requires_grad_(False)
    model.stages[2].requires_grad_(False)
    return model


class TupleHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.logits = nn.Linear(8, 2)
        self.embedding = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return self.logits(h), self.embedding(h)


class DictHeads(TupleHeads):
    def forward(self, x):
        logits, embedding = super().forward(x)
        return {"logits": logits, "embedding": embedding}


def first_output_mse(outputs, target):  # expect-ignored: NO_GRADIENT_VARIABLES
    return ((outputs[0] - target) ** 2).mean()


def logits_mse(outputs, target):  # expect-ignored: NO_GRADIENT_VARIABLES
    return ((outputs["logits"] - target) ** 2).mean()
