"""JSON Schema to the OpenAPI-subset ``Schema`` that Gemini's function declarations take.

``functionDeclarations[].parameters`` is not JSON Schema: types are upper-case enum names
(``OBJECT``, ``STRING``), a value that may be null says ``nullable: true`` instead of listing
``"null"`` as a type, and there is no ``$ref``, ``additionalProperties``, ``const``, ``oneOf`` or
``allOf``; ``enum`` is for strings only and few ``format`` values are accepted (others are
rejected with a 400). :func:`function_parameters` rewrites a tool's JSON Schema into that form,
keeping its meaning wherever the subset can say it:

* ``$ref`` into ``$defs``/``definitions`` is inlined; a recursive reference becomes an open
  ``OBJECT`` (the subset cannot express recursion);
* ``anyOf``/``oneOf`` and type lists lose their ``null`` member and gain ``nullable: true``; a
  single remaining member is merged into its parent; ``allOf`` members are merged;
* a string ``const`` becomes a one-value ``enum``; an ``enum`` of non-strings is dropped and its
  values are listed in the description instead, so the model still learns them;
* keywords outside the subset (``additionalProperties``, ``$schema``, ``multipleOf``, ...) are
  left out.

Example::

    function_parameters(
        {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}
    )
    # {"type": "OBJECT", "properties": {"tags": {"type": "ARRAY", "items": {"type": "STRING"}}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["function_parameters", "gemini_schema"]

_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}

# The only formats Gemini accepts per type; any other value makes the request fail.
_FORMATS = {
    "STRING": frozenset({"enum", "date-time"}),
    "NUMBER": frozenset({"float", "double"}),
    "INTEGER": frozenset({"int32", "int64"}),
}

# Keywords the subset shares with JSON Schema, copied as they are.
_COPIED = (
    "title",
    "description",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "default",
    "example",
    "propertyOrdering",
)


def function_parameters(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The ``parameters`` of a function declaration: always an ``OBJECT`` with ``properties``."""
    result = gemini_schema(schema)
    if "type" not in result and "anyOf" not in result:
        result["type"] = "OBJECT"
    if result.get("type") == "OBJECT":
        result.setdefault("properties", {})
    return result


def gemini_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` (JSON Schema, ``$defs`` at its root) in Gemini's OpenAPI-subset form."""
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        found = schema.get(key)
        if isinstance(found, Mapping):
            defs.update(found)
    return _convert(schema, defs, ())


def _convert(node: Any, defs: Mapping[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, Mapping):
        return {}
    out: dict[str, Any] = {}
    nullable = False

    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        target = defs.get(name)
        if isinstance(target, Mapping) and name not in seen:
            _merge(out, _convert(target, defs, (*seen, name)))
        else:
            out["type"] = "OBJECT"

    members = node.get("allOf")
    if isinstance(members, list):
        for member in members:
            _merge(out, _convert(member, defs, seen))

    variants = node.get("anyOf", node.get("oneOf"))
    if isinstance(variants, list):
        kept = []
        for variant in variants:
            if isinstance(variant, Mapping) and variant.get("type") == "null":
                nullable = True
            else:
                kept.append(_convert(variant, defs, seen))
        if len(kept) == 1:
            nullable = nullable or bool(kept[0].pop("nullable", False))
            _merge(out, kept[0])
        elif kept:
            out["anyOf"] = kept

    kind = node.get("type")
    if isinstance(kind, list):
        names = [str(k) for k in kind if k != "null"]
        nullable = nullable or len(names) < len(kind)
        if len(names) > 1:
            out["anyOf"] = [{"type": _TYPES.get(n, n.upper())} for n in names]
        kind = names[0] if len(names) == 1 else None
    if isinstance(kind, str) and kind != "null":
        out["type"] = _TYPES.get(kind, kind.upper())

    description = node.get("description")
    const = node.get("const")
    if isinstance(const, str):
        out["enum"] = [const]
        out.setdefault("type", "STRING")
    enum = node.get("enum")
    if isinstance(enum, list):
        values = [value for value in enum if value is not None]
        nullable = nullable or len(values) < len(enum)
        if values and all(isinstance(value, str) for value in values):
            out["enum"] = values
            out.setdefault("type", "STRING")
        elif values:
            # Gemini takes enums of strings only; the description still tells the model.
            allowed = "Allowed values: " + ", ".join(str(value) for value in values) + "."
            description = f"{description} {allowed}" if description else allowed

    properties = node.get("properties")
    if isinstance(properties, Mapping):
        converted_properties = {
            str(name): _convert(value, defs, seen) for name, value in properties.items()
        }
        _merge(out, {"properties": converted_properties})
    required = node.get("required")
    if isinstance(required, list):
        known = out.get("properties")
        out["required"] = [r for r in required if known is None or r in known]

    items = node.get("items")
    prefix = node.get("prefixItems")
    if isinstance(items, Mapping):
        out["items"] = _convert(items, defs, seen)
    elif isinstance(prefix, list) and prefix:
        # A tuple: the subset has no positional items, so each position may be any of them.
        converted = [_convert(item, defs, seen) for item in prefix]
        unique = [c for i, c in enumerate(converted) if c not in converted[:i]]
        out["items"] = unique[0] if len(unique) == 1 else {"anyOf": unique}

    for key in _COPIED:
        if key in node:
            out[key] = node[key]
    if description is not None:
        out["description"] = description
    examples = node.get("examples")
    if "example" not in out and isinstance(examples, list) and examples:
        out["example"] = examples[0]

    fmt = node.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(str(out.get("type")), ()):
        out["format"] = fmt
    if nullable or node.get("nullable") is True:
        out["nullable"] = True
    return out


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    """Fold ``other`` into ``into``: properties and required lists are united, the rest replaced."""
    for key, value in other.items():
        current = into.get(key)
        if key == "properties" and isinstance(current, dict) and isinstance(value, Mapping):
            current.update(value)
        elif key == "required" and isinstance(current, list) and isinstance(value, list):
            current.extend(v for v in value if v not in current)
        else:
            into[key] = value
