"""``resnet``: output shapes across depths, stems and image sizes, torchvision's
parameter counts, zero-initialized residual branches, unit-norm outputs, building
through the registry, and learning a trivially separable image task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

import zoo
from zoo.contracts import ModelOutput
from zoo.errors import ConfigError
from zoo.plugins import default_manager
from zoo_plugins.encoders.resnet import ResNet

# (channels, side, out_dim): grey digits, grey MNIST without an output size, RGB.
IMAGES = [(1, 8, 10), (1, 28, None), (3, 64, 7)]


@pytest.mark.parametrize("depth", [18, 34, 50])
@pytest.mark.parametrize("stem", ["auto", "imagenet", "small"])
@pytest.mark.parametrize(("channels", "side", "out_dim"), IMAGES)
def test_output_shapes(depth, stem, channels, side, out_dim):
    torch.manual_seed(0)
    model = ResNet(channels, out_dim, depth=depth, width=8, stem=stem)
    pooled = 8 * 8 * (4 if depth == 50 else 1)
    assert model.feature_dim == pooled and model.out_dim == (out_dim or pooled)
    out = model(torch.randn(2, channels, side, side))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (2, model.out_dim) and out.embedding.shape == (2, pooled)
    assert torch.isfinite(out.logits).all()


@pytest.mark.parametrize(("stem", "side", "stem_side"), [
    ("small", 28, 28), ("small", 64, 64), ("imagenet", 28, 7), ("imagenet", 64, 16),
    ("auto", 8, 8), ("auto", 28, 28), ("auto", 64, 16), ("auto", 96, 24)])
def test_stem_resolution(stem, side, stem_side):
    model = ResNet(3, 4, width=8, stem=stem)
    assert model.stem(torch.randn(2, 3, side, side)).shape == (2, 8, stem_side, stem_side)


def test_fewer_stages_and_odd_channels():
    model = ResNet(5, None, depth=18, width=8, stages=2, stem="small")
    assert model.out_dim == 16
    out = model(torch.randn(3, 5, 8, 8))
    assert out.logits.shape == (3, 16) and out.embedding.shape == (3, 16)


def test_embedding_is_the_pooled_features_and_logits_their_projection():
    torch.manual_seed(0)
    model = ResNet(1, 6, width=8, stem="small", projection_layers=2).eval()
    x = torch.randn(4, 1, 8, 8)
    out = model(x)
    assert_close(out.embedding, model.forward_features(x))
    first, second = model.projection
    assert_close(out.logits, second(F.relu(first(out.embedding))))
    assert first.out_features == 64 and second.out_features == 6


def test_embedding_size_sets_the_width_without_an_output_size():
    model = ResNet(1, None, width=8, stem="small", embedding_size=12)
    assert model.out_dim == 12 and model(torch.randn(2, 1, 8, 8)).logits.shape == (2, 12)
    assert ResNet(1, 12, width=8, embedding_size=12).out_dim == 12
    with pytest.raises(ValueError, match="embedding_size 12 differs"):
        ResNet(1, 10, width=8, embedding_size=12)


def test_no_projection_outputs_the_pooled_features():
    model = ResNet(1, None, width=8, stem="small", projection_layers=0).eval()
    out = model(torch.randn(2, 1, 8, 8))
    assert model.out_dim == 64 and len(model.projection) == 0
    assert_close(out.logits, out.embedding)
    assert ResNet(1, 64, width=8, projection_layers=0).out_dim == 64
    with pytest.raises(ValueError, match="projection_layers >= 1"):
        ResNet(1, 10, width=8, projection_layers=0)


def test_normalize_gives_unit_rows():
    torch.manual_seed(0)
    model = ResNet(3, 16, width=8, stem="small", normalize=True, projection_layers=2)
    logits = model(torch.randn(5, 3, 8, 8)).logits
    assert_close(logits.norm(dim=1), torch.ones(5))


@pytest.mark.parametrize("depth", [18, 50])
def test_zero_init_residual(depth):
    torch.manual_seed(0)
    model = ResNet(3, 4, depth=depth, width=8, stem="small")
    last_bns = [block.branch[-1] for block in model.stages]
    assert len(last_bns) == (8 if depth == 18 else 16)
    assert all(isinstance(bn, nn.BatchNorm2d) and not bn.weight.any() for bn in last_bns)
    # Each block starts as relu(shortcut(x)): the identity on the ReLU'd stem output.
    identity_block = model.stages[1]
    x = F.relu(torch.randn(2, identity_block.branch[0].in_channels, 4, 4))
    assert_close(identity_block(x), x)
    plain = ResNet(3, 4, depth=depth, width=8, zero_init_residual=False)
    assert all((block.branch[-1].weight == 1).all() for block in plain.stages)


@pytest.mark.parametrize(("depth", "count"), [(18, 11_689_512), (34, 21_797_672),
                                              (50, 25_557_032)])
def test_parameter_count_matches_torchvision(depth, count):
    model = ResNet(3, 1000, depth=depth, width=64, stem="imagenet", zero_init_residual=False)
    assert sum(p.numel() for p in model.parameters()) == count


def test_registered_and_built_through_the_registry():
    registry = default_manager().registry
    model = registry.build("encoder", {"name": "resnet", "depth": 18, "width": 8}, 1, 10)
    assert isinstance(model, ResNet) and model.out_dim == 10
    assert model(torch.randn(2, 1, 8, 8)).logits.shape == (2, 10)
    comp = zoo.show("resnet")
    assert comp.kind == "encoder" and comp.params["depth"].default == 18
    assert all(p.doc for p in comp.params.values())


@pytest.mark.parametrize("section", [{"depth": 20}, {"width": 0}, {"stages": 5},
                                     {"stem": "large"}, {"dropout": 1.0}])
def test_registry_rejects_invalid_config(section):
    with pytest.raises(ConfigError):
        default_manager().registry.build("encoder", {"name": "resnet", **section}, 1, 10)


def bright_or_dark(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 grey images: bright ones (label 1) sit 0.5 above dark ones, under noise of the
    same scale."""
    labels = torch.arange(n) % 2
    return 0.5 * labels.float().view(-1, 1, 1, 1) + 0.5 * torch.randn(n, 1, 8, 8,
                                                                       generator=gen), labels


def test_learns_bright_versus_dark_images():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, labels = bright_or_dark(64, gen)
    model = ResNet(1, 2, width=8, stages=2, stem="small")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(model(x).logits, labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    # Fresh images in eval mode (BatchNorm's running statistics): learnt, not memorized.
    held_out, held_out_labels = bright_or_dark(200, gen)
    with torch.no_grad():
        predicted = model.eval()(held_out).logits.argmax(1)
    assert (predicted == held_out_labels).float().mean() > 0.9
