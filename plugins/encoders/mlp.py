"""Encoder ``mlp``: a multi-layer perceptron over node features."""

from __future__ import annotations



import torch
from torch import nn

import zoo
from zoo.contracts import ModelOutput
from zoo_plugins.layers import (
    Activation,
    Count,
    DropoutRate,
    Linear,
    Units,
    dropout,
    make_activation,
)


class MLP(nn.Module):
    """Multi-layer perceptron over node features (sparse or dense); alone it is a classifier.

    With an output size (used alone) the last of ``layers`` linear layers gives the
    logits and the layer before it the embedding; without one (in front of a node
    model) every layer has ``hidden`` units and the output is the embedding.

    Args:
        hidden: units in each hidden layer.
        layers: number of linear layers (2 = one hidden layer).
        dropout: dropout before every linear layer (on the non-zeros for sparse input).
        activation: non-linearity after each hidden layer.
    """

    def __init__(self, in_dim: int, out_dim: int | None, *, hidden: Units = 64, layers: Count = 2,
                 dropout: DropoutRate = 0.5, activation: Activation = "relu") -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("mlp needs layers >= 1")
        sizes = [in_dim] + [hidden] * (layers - 1) + [out_dim if out_dim is not None else hidden]
        self.linears = nn.ModuleList(Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = make_activation(activation)
        self.p = dropout
        self.is_classifier = out_dim is not None
        self.out_dim = sizes[-1]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        embedding = x
        for i, linear in enumerate(self.linears):
            last = i == len(self.linears) - 1
            if last:
                embedding = x
            x = linear(dropout(x, self.p, self.training))
            if not (last and self.is_classifier):
                x = self.act(x)
        return ModelOutput(logits=x, embedding=x if not self.is_classifier else embedding)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("encoder", "mlp", MLP)
