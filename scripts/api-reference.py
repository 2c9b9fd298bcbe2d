#!/usr/bin/env python3
"""Render the node's OpenAPI document (docs/openapi.json) as Markdown on standard output.

    python3 scripts/api-reference.py > docs/api-reference.md

The output lists every operation under its tag (in the document's tag order), then every
component schema. Only the standard library is used, and the output depends on nothing but
the document, so the committed docs/api-reference.md can be checked against a fresh run.
An optional argument names another OpenAPI file to render.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

Schema = dict[str, Any]

DEFAULT_DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
METHODS = ("get", "post", "put", "patch", "delete")
SCHEMA_PREFIX = "#/components/schemas/"
RESPONSE_PREFIX = "#/components/responses/"


# --- small text helpers ---------------------------------------------------------------


def cell(text: str) -> str:
    """Text fit for one Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def paragraph(text: str) -> str:
    """A description as a paragraph: lines joined (the document wraps them)."""
    return " ".join(text.split())


def code(value: Any) -> str:
    """`value` as inline code; strings bare, anything else as JSON."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"`{text}`"


def anchor(name: str) -> str:
    """The anchor GitHub gives a heading made of `name` alone."""
    return "".join(c for c in name.lower() if c.isalnum() or c in "-_")


def schema_link(name: str) -> str:
    return f"[`{name}`](#{anchor(name)})"


def ref_name(ref: str) -> str:
    return ref.removeprefix(SCHEMA_PREFIX)


# --- types ------------------------------------------------------------------------------


def description_of(schema: Schema) -> str:
    """A schema's description, or that of a branch of its oneOf/allOf (where the
    generator puts the description of a nullable reference)."""
    if schema.get("description"):
        return str(schema["description"])
    for branch in schema.get("oneOf", []) + schema.get("allOf", []):
        if branch.get("description"):
            return str(branch["description"])
    return ""


def type_of(schema: Schema) -> str:
    """A short, readable type: `integer (int64)`, `string or null`, `array of X`, a link to
    a component schema, …"""
    if "$ref" in schema:
        return schema_link(ref_name(schema["$ref"]))
    for key in ("oneOf", "anyOf"):
        if key in schema:
            names = [type_of(branch) for branch in schema[key]]
            # "X or null" reads better than "null or X".
            names.sort(key=lambda n: n == "null")
            return " or ".join(names)
    if "allOf" in schema:
        return " and ".join(type_of(branch) for branch in schema["allOf"])
    types = schema.get("type")
    if types is None:
        if "enum" in schema:
            return "string" if all(isinstance(v, str) for v in schema["enum"]) else "any"
        return "any"
    if isinstance(types, str):
        types = [types]
    names = [single_type(schema, t) for t in types if t != "null"]
    if "null" in types:
        names.append("null")
    return " or ".join(names)


def single_type(schema: Schema, name: str) -> str:
    if name == "array":
        return f"array of {type_of(schema.get('items', {}))}"
    if name == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict) and "properties" not in schema:
            inner = type_of(values) if values else "any"
            return f"map of string to {inner}"
        return "object"
    if "format" in schema:
        return f"{name} ({schema['format']})"
    return name


def constraints_of(schema: Schema) -> str:
    """Bounds, pattern, allowed values and default, as one cell."""
    parts = []
    bounds = [
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ]
    for key, sign in bounds:
        if key in schema:
            parts.append(f"{sign} {schema[key]}")
    for key, label in [
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
    ]:
        if key in schema:
            parts.append(f"{label} {schema[key]}")
    if "pattern" in schema:
        parts.append(f"pattern {code(schema['pattern'])}")
    if "enum" in schema:
        parts.append("one of " + ", ".join(code(v) for v in schema["enum"]))
    if "const" in schema:
        parts.append(f"always {code(schema['const'])}")
    if "default" in schema:
        parts.append(f"default {code(schema['default'])}")
    return "; ".join(parts)


# --- schemas ----------------------------------------------------------------------------


def properties_table(schema: Schema) -> list[str]:
    """The table of an object schema's properties (empty when it has none)."""
    properties = schema.get("properties", {})
    if not properties:
        return []
    required = set(schema.get("required", []))
    lines = [
        "| field | type | required | description | constraints |",
        "|---|---|---|---|---|",
    ]
    for name, prop in properties.items():
        lines.append(
            f"| `{name}` | {cell(type_of(prop))} | {'yes' if name in required else 'no'} "
            f"| {cell(description_of(prop))} | {cell(constraints_of(prop))} |"
        )
    return lines


def is_event_stream(schema: Schema) -> bool:
    """Whether `schema` describes Server-Sent Events: a oneOf of `{event, data}` objects
    whose data is JSON described by `contentSchema`."""
    branches = schema.get("oneOf", [])
    return bool(branches) and all(
        set(b.get("properties", {})) == {"event", "data"} for b in branches
    )


def inline_shape(schema: Schema) -> str:
    """A JSON payload's shape on one line: a link, or `{ a: T, b?: U }`."""
    properties = schema.get("properties")
    if properties is None:
        return type_of(schema)
    required = set(schema.get("required", []))
    fields = [
        f"`{name}{'' if name in required else '?'}`: {type_of(prop)}"
        for name, prop in properties.items()
    ]
    return "{ " + ", ".join(fields) + " }"


def event_stream_table(schema: Schema) -> list[str]:
    lines = [
        "Sent as `text/event-stream`: each event is an `event:` line naming it and a `data:` "
        "line holding one JSON value of the shape below (`?` marks an optional field).",
        "",
        "| event | data |",
        "|---|---|",
    ]
    for branch in schema["oneOf"]:
        props = branch["properties"]
        names = props["event"].get("enum") or [props["event"].get("const", "")]
        data = props["data"]
        shape = data.get("contentSchema", data)
        events = ", ".join(code(n) for n in names)
        lines.append(f"| {events} | {cell(inline_shape(shape))} |")
    return lines


def alternatives_list(schema: Schema) -> list[str]:
    lines = ["One of:", ""]
    for branch in schema["oneOf"]:
        text = type_of(branch)
        if branch.get("description"):
            text += f": {paragraph(branch['description'])}"
        lines.append(f"- {text}")
    return lines


def schema_body(schema: Schema) -> list[str]:
    """The Markdown that describes one component schema (after its heading)."""
    lines: list[str] = []
    if schema.get("description"):
        lines += [paragraph(schema["description"]), ""]
    if is_event_stream(schema):
        lines += event_stream_table(schema)
    elif "enum" in schema:
        lines.append(f"A {type_of(schema)}, one of " + ", ".join(code(v) for v in schema["enum"]) + ".")
    elif "oneOf" in schema:
        lines += alternatives_list(schema)
    elif "allOf" in schema:
        for part in schema["allOf"]:
            if "$ref" in part:
                lines += [f"Every field of {type_of(part)}, and:", ""]
            else:
                lines += properties_table(part)
    else:
        table = properties_table(schema)
        lines += table if table else [f"Type: {type_of(schema)}."]
    if schema.get("additionalProperties") is False:
        lines += ["", "Unknown fields are refused (400)."]
    return lines


def schemas_section(doc: Schema) -> list[str]:
    lines = ["## Schemas", ""]
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        lines += [f"### {name}", ""] + schema_body(schema) + [""]
    return lines


# --- operations -------------------------------------------------------------------------


def resolve_response(doc: Schema, response: Schema) -> Schema:
    if "$ref" in response:
        name = response["$ref"].removeprefix(RESPONSE_PREFIX)
        resolved: Schema = doc["components"]["responses"][name]
        return resolved
    return response


def body_of(content: Schema) -> str:
    """The schema of a response or request body, with its media type unless JSON."""
    parts = []
    for media, entry in content.items():
        schema = entry.get("schema")
        shown = type_of(schema) if schema else "no schema"
        parts.append(shown if media == "application/json" else f"{shown} as `{media}`")
    return ", ".join(parts)


def parameters_of(path_item: Schema, operation: Schema) -> list[Schema]:
    """Path-level parameters overridden by the operation's own, in order."""
    merged: dict[tuple[str, str], Schema] = {}
    for param in path_item.get("parameters", []) + operation.get("parameters", []):
        merged[(param["in"], param["name"])] = param
    return list(merged.values())


def parameters_table(params: list[Schema], where: str) -> list[str]:
    chosen = [p for p in params if p["in"] == where]
    if not chosen:
        return []
    lines = [
        f"{where.capitalize()} parameters:",
        "",
        "| name | type | required | description |",
        "|---|---|---|---|",
    ]
    for p in chosen:
        required = "yes" if p.get("required") else "no"
        lines.append(
            f"| `{p['name']}` | {cell(type_of(p.get('schema', {})))} | {required} "
            f"| {cell(p.get('description', ''))} |"
        )
    return lines + [""]


def request_body(doc: Schema, operation: Schema) -> list[str]:
    body = operation.get("requestBody")
    if not body:
        return []
    optional = "" if body.get("required") else " (optional)"
    lines = [f"Request body{optional}: {body_of(body['content'])}", ""]
    for entry in body["content"].values():
        schema = entry.get("schema", {})
        if "$ref" in schema:
            schema = doc["components"]["schemas"][ref_name(schema["$ref"])]
        table = properties_table(schema)
        if table:
            lines += table + [""]
    return lines


def responses_table(doc: Schema, operation: Schema) -> list[str]:
    lines = ["Responses:", "", "| status | description | body |", "|---|---|---|"]
    for status, response in operation.get("responses", {}).items():
        response = resolve_response(doc, response)
        body = body_of(response.get("content", {}))
        lines.append(f"| {status} | {cell(response.get('description', ''))} | {cell(body)} |")
    return lines + [""]


def operation_section(doc: Schema, path: str, method: str, path_item: Schema) -> list[str]:
    op = path_item[method]
    lines = [f'<a id="{op["operationId"]}"></a>', f"### `{method.upper()} {path}`", ""]
    if op.get("summary"):
        lines += [paragraph(op["summary"]), ""]
    if op.get("description"):
        lines += [paragraph(op["description"]), ""]
    auth = "bearer API key" if op.get("security") else "none"
    lines += [f"Authentication: {auth}.", ""]
    params = parameters_of(path_item, op)
    lines += parameters_table(params, "path") + parameters_table(params, "query")
    lines += request_body(doc, op)
    lines += responses_table(doc, op)
    return lines


def operations_by_tag(doc: Schema) -> dict[str, list[tuple[str, str, Schema]]]:
    """(path, method, path item) per tag, tags in the document's order, operations in
    path order then GET, POST, PUT, PATCH, DELETE."""
    grouped: dict[str, list[tuple[str, str, Schema]]] = {
        t["name"]: [] for t in doc.get("tags", [])
    }
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                for tag in item[method].get("tags", ["other"]):
                    grouped.setdefault(tag, []).append((path, method, item))
    return grouped


# --- the page ---------------------------------------------------------------------------


def header(doc: Schema, grouped: dict[str, list[tuple[str, str, Schema]]]) -> list[str]:
    info = doc["info"]
    lines = [
        "# API reference",
        "",
        "<!-- Generated by scripts/api-reference.py from docs/openapi.json: do not edit. -->",
        "",
        f"{info['title']} {info['version']}, OpenAPI {doc['openapi']}. "
        "A node serves this document at `GET /v1/openapi.json`.",
        "",
        paragraph(info.get("description", "")),
        "",
    ]
    for server in doc.get("servers", []):
        lines.append(f"Base URL: `{server['url']}` ({server.get('description', '')}).")
    for name, scheme in doc.get("components", {}).get("securitySchemes", {}).items():
        lines.append(f"Authentication `{name}`: {paragraph(scheme.get('description', ''))}")
    lines += ["", "## Contents", ""]
    descriptions = {t["name"]: t.get("description", "") for t in doc.get("tags", [])}
    for tag, ops in grouped.items():
        lines.append(f"- [{tag}](#{anchor(tag)}): {paragraph(descriptions.get(tag, ''))}")
        for path, method, item in ops:
            op_id = item[method]["operationId"]
            lines.append(f"  - [`{method.upper()} {path}`](#{op_id})")
    lines += ["- [Schemas](#schemas)", ""]
    return lines


def render(doc: Schema) -> str:
    grouped = operations_by_tag(doc)
    descriptions = {t["name"]: t.get("description", "") for t in doc.get("tags", [])}
    lines = header(doc, grouped)
    for tag, ops in grouped.items():
        lines += [f"## {tag}", ""]
        if descriptions.get(tag):
            lines += [paragraph(descriptions[tag]), ""]
        for path, method, item in ops:
            lines += operation_section(doc, path, method, item)
    lines += schemas_section(doc)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_DOCUMENT
    doc = json.loads(source.read_text(encoding="utf-8"))
    sys.stdout.write(render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
