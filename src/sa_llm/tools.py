"""Tools the model can call: typed Python classes whose arguments pydantic validates.

Subclass :class:`Tool` and write ``execute`` with typed parameters; the JSON Schema the model
sees is derived from the signature (``Annotated[..., "description"]`` or pydantic ``Field``
describe a parameter), and the arguments the model sends are validated before ``execute`` runs.
Bad arguments and exceptions become an error result the model can read and correct; they never
crash the conversation. ``execute`` may be ``async def`` (use the async chat API then).

Example::

    class Weather(sa_llm.Tool):
        \"\"\"Gets current weather for a location.\"\"\"

        def execute(
            self,
            latitude: Annotated[str, "Latitude (e.g., 52.5200)"],
            longitude: Annotated[str, "Longitude (e.g., 13.4050)"],
        ) -> str:
            return f"15°C at {latitude},{longitude}"

    chat.with_tool(Weather).ask("What's the weather in Berlin? (52.5200, 13.4050)")
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, get_args, get_origin, get_type_hints

import pydantic
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from sa_llm.errors import ToolError
from sa_llm.providers.base import ToolSpec
from sa_llm.schema import clean_schema
from sa_llm.types import Content

__all__ = ["Halt", "Param", "Tool", "ToolResult", "as_tool"]


@dataclass(frozen=True, slots=True)
class Param:
    """An explicitly declared parameter, for tools that do not type ``execute``.

    Example::

        class Search(Tool):
            parameters = {"query": Param(str, "What to search for")}
            def execute(self, **kwargs): ...
    """

    type: Any = str
    description: str | None = None
    required: bool = True
    default: Any = None


@dataclass(frozen=True, slots=True)
class Halt:
    """Returned by a tool (via :meth:`Tool.halt`) to end the tool loop with this result."""

    content: Any


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What one tool call produced, as sent back to the model."""

    content: str | Content
    is_error: bool = False
    halted: bool = False


def _snake_case(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _described(annotation: Any) -> tuple[Any, str | None]:
    """Split ``Annotated[T, "text"]`` into ``(T, "text")``; other metadata stays on ``T``."""
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        texts = [m for m in meta if isinstance(m, str)]
        others = tuple(m for m in meta if not isinstance(m, str))
        if texts:
            kept = Annotated.__class_getitem__((base, *others)) if others else base
            return kept, " ".join(texts)
    return annotation, None


class Tool:
    """Base class of tools. Override :meth:`execute`; optionally set ``name``/``description``.

    Class attributes:
        name: the name the model calls (default: the class name in snake_case).
        description: what the tool does (default: the class docstring).
        parameters: explicit :class:`Param` declarations (default: from ``execute``).
        schema: a complete JSON Schema for the arguments (overrides both).
        requires_approval: calls wait for a person's decision before they run
            (:mod:`sa_llm.approval`).
    """

    requires_approval: ClassVar[bool] = False
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters: ClassVar[Mapping[str, Param] | None] = None
    schema: ClassVar[Mapping[str, Any] | None] = None

    _arguments_model: ClassVar[type[BaseModel] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__ or not cls.__dict__["name"]:
            cls.name = _snake_case(cls.__name__)
        if not cls.__dict__.get("description"):
            doc = inspect.getdoc(cls) if cls.__doc__ else None
            cls.description = (doc or "").strip()
        cls._arguments_model = None

    if TYPE_CHECKING:
        # Declared as a callable so subclasses type-check with any typed signature.
        execute: Callable[..., Any]
    else:

        def execute(self, **kwargs: Any) -> Any:
            """Do the work: return a str, a JSON-able value, :class:`Content`, or :meth:`halt`.

            May be ``async def``. Arguments are validated against the signature first.
            """
            raise NotImplementedError(f"{type(self).__name__}.execute is not implemented")

    def halt(self, content: Any) -> Halt:
        """End the tool loop: ``content`` becomes the result and the model is not called again."""
        return Halt(content)

    # -- schema and validation --

    @classmethod
    def arguments_model(cls) -> type[BaseModel]:
        """The pydantic model that validates this tool's arguments (built once per class)."""
        if cls._arguments_model is None:
            cls._arguments_model = cls._build_arguments_model()
        return cls._arguments_model

    @classmethod
    def _build_arguments_model(cls) -> type[BaseModel]:
        fields: dict[str, Any] = {}
        config = ConfigDict(extra="forbid")
        if cls.parameters is not None:
            for pname, param in cls.parameters.items():
                default: Any = ... if param.required else param.default
                fields[pname] = (param.type, Field(default, description=param.description))
        else:
            signature = inspect.signature(cls.execute)
            try:
                hints = get_type_hints(cls.execute, include_extras=True)
            except Exception as exc:
                raise ToolError(
                    f"Cannot read the type hints of {cls.__name__}.execute: {exc}"
                ) from exc
            for pname, parameter in signature.parameters.items():
                if pname == "self":
                    continue
                if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                    config = ConfigDict(extra="allow")
                    continue
                if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
                    raise ToolError(f"{cls.__name__}.execute cannot take *args.")
                if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
                    # The model's arguments are passed by name: this one could never be set.
                    raise ToolError(
                        f"{cls.__name__}.execute cannot take the positional-only "
                        f"parameter {pname!r}."
                    )
                annotation, description = _described(hints.get(pname, Any))
                default = ... if parameter.default is inspect.Parameter.empty else parameter.default
                if isinstance(default, FieldInfo):
                    # ``x: int = Field(3, ge=0)``: the field is the declaration, keep it whole.
                    if description and not default.description:
                        default.description = description
                    fields[pname] = (annotation, default)
                elif description is None:
                    # An ``Annotated[..., Field(...)]`` keeps its own metadata and description.
                    fields[pname] = (annotation, default)
                else:
                    fields[pname] = (annotation, Field(default, description=description))
        return create_model(f"{cls.__name__}Arguments", __config__=config, **fields)

    @classmethod
    def parameters_schema(cls) -> dict[str, Any]:
        """The JSON Schema of the arguments, as sent to the model."""
        if cls.schema is not None:
            return dict(cls.schema)
        schema = clean_schema(cls.arguments_model().model_json_schema())
        schema.setdefault("properties", {})
        schema.setdefault("required", [])
        if cls.arguments_model().model_config.get("extra") == "forbid":
            schema["additionalProperties"] = False
        return schema

    @classmethod
    def spec(cls) -> ToolSpec:
        """The tool as providers see it."""
        return ToolSpec(
            name=cls.name, description=cls.description, parameters=cls.parameters_schema()
        )

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The validated arguments; raises :class:`pydantic.ValidationError` when invalid."""
        if self.schema is not None:
            return dict(arguments)
        model = self.arguments_model().model_validate(dict(arguments))
        values = {name: getattr(model, name) for name in type(model).model_fields}
        values.update(model.model_extra or {})
        return values


class _FunctionTool(Tool):
    """A plain function used as a tool (see :func:`as_tool`)."""

    function: ClassVar[Callable[..., Any]]

    def execute(self, **kwargs: Any) -> Any:
        return type(self).function(**kwargs)


def as_tool(
    function: Callable[..., Any], *, name: str | None = None, requires_approval: bool = False
) -> type[Tool]:
    """A :class:`Tool` class from a typed function; its docstring is the description.

    ``requires_approval=True`` makes its calls wait for a decision (:mod:`sa_llm.approval`).

    Raises:
        ToolError: a callable without a signature Python can read (some builtins).
    """
    is_async = inspect.iscoroutinefunction(function)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise ToolError(
            f"{function!r} has no signature to build a tool from ({exc}); wrap it in a "
            "typed function."
        ) from None

    async def execute_async(self: Tool, **kwargs: Any) -> Any:
        return await function(**kwargs)

    def execute_sync(self: Tool, **kwargs: Any) -> Any:
        return function(**kwargs)

    execute: Callable[..., Any] = execute_async if is_async else execute_sync

    execute.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY),
            *signature.parameters.values(),
        ]
    )
    execute.__annotations__ = dict(getattr(function, "__annotations__", {}))
    execute.__wrapped__ = function  # type: ignore[attr-defined]
    namespace = {
        "name": name or getattr(function, "__name__", ""),
        "description": inspect.getdoc(function) or "",
        "execute": execute,
        "requires_approval": requires_approval,
        "__module__": function.__module__,
    }
    return type(f"{getattr(function, '__name__', 'function')}_tool", (Tool,), namespace)


def coerce_tool(tool: Tool | type[Tool] | Callable[..., Any]) -> Tool:
    """A tool instance from a Tool class, a Tool instance, or a plain function."""
    if isinstance(tool, Tool):
        return tool
    if isinstance(tool, type) and issubclass(tool, Tool):
        return tool()
    if callable(tool):
        if getattr(tool, "__name__", None) == "<lambda>":
            raise ToolError(
                "A lambda has no name the model could call: define a function, or name it "
                "with sa_llm.as_tool(fn, name='...')."
            )
        return as_tool(tool)()
    raise ToolError(f"Not a tool: {tool!r} (a Tool class or instance, or a typed function).")


# The names every provider takes: OpenAI and Anthropic allow letters, digits, "_" and "-" (up
# to 64), Gemini also "." and ":"; anything else is refused by one of them at request time.
_TOOL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}")


def checked_tool(tool: Tool | type[Tool] | Callable[..., Any]) -> Tool:
    """:func:`coerce_tool`, then the checks a provider would otherwise fail on at ask time:
    a usable name and an argument schema that can be built.

    Raises:
        ToolError: not a tool, a bad name, or a signature that cannot become a schema.
    """
    instance = coerce_tool(tool)
    name = instance.name
    if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
        raise ToolError(
            f"Tool name {name!r} is not usable: 1 to 64 letters, digits, '_', '-', '.' or ':', "
            "starting with a letter, digit or '_'."
        )
    try:
        instance.spec()
    except ToolError:
        raise
    except Exception as exc:
        raise ToolError(
            f"Tool {name!r} cannot describe its arguments: {type(exc).__name__}: {exc}"
        ) from exc
    return instance


def result_content(value: Any) -> str | Content:
    """What a tool returned, as the content of the tool-result message."""
    if isinstance(value, str | Content):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def error_result(tool_name: str, error: BaseException) -> ToolResult:
    """The result the model sees when its call failed, so it can correct itself."""
    if isinstance(error, pydantic.ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
            for e in error.errors()
        )
        message = f"Invalid arguments for tool {tool_name!r}: {problems}"
    else:
        message = f"Tool {tool_name!r} failed: {type(error).__name__}: {error}"
    return ToolResult(json.dumps({"error": message}), is_error=True)


def invalid_arguments_result(tool_name: str, problem: str) -> ToolResult:
    """The result the model sees when its arguments could not be read; the tool did not run."""
    message = (
        f"Invalid arguments for tool {tool_name!r}: {problem}. The tool was not run; "
        "send the arguments as one JSON object."
    )
    return ToolResult(json.dumps({"error": message}), is_error=True)
