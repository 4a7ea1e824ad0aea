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


# -- plugins with the mistakes registration catches (tests/core/test_registration.py) --
# Each registers a correct encoder ``fine_<entry>`` beside its faulty component(s), so a
# test can check that the mistake costs only the faulty component.
_FINE = '''
import torch
import zoo


class Fine(torch.nn.Module):
    """A correct encoder, registered beside the faulty component."""

    def __init__(self, in_dim, out_dim, *, scale: float = 1.0):
        super().__init__()
        self.out_dim = out_dim or in_dim
        self.lin = torch.nn.Linear(in_dim, self.out_dim)
        self.scale = scale

    def forward(self, x):
        return self.lin(x.to_dense() if x.is_sparse else x) * self.scale
'''

UNEXPRESSIBLE_PARAM = _FINE + '''

class ModuleParam(torch.nn.Module):
    """A node model taking an nn.Module as config, which YAML cannot express."""

    def __init__(self, in_dim, out_dim, *, act: torch.nn.Module = None):
        super().__init__()

    def forward(self, graph, x):
        return x


@zoo.hookimpl
def zoo_register(registry):
    registry.add("encoder", "fine_unexpressible", Fine)
    registry.add("node_model", "module_param", ModuleParam)
'''

FORGOTTEN_STAR = _FINE + '''

class NoStar(torch.nn.Module):
    """A node model whose config parameter is positional (a forgotten `*`)."""

    def __init__(self, in_dim, out_dim, hidden=64):
        super().__init__()

    def forward(self, graph, x):
        return x


@zoo.hookimpl
def zoo_register(registry):
    registry.add("encoder", "fine_forgotten_star", Fine)
    registry.add("node_model", "no_star", NoStar)
'''

WRONG_INPUTS = _FINE + '''

class GraphReg(torch.nn.Module):
    """A regularizer expecting the graph as a positional input (it gets none)."""

    def __init__(self, graph, *, multiplier: float = 1.0):
        super().__init__()

    def forward(self, inp):
        return inp.logits.sum() * 0


class OneInput(torch.nn.Module):
    """A node model taking only in_dim (it gets in_dim and out_dim)."""

    def __init__(self, in_dim, *, hidden: int = 8):
        super().__init__()

    def forward(self, graph, x):
        return x


@zoo.hookimpl
def zoo_register(registry):
    registry.add("encoder", "fine_wrong_inputs", Fine)
    registry.add("regularizer", "graph_reg", GraphReg)
    registry.add("node_model", "one_input", OneInput)
'''

NO_DOCSTRING = _FINE + '''

class Undocumented(torch.nn.Module):
    def __init__(self, in_dim, out_dim, *, hidden: int = 8):
        super().__init__()
        self.out_dim = out_dim or hidden

    def forward(self, x):
        return x


@zoo.hookimpl
def zoo_register(registry):
    registry.add("encoder", "fine_no_docstring", Fine)
    registry.add("encoder", "undocumented", Undocumented)
'''

MISSING_METHOD = _FINE + '''

class NoFit:
    """A trainer without fit()."""

    def __init__(self, *, epochs: int = 1):
        self.epochs = epochs


class NoEpoch:
    """A batch source without epoch()."""

    graph_input = "whole"

    def __init__(self, *, batch_size: int = 8):
        self.batch_size = batch_size

    def bind(self, data, graph, runtime):
        pass

    def infer(self, model):
        pass


class NoForward(torch.nn.Module):
    """A node model without forward() (nn.Module's own only raises)."""

    def __init__(self, in_dim, out_dim):
        super().__init__()


@zoo.hookimpl
def zoo_register(registry):
    registry.add("encoder", "fine_missing_method", Fine)
    registry.add("trainer", "no_fit", NoFit)
    registry.add("batch_source", "no_epoch", NoEpoch)
    registry.add("node_model", "no_forward", NoForward)
'''

WRONG_DEFAULT = _FINE + '''

class ManyHidden(torch.nn.Module):
    """An encoder whose default does not match its type."""

    def __init__(self, in_dim, out_dim, *, hidden: int = "many"):
        super().__init__()
        self.out_dim = out_dim or 8

    def forward(self, x):
        return x


@zoo.hookimpl
def zoo_register(registry):
    registry.add("encoder", "fine_wrong_default", Fine)
    registry.add("encoder", "many_hidden", ManyHidden)
'''

MISSPELLED_HOOK = '''
import torch
import zoo


def tiny(*, n: int = 3):
    """Never registered: the hook is misspelled."""


@zoo.hookimpl
def zoo_registr(registry):
    registry.add("dataset", "never_registered", tiny)
'''

UNMARKED_HOOK = '''
import zoo


def tiny(*, n: int = 3):
    """Never registered: the hook is not marked."""


def zoo_register(registry):
    registry.add("dataset", "never_registered_either", tiny)
'''

REGISTERS_NOTHING = '''
import zoo


@zoo.hookimpl
def zoo_register(registry):
    pass
'''

# A third-party ``gcn`` node model: its only parameter, ``depth``, is not the built-in's,
# so a config validated against the wrong one fails.
_THIRD_PARTY_GCN = '''
import torch
import zoo


class OtherGCN(torch.nn.Module):
    """A third-party node model that is also called gcn."""

    def __init__(self, in_dim, out_dim, *, depth: int = 1):
        super().__init__()
        self.lin = torch.nn.Linear(in_dim, out_dim)

    def forward(self, graph, x):
        return self.lin(x.to_dense() if x.is_sparse else x)


@zoo.hookimpl
def zoo_register(registry):
    registry.add("node_model", "gcn", OtherGCN{override})
'''

TAKES_BUILTIN_NAME = _THIRD_PARTY_GCN.replace("{override}", "")
OVERRIDES_BUILTIN = _THIRD_PARTY_GCN.replace("{override}", ", override=True")


# -- a plugin whose components break their contracts at run time ----------------------
# (tests/core/test_contract_errors.py): a tiny dataset and a node model returning a tuple.
CONTRACT_BREAKER = '''
import dgl
import torch
import zoo


def tiny(*, nodes: int = 30):
    """Thirty nodes in three classes on a random graph."""
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(0, nodes, (nodes * 4,), generator=gen)
    dst = torch.randint(0, nodes, (nodes * 4,), generator=gen)
    ids = torch.arange(nodes)
    return zoo.GraphData(dgl.graph((src, dst), num_nodes=nodes),
                         torch.randn(nodes, 5, generator=gen), ids % 3, ids < 9,
                         (ids >= 9) & (ids < 18), ids >= 18, num_classes=3, name="tiny")


class TupleModel(torch.nn.Module):
    """A node model returning a tuple instead of a tensor."""

    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.lin = torch.nn.Linear(in_dim, out_dim)

    def forward(self, graph, x):
        y = self.lin(x)
        return y, y


@zoo.hookimpl
def zoo_register(registry):
    registry.add("dataset", "tiny_breaker", tiny)
    registry.add("node_model", "tuple_model", TupleModel)
'''


def plugin_site(tmp_path: Path, monkeypatch, prefix: str):
    """A folder on sys.path for throw-away distributions, loaded by the default manager
    (as the CLI loads them); their modules (named ``prefix...``) and the manager are
    forgotten afterwards. A generator for a fixture to ``yield from``."""
    import sys

    from zoo.plugins import reset_default_manager

    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("ZOO_PLUGINS", raising=False)
    monkeypatch.delenv("ZOO_STRICT_PLUGINS", raising=False)
    reset_default_manager()
    yield root
    reset_default_manager()
    for name in [m for m in sys.modules if m.startswith(prefix)]:
        del sys.modules[name]
