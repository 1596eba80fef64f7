"""The agent tool registry: one declaration per tool serves the Python API, the CLI and MCP.

A tool is a method of ``Tools`` marked with ``@tool(kind)``: its docstring's first paragraph is the
description an agent sees, its signature (type hints) is the JSON schema of its arguments, and
``kind`` is ``observe`` (reads), ``act`` (changes the system; audited) or ``submit``. Dispatch refuses
anything not registered, and bad arguments come back as a structured error, never an exception.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

Kind = Literal["observe", "act", "submit"]
KIND_ORDER = {"observe": 0, "act": 1, "submit": 2}

_JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class ToolSpec:
    name: str
    kind: Kind
    description: str
    parameters: dict[str, Any]  # JSON schema (object)
    func_name: str

    def openai(self) -> dict[str, Any]:
        """The OpenAI-compatible function-tool declaration."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


TOOLS: dict[str, ToolSpec] = {}


def _schema_of(annotation: Any) -> dict[str, Any]:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return _schema_of(args[0]) if len(args) == 1 else {"anyOf": [_schema_of(a) for a in args]}
    if origin is Literal:
        values = list(get_args(annotation))
        return {"type": _JSON_TYPES.get(type(values[0]), "string"), "enum": values}
    if origin in (list, tuple):
        inner = get_args(annotation)
        return {"type": "array", "items": _schema_of(inner[0]) if inner else {}}
    if origin is dict or annotation is dict:
        return {"type": "object"}
    if annotation in _JSON_TYPES:
        return {"type": _JSON_TYPES[annotation]}
    return {}


def _param_docs(doc: str) -> dict[str, str]:
    """Lines like ``service: the deployment to restart`` after an ``Args:`` line."""
    out: dict[str, str] = {}
    in_args = False
    for raw in doc.splitlines():
        line = raw.strip()
        if line.lower() in ("args:", "arguments:"):
            in_args = True
            continue
        if in_args:
            if not line:
                break
            name, sep, text = line.partition(":")
            if sep and name.isidentifier():
                out[name] = text.strip()
    return out


def tool(kind: Kind) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        doc = inspect.getdoc(fn) or ""
        description = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
        hints = typing.get_type_hints(fn)
        pdocs = _param_docs(doc)
        props: dict[str, Any] = {}
        required: list[str] = []
        for name, param in inspect.signature(fn).parameters.items():
            if name == "self":
                continue
            schema = _schema_of(hints.get(name, str))
            if name in pdocs:
                schema["description"] = pdocs[name]
            if param.default is inspect.Parameter.empty:
                required.append(name)
            else:
                schema["default"] = param.default
            props[name] = schema
        params: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
        if required:
            params["required"] = required
        name = fn.__name__
        if name in TOOLS:
            raise RuntimeError(f"tool {name!r} registered twice")
        TOOLS[name] = ToolSpec(name, kind, description, params, fn.__name__)
        # Listed observe, act, submit (declaration order within each), whatever order the rooms load in.
        ordered = sorted(TOOLS.items(), key=lambda item: KIND_ORDER[item[1].kind])
        TOOLS.clear()
        TOOLS.update(ordered)
        fn._tool_kind = kind  # type: ignore[attr-defined]
        return fn

    return wrap


def action_tool_names() -> set[str]:
    import sockdrill.agents.tools  # noqa: F401  - registers the tools

    return {n for n, s in TOOLS.items() if s.kind == "act"}


def all_tools() -> dict[str, ToolSpec]:
    import sockdrill.agents.tools  # noqa: F401

    return dict(TOOLS)


def check_args(spec: ToolSpec, args: dict[str, Any]) -> list[str]:
    """Problems with a call's arguments, as sentences (empty = fine)."""
    problems = []
    props = spec.parameters["properties"]
    for name in args:
        if name not in props:
            from sockdrill.errors import did_you_mean

            problems.append(f"'{spec.name}' has no argument '{name}'" + did_you_mean(name, props))
    for name in spec.parameters.get("required", []):
        if name not in args:
            problems.append(f"'{spec.name}' needs argument '{name}'")
    for name, value in args.items():
        schema = props.get(name, {})
        want = schema.get("type")
        ok = {
            "string": isinstance(value, str), "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool), "array": isinstance(value, list), "object": isinstance(value, dict),
            None: True,
        }.get(want, True)
        if not ok and not (value is None and schema.get("default", 0) is None):
            problems.append(f"argument '{name}' must be {want}, got {type(value).__name__}")
        if "enum" in schema and value not in schema["enum"]:
            problems.append(f"argument '{name}' must be one of {schema['enum']}, got {value!r}")
    return problems
