"""moby's api/swagger.yaml (tests/data/moby, Apache-2.0) as JSON schemas to check documents by.

Swagger 2.0 schemas are JSON Schema draft 4 with `x-nullable`. A nullable field accepts null
as well as its type; so do arrays and objects, since Docker's daemon writes Go's nil slices and
maps as null whatever the schema says (its own documents would not fit otherwise; the test of
dockerd's documents shows they do). Scalars are not loosened, but for the ones dockerd itself
writes as null (DAEMON_NULLS).
"""

from __future__ import annotations

import functools
from pathlib import Path

SWAGGER = Path(__file__).resolve().parent.parent / "data" / "moby" / "swagger.yaml"


def _nullable(node: object) -> object:
    if isinstance(node, dict):
        node = {k: _nullable(v) for k, v in node.items()}
        kind = node.get("type")
        if node.get("x-nullable") or kind in ("array", "object"):
            if "$ref" in node:
                return {"anyOf": [{"$ref": node["$ref"]}, {"type": "null"}]}
            if isinstance(kind, str):
                node["type"] = [kind, "null"]
        return node
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


# (definition, property) dockerd 20.10 writes as null though the schema says a plain scalar
DAEMON_NULLS = (("Resources", "MemorySwappiness"),)


@functools.cache
def _definitions() -> dict:
    import yaml

    definitions = yaml.safe_load(SWAGGER.read_text())["definitions"]
    for definition, prop in DAEMON_NULLS:
        definitions[definition]["properties"][prop]["x-nullable"] = True
    return _nullable(definitions)


def errors(document: object, definition: str) -> list[str]:
    """Where `document` breaks moby's schema `definition` (empty when it fits)."""
    import jsonschema

    schema = {"$ref": f"#/definitions/{definition}", "definitions": _definitions()}
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in validator.iter_errors(document)]
