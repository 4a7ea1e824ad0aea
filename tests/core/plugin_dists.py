"""Write throw-away plugin distributions (a module plus its .dist-info with entry points)
into a folder, so tests exercise real entry-point discovery without pip."""

from __future__ import annotations

import textwrap
from pathlib import Path

GOOD = '''
import torch
import zoo

class Doubler(torch.nn.Module):
    """Doubles its input (a test encoder)."""

    def __init__(self, in_dim, out_dim, *, scale: float = 2.0):
        super().__init__()
        self.lin = torch.nn.Linear(in_dim, out_dim or in_dim)
        self.out_dim = out_dim or in_dim
        self.scale = scale

    def forward(self, x):
        return self.lin(x.to_dense() if x.is_sparse else x) * self.scale

@zoo.hookimpl
def zoo_register(registry):
    registry.add("encoder", "{component}", Doubler{override})
'''

BROKEN_IMPORT = "import zoo\nimport a_module_that_does_not_exist\n"

RAISES = '''
import zoo

def first(*, x: int = 1):
    """Registered before the hook fails."""

@zoo.hookimpl
def zoo_register(registry):
    registry.add("encoder", "half_registered", first)
    raise RuntimeError("boom in the hook")
'''

EXITS = "import sys\nsys.exit(3)\n"


def write_dist(root: Path, dist: str, version: str, entry: str, module: str, source: str) -> None:
    """A distribution ``dist`` whose ``zoo.plugins`` entry point ``entry`` is ``module``."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[zoo.plugins]\n{entry} = {module}\n")


def good(component: str, override: bool = False) -> str:
    """Source of a plugin registering the encoder ``component``."""
    return GOOD.replace("{component}", component).replace(
        "{override}", ", override=True" if override else "")
