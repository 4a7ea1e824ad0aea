"""Registry and schemas: derived from signatures, validated with dotted paths."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from torch import nn

from zoo.errors import ConfigError, PluginError
from zoo.registry import PluginRegistrar, Registry
from zoo.introspect import parse_arg_docs
from zoo.schema import ComponentSpec, Ge, Kind, Lt


class Toy(nn.Module):
    """A toy encoder for tests.

    Args:
        hidden: units in the hidden layer.
        act: the activation.
        rates: a list of rates.
    """

    def __init__(self, in_dim: int, out_dim: int | None, *, hidden: Annotated[int, Ge(1)] = 16,
                 act: Literal["relu", "tanh"] = "relu", rates: list[float] = (0.1,),
                 dropout: Annotated[float, Ge(0), Lt(1)] = 0.5,
                 name_tag: str | None = None) -> None:
        super().__init__()
        self.args = dict(in_dim=in_dim, out_dim=out_dim, hidden=hidden, act=act, rates=rates,
                         dropout=dropout, name_tag=name_tag)
        self.out_dim = out_dim or hidden

    def forward(self, x):
        return x


def needs(*, required: int) -> dict:
    """A factory with a required parameter."""
    return {"required": required}


class Outer:
    """A trainer with a nested encoder section."""

    def __init__(self, *, encoder: Annotated[dict, Kind("encoder")] = {"name": "toy"}) -> None:  # noqa: B006
        self.encoder = encoder

    def fit(self, ctx):
        return {}


def make_registry() -> Registry:
    reg = Registry()
    r = PluginRegistrar("toys", "toy-dist", "1.0")
    r.add("encoder", "toy", Toy)
    r.add("dataset", "needs", needs)
    r.add("trainer", "outer", Outer)
    r.commit(reg)
    return reg


def test_schema_is_derived_from_the_signature():
    comp = make_registry().get("encoder", "toy")
    assert comp.inputs == ("in_dim", "out_dim")
    assert list(comp.params) == ["hidden", "act", "rates", "dropout", "name_tag"]
    assert comp.params["hidden"].default == 16
    assert comp.params["hidden"].doc == "units in the hidden layer."
    assert comp.summary == "A toy encoder for tests."
    assert comp.defaults()["act"] == "relu"


def test_build_fills_defaults_and_passes_inputs():
    obj = make_registry().build("encoder", {"name": "toy", "hidden": 8, "dropout": 0}, 5, 3)
    assert obj.args == dict(in_dim=5, out_dim=3, hidden=8, act="relu", rates=[0.1],
                            dropout=0.0, name_tag=None)
    assert isinstance(obj.args["dropout"], float)  # ints widen to floats


def test_nested_sections_arrive_as_specs_built_from_the_same_registry():
    reg = make_registry()
    outer = reg.build("trainer", {"name": "outer", "encoder": {"hidden": 3}})
    assert isinstance(outer.encoder, ComponentSpec) and outer.encoder.name == "toy"
    # A partial nested section keeps the default component and fills in its defaults.
    assert outer.encoder.config == {"name": "toy", "hidden": 3, "act": "relu",
                                    "rates": [0.1], "dropout": 0.5, "name_tag": None}
    built = outer.encoder(4, None)
    assert built.args["in_dim"] == 4 and built.args["hidden"] == 3


@pytest.mark.parametrize("section, message", [
    ({"name": "toy", "hidden": 0}, "model.hidden: must be >= 1, got 0"),
    ({"name": "toy", "dropout": 1.0}, "model.dropout: must be in [0, 1), got 1.0"),
    ({"name": "toy", "dropout": -0.1}, "model.dropout: must be in [0, 1), got -0.1"),
    ({"name": "toy", "dropout": float("nan")},
     "model.dropout: must be a finite number in [0, 1), got nan"),
])
def test_ranges_are_checked_and_shown(section, message):
    reg = make_registry()
    with pytest.raises(ConfigError) as err:
        reg.validate("encoder", section, "model")
    assert str(err.value).startswith(message)
    params = reg.get("encoder", "toy").to_dict()["params"]
    assert params["hidden"]["type"] == "int >= 1"
    assert params["dropout"]["type"] == "float in [0, 1)"


@pytest.mark.parametrize("section, message", [
    ({"name": "tooy"}, "model.name: unknown encoder 'tooy' (did you mean 'toy'?); "
                       "known encoders: toy"),
    ({"name": "toy", "hiden": 3}, "model.hiden: unknown key for encoder 'toy' (did you mean "
                                  "'hidden'?)"),
    ({"name": "toy", "hidden": "big"}, "model.hidden: expected int, got the string 'big'"),
    ({"name": "toy", "hidden": True}, "model.hidden: expected int, got the boolean true"),
    ({"name": "toy", "act": "relux"}, "model.act: the string 'relux' is not one of 'relu', "
                                      "'tanh' (did you mean 'relu'?)"),
    ({"name": "toy", "rates": [0.1, "x"]}, "model.rates[1]: expected float, got the string 'x'"),
    ({"hidden": 3}, "model.name is missing"),
])
def test_validation_errors_name_the_dotted_path(section, message):
    with pytest.raises(ConfigError) as err:
        make_registry().validate("encoder", section, "model")
    assert str(err.value).startswith(message)


def test_required_parameter_and_wrong_kind_hint():
    reg = make_registry()
    with pytest.raises(ConfigError, match="dataset.required is required"):
        reg.validate("dataset", {"name": "needs"}, "dataset")
    with pytest.raises(ConfigError, match="'toy' is a encoder"):
        reg.validate("dataset", {"name": "toy"}, "dataset")


def test_nested_component_sections_are_validated():
    reg = make_registry()
    ok = reg.validate("trainer", {"name": "outer", "encoder": {"name": "toy", "hidden": 2}},
                      "trainer")
    assert ok["encoder"]["hidden"] == 2 and ok["encoder"]["act"] == "relu"
    with pytest.raises(ConfigError, match=r"trainer.encoder.hiden: unknown key"):
        reg.validate("trainer", {"name": "outer", "encoder": {"name": "toy", "hiden": 2}},
                     "trainer")


def test_list_with_wildcards_and_kinds():
    reg = make_registry()
    assert [c.name for c in reg.list("to*")] == ["toy"]
    assert [c.name for c in reg.list(kind="dataset")] == ["needs"]
    assert reg.list("zz*") == []
    with pytest.raises(ConfigError, match="unknown kind 'encodr'"):
        reg.list(kind="encodr")


def test_clash_names_both_distributions_and_override_wins():
    reg = make_registry()
    other = PluginRegistrar("copycat", "copy-dist", "2.0")
    other.add("encoder", "toy", Toy)
    _, clashes = other.commit(reg)
    assert clashes and "toy-dist 1.0 and copy-dist 2.0" in clashes[0]
    with pytest.raises(PluginError, match="registered by both toy-dist 1.0 and copy-dist 2.0"):
        reg.get("encoder", "toy")
    # Either candidate stays reachable by its qualified name.
    assert reg.get("encoder", "copycat:toy").distribution == "copy-dist"
    assert reg.get("encoder", "toys:toy").distribution == "toy-dist"

    reg = make_registry()
    winner = PluginRegistrar("better", "better-dist", "3.0")
    winner.add("encoder", "toy", Toy, override=True)
    assert winner.commit(reg)[1] == []
    comp = reg.get("encoder", "toy")
    assert comp.distribution == "better-dist" and comp.overrides == "toy-dist 1.0"


def test_bad_registrations_are_refused_with_the_reason():
    r = PluginRegistrar("bad", "bad-dist", "0.1")
    r.add("encodr", "x", Toy)

    def wrong_default(in_dim, out_dim, *, hidden: int = "many") -> None:  # type: ignore[assignment]
        """Broken."""

    r.add("encoder", "y", wrong_default)
    assert not r.pending
    assert "unknown kind 'encodr' (did you mean 'encoder'?)" in r.refused[0]
    assert "the default of 'hidden' does not match its type" in r.refused[1]


def test_google_style_arg_docs():
    docs = parse_arg_docs("""Summary.

    Args:
        alpha: first line
            continues here.
        beta (int): second.

    Returns:
        nothing: really.
    """)
    assert docs == {"alpha": "first line continues here.", "beta": "second."}
