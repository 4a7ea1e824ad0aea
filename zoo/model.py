"""The model the zoo trains: an optional encoder followed by an optional node model,
with their outputs checked against the contracts as they flow."""

from __future__ import annotations

from typing import Any

import torch

from zoo.contracts import ModelOutput, describe_value
from zoo.errors import ContractError
from zoo.registry import component_label


def expected_rows(graph: Any, x: torch.Tensor) -> int:
    """How many output rows a node model owes for ``graph`` (whole graph, list of
    blocks, or None) and input rows ``x``."""
    if isinstance(graph, (list, tuple)) and graph:
        return int(graph[-1].num_dst_nodes())
    if graph is not None and callable(getattr(graph, "num_nodes", None)):
        return int(graph.num_nodes())
    return int(x.shape[0])


def unpack_output(out: Any, component: Any, hidden: torch.Tensor | None,
                  rows: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(output, embedding)`` of what a model ``component`` returned, or a ContractError
    naming the component and what it returned."""
    if isinstance(out, ModelOutput):
        logits, embedding = out.logits, out.embedding
    elif isinstance(out, torch.Tensor):
        logits, embedding = out, hidden
    else:
        raise ContractError(f"{component_label(component)} returned {describe_value(out)}; it "
                            "must return a tensor or a zoo.ModelOutput(logits, embedding)")
    if not isinstance(logits, torch.Tensor) or logits.dim() < 1 or logits.shape[0] != rows:
        raise ContractError(f"{component_label(component)} returned {describe_value(logits)} "
                            f"as its output; it must have one row per output node ({rows})")
    return logits, embedding


class Classifier(torch.nn.Module):
    """An optional encoder followed by an optional node model, giving the output and the
    embedding it came from. A component may return a tensor (its output) or a
    :class:`ModelOutput` (output plus its last hidden layer)."""

    def __init__(self, encoder: torch.nn.Module | None = None,
                 node_model: torch.nn.Module | None = None,
                 head: torch.nn.Module | None = None) -> None:
        super().__init__()
        if encoder is None and node_model is None:
            raise ValueError("a classifier needs an encoder, a node model, or both")
        self.encoder = encoder
        self.node_model = node_model
        # The task's head (Task.head): trained and saved with the model, but applied by
        # the task (a sampled softmax scores a few classes, not all of them).
        self.head = head

    @property
    def graph_free(self) -> bool:
        """Whether the model reads no graph (an encoder alone)."""
        return self.node_model is None

    def forward(self, graph: Any, features: torch.Tensor) -> ModelOutput:
        """The output (and embedding) for the output nodes of ``graph`` (every node of a
        whole graph, the last block's destination nodes, or one per input row)."""
        x, embedding = features, None
        if self.encoder is not None:
            x, embedding = unpack_output(self.encoder(x), self.encoder,
                                         None, int(x.shape[0]))
        if self.node_model is not None:
            hidden = x
            x, embedding = unpack_output(self.node_model(graph, x),
                                         self.node_model, hidden,
                                         expected_rows(graph, hidden))
        return ModelOutput(logits=x, embedding=x if embedding is None else embedding,
                           head=self.head)
