"""Structured output: turning a pydantic model or JSON Schema into a request, and parsing replies.

``chat.with_schema(Person)`` asks the model for JSON matching ``Person``; the reply's
``parsed`` attribute is then a ``Person`` instance (or a dict for a plain JSON Schema). A reply
that does not match raises :class:`~sa_llm.errors.StructuredOutputError`, which keeps the raw
text so nothing is lost.

Example::

    class Person(BaseModel):
        name: str
        age: int

    reply = chat.with_schema(Person).ask("Generate a person named Alice who is 28")
    reply.parsed  # Person(name='Alice', age=28)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from sa_llm.errors import ConfigurationError, StructuredOutputError
from sa_llm.providers.base import SchemaSpec

__all__ = ["OutputSchema", "clean_schema", "strict_schema"]

_DROP_KEYS = frozenset({"title"})


def clean_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a pydantic-made schema without noise keys (titles)."""

    def walk(node: Any, parent_key: str | None = None) -> Any:
        if isinstance(node, Mapping):
            return {
                key: walk(value, key)
                for key, value in node.items()
                # "title" is noise except where it is a property's name.
                if not (key in _DROP_KEYS and parent_key != "properties")
            }
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    result = walk(schema)
    assert isinstance(result, dict)
    return result


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema in the form OpenAI's strict mode requires (a pure function).

    Every object gets ``additionalProperties: false`` and lists all its properties as required;
    a property that was optional becomes nullable instead, so its meaning is kept.
    """

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: walk(value) for key, value in node.items()}
        if node.get("type") == "object" or "properties" in node:
            properties: dict[str, Any] = node.get("properties", {})
            required = set(node.get("required", []))
            for name, prop in list(properties.items()):
                if name not in required and isinstance(prop, dict):
                    properties[name] = _nullable(prop)
            node["properties"] = properties
            node["required"] = list(properties)
            node["additionalProperties"] = False
        return node

    result = walk(copy.deepcopy(dict(schema)))
    assert isinstance(result, dict)
    return result


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    prop = {key: value for key, value in prop.items() if key != "default"}
    kind = prop.get("type")
    if isinstance(kind, str) and kind != "null":
        return {**prop, "type": [kind, "null"]}
    if isinstance(kind, list) and "null" not in kind:
        return {**prop, "type": [*kind, "null"]}
    if "anyOf" in prop and not any(p == {"type": "null"} for p in prop["anyOf"]):
        return {**prop, "anyOf": [*prop["anyOf"], {"type": "null"}]}
    if "type" not in prop and "anyOf" not in prop:
        return {"anyOf": [prop, {"type": "null"}]}
    return prop


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """A requested reply shape: the JSON Schema, its name, and the model class to parse into."""

    name: str
    schema: Mapping[str, Any]
    model: type[BaseModel] | None = None
    strict: bool = True

    @classmethod
    def coerce(cls, source: Any) -> OutputSchema:
        """From a pydantic model class, a JSON Schema dict, or ``{"name":..., "schema":...}``."""
        if isinstance(source, OutputSchema):
            return source
        if isinstance(source, type) and issubclass(source, BaseModel):
            return cls(
                name=source.__name__,
                schema=clean_schema(source.model_json_schema()),
                model=source,
            )
        if isinstance(source, Mapping):
            if "schema" in source and isinstance(source["schema"], Mapping):
                return cls(
                    name=str(source.get("name") or "response"),
                    schema=dict(source["schema"]),
                    strict=bool(source.get("strict", True)),
                )
            return cls(name="response", schema=dict(source))
        # Objects with a JSON-schema method (schema builders) are accepted too.
        to_json_schema = getattr(source, "to_json_schema", None) or getattr(
            source, "json_schema", None
        )
        if callable(to_json_schema):
            return cls.coerce(to_json_schema())
        raise ConfigurationError(
            f"with_schema() takes a pydantic model class or a JSON Schema dict, not {source!r}."
        )

    def spec(self) -> SchemaSpec:
        return SchemaSpec(name=self.name, schema=self.schema, strict=self.strict)

    def parse(self, text: str | None) -> Any:
        """The reply parsed into the model instance (or a dict/list for a plain schema).

        Raises:
            StructuredOutputError: the text is not JSON or does not match; keeps the text.
        """
        if text is None or not text.strip():
            raise StructuredOutputError("The model returned no structured output.", raw_text=text)
        if self.model is not None:
            try:
                return self.model.model_validate_json(text)
            except ValidationError as exc:
                raise StructuredOutputError(
                    f"The reply does not match {self.name}: {exc.error_count()} error(s): "
                    + "; ".join(
                        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                    ),
                    raw_text=text,
                ) from None
        try:
            value = json.loads(text)
        except ValueError:
            raise StructuredOutputError(
                f"The reply is not valid JSON for schema {self.name!r}.", raw_text=text
            ) from None
        if self.schema.get("type") == "object":
            if not isinstance(value, dict):
                raise StructuredOutputError(
                    f"The reply is not a JSON object as schema {self.name!r} requires.",
                    raw_text=text,
                )
            missing = [key for key in self.schema.get("required", []) if key not in value]
            if missing:
                raise StructuredOutputError(
                    f"The reply lacks required field(s) {', '.join(missing)} of {self.name!r}.",
                    raw_text=text,
                )
        return value
