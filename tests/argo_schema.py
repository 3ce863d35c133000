"""Argo's JSON schema (../shared/schemas) made strict, for validating generated manifests."""

import copy
import json
from pathlib import Path

import pytest

PREFIX = "io.argoproj.workflow.v1alpha1."


def strict_definitions(repo_root: Path) -> dict:
    """The schema's definitions with ``additionalProperties: false`` wherever an object lists its
    properties, so unknown keys are errors; skips the test when ../shared is absent."""
    path = repo_root.parent / "shared" / "schemas" / "argo-workflows-v3.6.schema.json"
    if not path.is_file():
        pytest.skip("../shared/schemas/argo-workflows-v3.6.schema.json is not present")
    defs = copy.deepcopy(json.loads(path.read_text())["definitions"])
    stack = [defs]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "properties" in item and "additionalProperties" not in item:
                item["additionalProperties"] = False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return defs


def schema_errors(defs: dict, kind: str, doc: dict) -> list[str]:
    """``path: message`` for every way ``doc`` breaks the schema of Argo kind ``kind``, sorted."""
    import jsonschema

    schema = {"$ref": f"#/definitions/{PREFIX}{kind}", "definitions": defs}
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]
