"""Kept for plugins written against zoo 0.1: the values now live in :mod:`zoo.contracts`
(and are exported from ``zoo`` itself: ``zoo.GraphData``, ``zoo.ModelOutput``...)."""

from zoo.contracts import Batch, GraphData, ModelOutput, RegularizerInput

__all__ = ["Batch", "GraphData", "ModelOutput", "RegularizerInput"]
