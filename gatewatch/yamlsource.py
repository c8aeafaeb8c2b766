"""Load YAML while remembering the line of every key, for error messages.

pydantic reports an error location as a path of keys (``sources.0.path``);
``YamlDocument.line_of`` turns that path back into a line of the file.
"""

from __future__ import annotations

import difflib
import typing

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gatewatch.errors import GatewatchError

Location = tuple[str | int, ...]


@dataclass
class YamlDocument:
    """A parsed YAML mapping plus the 1-based line of each key path."""

    path: str
    data: Any
    lines: dict[Location, int] = field(default_factory=dict)

    def line_of(self, location: Location) -> int | None:
        """Return the line of the longest known prefix of ``location``."""
        for end in range(len(location), -1, -1):
            line = self.lines.get(tuple(location[:end]))
            if line is not None:
                return line
        return None


def load_yaml(path: str | Path, error: type[GatewatchError] = GatewatchError) -> YamlDocument:
    """Read and parse a YAML file; a syntax error raises ``error`` with its line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error("file not found", path) from None
    except IsADirectoryError:
        raise error("is a folder, not a file; name the YAML file itself", path) from None
    except OSError as exc:
        raise error(f"cannot read the file: {exc.strerror}", path) from None
    except UnicodeDecodeError as exc:
        raise error(f"file is not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    return parse_yaml(text, str(path), error)


def parse_yaml(text: str, path: str, error: type[GatewatchError] = GatewatchError) -> YamlDocument:
    """Parse YAML text; the result keeps the line of every key."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise error(f"invalid YAML: {problem}", path, line) from None
    except yaml.YAMLError as exc:
        raise error(f"invalid YAML: {exc}", path) from None
    if node is None:
        return YamlDocument(path=path, data=None)
    lines: dict[Location, int] = {}
    duplicate = _record_lines(node, (), lines)
    if duplicate is not None:
        key, line = duplicate
        raise error(f"duplicate key {key!r}; each key may appear once per mapping, so remove one", path, line)
    try:
        data = _PlainLoader(text).get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise error(
            f"invalid YAML: {exc.problem or 'unsupported value'}; write plain values without `!!` tags", path, line
        ) from None
    return YamlDocument(path=path, data=data, lines=lines)


class _PlainLoader(yaml.SafeLoader):
    """The safe loader without `!!binary`, which would turn text into bytes no setting accepts."""


_PlainLoader.yaml_constructors = {
    tag: constructor
    for tag, constructor in yaml.SafeLoader.yaml_constructors.items()
    if tag != "tag:yaml.org,2002:binary"
}


def _record_lines(node: yaml.Node, location: Location, lines: dict[Location, int]) -> tuple[str, int] | None:
    """Store the line of every key path; return the first duplicate key and its line."""
    duplicate = None
    lines.setdefault(location, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen and duplicate is None:
                duplicate = (key, line)
            seen.add(key)
            found = _record_lines(value_node, location + (key,), lines)
            duplicate = duplicate or found
            # The key's own line wins over the line where its value starts.
            lines[location + (key,)] = line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            duplicate = duplicate or _record_lines(item, location + (index,), lines)
    return duplicate


def raise_validation_error(
    document: YamlDocument,
    exc: Any,
    error: type[GatewatchError],
    prefix: Location = (),
    model: Any = None,
) -> None:
    """Turn the first error of a pydantic ``ValidationError`` into ``error``.

    The message names the key path, the bad value and what pydantic expected;
    the line comes from ``document``. ``prefix`` is prepended to pydantic's
    location when the validated data sits below the document root.
    """
    errors = exc.errors(include_url=False)
    # A misspelt key also causes a "missing" error for the key it was meant
    # to be. Report the unknown key, because it comes with a did-you-mean.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    model_location = _document_location(document.data, prefix, tuple(first["loc"]))
    location = prefix + model_location
    key = ".".join(str(part) for part in location) or "(top level)"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = f"unknown key {key!r}"
        allowed = _keys_at(model, tuple(first["loc"])[:-1])
        close = difflib.get_close_matches(str(model_location[-1]), allowed, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
        elif allowed:
            message += f"; valid keys here: {', '.join(sorted(allowed))}"
        raise error(message, document.path, document.line_of(location))
    if first["type"] == "missing":
        raise error(f"missing required key {key!r}", document.path, document.line_of(location[:-1]))
    if first["type"] == "union_tag_invalid":
        raise error(_unknown_tag_message(key, first["ctx"]), document.path, document.line_of(location))
    message = _strip_error_kind(message)
    value = first.get("input")
    if isinstance(value, (str, int, float, bool)) or value is None:
        message = f"invalid value {value!r} for {key!r}: {message}"
    else:
        message = f"invalid {key!r}: {message}"
    raise error(message, document.path, document.line_of(location))


# pydantic starts the message of an error raised in a validator with its kind.
_ERROR_KIND_PREFIXES = ("Value error, ", "Assertion failed, ")


def _strip_error_kind(message: str) -> str:
    for kind in _ERROR_KIND_PREFIXES:
        if message.startswith(kind):
            return message[len(kind):]
    return message


def _unknown_tag_message(key: str, context: dict[str, Any]) -> str:
    """Word an unknown ``type:`` of a tagged union, with a did-you-mean."""
    tag = str(context.get("tag"))
    discriminator = str(context.get("discriminator", "type")).strip("'")
    expected = [name.strip().strip("'") for name in str(context.get("expected_tags", "")).split(",") if name.strip()]
    message = f"unknown {discriminator} {tag!r} at {key!r}"
    close = difflib.get_close_matches(tag, expected, n=1)
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    return f"{message}; valid values: {', '.join(expected)}"


def _document_location(data: Any, prefix: Location, location: Location) -> Location:
    """Drop the parts of a pydantic location that are not in the document.

    A discriminated union adds its tag (``notifiers.0.slack.token``); the
    document only has ``notifiers.0.token``.
    """
    current = data
    for part in prefix:
        current = _child(current, part)
    kept: list[str | int] = []
    for index, part in enumerate(location):
        child = _child(current, part)
        is_last = index == len(location) - 1
        if child is _MISSING and isinstance(current, dict) and (not is_last or part == current.get("type")):
            continue
        kept.append(part)
        current = child
    return tuple(kept)


_MISSING = object()


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return _MISSING


def _keys_at(model: Any, location: Location) -> list[str]:
    """Return the field names of the pydantic model found at ``location``."""
    current = model
    for part in location:
        tagged = _tagged_member(current, part)
        if tagged is not None:
            current = tagged
            continue
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else current
            continue
        current = _model_in(current)
        if current is None:
            return []
        field_info = current.model_fields.get(part)
        if field_info is None:
            return []
        current = field_info.annotation
    current = _model_in(current)
    if current is None:
        return []
    # Fields excluded from serialization are set by code, not read from the file.
    return [name for name, info in current.model_fields.items() if not info.exclude]


def _tagged_member(annotation: Any, tag: str | int) -> Any:
    """Return the model of a tagged union whose ``type`` default is ``tag``, or None."""
    if isinstance(annotation, type) or isinstance(tag, int):
        return None
    for arg in typing.get_args(annotation):
        member = _tagged_member(arg, tag)
        if member is not None:
            return member
        if isinstance(arg, type) and hasattr(arg, "model_fields"):
            field_info = arg.model_fields.get("type")
            if field_info is not None and field_info.default == tag:
                return arg
    return None


def _model_in(annotation: Any) -> Any:
    """Find the one pydantic model inside ``list[M]``, ``M | None`` and the like."""
    if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
        return annotation
    models = [m for m in (_model_in(arg) for arg in typing.get_args(annotation)) if m is not None]
    return models[0] if len(models) == 1 else None
