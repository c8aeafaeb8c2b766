"""Map a character offset inside a rule's YAML value back to a file line and column."""

from __future__ import annotations

from pathlib import Path

import yaml


def value_position(path: str | Path, location: tuple[str | int, ...], offset: int) -> tuple[int, int] | None:
    """Return the 1-based (line, column) of character ``offset`` of the value at ``location``.

    Exact for block scalars (``|``) and plain one-line values; for quoted
    values an escape sequence before the offset shifts the column. Returns
    None when the file or the value cannot be found.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    node = _find(node, location)
    if not isinstance(node, yaml.ScalarNode):
        return None
    value = node.value
    offset = max(0, min(offset, len(value)))
    row = value.count("\n", 0, offset)
    column_in_row = offset - (value.rfind("\n", 0, offset) + 1)
    if node.style in ("|", ">"):
        # The value starts on the line after the `|` indicator, indented.
        lines = text.splitlines()
        first = node.start_mark.line + 1
        body = next((line for line in lines[first:] if line.strip()), "")
        indent = len(body) - len(body.lstrip(" "))
        return first + 1 + row, indent + column_in_row + 1
    quote = 1 if node.style in ("'", '"') else 0
    if row == 0:
        return node.start_mark.line + 1, node.start_mark.column + quote + column_in_row + 1
    return node.start_mark.line + 1 + row, column_in_row + 1


def _find(node: yaml.Node | None, location: tuple[str | int, ...]) -> yaml.Node | None:
    for part in location:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            node = next((value for key, value in node.value if getattr(key, "value", None) == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return None
    return node
