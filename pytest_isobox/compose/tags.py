"""Compose's merge tags (compose-spec 13-merge.md): in a later file, `!reset` takes a value
back to its default (the key as if never given), `!override` replaces the earlier value
whole instead of merging into it.

    services:
      web:
        ports: !reset []           # none of the base file's ports
        environment: !override     # exactly these, none of the base's
          ONLY: "1"

The YAML loader wraps tagged values in `Reset`/`Override`; interpolation and normalisation
look inside them; the merge applies them; `unwrap` turns what is left into plain values
(a Reset key dropped), before validation and at the end of the merge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Reset:
    value: Any


@dataclass
class Override:
    value: Any


Tagged = (Reset, Override)


def loader() -> type:
    """PyYAML's SafeLoader with `!reset` and `!override` on scalars, sequences, mappings."""
    import yaml

    class ComposeLoader(yaml.SafeLoader):
        pass

    def construct(kind: type) -> Callable[[Any, Any], Any]:
        def make(loader: Any, node: Any) -> Any:
            if isinstance(node, yaml.MappingNode):
                return kind(loader.construct_mapping(node, deep=True))
            if isinstance(node, yaml.SequenceNode):
                return kind(loader.construct_sequence(node, deep=True))
            scalar = loader.construct_scalar(node)
            return kind(yaml.safe_load(scalar) if scalar else None)
        return make

    ComposeLoader.add_constructor("!reset", construct(Reset))
    ComposeLoader.add_constructor("!override", construct(Override))
    return ComposeLoader


def inside(value: Any, change: Callable[[Any], Any]) -> Any:
    """`change` applied to a tagged value's content, the tag kept (else to the value)."""
    if isinstance(value, Tagged):
        return type(value)(change(value.value))
    return change(value)


def unwrap(value: Any) -> Any:
    """Plain values: keys whose value is a Reset dropped, Overrides replaced by content."""
    if isinstance(value, Override):
        return unwrap(value.value)
    if isinstance(value, Reset):
        return None
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items() if not isinstance(v, Reset)}
    if isinstance(value, list):
        return [unwrap(v) for v in value if not isinstance(v, Reset)]
    return value
