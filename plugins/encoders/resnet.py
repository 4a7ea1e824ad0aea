"""Encoder ``resnet``: a residual convolutional network over image batches (He et al.,
2016), built on ``torch.nn`` alone and laid out exactly as torchvision's ResNet-18/34/50
(v1.5: the Bottleneck strides in its 3x3 conv), so parameter counts match theirs."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.contracts import ModelOutput
from zoo.schema import Ge, Le
from zoo_plugins.layers import DropoutRate, Units

# Blocks per stage for each depth (He et al. 2016, Table 1).
LAYOUTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}
# Below this many pixels on the shorter side, 'auto' keeps full resolution in the stem.
SMALL_IMAGE = 64


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    """A bias-free convolution and its BatchNorm (the bias would be cancelled by BN)."""
    return [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(out_ch)]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(*conv_bn(in_ch, planes, 3, stride), nn.ReLU(inplace=True),
                                    *conv_bn(planes, planes, 3))
        self.shortcut = shortcut(in_ch, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a shortcut."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(*conv_bn(in_ch, planes, 1), nn.ReLU(inplace=True),
                                    *conv_bn(planes, planes, 3, stride), nn.ReLU(inplace=True),
                                    *conv_bn(planes, planes * self.expansion, 1))
        self.shortcut = shortcut(in_ch, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


def shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """Identity when shapes agree, else a strided 1x1 conv + BN (He et al.'s option B)."""
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(*conv_bn(in_ch, out_ch, 1, stride))


class Stem(nn.Module):
    """The first convolution: 'imagenet' 7x7/2 + 3x3/2 max-pool, 'small' 3x3/1 and no
    pool, 'auto' the 3x3 conv of 'small' applied at stride 1 (no pool) to images under
    64 pixels and at stride 2 plus the max-pool to larger ones."""

    def __init__(self, in_ch: int, width: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.conv, self.bn = conv_bn(in_ch, width, 7 if kind == "imagenet" else 3,
                                     2 if kind == "imagenet" else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        large = self.kind == "imagenet" or (
            self.kind == "auto" and min(x.shape[-2:]) >= SMALL_IMAGE)
        # 'auto' shares one set of weights across sizes, so the optimizer sees every
        # parameter before the first batch; only the stride depends on the input.
        stride = 2 if large else 1
        x = F.relu(self.bn(F.conv2d(x, self.conv.weight, None, stride, self.conv.padding)))
        return F.max_pool2d(x, 3, 2, 1) if large else x


class ResNet(nn.Module):
    """ResNet-18/34/50 over image batches (B, C, H, W); alone it is a classifier or embedder.

    The backbone (stem, residual stages, global average pooling) gives the pooled
    features, which are the embedding; the output is their projection to the
    output size (``projection_layers`` linear layers), L2-normalized when ``normalize``
    is set (for image search). Without an output size (a node model follows) the
    output is ``embedding_size`` wide, or the pooled width when that is unset. Depth 18
    at width 64 with the 'imagenet' stem and a 1000-way projection is torchvision's
    resnet18 layer for layer (11,689,512 parameters; depth 50: 25,557,032). Every
    convolution is followed by BatchNorm2d, so train on batches of 2 or more images.

    Args:
        depth: 18 or 34 (basic blocks) or 50 (bottleneck blocks, 4x expansion).
        width: channels of the first stage; each later stage doubles them.
        stem: 'imagenet' (7x7 stride-2 conv and 3x3 stride-2 max-pool), 'small' (3x3
            stride-1 conv, no pool: for 8x8 digits or 28x28 MNIST), or 'auto' (the
            'small' conv, applied as 'small' to images under 64 pixels on their shorter
            side and at stride 2 with the max-pool to larger ones; decided per batch).
        stages: how many of the 4 residual stages to use (each after the first halves
            the resolution; tiny images may want fewer).
        projection_layers: linear layers from the pooled features to the output (hidden
            layers keep the pooled width, with ReLU); 0 outputs the pooled features.
        embedding_size: output units when no output size is given (a node model
            follows); unset keeps the pooled width.
        normalize: L2-normalize each output row (unit-norm embeddings for search).
        dropout: dropout on the pooled features before the projection (none without
            one).
        zero_init_residual: start each residual branch's last BatchNorm at zero, so
            every block begins as the identity (Goyal et al. 2017).
    """

    # One input row is an image (C, H, W), not a feature vector: what zoo.testing's
    # conformance check feeds it (in_dim is the channel count).
    sample_input_shape = (3, 16, 16)

    def __init__(self, in_dim: int, out_dim: int | None, *, depth: Literal[18, 34, 50] = 18,
                 width: Units = 64, stem: Literal["auto", "imagenet", "small"] = "auto",
                 stages: Annotated[int, Ge(1), Le(4)] = 4,
                 projection_layers: Annotated[int, Ge(0)] = 1,
                 embedding_size: Annotated[int, Ge(1)] | None = None,
                 normalize: bool = False, dropout: DropoutRate = 0.0,
                 zero_init_residual: bool = True) -> None:
        super().__init__()
        block = Bottleneck if depth == 50 else BasicBlock
        self.stem = Stem(in_dim, width, stem)
        layers, in_ch = [], width
        for i, blocks in enumerate(LAYOUTS[depth][:stages]):
            planes = width * 2 ** i
            for j in range(blocks):
                layers.append(block(in_ch, planes, 2 if i > 0 and j == 0 else 1))
                in_ch = planes * block.expansion
        self.stages = nn.Sequential(*layers)
        self.feature_dim = in_ch
        self.out_dim = self.output_size(out_dim, embedding_size, projection_layers)
        sizes = [in_ch] * projection_layers + [self.out_dim]
        self.projection = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.normalize, self.p = normalize, dropout
        self.reset_parameters(zero_init_residual)

    def output_size(self, out_dim: int | None, embedding_size: int | None,
                    projection_layers: int) -> int:
        """The output width, checked against the other settings."""
        if out_dim is not None and embedding_size is not None and out_dim != embedding_size:
            raise ValueError(f"resnet: embedding_size {embedding_size} differs from the "
                             f"task's output size {out_dim}; drop embedding_size (it only "
                             "applies when a node model follows)")
        size = out_dim or embedding_size or self.feature_dim
        if projection_layers == 0 and size != self.feature_dim:
            raise ValueError(f"resnet: projection_layers 0 outputs the {self.feature_dim} "
                             f"pooled features, but {size} outputs are needed; set "
                             "projection_layers >= 1")
        return size

    def reset_parameters(self, zero_init_residual: bool) -> None:
        """Kaiming-normal convolutions (fan-out, as torchvision), unit BatchNorms, and
        optionally zero gammas closing each residual branch."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.stages:
                nn.init.zeros_(m.branch[-1].weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled backbone features, ``(B, feature_dim)``."""
        # Adaptive pooling reduces any remaining map (1x1 included) to one vector.
        return F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        embedding = self.forward_features(x)
        out = F.dropout(embedding, self.p, self.training) if self.projection else embedding
        for i, linear in enumerate(self.projection):
            out = linear(out) if i == 0 else linear(F.relu(out))
        if self.normalize:
            out = F.normalize(out, dim=1)
        return ModelOutput(logits=out, embedding=embedding)


@zoo.hookimpl
def zoo_register(registry) -> None:
    registry.add("encoder", "resnet", ResNet)
